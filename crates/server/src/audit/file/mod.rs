//! The embedded backend: the durable audit-log file, `audit.log` in the data
//! directory, and [`FileLog`], the handle on it.
//!
//! # The file
//! A 32-byte header ([`FILE_MAGIC`], v2), then records (see [`super::record`]), then
//! zeros to the end of the file. The zeros are a preallocated segment that records
//! overwrite, so that syncing a batch is a data-only flush ([`writer`]).
//!
//! # The parts
//! - [`recovery`]: what opening the file does (the scan, a torn final batch, a v1
//!   file converted, the check against the persisted checkpoint) and the reads of a
//!   stopped log (`log import`, verification).
//! - [`writer`]: group commit on the appending thread or the writer thread, the
//!   write and its `fdatasync`, growing the segment, persisting the checkpoint.
//!
//! Beside the log, `checkpoint` holds the last signed checkpoint the writer
//! persisted (at most [`CHECKPOINT_INTERVAL`] behind the log, and exactly the log at
//! a clean close), in [`super::checkpoint_file`]'s format.
//!
//! In memory the log keeps its [`MerkleTree`](wasm_hypervisor_protocol::merkle::MerkleTree)
//! (about 64 bytes per leaf), each record's file offset (8 bytes) and an execution
//! id → index map (about 40 bytes): proofs cost O(log n) hashes, and a leaf is read
//! back from the file by offset.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::{Semaphore, oneshot};
use uuid::Uuid;

use super::checkpoint_file::CHECKPOINT_INTERVAL;
use super::record::{Decoded, LogRecord, MAX_RECORD_LEN, Version};
use super::tree::{LeafIndex, Signer};
use super::{AuditError, Inclusion, LogBackend};
use crate::keys::ServerKey;
use wasm_hypervisor_protocol::checkpoint::SignedCheckpoint;
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::merkle::{Hash, MerkleError};

pub(crate) mod recovery;
pub(crate) mod writer;

#[cfg(test)]
mod tests;

pub use self::recovery::{FILE_MAGIC, FILE_MAGIC_V1, StoppedLog, verify_stopped_log};
pub use self::writer::{MAX_BATCH_BYTES, MAX_GATHER, SEGMENT_CHUNK, gather_window};

use self::writer::{Persisted, QUEUE_DEPTH, Queue, Writer};

/// File name of the log inside the data directory.
pub const LOG_FILE: &str = "audit.log";
/// File name of the persisted signed checkpoint inside the data directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";

/// What opening the log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records in the log.
    pub records: u64,
    /// Bytes of a torn, never acknowledged final batch that were zeroed (or, in a
    /// v1 file, cut off); 0 when the log ended cleanly.
    pub torn_bytes: u64,
    /// Tree size of the persisted checkpoint the log was checked against.
    pub checkpoint_size: Option<u64>,
    /// Whether the file was a v1 log, converted to v2 by this open.
    pub converted_from_v1: bool,
}

/// What the writer has done since the log was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Batches written and synced.
    pub batches: u64,
    /// Records in those batches.
    pub records: u64,
    /// Batches for which the writer thread waited for more appends to join.
    pub gathered: u64,
    /// Batches written by an appending task itself, with no hand-off to the
    /// writer thread.
    pub inline: u64,
}

/// A handle on the log; cheap to clone. When the last handle is dropped, the
/// writer thread writes what is queued and stops, as on [`FileLog::close`].
#[derive(Clone)]
pub struct FileLog {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Stops the writer thread when the last handle goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.request_close(None);
    }
}

/// What the handles, appending tasks and the writer thread share.
struct Shared {
    index: Mutex<Index>,
    /// A read-only handle for reading records back by offset.
    reader: File,
    path: PathBuf,
    dir: PathBuf,
    /// Signs checkpoints, re-signing only when the tree has grown.
    signer: Signer,
    /// Whether the last batch was written and synced. Set after every batch; read
    /// by health checks.
    last_batch_ok: AtomicBool,
    /// Set when the log stops (closed, or the writer thread ended).
    stopped: AtomicBool,
    /// Bounds the appends queued or being written: each holds a permit until it is
    /// answered.
    queue_slots: Arc<Semaphore>,
    /// Appends waiting to be written, and what the writer thread is asked to do.
    queue: Mutex<Queue>,
    /// Wakes the writer thread (see [`Queue::wake`]), and wakes it early while it
    /// lets a group form.
    wake: Condvar,
    /// The file: held by whoever writes a batch, an appending task or the writer
    /// thread. `None` once the log is closed.
    writer: Mutex<Option<Writer>>,
    /// The checkpoint the writer thread last persisted.
    persisted: Mutex<Persisted>,
    batches: AtomicU64,
    records: AtomicU64,
    gathered: AtomicU64,
    inline: AtomicU64,
}

/// What the process keeps of the log in memory.
#[derive(Default)]
struct Index {
    leaves: LeafIndex,
    /// File offset of each record.
    offsets: Vec<u64>,
}

