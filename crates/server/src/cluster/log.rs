//! Cluster mode's audit log: one log in PostgreSQL for every replica, with the
//! file log's leaf, record, tree and checkpoint formats.
//!
//! # Tables (`migrations/0002_log.sql`)
//! `log_leaves(idx, execution_id, record)`: the record's bytes are exactly what
//! the file log stores for it (`audit::record`, v2 framing; appended here as a
//! one-record batch 0, imported records keep their file's batch marks), so
//! `log import` is a copy. `log_head(size)` is the sequencer's counter;
//! `log_import` records the file a `log import` copied (its size and root).
//!
//! # Appending: group commit, one sequencer at a time
//! Appends queue in the replica; one task (the sequencer side of this replica)
//! takes everything queued, at most [`MAX_BATCH`], and runs one transaction:
//! `pg_advisory_xact_lock(LOG_LOCK)` (the sequencer lease: held only while the
//! transaction runs; a replica killed mid-transaction has it aborted and the lock
//! released by PostgreSQL, so another replica takes over at once), then one
//! statement that reads the head, inserts the rows at head, head+1, …, moves the
//! head and notifies [`CHANNEL`], then COMMIT: sent together, one round trip
//! (`append`). Only after COMMIT returns is any append of the batch
//! acknowledged, and only once this replica's tree holds it. The primary key on
//! `idx` makes a fork impossible even if the lock were bypassed (the insert
//! fails). The whole transaction is bounded by
//! [`OPERATION_TIMEOUT`](super::OPERATION_TIMEOUT) (and `lock_timeout` just
//! under it); on any failure every append of the batch gets [`AuditError::Unavailable`] (503
//! `log_unavailable`) and the log reports itself unwritable (`/health`) until a
//! transaction commits or the tailer reads the log again. A connection lost
//! during COMMIT, or a transaction still running at the bound (its COMMIT is
//! already sent), is ambiguous: the leaves may be in the log though their
//! clients were answered 503 (PROTOCOL.md).
//!
//! # Every replica has the whole log
//! Each replica's tree ([`LeafIndex`]) catches up from `log_leaves WHERE idx >=
//! size ORDER BY idx` in chunks: after its own commit (pushing its own leaves
//! without a read when its tree is exactly at the batch's start), on a
//! notification (a dedicated `LISTEN` connection, reconnected when lost), and
//! every [`POLL_INTERVAL`] regardless. `/verify` of an id the tree does not hold
//! looks it up in the database and catches up to it first. Records are read back
//! from the database by index, never kept in memory. Each replica signs its own
//! tree with the shared key: all trees are prefixes of one sequence, so every
//! replica's checkpoints are consistent with every other's.
//!
//! # Start-up
//! The tree is loaded from `log_leaves`, each record decoded and its leaf
//! signature checked under this replica's key. A file log with records in the
//! data directory refuses the start unless the database records that this very
//! file (size and root) was imported (`wasm-hypervisor log import`, in
//! `file_import`). Each
//! replica persists the newest checkpoint it has seen in
//! `data_dir/`[`CHECKPOINT_FILE`] and refuses a database whose log does not
//! contain it (a restored older backup: a rolled-back log).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use uuid::Uuid;

use super::{Cluster, ClusterError, DbError};
use crate::audit::checkpoint_file::{self, CHECKPOINT_INTERVAL, NotContained};
use crate::audit::record::{BatchMark, Decoded, LogRecord, Version};
use crate::audit::tree::{LeafIndex, Signer};
use crate::audit::{AuditError, Inclusion, LogBackend};
use crate::keys::ServerKey;
use wasm_hypervisor_protocol::checkpoint::SignedCheckpoint;
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::merkle::{Hash, MerkleError};

mod append;
mod file_import;

use file_import::refuse_unimported_file_log;
pub(crate) use file_import::{Imported, import};

/// The advisory lock key of the log's sequencer: "wasmhlog" as a big-endian
/// integer.
pub(crate) const LOG_LOCK: i64 = 0x7761_736d_686c_6f67;

/// The channel each commit notifies with the log's new size.
pub(crate) const CHANNEL: &str = "wasm_hypervisor_log";

/// Most appends one transaction takes.
pub(crate) const MAX_BATCH: usize = 1024;

