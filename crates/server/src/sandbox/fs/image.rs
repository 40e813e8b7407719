//! `MountImage`: an immutable, validated archive tree that shares the archive's
//! bytes. Built once per archive ([`super::archive::read_image`], member by member
//! through an [`ImageBuilder`], which counts every file and directory it makes
//! against `max_mount_entries` as it makes it) and shared
//! read-only (`Arc`) by every execution that mounts it: a read-only mount is never
//! copied per execution, and a file's contents are a zero-copy slice of the
//! archive. Each directory's children are contiguous in `entries` and sorted by
//! name bytes, so a lookup is a binary search.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;

use bytes::Bytes;

/// One member of an archive, checked for shape by the caller: `path` is its
/// non-empty components (no `.`, `..`, empty or NUL-holding ones).
#[derive(Debug, Clone)]
pub struct ImageMember {
    pub path: Vec<Vec<u8>>,
    pub kind: MemberKind,
    /// Seconds since the Unix epoch.
    pub mtime: u64,
}

/// A member's type: a directory, or a file whose data is a range of the archive.
#[derive(Debug, Clone)]
pub enum MemberKind {
    Dir,
    File(Range<u64>),
}

/// Why members do not make a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Two members have the same path.
    #[error("`{path}` is in the archive twice")]
    Duplicate { path: String },
    /// A member's path goes through a regular file.
    #[error("`{path}` is under `{file}`, which is a file")]
    UnderFile { path: String, file: String },
    /// A file's data range is outside the archive.
    #[error("`{path}` claims bytes past the end of the archive")]
    DataMissing { path: String },
    /// Making this member (or a parent directory it implies) would pass the
    /// bound on files and directories.
    #[error(
        "`{path}` makes more than {max} files and directories, counting the parent \
         directories members imply (limits.max_mount_entries)"
    )]
    TooManyEntries { path: String, max: u32 },
}

#[derive(Debug, Clone)]
struct ImageEntry {
    name: Range<u32>,
    mtime: u64,
    kind: ImageKind,
}

#[derive(Debug, Clone)]
enum ImageKind {
    Dir { children: Range<u32> },
    File { data: Range<u64> },
}

/// The kind of an image entry, as the file system sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
}

/// A validated archive tree over the archive's bytes. Entry 0 is the root.
#[derive(Clone)]
pub struct MountImage {
    entries: Vec<ImageEntry>,
    names: Vec<u8>,
    archive: Bytes,
    file_bytes: u64,
}

impl std::fmt::Debug for MountImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and contents are plaintext-derived: counts only.
        f.debug_struct("MountImage")
            .field("entries", &self.entry_count())
            .field("file_bytes", &self.file_bytes)
            .finish()
    }
}

/// A node made so far: the root is node 0.
struct BuildNode {
    parent: u32,
    name: Range<u32>,
    mtime: u64,
    kind: BuildKind,
    /// The node made before this one whose (parent, name) hashed the same, or
    /// [`NO_NODE`]: the lookup's collision chain.
    next_same_hash: u32,
}

enum BuildKind {
    /// `explicit`: the archive has a member for it (not only members under it).
    Dir {
        explicit: bool,
    },
    File {
        data: Range<u64>,
    },
}

/// Where a node is or would be: its directory, its name, and the hash of both.
struct Child<'a> {
    parent: u32,
    name: &'a [u8],
    hash: u64,
}

/// The end of a collision chain.
const NO_NODE: u32 = u32::MAX;

/// Names shown in errors are cut to this many characters (a path may have 4,096).
const SHOWN_CHARS: usize = 200;

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path)
        .chars()
        .take(SHOWN_CHARS)
        .collect()
}

/// Builds a [`MountImage`] member by member while the archive is read, so that
/// the first bound passed stops the reading.
///
/// Every file and directory it makes counts against `max_entries` as it is
/// made, the parent directories a member implies included: an archive cannot
/// make more than `max_entries` nodes, whatever its members (a member 2,040
/// directories deep implies 2,040 of them). A node keeps its name's bytes once;
/// since each node's name is the bytes of some member's path, the names take no
/// more than the archive does.
///
/// The work per member is its path's length: a member is looked up from the
/// deepest directory it shares with the member before it (a memcmp), and each
/// further component is one hash lookup. Archives list a directory's contents
/// together, so a deep tree is not walked again from the root for each member.
pub(crate) struct ImageBuilder {
    archive: Bytes,
    max_entries: u32,
    nodes: Vec<BuildNode>,
    names: Vec<u8>,
    /// The hash of (parent, name) → the newest node with that hash; older ones
    /// follow `next_same_hash`. Keyed with the process's random `RandomState`, so
    /// an archive cannot choose collisions.
    lookup: HashMap<u64, u32>,
    hasher: RandomState,
    file_bytes: u64,
    /// The previous member's path, and the directories on it: (the end of the
    /// component in `previous`, its node), shallowest first.
    previous: Vec<u8>,
    chain: Vec<(usize, u32)>,
    /// Hash lookups made, for the test that a shared prefix is not walked again.
    #[cfg(test)]
    lookups: usize,
}

