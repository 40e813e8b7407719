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

use std::collections::BTreeMap;

use bytes::Bytes;
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::WasiCliCtxView;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wasmtime_wasi::p2::bindings::cli::{stderr, stdin, stdout};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, StreamError};
use wiggle::{GuestMemory, GuestPtr, GuestType};
use zeroize::Zeroizing;

use super::FsErr;
use super::tree::{Kind, Mounts, Node, OpenOpts, Timestamp};

/// Descriptors a guest may have open at once (more: `EMFILE`).
pub const MAX_FDS: usize = 1024;

/// What an `fd_write` poll subscription reports as writable: the files are in
/// memory, any write can proceed at once.
const WRITABLE_BYTES: u64 = 64 << 10;

/// Bytes one `fd_read`, `fd_pread`, `fd_write` or `fd_pwrite` moves at most, to
/// or from a file or stdio; a larger buffer gets a short count. It bounds the
/// host's work in one call (the epoch deadline cannot interrupt host code), and
/// it is within any call's hostcall fuel (at least
/// [`MIN_HOSTCALL_FUEL`](crate::sandbox::limits::MIN_HOSTCALL_FUEL)), which
/// refuses a larger buffer with `ENOMEM` instead.
pub const MAX_IO: usize = 1 << 20;

impl From<FsErr> for types::Error {
    fn from(error: FsErr) -> types::Error {
        errno(error).into()
    }
}

/// The preview1 errno for a file-system error.
pub fn errno(error: FsErr) -> Errno {
    match error {
        FsErr::NoEntry => Errno::Noent,
        FsErr::Exist => Errno::Exist,
        FsErr::NotDirectory => Errno::Notdir,
        FsErr::IsDirectory => Errno::Isdir,
        FsErr::NotEmpty => Errno::Notempty,
        FsErr::ReadOnly => Errno::Rofs,
        FsErr::NotPermitted => Errno::Perm,
        FsErr::CrossDevice => Errno::Xdev,
        FsErr::NoSpace => Errno::Nospc,
        FsErr::NameTooLong => Errno::Nametoolong,
        FsErr::Invalid => Errno::Inval,
        FsErr::BadDescriptor => Errno::Badf,
        FsErr::Unsupported => Errno::Notsup,
        FsErr::Overflow => Errno::Overflow,
        FsErr::TooManyOpen => Errno::Mfile,
    }
}

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
pub struct P1 {
    inner: WasiP1Ctx,
    fds: BTreeMap<u32, Slot>,
    mounts: Mounts,
    /// This call's hostcall fuel, set by the generated glue before every call.
    fuel: usize,
    /// The inner context's stdin, stdout and stderr (`None` only if the inner
    /// context could not hand them out, when its stdio calls go to it).
    stdio: Option<Stdio>,
}

/// Our own handles on the inner context's stdio pipes: 0, 1 and 2 there.
struct Stdio {
    stdin: DynInputStream,
    stdout: DynOutputStream,
    stderr: DynOutputStream,
}

impl Stdio {
    /// The streams the inner context's stdio descriptors use (wasmtime-wasi's
    /// `get-stdin` and friends hand out the same pipes).
    fn of(inner: &mut WasiP1Ctx) -> wasmtime::Result<Stdio> {
        let view = inner.ctx();
        let mut cli = WasiCliCtxView {
            ctx: view.ctx.cli(),
            table: view.table,
        };
        let stdin = stdin::Host::get_stdin(&mut cli)?;
        let stdout = stdout::Host::get_stdout(&mut cli)?;
        let stderr = stderr::Host::get_stderr(&mut cli)?;
        Ok(Stdio {
            stdin: cli.table.delete(stdin)?,
            stdout: cli.table.delete(stdout)?,
            stderr: cli.table.delete(stderr)?,
        })
    }
}

/// A stream's failure as preview1 has it.
fn stream_error(error: StreamError) -> types::Error {
    match error {
        StreamError::Trap(error) => types::Error::trap(error),
        StreamError::Closed => Errno::Pipe.into(),
        StreamError::LastOperationFailed(_) => Errno::Io.into(),
    }
}

