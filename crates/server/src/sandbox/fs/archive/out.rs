//! Writing: the writable mounts of an execution that has ended as their
//! `mounts_out` archives ([`MountsOut`]), ustar headers made here (name, or
//! prefix and name) with a pax `path` record before a member whose path does not
//! fit, never GNU long-name members; every archive's exact length settled first,
//! within [`mounts_out_bound`], then written in pieces.

use std::ops::ControlFlow;

use tar::{EntryType, Header};

use super::{BLOCK, padded};
use crate::sandbox::fs::tree::{Kind, Node, walk_sorted};

/// The length of [`pax_path_record`] for a path of `path_len` bytes: the
/// record counts its own digits, so this is its fixed point.
fn pax_path_record_len(path_len: usize) -> usize {
    let body = 5 + path_len + 1; // "path=" + path + "\n"
    let mut len = body + 2;
    loop {
        let total = len.to_string().len() + 1 + body;
        if total == len {
            return len;
        }
        len = total;
    }
}

/// A pax record `"<len> path=<path>\n"`, whose length counts its own digits.
fn pax_path_record(path: &[u8]) -> Vec<u8> {
    let len = pax_path_record_len(path.len());
    let mut record = format!("{len} path=").into_bytes();
    record.extend_from_slice(path);
    record.push(b'\n');
    record
}

/// Splits a ustar name into (prefix, name) fields, if it fits: name ≤ 100 bytes,
/// or a `/` where prefix ≤ 155 and name ≤ 100.
fn ustar_split(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    // The leftmost `/` that leaves at most 100 bytes (and at least one) after it.
    let body = path.strip_suffix(b"/").unwrap_or(path);
    (0..body.len())
        .filter(|&at| path[at] == b'/')
        .find(|&at| path.len() - at - 1 <= 100)
        .filter(|&at| at <= 155 && at > 0)
        .map(|at| (&path[..at], &path[at + 1..]))
}

fn header(kind: Kind, size: u64, mtime_secs: u64, path: &[u8]) -> Header {
    let mut header = Header::new_ustar();
    header.set_entry_type(match kind {
        Kind::Dir => EntryType::Directory,
        Kind::File => EntryType::Regular,
    });
    header.set_mode(match kind {
        Kind::Dir => 0o755,
        Kind::File => 0o644,
    });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime_secs);
    header.set_size(size);
    let ustar = header.as_ustar_mut().expect("a ustar header");
    let (prefix, name) = ustar_split(path).unwrap_or((&[], &path[..path.len().min(100)]));
    ustar.name = [0; 100];
    ustar.name[..name.len()].copy_from_slice(name);
    ustar.prefix = [0; 155];
    ustar.prefix[..prefix.len()].copy_from_slice(prefix);
    header.set_cksum();
    header
}

/// The most bytes the `mounts_out` archives of one execution may hold together
/// (PROTOCOL.md, "Archives"): `files_bytes`, 1,024 per entry (its
/// 512-byte header and up to 512 more of data padding or pax record) and 1,024
/// per archive (its two zero blocks). Archives whose paths all fit ustar's fields
/// never reach it; long paths, whose pax records repeat the whole path, can.
pub(crate) fn mounts_out_bound(files_bytes: u64, entries: u64, archives: u64) -> u64 {
    files_bytes
        .saturating_add(entries.saturating_mul(2 * BLOCK as u64))
        .saturating_add(archives.saturating_mul(2 * BLOCK as u64))
}

/// The exact bytes one member takes in an archive that [`MountsOut`] writes: a
/// pax header and its `path` record (padded) if `name` does not fit ustar's
/// fields, its header, and `size` bytes of data padded to whole blocks. `name`
/// is the member's name, a directory's with its trailing `/`.
pub(crate) fn member_len(name: &[u8], size: u64) -> u64 {
    let pax = match ustar_split(name) {
        Some(_) => 0,
        None => (BLOCK + padded(pax_path_record_len(name.len()))) as u64,
    };
    pax + BLOCK as u64 + size.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// The writable mounts of an execution that has ended, as their `mounts_out`
/// archives: each one's length and entries settled before anything is written,
/// all of them together within [`mounts_out_bound`].
#[derive(Debug, Default)]
pub struct MountsOut {
    /// One per writable mount, in request order.
    pub archives: Vec<TreeArchive>,
    /// Whether the archives were cut to stay within the bound.
    pub truncated: bool,
}

/// One writable mount's `mounts_out` archive, not yet written: its tree, how
/// many of its entries (in the archive's sorted order) it holds and its exact
/// length.
pub struct TreeArchive {
    /// `None` once written: the tree goes as soon as its archive is made.
    root: Option<Node>,
    entries: usize,
    len: u64,
}

impl std::fmt::Debug for TreeArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sizes only: nothing of the guest's files.
        f.debug_struct("TreeArchive")
            .field("entries", &self.entries)
            .field("len", &self.len)
            .finish()
    }
}

