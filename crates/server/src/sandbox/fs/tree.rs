//! The execution's file system ([`Mounts`]): its nodes, path resolution confined to
//! the base descriptor, and every operation the front ends need, pure and
//! synchronous (no I/O, no async). Read-only mounts are [`Node::Image`]s that point
//! into a shared [`MountImage`]; writable mounts are [`MemDir`]/[`MemFile`] nodes
//! made from their archive at mount time, whose contents stay slices of the
//! archive until first written (copy on write).
//!
//! # Layout
//!
//! This file holds the mounts ([`Mounts`]: made from their specs, their budget,
//! inode numbers) and the types the operations take and give; the rest is in
//! - [`node`]: nodes, a file's contents, the budget they charge and give back;
//! - [`lookup`]: path resolution, confined to the base descriptor;
//! - [`entries`]: open, create, remove, rename, list;
//! - [`contents`]: stat, times, read, write, size;
//! - [`walk`]: every path of a mount in byte order (`mounts_out`).

mod contents;
mod entries;
mod lookup;
mod node;
mod walk;

use std::sync::Arc;

use super::budget::FilesBudget;
use super::image::MountImage;
use super::{FsErr, MountError, MountSpec};

pub use self::node::Node;
use self::node::lock;
pub(crate) use self::node::{Content, Kind, MemDir, MemFile};
pub(crate) use self::walk::walk_sorted;

/// Longest path a call may name, in bytes.
pub(crate) const MAX_PATH_BYTES: usize = 4096;
/// Longest path component, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Nanoseconds since the Unix epoch.
pub(crate) type Timestamp = u64;

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
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use bytes::Bytes;

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
