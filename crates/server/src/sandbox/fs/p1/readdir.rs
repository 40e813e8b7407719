//! `fd_readdir` of a directory of a mount: `.` and `..`, then its entries in
//! name order, as wasmtime-wasi lays them out, only as many as the buffer holds.

use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wiggle::{GuestMemory, GuestPtr, GuestType};

use crate::sandbox::fs::tree::Kind;

use super::fds::filetype;
use super::{P1, Slot};

impl P1 {
    /// `fd_readdir`.
    pub(super) async fn readdir(
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
}

/// `bytes` written at `ptr`; the pointer just past them.
pub(super) fn write_bytes(
    memory: &mut GuestMemory<'_>,
    ptr: GuestPtr<u8>,
    bytes: &[u8],
) -> Result<GuestPtr<u8>, types::Error> {
    let len = u32::try_from(bytes.len())?;
    memory.copy_from_slice(bytes, ptr.as_array(len))?;
    Ok(ptr.add(len)?)
}
