//! Bytes between guest memory and the host: the call's hostcall fuel, guest
//! strings and iovecs (one buffer of at most [`MAX_IO`] bytes per call), reads and
//! writes of files and of the inner context's stdio pipes, and `poll_oneoff`.

use bytes::Bytes;
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::WasiCliCtxView;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wasmtime_wasi::p2::bindings::cli::{stderr, stdin, stdout};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, StreamError};
use wiggle::{GuestMemory, GuestPtr};
use zeroize::Zeroizing;

use super::errno::stream_error;
use super::{MAX_IO, P1, Slot, WRITABLE_BYTES};

/// Our own handles on the inner context's stdio pipes: 0, 1 and 2 there.
pub(super) struct Stdio {
    stdin: DynInputStream,
    stdout: DynOutputStream,
    stderr: DynOutputStream,
}

impl Stdio {
    /// The streams the inner context's stdio descriptors use (wasmtime-wasi's
    /// `get-stdin` and friends hand out the same pipes).
    pub(super) fn of(inner: &mut WasiP1Ctx) -> wasmtime::Result<Stdio> {
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

impl P1 {
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
    pub(super) fn read_string(
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

    pub(super) async fn write_at(
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

    pub(super) async fn read_at(
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

    /// `poll_oneoff`: the inner context's poll when only its own stdio (and clocks)
    /// is named, every descriptor ready now otherwise.
    pub(super) async fn poll(
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
}
