//! Path operations (`path_*`) on the mounts: each resolves its path from a
//! directory descriptor of a mount, confined to it (`tree`), and answers from the
//! mounts. Links and symbolic links are not supported.

use wasmtime_wasi::p1::types::{self, Errno};
use wiggle::{GuestMemory, GuestPtr};

use crate::sandbox::fs::tree::OpenOpts;

use super::fds::set_times;
use super::{OpenNode, P1, Slot};

impl P1 {
    /// `path_create_directory`.
    pub(super) fn create_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        Ok(self.mounts.create_dir(mount, &base, &path)?)
    }

    /// `path_filestat_get` (nothing is a symbolic link: the lookup flags do not matter).
    pub(super) fn filestat_at(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<types::Filestat, types::Error> {
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        let node = self.mounts.lookup(&base, &path)?;
        Ok(self.stat(mount, &node))
    }

    /// `path_filestat_set_times`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_times_at(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        let (atime, mtime) = set_times(atim, mtim, fst_flags)?;
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        let node = self.mounts.lookup(&base, &path)?;
        Ok(self.mounts.set_times(mount, &node, atime, mtime)?)
    }

    /// `path_link`: `ENOTSUP` for directories of the mounts.
    pub(super) fn link(
        &mut self,
        src_fd: types::Fd,
        target_fd: types::Fd,
    ) -> Result<(), types::Error> {
        self.dir(src_fd)?;
        self.dir(target_fd)?;
        Err(Errno::Notsup.into())
    }

    /// `path_open`: the new descriptor is the lowest free one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_at(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
        oflags: types::Oflags,
        fs_rights_base: types::Rights,
        fdflags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        let fd = self.free_fd()?;
        let read = fs_rights_base.contains(types::Rights::FD_READ);
        let write = fs_rights_base.contains(types::Rights::FD_WRITE);
        let opts = OpenOpts {
            create: oflags.contains(types::Oflags::CREAT),
            exclusive: oflags.contains(types::Oflags::EXCL),
            truncate: oflags.contains(types::Oflags::TRUNC),
            directory: oflags.contains(types::Oflags::DIRECTORY),
            write,
        };
        let node = self.mounts.open(mount, &base, &path, opts)?;
        self.fds.insert(
            fd,
            Slot::Node(OpenNode {
                mount,
                node,
                read,
                write,
                append: fdflags.contains(types::Fdflags::APPEND),
                preopen: None,
                position: 0,
            }),
        );
        Ok(types::Fd::from(fd))
    }

    /// `path_readlink`.
    pub(super) fn readlink(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<types::Size, types::Error> {
        let (_, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        // Nothing is a symbolic link: EINVAL for what exists.
        self.mounts.lookup(&base, &path)?;
        Err(Errno::Inval.into())
    }

    /// `path_remove_directory`.
    pub(super) fn remove_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        Ok(self.mounts.remove_dir(mount, &base, &path)?)
    }

    /// `path_rename`, within one mount (`EXDEV` across two).
    pub(super) fn rename(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_path: GuestPtr<str>,
        dest_fd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let (src_mount, src_base) = self.dir(src_fd)?;
        let (dest_mount, dest_base) = self.dir(dest_fd)?;
        let src_path = self.read_string(memory, src_path)?;
        let dest_path = self.read_string(memory, dest_path)?;
        Ok(self.mounts.rename(
            src_mount, &src_base, &src_path, dest_mount, &dest_base, &dest_path,
        )?)
    }

    /// `path_symlink`: `ENOTSUP` for a directory of the mounts.
    pub(super) fn symlink(&mut self, dirfd: types::Fd) -> Result<(), types::Error> {
        self.dir(dirfd)?;
        Err(Errno::Notsup.into())
    }

    /// `path_unlink_file`.
    pub(super) fn unlink_file(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        Ok(self.mounts.unlink(mount, &base, &path)?)
    }
}
