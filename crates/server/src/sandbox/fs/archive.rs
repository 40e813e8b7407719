//! Archives in and out of the guest's file system: a request's tar made into a
//! [`MountImage`] with every check of PROTOCOL.md ("Archives") — [`read_image`] —
//! and a writable mount written back as a ustar/pax archive for `mounts_out` —
//! [`MountsOut`]: every archive's exact length settled first, within
//! [`mounts_out_bound`], then written in pieces straight to where the result is
//! built.
//!
//! Reading walks the archive's 512-byte blocks itself and uses the `tar` crate's
//! `Header` for one header's fields (octal and base-256 numbers, the ustar
//! prefix). GNU long names (`L`, `K`) and pax records (`x`) are folded into the
//! member they describe here, strictly: a record that does not parse is refused,
//! never skipped, since readers that skip differently see different archives. A
//! pax `size` overrides the header's, for our slice and our skip alike. A file's
//! data is sliced out of the archive's `Bytes`, so nothing is copied, and each
//! member goes into an [`ImageBuilder`] as it is read, so that the first bound
//! passed stops the reading.
//!
//! Writing makes ustar headers itself (name, or prefix and name), with a pax
//! `path` record before a member whose path does not fit, and never GNU
//! long-name members.
//!
//! This file reads; [`out`] writes.

mod out;

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use tar::{EntryType, Header};

use super::image::{ImageBuilder, ImageError, MemberKind, MountImage};
use super::tree::{Kind, MAX_NAME_BYTES, MAX_PATH_BYTES};

#[cfg(test)]
use self::out::member_len;
pub(crate) use self::out::mounts_out_bound;
pub use self::out::{MountsOut, TreeArchive};

/// Why an archive cannot be mounted (status `invalid_request`). Members are
/// named by their index in the archive (from 0) and, where it is text, their name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// More members than `max_mount_entries` (parsing stops at the one past it).
    #[error("the archive has more than {max} members (limits.max_mount_entries)")]
    TooManyMembers { max: u32 },
    /// The tar structure itself is broken: a bad header checksum, a size that
    /// does not parse, a dangling or repeated long-name or pax header.
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
    /// A member carries a link name (a GNU `K` record, a pax `linkpath`).
    #[error("archive member {index} ({name}) has a link name; links cannot be mounted")]
    LinkName { index: usize, name: String },
    /// A member's name is not UTF-8, or holds a NUL.
    #[error("archive member {index} ({name}): its name is not UTF-8 text without NUL")]
    NotUtf8 { index: usize, name: String },
    /// A member's name is absolute, has `..`, empty or `.` segments, is too long...
    #[error("archive member {index} ({name}): {reason}")]
    Name {
        index: usize,
        name: String,
        reason: &'static str,
    },
    /// A pax record that does not parse (its length, its newline, its `=`), or
    /// that is refused (a `size` that is not a decimal number, an empty or
    /// repeated `path`, a sparse file, a global header setting a path).
    #[error("archive member {index} ({name}): its {reason}")]
    Pax {
        index: usize,
        name: String,
        reason: String,
    },
    /// A GNU long name that is empty, or given together with a pax `path`.
    #[error("archive member {index} ({name}): {reason}")]
    LongName {
        index: usize,
        name: String,
        reason: &'static str,
    },
    /// A member (or a long-name or pax header) claims more bytes than the
    /// archive has.
    #[error("archive member {index} ({name}) claims {size} bytes past the end of the archive")]
    Truncated {
        index: usize,
        name: String,
        size: u64,
    },
    /// Duplicates, members under files, more files and directories than
    /// `max_mount_entries` once the parent directories members imply are made.
    #[error("archive member {index}: {error}")]
    Tree { index: usize, error: ImageError },
    /// The regular files are larger than the server's `files_bytes`.
    #[error("the archive's files take more than {limit} bytes (limits.files_bytes)")]
    FilesBytes { limit: u64 },
}

