//! Archives in and out of the guest's file system: a request's tar made into a
//! [`MountImage`] with every check of PROTOCOL.md ("Archives") — [`read_image`] —
//! and a writable mount written back as a ustar/pax archive for `mounts_out` —
//! [`MountsOut`]: every archive's exact length settled first, within
//! [`mounts_out_bound`], then written in pieces straight to where the result is
//! built.
//!
//! Reading uses the `tar` crate for headers only (its checksum check, GNU long
//! names and pax records folded into the member they describe, a pax `size`
//! overriding the header's, so that our slice and its skip agree); a file's data
//! is never read through it but sliced out of the archive's `Bytes`, so nothing
//! is copied. Writing makes ustar headers itself (name, or prefix and name), with
//! a pax `path` record before a member whose path does not fit, and never GNU
//! long-name members.

#![forbid(unsafe_code)]

use std::io::Cursor;
use std::ops::ControlFlow;

use bytes::Bytes;
use tar::{EntryType, Header};

use super::image::{ImageError, ImageMember, MemberKind, MountImage};
use super::tree::{Kind, MAX_NAME_BYTES, MAX_PATH_BYTES, Node, walk_sorted};

/// Why an archive cannot be mounted (status `invalid_request`). Members are
/// named by their index in the archive (from 0) and, where it is text, their name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// More members than `max_mount_entries` (parsing stops at the one past it).
    #[error("the archive has more than {max} members (limits.max_mount_entries)")]
    TooManyMembers { max: u32 },
    /// The tar structure itself is broken: a bad header checksum, a size that
    /// does not parse, a dangling long-name or pax header.
    #[error("archive member {index}: {message}")]
    Malformed { index: usize, message: String },
    /// Not a regular file or a directory: links, devices, FIFOs, sparse files...
    #[error(
        "archive member {index} ({name}) is of type {typeflag:?}; only regular files ('0') \
         and directories ('5') may be mounted"
    )]
    Type {
        index: usize,
        name: String,
        typeflag: char,
    },
    /// A member carries a link name (a GNU `K` record).
    #[error("archive member {index} ({name}) has a link name; links cannot be mounted")]
    LinkName { index: usize, name: String },
    /// A member's name is not UTF-8, or holds a NUL.
    #[error("archive member {index}'s name is not UTF-8 text without NUL")]
    NotUtf8 { index: usize },
    /// A member's name is absolute, has `..`, empty or `.` segments, is too long...
    #[error("archive member {index} ({name}): {reason}")]
    Name {
        index: usize,
        name: String,
        reason: &'static str,
    },
    /// A member claims more bytes than the archive has.
    #[error("archive member {index} ({name}) claims {size} bytes past the end of the archive")]
    Truncated {
        index: usize,
        name: String,
        size: u64,
    },
    /// Duplicates, members under files.
    #[error(transparent)]
    Tree(#[from] ImageError),
    /// The regular files are larger than the server's `files_bytes`.
    #[error("the archive's files take more than {limit} bytes (limits.files_bytes)")]
    FilesBytes { limit: u64 },
}

