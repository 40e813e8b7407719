//! `MountImage`: an immutable, validated archive tree that shares the archive's
//! bytes. Built once per archive ([`super::archive::read_image`]) and shared
//! read-only (`Arc`) by every execution that mounts it: a read-only mount is never
//! copied per execution, and a file's contents are a zero-copy slice of the
//! archive. Each directory's children are contiguous in `entries` and sorted by
//! name bytes, so a lookup is a binary search.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, VecDeque};
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

/// A directory under construction.
#[derive(Default)]
struct TmpDir {
    children: BTreeMap<Vec<u8>, TmpNode>,
    mtime: u64,
    explicit: bool,
}

enum TmpNode {
    Dir(TmpDir),
    File { data: Range<u64>, mtime: u64 },
}

fn show(path: &[Vec<u8>]) -> String {
    path.iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

impl MountImage {
    /// An image of no entries but the root.
    pub fn empty() -> MountImage {
        MountImage::build(Bytes::new(), Vec::new()).expect("no members, no conflicts")
    }

    /// The tree of `members` over `archive`: missing parent directories are made
    /// (mtime 0), duplicates and members under files are refused. O(n log n) in
    /// members; no data is copied.
    pub fn build(archive: Bytes, members: Vec<ImageMember>) -> Result<MountImage, ImageError> {
        let mut root = TmpDir {
            explicit: true,
            ..TmpDir::default()
        };
        let mut file_bytes = 0u64;
        for member in members {
            let Some((last, parents)) = member.path.split_last() else {
                continue;
            };
            let mut dir = &mut root;
            for (depth, component) in parents.iter().enumerate() {
                let node = dir
                    .children
                    .entry(component.clone())
                    .or_insert_with(|| TmpNode::Dir(TmpDir::default()));
                dir = match node {
                    TmpNode::Dir(dir) => dir,
                    TmpNode::File { .. } => {
                        return Err(ImageError::UnderFile {
                            path: show(&member.path),
                            file: show(&member.path[..=depth]),
                        });
                    }
                };
            }
            match member.kind {
                MemberKind::File(data) => {
                    if data.end > archive.len() as u64 || data.start > data.end {
                        return Err(ImageError::DataMissing {
                            path: show(&member.path),
                        });
                    }
                    if dir.children.contains_key(last) {
                        return Err(ImageError::Duplicate {
                            path: show(&member.path),
                        });
                    }
                    file_bytes = file_bytes.saturating_add(data.end - data.start);
                    dir.children.insert(
                        last.clone(),
                        TmpNode::File {
                            data,
                            mtime: member.mtime,
                        },
                    );
                }
                MemberKind::Dir => match dir.children.get_mut(last) {
                    Some(TmpNode::Dir(existing)) if !existing.explicit => {
                        existing.explicit = true;
                        existing.mtime = member.mtime;
                    }
                    Some(_) => {
                        return Err(ImageError::Duplicate {
                            path: show(&member.path),
                        });
                    }
                    None => {
                        dir.children.insert(
                            last.clone(),
                            TmpNode::Dir(TmpDir {
                                children: BTreeMap::new(),
                                mtime: member.mtime,
                                explicit: true,
                            }),
                        );
                    }
                },
            }
        }
        // Breadth first, so that each directory's children are contiguous; the
        // BTreeMap gives them sorted by name bytes.
        let mut entries = vec![ImageEntry {
            name: 0..0,
            mtime: root.mtime,
            kind: ImageKind::Dir { children: 0..0 },
        }];
        let mut names = Vec::new();
        let mut queue = VecDeque::from([(0usize, root.children)]);
        while let Some((index, children)) = queue.pop_front() {
            let start = entries.len() as u32;
            for (name, node) in children {
                let name_start = names.len() as u32;
                names.extend_from_slice(&name);
                let name = name_start..names.len() as u32;
                match node {
                    TmpNode::File { data, mtime } => entries.push(ImageEntry {
                        name,
                        mtime,
                        kind: ImageKind::File { data },
                    }),
                    TmpNode::Dir(dir) => {
                        queue.push_back((entries.len(), dir.children));
                        entries.push(ImageEntry {
                            name,
                            mtime: dir.mtime,
                            kind: ImageKind::Dir { children: 0..0 },
                        });
                    }
                }
            }
            entries[index].kind = ImageKind::Dir {
                children: start..entries.len() as u32,
            };
        }
        Ok(MountImage {
            entries,
            names,
            archive,
            file_bytes,
        })
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
}
