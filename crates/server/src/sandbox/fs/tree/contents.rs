//! A node's metadata and bytes: `stat`, `set_times`, reads (copied, or lent to a
//! closure), writes and `set_size` (charged to the budget, all or nothing).

use zeroize::Zeroizing;

use super::node::{Node, lock};
use super::{Mounts, Stat, Timestamp};
use crate::sandbox::fs::FsErr;

impl Mounts {
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
}