/// Parses and checks `bytes` as a tar archive into a [`MountImage`] that shares
/// them. `max_files_bytes` and `max_entries` are the server's maxima (an
/// execution's own, lower limits are checked when it mounts the image). Every
/// bound is checked as the archive is read, and the first one passed stops it:
/// at most `max_entries` member headers are read, and at most `max_entries`
/// files and directories are made, the parent directories members imply
/// included; the work per member is the length of its headers.
pub fn read_image(
    bytes: impl Into<Bytes>,
    max_files_bytes: u64,
    max_entries: u32,
) -> Result<MountImage, ArchiveError> {
    let bytes: Bytes = bytes.into();
    let mut image = ImageBuilder::new(bytes.clone(), max_entries);
    let mut files_bytes = 0u64;
    let mut at = 0;
    for index in 0usize.. {
        let Some(member) = next_member(&bytes, &mut at, index)? else {
            break;
        };
        if index >= max_entries as usize {
            return Err(ArchiveError::TooManyMembers { max: max_entries });
        }
        let Some(kind) = member_kind(&bytes, &member, index)? else {
            continue;
        };
        let Some(path) = member_name(&member, kind, index)? else {
            // `./` or `.`: the root itself; nothing to record.
            continue;
        };
        let mtime = member.header.mtime().unwrap_or(0);
        let kind = match kind {
            Kind::Dir => MemberKind::Dir,
            Kind::File => {
                let size = (member.data.end - member.data.start) as u64;
                files_bytes = files_bytes.saturating_add(size);
                if files_bytes > max_files_bytes {
                    return Err(ArchiveError::FilesBytes {
                        limit: max_files_bytes,
                    });
                }
                MemberKind::File(member.data.start as u64..member.data.end as u64)
            }
        };
        image
            .add(path.as_bytes(), kind, mtime)
            .map_err(|error| ArchiveError::Tree { index, error })?;
    }
    Ok(image.finish())
}

/// What `member` (the `index`th) makes: a file or a directory, or nothing
/// (`None`) for a pax global header, whose records must still parse and say
/// nothing of a member.
fn member_kind(
    bytes: &Bytes,
    member: &Member<'_>,
    index: usize,
) -> Result<Option<Kind>, ArchiveError> {
    match member.header.entry_type() {
        EntryType::Regular => Ok(Some(Kind::File)),
        EntryType::Directory => Ok(Some(Kind::Dir)),
        // A pax global header (git archive writes one): nothing of a member,
        // and it may not say anything of one either.
        EntryType::XGlobalHeader => {
            pax_fields(&bytes[member.data.clone()], true).map_err(|reason| ArchiveError::Pax {
                index,
                name: printable(&member.path),
                reason,
            })?;
            Ok(None)
        }
        _ => Err(ArchiveError::Type {
            index,
            name: printable(&member.path),
            typeflag: char::from(member.header.as_bytes()[156]),
        }),
    }
}

/// The path `member` (the `index`th, of `kind`) is mounted at, checked, or
/// `None` for the root itself; a member with a link name has none.
fn member_name<'a>(
    member: &'a Member<'_>,
    kind: Kind,
    index: usize,
) -> Result<Option<&'a str>, ArchiveError> {
    let name = || printable(&member.path);
    if member.link {
        return Err(ArchiveError::LinkName {
            index,
            name: name(),
        });
    }
    let text = std::str::from_utf8(&member.path)
        .ok()
        .filter(|text| !text.contains('\0'))
        .ok_or_else(|| ArchiveError::NotUtf8 {
            index,
            name: name(),
        })?;
    member_path(text, kind).map_err(|reason| ArchiveError::Name {
        index,
        name: name(),
        reason,
    })
}

/// One member as the archive describes it, the GNU long-name and pax headers
/// before it folded in.
struct Member<'a> {
    header: &'a Header,
    /// From a GNU long name, a pax `path` record, or the header.
    path: Cow<'a, [u8]>,
    /// A link target was given: a GNU `K` member, a pax `linkpath`, the header's.
    link: bool,
    /// Its data in the archive (a pax `size` overrides the header's).
    data: Range<usize>,
}

/// The member whose headers start at `*at`, which moves past its data; `None`
/// at the archive's end (no bytes left, or a zero block).
fn next_member<'a>(
    bytes: &'a [u8],
    at: &mut usize,
    index: usize,
) -> Result<Option<Member<'a>>, ArchiveError> {
    let mut extensions = Extensions::default();
    loop {
        let Some((header, header_size)) = header_at(bytes, *at, index, extensions.pending())?
        else {
            return Ok(None);
        };
        if !is_extension(header) {
            return member_of(bytes, at, index, header, header_size, &extensions).map(Some);
        }
        let start = *at + BLOCK;
        let data = data_of(bytes, start, header_size).ok_or_else(|| ArchiveError::Truncated {
            index,
            name: printable(&header.path_bytes()),
            size: header_size,
        })?;
        *at = start + padded(data.len()).min(bytes.len() - start);
        if extensions.repeated(header.entry_type(), data) {
            return Err(malformed(
                index,
                "two headers of the same kind (GNU long name, GNU long link or pax) for one member",
            ));
        }
    }
}

