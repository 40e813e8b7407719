//! The execution's file system ([`Mounts`]): its nodes, path resolution confined to
//! the base descriptor, and every operation the front ends need, pure and
//! synchronous (no I/O, no async). Read-only mounts are [`Node::Image`]s that point
//! into a shared [`MountImage`]; writable mounts are [`MemDir`]/[`MemFile`] nodes
//! made from their archive at mount time, whose contents stay slices of the
//! archive until first written (copy on write).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use zeroize::Zeroizing;

use super::budget::FilesBudget;
use super::image::{EntryKind, MountImage};
use super::{FsErr, MountError, MountSpec};

/// Longest path a call may name, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest path component, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Nanoseconds since the Unix epoch.
pub type Timestamp = u64;

fn now() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data is
    // still consistent (every change is a single assignment or insert).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A file or directory of the execution's file system.
#[derive(Clone)]
pub enum Node {
    /// An entry of a read-only mount's image: nothing per execution.
    Image {
        image: Arc<MountImage>,
        index: u32,
        ino_base: u64,
    },
    /// A directory of a writable mount.
    Dir(Arc<MemDir>),
    /// A regular file of a writable mount.
    File(Arc<MemFile>),
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({:?}, ino {})", self.kind(), self.ino())
    }
}

/// A node's type.
pub type Kind = EntryKind;

