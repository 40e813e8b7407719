//! The nodes of the execution's file system: [`Node`] (an image's entry, or a
//! writable mount's [`MemDir`] or [`MemFile`]), a file's [`Content`] (the
//! archive's bytes until first written, then its own, zeroized), and the
//! accounting against the execution's [`FilesBudget`]: growth charged before it
//! is allocated, bytes and entries given back when a node drops.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use zeroize::Zeroizing;

use super::Timestamp;
use crate::sandbox::fs::FsErr;
use crate::sandbox::fs::budget::FilesBudget;
use crate::sandbox::fs::image::{EntryKind, MountImage};

/// Now, in nanoseconds since the Unix epoch.
pub(super) fn now() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `mutex`, locked, poisoned or not.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
pub(crate) type Kind = EntryKind;

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
    pub(super) data: Mutex<DirData>,
    ino: u64,
    budget: Arc<FilesBudget>,
    /// A mount's root is not an entry of the budget.
    pub(super) counted: bool,
}

pub(super) struct DirData {
    pub(super) entries: BTreeMap<Box<[u8]>, Node>,
    pub(super) mtime: Timestamp,
    pub(super) atime: Timestamp,
    /// Removed from its parent; still usable through an open descriptor, but
    /// nothing can be created in it.
    pub(super) removed: bool,
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
    pub(super) fn new(ino: u64, mtime: Timestamp, budget: Arc<FilesBudget>) -> MemDir {
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
    pub(super) data: Mutex<FileData>,
    ino: u64,
    budget: Arc<FilesBudget>,
}

pub(super) struct FileData {
    pub(super) content: Content,
    pub(super) mtime: Timestamp,
    pub(super) atime: Timestamp,
}

/// A file's bytes: still the archive's (shared, no copy) or the file's own.
pub(crate) enum Content {
    Shared(Bytes),
    Owned(Zeroizing<Vec<u8>>),
}

impl Content {
    pub(crate) fn len(&self) -> usize {
        match self {
            Content::Shared(bytes) => bytes.len(),
            Content::Owned(vec) => vec.len(),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
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
    pub(super) fn new(
        ino: u64,
        content: Content,
        mtime: Timestamp,
        budget: Arc<FilesBudget>,
    ) -> MemFile {
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
    pub(super) fn write(&self, offset: u64, bytes: &[u8]) -> Result<u64, FsErr> {
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

    pub(super) fn set_size(&self, len: u64) -> Result<(), FsErr> {
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