impl Index {
    fn push(&mut self, record: &LogRecord, offset: u64) {
        self.leaves.push(&record.leaf);
        self.offsets.push(offset);
    }
}

impl FileLog {
    /// Opens (or creates) `dir/audit.log`, checks every record, zeroes a torn final
    /// batch, converts a v1 file, checks the tree against the persisted checkpoint,
    /// takes an exclusive lock on the file and starts the writer thread. `origin`
    /// names the log in checkpoints, which `key` signs.
    pub fn open(
        dir: &Path,
        origin: &str,
        key: Arc<ServerKey>,
    ) -> Result<(FileLog, Recovery), AuditError> {
        FileLog::open_with_chunk(dir, origin, key, SEGMENT_CHUNK)
    }

    /// [`FileLog::open`], growing the file by `chunk` bytes of zeros at a time
    /// instead of [`SEGMENT_CHUNK`] (tests use small chunks to cross many).
    pub fn open_with_chunk(
        dir: &Path,
        origin: &str,
        key: Arc<ServerKey>,
        chunk: u64,
    ) -> Result<(FileLog, Recovery), AuditError> {
        let chunk = chunk.max(1);
        let recovered = recovery::recover(dir, origin, &key, chunk)?;
        let persisted = Persisted {
            size: recovered.recovery.checkpoint_size,
            at: Instant::now(),
        };
        let shared = Arc::new(Shared::new(
            recovered.index,
            recovered.reader,
            dir,
            origin,
            key,
            persisted,
        ));
        *shared.lock_writer() = Some(Writer::new(
            recovered.file,
            recovered.end,
            recovered.allocated,
            chunk,
            recovered.next_batch,
        ));
        writer::start_thread(shared.clone())?;
        let log = FileLog {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        };
        Ok((log, recovered.recovery))
    }

    /// Appends a record and returns its log index once it is durably on disk.
    ///
    /// If nobody is writing, the calling thread writes and syncs the batch itself
    /// (blocking for one `write` and one `fdatasync`): call it from a thread that
    /// may block that long: a guest runtime worker, or the one execution an idle
    /// server runs where it was received, with another HTTP worker left free for
    /// `/health` (`Executor::spawn`).
    pub async fn append(&self, record: LogRecord) -> Result<u64, AuditError> {
        let stopped = || AuditError::Unavailable("the log writer has stopped".to_owned());
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(stopped());
        }
        // Held until the answer: bounds the appends queued or being written.
        let _slot = self
            .shared
            .queue_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| stopped())?;
        let (done, acknowledged) = oneshot::channel();
        {
            let mut queue = self.shared.lock_queue();
            if queue.closed {
                return Err(stopped());
            }
            queue.pending.push((record, done));
            if queue.gathering {
                self.shared.wake.notify_one();
            }
        }
        self.shared.write_queued();
        acknowledged.await.map_err(|_| stopped())?
    }

    /// Writes everything queued so far, releases the file and stops the writer
    /// thread. Appends after this fail with [`AuditError::Unavailable`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        self.shared.request_close(Some(done));
        let _ = closed.await;
    }

    /// Whether an append can be expected to succeed: false once the last batch's
    /// write or sync failed (until a later batch succeeds) or once the log has
    /// stopped. Nothing is retried in the background: after an I/O error the next
    /// append is the probe.
    pub fn is_writable(&self) -> bool {
        self.shared.last_batch_ok.load(Ordering::Acquire)
            && !self.shared.stopped.load(Ordering::Acquire)
    }

    /// What the writer has done since the log was opened.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
            gathered: self.shared.gathered.load(Ordering::Relaxed),
            inline: self.shared.inline.load(Ordering::Relaxed),
        }
    }

    /// Number of durable records.
    pub fn size(&self) -> u64 {
        self.lock().leaves.size()
    }

    /// The log index of an execution, if it is in the log.
    pub fn index_of(&self, execution_id: &Uuid) -> Option<u64> {
        self.lock().leaves.by_execution.get(execution_id).copied()
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Approximate heap bytes of the in-memory index: the tree, the record offsets
    /// and the execution id map (16-byte key, 8-byte value, 1 control byte a slot).
    pub fn memory_bytes(&self) -> usize {
        let index = self.lock();
        index.leaves.memory_bytes() + index.offsets.capacity() * std::mem::size_of::<u64>()
    }

    pub fn origin(&self) -> &str {
        self.shared.signer.origin()
    }

    /// A signed checkpoint of the whole log as it is now.
    pub fn checkpoint(&self) -> SignedCheckpoint {
        let (size, root) = self.lock().leaves.head();
        self.shared.signer.sign(size, root)
    }

    /// An execution's record and its inclusion proof against a fresh checkpoint, or
    /// `None` if the execution is not in the log.
    pub fn inclusion(&self, execution_id: &Uuid) -> Result<Option<Inclusion>, AuditError> {
        let (index, offset, size, root, proof) = {
            let guard = self.lock();
            let Some(&index) = guard.leaves.by_execution.get(execution_id) else {
                return Ok(None);
            };
            let (size, root) = guard.leaves.head();
            let proof = guard
                .leaves
                .tree
                .inclusion_proof(index, size)
                .expect("a logged index is inside the tree");
            (index, guard.offsets[index as usize], size, root, proof)
        };
        let record = self.shared.read_record(offset)?;
        Ok(Some(Inclusion {
            index,
            record,
            proof,
            checkpoint: self.shared.signer.sign(size, root),
        }))
    }

    /// The leaves at the indices `range`, read back from the file; the range must
    /// lie within the log ([`AuditError::BeyondTree`] otherwise).
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<Leaf>, AuditError> {
        let offsets = {
            let guard = self.lock();
            let size = guard.leaves.size();
            if range.start > range.end || range.end > size {
                return Err(AuditError::BeyondTree { range, size });
            }
            guard.offsets[range.start as usize..range.end as usize].to_vec()
        };
        offsets
            .into_iter()
            .map(|offset| Ok(self.shared.read_record(offset)?.leaf))
            .collect()
    }

    /// RFC 9162 §2.1.4 consistency proof between two sizes of this log.
    pub fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        self.lock().leaves.tree.consistency_proof(first, second)
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.shared.lock_index()
    }
}

