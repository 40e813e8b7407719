//! The guest's descriptor table: looking a descriptor up, the lowest free one,
//! what a descriptor says of itself (`fdstat`, `filestat`, `prestat`), its flags,
//! position and number. Descriptors of the inner context (stdio) go to it.

use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wiggle::{GuestMemory, GuestPtr};

use crate::sandbox::fs::tree::{Kind, Node, Timestamp};

use super::readdir::write_bytes;
use super::{MAX_FDS, OpenNode, P1, Slot};

impl P1 {
    /// The descriptor `fd`, or `EBADF`.
    pub(super) fn slot(&self, fd: types::Fd) -> Result<&Slot, types::Error> {
        self.fds
            .get(&u32::from(fd))
            .ok_or_else(|| Errno::Badf.into())
    }

    /// The descriptor `fd` if it is a file or directory of a mount, or `EBADF`.
    pub(super) fn open_node(&mut self, fd: types::Fd) -> Result<&mut OpenNode, types::Error> {
        match self.fds.get_mut(&u32::from(fd)) {
            Some(Slot::Node(open)) => Ok(open),
            _ => Err(Errno::Badf.into()),
        }
    }

    /// A directory of a mount to resolve paths from: (mount, node).
    pub(super) fn dir(&self, fd: types::Fd) -> Result<(u32, Node), types::Error> {
        match self.slot(fd)? {
            Slot::Node(open) if open.node.is_dir() => Ok((open.mount, open.node.clone())),
            Slot::Node(_) => Err(Errno::Notdir.into()),
            Slot::Host(_) => Err(Errno::Badf.into()),
        }
    }

    /// The lowest free descriptor number, or `EMFILE` at [`MAX_FDS`].
    pub(super) fn free_fd(&self) -> Result<u32, types::Error> {
        if self.fds.len() >= MAX_FDS {
            return Err(Errno::Mfile.into());
        }
        let mut candidate = 0u32;
        for &used in self.fds.keys() {
            if used != candidate {
                break;
            }
            candidate += 1;
        }
        Ok(candidate)
    }

    /// What preview1 says of `node` of `mount`.
    pub(super) fn stat(&self, mount: u32, node: &Node) -> types::Filestat {
        let stat = self.mounts.stat(mount, node);
        types::Filestat {
            dev: stat.dev,
            ino: stat.ino,
            filetype: filetype(stat.kind),
            nlink: 1,
            size: stat.size,
            atim: stat.atime,
            mtim: stat.mtime,
            ctim: stat.mtime,
        }
    }

    /// `fd_fdstat_get`: a preopen as wasmtime-wasi reports one, a file or directory
    /// with the rights and flags it was opened with.
    pub(super) async fn fdstat(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Fdstat, types::Error> {
        let open = match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                return self.inner.fd_fdstat_get(memory, inner).await;
            }
            Slot::Node(open) => open,
        };
        if open.preopen.is_some() {
            let (base, inheriting) = preopen_rights();
            return Ok(types::Fdstat {
                fs_filetype: types::Filetype::Directory,
                fs_flags: types::Fdflags::empty(),
                fs_rights_base: base,
                fs_rights_inheriting: inheriting,
            });
        }
        let mut rights = types::Rights::all();
        if open.node.is_dir() {
            rights &= !(types::Rights::FD_SEEK
                | types::Rights::FD_FILESTAT_SET_SIZE
                | types::Rights::PATH_FILESTAT_SET_SIZE);
        }
        if !open.read {
            rights &= !(types::Rights::FD_READ | types::Rights::FD_READDIR);
        }
        if !open.write {
            rights &= !types::Rights::FD_WRITE;
        }
        let mut flags = types::Fdflags::empty();
        if open.append {
            flags |= types::Fdflags::APPEND;
        }
        Ok(types::Fdstat {
            fs_filetype: filetype(open.node.kind()),
            fs_flags: flags,
            fs_rights_base: rights,
            fs_rights_inheriting: rights,
        })
    }

    /// `fd_fdstat_set_flags`: only `APPEND` changes on a file of a mount.
    pub(super) fn set_fdflags(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<(), types::Error> {
        if let Slot::Host(inner) = self.slot(fd)? {
            let inner = types::Fd::from(*inner);
            return self.inner.fd_fdstat_set_flags(memory, inner, flags);
        }
        let open = self.open_node(fd)?;
        if open.node.is_dir() {
            return Err(Errno::Badf.into());
        }
        if flags.intersects(types::Fdflags::DSYNC | types::Fdflags::SYNC | types::Fdflags::RSYNC) {
            return Err(Errno::Inval.into());
        }
        open.append = flags.contains(types::Fdflags::APPEND);
        Ok(())
    }

    /// `fd_filestat_set_times`.
    pub(super) async fn set_fd_times(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner
                    .fd_filestat_set_times(memory, inner, atim, mtim, fst_flags)
                    .await
            }
            Slot::Node(open) => {
                let (atime, mtime) = set_times(atim, mtim, fst_flags)?;
                Ok(self
                    .mounts
                    .set_times(open.mount, &open.node, atime, mtime)?)
            }
        }
    }

    /// `fd_prestat_get`: the mount's path, for a preopen.
    pub(super) fn prestat(&mut self, fd: types::Fd) -> Result<types::Prestat, types::Error> {
        match self.slot(fd)? {
            Slot::Node(OpenNode {
                preopen: Some(path),
                ..
            }) => Ok(types::Prestat::Dir(types::PrestatDir {
                pr_name_len: u32::try_from(path.len())?,
            })),
            _ => Err(Errno::Badf.into()),
        }
    }

    /// `fd_prestat_dir_name`.
    pub(super) fn prestat_dir_name(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        path: GuestPtr<u8>,
        path_max_len: types::Size,
    ) -> Result<(), types::Error> {
        match self.slot(fd)? {
            Slot::Node(OpenNode {
                preopen: Some(name),
                ..
            }) => {
                if name.len() > usize::try_from(path_max_len)? {
                    return Err(Errno::Nametoolong.into());
                }
                let name = name.clone();
                write_bytes(memory, path, name.as_bytes())?;
                Ok(())
            }
            _ => Err(Errno::Notdir.into()),
        }
    }

    /// `fd_renumber`, in the one descriptor space.
    pub(super) async fn renumber(
        &mut self,
        memory: &mut GuestMemory<'_>,
        from: types::Fd,
        to: types::Fd,
    ) -> Result<(), types::Error> {
        let (from, to) = (u32::from(from), u32::from(to));
        if !self.fds.contains_key(&from) || !self.fds.contains_key(&to) {
            return Err(Errno::Badf.into());
        }
        if from == to {
            return Ok(());
        }
        // One descriptor space: the slot moves here; the inner context keeps its
        // own numbers (0, 1, 2) and only loses the one `to` held, if any.
        if let Some(Slot::Host(replaced)) = self.fds.remove(&to) {
            self.inner
                .fd_close(memory, types::Fd::from(replaced))
                .await?;
        }
        let moved = self.fds.remove(&from).ok_or(Errno::Badf)?;
        self.fds.insert(to, moved);
        Ok(())
    }

    /// `fd_seek`: a file of a mount moves its own position.
    pub(super) async fn seek(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filedelta,
        whence: types::Whence,
    ) -> Result<types::Filesize, types::Error> {
        if let Slot::Host(inner) = self.slot(fd)? {
            let inner = types::Fd::from(*inner);
            return self.inner.fd_seek(memory, inner, offset, whence).await;
        }
        let open = self.open_node(fd)?;
        if open.node.is_dir() {
            return Err(Errno::Badf.into());
        }
        let position = match whence {
            types::Whence::Set if offset >= 0 => u64::try_from(offset).map_err(|_| Errno::Inval)?,
            types::Whence::Cur => open
                .position
                .checked_add_signed(offset)
                .ok_or(Errno::Inval)?,
            types::Whence::End => open
                .node
                .size()
                .checked_add_signed(offset)
                .ok_or(Errno::Inval)?,
            _ => return Err(Errno::Inval.into()),
        };
        open.position = position;
        Ok(position)
    }
}