/// Appends queued before more appends wait to queue.
const QUEUE_DEPTH: usize = 4096;

/// Rows read per catch-up query.
const CATCH_UP_CHUNK: i64 = 4096;

/// How often a replica reads new leaves even without a notification, and tries
/// to reconnect its `LISTEN` connection.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The newest checkpoint this replica has seen, in its data directory.
pub(crate) const CHECKPOINT_FILE: &str = "cluster_checkpoint";

/// What can go wrong with the log in the database.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("database: {0}")]
    Database(#[from] DbError),
    /// A row that is not a valid record of this log.
    #[error("the database's audit log is damaged at index {index}: {problem}")]
    Corrupt { index: u64, problem: String },
    /// A file log with records in the data directory that was never imported.
    #[error(
        "{path} holds {records} audit records that are not in the database's log: a cluster \
         replica never ignores a file log. Move it into the (empty) database with \
         `wasm-hypervisor log import --database-url URL --data-dir DIR`, or move the file away \
         if its records are kept elsewhere"
    )]
    UnimportedFileLog { path: PathBuf, records: u64 },
    /// The database's log does not contain a checkpoint this replica saw.
    #[error(
        "the database's audit log does not contain the checkpoint this replica saw ({path}): \
         {problem}. Was the database restored from an older backup, or is this another \
         database? Refusing to serve a rolled-back log"
    )]
    RolledBack { path: PathBuf, problem: String },
    /// The file log to import, or the persisted checkpoint.
    #[error(transparent)]
    File(#[from] AuditError),
    /// `log import` into a database whose log is not empty.
    #[error(
        "the database's audit log is not empty ({size} records{imported}): `log import` only \
         fills an empty log"
    )]
    NotEmpty { size: u64, imported: &'static str },
    /// `log import` of a file with no records.
    #[error("{path} holds no records: nothing to import")]
    NothingToImport { path: PathBuf },
    /// `log import` without the signing key the file log was signed with.
    #[error("no signing key at {path}: `log import` needs the key the file log was signed with")]
    NoKey { path: PathBuf },
    /// `log import`: the copy does not hash to the file's root.
    #[error("the copied log's root does not match the file's; nothing was imported")]
    RootMismatch,
}

impl From<tokio_postgres::Error> for LogError {
    fn from(error: tokio_postgres::Error) -> LogError {
        LogError::Database(DbError::Statement(error))
    }
}

/// An append waiting for the sequencer.
type Pending = (LogRecord, oneshot::Sender<Result<u64, AuditError>>);

/// The log seen from one replica; cheap to clone.
#[derive(Clone)]
pub struct PgLog(Arc<Inner>);

struct Inner {
    cluster: Cluster,
    index: Mutex<LeafIndex>,
    signer: Signer,
    /// Held by whoever extends the tree (a catch-up, or the sequencer pushing its
    /// own leaves), so that the tree grows in log order.
    tail: tokio::sync::Mutex<()>,
    /// Held by the sequencer from its transaction until its tree holds the
    /// batch: the tailer waits for it rather than read this replica's own
    /// leaves, whose notification can overtake the `COMMIT`'s answer.
    committing: tokio::sync::Mutex<()>,
    queue: mpsc::Sender<Pending>,
    /// Whether the last transaction committed.
    writable: AtomicBool,
    closed: AtomicBool,
    data_dir: PathBuf,
    /// The size of the checkpoint last persisted in the data directory, and when
    /// (at most once every [`CHECKPOINT_INTERVAL`] while the log grows).
    persisted: Mutex<(Option<u64>, Instant)>,
}

