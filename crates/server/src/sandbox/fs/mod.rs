//! The guest's file system: the execution's mounts, in memory only. Nothing here
//! touches the host's disk (no `std::fs`, `tokio::fs`, temporary files or
//! `cap-std`; `tests/architecture.rs` checks it).
//!
//! # Layout
//!
//! - [`budget`]: `FilesBudget`, the execution's `files_bytes` and
//!   `max_mount_entries`, charged before anything is allocated (ENOSPC).
//! - [`image`]: `MountImage`, an immutable validated archive tree sharing the
//!   archive's bytes, shared by every execution that mounts it.
//! - [`tree`]: `Mounts`, the execution's nodes and every operation on them
//!   (pure, synchronous).
//! - [`archive`]: tar in (`read_image`, every validation) and out
//!   (`MountsOut`, the `mounts_out` archives, bounded, written in pieces).
//! - [`p1`]: the WASI preview1 front end for core modules.
//! - [`p2`]: `wasi:filesystem` (preview2) for components.
//!
//! `p1` and `p2` are two thin front ends over the one core (`tree`).
//!
//! Each builds only on those before it.

pub(crate) mod archive;
pub(crate) mod budget;
pub(crate) mod image;
pub(crate) mod p1;
pub(crate) mod p2;
pub(crate) mod tree;

use std::sync::Arc;

pub use self::archive::{ArchiveError, MountsOut, TreeArchive, read_image};
pub use self::budget::FilesBudget;
pub use self::image::MountImage;
pub use self::tree::{Mounts, Node};

/// One mount of an execution, as the caller builds it from the request.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// Where the guest sees it: an absolute, normalized path (checked by the caller).
    pub path: String,
    /// Whether the guest may change it; its contents come back in `mounts_out`.
    pub writable: bool,
    /// Its initial contents; `None` is an empty directory.
    pub image: Option<Arc<MountImage>>,
}

/// Checks the mounts' initial contents against an execution's `files_bytes` and
/// `max_mount_entries`, as [`Mounts::new`] does: for the caller that wants the
/// refusal before it runs anything.
pub fn check_limits(
    specs: &[MountSpec],
    files_bytes: u64,
    max_entries: u32,
) -> Result<(), MountError> {
    tree::check_limits(specs, files_bytes, max_entries).map(|_| ())
}

/// The mounts' initial contents are over the execution's limits (status
/// `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// Regular files of every mount together are larger than `files_bytes`.
    #[error("mount contents take {bytes} bytes; limits.files_bytes is {limit}")]
    FilesBytes { bytes: u64, limit: u64 },
    /// Files and directories of every mount together are more than `max_mount_entries`.
    #[error(
        "mount contents have {entries} files and directories; limits.max_mount_entries is {limit}"
    )]
    Entries { entries: u64, limit: u32 },
}

/// Why a file-system operation failed: one error type for both front ends, each
/// mapping it to its own codes (preview1 errno, preview2 `error-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FsErr {
    /// No such file or directory (ENOENT).
    #[error("no such file or directory")]
    NoEntry,
    /// It exists already (EEXIST).
    #[error("file exists")]
    Exist,
    /// A path component is not a directory (ENOTDIR).
    #[error("not a directory")]
    NotDirectory,
    /// A directory where a file is needed (EISDIR).
    #[error("is a directory")]
    IsDirectory,
    /// The directory is not empty (ENOTEMPTY).
    #[error("directory not empty")]
    NotEmpty,
    /// The mount is read-only (EROFS).
    #[error("read-only file system")]
    ReadOnly,
    /// The path leaves its base directory, or is absolute (EPERM).
    #[error("operation not permitted")]
    NotPermitted,
    /// A rename between two mounts (EXDEV).
    #[error("cross-device link")]
    CrossDevice,
    /// Past `files_bytes` or `max_mount_entries` (ENOSPC).
    #[error("no space left on device")]
    NoSpace,
    /// A component over 255 bytes or a path over 4,096 (ENAMETOOLONG).
    #[error("file name too long")]
    NameTooLong,
    /// An argument that makes no sense here (EINVAL).
    #[error("invalid argument")]
    Invalid,
    /// Not an open descriptor, or not open for this (EBADF).
    #[error("bad file descriptor")]
    BadDescriptor,
    /// Symlinks and hard links (ENOTSUP).
    #[error("not supported")]
    Unsupported,
    /// An offset or size out of range (EOVERFLOW).
    #[error("value too large")]
    Overflow,
    /// Too many open descriptors (EMFILE).
    #[error("too many open files")]
    TooManyOpen,
}
