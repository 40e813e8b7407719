//! The audit log: what is recorded for every execution, and where.
//!
//! What a leaf is, how the RFC 9162 tree hashes and proves, and what a checkpoint
//! says are the protocol's (`wasm_hypervisor_protocol::{leaf, merkle, checkpoint}`);
//! this module keeps them durable.
//!
//! - [`LogBackend`]: the log as the rest of the server sees it, the one contract
//!   every backend keeps; [`AuditLog`] is the handle callers hold on one.
//! - [`file`]: the embedded backend, the durable append-only file with its
//!   group-committing writer, recovery and persisted checkpoint.
//! - [`record`]: the framing of one log record on disk. Pure: no I/O, no clock.
//! - [`tree`]: what every backend keeps in memory (the tree, the id → index map)
//!   and checkpoint signing.
//! - [`checkpoint_file`]: the signed checkpoint a backend persists beside the log
//!   and checks the log against at open.
//!
//! Cluster mode's backend, one log in PostgreSQL for every replica, is
//! `crate::cluster::log`: it builds on this module, which names no backend but
//! its own file.

use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;
use wasm_hypervisor_protocol::checkpoint::SignedCheckpoint;
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::merkle::{Hash, MerkleError};

use crate::keys::ServerKey;

pub(crate) mod checkpoint_file;
pub mod file;
pub mod record;
pub(crate) mod tree;

pub use self::file::{FileLog, Recovery, WriterStats};
pub use self::record::LogRecord;

/// The audit log as the rest of the server sees it, whatever keeps it: the
/// contract of every backend. Callers hold one through [`AuditLog`].
///
/// The log is append-only and its history is never rewritten: the tree this
/// process knows only grows, and every checkpoint it signs is consistent with
/// every earlier one. "The tree" below is this process's view (cluster mode: as
/// far as this replica has caught up with the shared log); every read and proof
/// is of that tree, so that a proof and the checkpoint it comes with agree.
#[async_trait::async_trait]
pub trait LogBackend: Send + Sync + 'static {
    /// Appends a record; returns its log index once it is durable (on disk, or
    /// committed to the database) and in the tree. An error means the record was
    /// not acknowledged (cluster mode: a connection lost during COMMIT is the one
    /// ambiguous case, PROTOCOL.md).
    async fn append(&self, record: LogRecord) -> Result<u64, AuditError>;

    /// Writes what is queued, persists the checkpoint and stops; appends fail from
    /// then on.
    async fn close(&self);

    /// Whether an append can be expected to succeed: the last one did, and the
    /// log has not stopped.
    fn is_writable(&self) -> bool;

    /// Leaves in the tree.
    fn size(&self) -> u64;

    /// The tree's size after making sure, as far as possible, that it is at least
    /// `wanted` (cluster mode catches up from the database; a failure leaves the
    /// size as it was).
    async fn size_for(&self, wanted: u64) -> u64;

    /// The log index of an execution, if the tree holds it.
    fn index_of(&self, execution_id: &Uuid) -> Option<u64>;

    /// A signed checkpoint of the whole tree.
    fn checkpoint(&self) -> SignedCheckpoint;

    /// An execution's record and its inclusion proof against a fresh checkpoint,
    /// or `None` if it is not in the log. A backend that shares its log with other
    /// processes looks an id it does not know up and catches up to it first.
    async fn inclusion(&self, execution_id: &Uuid) -> Result<Option<Inclusion>, AuditError>;

    /// RFC 9162 §2.1.4 consistency proof between two sizes of the tree.
    fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError>;

    /// The leaves (the 57-byte entries of c2sp.org/tlog-tiles) at the indices
    /// `range`, in order; the range must lie within the tree
    /// ([`AuditError::BeyondTree`] otherwise).
    async fn entries(&self, range: Range<u64>) -> Result<Vec<Leaf>, AuditError>;

    /// `MTH` of the perfect subtree of `2^level` leaves that starts at leaf
    /// `index * 2^level`, once the tree holds all of them: the hashes of
    /// tlog-tiles' hash tiles (`MerkleTree::perfect_subtree`).
    fn perfect_subtree(&self, level: u32, index: u64) -> Option<Hash>;
}

/// The audit log, in whichever backend the configuration chose; cheap to clone.
/// It dereferences to the [`LogBackend`] contract.
#[derive(Clone)]
pub struct AuditLog(Arc<dyn LogBackend>);

impl AuditLog {
    /// A handle on `backend`.
    pub fn new(backend: impl LogBackend) -> AuditLog {
        AuditLog(Arc::new(backend))
    }

    /// Opens (or creates) the file log `dir/audit.log` ([`FileLog::open`]).
    pub fn open(
        dir: &Path,
        origin: &str,
        key: Arc<ServerKey>,
    ) -> Result<(AuditLog, Recovery), AuditError> {
        let (log, recovery) = FileLog::open(dir, origin, key)?;
        Ok((AuditLog::new(log), recovery))
    }
}

impl Deref for AuditLog {
    type Target = dyn LogBackend;

    fn deref(&self) -> &(dyn LogBackend + 'static) {
        &*self.0
    }
}

/// A record with its inclusion proof against a signed checkpoint.
#[derive(Debug, Clone)]
pub struct Inclusion {
    pub index: u64,
    pub record: LogRecord,
    pub proof: Vec<Hash>,
    pub checkpoint: SignedCheckpoint,
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
    /// A read of indices the tree does not hold (yet).
    #[error("indices {range:?} are not all in the tree of {size} leaves")]
    BeyondTree { range: Range<u64>, size: u64 },
}