impl PgLog {
    /// Checks the data directory's file log and persisted checkpoint against the
    /// database, loads the tree (every record checked), and starts the sequencer
    /// and the tailer: the returned tasks run until aborted.
    pub async fn open(
        cluster: Cluster,
        key: Arc<ServerKey>,
        origin: &str,
        data_dir: &Path,
    ) -> Result<(PgLog, Vec<JoinHandle<()>>), ClusterError> {
        refuse_unimported_file_log(&cluster, data_dir).await?;
        let stored = checkpoint_file::read(&data_dir.join(CHECKPOINT_FILE), key.public())
            .map_err(LogError::from)?;
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let inner = Arc::new(Inner {
            cluster,
            index: Mutex::new(LeafIndex::default()),
            signer: Signer::new(origin, key),
            tail: tokio::sync::Mutex::new(()),
            committing: tokio::sync::Mutex::new(()),
            queue,
            writable: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            data_dir: data_dir.to_owned(),
            persisted: Mutex::new((
                stored.as_ref().map(|s| s.checkpoint.tree_size),
                Instant::now(),
            )),
        });
        {
            let _tail = inner.tail.lock().await;
            inner.catch_up_locked(true).await?;
        }
        if let Some(stored) = &stored {
            inner.check_contains(stored)?;
        }
        let size = inner.size();
        tracing::info!(
            records = size,
            checkpoint_size = stored.map(|s| s.checkpoint.tree_size),
            "cluster audit log loaded from the database and checked"
        );
        let sequencer = tokio::spawn(append::sequencer(Arc::downgrade(&inner), receiver));
        let tailer = tokio::spawn(tailer(Arc::downgrade(&inner)));
        Ok((PgLog(inner), vec![sequencer, tailer]))
    }

    /// Appends a record; returns its index once its transaction committed and
    /// this replica's tree holds it.
    pub async fn append(&self, record: LogRecord) -> Result<u64, AuditError> {
        let stopped = || AuditError::Unavailable("the log has stopped".to_owned());
        if self.0.closed.load(Ordering::Acquire) {
            return Err(stopped());
        }
        let (done, acknowledged) = oneshot::channel();
        self.0
            .queue
            .send((record, done))
            .await
            .map_err(|_| stopped())?;
        acknowledged.await.map_err(|_| stopped())?
    }

    /// Refuses appends from now on and persists the newest checkpoint.
    pub async fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        let inner = self.0.clone();
        let _ = tokio::task::spawn_blocking(move || inner.persist_checkpoint(true)).await;
    }

    /// Whether the last append transaction committed (and the log is open).
    pub fn is_writable(&self) -> bool {
        self.0.writable.load(Ordering::Acquire) && !self.0.closed.load(Ordering::Acquire)
    }

    /// Leaves in this replica's tree.
    pub fn size(&self) -> u64 {
        self.0.size()
    }

    pub fn index_of(&self, execution_id: &Uuid) -> Option<u64> {
        self.0.lock().by_execution.get(execution_id).copied()
    }

    pub fn memory_bytes(&self) -> usize {
        self.0.lock().memory_bytes()
    }

    pub fn origin(&self) -> &str {
        self.0.signer.origin()
    }

    /// A signed checkpoint of this replica's tree.
    pub fn checkpoint(&self) -> SignedCheckpoint {
        let (size, root) = self.0.lock().head();
        self.0.signer.sign(size, root)
    }

    /// An execution's record (read from the database) and its inclusion proof
    /// against a fresh checkpoint of this replica's tree, caught up to the
    /// execution's index first; `None` if the log does not hold it.
    pub async fn inclusion(&self, execution_id: &Uuid) -> Result<Option<Inclusion>, AuditError> {
        let unavailable = |error: DbError| AuditError::Unavailable(error.to_string());
        let id = *execution_id;
        let row = self
            .0
            .cluster
            .run(|client| async move {
                client
                    .query_opt(
                        "SELECT idx, record FROM log_leaves WHERE execution_id = $1",
                        &[&id],
                    )
                    .await
            })
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (index, bytes): (i64, Vec<u8>) = (row.get(0), row.get(1));
        let index = index as u64;
        let record = decode(index, &bytes).map_err(|error| corrupt(&error))?;
        if record.leaf.execution_id != id {
            return Err(corrupt(&LogError::Corrupt {
                index,
                problem: "the row's record names another execution".to_owned(),
            }));
        }
        if self.size() <= index {
            self.0
                .catch_up()
                .await
                .map_err(|error| AuditError::Unavailable(error.to_string()))?;
        }
        let (size, root, proof) = {
            let index_guard = self.0.lock();
            let size = index_guard.tree.size();
            if size <= index {
                return Err(AuditError::Unavailable(
                    "the replica's tree has not caught up with the log".to_owned(),
                ));
            }
            let proof = index_guard
                .tree
                .inclusion_proof(index, size)
                .expect("an index inside the tree");
            let root = index_guard.tree.root(size).expect("the current size");
            (size, root, proof)
        };
        Ok(Some(Inclusion {
            index,
            record,
            proof,
            checkpoint: self.0.signer.sign(size, root),
        }))
    }

    /// The tree's size once caught up, if it was smaller than `wanted`.
    pub async fn size_for(&self, wanted: u64) -> u64 {
        if self.size() < wanted
            && let Err(error) = self.0.catch_up().await
        {
            tracing::warn!(%error, "cannot catch up with the cluster's audit log");
        }
        self.size()
    }

    /// The leaves at the indices `range` of this replica's tree, read from the
    /// database ([`AuditError::BeyondTree`] past the tree).
    pub async fn entries(&self, range: Range<u64>) -> Result<Vec<Leaf>, AuditError> {
        let size = self.size();
        if range.start > range.end || range.end > size {
            return Err(AuditError::BeyondTree { range, size });
        }
        // Within the tree, so within i64.
        let (start, end) = (range.start as i64, range.end as i64);
        let rows = self
            .0
            .cluster
            .run(|client| async move {
                client
                    .query(
                        "SELECT idx, record FROM log_leaves WHERE idx >= $1 AND idx < $2 \
                         ORDER BY idx",
                        &[&start, &end],
                    )
                    .await
            })
            .await
            .map_err(|error| AuditError::Unavailable(error.to_string()))?;
        let mut leaves = Vec::with_capacity(rows.len());
        for (expected, row) in range.zip(&rows) {
            let index: i64 = row.get(0);
            if index as u64 != expected {
                return Err(corrupt(&LogError::Corrupt {
                    index: expected,
                    problem: format!("the next row has index {index}: a gap"),
                }));
            }
            leaves.push(
                decode(expected, row.get(1))
                    .map_err(|error| corrupt(&error))?
                    .leaf,
            );
        }
        if leaves.len() as i64 != end - start {
            return Err(corrupt(&LogError::Corrupt {
                index: start as u64 + rows.len() as u64,
                problem: "rows of the tree are missing".to_owned(),
            }));
        }
        Ok(leaves)
    }

    pub fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        self.0.lock().tree.consistency_proof(first, second)
    }
}

