//! The audit log: what is recorded for every execution, and where.
//!
//! - [`record`]: the 57-byte leaf of protocol §4, its hash, and the framing of one
//!   log record on disk. Pure: no I/O, no clock.
//! - [`merkle`]: the RFC 9162 tree, its proofs and their verifiers. Pure.
//! - [`checkpoint`]: the C2SP tlog-checkpoint body of a signed tree head. Pure.
//! - [`log`]: the durable, append-only log file, its group-committing writer, the
//!   in-memory tree, and the persisted checkpoint recovery is checked against.

pub mod checkpoint;
pub mod log;
pub mod merkle;
pub mod record;

pub use self::checkpoint::{Checkpoint, SignedCheckpoint};
pub use self::log::{AuditLog, Inclusion, Recovery};
pub use self::record::{LEAF_LEN, Leaf, LogRecord};

/// What can go wrong with the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading, writing or syncing the log file failed.
    #[error("audit log {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The file holds bytes that are not a valid record before its end: history was
    /// damaged, and the server will not serve on top of it.
    #[error("audit log {path} is corrupt at byte offset {offset}: {problem}")]
    Corrupt {
        path: std::path::PathBuf,
        offset: u64,
        problem: String,
    },
    /// Another process holds the log open for writing.
    #[error(
        "audit log {path} is locked by another process (is another server using this data directory?)"
    )]
    Locked { path: std::path::PathBuf },
    /// The writer is gone (the server is shutting down) or failed to make a record
    /// durable; the record was not acknowledged.
    #[error("audit log is not writable: {0}")]
    Unavailable(String),
}