/// Parses and checks `bytes` as a tar archive into a [`MountImage`] that shares
/// them. `max_files_bytes` and `max_entries` are the server's maxima (an
/// execution's own, lower limits are checked when it mounts the image); parsing
/// stops at member `max_entries + 1`, so the work is bounded whatever the archive.
pub fn read_image(
    bytes: impl Into<Bytes>,
    max_files_bytes: u64,
    max_entries: u32,
) -> Result<MountImage, ArchiveError> {
    let bytes: Bytes = bytes.into();
    let mut archive = tar::Archive::new(Cursor::new(&bytes[..]));
    let malformed = |index: usize, error: std::io::Error| ArchiveError::Malformed {
        index,
        message: error.to_string(),
    };
    let entries = archive.entries_with_seek().map_err(|e| malformed(0, e))?;
    let mut members = Vec::new();
    let mut files_bytes = 0u64;
    for (index, entry) in entries.enumerate() {
        if index >= max_entries as usize {
            return Err(ArchiveError::TooManyMembers { max: max_entries });
        }
        let entry = entry.map_err(|e| malformed(index, e))?;
        let header = entry.header();
        let raw_path = entry.path_bytes();
        let name = printable(&raw_path);
        let kind = match header.entry_type() {
            EntryType::Regular => Kind::File,
            EntryType::Directory => Kind::Dir,
            // A pax global header (git archive writes one): nothing of a member.
            EntryType::XGlobalHeader => continue,
            _ => {
                return Err(ArchiveError::Type {
                    index,
                    name,
                    typeflag: char::from(header.as_bytes()[156]),
                });
            }
        };
        if entry.link_name_bytes().is_some_and(|link| !link.is_empty()) {
            return Err(ArchiveError::LinkName { index, name });
        }
        let text = std::str::from_utf8(&raw_path).map_err(|_| ArchiveError::NotUtf8 { index })?;
        if text.contains('\0') {
            return Err(ArchiveError::NotUtf8 { index });
        }
        let path = member_path(text, kind).map_err(|reason| ArchiveError::Name {
            index,
            name: name.clone(),
            reason,
        })?;
        let mtime = header.mtime().unwrap_or(0);
        let Some(path) = path else {
            // `./` or `.`: the root itself; nothing to record.
            continue;
        };
        let kind = match kind {
            Kind::Dir => MemberKind::Dir,
            Kind::File => {
                let start = entry.raw_file_position();
                let size = entry.size();
                let end = start
                    .checked_add(size)
                    .filter(|&end| end <= bytes.len() as u64)
                    .ok_or(ArchiveError::Truncated {
                        index,
                        name: name.clone(),
                        size,
                    })?;
                files_bytes = files_bytes.saturating_add(size);
                if files_bytes > max_files_bytes {
                    return Err(ArchiveError::FilesBytes {
                        limit: max_files_bytes,
                    });
                }
                MemberKind::File(start..end)
            }
        };
        members.push(ImageMember { path, kind, mtime });
    }
    Ok(MountImage::build(bytes.clone(), members)?)
}

/// A member's name for an error text: lossy UTF-8, control characters escaped,
/// at most 200 characters.
fn printable(name: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(name)
        .chars()
        .flat_map(char::escape_default)
        .take(200)
        .collect();
    format!("`{text}`")
}

/// A member's path components, or `None` for the root (`.`, `./`). Leading `./`
/// segments are stripped; a directory may end in `/`.
fn member_path(name: &str, kind: Kind) -> Result<Option<Vec<Vec<u8>>>, &'static str> {
    let mut rest = name;
    while let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped;
    }
    if rest.is_empty() || rest == "." {
        return match kind {
            Kind::Dir => Ok(None),
            Kind::File => Err("a regular file cannot be the archive's root"),
        };
    }
    if rest.starts_with('/') {
        return Err("absolute names are not allowed");
    }
    if let Some(dir) = rest.strip_suffix('/') {
        if kind == Kind::File {
            return Err("a regular file's name cannot end in `/`");
        }
        rest = dir;
    }
    if rest.len() > MAX_PATH_BYTES {
        return Err("the name is longer than 4,096 bytes");
    }
    let mut components = Vec::new();
    for component in rest.split('/') {
        match component {
            "" => return Err("empty path segments (`//`) are not allowed"),
            "." => return Err("`.` segments are not allowed inside a name"),
            ".." => return Err("`..` segments are not allowed"),
            c if c.len() > MAX_NAME_BYTES => {
                return Err("a path segment is longer than 255 bytes");
            }
            c => components.push(c.as_bytes().to_vec()),
        }
    }
    Ok(Some(components))
}

const BLOCK: usize = 512;

fn padded(len: usize) -> usize {
    len.div_ceil(BLOCK) * BLOCK
}

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
pub fn mounts_out_bound(files_bytes: u64, entries: u64, archives: u64) -> u64 {
    files_bytes
        .saturating_add(entries.saturating_mul(2 * BLOCK as u64))
        .saturating_add(archives.saturating_mul(2 * BLOCK as u64))
}