#[async_trait::async_trait]
impl LogBackend for PgLog {
    async fn append(&self, record: LogRecord) -> Result<u64, AuditError> {
        PgLog::append(self, record).await
    }

    async fn close(&self) {
        PgLog::close(self).await
    }

    fn is_writable(&self) -> bool {
        PgLog::is_writable(self)
    }

    fn size(&self) -> u64 {
        PgLog::size(self)
    }

    async fn size_for(&self, wanted: u64) -> u64 {
        PgLog::size_for(self, wanted).await
    }

    fn index_of(&self, execution_id: &Uuid) -> Option<u64> {
        PgLog::index_of(self, execution_id)
    }

    fn checkpoint(&self) -> SignedCheckpoint {
        PgLog::checkpoint(self)
    }

    async fn inclusion(&self, execution_id: &Uuid) -> Result<Option<Inclusion>, AuditError> {
        PgLog::inclusion(self, execution_id).await
    }

    fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        PgLog::consistency(self, first, second)
    }

    async fn entries(&self, range: Range<u64>) -> Result<Vec<Leaf>, AuditError> {
        PgLog::entries(self, range).await
    }

    fn perfect_subtree(&self, level: u32, index: u64) -> Option<Hash> {
        self.0.lock().tree.perfect_subtree(level, index)
    }
}

fn corrupt(error: &LogError) -> AuditError {
    AuditError::Corrupt {
        path: PathBuf::from("log_leaves"),
        offset: 0,
        problem: error.to_string(),
    }
}

/// A row's record, which must be one whole record.
fn decode(index: u64, bytes: &[u8]) -> Result<LogRecord, LogError> {
    match LogRecord::decode(bytes, Version::V2) {
        Decoded::Record(record, _, used) if used == bytes.len() => Ok(record),
        Decoded::Record(..) => Err(LogError::Corrupt {
            index,
            problem: "bytes after the record".to_owned(),
        }),
        Decoded::Zeros => Err(LogError::Corrupt {
            index,
            problem: "zeros".to_owned(),
        }),
        Decoded::Incomplete => Err(LogError::Corrupt {
            index,
            problem: "a cut-short record".to_owned(),
        }),
        Decoded::Invalid(problem) => Err(LogError::Corrupt { index, problem }),
    }
}

