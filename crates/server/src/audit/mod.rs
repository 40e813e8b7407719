//! The audit log: what is recorded for every execution, and where.
//!
//! What a leaf is, how the RFC 9162 tree hashes and proves, and what a checkpoint
//! says are the protocol's (`wasm_hypervisor_protocol::{leaf, merkle, checkpoint}`);
//! this module keeps them durable.
//!
//! - [`record`]: the framing of one log record on disk. Pure: no I/O, no clock.
//! - [`log`]: the durable, append-only log file, its group-committing writer, the
//!   in-memory tree, and the persisted checkpoint recovery is checked against.
//! - [`tree`]: what both backends keep in memory (the tree, the id → index map)
//!   and checkpoint signing.
//!
//! [`AuditLog`] is the one handle the rest of the server uses, over either
//! backend: the file (embedded mode, the default) or cluster mode's log in
//! PostgreSQL (`crate::cluster::log`), one log for every replica.

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;
use wasm_hypervisor_protocol::checkpoint::SignedCheckpoint;
use wasm_hypervisor_protocol::merkle::{Hash, MerkleError};

use crate::cluster::log::PgLog;
use crate::keys::ServerKey;

pub mod log;
pub mod record;
pub mod tree;

pub use self::log::{FileLog, Inclusion, Recovery, WriterStats};
pub use self::record::LogRecord;

/// The audit log, in whichever backend the configuration chose; cheap to clone.
#[derive(Clone)]
pub struct AuditLog(Backend);

#[derive(Clone)]
enum Backend {
    File(FileLog),
    Cluster(PgLog),
}

impl AuditLog {
    /// Opens (or creates) the file log `dir/audit.log` ([`FileLog::open`]).
    pub fn open(
        dir: &Path,
        origin: &str,
        key: Arc<ServerKey>,
    ) -> Result<(AuditLog, Recovery), AuditError> {
        let (log, recovery) = FileLog::open(dir, origin, key)?;
        Ok((AuditLog(Backend::File(log)), recovery))
    }

    /// Cluster mode's log in PostgreSQL.
    pub fn cluster(log: PgLog) -> AuditLog {
        AuditLog(Backend::Cluster(log))
    }

    /// Appends a record; returns its log index once it is durable (the file
    /// synced, or the database transaction committed) and in this process's tree.
    pub async fn append(&self, record: LogRecord) -> Result<u64, AuditError> {
        match &self.0 {
            Backend::File(log) => log.append(record).await,
            Backend::Cluster(log) => log.append(record).await,
        }
    }

    /// Writes what is queued and stops; appends fail from then on.
    pub async fn close(&self) {
        match &self.0 {
            Backend::File(log) => log.close().await,
            Backend::Cluster(log) => log.close().await,
        }
    }

    /// Whether an append can be expected to succeed (the last one did).
    pub fn is_writable(&self) -> bool {
        match &self.0 {
            Backend::File(log) => log.is_writable(),
            Backend::Cluster(log) => log.is_writable(),
        }
    }

    /// Leaves in this process's tree: the whole log (cluster mode: as far as this
    /// replica has caught up).
    pub fn size(&self) -> u64 {
        match &self.0 {
            Backend::File(log) => log.size(),
            Backend::Cluster(log) => log.size(),
        }
    }

    /// The log index of an execution, if this process's tree holds it.
    pub fn index_of(&self, execution_id: &Uuid) -> Option<u64> {
        match &self.0 {
            Backend::File(log) => log.index_of(execution_id),
            Backend::Cluster(log) => log.index_of(execution_id),
        }
    }

    /// The log file, in embedded mode.
    pub fn file_path(&self) -> Option<&Path> {
        match &self.0 {
            Backend::File(log) => Some(log.path()),
            Backend::Cluster(_) => None,
        }
    }

    /// Approximate heap bytes of the in-memory index.
    pub fn memory_bytes(&self) -> usize {
        match &self.0 {
            Backend::File(log) => log.memory_bytes(),
            Backend::Cluster(log) => log.memory_bytes(),
        }
    }

    pub fn origin(&self) -> &str {
        match &self.0 {
            Backend::File(log) => log.origin(),
            Backend::Cluster(log) => log.origin(),
        }
    }

    /// A signed checkpoint of this process's tree.
    pub fn checkpoint(&self) -> SignedCheckpoint {
        match &self.0 {
            Backend::File(log) => log.checkpoint(),
            Backend::Cluster(log) => log.checkpoint(),
        }
    }

    /// An execution's record and its inclusion proof against a fresh checkpoint,
    /// or `None` if it is not in the log. Cluster mode looks an id it does not
    /// know up in the database and catches up to it first.
    pub async fn inclusion(&self, execution_id: &Uuid) -> Result<Option<Inclusion>, AuditError> {
        match &self.0 {
            Backend::File(log) => log.inclusion(execution_id),
            Backend::Cluster(log) => log.inclusion(execution_id).await,
        }
    }

    /// The tree size after making sure, as far as possible, that it is at least
    /// `wanted` (cluster mode catches up from the database; a failure leaves the
    /// size as it was).
    pub async fn size_for(&self, wanted: u64) -> u64 {
        match &self.0 {
            Backend::File(log) => log.size(),
            Backend::Cluster(log) => log.size_for(wanted).await,
        }
    }

    /// RFC 9162 §2.1.4 consistency proof between two sizes of this process's tree.
    pub fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        match &self.0 {
            Backend::File(log) => log.consistency(first, second),
            Backend::Cluster(log) => log.consistency(first, second),
        }
    }
}

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