#[async_trait::async_trait]
impl LogBackend for FileLog {
    async fn append(&self, record: LogRecord) -> Result<u64, AuditError> {
        FileLog::append(self, record).await
    }

    async fn close(&self) {
        FileLog::close(self).await
    }

    fn is_writable(&self) -> bool {
        FileLog::is_writable(self)
    }

    fn size(&self) -> u64 {
        FileLog::size(self)
    }

    /// The file log is always whole: its size.
    async fn size_for(&self, _wanted: u64) -> u64 {
        FileLog::size(self)
    }

    fn index_of(&self, execution_id: &Uuid) -> Option<u64> {
        FileLog::index_of(self, execution_id)
    }

    fn checkpoint(&self) -> SignedCheckpoint {
        FileLog::checkpoint(self)
    }

    async fn inclusion(&self, execution_id: &Uuid) -> Result<Option<Inclusion>, AuditError> {
        FileLog::inclusion(self, execution_id)
    }

    fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        FileLog::consistency(self, first, second)
    }

    async fn entries(&self, range: Range<u64>) -> Result<Vec<Leaf>, AuditError> {
        FileLog::entries(self, range)
    }

    fn perfect_subtree(&self, level: u32, index: u64) -> Option<Hash> {
        self.lock().leaves.tree.perfect_subtree(level, index)
    }
}

impl Shared {
    /// The state of the log `dir/audit.log`, without its file (see
    /// [`Shared::writer`]).
    fn new(
        index: Index,
        reader: File,
        dir: &Path,
        origin: &str,
        key: Arc<ServerKey>,
        persisted: Persisted,
    ) -> Shared {
        Shared {
            index: Mutex::new(index),
            reader,
            path: dir.join(LOG_FILE),
            dir: dir.to_owned(),
            signer: Signer::new(origin, key),
            last_batch_ok: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            queue_slots: Arc::new(Semaphore::new(QUEUE_DEPTH)),
            queue: Mutex::default(),
            wake: Condvar::new(),
            writer: Mutex::new(None),
            persisted: Mutex::new(persisted),
            batches: AtomicU64::new(0),
            records: AtomicU64::new(0),
            gathered: AtomicU64::new(0),
            inline: AtomicU64::new(0),
        }
    }

    fn lock_index(&self) -> MutexGuard<'_, Index> {
        // Index updates are pushes and an insert; a panic cannot leave them torn.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // Pushes, takes and flags: nothing a panic can leave torn.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_writer(&self) -> MutexGuard<'_, Option<Writer>> {
        // A panic while writing leaves `end` at the last durable batch: the next
        // batch overwrites whatever the interrupted one wrote.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the checkpoint was last persisted [`CHECKPOINT_INTERVAL`] ago or more.
    fn checkpoint_due(&self) -> bool {
        self.persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .at
            .elapsed()
            >= CHECKPOINT_INTERVAL
    }

    fn read_record(&self, offset: u64) -> Result<LogRecord, AuditError> {
        let mut buffer = [0u8; MAX_RECORD_LEN];
        let mut filled = 0;
        // A record is at most this long; the file may end sooner after the last one.
        while filled < buffer.len() {
            let read = self
                .reader
                .read_at(&mut buffer[filled..], offset + filled as u64)
                .map_err(|source| AuditError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        let problem = match LogRecord::decode(&buffer[..filled], Version::V2) {
            Decoded::Record(record, _, _) => return Ok(record),
            Decoded::Zeros => "a logged record reads as zeros on disk".to_owned(),
            Decoded::Incomplete => "a logged record is cut short on disk".to_owned(),
            Decoded::Invalid(problem) => problem,
        };
        Err(AuditError::Corrupt {
            path: self.path.clone(),
            offset,
            problem,
        })
    }
}