impl Node {
    pub fn kind(&self) -> Kind {
        match self {
            Node::Image { image, index, .. } => image.kind(*index),
            Node::Dir(_) => Kind::Dir,
            Node::File(_) => Kind::File,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == Kind::Dir
    }

    /// Its inode number: deterministic per execution.
    pub fn ino(&self) -> u64 {
        match self {
            Node::Image {
                index, ino_base, ..
            } => ino_base + u64::from(*index),
            Node::Dir(dir) => dir.ino,
            Node::File(file) => file.ino,
        }
    }

    /// Its modification time.
    pub fn mtime(&self) -> Timestamp {
        match self {
            Node::Image { image, index, .. } => image.mtime(*index).saturating_mul(1_000_000_000),
            Node::Dir(dir) => lock(&dir.data).mtime,
            Node::File(file) => lock(&file.data).mtime,
        }
    }

    /// A regular file's length; 0 for a directory.
    pub fn size(&self) -> u64 {
        match self {
            Node::Image { image, index, .. } => image.len(*index),
            Node::Dir(_) => 0,
            Node::File(file) => lock(&file.data).content.len() as u64,
        }
    }

    /// Calls `f` with at most `max` bytes of this file from `offset` (fewer at
    /// its end), without copying them first.
    pub fn read_with<R>(
        &self,
        offset: u64,
        max: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, FsErr> {
        let window = |bytes: &[u8]| {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let end = start.saturating_add(max).min(bytes.len());
            (start, end)
        };
        match self {
            Node::Image { image, index, .. } => match image.kind(*index) {
                Kind::Dir => Err(FsErr::IsDirectory),
                Kind::File => {
                    let bytes = image.file_bytes_of(*index);
                    let (start, end) = window(&bytes);
                    Ok(f(&bytes[start..end]))
                }
            },
            Node::Dir(_) => Err(FsErr::IsDirectory),
            Node::File(file) => {
                let data = lock(&file.data);
                let bytes = data.content.as_slice();
                let (start, end) = window(bytes);
                Ok(f(&bytes[start..end]))
            }
        }
    }

    /// Writes `bytes` at `offset` of this file, as [`Mounts::write`] does; only
    /// a writable mount has [`Node::File`]s, so anything else is refused
    /// (`ReadOnly` for an image's file, `IsDirectory` for a directory).
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<u64, FsErr> {
        match self {
            Node::Image { image, index, .. } if image.kind(*index) == Kind::File => {
                Err(FsErr::ReadOnly)
            }
            Node::Image { .. } | Node::Dir(_) => Err(FsErr::IsDirectory),
            Node::File(file) => file.write(offset, bytes),
        }
    }

    /// Whether `self` and `other` are the same file or directory.
    pub fn same(&self, other: &Node) -> bool {
        match (self, other) {
            (
                Node::Image {
                    image: a, index: i, ..
                },
                Node::Image {
                    image: b, index: j, ..
                },
            ) => Arc::ptr_eq(a, b) && i == j,
            (Node::Dir(a), Node::Dir(b)) => Arc::ptr_eq(a, b),
            (Node::File(a), Node::File(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A directory of a writable mount. Its entry is given back when it drops.
pub struct MemDir {
    data: Mutex<DirData>,
    ino: u64,
    budget: Arc<FilesBudget>,
    /// A mount's root is not an entry of the budget.
    counted: bool,
}

struct DirData {
    entries: BTreeMap<Box<[u8]>, Node>,
    mtime: Timestamp,
    atime: Timestamp,
    /// Removed from its parent; still usable through an open descriptor, but
    /// nothing can be created in it.
    removed: bool,
}

impl Drop for MemDir {
    fn drop(&mut self) {
        if self.counted {
            self.budget.remove_entry();
        }
        // Iteratively, not by recursion: a guest can nest directories as deep
        // as `max_mount_entries` (through directory descriptors, past the
        // 4,096-byte path limit), and a recursive drop would overflow the stack.
        let mut pending: Vec<Arc<MemDir>> = Vec::new();
        let take = |dir: &mut MemDir, pending: &mut Vec<Arc<MemDir>>| {
            let data = dir.data.get_mut().unwrap_or_else(PoisonError::into_inner);
            for (_, node) in std::mem::take(&mut data.entries) {
                if let Node::Dir(sub) = node {
                    pending.push(sub);
                }
            }
        };
        take(self, &mut pending);
        while let Some(dir) = pending.pop() {
            // Still open elsewhere (a descriptor): its last holder drops it.
            if let Ok(mut dir) = Arc::try_unwrap(dir) {
                take(&mut dir, &mut pending);
            }
        }
    }
}

impl MemDir {
    fn new(ino: u64, mtime: Timestamp, budget: Arc<FilesBudget>) -> MemDir {
        MemDir {
            data: Mutex::new(DirData {
                entries: BTreeMap::new(),
                mtime,
                atime: mtime,
                removed: false,
            }),
            ino,
            budget,
            counted: true,
        }
    }
}

/// A regular file of a writable mount. Its bytes and entry are given back when
/// the last link and the last open descriptor are gone.
pub struct MemFile {
    data: Mutex<FileData>,
    ino: u64,
    budget: Arc<FilesBudget>,
}

struct FileData {
    content: Content,
    mtime: Timestamp,
    atime: Timestamp,
}

/// A file's bytes: still the archive's (shared, no copy) or the file's own.
pub enum Content {
    Shared(Bytes),
    Owned(Zeroizing<Vec<u8>>),
}

impl Content {
    pub fn len(&self) -> usize {
        match self {
            Content::Shared(bytes) => bytes.len(),
            Content::Owned(vec) => vec.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Content::Shared(bytes) => bytes,
            Content::Owned(vec) => vec,
        }
    }

    /// The bytes as the file's own, with room for `capacity`: the archive's
    /// bytes are copied once (copy on write), and a growing buffer moves to a
    /// new allocation with the old one zeroized (not left to `realloc`).
    fn owned_mut(&mut self, capacity: usize) -> Result<&mut Vec<u8>, FsErr> {
        let needs_new = match self {
            Content::Shared(_) => true,
            Content::Owned(vec) => vec.capacity() < capacity,
        };
        if needs_new {
            let doubled = match self {
                Content::Owned(vec) => vec.capacity().saturating_mul(2),
                Content::Shared(_) => 0,
            };
            let current = self.as_slice();
            let wanted = capacity.max(current.len());
            let doubled = doubled.max(wanted);
            let mut fresh = Vec::new();
            if fresh.try_reserve_exact(doubled).is_err() {
                fresh
                    .try_reserve_exact(wanted)
                    .map_err(|_| FsErr::NoSpace)?;
            }
            fresh.extend_from_slice(current);
            *self = Content::Owned(Zeroizing::new(fresh));
        }
        match self {
            Content::Owned(vec) => Ok(vec),
            Content::Shared(_) => unreachable!("made owned above"),
        }
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        let len = lock(&self.data).content.len() as u64;
        self.budget.shrink(len);
        self.budget.remove_entry();
    }
}

impl MemFile {
    fn new(ino: u64, content: Content, mtime: Timestamp, budget: Arc<FilesBudget>) -> MemFile {
        MemFile {
            data: Mutex::new(FileData {
                content,
                mtime,
                atime: mtime,
            }),
            ino,
            budget,
        }
    }

    /// Writes `bytes` at `offset`, all or nothing: growth is charged first.
    fn write(&self, offset: u64, bytes: &[u8]) -> Result<u64, FsErr> {
        if bytes.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(bytes.len() as u64)
            .ok_or(FsErr::Overflow)?;
        let end_usize = usize::try_from(end).map_err(|_| FsErr::NoSpace)?;
        let mut data = lock(&self.data);
        let current = data.content.len() as u64;
        let growth = end.saturating_sub(current);
        self.budget.grow(growth).map_err(|_| FsErr::NoSpace)?;
        let vec = match data.content.owned_mut(end_usize) {
            Ok(vec) => vec,
            Err(error) => {
                self.budget.shrink(growth);
                return Err(error);
            }
        };
        let start = offset as usize;
        if vec.len() < end_usize {
            vec.resize(end_usize, 0);
        }
        vec[start..end_usize].copy_from_slice(bytes);
        data.mtime = now();
        Ok(bytes.len() as u64)
    }

    fn set_size(&self, len: u64) -> Result<(), FsErr> {
        let len_usize = usize::try_from(len).map_err(|_| FsErr::NoSpace)?;
        let mut data = lock(&self.data);
        let current = data.content.len() as u64;
        if len > current {
            self.budget
                .grow(len - current)
                .map_err(|_| FsErr::NoSpace)?;
            match data.content.owned_mut(len_usize) {
                Ok(vec) => vec.resize(len_usize, 0),
                Err(error) => {
                    self.budget.shrink(len - current);
                    return Err(error);
                }
            }
        } else if len < current {
            match &mut data.content {
                Content::Shared(bytes) => bytes.truncate(len_usize),
                Content::Owned(vec) => vec.truncate(len_usize),
            }
            self.budget.shrink(current - len);
        }
        data.mtime = now();
        Ok(())
    }
}

/// One mount of the execution.
pub struct Mount {
    pub path: String,
    pub writable: bool,
    pub root: Node,
}

/// What `open` is asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOpts {
    pub create: bool,
    pub exclusive: bool,
    pub truncate: bool,
    pub directory: bool,
    pub write: bool,
}

/// A node's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub ino: u64,
    /// The mount's index + 1.
    pub dev: u64,
    pub mtime: Timestamp,
    pub atime: Timestamp,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub ino: u64,
}

/// A path split into components, checked: relative, ≤ 4,096 bytes, components
/// ≤ 255 bytes, no NUL. Empty components are skipped (`a//b` is `a/b`).
struct ParsedPath<'a> {
    components: Vec<&'a [u8]>,
    trailing_slash: bool,
}

fn parse(path: &str) -> Result<ParsedPath<'_>, FsErr> {
    if path.is_empty() {
        return Err(FsErr::NoEntry);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(FsErr::NameTooLong);
    }
    if path.starts_with('/') {
        return Err(FsErr::NotPermitted);
    }
    if path.contains('\0') {
        return Err(FsErr::Invalid);
    }
    let mut components = Vec::new();
    for component in path.as_bytes().split(|&b| b == b'/') {
        if component.is_empty() {
            continue;
        }
        if component.len() > MAX_NAME_BYTES {
            return Err(FsErr::NameTooLong);
        }
        components.push(component);
    }
    Ok(ParsedPath {
        components,
        trailing_slash: path.ends_with('/'),
    })
}

fn is_dot(component: &[u8]) -> bool {
    component == b"." || component == b".."
}

/// The initial contents of `specs` against `files_bytes` and `max_entries`.
pub(super) fn check_limits(
    specs: &[MountSpec],
    files_bytes: u64,
    max_entries: u32,
) -> Result<(u64, u64), MountError> {
    let bytes: u64 = specs
        .iter()
        .filter_map(|spec| spec.image.as_ref())
        .map(|image| image.file_bytes())
        .fold(0, u64::saturating_add);
    let entries: u64 = specs
        .iter()
        .filter_map(|spec| spec.image.as_ref())
        .map(|image| u64::from(image.entry_count()))
        .sum();
    if bytes > files_bytes {
        return Err(MountError::FilesBytes {
            bytes,
            limit: files_bytes,
        });
    }
    if entries > u64::from(max_entries) {
        return Err(MountError::Entries {
            entries,
            limit: max_entries,
        });
    }
    Ok((bytes, entries))
}

/// The execution's whole file system: its mounts in request order (the index is
/// the mount's id, and its device number minus one) and their budget.
pub struct Mounts {
    mounts: Vec<Mount>,
    budget: Arc<FilesBudget>,
    next_ino: u64,
}

impl Mounts {
    /// Mounts `specs` in order, charging their initial contents against
    /// `files_bytes` and `max_entries` (over either: [`MountError`]). Read-only
    /// mounts share their image; writable ones are made into nodes whose
    /// contents are still the archive's bytes.
    pub fn new(
        specs: Vec<MountSpec>,
        files_bytes: u64,
        max_entries: u32,
    ) -> Result<Mounts, MountError> {
        check_limits(&specs, files_bytes, max_entries)?;
        let budget = Arc::new(FilesBudget::new(files_bytes, max_entries));
        let mut mounts = Mounts {
            mounts: Vec::with_capacity(specs.len()),
            budget,
            next_ino: 1,
        };
        for spec in specs {
            let image = spec.image.unwrap_or_else(|| Arc::new(MountImage::empty()));
            let ino_base = mounts.next_ino;
            mounts.next_ino += u64::from(image.entry_count()) + 1;
            let root = if spec.writable {
                mounts.materialise(&image, ino_base)
            } else {
                // Charged once, for the whole execution: nothing of a read-only
                // mount can be removed.
                let charged = mounts.budget.grow(image.file_bytes()).is_ok()
                    && mounts.budget.add_entries(image.entry_count()).is_ok();
                debug_assert!(charged, "checked against the limits above");
                Node::Image {
                    image,
                    index: MountImage::ROOT,
                    ino_base,
                }
            };
            mounts.mounts.push(Mount {
                path: spec.path,
                writable: spec.writable,
                root,
            });
        }
        Ok(mounts)
    }

    /// No mounts at all.
    pub fn none() -> Mounts {
        Mounts {
            mounts: Vec::new(),
            budget: Arc::new(FilesBudget::new(0, 0)),
            next_ino: 1,
        }
    }

    /// A writable mount's nodes from its image: inodes `ino_base + index`,
    /// contents still slices of the archive.
    fn materialise(&mut self, image: &Arc<MountImage>, ino_base: u64) -> Node {
        let mut root = MemDir::new(
            ino_base,
            image.mtime(MountImage::ROOT).saturating_mul(1_000_000_000),
            self.budget.clone(),
        );
        root.counted = false;
        let root = Arc::new(root);
        let mut stack = vec![(MountImage::ROOT, root.clone())];
        while let Some((index, dir)) = stack.pop() {
            let mut data = lock(&dir.data);
            for child in image.children(index).unwrap_or(0..0) {
                let mtime = image.mtime(child).saturating_mul(1_000_000_000);
                let ino = ino_base + u64::from(child);
                let _ = self.budget.add_entry();
                let node = match image.kind(child) {
                    Kind::Dir => {
                        let sub = Arc::new(MemDir::new(ino, mtime, self.budget.clone()));
                        stack.push((child, sub.clone()));
                        Node::Dir(sub)
                    }
                    Kind::File => {
                        let bytes = image.file_bytes_of(child);
                        let _ = self.budget.grow(bytes.len() as u64);
                        Node::File(Arc::new(MemFile::new(
                            ino,
                            Content::Shared(bytes),
                            mtime,
                            self.budget.clone(),
                        )))
                    }
                };
                data.entries.insert(image.name(child).into(), node);
            }
        }
        Node::Dir(root)
    }

    /// The mounts, in request order.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The execution's budget.
    pub fn budget(&self) -> &Arc<FilesBudget> {
        &self.budget
    }

    fn mount(&self, mount: u32) -> Result<&Mount, FsErr> {
        self.mounts.get(mount as usize).ok_or(FsErr::BadDescriptor)
    }

    fn writable(&self, mount: u32) -> Result<(), FsErr> {
        if self.mount(mount)?.writable {
            Ok(())
        } else {
            Err(FsErr::ReadOnly)
        }
    }

    fn next_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// The child `name` of directory `node`.
    fn child(&self, node: &Node, name: &[u8]) -> Result<Node, FsErr> {
        match node {
            Node::Image {
                image,
                index,
                ino_base,
            } => match image.kind(*index) {
                Kind::File => Err(FsErr::NotDirectory),
                Kind::Dir => image
                    .lookup(*index, name)
                    .map(|index| Node::Image {
                        image: image.clone(),
                        index,
                        ino_base: *ino_base,
                    })
                    .ok_or(FsErr::NoEntry),
            },
            Node::Dir(dir) => {
                let data = lock(&dir.data);
                if data.removed {
                    return Err(FsErr::NoEntry);
                }
                data.entries.get(name).cloned().ok_or(FsErr::NoEntry)
            }
            Node::File(_) => Err(FsErr::NotDirectory),
        }
    }

    /// Walks `components` from `base` with a stack: `..` pops, and popping past
    /// `base` is `NotPermitted` (confinement to the base descriptor).
    fn walk(&self, base: &Node, components: &[&[u8]]) -> Result<Node, FsErr> {
        let mut stack = vec![base.clone()];
        for component in components {
            match *component {
                b"." => {
                    if !stack.last().is_some_and(Node::is_dir) {
                        return Err(FsErr::NotDirectory);
                    }
                }
                b".." => {
                    if stack.len() == 1 {
                        return Err(FsErr::NotPermitted);
                    }
                    stack.pop();
                }
                name => {
                    let top = stack.last().expect("never empty");
                    let next = self.child(top, name)?;
                    stack.push(next);
                }
            }
        }
        Ok(stack.pop().expect("never empty"))
    }

    /// The node `path` names from `base`.
    pub fn lookup(&self, base: &Node, path: &str) -> Result<Node, FsErr> {
        let parsed = parse(path)?;
        let node = self.walk(base, &parsed.components)?;
        if parsed.trailing_slash && !node.is_dir() {
            return Err(FsErr::NotDirectory);
        }
        Ok(node)
    }

    /// The directory that holds the last component of `path`, and that
    /// component (never `.` or `..`: those are `Invalid` here).
    fn parent<'p>(&self, base: &Node, path: &'p str) -> Result<(Node, &'p [u8]), FsErr> {
        let parsed = parse(path)?;
        let Some((last, parents)) = parsed.components.split_last() else {
            return Err(FsErr::Invalid);
        };
        if is_dot(last) {
            return Err(FsErr::Invalid);
        }
        let parent = self.walk(base, parents)?;
        if !parent.is_dir() {
            return Err(FsErr::NotDirectory);
        }
        Ok((parent, last))
    }

    fn mem_dir(node: &Node) -> Result<&Arc<MemDir>, FsErr> {
        match node {
            Node::Dir(dir) => Ok(dir),
            // Image nodes are only in read-only mounts.
            Node::Image { .. } => Err(FsErr::ReadOnly),
            Node::File(_) => Err(FsErr::NotDirectory),
        }
    }

    /// Opens (and with `create`, makes) what `path` names from `base`, in `mount`.
    pub fn open(
        &mut self,
        mount: u32,
        base: &Node,
        path: &str,
        opts: OpenOpts,
    ) -> Result<Node, FsErr> {
        let parsed = parse(path)?;
        let last_is_dot = parsed.components.last().is_none_or(|c| is_dot(c));
        let node = if opts.create && !last_is_dot {
            let (parent, name) = self.parent(base, path)?;
            match self.child(&parent, name) {
                Ok(existing) if opts.exclusive => {
                    drop(existing);
                    return Err(FsErr::Exist);
                }
                Ok(existing) => existing,
                Err(FsErr::NoEntry) => {
                    self.writable(mount)?;
                    if opts.directory || parsed.trailing_slash {
                        return Err(FsErr::Invalid);
                    }
                    let dir = Self::mem_dir(&parent)?.clone();
                    let ino = self.next_ino();
                    let mut data = lock(&dir.data);
                    if data.removed {
                        return Err(FsErr::NoEntry);
                    }
                    self.budget.add_entry().map_err(|_| FsErr::NoSpace)?;
                    let time = now();
                    let file = Node::File(Arc::new(MemFile::new(
                        ino,
                        Content::Owned(Zeroizing::new(Vec::new())),
                        time,
                        self.budget.clone(),
                    )));
                    data.entries.insert(name.into(), file.clone());
                    data.mtime = time;
                    file
                }
                Err(error) => return Err(error),
            }
        } else {
            let node = self.walk(base, &parsed.components)?;
            if opts.create && opts.exclusive {
                return Err(FsErr::Exist);
            }
            node
        };
        if parsed.trailing_slash && !node.is_dir() {
            return Err(FsErr::NotDirectory);
        }
        if opts.directory && !node.is_dir() {
            return Err(FsErr::NotDirectory);
        }
        if node.is_dir() && (opts.write || opts.truncate) {
            return Err(FsErr::IsDirectory);
        }
        if opts.write || opts.truncate {
            self.writable(mount)?;
        }
        if opts.truncate {
            self.set_size(mount, &node, 0)?;
        }
        Ok(node)
    }

    /// Makes the directory `path` names from `base`.
    pub fn create_dir(&mut self, mount: u32, base: &Node, path: &str) -> Result<(), FsErr> {
        let parsed = parse(path)?;
        if parsed.components.last().is_none_or(|c| is_dot(c)) {
            return Err(FsErr::Exist);
        }
        let (parent, name) = self.parent(base, path)?;
        match self.child(&parent, name) {
            Ok(_) => return Err(FsErr::Exist),
            Err(FsErr::NoEntry) => {}
            Err(error) => return Err(error),
        }
        self.writable(mount)?;
        let dir = Self::mem_dir(&parent)?.clone();
        let ino = self.next_ino();
        let mut data = lock(&dir.data);
        if data.removed {
            return Err(FsErr::NoEntry);
        }
        self.budget.add_entry().map_err(|_| FsErr::NoSpace)?;
        let time = now();
        let sub = Node::Dir(Arc::new(MemDir::new(ino, time, self.budget.clone())));
        data.entries.insert(name.into(), sub);
        data.mtime = time;
        Ok(())
    }

    /// Removes the empty directory `path` names from `base`.
    pub fn remove_dir(&mut self, mount: u32, base: &Node, path: &str) -> Result<(), FsErr> {
        let (parent, name) = self.parent(base, path)?;
        let node = self.child(&parent, name)?;
        self.writable(mount)?;
        let Node::Dir(target) = &node else {
            return Err(FsErr::NotDirectory);
        };
        {
            let mut target = lock(&target.data);
            if !target.entries.is_empty() {
                return Err(FsErr::NotEmpty);
            }
            target.removed = true;
        }
        let parent = Self::mem_dir(&parent)?;
        let mut data = lock(&parent.data);
        data.entries.remove(name);
        data.mtime = now();
        Ok(())
    }

    /// Removes the file `path` names from `base`; open descriptors keep it.
    pub fn unlink(&mut self, mount: u32, base: &Node, path: &str) -> Result<(), FsErr> {
        let (parent, name) = self.parent(base, path)?;
        let node = self.child(&parent, name)?;
        self.writable(mount)?;
        if node.is_dir() {
            return Err(FsErr::IsDirectory);
        }
        let parent = Self::mem_dir(&parent)?;
        let mut data = lock(&parent.data);
        data.entries.remove(name);
        data.mtime = now();
        Ok(())
    }

    /// Whether directory `inner` is `outer` or inside it.
    fn inside(outer: &Arc<MemDir>, inner: &Node) -> bool {
        let mut stack = vec![outer.clone()];
        while let Some(dir) = stack.pop() {
            if let Node::Dir(candidate) = inner
                && Arc::ptr_eq(&dir, candidate)
            {
                return true;
            }
            let data = lock(&dir.data);
            for child in data.entries.values() {
                if let Node::Dir(sub) = child {
                    stack.push(sub.clone());
                }
            }
        }
        false
    }

    /// Renames `from_path` (from `from_base` in `from_mount`) to `to_path`.
    /// Across mounts: `CrossDevice`.
    #[allow(clippy::too_many_arguments)]
    pub fn rename(
        &mut self,
        from_mount: u32,
        from_base: &Node,
        from_path: &str,
        to_mount: u32,
        to_base: &Node,
        to_path: &str,
    ) -> Result<(), FsErr> {
        let (from_parent, from_name) = self.parent(from_base, from_path)?;
        let (to_parent, to_name) = self.parent(to_base, to_path)?;
        let source = self.child(&from_parent, from_name)?;
        if from_mount != to_mount {
            return Err(FsErr::CrossDevice);
        }
        self.writable(from_mount)?;
        let existing = match self.child(&to_parent, to_name) {
            Ok(node) => Some(node),
            Err(FsErr::NoEntry) => None,
            Err(error) => return Err(error),
        };
        if let Some(existing) = &existing {
            if existing.same(&source) {
                return Ok(());
            }
            match (source.is_dir(), existing) {
                (false, existing) if existing.is_dir() => return Err(FsErr::IsDirectory),
                (true, existing) if !existing.is_dir() => return Err(FsErr::NotDirectory),
                (true, Node::Dir(dir)) if !lock(&dir.data).entries.is_empty() => {
                    return Err(FsErr::NotEmpty);
                }
                _ => {}
            }
        }
        if let Node::Dir(source_dir) = &source
            && Self::inside(source_dir, &to_parent)
        {
            return Err(FsErr::Invalid);
        }
        let from_dir = Self::mem_dir(&from_parent)?.clone();
        let to_dir = Self::mem_dir(&to_parent)?.clone();
        if lock(&to_dir.data).removed {
            return Err(FsErr::NoEntry);
        }
        let time = now();
        {
            let mut data = lock(&from_dir.data);
            data.entries.remove(from_name);
            data.mtime = time;
        }
        let mut data = lock(&to_dir.data);
        if let Some(Node::Dir(replaced)) = data.entries.insert(to_name.into(), source) {
            lock(&replaced.data).removed = true;
        }
        data.mtime = time;
        Ok(())
    }

    /// A node's metadata; `mount` gives its device number.
    pub fn stat(&self, mount: u32, node: &Node) -> Stat {
        let (mtime, atime) = match node {
            Node::Image { image, index, .. } => {
                let mtime = image.mtime(*index).saturating_mul(1_000_000_000);
                (mtime, mtime)
            }
            Node::Dir(dir) => {
                let data = lock(&dir.data);
                (data.mtime, data.atime)
            }
            Node::File(file) => {
                let data = lock(&file.data);
                (data.mtime, data.atime)
            }
        };
        Stat {
            kind: node.kind(),
            size: node.size(),
            ino: node.ino(),
            dev: u64::from(mount) + 1,
            mtime,
            atime,
        }
    }

    /// Sets a node's access and modification times (`None`: unchanged).
    pub fn set_times(
        &self,
        mount: u32,
        node: &Node,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> Result<(), FsErr> {
        self.writable(mount)?;
        match node {
            Node::Image { .. } => Err(FsErr::ReadOnly),
            Node::Dir(dir) => {
                let mut data = lock(&dir.data);
                data.atime = atime.unwrap_or(data.atime);
                data.mtime = mtime.unwrap_or(data.mtime);
                Ok(())
            }
            Node::File(file) => {
                let mut data = lock(&file.data);
                data.atime = atime.unwrap_or(data.atime);
                data.mtime = mtime.unwrap_or(data.mtime);
                Ok(())
            }
        }
    }

    /// At most `max` bytes of a file from `offset` (fewer at its end).
    pub fn read(&self, node: &Node, offset: u64, max: usize) -> Result<Zeroizing<Vec<u8>>, FsErr> {
        self.read_with(node, offset, max, |bytes| Zeroizing::new(bytes.to_vec()))
    }

    /// Calls `f` with at most `max` bytes of a file from `offset` (fewer at its
    /// end), without copying them first.
    pub fn read_with<R>(
        &self,
        node: &Node,
        offset: u64,
        max: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, FsErr> {
        node.read_with(offset, max, f)
    }

    /// Calls `f` with a file's whole contents (empty for a directory).
    pub fn with_contents<R>(&self, node: &Node, f: impl FnOnce(&[u8]) -> R) -> R {
        match node {
            Node::Image { image, index, .. } => f(&image.file_bytes_of(*index)),
            Node::Dir(_) => f(&[]),
            Node::File(file) => f(lock(&file.data).content.as_slice()),
        }
    }

    /// Writes `bytes` at `offset` of a file: all of them, or (past `files_bytes`)
    /// none and `NoSpace`.
    pub fn write(&self, mount: u32, node: &Node, offset: u64, bytes: &[u8]) -> Result<u64, FsErr> {
        self.writable(mount)?;
        match node {
            Node::Image { .. } => Err(FsErr::ReadOnly),
            Node::Dir(_) => Err(FsErr::IsDirectory),
            Node::File(file) => file.write(offset, bytes),
        }
    }

    /// Sets a file's length; growth is charged in full.
    pub fn set_size(&self, mount: u32, node: &Node, len: u64) -> Result<(), FsErr> {
        self.writable(mount)?;
        match node {
            Node::Image { .. } => Err(FsErr::ReadOnly),
            Node::Dir(_) => Err(FsErr::IsDirectory),
            Node::File(file) => file.set_size(len),
        }
    }

    /// A directory's entries, sorted by name bytes.
    pub fn list(&self, node: &Node) -> Result<Vec<DirEntry>, FsErr> {
        self.list_range(node, 0, usize::MAX)
    }

    /// At most `take` of a directory's entries (sorted by name bytes) after the
    /// first `skip`: what one `fd_readdir` call can return, without listing the
    /// rest of a large directory each time.
    pub fn list_range(
        &self,
        node: &Node,
        skip: usize,
        take: usize,
    ) -> Result<Vec<DirEntry>, FsErr> {
        match node {
            Node::Image {
                image,
                index,
                ino_base,
            } => {
                let children = image.children(*index).ok_or(FsErr::NotDirectory)?;
                Ok(children
                    .skip(skip)
                    .take(take)
                    .map(|child| DirEntry {
                        name: image.name(child).to_vec(),
                        kind: image.kind(child),
                        ino: ino_base + u64::from(child),
                    })
                    .collect())
            }
            Node::Dir(dir) => Ok(lock(&dir.data)
                .entries
                .iter()
                .skip(skip)
                .take(take)
                .map(|(name, node)| DirEntry {
                    name: name.to_vec(),
                    kind: node.kind(),
                    ino: node.ino(),
                })
                .collect()),
            Node::File(_) => Err(FsErr::NotDirectory),
        }
    }

    /// Every file and directory under a mount's root (the root not listed), with
    /// its path from the root, sorted by path bytes (a parent before its
    /// children). Paths longer than [`MAX_PATH_BYTES`] are left out, and what is
    /// under them: a guest can nest deeper through directory descriptors, and
    /// listing every path of a deep chain would take memory quadratic in its depth.
    pub fn walk_mount(&self, mount: u32) -> Vec<(Vec<u8>, Node)> {
        let mut out = Vec::new();
        if let Some(mount) = self.mounts.get(mount as usize) {
            walk_sorted(&mount.root, |path, node| {
                out.push((path.to_vec(), node.clone()));
                ControlFlow::Continue(())
            });
        }
        out
    }
}

/// One step of [`walk_sorted`] in a directory: a child itself, or (for a
/// directory) what is under it, whose paths all start with `name/`.
struct Step {
    name: Box<[u8]>,
    node: Node,
    under: bool,
}

impl Step {
    /// Where its paths sort among its siblings': at `name` for the child, at
    /// `name/` for what is under it.
    fn key(&self) -> impl Iterator<Item = &u8> {
        self.name.iter().chain(self.under.then_some(&b'/'))
    }
}

/// A directory's children as [`walk_sorted`]'s steps, in its order; nothing for
/// a file or a removed directory.
fn steps(dir: &Node) -> Vec<Step> {
    let children: Vec<(Box<[u8]>, Node)> = match dir {
        Node::Image {
            image,
            index,
            ino_base,
        } => image
            .children(*index)
            .into_iter()
            .flatten()
            .map(|child| {
                let node = Node::Image {
                    image: image.clone(),
                    index: child,
                    ino_base: *ino_base,
                };
                (image.name(child).into(), node)
            })
            .collect(),
        Node::Dir(dir) => {
            let data = lock(&dir.data);
            if data.removed {
                return Vec::new();
            }
            data.entries
                .iter()
                .map(|(name, node)| (name.clone(), node.clone()))
                .collect()
        }
        Node::File(_) => return Vec::new(),
    };
    let mut steps = Vec::with_capacity(children.len() * 2);
    for (name, node) in children {
        if node.is_dir() {
            steps.push(Step {
                name: name.clone(),
                node: node.clone(),
                under: true,
            });
        }
        steps.push(Step {
            name,
            node,
            under: false,
        });
    }
    steps.sort_by(|a, b| a.key().cmp(b.key()));
    steps
}

/// Calls `visit` with every file and directory under `root` (the root not
/// listed) and its path from the root, in the order of path bytes (a parent
/// before its children), leaving out paths longer than [`MAX_PATH_BYTES`] and
/// what is under them, as [`Mounts::walk_mount`] lists them; without holding
/// every path at once. A depth-first walk gives that order if, among siblings,
/// a directory's subtree is placed where `name/` sorts, not where `name` does
/// (`b-c` comes between `b` and `b/a`): so the walk holds, for each directory
/// on the current path, its remaining children and one path buffer, never the
/// whole listing. `visit` may stop the walk. Read-only: for a tree nothing
/// changes any more (a guest that has ended).
pub fn walk_sorted(root: &Node, mut visit: impl FnMut(&[u8], &Node) -> ControlFlow<()>) {
    let mut path: Vec<u8> = Vec::new();
    // Each level: its remaining steps (reversed, to pop), and the length of its
    // directory's path with the `/` after it (0 at the root).
    let mut levels: Vec<(Vec<Step>, usize)> = vec![(reversed(steps(root)), 0)];
    while let Some((pending, prefix)) = levels.last_mut() {
        let prefix = *prefix;
        let Some(step) = pending.pop() else {
            levels.pop();
            continue;
        };
        path.truncate(prefix);
        path.extend_from_slice(&step.name);
        if path.len() > MAX_PATH_BYTES {
            continue;
        }
        if step.under {
            path.push(b'/');
            levels.push((reversed(steps(&step.node)), path.len()));
        } else if visit(&path, &step.node).is_break() {
            return;
        }
    }
}

fn reversed<T>(mut items: Vec<T>) -> Vec<T> {
    items.reverse();
    items
}

#[cfg(test)]
mod tests {
    use super::super::image::tests::member;
    use super::super::image::{MemberKind, MountImage};
    use super::*;

    fn image() -> Arc<MountImage> {
        Arc::new(
            MountImage::build(
                Bytes::from_static(b"hello world"),
                vec![
                    member("in.txt", MemberKind::File(0..5)),
                    member("sub/deep.txt", MemberKind::File(6..11)),
                ],
            )
            .unwrap(),
        )
    }

    /// A read-only mount of `image()` at `/in` (0) and a writable one at `/out`
    /// (1) starting from the same image.
    fn mounts(files_bytes: u64, entries: u32) -> Mounts {
        Mounts::new(
            vec![
                MountSpec {
                    path: "/in".into(),
                    writable: false,
                    image: Some(image()),
                },
                MountSpec {
                    path: "/out".into(),
                    writable: true,
                    image: Some(image()),
                },
            ],
            files_bytes,
            entries,
        )
        .unwrap()
    }

    fn root(m: &Mounts, i: usize) -> Node {
        m.mounts()[i].root.clone()
    }

    const WRITE: OpenOpts = OpenOpts {
        create: true,
        exclusive: false,
        truncate: false,
        directory: false,
        write: true,
    };

    #[test]
    fn paths_resolve_inside_the_base_descriptor_only() {
        let m = mounts(1 << 20, 100);
        let base = root(&m, 0);
        let sub = m.lookup(&base, "sub").unwrap();
        let deep = m.lookup(&sub, "./deep.txt").unwrap();
        assert_eq!(&m.read(&deep, 0, 100).unwrap()[..], b"world");
        assert_eq!(
            m.lookup(&base, "sub/../in.txt").unwrap().ino(),
            m.lookup(&base, "in.txt").unwrap().ino()
        );
        assert_eq!(
            m.lookup(&base, "sub//deep.txt/").unwrap_err(),
            FsErr::NotDirectory
        );
        assert_eq!(m.lookup(&base, "nope").unwrap_err(), FsErr::NoEntry);
        assert_eq!(
            m.lookup(&base, "in.txt/x").unwrap_err(),
            FsErr::NotDirectory
        );
        assert_eq!(m.lookup(&base, "").unwrap_err(), FsErr::NoEntry);
        assert_eq!(m.lookup(&base, "a\0b").unwrap_err(), FsErr::Invalid);
        let long = "x".repeat(256);
        assert_eq!(m.lookup(&base, &long).unwrap_err(), FsErr::NameTooLong);
        let deep_path = "a/".repeat(2049);
        assert_eq!(m.lookup(&base, &deep_path).unwrap_err(), FsErr::NameTooLong);
    }

    #[test]
    fn dot_dot_above_the_base_is_not_permitted() {
        let m = mounts(1 << 20, 100);
        let base = root(&m, 0);
        let sub = m.lookup(&base, "sub").unwrap();
        assert_eq!(m.lookup(&base, "..").unwrap_err(), FsErr::NotPermitted);
        assert_eq!(
            m.lookup(&sub, "../../in.txt").unwrap_err(),
            FsErr::NotPermitted
        );
        assert_eq!(
            m.lookup(&base, "sub/../../in.txt").unwrap_err(),
            FsErr::NotPermitted
        );
        assert!(m.lookup(&base, "sub/../in.txt").is_ok());
    }

    #[test]
    fn absolute_paths_are_not_permitted() {
        let m = mounts(1 << 20, 100);
        let base = root(&m, 0);
        assert_eq!(m.lookup(&base, "/in.txt").unwrap_err(), FsErr::NotPermitted);
        assert_eq!(m.lookup(&base, "/").unwrap_err(), FsErr::NotPermitted);
    }

    #[test]
    fn read_only_mounts_refuse_every_mutation() {
        let mut m = mounts(1 << 20, 100);
        let base = root(&m, 0);
        let file = m.lookup(&base, "in.txt").unwrap();
        assert_eq!(m.open(0, &base, "new", WRITE).unwrap_err(), FsErr::ReadOnly);
        let write_existing = OpenOpts {
            create: false,
            ..WRITE
        };
        assert_eq!(
            m.open(0, &base, "in.txt", write_existing).unwrap_err(),
            FsErr::ReadOnly
        );
        assert_eq!(m.create_dir(0, &base, "d").unwrap_err(), FsErr::ReadOnly);
        assert_eq!(m.remove_dir(0, &base, "sub").unwrap_err(), FsErr::ReadOnly);
        assert_eq!(m.unlink(0, &base, "in.txt").unwrap_err(), FsErr::ReadOnly);
        assert_eq!(
            m.rename(0, &base, "in.txt", 0, &base, "x").unwrap_err(),
            FsErr::ReadOnly
        );
        assert_eq!(m.write(0, &file, 0, b"x").unwrap_err(), FsErr::ReadOnly);
        assert_eq!(m.set_size(0, &file, 0).unwrap_err(), FsErr::ReadOnly);
        assert_eq!(
            m.set_times(0, &file, Some(1), None).unwrap_err(),
            FsErr::ReadOnly
        );
        assert_eq!(&m.read(&file, 0, 10).unwrap()[..], b"hello");
    }

    #[test]
    fn a_write_past_files_bytes_fails_and_changes_nothing() {
        // Two mounts of 10 bytes each: 20 of 25 used.
        let mut m = mounts(25, 100);
        let base = root(&m, 1);
        let file = m.open(1, &base, "new", WRITE).unwrap();
        assert_eq!(m.write(1, &file, 0, b"12345").unwrap(), 5);
        assert_eq!(m.budget().used().0, 25);
        assert_eq!(m.write(1, &file, 5, b"6").unwrap_err(), FsErr::NoSpace);
        assert_eq!(m.write(1, &file, 3, b"abc").unwrap_err(), FsErr::NoSpace);
        assert_eq!(&m.read(&file, 0, 100).unwrap()[..], b"12345");
        assert_eq!(m.budget().used().0, 25);
        // Overwriting inside the file costs nothing.
        assert_eq!(m.write(1, &file, 0, b"ab").unwrap(), 2);
        assert_eq!(&m.read(&file, 0, 100).unwrap()[..], b"ab345");
    }

    #[test]
    fn set_size_growth_counts_in_full() {
        let mut m = mounts(1020, 100);
        let base = root(&m, 1);
        let file = m.open(1, &base, "sparse", WRITE).unwrap();
        m.set_size(1, &file, 1000).unwrap();
        assert_eq!(m.budget().used().0, 1020);
        assert_eq!(m.set_size(1, &file, 1001).unwrap_err(), FsErr::NoSpace);
        assert_eq!(m.write(1, &file, 2000, b"x").unwrap_err(), FsErr::NoSpace);
        m.set_size(1, &file, 10).unwrap();
        assert_eq!(m.budget().used().0, 30);
        assert_eq!(&m.read(&file, 0, 100).unwrap()[..], &[0u8; 10][..]);
    }

    #[test]
    fn unlinking_returns_bytes_when_the_last_handle_closes() {
        let mut m = mounts(1 << 20, 100);
        let base = root(&m, 1);
        let file = m.open(1, &base, "f", WRITE).unwrap();
        m.write(1, &file, 0, &[7; 100]).unwrap();
        let (bytes, entries) = m.budget().used();
        m.unlink(1, &base, "f").unwrap();
        assert_eq!(m.lookup(&base, "f").unwrap_err(), FsErr::NoEntry);
        // Still open: still readable, still charged.
        assert_eq!(m.read(&file, 0, 1000).unwrap().len(), 100);
        assert_eq!(m.budget().used(), (bytes, entries));
        drop(file);
        assert_eq!(m.budget().used(), (bytes - 100, entries - 1));
        // An archive file of the writable mount gives back its bytes too.
        m.unlink(1, &base, "in.txt").unwrap();
        assert_eq!(m.budget().used(), (bytes - 105, entries - 2));
    }

    #[test]
    fn entries_past_max_mount_entries_are_no_space() {
        // 3 entries per image (in.txt, sub, sub/deep.txt); roots are not counted.
        let mut m = mounts(1 << 20, 7);
        let base = root(&m, 1);
        m.create_dir(1, &base, "d").unwrap();
        assert_eq!(m.create_dir(1, &base, "e").unwrap_err(), FsErr::NoSpace);
        assert_eq!(m.open(1, &base, "f", WRITE).unwrap_err(), FsErr::NoSpace);
        m.remove_dir(1, &base, "d").unwrap();
        m.open(1, &base, "f", WRITE).unwrap();
        // Initial contents over the limit are refused when mounting.
        let over = Mounts::new(
            vec![MountSpec {
                path: "/in".into(),
                writable: false,
                image: Some(image()),
            }],
            1 << 20,
            2,
        );
        assert!(matches!(
            over,
            Err(MountError::Entries {
                entries: 3,
                limit: 2
            })
        ));
        let over = Mounts::new(
            vec![MountSpec {
                path: "/in".into(),
                writable: false,
                image: Some(image()),
            }],
            9,
            100,
        );
        assert!(matches!(
            over,
            Err(MountError::FilesBytes {
                bytes: 10,
                limit: 9
            })
        ));
    }

    #[test]
    fn renames_across_mounts_are_cross_device() {
        let mut m = mounts(1 << 20, 100);
        let (input, output) = (root(&m, 0), root(&m, 1));
        assert_eq!(
            m.rename(0, &input, "in.txt", 1, &output, "x").unwrap_err(),
            FsErr::CrossDevice
        );
        assert_eq!(
            m.rename(1, &output, "in.txt", 0, &input, "x").unwrap_err(),
            FsErr::CrossDevice
        );
        m.rename(1, &output, "in.txt", 1, &output, "sub/moved.txt")
            .unwrap();
        let moved = m.lookup(&output, "sub/moved.txt").unwrap();
        assert_eq!(&m.read(&moved, 0, 10).unwrap()[..], b"hello");
        assert_eq!(m.lookup(&output, "in.txt").unwrap_err(), FsErr::NoEntry);
        // A file over a directory and the reverse.
        m.create_dir(1, &output, "d").unwrap();
        assert_eq!(
            m.rename(1, &output, "sub/moved.txt", 1, &output, "d")
                .unwrap_err(),
            FsErr::IsDirectory
        );
        assert_eq!(
            m.rename(1, &output, "d", 1, &output, "sub/moved.txt")
                .unwrap_err(),
            FsErr::NotDirectory
        );
        assert_eq!(
            m.rename(1, &output, "d", 1, &output, "sub").unwrap_err(),
            FsErr::NotEmpty
        );
    }

    #[test]
    fn a_directory_cannot_move_into_itself() {
        let mut m = mounts(1 << 20, 100);
        let base = root(&m, 1);
        m.create_dir(1, &base, "sub/inner").unwrap();
        assert_eq!(
            m.rename(1, &base, "sub", 1, &base, "sub/inner/x")
                .unwrap_err(),
            FsErr::Invalid
        );
        assert_eq!(
            m.rename(1, &base, "sub", 1, &base, "sub/x").unwrap_err(),
            FsErr::Invalid
        );
        m.rename(1, &base, "sub", 1, &base, "moved").unwrap();
        assert!(m.lookup(&base, "moved/inner").unwrap().is_dir());
    }

    #[test]
    fn readdir_is_sorted_by_name() {
        let mut m = mounts(1 << 20, 100);
        let base = root(&m, 1);
        for name in ["zeta", "Alpha", "beta", "a-b", "a"] {
            m.open(1, &base, name, WRITE).unwrap();
        }
        let names: Vec<Vec<u8>> = m.list(&base).unwrap().into_iter().map(|e| e.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 7);
        let ro: Vec<Vec<u8>> = m
            .list(&root(&m, 0))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(ro, [b"in.txt".to_vec(), b"sub".to_vec()]);
    }

    #[test]
    fn writing_a_shared_archive_file_copies_it_once() {
        let m = mounts(1 << 20, 100);
        let base = root(&m, 1);
        let file = m.lookup(&base, "in.txt").unwrap();
        let Node::File(mem) = &file else {
            panic!("a writable mount's file is a MemFile")
        };
        assert!(matches!(lock(&mem.data).content, Content::Shared(_)));
        let before = m.budget().used();
        m.write(1, &file, 0, b"J").unwrap();
        assert!(matches!(lock(&mem.data).content, Content::Owned(_)));
        assert_eq!(m.budget().used(), before);
        m.write(1, &file, 1, b"E").unwrap();
        assert_eq!(&m.read(&file, 0, 10).unwrap()[..], b"JEllo");
        // The read-only mount of the same image still reads the archive's bytes.
        let ro = m.lookup(&root(&m, 0), "in.txt").unwrap();
        assert_eq!(&m.read(&ro, 0, 10).unwrap()[..], b"hello");
    }

    #[test]
    fn two_hundred_thousand_nested_directories_drop_without_recursion() {
        let mut m = mounts(1 << 20, 300_000);
        let mut dir = root(&m, 1);
        let depth = 200_000;
        for _ in 0..depth {
            m.create_dir(1, &dir, "d").unwrap();
            dir = m.lookup(&dir, "d").unwrap();
        }
        assert_eq!(m.budget().used().1, 6 + depth);
        drop(dir);
        // The image's 3 entries, then "d", "d/d", ... down to paths of 4,096
        // bytes: 2,048 of them (the k-th is 2k - 1 bytes long).
        let listed = m.walk_mount(1);
        assert_eq!(listed.len(), 3 + 2048);
        assert!(listed.iter().all(|(path, _)| path.len() <= MAX_PATH_BYTES));
        m.remove_dir(1, &root(&m, 1), "d").unwrap_err();
        drop(m);
    }

    /// Siblings whose names continue with bytes below `/` (`-`, `.`, space)
    /// interleave with a directory's contents in path-byte order: `b`, `b-c`,
    /// `b.d`, `b/a`, `b0`. The walk gives exactly the order of sorting every
    /// path, for read-only (image) and writable mounts alike.
    #[test]
    fn the_walk_lists_paths_in_byte_order_without_sorting_them_all() {
        let mut m = mounts(1 << 20, 1000);
        let base = root(&m, 1);
        for dir in ["b", "b/x", "b-c", "b.d", "a b", "a", "a/ b", "a/!"] {
            m.create_dir(1, &base, dir).unwrap();
        }
        for file in [
            "b/a", "b/x/y", "b/x-", "b0", "b-c/z", "a/b", "a!", "a/a", "é", "~",
        ] {
            m.open(1, &base, file, WRITE).unwrap();
        }
        for mount in [0, 1] {
            // Every path, found by a plain recursive listing, then sorted.
            let mut expected = Vec::new();
            let mut pending = vec![(Vec::new(), root(&m, mount))];
            while let Some((path, node)) = pending.pop() {
                for entry in m.list(&node).unwrap_or_default() {
                    let mut child_path = path.clone();
                    if !child_path.is_empty() {
                        child_path.push(b'/');
                    }
                    child_path.extend_from_slice(&entry.name);
                    let child = m.child(&node, &entry.name).unwrap();
                    if child.is_dir() {
                        pending.push((child_path.clone(), child));
                    }
                    expected.push(child_path);
                }
            }
            expected.sort();
            let walked: Vec<Vec<u8>> = m
                .walk_mount(mount as u32)
                .into_iter()
                .map(|(path, _)| path)
                .collect();
            assert_eq!(walked, expected, "mount {mount}");
        }
        let listed: Vec<String> = m
            .walk_mount(1)
            .into_iter()
            .map(|(path, _)| String::from_utf8(path).unwrap())
            .collect();
        assert_eq!(
            &listed[..12],
            [
                "a", "a b", "a!", "a/ b", "a/!", "a/a", "a/b", "b", "b-c", "b-c/z", "b.d", "b/a"
            ]
        );
        // A walk may stop early.
        let mut seen = 0;
        walk_sorted(&base, |_, _| {
            seen += 1;
            if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(seen, 3);
    }

    #[test]
    fn inodes_are_deterministic_in_mount_then_creation_order() {
        let mut m = mounts(1 << 20, 100);
        assert_eq!(root(&m, 0).ino(), 1);
        // 3 entries in the first image, + its root: the second mount starts at 5.
        assert_eq!(root(&m, 1).ino(), 5);
        let base = root(&m, 1);
        let new = m.open(1, &base, "new", WRITE).unwrap();
        assert_eq!(new.ino(), 9);
        assert_eq!(m.stat(1, &new).dev, 2);
    }
}