/// Member `index`'s error `message` ([`ArchiveError::Malformed`]).
fn malformed(index: usize, message: &str) -> ArchiveError {
    ArchiveError::Malformed {
        index,
        message: message.to_owned(),
    }
}

/// The header block at `at` and the size its header gives, checked (a whole
/// block, its checksum, a size that is a number); `None` at the archive's end,
/// which may not come after an extension header (`pending`).
fn header_at(
    bytes: &[u8],
    at: usize,
    index: usize,
    pending: bool,
) -> Result<Option<(&Header, u64)>, ArchiveError> {
    let rest = &bytes[at..];
    if !rest.is_empty() && rest.len() < BLOCK {
        return Err(malformed(index, "the archive ends inside a header block"));
    }
    if rest.is_empty() || rest[..BLOCK].iter().all(|&b| b == 0) {
        if pending {
            return Err(malformed(
                index,
                "a GNU long-name or pax header is the last thing in the archive, with \
                 no member for it to describe",
            ));
        }
        return Ok(None);
    }
    let header = Header::from_byte_slice(&rest[..BLOCK]);
    if !checksum_matches(header) {
        return Err(malformed(
            index,
            "the header checksum does not match its bytes",
        ));
    }
    let header_size = header
        .entry_size()
        .map_err(|_| malformed(index, "the header's size field is not a number"))?;
    Ok(Some((header, header_size)))
}

/// Whether `header` describes the member after it (a GNU long name or long
/// link, or pax records) rather than being a member.
fn is_extension(header: &Header) -> bool {
    let entry_type = header.entry_type();
    // Extension headers only in a ustar or GNU header, as the tar crate and
    // GNU tar have it; in an old (v7) one they are members of unknown type.
    let recognized = header.as_ustar().is_some() || header.as_gnu().is_some();
    recognized
        && (entry_type.is_gnu_longname()
            || entry_type.is_gnu_longlink()
            || entry_type.is_pax_local_extensions())
}

/// The extension headers read before a member, each kind at most once.
#[derive(Default)]
struct Extensions<'a> {
    /// A GNU long name's data (`L`).
    long_name: Option<&'a [u8]>,
    /// A GNU long link (`K`) was given.
    long_link: bool,
    /// A pax header's records (`x`).
    pax: Option<&'a [u8]>,
}

impl<'a> Extensions<'a> {
    /// Whether any was read, so that a member must follow.
    fn pending(&self) -> bool {
        self.long_name.is_some() || self.long_link || self.pax.is_some()
    }

    /// Records an extension header of `entry_type` with `data`; whether one of
    /// its kind was there already.
    fn repeated(&mut self, entry_type: EntryType, data: &'a [u8]) -> bool {
        match entry_type {
            EntryType::GNULongName => self.long_name.replace(data).is_some(),
            EntryType::GNULongLink => std::mem::replace(&mut self.long_link, true),
            _ => self.pax.replace(data).is_some(),
        }
    }
}

/// The member `header` (at `*at`) describes, `extensions` folded in; `*at`
/// moves past its data.
fn member_of<'a>(
    bytes: &'a [u8],
    at: &mut usize,
    index: usize,
    header: &'a Header,
    header_size: u64,
    extensions: &Extensions<'a>,
) -> Result<Member<'a>, ArchiveError> {
    let start = *at + BLOCK;
    // The member's own name field, for the errors about what names it.
    let header_name = || printable(&header.path_bytes());
    if extensions.pending() && header.entry_type().is_pax_global_extensions() {
        return Err(malformed(
            index,
            "a GNU long-name or pax header before a pax global header",
        ));
    }
    let fields = match extensions.pax {
        Some(records) => pax_fields(records, false).map_err(|reason| ArchiveError::Pax {
            index,
            name: header_name(),
            reason,
        })?,
        None => PaxFields::default(),
    };
    let path = path_of(header, extensions.long_name, fields.path).map_err(|reason| {
        ArchiveError::LongName {
            index,
            name: header_name(),
            reason,
        }
    })?;
    let size = fields.size.unwrap_or(header_size);
    let Some(data) = data_of(bytes, start, size) else {
        return Err(ArchiveError::Truncated {
            index,
            name: printable(&path),
            size,
        });
    };
    *at = start + padded(data.len()).min(bytes.len() - start);
    Ok(Member {
        header,
        path,
        link: extensions.long_link || fields.link || header.link_name_bytes().is_some(),
        data: start..start + data.len(),
    })
}

