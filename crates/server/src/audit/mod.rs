//! The audit log: what is recorded for every execution, and where.
//!
//! What a leaf is, how the RFC 9162 tree hashes and proves, and what a checkpoint
//! says are the protocol's (`wasm_hypervisor_protocol::{leaf, merkle, checkpoint}`);
//! this module keeps them durable.
//!
//! - [`record`]: the framing of one log record on disk. Pure: no I/O, no clock.
//! - [`log`]: the durable, append-only log file, its group-committing writer, the
//!   in-memory tree, and the persisted checkpoint recovery is checked against.

#![forbid(unsafe_code)]

pub mod log;
pub mod record;

pub use self::log::{AuditLog, Inclusion, Recovery, WriterStats};
pub use self::record::LogRecord;

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