/// A record's bytes as this replica stores an append: a batch of one.
fn encode(record: &LogRecord) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(record.encoded_len());
    record.encode_into(
        BatchMark {
            batch: 0,
            last: true,
        },
        &mut bytes,
    );
    bytes
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, LeafIndex> {
        // Pushes and inserts: nothing a panic can leave torn.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn size(&self) -> u64 {
        self.lock().size()
    }

    /// Reads every leaf past this replica's tree.
    async fn catch_up(&self) -> Result<(), LogError> {
        let _tail = self.tail.lock().await;
        self.catch_up_locked(false).await
    }

    /// [`Inner::catch_up`] for a holder of `tail`; `check_signatures` checks each
    /// leaf's signature under this replica's key (at start-up).
    async fn catch_up_locked(&self, check_signatures: bool) -> Result<(), LogError> {
        loop {
            let from = self.size();
            let start = i64::try_from(from).unwrap_or(i64::MAX);
            let rows = self
                .cluster
                .run(|client| async move {
                    let statement = client
                        .prepare_cached(
                            "SELECT idx, record FROM log_leaves WHERE idx >= $1 \
                             ORDER BY idx LIMIT $2",
                        )
                        .await?;
                    client.query(&statement, &[&start, &CATCH_UP_CHUNK]).await
                })
                .await?;
            let mut records = Vec::with_capacity(rows.len());
            for (offset, row) in rows.iter().enumerate() {
                let expected = from + offset as u64;
                let index: i64 = row.get(0);
                if index as u64 != expected {
                    return Err(LogError::Corrupt {
                        index: expected,
                        problem: format!("the next row has index {index}: a gap"),
                    });
                }
                let record = decode(expected, row.get(1))?;
                if check_signatures
                    && self
                        .signer
                        .key()
                        .public()
                        .verify(&record.leaf.to_bytes(), &record.signature)
                        .is_err()
                {
                    return Err(LogError::Corrupt {
                        index: expected,
                        problem: "the leaf's signature does not verify under this replica's key"
                            .to_owned(),
                    });
                }
                records.push(record);
            }
            {
                let mut index = self.lock();
                for record in &records {
                    index.push(&record.leaf);
                }
            }
            if (rows.len() as i64) < CATCH_UP_CHUNK {
                return Ok(());
            }
        }
    }

    /// The loaded tree must contain the persisted checkpoint's tree.
    fn check_contains(&self, stored: &SignedCheckpoint) -> Result<(), LogError> {
        let origin = self.signer.origin();
        let problem = match checkpoint_file::check_contained(&self.lock().tree, stored, origin) {
            Ok(()) => return Ok(()),
            Err(NotContained::Origin { checkpoint }) => {
                format!("it names the log `{checkpoint}`, not `{origin}`")
            }
            Err(NotContained::Smaller { size, covered }) => {
                format!("the log holds {size} records and the checkpoint covers {covered}")
            }
            Err(NotContained::OtherRoot { covered }) => {
                format!("its first {covered} records hash to another root")
            }
        };
        Err(LogError::RolledBack {
            path: self.data_dir.join(CHECKPOINT_FILE),
            problem,
        })
    }

    /// Signs and persists a checkpoint of the tree in the data directory, if it
    /// grew since the last one and, unless `now_regardless` (a close), the last
    /// was at least [`CHECKPOINT_INTERVAL`] ago: the tailer runs after every
    /// commit of any replica, and this costs a signature, a write and two syncs
    /// (blocking).
    fn persist_checkpoint(&self, now_regardless: bool) {
        let mut persisted = self
            .persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (size, root) = self.lock().head();
        let (done, at) = *persisted;
        if done.is_some_and(|done| done >= size)
            || (!now_regardless && at.elapsed() < CHECKPOINT_INTERVAL)
        {
            return;
        }
        let signed = self.signer.sign(size, root);
        match checkpoint_file::write(&self.data_dir, CHECKPOINT_FILE, &signed) {
            Ok(()) => *persisted = (Some(size), Instant::now()),
            Err(error) => {
                tracing::error!(dir = %self.data_dir.display(), %error, "cannot persist the cluster log's checkpoint")
            }
        }
    }
}