/// A member's path: its GNU long name (not empty), its pax `path` record, or its
/// header's name; never both of the first two. The error is the reason.
fn path_of<'a>(
    header: &'a Header,
    long_name: Option<&'a [u8]>,
    pax_path: Option<&'a [u8]>,
) -> Result<Cow<'a, [u8]>, &'static str> {
    match (long_name, pax_path) {
        (Some(_), Some(_)) => Err(
            "it has both a GNU long name and a pax `path` record, which readers do not agree on",
        ),
        (Some(name), None) => match name.strip_suffix(b"\0").unwrap_or(name) {
            [] => Err("its GNU long name is empty"),
            name => Ok(Cow::Borrowed(name)),
        },
        (None, Some(path)) => Ok(Cow::Borrowed(path)),
        (None, None) => Ok(header.path_bytes()),
    }
}

/// The `size` bytes from `start`, if the archive has them.
fn data_of(bytes: &[u8], start: usize, size: u64) -> Option<&[u8]> {
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    bytes.get(start..end)
}

/// Whether `header`'s checksum field holds the sum of its bytes, the field
/// itself counted as eight spaces (POSIX ustar `chksum`).
fn checksum_matches(header: &Header) -> bool {
    let bytes = header.as_bytes();
    let sum: u32 = bytes[..148]
        .iter()
        .chain(&bytes[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    header.cksum().is_ok_and(|field| field == sum)
}

/// What a pax header says of its member.
#[derive(Default)]
struct PaxFields<'a> {
    path: Option<&'a [u8]>,
    size: Option<u64>,
    /// A non-empty `linkpath`.
    link: bool,
}

/// The records of a pax header, all of which must parse (the data holds
/// records and nothing else). `path`, `size` and `linkpath` may each be given
/// once; `path` not empty, `size` a decimal number. Sparse-file records
/// (`GNU.sparse.*`) are refused: such a file's data is not its contents. In a
/// global header (`global`), `path`, `size` and `linkpath` are refused: they
/// would be every member's, which readers do not agree on. Other records are
/// ignored. The error is the reason, starting with the record's number.
fn pax_fields(data: &[u8], global: bool) -> Result<PaxFields<'_>, String> {
    let mut fields = PaxFields::default();
    let mut linkpath = false;
    let mut rest = data;
    for number in 0usize.. {
        if rest.is_empty() {
            break;
        }
        let PaxRecord { key, value, after } =
            pax_record(rest).map_err(|reason| format!("pax record {number} {reason}"))?;
        let refuse =
            |reason: &str| Err(format!("pax record {number} ({}) {reason}", printable(key)));
        let repeated = match key {
            b"path" | b"size" | b"linkpath" if global => {
                return refuse(
                    "is in a global header, which may not set a member's path, size or link",
                );
            }
            b"path" if value.is_empty() => return refuse("is empty"),
            b"path" => fields.path.replace(value).is_some(),
            b"size" => match decimal(value) {
                Some(size) => fields.size.replace(size).is_some(),
                None => return refuse("is not a decimal number"),
            },
            b"linkpath" => {
                fields.link |= !value.is_empty();
                std::mem::replace(&mut linkpath, true)
            }
            key if key.starts_with(b"GNU.sparse.") => {
                return refuse("describes a sparse file; sparse files cannot be mounted");
            }
            _ => false,
        };
        if repeated {
            return refuse("repeats one before it in the same header");
        }
        rest = after;
    }
    Ok(fields)
}

/// One pax record, and the bytes after it.
struct PaxRecord<'a> {
    key: &'a [u8],
    value: &'a [u8],
    after: &'a [u8],
}