impl ImageBuilder {
    /// An empty tree over `archive` that will hold at most `max_entries` files
    /// and directories (the root not counted).
    pub(crate) fn new(archive: Bytes, max_entries: u32) -> ImageBuilder {
        ImageBuilder {
            archive,
            // Node ids are u32 and `NO_NODE` is not one.
            max_entries: max_entries.min(NO_NODE - 1),
            nodes: vec![BuildNode {
                parent: 0,
                name: 0..0,
                mtime: 0,
                kind: BuildKind::Dir { explicit: true },
                next_same_hash: NO_NODE,
            }],
            names: Vec::new(),
            lookup: HashMap::new(),
            hasher: RandomState::new(),
            file_bytes: 0,
            previous: Vec::new(),
            chain: Vec::new(),
            #[cfg(test)]
            lookups: 0,
        }
    }

    /// Files and directories made so far, the root not counted.
    pub(crate) fn entry_count(&self) -> u32 {
        (self.nodes.len() - 1) as u32
    }

    /// Adds the member at `path`: its components separated by `/`, each
    /// non-empty and not `.` or `..` (the caller checks). Its missing parent
    /// directories are made (mtime 0); a duplicate, a member under a file, a
    /// file's data outside the archive, or an entry past `max_entries` is an
    /// error, and the builder is not to be used after one.
    pub(crate) fn add(
        &mut self,
        path: &[u8],
        kind: MemberKind,
        mtime: u64,
    ) -> Result<(), ImageError> {
        let (parents, last) = match path.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&path[..slash], &path[slash + 1..]),
            None => (&path[..0], path),
        };
        let dir = self.parent_dir(path, parents)?;
        let child = self.child(dir, last);
        let existing = self.find(&child);
        match kind {
            MemberKind::File(data) => {
                if data.end > self.archive.len() as u64 || data.start > data.end {
                    return Err(ImageError::DataMissing { path: show(path) });
                }
                if existing.is_some() {
                    return Err(ImageError::Duplicate { path: show(path) });
                }
                let size = data.end - data.start;
                self.make(child, BuildKind::File { data }, mtime, path)?;
                self.file_bytes = self.file_bytes.saturating_add(size);
            }
            MemberKind::Dir => self.add_dir(child, existing, mtime, path)?,
        }
        Ok(())
    }

    /// The directory `parents` (the member `path` without its last component)
    /// names, made with its missing ancestors, walked from the deepest
    /// directory it shares with the previous member.
    fn parent_dir(&mut self, path: &[u8], parents: &[u8]) -> Result<u32, ImageError> {
        // Resume below the deepest directory shared with the previous member.
        let shared = path
            .iter()
            .zip(&self.previous)
            .take_while(|(a, b)| a == b)
            .count();
        let kept = self.chain.partition_point(|&(end, _)| end < shared);
        self.chain.truncate(kept);
        let (mut dir, mut start) = match self.chain.last() {
            Some(&(end, node)) => (node, end + 1),
            None => (ROOT_NODE, 0),
        };
        while start <= parents.len() && !parents.is_empty() {
            let end = parents[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(parents.len(), |at| start + at);
            let component = &parents[start..end];
            let child = self.child(dir, component);
            dir = match self.find(&child) {
                Some(node) => match self.nodes[node as usize].kind {
                    BuildKind::Dir { .. } => node,
                    BuildKind::File { .. } => {
                        return Err(ImageError::UnderFile {
                            path: show(path),
                            file: show(&path[..end]),
                        });
                    }
                },
                None => self.make(child, BuildKind::Dir { explicit: false }, 0, path)?,
            };
            self.chain.push((end, dir));
            start = end + 1;
        }
        self.previous.clear();
        self.previous.extend_from_slice(path);
        Ok(dir)
    }

    /// A directory member at `child` (`existing` if a node is there): new, or
    /// one an earlier member implied, which it now describes; anything else
    /// there is a duplicate.
    fn add_dir(
        &mut self,
        child: Child<'_>,
        existing: Option<u32>,
        mtime: u64,
        path: &[u8],
    ) -> Result<(), ImageError> {
        match existing {
            None => {
                self.make(child, BuildKind::Dir { explicit: true }, mtime, path)?;
            }
            Some(node) => match &mut self.nodes[node as usize] {
                BuildNode {
                    kind: BuildKind::Dir { explicit },
                    mtime: node_mtime,
                    ..
                } if !*explicit => {
                    *explicit = true;
                    *node_mtime = mtime;
                }
                _ => return Err(ImageError::Duplicate { path: show(path) }),
            },
        }
        Ok(())
    }

    fn child<'a>(&self, parent: u32, name: &'a [u8]) -> Child<'a> {
        Child {
            parent,
            name,
            hash: self.hasher.hash_one((parent, name)),
        }
    }

    /// The node at `child`, if there is one.
    fn find(&mut self, child: &Child<'_>) -> Option<u32> {
        #[cfg(test)]
        {
            self.lookups += 1;
        }
        let mut at = *self.lookup.get(&child.hash)?;
        while at != NO_NODE {
            let node = &self.nodes[at as usize];
            if node.parent == child.parent
                && &self.names[node.name.start as usize..node.name.end as usize] == child.name
            {
                return Some(at);
            }
            at = node.next_same_hash;
        }
        None
    }

    /// A new node at `child`, or [`ImageError::TooManyEntries`] if it would be
    /// one too many (`member` names the member that makes it).
    fn make(
        &mut self,
        child: Child<'_>,
        kind: BuildKind,
        mtime: u64,
        member: &[u8],
    ) -> Result<u32, ImageError> {
        let max = self.max_entries;
        let too_many = || ImageError::TooManyEntries {
            path: show(member),
            max,
        };
        if self.entry_count() >= self.max_entries {
            return Err(too_many());
        }
        // Name offsets are u32: at most `max_entries` names of 255 bytes, far
        // below 4 GiB for any `max_mount_entries` the configuration allows.
        let start = u32::try_from(self.names.len()).map_err(|_| too_many())?;
        let end = u32::try_from(self.names.len() + child.name.len()).map_err(|_| too_many())?;
        let id = self.nodes.len() as u32;
        self.names.extend_from_slice(child.name);
        let next_same_hash = self.lookup.insert(child.hash, id).unwrap_or(NO_NODE);
        self.nodes.push(BuildNode {
            parent: child.parent,
            name: start..end,
            mtime,
            kind,
            next_same_hash,
        });
        Ok(id)
    }

    /// The image: breadth first, so that each directory's children are
    /// contiguous, and each directory's children sorted by name bytes.
    pub(crate) fn finish(self) -> MountImage {
        let ImageBuilder {
            archive,
            nodes,
            names,
            lookup,
            file_bytes,
            ..
        } = self;
        drop(lookup);
        let (starts, children) = sorted_children(&nodes, &names);
        MountImage {
            entries: breadth_first(&nodes, &starts, &children),
            names,
            archive,
            file_bytes,
        }
    }
}

