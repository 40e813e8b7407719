//! WASI preview1 for core modules: [`P1`] wraps wasmtime-wasi's `WasiP1Ctx` and
//! implements the preview1 trait that `wiggle` generates in wasmtime-wasi. Every
//! call that is not about files (args, environment, clocks, random, stdio
//! other than reads and writes, `proc_exit`, sockets, a poll on clocks only)
//! goes to the inner context unchanged; file calls are answered from the
//! execution's in-memory [`Mounts`]. `P1` owns the guest's one descriptor space:
//! 0, 1 and 2 are the inner context's stdio, the mounts' preopened directories
//! are 3, 4, ... in request order, and at most [`MAX_FDS`] descriptors are open
//! at once.
//!
//! Reads of stdin and writes to stdout and stderr are `P1`'s too, through the
//! inner context's own pipes (the same streams): wasmtime-wasi charges a whole
//! read or write buffer to the call's hostcall fuel and answers `ENOMEM` past
//! it, so one `fd_write` of 1 MiB or more lost its output. Here a read or write
//! moves at most [`MAX_IO`] bytes, a short count for more, which the guest's
//! libc completes with further calls, as POSIX allows.
//!
//! With no mounts every other call reaches the inner context as before.
//!
//! The generated trait is public but declared internal to wasmtime-wasi (its
//! `p1.rs` says so); `wiggle` and wasmtime-wasi are pinned together, and a
//! Wasmtime upgrade that changes the trait fails to compile here, loudly.
//!
//! # Layout
//!
//! This file holds the descriptor space's types and the trait's implementation,
//! a dispatch: calls that are not about files go to the inner context, and each
//! file call to one of
//! - [`fds`]: the descriptor table (lookup, `fdstat`, `prestat`, seek, renumber);
//! - [`io`]: guest memory and hostcall fuel, reads and writes of files and
//!   stdio, `poll_oneoff`;
//! - [`paths`]: the `path_*` operations;
//! - [`readdir`]: `fd_readdir`, a directory's entries;
//! - [`errno`]: errors as preview1 numbers them.

mod errno;
mod fds;
mod io;
mod paths;
mod readdir;

use std::collections::BTreeMap;

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wiggle::{GuestMemory, GuestPtr};

use self::io::Stdio;
use super::tree::{Mounts, Node};

/// Descriptors a guest may have open at once (more: `EMFILE`).
pub(crate) const MAX_FDS: usize = 1024;

/// What an `fd_write` poll subscription reports as writable: the files are in
/// memory, any write can proceed at once.
const WRITABLE_BYTES: u64 = 64 << 10;

/// Bytes one `fd_read`, `fd_pread`, `fd_write` or `fd_pwrite` moves at most, to
/// or from a file or stdio; a larger buffer gets a short count. It bounds the
/// host's work in one call (the epoch deadline cannot interrupt host code), and
/// it is within any call's hostcall fuel (at least
/// [`MIN_HOSTCALL_FUEL`](crate::sandbox::limits::MIN_HOSTCALL_FUEL)), which
/// refuses a larger buffer with `ENOMEM` instead.
pub(crate) const MAX_IO: usize = 1 << 20;

/// An open file or directory of a mount.
struct OpenNode {
    mount: u32,
    node: Node,
    read: bool,
    write: bool,
    append: bool,
    /// The mount's path, for a preopened directory.
    preopen: Option<String>,
    position: u64,
}

/// One descriptor of the guest.
enum Slot {
    /// One of the inner context's descriptors (stdio), by its number there.
    Host(u32),
    /// A file or directory of a mount.
    Node(OpenNode),
}

/// WASI preview1 with the execution's mounts; see the module doc.
pub(crate) struct P1 {
    inner: WasiP1Ctx,
    fds: BTreeMap<u32, Slot>,
    mounts: Mounts,
    /// This call's hostcall fuel, set by the generated glue before every call.
    fuel: usize,
    /// The inner context's stdin, stdout and stderr (`None` only if the inner
    /// context could not hand them out, when its stdio calls go to it).
    stdio: Option<Stdio>,
}

impl P1 {
    /// `inner` for everything but files and stdio reads and writes, `mounts`
    /// preopened at 3, 4, ...
    pub(crate) fn new(mut inner: WasiP1Ctx, mounts: Mounts) -> P1 {
        let stdio = Stdio::of(&mut inner).ok();
        let mut fds = BTreeMap::new();
        for fd in 0..3 {
            fds.insert(fd, Slot::Host(fd));
        }
        for (index, mount) in mounts.mounts().iter().enumerate() {
            fds.insert(
                3 + index as u32,
                Slot::Node(OpenNode {
                    mount: index as u32,
                    node: mount.root.clone(),
                    read: true,
                    write: false,
                    append: false,
                    preopen: Some(mount.path.clone()),
                    position: 0,
                }),
            );
        }
        P1 {
            inner,
            fds,
            mounts,
            fuel: 0,
            stdio,
        }
    }