/// The exact bytes one member takes in an archive that [`MountsOut`] writes: a
/// pax header and its `path` record (padded) if `name` does not fit ustar's
/// fields, its header, and `size` bytes of data padded to whole blocks. `name`
/// is the member's name, a directory's with its trailing `/`.
pub fn member_len(name: &[u8], size: u64) -> u64 {
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

#[cfg(test)]
pub(crate) mod forge {
    //! Raw tar headers with anything in them: hostile archives made in code.

    /// A 512-byte ustar header for `name` of `typeflag` claiming `size` bytes.
    pub fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000017\0");
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        set_checksum(&mut h);
        h
    }

    pub fn set_checksum(h: &mut [u8; 512]) {
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    /// A member: its header and its data, padded.
    pub fn member(name: &[u8], typeflag: u8, data: &[u8]) -> Vec<u8> {
        let mut out = header(name, typeflag, data.len() as u64).to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    pub fn file(name: &str, data: &[u8]) -> Vec<u8> {
        member(name.as_bytes(), b'0', data)
    }

    pub fn dir(name: &str) -> Vec<u8> {
        member(name.as_bytes(), b'5', b"")
    }

    /// Members joined, then the end marker.
    pub fn archive(members: &[Vec<u8>]) -> bytes::Bytes {
        let mut out: Vec<u8> = members.concat();
        out.extend_from_slice(&[0; 1024]);
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::forge::{archive, dir, file, member};
    use super::*;
    use crate::sandbox::fs::MountSpec;
    use crate::sandbox::fs::tree::{Mounts, Node, OpenOpts};

    const MAX_BYTES: u64 = 1 << 20;

    fn read(bytes: Bytes) -> Result<MountImage, ArchiveError> {
        read_image(bytes, MAX_BYTES, 1000)
    }

    fn contents(image: &MountImage, path: &str) -> Option<Vec<u8>> {
        let mut at = MountImage::ROOT;
        for component in path.split('/') {
            at = image.lookup(at, component.as_bytes())?;
        }
        Some(image.file_bytes_of(at).to_vec())
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        for (key, value) in records {
            let mut body = format!(" {key}=").into_bytes();
            body.extend_from_slice(value);
            body.push(b'\n');
            let mut len = body.len() + 1;
            while len.to_string().len() + body.len() != len {
                len = len.to_string().len() + body.len();
            }
            data.extend_from_slice(len.to_string().as_bytes());
            data.extend_from_slice(&body);
        }
        member(b"PaxHeader", b'x', &data)
    }

    #[test]
    fn ustar_pax_and_gnu_longname_archives_are_accepted() {
        let long = format!("{}/{}", "d".repeat(150), "f".repeat(200));
        let image = read(archive(&[
            file("a.txt", b"plain"),
            pax(&[("path", long.as_bytes())]),
            file("truncated-name", b"pax named"),
            member(
                b"././@LongLink",
                b'L',
                format!("{}\0", "g".repeat(180)).as_bytes(),
            ),
            file("short", b"gnu named"),
        ]))
        .unwrap();
        assert_eq!(contents(&image, "a.txt").unwrap(), b"plain");
        assert_eq!(contents(&image, &long).unwrap(), b"pax named");
        assert_eq!(contents(&image, &"g".repeat(180)).unwrap(), b"gnu named");
        assert_eq!(contents(&image, "truncated-name"), None);
    }

    fn refused(bytes: Bytes) -> ArchiveError {
        read(bytes).expect_err("refused")
    }

    #[test]
    fn symlinks_hard_links_devices_and_fifos_are_refused() {
        for typeflag in [b'1', b'2', b'3', b'4', b'6', b'7', b'V', b'M', b'Z'] {
            let error = refused(archive(&[member(b"x", typeflag, b"")]));
            assert!(
                matches!(error, ArchiveError::Type { index: 0, typeflag: t, .. } if t == char::from(typeflag)),
                "{typeflag}: {error}"
            );
        }
        // A sparse file: the tar crate refuses it before we see its type.
        let error = refused(archive(&[member(b"x", b'S', b"")]));
        assert!(error.to_string().contains("sparse"), "{error}");
        // A GNU long link name on a regular file.
        let error = refused(archive(&[
            member(b"././@LongLink", b'K', b"/etc/passwd\0"),
            file("x", b""),
        ]));
        assert!(matches!(error, ArchiveError::LinkName { .. }), "{error}");
    }

    #[test]
    fn absolute_names_are_refused() {
        let error = refused(archive(&[file("/etc/passwd", b"x")]));
        assert!(matches!(error, ArchiveError::Name { reason, .. } if reason.contains("absolute")));
    }

    #[test]
    fn dot_dot_segments_are_refused() {
        for name in ["../x", "a/../../x", "a/..", "./.."] {
            let error = refused(archive(&[file(name, b"x")]));
            assert!(
                matches!(error, ArchiveError::Name { reason, .. } if reason.contains("..")),
                "{name}: {error}"
            );
        }
        for name in ["a//b", "a/./b"] {
            assert!(matches!(
                refused(archive(&[file(name, b"x")])),
                ArchiveError::Name { .. }
            ));
        }
    }

    #[test]
    fn a_member_claiming_more_bytes_than_present_is_refused() {
        let mut bytes = forge::header(b"big", b'0', 1 << 20).to_vec();
        bytes.extend_from_slice(&[1; 100]);
        let error = refused(bytes.into());
        assert!(matches!(error, ArchiveError::Truncated { index: 0, size, .. } if size == 1 << 20));
    }

    #[test]
    fn a_hundred_thousand_empty_files_are_refused_after_bounded_work() {
        let one = file("x", b"");
        let mut bytes = Vec::with_capacity(100_000 * 512);
        for _ in 0..100_000 {
            bytes.extend_from_slice(&one);
        }
        let bytes = Bytes::from(bytes);
        let started = std::time::Instant::now();
        let error = read_image(bytes, MAX_BYTES, 1000).unwrap_err();
        assert_eq!(error, ArchiveError::TooManyMembers { max: 1000 });
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // 1,000 members are allowed (all directories, so no duplicates).
        let many: Vec<Vec<u8>> = (0..1000).map(|i| dir(&format!("d{i}"))).collect();
        assert_eq!(read(archive(&many)).unwrap().entry_count(), 1000);
    }

    #[test]
    fn duplicate_names_are_refused() {
        for members in [
            vec![file("a", b"1"), file("a", b"2")],
            vec![dir("d"), dir("d/")],
            vec![file("a", b"1"), dir("a")],
        ] {
            assert!(matches!(
                refused(archive(&members)),
                ArchiveError::Tree(ImageError::Duplicate { .. })
            ));
        }
        // A directory implied by a member, then given: fine.
        assert!(read(archive(&[file("d/x", b"1"), dir("d")])).is_ok());
    }

    #[test]
    fn a_file_under_a_file_is_refused() {
        let error = refused(archive(&[file("a", b"1"), file("a/b", b"2")]));
        assert!(matches!(
            error,
            ArchiveError::Tree(ImageError::UnderFile { .. })
        ));
    }

    #[test]
    fn a_bad_checksum_is_refused() {
        let mut bad = file("a", b"1");
        bad[148] = b'7';
        let error = refused(archive(&[bad]));
        assert!(
            matches!(&error, ArchiveError::Malformed { message, .. } if message.contains("checksum")),
            "{error}"
        );
    }

    #[test]
    fn a_pax_size_override_is_used_for_both_slice_and_skip() {
        // The ustar header says 0 bytes, the pax record 600: the data is 600 bytes,
        // and the next member starts after them.
        let mut bytes = pax(&[("size", b"600")]);
        bytes.extend_from_slice(&forge::header(b"big", b'0', 0));
        bytes.extend_from_slice(&[b'z'; 600]);
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        bytes.extend_from_slice(&file("next", b"n"));
        let image = read(archive(&[bytes])).unwrap();
        assert_eq!(contents(&image, "big").unwrap(), vec![b'z'; 600]);
        assert_eq!(contents(&image, "next").unwrap(), b"n");
    }

    #[test]
    fn leading_dot_slash_names_the_root() {
        let image = read(archive(&[dir("./"), dir("."), file("./././a", b"1")])).unwrap();
        assert_eq!(image.entry_count(), 1);
        assert_eq!(contents(&image, "a").unwrap(), b"1");
        assert!(matches!(
            refused(archive(&[file("./", b"")])),
            ArchiveError::Name { .. }
        ));
    }

    #[test]
    fn non_utf8_names_are_refused() {
        let error = refused(archive(&[member(b"caf\xe9", b'0', b"")]));
        assert_eq!(error, ArchiveError::NotUtf8 { index: 0 });
    }

    #[test]
    fn pax_global_headers_are_ignored() {
        let mut global = pax(&[("comment", b"abc")]);
        global[156] = b'g';
        let mut header: [u8; 512] = global[..512].try_into().unwrap();
        forge::set_checksum(&mut header);
        global[..512].copy_from_slice(&header);
        let image = read(archive(&[global, file("a", b"1")])).unwrap();
        assert_eq!(image.entry_count(), 1);
    }

    #[test]
    fn files_over_files_bytes_are_refused() {
        let bytes = archive(&[file("a", &[1; 600]), file("b", &[2; 600])]);
        assert_eq!(
            read_image(bytes.clone(), 1000, 10).unwrap_err(),
            ArchiveError::FilesBytes { limit: 1000 }
        );
        assert!(read_image(bytes, 1200, 10).is_ok());
    }

    #[test]
    fn an_empty_archive_is_an_empty_directory() {
        assert_eq!(read(Bytes::new()).unwrap().entry_count(), 0);
        assert_eq!(read(archive(&[])).unwrap().entry_count(), 0);
    }

    // The writer.

    /// Writable mount `mount` as a `mounts_out` archive, whole (no bound in the
    /// way): what these tests read back.
    fn write_tree(mounts: &Mounts, mount: u32) -> Vec<u8> {
        let root = mounts.mounts()[mount as usize].root.clone();
        let mut archive = MountsOut::plan(vec![root], u64::MAX / 4, u32::MAX)
            .archives
            .remove(0);
        let mut out = Vec::with_capacity(archive.len() as usize);
        archive.write(&mut |piece| out.extend_from_slice(piece));
        assert_eq!(out.len() as u64, archive.len());
        out
    }

    fn writable(image: Option<MountImage>) -> Mounts {
        Mounts::new(
            vec![MountSpec {
                path: "/out".into(),
                writable: true,
                image: image.map(Arc::new),
            }],
            1 << 30,
            100_000,
        )
        .unwrap()
    }

    fn root(mounts: &Mounts) -> Node {
        mounts.mounts()[0].root.clone()
    }

    /// Every member of an archive: (typeflag, raw ustar name field, path as the
    /// tar crate reads it, size).
    fn listing(bytes: &[u8]) -> Vec<(u8, Vec<u8>, String, u64)> {
        let mut archive = tar::Archive::new(Cursor::new(bytes));
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                (
                    header.as_bytes()[156],
                    header.as_bytes()[..100].to_vec(),
                    String::from_utf8(entry.path_bytes().to_vec()).unwrap(),
                    entry.size(),
                )
            })
            .collect()
    }

    #[test]
    fn mounts_out_is_ustar_sorted_by_name_with_dirs_first() {
        let mut mounts = writable(None);
        let base = root(&mounts);
        let create = OpenOpts {
            create: true,
            write: true,
            ..OpenOpts::default()
        };
        mounts.create_dir(0, &base, "b").unwrap();
        for name in ["b/z", "a-b", "c", "b/a"] {
            let file = mounts.open(0, &base, name, create).unwrap();
            mounts.write(0, &file, 0, name.as_bytes()).unwrap();
        }
        let out = write_tree(&mounts, 0);
        assert_eq!(out.len() % 512, 0);
        let names: Vec<(u8, String)> = listing(&out)
            .into_iter()
            .map(|(t, _, path, _)| (t, path))
            .collect();
        assert_eq!(
            names,
            [
                (b'0', "a-b".to_string()),
                (b'5', "b/".to_string()),
                (b'0', "b/a".to_string()),
                (b'0', "b/z".to_string()),
                (b'0', "c".to_string()),
            ]
        );
        let first = &out[..512];
        assert_eq!(&first[257..263], b"ustar\0");
        assert_eq!(&first[100..107], b"0000644");
        assert_eq!(&first[108..115], b"0000000");
        assert_eq!(&first[265..270], [0; 5], "no user name");
    }

    #[test]
    fn names_over_255_bytes_use_a_pax_path_record_not_gnu() {
        let mut mounts = writable(None);
        let base = root(&mounts);
        let long_dir = "d".repeat(200);
        let long = format!("{long_dir}/{}", "f".repeat(200));
        let split = format!("{}/{}", "p".repeat(150), "n".repeat(90));
        mounts.create_dir(0, &base, &long_dir).unwrap();
        mounts.create_dir(0, &base, &"p".repeat(150)).unwrap();
        let create = OpenOpts {
            create: true,
            write: true,
            ..OpenOpts::default()
        };
        mounts.open(0, &base, &long, create).unwrap();
        mounts.open(0, &base, &split, create).unwrap();
        let out = write_tree(&mounts, 0);
        let members = listing(&out);
        let paths: Vec<&str> = members.iter().map(|m| m.2.as_str()).collect();
        assert_eq!(
            paths,
            [
                format!("{long_dir}/").as_str(),
                long.as_str(),
                format!("{}/", "p".repeat(150)).as_str(),
                split.as_str()
            ]
        );
        // Raw: no GNU 'L' members; pax 'x' headers only where the name does not
        // fit ustar (the 201- and 151-byte directories, which have no `/` to
        // split at, and the 401-byte file); the 241-byte path fits prefix + name.
        let mut at = 0;
        let mut typeflags = Vec::new();
        while at + 512 <= out.len() && out[at..at + 512].iter().any(|&b| b != 0) {
            let h = &out[at..at + 512];
            typeflags.push(h[156]);
            let size = u64::from_str_radix(
                std::str::from_utf8(&h[124..135])
                    .unwrap()
                    .trim_matches('\0'),
                8,
            )
            .unwrap();
            at += 512 + (size as usize).div_ceil(512) * 512;
        }
        assert_eq!(typeflags, [b'x', b'5', b'x', b'0', b'x', b'5', b'0']);
    }

    #[test]
    fn an_empty_mount_is_two_zero_blocks() {
        let mounts = writable(None);
        assert_eq!(&write_tree(&mounts, 0)[..], &[0u8; 1024][..]);
    }

    /// A small seeded generator (xorshift), so the test is the same every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn written_trees_read_back_identically() {
        let create = OpenOpts {
            create: true,
            write: true,
            ..OpenOpts::default()
        };
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut mounts = writable(None);
            let base = root(&mounts);
            let mut dirs = vec![String::new()];
            for i in 0..rng.below(40) {
                let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
                let max = if rng.below(4) == 0 { 120 } else { 12 };
                let len = 1 + rng.below(max) as usize;
                let name: String = (0..len)
                    .map(|_| {
                        ['a', 'b', 'c', 'X', 'Y', 'Z', '-', '_', '.', 'é'][rng.below(10) as usize]
                    })
                    .collect::<String>()
                    + &i.to_string();
                let path = if parent.is_empty() {
                    name
                } else {
                    format!("{parent}/{name}")
                };
                if path.len() > 1000 {
                    continue;
                }
                if rng.below(3) == 0 {
                    mounts.create_dir(0, &base, &path).unwrap();
                    dirs.push(path);
                } else {
                    let file = mounts.open(0, &base, &path, create).unwrap();
                    let data: Vec<u8> = (0..rng.below(2000)).map(|_| rng.next() as u8).collect();
                    mounts.write(0, &file, 0, &data).unwrap();
                }
            }
            let out = write_tree(&mounts, 0);
            let image = read_image(Bytes::from(out.to_vec()), 1 << 30, 100_000).unwrap();
            let again = writable(Some(image));
            let flatten = |m: &Mounts| -> Vec<(Vec<u8>, Kind, Vec<u8>, u64)> {
                m.walk_mount(0)
                    .into_iter()
                    .map(|(path, node)| {
                        let stat = m.stat(0, &node);
                        let data = m.with_contents(&node, <[u8]>::to_vec);
                        (path, stat.kind, data, stat.mtime / 1_000_000_000)
                    })
                    .collect()
            };
            assert_eq!(flatten(&mounts), flatten(&again), "seed {seed}");
            // And writing it again gives the same bytes.
            assert_eq!(&write_tree(&again, 0)[..], &out[..], "seed {seed}");
        }
    }

    const CREATE: OpenOpts = OpenOpts {
        create: true,
        write: true,
        exclusive: false,
        truncate: false,
        directory: false,
    };

    /// Writable mounts `paths`, in order, each starting empty.
    fn writable_mounts(count: usize) -> Mounts {
        let specs = (0..count)
            .map(|index| MountSpec {
                path: format!("/out{index}"),
                writable: true,
                image: None,
            })
            .collect();
        Mounts::new(specs, 1 << 30, 1_000_000).unwrap()
    }

    /// Under a mount, `count` random entries whose names are 1 to 255 bytes
    /// (often at ustar's 100 and 155 and at 255), made through their parent
    /// directory's node so that paths also pass 4,096 bytes (the walk leaves
    /// those out).
    fn long_named_tree(mounts: &mut Mounts, mount: u32, seed: u64, count: u64) {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut dirs = vec![mounts.mounts()[mount as usize].root.clone()];
        for i in 0..count {
            let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
            let len = [1, 99, 100, 101, 154, 155, 156, 254, 255][rng.below(9) as usize]
                .max(1 + rng.below(255) as usize * usize::from(rng.below(2) == 0));
            let tag = format!("{i}-");
            let name = tag.clone() + &"n".repeat(len.saturating_sub(tag.len()).max(1));
            let name = &name[..name.len().min(255)];
            if rng.below(3) == 0 {
                mounts.create_dir(mount, &parent, name).unwrap();
                dirs.push(mounts.lookup(&parent, name).unwrap());
            } else {
                let file = mounts.open(mount, &parent, name, CREATE).unwrap();
                let data: Vec<u8> = (0..rng.below(1500)).map(|_| rng.next() as u8).collect();
                mounts.write(mount, &file, 0, &data).unwrap();
            }
        }
    }

    /// What [`member_len`] says a whole archive of `root` takes.
    fn summed_member_lens(root: &Node) -> (u64, u64) {
        let (mut bytes, mut entries) = (2 * BLOCK as u64, 0);
        walk_sorted(root, |path, node| {
            let mut name = path.to_vec();
            if node.is_dir() {
                name.push(b'/');
            }
            bytes += member_len(&name, node.size());
            entries += 1;
            ControlFlow::Continue(())
        });
        (bytes, entries)
    }

    #[test]
    fn the_computed_length_is_the_written_length_for_long_names_needing_pax() {
        let mut with_pax = 0;
        for seed in 1..=40u64 {
            let mut mounts = writable_mounts(1);
            long_named_tree(&mut mounts, 0, seed, 50);
            let root = root(&mounts);
            let (summed, _) = summed_member_lens(&root);
            let mut archive = MountsOut::plan(vec![root], u64::MAX / 4, u32::MAX)
                .archives
                .remove(0);
            assert_eq!(archive.len(), summed, "seed {seed}");
            let mut out = Vec::new();
            archive.write(&mut |piece| out.extend_from_slice(piece));
            assert_eq!(out.len() as u64, summed, "seed {seed}");
            with_pax += listing_typeflags(&out)
                .iter()
                .filter(|&&t| t == b'x')
                .count();
            read_image(Bytes::from(out), 1 << 30, 100_000).expect("a valid archive");
        }
        assert!(
            with_pax > 100,
            "the trees had long names: {with_pax} pax records"
        );
    }

    /// Every header's typeflag in a written archive, pax headers included.
    fn listing_typeflags(out: &[u8]) -> Vec<u8> {
        let mut at = 0;
        let mut typeflags = Vec::new();
        while at + 512 <= out.len() && out[at..at + 512].iter().any(|&b| b != 0) {
            let h = &out[at..at + 512];
            typeflags.push(h[156]);
            let size = u64::from_str_radix(
                std::str::from_utf8(&h[124..135])
                    .unwrap()
                    .trim_matches('\0'),
                8,
            )
            .unwrap();
            at += 512 + (size as usize).div_ceil(512) * 512;
        }
        typeflags
    }

    /// Row 2 of issue 25 in small: empty files whose paths are 4,095 bytes, so
    /// each takes 5,632 bytes of archive against the 1,024 the bound allows.
    #[test]
    fn archives_past_their_bound_are_cut_at_a_whole_entry_and_stay_valid() {
        let mut mounts = writable_mounts(3);
        let mut dir = mounts.mounts()[0].root.clone();
        for level in 0..15 {
            let name = format!("{level:02}").repeat(128)[..255].to_owned();
            mounts.create_dir(0, &dir, &name).unwrap();
            dir = mounts.lookup(&dir, &name).unwrap();
        }
        for i in 0..200 {
            let name = format!("{i:03}").repeat(85);
            mounts.open(0, &dir, &name, CREATE).unwrap();
        }
        let small = mounts.open(1, &mounts.mounts()[1].root.clone(), "small", CREATE);
        mounts.write(1, &small.unwrap(), 0, b"data").unwrap();
        let roots: Vec<Node> = mounts.mounts().iter().map(|m| m.root.clone()).collect();
        let whole = write_tree(&mounts, 0);

        let plan = MountsOut::plan(roots.clone(), 0, 1_000_000);
        assert!(plan.truncated);
        let bound = mounts_out_bound(0, 215 + 1, 3);
        let written: Vec<Vec<u8>> = plan
            .archives
            .into_iter()
            .map(|mut archive| {
                let mut out = Vec::new();
                archive.write(&mut |piece| out.extend_from_slice(piece));
                assert_eq!(out.len() as u64, archive.len());
                out
            })
            .collect();
        let total: u64 = written.iter().map(|out| out.len() as u64).sum();
        assert!(total <= bound, "{total} > {bound}");
        assert!(total > bound - 5632, "cut at the last entry that fits");
        // The first archive: a valid archive of the whole one's first members.
        let cut = &written[0];
        assert!(cut.ends_with(&[0; 1024]));
        let members = listing(cut);
        assert!(!members.is_empty() && members.len() < 215);
        assert_eq!(members[..], listing(&whole)[..members.len()]);
        read_image(Bytes::from(cut.clone()), 1 << 30, 1_000_000).expect("mountable");
        // The cut is one place in request order: the later mounts' archives are
        // empty, and valid.
        assert_eq!(&written[1][..], &[0; 1024][..]);
        assert_eq!(&written[2][..], &[0; 1024][..]);

        // Entries are counted at most at `max_mount_entries`.
        let capped = MountsOut::plan(roots, 0, 10);
        let total: u64 = capped.archives.iter().map(TreeArchive::len).sum();
        assert!(total <= mounts_out_bound(0, 10, 3));
    }

    #[test]
    fn short_paths_never_reach_the_bound_even_with_the_most_padding() {
        // Files of 1 byte (511 bytes of padding each), their bytes exactly
        // `files_bytes`, in nested directories.
        let mut mounts = writable_mounts(2);
        for mount in 0..2 {
            let base = mounts.mounts()[mount as usize].root.clone();
            mounts.create_dir(mount, &base, "d").unwrap();
            for i in 0..300 {
                let file = mounts
                    .open(mount, &base, &format!("d/{i}"), CREATE)
                    .unwrap();
                mounts.write(mount, &file, 0, b"x").unwrap();
            }
        }
        let roots: Vec<Node> = mounts.mounts().iter().map(|m| m.root.clone()).collect();
        let plan = MountsOut::plan(roots, 600, 1_000_000);
        assert!(!plan.truncated);
        let total: u64 = plan.archives.iter().map(TreeArchive::len).sum();
        assert_eq!(total, 2 * (1024 + 512 + 300 * 1024));
    }
}