/// The first pax record of `data`. A record is
/// `"<length> <keyword>=<value>\n"`, its length in decimal counting the whole
/// record, its own digits and the newline included (POSIX.1-2008, pax,
/// "pax Extended Header"). The error says what is wrong with it.
fn pax_record(data: &[u8]) -> Result<PaxRecord<'_>, &'static str> {
    const NO_LENGTH: &str = "does not start with a decimal length and a space";
    // A u64 has at most 20 digits.
    let space = data
        .iter()
        .take(21)
        .position(|&b| b == b' ')
        .ok_or(NO_LENGTH)?;
    let length = decimal(&data[..space])
        .and_then(|length| usize::try_from(length).ok())
        .ok_or(NO_LENGTH)?;
    let record = data
        .get(..length)
        .ok_or("has a length past the end of the pax data")?;
    let body = record
        .get(space + 1..)
        .and_then(|body| body.strip_suffix(b"\n"))
        .ok_or("does not end in a newline where its length says")?;
    let equals = body
        .iter()
        .position(|&b| b == b'=')
        .ok_or("has no `=` between its keyword and value")?;
    let (key, value) = (&body[..equals], &body[equals + 1..]);
    if key.is_empty() || key.contains(&0) {
        return Err("has an empty keyword, or a NUL in it");
    }
    Ok(PaxRecord {
        key,
        value,
        after: &data[length..],
    })
}

/// A run of ASCII digits as a number, if it is one and fits: no sign, no
/// spaces, not empty.
fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
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

/// A member's path without its leading `./` segments and trailing `/`, or
/// `None` for the root (`.`, `./`). A directory may end in `/`.
fn member_path(name: &str, kind: Kind) -> Result<Option<&str>, &'static str> {
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
    for component in rest.split('/') {
        match component {
            "" => return Err("empty path segments (`//`) are not allowed"),
            "." => return Err("`.` segments are not allowed inside a name"),
            ".." => return Err("`..` segments are not allowed"),
            c if c.len() > MAX_NAME_BYTES => {
                return Err("a path segment is longer than 255 bytes");
            }
            _ => {}
        }
    }
    Ok(Some(rest))
}

/// A tar block's length.
const BLOCK: usize = 512;

/// `len` rounded up to whole blocks.
fn padded(len: usize) -> usize {
    len.div_ceil(BLOCK) * BLOCK
}

#[cfg(test)]
pub(crate) mod forge {
    //! Raw tar headers with anything in them: hostile archives made in code.