    /// The execution's file system, for `mounts_out` once the guest has ended.
    pub(crate) fn mounts(&self) -> &Mounts {
        &self.mounts
    }
}

impl WasiSnapshotPreview1 for P1 {
    fn set_hostcall_fuel(&mut self, fuel: usize) {
        self.fuel = fuel;
        self.inner.set_hostcall_fuel(fuel);
    }

    fn args_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        argv: GuestPtr<GuestPtr<u8>>,
        argv_buf: GuestPtr<u8>,
    ) -> Result<(), types::Error> {
        self.inner.args_get(memory, argv, argv_buf)
    }

    fn args_sizes_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
    ) -> Result<(types::Size, types::Size), types::Error> {
        self.inner.args_sizes_get(memory)
    }

    fn environ_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        environ: GuestPtr<GuestPtr<u8>>,
        environ_buf: GuestPtr<u8>,
    ) -> Result<(), types::Error> {
        self.inner.environ_get(memory, environ, environ_buf)
    }

    fn environ_sizes_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
    ) -> Result<(types::Size, types::Size), types::Error> {
        self.inner.environ_sizes_get(memory)
    }

    fn clock_res_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        id: types::Clockid,
    ) -> Result<types::Timestamp, types::Error> {
        self.inner.clock_res_get(memory, id)
    }

    fn clock_time_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        id: types::Clockid,
        precision: types::Timestamp,
    ) -> Result<types::Timestamp, types::Error> {
        self.inner.clock_time_get(memory, id, precision)
    }

    async fn fd_advise(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> Result<(), types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner
                    .fd_advise(memory, inner, offset, len, advice)
                    .await
            }
            Slot::Node(open) if open.node.is_dir() => Err(Errno::Badf.into()),
            Slot::Node(_) => Ok(()),
        }
    }

    fn fd_allocate(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filesize,
        len: types::Filesize,
    ) -> Result<(), types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.fd_allocate(memory, inner, offset, len)
            }
            Slot::Node(open) if open.node.is_dir() => Err(Errno::Badf.into()),
            Slot::Node(_) => Err(Errno::Notsup.into()),
        }
    }

    async fn fd_close(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        match self.fds.remove(&u32::from(fd)) {
            None => Err(Errno::Badf.into()),
            Some(Slot::Host(inner)) => self.inner.fd_close(memory, types::Fd::from(inner)).await,
            Some(Slot::Node(_)) => Ok(()),
        }
    }

    async fn fd_datasync(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.fd_datasync(memory, inner).await
            }
            // Memory is as durable as it gets here.
            Slot::Node(_) => Ok(()),
        }
    }

    async fn fd_fdstat_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Fdstat, types::Error> {
        self.fdstat(memory, fd).await
    }

    fn fd_fdstat_set_flags(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<(), types::Error> {
        self.set_fdflags(memory, fd, flags)
    }

    fn fd_fdstat_set_rights(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        base: types::Rights,
        inheriting: types::Rights,
    ) -> Result<(), types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner
                    .fd_fdstat_set_rights(memory, inner, base, inheriting)
            }
            Slot::Node(_) => Err(Errno::Notsup.into()),
        }
    }

    async fn fd_filestat_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Filestat, types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.fd_filestat_get(memory, inner).await
            }
            Slot::Node(open) => Ok(self.stat(open.mount, &open.node)),
        }
    }

    async fn fd_filestat_set_size(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        size: types::Filesize,
    ) -> Result<(), types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.fd_filestat_set_size(memory, inner, size).await
            }
            Slot::Node(open) if !open.write || open.node.is_dir() => Err(Errno::Badf.into()),
            Slot::Node(open) => Ok(self.mounts.set_size(open.mount, &open.node, size)?),
        }
    }

    async fn fd_filestat_set_times(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        self.set_fd_times(memory, fd, atim, mtim, fst_flags).await
    }

    async fn fd_read(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
    ) -> Result<types::Size, types::Error> {
        self.read_at(memory, fd, iovs, None).await
    }

    async fn fd_pread(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        self.read_at(memory, fd, iovs, Some(offset)).await
    }

    async fn fd_write(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
    ) -> Result<types::Size, types::Error> {
        self.write_at(memory, fd, ciovs, None).await
    }

    async fn fd_pwrite(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        self.write_at(memory, fd, ciovs, Some(offset)).await
    }

    fn fd_prestat_get(
        &mut self,
        _memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Prestat, types::Error> {
        self.prestat(fd)
    }

    fn fd_prestat_dir_name(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        path: GuestPtr<u8>,
        path_max_len: types::Size,
    ) -> Result<(), types::Error> {
        self.prestat_dir_name(memory, fd, path, path_max_len)
    }

    async fn fd_renumber(
        &mut self,
        memory: &mut GuestMemory<'_>,
        from: types::Fd,
        to: types::Fd,
    ) -> Result<(), types::Error> {
        self.renumber(memory, from, to).await
    }

    async fn fd_seek(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filedelta,
        whence: types::Whence,
    ) -> Result<types::Filesize, types::Error> {
        self.seek(memory, fd, offset, whence).await
    }

    async fn fd_sync(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.fd_sync(memory, inner).await
            }
            Slot::Node(_) => Ok(()),
        }
    }

    fn fd_tell(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Filesize, types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.fd_tell(memory, inner)
            }
            Slot::Node(open) if open.node.is_dir() => Err(Errno::Badf.into()),
            Slot::Node(open) => Ok(open.position),
        }
    }

    async fn fd_readdir(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
        cookie: types::Dircookie,
    ) -> Result<types::Size, types::Error> {
        self.readdir(memory, fd, buf, buf_len, cookie).await
    }

    async fn path_create_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.create_directory(memory, dirfd, path)
    }

    async fn path_filestat_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        _flags: types::Lookupflags,
        path: GuestPtr<str>,
    ) -> Result<types::Filestat, types::Error> {
        self.filestat_at(memory, dirfd, path)
    }

    async fn path_filestat_set_times(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        _flags: types::Lookupflags,
        path: GuestPtr<str>,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        self.set_times_at(memory, dirfd, path, atim, mtim, fst_flags)
    }

    async fn path_link(
        &mut self,
        _memory: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        _src_flags: types::Lookupflags,
        _src_path: GuestPtr<str>,
        target_fd: types::Fd,
        _target_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.link(src_fd, target_fd)
    }

    async fn path_open(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        _dirflags: types::Lookupflags,
        path: GuestPtr<str>,
        oflags: types::Oflags,
        fs_rights_base: types::Rights,
        _fs_rights_inheriting: types::Rights,
        fdflags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        self.open_at(memory, dirfd, path, oflags, fs_rights_base, fdflags)
    }

    async fn path_readlink(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
        _buf: GuestPtr<u8>,
        _buf_len: types::Size,
    ) -> Result<types::Size, types::Error> {
        self.readlink(memory, dirfd, path)
    }

    async fn path_remove_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.remove_directory(memory, dirfd, path)
    }

    async fn path_rename(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_path: GuestPtr<str>,
        dest_fd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.rename(memory, src_fd, src_path, dest_fd, dest_path)
    }

    async fn path_symlink(
        &mut self,
        _memory: &mut GuestMemory<'_>,
        _src_path: GuestPtr<str>,
        dirfd: types::Fd,
        _dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.symlink(dirfd)
    }

    async fn path_unlink_file(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.unlink_file(memory, dirfd, path)
    }

    async fn poll_oneoff(
        &mut self,
        memory: &mut GuestMemory<'_>,
        subs: GuestPtr<types::Subscription>,
        events: GuestPtr<types::Event>,
        nsubscriptions: types::Size,
    ) -> Result<types::Size, types::Error> {
        self.poll(memory, subs, events, nsubscriptions).await
    }

    fn proc_exit(
        &mut self,
        memory: &mut GuestMemory<'_>,
        status: types::Exitcode,
    ) -> wasmtime::Error {
        self.inner.proc_exit(memory, status)
    }

    fn proc_raise(
        &mut self,
        memory: &mut GuestMemory<'_>,
        sig: types::Signal,
    ) -> Result<(), types::Error> {
        self.inner.proc_raise(memory, sig)
    }

    fn sched_yield(&mut self, memory: &mut GuestMemory<'_>) -> Result<(), types::Error> {
        self.inner.sched_yield(memory)
    }

    fn random_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
    ) -> Result<(), types::Error> {
        self.inner.random_get(memory, buf, buf_len)
    }

    fn sock_accept(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.sock_accept(memory, inner, flags)
            }
            Slot::Node(_) => Err(Errno::Notsock.into()),
        }
    }

    fn sock_recv(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ri_data: types::IovecArray,
        ri_flags: types::Riflags,
    ) -> Result<(types::Size, types::Roflags), types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.sock_recv(memory, inner, ri_data, ri_flags)
            }
            Slot::Node(_) => Err(Errno::Notsock.into()),
        }
    }

    fn sock_send(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        si_data: types::CiovecArray,
        si_flags: types::Siflags,
    ) -> Result<types::Size, types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.sock_send(memory, inner, si_data, si_flags)
            }
            Slot::Node(_) => Err(Errno::Notsock.into()),
        }
    }

    fn sock_shutdown(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        how: types::Sdflags,
    ) -> Result<(), types::Error> {
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner.sock_shutdown(memory, inner, how)
            }
            Slot::Node(_) => Err(Errno::Notsock.into()),
        }
    }
}