impl P1 {
    /// `inner` for everything but files and stdio reads and writes, `mounts`
    /// preopened at 3, 4, ...
    pub fn new(mut inner: WasiP1Ctx, mounts: Mounts) -> P1 {
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
    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    fn consume_fuel(&mut self, bytes: usize) -> Result<(), types::Error> {
        if bytes > self.fuel {
            return Err(Errno::Nomem.into());
        }
        self.fuel -= bytes;
        Ok(())
    }

    fn consume_fuel_for_array<T>(&mut self, array: GuestPtr<[T]>) -> Result<(), types::Error> {
        let bytes = usize::try_from(array.len())?
            .checked_mul(size_of::<T>())
            .ok_or(Errno::Overflow)?;
        self.consume_fuel(bytes)
    }

    /// A guest path, copied in against the call's hostcall fuel.
    fn read_string(
        &mut self,
        memory: &GuestMemory<'_>,
        ptr: GuestPtr<str>,
    ) -> Result<String, types::Error> {
        self.consume_fuel(usize::try_from(ptr.len())?)?;
        Ok(memory.as_cow_str(ptr)?.into_owned())
    }

    /// The first non-empty buffer of `iovs` (or an empty one), as wasmtime-wasi
    /// reads and writes: one buffer per call, a short count otherwise. At most
    /// [`MAX_IO`] bytes of it; a read does not copy from the guest, so only the
    /// array is charged to the fuel.
    fn first_iovec(
        &mut self,
        memory: &GuestMemory<'_>,
        iovs: types::IovecArray,
    ) -> Result<GuestPtr<[u8]>, types::Error> {
        self.consume_fuel_for_array(iovs)?;
        for iov in iovs.iter() {
            let iov = memory.read(iov?)?;
            if iov.buf_len == 0 {
                continue;
            }
            return Ok(iov.buf.as_array(iov.buf_len.min(MAX_IO as u32)));
        }
        Ok(GuestPtr::new((0, 0)))
    }

    /// The first non-empty buffer of `ciovs` (or an empty one), cut to
    /// [`MAX_IO`] bytes and to the call's fuel left, which it is charged: the
    /// host copies it.
    fn first_ciovec(
        &mut self,
        memory: &GuestMemory<'_>,
        ciovs: types::CiovecArray,
    ) -> Result<GuestPtr<[u8]>, types::Error> {
        self.consume_fuel_for_array(ciovs)?;
        for iov in ciovs.iter() {
            let iov = memory.read(iov?)?;
            if iov.buf_len == 0 {
                continue;
            }
            let most = u32::try_from(MAX_IO.min(self.fuel)).unwrap_or(u32::MAX);
            if most == 0 {
                // An iovec array as large as the fuel: nothing left to move.
                return Err(Errno::Nomem.into());
            }
            let buf = iov.buf.as_array(iov.buf_len.min(most));
            self.consume_fuel_for_array(buf)?;
            return Ok(buf);
        }
        Ok(GuestPtr::new((0, 0)))
    }

    fn slot(&self, fd: types::Fd) -> Result<&Slot, types::Error> {
        self.fds
            .get(&u32::from(fd))
            .ok_or_else(|| Errno::Badf.into())
    }

    fn open_node(&mut self, fd: types::Fd) -> Result<&mut OpenNode, types::Error> {
        match self.fds.get_mut(&u32::from(fd)) {
            Some(Slot::Node(open)) => Ok(open),
            _ => Err(Errno::Badf.into()),
        }
    }

    /// A directory of a mount to resolve paths from: (mount, node).
    fn dir(&self, fd: types::Fd) -> Result<(u32, Node), types::Error> {
        match self.slot(fd)? {
            Slot::Node(open) if open.node.is_dir() => Ok((open.mount, open.node.clone())),
            Slot::Node(_) => Err(Errno::Notdir.into()),
            Slot::Host(_) => Err(Errno::Badf.into()),
        }
    }

    /// The lowest free descriptor number, or `EMFILE` at [`MAX_FDS`].
    fn free_fd(&self) -> Result<u32, types::Error> {
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

    fn stat(&self, mount: u32, node: &Node) -> types::Filestat {
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

    async fn write_at(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
        offset: Option<types::Filesize>,
    ) -> Result<types::Size, types::Error> {
        if let Slot::Host(inner) = self.slot(fd)? {
            let inner = *inner;
            if offset.is_none() && matches!(inner, 1 | 2) && self.stdio.is_some() {
                return self.write_stdio(memory, inner, ciovs);
            }
            let inner = types::Fd::from(inner);
            return match offset {
                None => self.inner.fd_write(memory, inner, ciovs).await,
                Some(offset) => self.inner.fd_pwrite(memory, inner, ciovs, offset).await,
            };
        }
        let buf = self.first_ciovec(memory, ciovs)?;
        let bytes = memory.as_cow(buf)?;
        let open = self.open_node(fd)?;
        if !open.write || open.node.is_dir() {
            return Err(Errno::Badf.into());
        }
        let (mount, node, append, position) =
            (open.mount, open.node.clone(), open.append, open.position);
        let at = match offset {
            Some(offset) => offset,
            None if append => node.size(),
            None => position,
        };
        let written = self.mounts.write(mount, &node, at, &bytes)?;
        if offset.is_none() {
            self.open_node(fd)?.position = at + written;
        }
        Ok(types::Size::try_from(written)?)
    }

    /// `fd_write` to the inner context's stdout (1) or stderr (2): at most
    /// [`MAX_IO`] bytes, in pieces of what the stream says it takes (the capped
    /// pipes of `sandbox::output` take every write, keep what fits in
    /// `max_output_bytes` and flag the rest).
    fn write_stdio(
        &mut self,
        memory: &GuestMemory<'_>,
        inner: u32,
        ciovs: types::CiovecArray,
    ) -> Result<types::Size, types::Error> {
        let buf = self.first_ciovec(memory, ciovs)?;
        let bytes = memory.as_cow(buf)?;
        let stream = match (&mut self.stdio, inner) {
            (Some(stdio), 1) => &mut stdio.stdout,
            (Some(stdio), _) => &mut stdio.stderr,
            (None, _) => return Err(Errno::Badf.into()),
        };
        let mut written = 0;
        while written < bytes.len() {
            // Never 0 for our pipes; a stream that had no room would end the
            // write short here.
            let room = stream.check_write().map_err(stream_error)?;
            if room == 0 {
                break;
            }
            let piece = &bytes[written..bytes.len().min(written + room)];
            // The guest's output: the copy is cleared when the pipe drops it.
            let copy = Bytes::from_owner(Zeroizing::new(piece.to_vec()));
            stream.write(copy).map_err(stream_error)?;
            written += piece.len();
        }
        stream.flush().map_err(stream_error)?;
        Ok(types::Size::try_from(written)?)
    }

    /// `fd_read` of the inner context's stdin: at most [`MAX_IO`] bytes, 0 at
    /// its end.
    async fn read_stdin(
        &mut self,
        memory: &mut GuestMemory<'_>,
        iovs: types::IovecArray,
    ) -> Result<types::Size, types::Error> {
        let buf = self.first_iovec(memory, iovs)?;
        let Some(stdio) = &mut self.stdio else {
            return Err(Errno::Badf.into());
        };
        let bytes = match stdio.stdin.blocking_read(buf.len() as usize).await {
            Ok(bytes) => bytes,
            Err(StreamError::Closed) => Bytes::new(),
            Err(error) => return Err(stream_error(error)),
        };
        let len = u32::try_from(bytes.len())?;
        let dest = buf.get_range(0..len).ok_or(Errno::Fault)?;
        memory.copy_from_slice(&bytes, dest)?;
        Ok(len)
    }

    async fn read_at(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
        offset: Option<types::Filesize>,
    ) -> Result<types::Size, types::Error> {
        if let Slot::Host(inner) = self.slot(fd)? {
            let inner = *inner;
            if offset.is_none() && inner == 0 && self.stdio.is_some() {
                return self.read_stdin(memory, iovs).await;
            }
            let inner = types::Fd::from(inner);
            return match offset {
                None => self.inner.fd_read(memory, inner, iovs).await,
                Some(offset) => self.inner.fd_pread(memory, inner, iovs, offset).await,
            };
        }
        let buf = self.first_iovec(memory, iovs)?;
        let open = self.open_node(fd)?;
        if !open.read || open.node.is_dir() {
            return Err(Errno::Badf.into());
        }
        let (node, position) = (open.node.clone(), open.position);
        let at = offset.unwrap_or(position);
        let read = self
            .mounts
            .read_with(&node, at, buf.len() as usize, |bytes| {
                let len = u32::try_from(bytes.len()).map_err(types::Error::from)?;
                let dest = buf.get_range(0..len).ok_or(Errno::Fault)?;
                memory.copy_from_slice(bytes, dest)?;
                Ok::<_, types::Error>(len)
            })??;
        if offset.is_none() {
            self.open_node(fd)?.position = at + u64::from(read);
        }
        Ok(read)
    }

    /// `poll_oneoff` when a subscription names a mount's descriptor (or a
    /// renumbered one): every descriptor is ready now — stdin is a memory pipe,
    /// stdout and stderr capped memory buffers (`sandbox::wasi`), files are
    /// memory — so each fd subscription gets its event at once and clocks none.
    /// This holds only because the guest's stdio is in memory; a real stdin
    /// would need the inner context's poll.
    fn poll_ready_now(
        &mut self,
        memory: &mut GuestMemory<'_>,
        subs: &[types::Subscription],
        events: GuestPtr<types::Event>,
    ) -> Result<types::Size, types::Error> {
        let mut count = 0u32;
        for sub in subs {
            let (type_, fd) = match &sub.u {
                types::SubscriptionU::Clock(_) => continue,
                types::SubscriptionU::FdRead(read) => {
                    (types::Eventtype::FdRead, read.file_descriptor)
                }
                types::SubscriptionU::FdWrite(write) => {
                    (types::Eventtype::FdWrite, write.file_descriptor)
                }
            };
            let (error, nbytes) = match (self.fds.get(&u32::from(fd)), type_) {
                (None, _) => (Errno::Badf, 0),
                (Some(Slot::Host(_)), types::Eventtype::FdRead) => (Errno::Success, 1),
                (Some(Slot::Host(_)), _) => (Errno::Success, WRITABLE_BYTES),
                (Some(Slot::Node(open)), _) if open.node.is_dir() => (Errno::Badf, 0),
                (Some(Slot::Node(open)), types::Eventtype::FdRead) => (
                    Errno::Success,
                    open.node.size().saturating_sub(open.position),
                ),
                (Some(Slot::Node(_)), _) => (Errno::Success, WRITABLE_BYTES),
            };
            memory.write(
                events.add(count)?,
                types::Event {
                    userdata: sub.userdata,
                    error,
                    type_,
                    fd_readwrite: types::EventFdReadwrite {
                        flags: types::Eventrwflags::empty(),
                        nbytes,
                    },
                },
            )?;
            count += 1;
        }
        Ok(count)
    }
}

fn filetype(kind: Kind) -> types::Filetype {
    match kind {
        Kind::Dir => types::Filetype::Directory,
        Kind::File => types::Filetype::RegularFile,
    }
}

/// A `set_times` argument: the given time, now, or unchanged.
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

fn write_bytes(
    memory: &mut GuestMemory<'_>,
    ptr: GuestPtr<u8>,
    bytes: &[u8],
) -> Result<GuestPtr<u8>, types::Error> {
    let len = u32::try_from(bytes.len())?;
    memory.copy_from_slice(bytes, ptr.as_array(len))?;
    Ok(ptr.add(len)?)
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

    fn fd_fdstat_set_flags(
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
        match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                self.inner
                    .fd_filestat_set_times(memory, inner, atim, mtim, fst_flags)
                    .await
            }
            Slot::Node(open) => {
                let atime = time_arg(
                    fst_flags.contains(types::Fstflags::ATIM),
                    atim,
                    fst_flags.contains(types::Fstflags::ATIM_NOW),
                )?;
                let mtime = time_arg(
                    fst_flags.contains(types::Fstflags::MTIM),
                    mtim,
                    fst_flags.contains(types::Fstflags::MTIM_NOW),
                )?;
                Ok(self
                    .mounts
                    .set_times(open.mount, &open.node, atime, mtime)?)
            }
        }
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

    fn fd_prestat_dir_name(
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

    async fn fd_renumber(
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

    async fn fd_seek(
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
        let node = match self.slot(fd)? {
            Slot::Host(inner) => {
                let inner = types::Fd::from(*inner);
                return self
                    .inner
                    .fd_readdir(memory, inner, buf, buf_len, cookie)
                    .await;
            }
            Slot::Node(open) if !open.node.is_dir() => return Err(Errno::Notdir.into()),
            Slot::Node(open) => open.node.clone(),
        };
        let cookie = usize::try_from(cookie).map_err(|_| Errno::Overflow)?;
        let ino = node.ino();
        let head = [
            (b".".to_vec(), Kind::Dir, ino),
            (b"..".to_vec(), Kind::Dir, ino),
        ];
        // Only the entries this buffer can hold (each takes at least a dirent),
        // from the cookie on: a large directory is not listed whole per call.
        let room = (buf_len / types::Dirent::guest_size()) as usize + 1;
        let entries = self
            .mounts
            .list_range(&node, cookie.saturating_sub(2), room)?;
        // As wasmtime-wasi: `.` and `..` first, cookie = index of the next entry,
        // the last entry cut to fill the buffer exactly (the guest asks again
        // with a larger buffer).
        let mut buf = buf;
        let mut cap = buf_len;
        let mut dirent = [0u8; 24];
        let head = head.into_iter().skip(cookie.min(2));
        let all = head.chain(entries.into_iter().map(|e| (e.name, e.kind, e.ino)));
        for (next, (name, kind, ino)) in (cookie as u64 + 1..).zip(all) {
            let namlen = u32::try_from(name.len()).map_err(|_| Errno::Overflow)?;
            dirent[0..8].copy_from_slice(&next.to_le_bytes());
            dirent[8..16].copy_from_slice(&ino.to_le_bytes());
            dirent[16..20].copy_from_slice(&namlen.to_le_bytes());
            dirent[20] = filetype(kind) as u8;
            let dirent_len = cap.min(types::Dirent::guest_size());
            cap -= dirent_len;
            buf = write_bytes(memory, buf, &dirent[..dirent_len as usize])?;
            if cap == 0 {
                return Ok(buf_len);
            }
            let name_len = cap.min(namlen);
            cap -= name_len;
            buf = write_bytes(memory, buf, &name[..name_len as usize])?;
            if cap == 0 {
                return Ok(buf_len);
            }
        }
        Ok(buf_len - cap)
    }

    async fn path_create_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        Ok(self.mounts.create_dir(mount, &base, &path)?)
    }

    async fn path_filestat_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        _flags: types::Lookupflags,
        path: GuestPtr<str>,
    ) -> Result<types::Filestat, types::Error> {
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        let node = self.mounts.lookup(&base, &path)?;
        Ok(self.stat(mount, &node))
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
        let atime = time_arg(
            fst_flags.contains(types::Fstflags::ATIM),
            atim,
            fst_flags.contains(types::Fstflags::ATIM_NOW),
        )?;
        let mtime = time_arg(
            fst_flags.contains(types::Fstflags::MTIM),
            mtim,
            fst_flags.contains(types::Fstflags::MTIM_NOW),
        )?;
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        let node = self.mounts.lookup(&base, &path)?;
        Ok(self.mounts.set_times(mount, &node, atime, mtime)?)
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
        self.dir(src_fd)?;
        self.dir(target_fd)?;
        Err(Errno::Notsup.into())
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

    async fn path_readlink(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
        _buf: GuestPtr<u8>,
        _buf_len: types::Size,
    ) -> Result<types::Size, types::Error> {
        let (_, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        // Nothing is a symbolic link: EINVAL for what exists.
        self.mounts.lookup(&base, &path)?;
        Err(Errno::Inval.into())
    }

    async fn path_remove_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        Ok(self.mounts.remove_dir(mount, &base, &path)?)
    }

    async fn path_rename(
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

    async fn path_symlink(
        &mut self,
        _memory: &mut GuestMemory<'_>,
        _src_path: GuestPtr<str>,
        dirfd: types::Fd,
        _dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.dir(dirfd)?;
        Err(Errno::Notsup.into())
    }

    async fn path_unlink_file(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let (mount, base) = self.dir(dirfd)?;
        let path = self.read_string(memory, path)?;
        Ok(self.mounts.unlink(mount, &base, &path)?)
    }

    async fn poll_oneoff(
        &mut self,
        memory: &mut GuestMemory<'_>,
        subs: GuestPtr<types::Subscription>,
        events: GuestPtr<types::Event>,
        nsubscriptions: types::Size,
    ) -> Result<types::Size, types::Error> {
        if nsubscriptions == 0 {
            return self
                .inner
                .poll_oneoff(memory, subs, events, nsubscriptions)
                .await;
        }
        let array = subs.as_array(nsubscriptions);
        self.consume_fuel_for_array(array)?;
        let mut all = Vec::with_capacity(nsubscriptions as usize);
        for sub in array.iter() {
            all.push(memory.read(sub?)?);
        }
        // Only stdio under its own numbers (and clocks): the inner context's poll,
        // exactly as without mounts.
        let ours = all.iter().any(|sub| {
            let fd = match &sub.u {
                types::SubscriptionU::Clock(_) => return false,
                types::SubscriptionU::FdRead(s) | types::SubscriptionU::FdWrite(s) => {
                    u32::from(s.file_descriptor)
                }
            };
            !matches!(self.fds.get(&fd), Some(Slot::Host(inner)) if *inner == fd)
        });
        if !ours {
            return self
                .inner
                .poll_oneoff(memory, subs, events, nsubscriptions)
                .await;
        }
        self.poll_ready_now(memory, &all, events)
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