/// The children of every node, grouped by parent (a counting sort) and each
/// group sorted by name bytes: node `n`'s are `children[starts[n]..starts[n + 1]]`.
fn sorted_children(nodes: &[BuildNode], names: &[u8]) -> (Vec<u32>, Vec<u32>) {
    let name = |node: u32| {
        let range = &nodes[node as usize].name;
        &names[range.start as usize..range.end as usize]
    };
    let mut starts = vec![0u32; nodes.len() + 1];
    for node in &nodes[1..] {
        starts[node.parent as usize + 1] += 1;
    }
    for at in 1..starts.len() {
        starts[at] += starts[at - 1];
    }
    let mut children = vec![0u32; nodes.len() - 1];
    let mut filled = starts.clone();
    for (id, node) in nodes.iter().enumerate().skip(1) {
        let slot = &mut filled[node.parent as usize];
        children[*slot as usize] = id as u32;
        *slot += 1;
    }
    drop(filled);
    for dir in 0..nodes.len() {
        children[starts[dir] as usize..starts[dir + 1] as usize]
            .sort_unstable_by(|&a, &b| name(a).cmp(name(b)));
    }
    (starts, children)
}

/// The image's entries, breadth first from the root, so that each directory's
/// children are contiguous, in the order [`sorted_children`] gives.
fn breadth_first(nodes: &[BuildNode], starts: &[u32], children: &[u32]) -> Vec<ImageEntry> {
    let mut entries = Vec::with_capacity(nodes.len());
    entries.push(ImageEntry {
        name: 0..0,
        mtime: 0,
        kind: ImageKind::Dir { children: 0..0 },
    });
    // (node, its entry)
    let mut queue = VecDeque::from([(ROOT_NODE, 0usize)]);
    while let Some((dir, entry)) = queue.pop_front() {
        let first = entries.len() as u32;
        for &child in &children[starts[dir as usize] as usize..starts[dir as usize + 1] as usize] {
            let node = &nodes[child as usize];
            let kind = match &node.kind {
                BuildKind::File { data } => ImageKind::File { data: data.clone() },
                BuildKind::Dir { .. } => {
                    queue.push_back((child, entries.len()));
                    ImageKind::Dir { children: 0..0 }
                }
            };
            entries.push(ImageEntry {
                name: node.name.clone(),
                mtime: node.mtime,
                kind,
            });
        }
        entries[entry].kind = ImageKind::Dir {
            children: first..entries.len() as u32,
        };
    }
    entries
}