    /// A 512-byte ustar header for `name` of `typeflag` claiming `size` bytes.
    pub(crate) fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; 512] {
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

    pub(crate) fn set_checksum(h: &mut [u8; 512]) {
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    /// A member: its header and its data, padded.
    pub(crate) fn member(name: &[u8], typeflag: u8, data: &[u8]) -> Vec<u8> {
        let mut out = header(name, typeflag, data.len() as u64).to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    pub(crate) fn file(name: &str, data: &[u8]) -> Vec<u8> {
        member(name.as_bytes(), b'0', data)
    }

    pub(crate) fn dir(name: &str) -> Vec<u8> {
        member(name.as_bytes(), b'5', b"")
    }

    /// Members joined, then the end marker.
    pub(crate) fn archive(members: &[Vec<u8>]) -> bytes::Bytes {
        let mut out: Vec<u8> = members.concat();
        out.extend_from_slice(&[0; 1024]);
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::ops::ControlFlow;
    use std::sync::Arc;

    use super::forge::{archive, dir, file, member};
    use super::*;
    use crate::sandbox::fs::MountSpec;
    use crate::sandbox::fs::tree::{Mounts, Node, OpenOpts, walk_sorted};

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
        for typeflag in [b'1', b'2', b'3', b'4', b'6', b'7', b'S', b'V', b'M', b'Z'] {
            let error = refused(archive(&[member(b"x", typeflag, b"")]));
            assert!(
                matches!(error, ArchiveError::Type { index: 0, typeflag: t, .. } if t == char::from(typeflag)),
                "{typeflag}: {error}"
            );
        }
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
        let mut bytes = Vec::with_capacity(100_000 * 512);
        for i in 0..100_000 {
            bytes.extend_from_slice(&file(&format!("f{i}"), b""));
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
                ArchiveError::Tree {
                    index: 1,
                    error: ImageError::Duplicate { .. }
                }
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
            ArchiveError::Tree {
                index: 1,
                error: ImageError::UnderFile { .. }
            }
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
        assert_eq!(
            error,
            ArchiveError::NotUtf8 {
                index: 0,
                name: "`caf\\u{fffd}`".into()
            }
        );
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

    /// `count` regular files, each `depth` components deep under a directory of
    /// its own (`007/d/d/.../f`), named by pax `path` records: 2,040 deep is a
    /// 4,081-byte path, which fits in 4,096.
    fn deep_files(count: usize, depth: usize) -> Bytes {
        let members: Vec<Vec<u8>> = (0..count)
            .flat_map(|i| {
                let path = format!("{i:03}/{}f", "d/".repeat(depth - 2));
                [pax(&[("path", path.as_bytes())]), file("short", b"")]
            })
            .collect();
        archive(&members)
    }

    #[test]
    fn implied_parent_directories_count_against_max_mount_entries_as_they_are_made() {
        // 10 members of 2,040 entries each: 20,400 entries from 10 headers. With
        // 5,000 allowed, member 2 is the one that passes the bound (4,080 entries
        // are made before it), and no member after it is read.
        let error = read_image(deep_files(10, 2040), MAX_BYTES, 5000).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("archive member 2: "), "{text}");
        assert!(
            text.contains("more than 5000") && text.contains("limits.max_mount_entries"),
            "{text}"
        );
        // Exactly at the bound is allowed.
        let image = read_image(deep_files(2, 2040), MAX_BYTES, 4080).unwrap();
        assert_eq!(image.entry_count(), 4080);
        assert!(read_image(deep_files(2, 2040), MAX_BYTES, 4079).is_err());
    }

    /// A pax header whose data is `records` as they are, however broken.
    fn raw_pax(records: &[u8]) -> Vec<u8> {
        member(b"PaxHeader", b'x', records)
    }

    /// `extension` (pax or GNU long-name members) before member 1, `victim`;
    /// member 0 is a plain file.
    fn before_victim(extension: &[u8]) -> Bytes {
        archive(&[
            file("ok", b"1"),
            extension.to_vec(),
            file("victim", b"data"),
        ])
    }

    #[test]
    fn a_pax_size_that_is_not_a_decimal_number_is_refused_naming_the_member() {
        for size in [
            "6x0",
            "",
            "-1",
            "+4",
            " 4",
            "4 ",
            "0x4",
            "4e0",
            "99999999999999999999999",
        ] {
            let error = refused(before_victim(&pax(&[("size", size.as_bytes())]))).to_string();
            assert!(
                error.starts_with("archive member 1 (`victim`): ") && error.contains("`size`"),
                "{size:?}: {error}"
            );
        }
        // A well-formed one is still used (see the override test above).
        assert!(read(before_victim(&pax(&[("size", b"4")]))).is_ok());
    }

    #[test]
    fn broken_pax_records_are_refused_naming_the_member() {
        let record = |key: &str, value: &str| -> Vec<u8> {
            let body = format!(" {key}={value}\n");
            let mut len = body.len() + 1;
            while len.to_string().len() + body.len() != len {
                len = len.to_string().len() + body.len();
            }
            format!("{len}{body}").into_bytes()
        };
        assert_eq!(record("path", "abc"), b"12 path=abc\n");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("a length that is not a number", b"1x path=abc\n".to_vec()),
            ("no space after the length", b"12path=abc\n".to_vec()),
            ("a length past the pax data", b"99 path=abc\n".to_vec()),
            ("a length short of the newline", b"11 path=abc\n".to_vec()),
            ("a length that counts no newline", b"11 path=abc".to_vec()),
            ("a zero length", b"0 path=abc\n".to_vec()),
            ("no `=`", b"11 pathabc\n".to_vec()),
            ("an empty key", b"7 =abc\n".to_vec()),
            ("a NUL in the key", b"13 pa\0th=abc\n".to_vec()),
            (
                "bytes after the last record",
                [record("path", "abc"), vec![0; 3]].concat(),
            ),
            (
                "a path twice",
                [record("path", "abc"), record("path", "abd")].concat(),
            ),
            (
                "a size twice",
                [record("size", "4"), record("size", "4")].concat(),
            ),
            ("an empty path", record("path", "")),
            ("a sparse file", record("GNU.sparse.size", "10")),
        ];
        for (what, records) in cases {
            let error = refused(before_victim(&raw_pax(&records)));
            let text = error.to_string();
            assert!(
                matches!(error, ArchiveError::Pax { index: 1, .. })
                    && text.starts_with("archive member 1 (`victim`): its pax "),
                "{what}: {text}"
            );
        }
        // A path that is not UTF-8 or holds a NUL is refused as any such name is.
        for path in [&b"caf\xe9"[..], b"a\0b"] {
            let error = refused(before_victim(&pax(&[("path", path)])));
            let text = error.to_string();
            assert!(
                matches!(error, ArchiveError::NotUtf8 { index: 1, .. })
                    && text.starts_with("archive member 1 (`"),
                "{path:?}: {text}"
            );
        }
        // A link target in a pax record is a link.
        let error = refused(before_victim(&raw_pax(&record("linkpath", "/etc"))));
        assert!(
            matches!(error, ArchiveError::LinkName { index: 1, .. }),
            "{error}"
        );
        // Records that are well formed and not ours are ignored.
        let fine = [
            record("mtime", "1.5"),
            record("comment", "a=b\nc"),
            record("path", "x"),
        ];
        let image = read(before_victim(&raw_pax(&fine.concat()))).unwrap();
        assert_eq!(contents(&image, "x").unwrap(), b"data");
    }

    #[test]
    fn broken_gnu_long_names_are_refused_naming_the_member() {
        let long_name = |name: &[u8]| member(b"././@LongLink", b'L', name);
        let long = "g".repeat(180);
        // Well formed: the name, then one NUL (or none).
        for name in [format!("{long}\0"), long.clone()] {
            let image = read(before_victim(&long_name(name.as_bytes()))).unwrap();
            assert_eq!(contents(&image, &long).unwrap(), b"data");
        }
        // Not UTF-8, or a NUL before the end (a length that counts bytes past
        // the name): the name is refused, named.
        for name in [&b"caf\xe9\0"[..], b"a\0b\0", b"abc\0\0\0\0"] {
            let error = refused(before_victim(&long_name(name)));
            let text = error.to_string();
            assert!(
                matches!(error, ArchiveError::NotUtf8 { index: 1, .. })
                    && text.starts_with("archive member 1 (`"),
                "{name:?}: {text}"
            );
        }
        // Empty.
        let error = refused(before_victim(&long_name(b"")));
        assert!(
            matches!(error, ArchiveError::LongName { index: 1, .. }),
            "{error}"
        );
        // Together with a pax `path` record: which one names the file differs
        // between readers, so neither does.
        let both = [long_name(b"one\0"), pax(&[("path", b"two")])].concat();
        let error = refused(before_victim(&both));
        assert!(
            matches!(error, ArchiveError::LongName { index: 1, .. }),
            "{error}"
        );
        // A length past the end of the archive.
        let mut lying = forge::header(b"././@LongLink", b'L', 1 << 20).to_vec();
        lying.extend_from_slice(b"name\0");
        let error = refused(archive(&[file("ok", b"1"), lying]));
        assert!(
            matches!(error, ArchiveError::Truncated { index: 1, .. }),
            "{error}"
        );
        // Two for one member, or one for no member.
        let two = [long_name(b"a\0"), long_name(b"b\0")].concat();
        assert!(matches!(
            refused(before_victim(&two)),
            ArchiveError::Malformed { index: 1, .. }
        ));
        let dangling = refused(archive(&[file("ok", b"1"), long_name(b"a\0")]));
        assert!(
            matches!(dangling, ArchiveError::Malformed { index: 1, .. }),
            "{dangling}"
        );
    }

    #[test]
    fn pax_global_headers_may_not_set_what_members_are() {
        for key in ["path", "size", "linkpath"] {
            let mut global = pax(&[(key, b"1")]);
            global[156] = b'g';
            let mut header: [u8; 512] = global[..512].try_into().unwrap();
            forge::set_checksum(&mut header);
            global[..512].copy_from_slice(&header);
            let error = refused(archive(&[global, file("a", b"1")]));
            assert!(
                matches!(error, ArchiveError::Pax { index: 0, .. }),
                "{key}: {error}"
            );
        }
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