/// Keeps the tree caught up: on each notification from a dedicated `LISTEN`
/// connection (reconnected when lost), and every [`POLL_INTERVAL`]; persists the
/// checkpoint when the tree grew. Ends when the log is dropped.
async fn tailer(log: Weak<Inner>) {
    let notified = Arc::new(Notify::new());
    // The largest log size a notification announced.
    let heard = Arc::new(AtomicU64::new(0));
    let mut listener: Option<tokio_postgres::Client> = None;
    let mut failing = false;
    let mut by_notification = false;
    loop {
        let Some(inner) = log.upgrade() else {
            return;
        };
        if listener.as_ref().is_none_or(|client| client.is_closed()) {
            listener = inner
                .cluster
                .listen(CHANNEL, heard_of(notified.clone(), heard.clone()))
                .await;
            // Notifications may have been missed meanwhile.
            by_notification = false;
        }
        // Woken by a notification of leaves this tree already holds (this
        // replica's own commit, pushed without a read, once the commit in
        // flight is done): nothing to read. The read every `POLL_INTERVAL`
        // stays.
        if by_notification && heard.load(Ordering::Acquire) > inner.size() {
            drop(inner.committing.lock().await);
        }
        if by_notification && heard.load(Ordering::Acquire) <= inner.size() {
            drop(inner);
            by_notification = notified_or_polled(&notified).await;
            continue;
        }
        match inner.catch_up().await {
            Ok(()) => {
                if failing {
                    failing = false;
                    tracing::info!("the cluster's audit log is readable again");
                }
                // The database answers again: `/health` stops naming the log
                // (a load balancer that took this replica out would otherwise
                // never send the append that proves it). A failing append sets
                // it again.
                inner.writable.store(true, Ordering::Release);
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot read the cluster's audit log; trying again");
            }
            Err(_) => {}
        }
        let persist = inner.clone();
        let _ = tokio::task::spawn_blocking(move || persist.persist_checkpoint(false)).await;
        drop(inner);
        by_notification = notified_or_polled(&notified).await;
    }
}

/// Waits for a notification (`true`) or [`POLL_INTERVAL`] (`false`).
async fn notified_or_polled(notified: &Notify) -> bool {
    tokio::select! {
        () = notified.notified() => true,
        () = tokio::time::sleep(POLL_INTERVAL) => false,
    }
}

/// What the tailer's listener does with a notification: raise `heard` to the
/// log size it announces (one it cannot parse counts as unbounded, so that it is
/// read), then wake the tailer.
fn heard_of(notified: Arc<Notify>, heard: Arc<AtomicU64>) -> impl FnMut(&str) + Send + 'static {
    move |payload| {
        heard.fetch_max(payload.parse().unwrap_or(u64::MAX), Ordering::AcqRel);
        notified.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_hypervisor_protocol::leaf::Leaf;

    fn record() -> LogRecord {
        LogRecord {
            leaf: Leaf {
                execution_id: Uuid::from_bytes([3; 16]),
                timestamp_ms: 7,
                commitment: [9; 32],
            },
            signature: vec![5; 70],
        }
    }

    #[test]
    fn a_stored_record_is_the_file_framing_and_decodes_back() {
        let bytes = encode(&record());
        let mut file = Vec::new();
        record().encode_into(
            BatchMark {
                batch: 0,
                last: true,
            },
            &mut file,
        );
        assert_eq!(bytes, file);
        assert_eq!(decode(4, &bytes).unwrap(), record());
    }

    #[test]
    fn a_row_that_is_not_exactly_one_record_is_refused_naming_its_index() {
        let mut longer = encode(&record());
        longer.push(0);
        let short = &encode(&record())[..20];
        let mut flipped = encode(&record());
        flipped[30] ^= 1;
        for bytes in [&longer[..], short, &flipped[..], &[0; 16][..]] {
            match decode(11, bytes) {
                Err(LogError::Corrupt { index: 11, .. }) => {}
                other => panic!("expected corruption at index 11, got {other:?}"),
            }
        }
    }
}