/// The root's node id in an [`ImageBuilder`].
const ROOT_NODE: u32 = 0;

impl MountImage {
    /// An image of no entries but the root.
    pub fn empty() -> MountImage {
        MountImage::build(Bytes::new(), Vec::new()).expect("no members, no conflicts")
    }

    /// The tree of `members` over `archive`, as [`ImageBuilder`] makes it, with
    /// no bound on its entries.
    pub fn build(archive: Bytes, members: Vec<ImageMember>) -> Result<MountImage, ImageError> {
        let mut builder = ImageBuilder::new(archive, u32::MAX);
        for member in members {
            if member.path.is_empty() {
                continue;
            }
            builder.add(&member.path.join(&b'/'), member.kind, member.mtime)?;
        }
        Ok(builder.finish())
    }

    /// The root directory's index.
    pub const ROOT: u32 = 0;

    /// The child of directory `dir` named `name`: a binary search over its
    /// sorted children. `None` if `dir` is not a directory or has no such child.
    pub fn lookup(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let children = self.children(dir)?;
        let slice = &self.entries[children.start as usize..children.end as usize];
        slice
            .binary_search_by(|entry| self.name_bytes(entry).cmp(name))
            .ok()
            .map(|at| children.start + at as u32)
    }

    /// The index range of a directory's children, sorted by name.
    pub fn children(&self, dir: u32) -> Option<Range<u32>> {
        match &self.entries.get(dir as usize)?.kind {
            ImageKind::Dir { children } => Some(children.clone()),
            ImageKind::File { .. } => None,
        }
    }

    fn name_bytes(&self, entry: &ImageEntry) -> &[u8] {
        &self.names[entry.name.start as usize..entry.name.end as usize]
    }

    /// An entry's name (empty for the root).
    pub fn name(&self, index: u32) -> &[u8] {
        self.entries
            .get(index as usize)
            .map_or(&[][..], |entry| self.name_bytes(entry))
    }

    /// An entry's kind.
    pub fn kind(&self, index: u32) -> EntryKind {
        match self.entries.get(index as usize).map(|entry| &entry.kind) {
            Some(ImageKind::File { .. }) => EntryKind::File,
            _ => EntryKind::Dir,
        }
    }

    /// An entry's mtime, seconds since the epoch.
    pub fn mtime(&self, index: u32) -> u64 {
        self.entries
            .get(index as usize)
            .map_or(0, |entry| entry.mtime)
    }

    /// A file's length (0 for a directory).
    pub fn len(&self, index: u32) -> u64 {
        match self.entries.get(index as usize).map(|entry| &entry.kind) {
            Some(ImageKind::File { data }) => data.end - data.start,
            _ => 0,
        }
    }

    /// A file's contents: a slice of the archive, no copy (empty for a directory).
    pub fn file_bytes_of(&self, file: u32) -> Bytes {
        match self.entries.get(file as usize).map(|entry| &entry.kind) {
            Some(ImageKind::File { data }) => {
                self.archive.slice(data.start as usize..data.end as usize)
            }
            _ => Bytes::new(),
        }
    }