/// The preview1 file type of a node's kind.
pub(super) fn filetype(kind: Kind) -> types::Filetype {
    match kind {
        Kind::Dir => types::Filetype::Directory,
        Kind::File => types::Filetype::RegularFile,
    }
}

/// A `set_times` argument: the given time, now, or unchanged.
/// The access and modification times `fd_filestat_set_times` and
/// `path_filestat_set_times` ask for: each given, now, or left (`None`);
/// `EINVAL` for one both given and now.
pub(super) fn set_times(
    atim: Timestamp,
    mtim: Timestamp,
    flags: types::Fstflags,
) -> Result<(Option<Timestamp>, Option<Timestamp>), types::Error> {
    use types::Fstflags;
    Ok((
        time_arg(
            flags.contains(Fstflags::ATIM),
            atim,
            flags.contains(Fstflags::ATIM_NOW),
        )?,
        time_arg(
            flags.contains(Fstflags::MTIM),
            mtim,
            flags.contains(Fstflags::MTIM_NOW),
        )?,
    ))
}

fn time_arg(set: bool, time: Timestamp, now: bool) -> Result<Option<Timestamp>, types::Error> {
    match (set, now) {
        (true, true) => Err(Errno::Inval.into()),
        (true, false) => Ok(Some(time)),
        (false, true) => Ok(Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )),
        (false, false) => Ok(None),
    }
}

/// Rights of a preopened directory, as wasmtime-wasi reports them.
fn preopen_rights() -> (types::Rights, types::Rights) {
    use types::Rights as R;
    let base = R::PATH_CREATE_DIRECTORY
        | R::PATH_CREATE_FILE
        | R::PATH_LINK_SOURCE
        | R::PATH_LINK_TARGET
        | R::PATH_OPEN
        | R::FD_READDIR
        | R::PATH_READLINK
        | R::PATH_RENAME_SOURCE
        | R::PATH_RENAME_TARGET
        | R::PATH_SYMLINK
        | R::PATH_REMOVE_DIRECTORY
        | R::PATH_UNLINK_FILE
        | R::PATH_FILESTAT_GET
        | R::PATH_FILESTAT_SET_TIMES
        | R::FD_FILESTAT_GET
        | R::FD_FILESTAT_SET_TIMES;
    let inheriting = base
        | R::FD_DATASYNC
        | R::FD_READ
        | R::FD_SEEK
        | R::FD_FDSTAT_SET_FLAGS
        | R::FD_SYNC
        | R::FD_TELL
        | R::FD_WRITE
        | R::FD_ADVISE
        | R::FD_ALLOCATE
        | R::FD_FILESTAT_GET
        | R::FD_FILESTAT_SET_SIZE
        | R::FD_FILESTAT_SET_TIMES
        | R::POLL_FD_READWRITE;
    (base, inheriting)
}