impl MountsOut {
    /// Plans the archives of the writable mounts whose roots are `roots`, in
    /// request order, under `files_bytes` and `max_entries` (the execution's
    /// limits): every member's exact length is computed ([`member_len`]), and if
    /// together they would pass [`mounts_out_bound`] (the entries counted at
    /// most `max_entries`), the members are kept in order, mount after mount, up
    /// to the last that keeps the total within it; every archive still ends with
    /// its two zero blocks, and the mounts after the cut have empty archives.
    /// Costs one walk of each tree and 8 bytes per entry; nothing is written yet.
    pub fn plan(roots: Vec<Node>, files_bytes: u64, max_entries: u32) -> MountsOut {
        let mut name = Vec::new();
        let sizes: Vec<Vec<u64>> = roots
            .iter()
            .map(|root| {
                let mut sizes = Vec::new();
                walk_sorted(root, |path, node| {
                    member_name(&mut name, path, node);
                    sizes.push(member_len(&name, node.size()));
                    ControlFlow::Continue(())
                });
                sizes
            })
            .collect();
        let entries = sizes.iter().map(Vec::len).sum::<usize>() as u64;
        let archives = roots.len() as u64;
        let ends = archives * 2 * BLOCK as u64;
        let room = mounts_out_bound(files_bytes, entries.min(u64::from(max_entries)), archives)
            .saturating_sub(ends);
        let mut used = 0u64;
        let mut truncated = false;
        let archives = roots
            .into_iter()
            .zip(sizes)
            .map(|(root, sizes)| {
                let mut kept = 0;
                let mut len = 2 * BLOCK as u64;
                for size in sizes {
                    if truncated || used.saturating_add(size) > room {
                        truncated = true;
                        break;
                    }
                    used += size;
                    len += size;
                    kept += 1;
                }
                TreeArchive {
                    root: Some(root),
                    entries: kept,
                    len,
                }
            })
            .collect();
        MountsOut {
            archives,
            truncated,
        }
    }
}

impl TreeArchive {
    /// The archive's exact length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no bytes (never: an empty archive is its two zero blocks).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the archive to `sink`, in pieces (headers, records, file contents
    /// as they are, padding), exactly [`TreeArchive::len`] bytes, then drops the
    /// tree: every directory (as `name/`) and regular file under the mount's
    /// root, sorted by path bytes, as ustar headers (mode 0644/0755, uid and gid
    /// 0, no user or group names, the node's mtime in seconds), a pax `path`
    /// record before any member whose path does not fit ustar's fields, and the
    /// two zero blocks at the end. An empty mount is 1,024 zero bytes. A second
    /// call writes only the zero blocks.
    pub fn write(&mut self, sink: &mut dyn FnMut(&[u8])) {
        if let Some(root) = self.root.take() {
            let mut name = Vec::new();
            let mut left = self.entries;
            walk_sorted(&root, |path, node| {
                if left == 0 {
                    return ControlFlow::Break(());
                }
                left -= 1;
                member_name(&mut name, path, node);
                write_member(&name, node, sink);
                ControlFlow::Continue(())
            });
            // The tree (the mount's nodes, with its files' contents, zeroized
            // as they drop) goes here, before the next mount's archive is made.
            drop(root);
        }
        sink(&ZEROS);
        sink(&ZEROS);
    }
}

const ZEROS: [u8; BLOCK] = [0; BLOCK];

/// A member's name: its path, and a `/` after a directory's.
fn member_name(name: &mut Vec<u8>, path: &[u8], node: &Node) {
    name.clear();
    name.extend_from_slice(path);
    if node.kind() == Kind::Dir {
        name.push(b'/');
    }
}

/// One member, [`member_len`] bytes of it.
fn write_member(name: &[u8], node: &Node, sink: &mut dyn FnMut(&[u8])) {
    let (kind, size) = (node.kind(), node.size());
    if ustar_split(name).is_none() {
        let record = pax_path_record(name);
        let mut pax_name = b"PaxHeader/".to_vec();
        pax_name.extend_from_slice(&name[name.len().saturating_sub(80)..]);
        let mut pax_header = header(Kind::File, record.len() as u64, 0, &pax_name);
        pax_header.set_entry_type(EntryType::XHeader);
        pax_header.set_cksum();
        sink(pax_header.as_bytes());
        sink(&record);
        sink(&ZEROS[..padded(record.len()) - record.len()]);
    }
    let member = header(kind, size, node.mtime() / 1_000_000_000, name);
    sink(member.as_bytes());
    if kind == Kind::File {
        // A file's contents, as they are: never copied on their way out.
        let written = node.read_with(0, usize::MAX, |data| {
            sink(data);
            data.len()
        });
        let written = written.unwrap_or(0);
        sink(&ZEROS[..padded(written) - written]);
    }
}