    /// Sum of the regular files' sizes (charged to `files_bytes`).
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Files and directories, the root not counted (charged to `max_mount_entries`).
    pub fn entry_count(&self) -> u32 {
        (self.entries.len() - 1) as u32
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn member(path: &str, kind: MemberKind) -> ImageMember {
        ImageMember {
            path: path.split('/').map(|c| c.as_bytes().to_vec()).collect(),
            kind,
            mtime: 7,
        }
    }

    #[test]
    fn image_lookup_is_a_binary_search_over_sorted_children() {
        let archive = Bytes::from_static(b"0123456789");
        let image = MountImage::build(
            archive,
            vec![
                member("b/z", MemberKind::File(0..3)),
                member("a", MemberKind::File(3..4)),
                member("b/y", MemberKind::Dir),
                member("c", MemberKind::Dir),
                member("b", MemberKind::Dir),
            ],
        )
        .unwrap();
        let root = image.children(MountImage::ROOT).unwrap();
        let names: Vec<&[u8]> = root.clone().map(|i| image.name(i)).collect();
        assert_eq!(names, [&b"a"[..], b"b", b"c"]);
        let b = image.lookup(MountImage::ROOT, b"b").unwrap();
        let z = image.lookup(b, b"z").unwrap();
        assert_eq!(&image.file_bytes_of(z)[..], b"012");
        assert_eq!(image.kind(image.lookup(b, b"y").unwrap()), EntryKind::Dir);
        assert_eq!(image.lookup(MountImage::ROOT, b"bb"), None);
        assert_eq!(image.lookup(z, b"x"), None);
        assert_eq!(image.entry_count(), 5);
        assert_eq!(image.file_bytes(), 4);
        assert_eq!(image.mtime(b), 7);
    }

    #[test]
    fn duplicates_and_members_under_files_are_refused() {
        let archive = Bytes::from_static(b"01");
        let dup = MountImage::build(
            archive.clone(),
            vec![member("a", MemberKind::Dir), member("a", MemberKind::Dir)],
        );
        assert!(matches!(dup, Err(ImageError::Duplicate { .. })));
        let under = MountImage::build(
            archive,
            vec![
                member("f", MemberKind::File(0..1)),
                member("f/g", MemberKind::File(1..2)),
            ],
        );
        assert!(matches!(under, Err(ImageError::UnderFile { .. })));
    }

    #[test]
    fn the_builder_makes_no_entry_past_its_bound() {
        let mut builder = ImageBuilder::new(Bytes::new(), 1000);
        let deep = vec!["d"; 2040].join("/");
        let error = builder
            .add(deep.as_bytes(), MemberKind::Dir, 0)
            .unwrap_err();
        assert!(
            matches!(error, ImageError::TooManyEntries { max: 1000, .. }),
            "{error}"
        );
        assert_eq!(builder.entry_count(), 1000);
    }

    #[test]
    fn members_sharing_a_deep_directory_are_not_walked_from_the_root_again() {
        // 1,000 files in one directory 2,000 deep: 1,000 × 2,000 lookups if each
        // member were walked from the root; here the shared part is a memcmp.
        let mut builder = ImageBuilder::new(Bytes::new(), 10_000);
        let deep = vec!["d"; 2000].join("/");
        for i in 0..1000 {
            let path = format!("{deep}/f{i}");
            builder
                .add(path.as_bytes(), MemberKind::File(0..0), 0)
                .unwrap();
        }
        assert_eq!(builder.entry_count(), 3000);
        assert!(builder.lookups <= 2000 + 2 * 1000, "{}", builder.lookups);
        // After a member elsewhere, the deep directory is walked once more.
        builder.add(b"e/x", MemberKind::Dir, 0).unwrap();
        let before = builder.lookups;
        builder
            .add(format!("{deep}/g").as_bytes(), MemberKind::Dir, 0)
            .unwrap();
        assert_eq!(builder.lookups - before, 2001);
        let image = builder.finish();
        assert_eq!(image.entry_count(), 3003);
    }

    #[test]
    fn an_implied_directory_given_later_takes_its_mtime_once() {
        let image = MountImage::build(
            Bytes::new(),
            vec![member("a/b", MemberKind::Dir), member("a", MemberKind::Dir)],
        )
        .unwrap();
        let a = image.lookup(MountImage::ROOT, b"a").unwrap();
        assert_eq!(image.mtime(a), 7);
        let again = MountImage::build(
            Bytes::new(),
            vec![
                member("a/b", MemberKind::Dir),
                member("a", MemberKind::Dir),
                member("a", MemberKind::Dir),
            ],
        );
        assert!(matches!(again, Err(ImageError::Duplicate { .. })));
    }
}
