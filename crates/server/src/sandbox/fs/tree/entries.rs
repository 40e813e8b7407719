//! Changes to what directories hold, on writable mounts: `open` (and create),
//! `create_dir`, `remove_dir`, `unlink`, `rename`; and directory listings.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::lookup::{is_dot, parse};
use super::node::{Content, MemDir, MemFile, Node, lock, now};
use super::{DirEntry, Mounts, OpenOpts, Timestamp};
use crate::sandbox::fs::{FilesBudget, FsErr};

impl Mounts {
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
                    self.create_file(&parent, name)?
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

    /// Makes an empty file `name` in the directory `parent` ([`Self::add_child`]).
    fn create_file(&mut self, parent: &Node, name: &[u8]) -> Result<Node, FsErr> {
        self.add_child(parent, name, |ino, time, budget| {
            Node::File(Arc::new(MemFile::new(
                ino,
                Content::Owned(Zeroizing::new(Vec::new())),
                time,
                budget,
            )))
        })
    }

    /// Puts the node `make` builds (from its inode number, the time and the
    /// budget) in the directory `parent` as `name`, unless the directory was
    /// removed meanwhile or the mount has no entry left.
    fn add_child(
        &mut self,
        parent: &Node,
        name: &[u8],
        make: impl FnOnce(u64, Timestamp, Arc<FilesBudget>) -> Node,
    ) -> Result<Node, FsErr> {
        let dir = Self::mem_dir(parent)?.clone();
        let ino = self.next_ino();
        let mut data = lock(&dir.data);
        if data.removed {
            return Err(FsErr::NoEntry);
        }
        self.budget.add_entry().map_err(|_| FsErr::NoSpace)?;
        let time = now();
        let node = make(ino, time, self.budget.clone());
        data.entries.insert(name.into(), node.clone());
        data.mtime = time;
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
        self.add_child(&parent, name, |ino, time, budget| {
            Node::Dir(Arc::new(MemDir::new(ino, time, budget)))
        })?;
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
}
