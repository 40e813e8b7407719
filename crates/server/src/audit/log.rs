//! The durable audit-log file, `audit.log` in the data directory.
//!
//! # The file
//! A 32-byte header ([`FILE_MAGIC`], v2), then records (see [`super::record`]), then
//! zeros to the end of the file. The zeros are a preallocated segment: the file
//! grows by [`SEGMENT_CHUNK`] of zeros actually written (not `fallocate`d: an
//! unwritten extent would make the first write into it a metadata change again),
//! followed by one `fsync`. Records then overwrite zeros, so the `fdatasync` after a
//! batch has no file size or extent to record: on ext4 it is a data-only flush, not
//! a journal commit. Whoever wrote a batch grows the file when the zeros left fall
//! below a quarter of a chunk, just after acknowledging it: once every ~30,000
//! records (a 4 MiB write and an `fsync`, a few ms), and never for a batch whose
//! records would not fit (a batch is at most 140 KiB).
//!
//! # Group commit, adaptive, on the appending thread
//! Appends queue in memory. An append that finds nobody writing (at light load,
//! almost always) takes the file itself: it writes everything queued with one
//! positional `write`, calls `fdatasync` once, and acknowledges each record with
//! its log index, all on its own thread, with no hand-off to another thread and
//! back. (Executions append from the guest runtime's threads, never from the one
//! that serves HTTP, so `/health` never waits behind a sync.) Appends that arrive
//! while the file is taken do not wait for it: they queue, and whoever holds the
//! file hands them to the log's writer thread when it lets go. The writer thread
//! thus only runs under concurrent load, where one wake-up serves a whole batch:
//! it takes every queued record, and when at least two were queued but fewer than
//! in the previous batch, lets the group fill up to the previous batch's size for
//! at most a quarter of the last commit's duration, capped at [`MAX_GATHER`] (see
//! [`gather_window`]). A lone append never waits for company. An append that
//! returns `Ok` is on disk. [`FileLog::writer_stats`] counts batches, records,
//! batches that waited, and batches written by the appending task itself.
//!
//! # Recovery
//! On open the whole file is read. Records are decoded from the header on:
//! - **End of log**: the first position where only zeros remain (an all-zero record
//!   header followed by zeros only, or the end of the file).
//! - **Torn final batch**: a position that is not a valid record (bad length or
//!   checksum, cut short, or a zero header with data after it), where everything
//!   after it can be the rest of one unfinished batch: the nonzero bytes end within
//!   [`MAX_BATCH_BYTES`] of where that batch began (just after the last record
//!   marked as the end of its batch), and no valid record after the damage belongs
//!   to a later batch than the damaged one. A batch is written with one `write`
//!   only after the previous one was synced, so such bytes were never acknowledged
//!   (a power cut may have let any of its pages reach the disk, in any order). They
//!   are zeroed again (and synced), the log ends at the damage, and
//!   [`Recovery::torn_bytes`] says how much was zeroed.
//! - **Damage**: anything else (a flipped byte inside the acknowledged log, a record
//!   that fails its checksum followed by a record of a later batch or by more data
//!   than one batch) stops the open with the file, the byte offset and the record
//!   number. Nothing is repaired.
//!
//! A flipped byte in the final batch is indistinguishable from a torn write: it is
//! zeroed like one. If that batch had been acknowledged, the checkpoint check below
//! refuses the open once the checkpoint covers it ("records were lost"); a record
//! appended less than [`CHECKPOINT_INTERVAL`] before such damage is lost silently
//! (with the warning that reports the zeroed bytes).
//!
//! A v1 file (earlier releases: header [`FILE_MAGIC_V1`], records appended up to the
//! end of the file) is read by the v1 rules (a partial record at the end is cut, any
//! other damage stops the open), checked against the checkpoint, then converted
//! once: its records become one v2 batch 0 (the same bytes, but for the mark on the
//! last), written with a chunk of zeros to `audit.log.v2`, synced and renamed over
//! `audit.log` (a crash leaves one file or the other, both valid).
//!
//! The recovered tree must then contain the persisted checkpoint's tree: at least as
//! many leaves, and the same root at that size. History is never rewritten.
//!
//! Beside the log, `checkpoint` holds the last signed checkpoint the writer thread
//! persisted (at most a second behind the log, and exactly the log at a clean
//! close): the C2SP body, then the base64 DER signature on a fourth line.
//!
//! In memory the log keeps its [`MerkleTree`] (about 64 bytes per leaf), each
//! record's file offset (8 bytes) and an execution id → index map (about 40 bytes):
//! proofs cost O(log n) hashes, and a leaf is read back from the file by offset.

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::sync::{Semaphore, oneshot};
use uuid::Uuid;

use super::AuditError;
use super::record::{BatchMark, Decoded, LogRecord, MAX_RECORD_LEN, Version};
use super::tree::{LeafIndex, Signer};
use crate::keys::ServerKey;
use wasm_hypervisor_protocol::checkpoint::{Checkpoint, SignedCheckpoint};
use wasm_hypervisor_protocol::merkle::{Hash, MerkleError, MerkleTree};

/// File name of the log inside the data directory.
pub const LOG_FILE: &str = "audit.log";
/// File name of the persisted signed checkpoint inside the data directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";

/// How far the persisted checkpoint may lag behind the log while appends go on.
/// Persisting costs a signature, a write and two syncs; once a second bounds that
/// cost under load, and a clean close always persists the exact tree.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// First bytes of every log file this release writes: names the format and version.
pub const FILE_MAGIC: &[u8; 32] = b"wasm-hypervisor audit log v2\n\0\0\0";
/// First bytes of a log file of earlier releases, converted at open.
pub const FILE_MAGIC_V1: &[u8; 32] = b"wasm-hypervisor audit log v1\n\0\0\0";

/// Zeros the file grows by. 4 MiB holds about 30,000 records, and writing and
/// syncing it takes a few milliseconds: one batch in 30,000 records waits that long.
/// A larger chunk makes the wait rarer but longer (and costs every new data
/// directory more disk up front); the total time spent growing is the same.
pub const SEGMENT_CHUNK: u64 = 4 << 20;

/// Most records the writer takes into one write and sync.
const MAX_BATCH: usize = 1024;
/// Most bytes one batch writes: how far past the start of a torn batch its bytes
/// can reach.
pub const MAX_BATCH_BYTES: u64 = (MAX_BATCH * MAX_RECORD_LEN) as u64;
/// Appends queued or being written before more appends wait to queue.
const QUEUE_DEPTH: usize = 4096;
/// Longest the writer lets a group form (see [`gather_window`]).
pub const MAX_GATHER: Duration = Duration::from_micros(250);
/// The writer lets a group form for at most this fraction of the last commit.
const GATHER_FRACTION: u32 = 4;

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

/// A record with its inclusion proof against a signed checkpoint.
#[derive(Debug, Clone)]
pub struct Inclusion {
    pub index: u64,
    pub record: LogRecord,
    pub proof: Vec<Hash>,
    pub checkpoint: SignedCheckpoint,
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

/// The appends waiting for a writer.
#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// The writer thread is asked to run: appends queued while the file was
    /// taken, a checkpoint due, or a close.
    wake: bool,
    /// The writer thread is letting a group form: appends wake it.
    gathering: bool,
    /// Set by a close: appends are refused from then on.
    closed: bool,
    /// Told when the close is done.
    close_done: Vec<oneshot::Sender<()>>,
}

/// What the writer thread last persisted of the checkpoint, and when.
struct Persisted {
    size: Option<u64>,
    at: Instant,
}

/// An append waiting for (or taken into) a batch.
type Pending = (LogRecord, oneshot::Sender<Result<u64, AuditError>>);

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
        let path = dir.join(LOG_FILE);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        // Owner-only, like everything in the data directory.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        lock_exclusively(&file, &path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        // A new file, or one whose creation a crash interrupted before its first
        // sync (nothing was ever appended to it): a header and a chunk of zeros.
        if bytes.iter().all(|&b| b == 0) {
            bytes.clear();
            bytes.extend_from_slice(FILE_MAGIC);
            bytes.resize(FILE_MAGIC.len() + chunk as usize, 0);
            file.write_all_at(&bytes, 0).map_err(io)?;
            file.sync_all().map_err(io)?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let stored = read_checkpoint(dir, &key)?;
        let scan = scan(&path, &bytes)?;
        let mut index = Index::default();
        for (record, offset) in scan.records.iter().zip(&scan.offsets) {
            index.push(record, *offset);
        }
        if let Some(stored) = &stored {
            check_against_checkpoint(dir, &path, &index.leaves.tree, stored, origin)?;
        }

        // Only now, with the history checked, is the file touched.
        let torn_bytes = scan.torn_end - scan.end;
        let (file, allocated, next_batch) = if scan.version == Version::V1 {
            let (converted, allocated) = convert_v1(dir, &path, &scan.records, chunk)?;
            // The old file, replaced, is released only now that the new one is held.
            drop(file);
            (converted, allocated, BatchMark::next_batch(0))
        } else {
            if torn_bytes > 0 {
                let zeros = vec![0; torn_bytes as usize];
                file.write_all_at(&zeros, scan.end).map_err(io)?;
            }
            (file, bytes.len() as u64, scan.next_batch)
        };
        // Also makes durable zeros that a crash interrupted before their `fsync`.
        file.sync_all().map_err(io)?;
        let reader = File::open(&path).map_err(io)?;

        let recovery = Recovery {
            records: index.leaves.tree.size(),
            torn_bytes,
            checkpoint_size: stored.map(|s| s.checkpoint.tree_size),
            converted_from_v1: scan.version == Version::V1,
        };
        let shared = Arc::new(Shared::new(
            index,
            reader,
            dir,
            origin,
            key,
            Persisted {
                size: recovery.checkpoint_size,
                at: Instant::now(),
            },
        ));
        *shared.lock_writer() = Some(Writer {
            file,
            end: scan.end,
            allocated,
            chunk,
            batch: next_batch,
            last_commit: Duration::ZERO,
            previous_batch: 0,
            buffer: Vec::new(),
        });
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer_thread(thread))
            .map_err(io)?;
        Ok((
            FileLog {
                _owner: Arc::new(Owner(shared.clone())),
                shared,
            },
            recovery,
        ))
    }

    /// Appends a record and returns its log index once it is durably on disk.
    ///
    /// If nobody is writing, the calling thread writes and syncs the batch itself
    /// (blocking for one `write` and one `fdatasync`): call it from a thread that
    /// may block that long, never from the one serving `/health`.
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
        self.lock().leaves.tree.size()
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
        let (size, root) = {
            let index = self.lock();
            let size = index.leaves.tree.size();
            (
                size,
                index
                    .leaves
                    .tree
                    .root(size)
                    .expect("the current size is in range"),
            )
        };
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
            let size = guard.leaves.tree.size();
            let proof = guard
                .leaves
                .tree
                .inclusion_proof(index, size)
                .expect("a logged index is inside the tree");
            let root = guard
                .leaves
                .tree
                .root(size)
                .expect("the current size is in range");
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

    /// RFC 9162 §2.1.4 consistency proof between two sizes of this log.
    pub fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        self.lock().leaves.tree.consistency_proof(first, second)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.shared.lock_index()
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

    /// Asks the writer thread to run (see [`Queue::wake`]).
    fn wake_writer(&self, queue: &mut Queue) {
        queue.wake = true;
        self.wake.notify_one();
    }

    /// Refuses appends from now on and asks the writer thread to write what is
    /// queued and stop; `done` is told when it has.
    fn request_close(&self, done: Option<oneshot::Sender<()>>) {
        let mut queue = self.lock_queue();
        queue.closed = true;
        queue.close_done.extend(done);
        self.wake_writer(&mut queue);
    }

    /// Called by an appending task once its record is queued. If nobody holds the
    /// file, writes one batch of what is queued on this thread; then, if appends
    /// queued meanwhile (they found the file taken and left them to whoever held
    /// it) or a checkpoint is due, wakes the writer thread.
    ///
    /// Nothing is left behind: an append either finds the file free, or is queued
    /// before the holder lets go, and the holder looks at the queue after letting go.
    fn write_queued(&self) {
        let mut guard = match self.writer.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let Some(writer) = guard.as_mut() else {
            return;
        };
        let mut batch = self.take_batch();
        if !batch.is_empty() {
            self.inline.fetch_add(1, Ordering::Relaxed);
            writer.commit(self, &mut batch);
            writer.keep_ahead(self);
        }
        drop(guard);
        let checkpoint_due = self
            .persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .at
            .elapsed()
            >= CHECKPOINT_INTERVAL;
        let mut queue = self.lock_queue();
        if (!queue.pending.is_empty() || checkpoint_due) && !queue.wake {
            self.wake_writer(&mut queue);
        }
    }

    /// Takes at most [`MAX_BATCH`] queued appends, oldest first.
    fn take_batch(&self) -> Vec<Pending> {
        let mut queue = self.lock_queue();
        let count = queue.pending.len().min(MAX_BATCH);
        queue.pending.drain(..count).collect()
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

/// Takes the exclusive lock on the log file, which one process holds while it
/// uses the log: [`AuditError::Locked`] if another holds it.
fn lock_exclusively(file: &File, path: &Path) -> Result<(), AuditError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(AuditError::Locked {
            path: path.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(AuditError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads every record of a log file (v1 or v2) from scratch, without opening it
/// for writing: for verification, tests and tools. A torn tail is an error here.
pub fn read_records(path: &Path) -> Result<Vec<LogRecord>, AuditError> {
    let bytes = std::fs::read(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    let scan = scan(path, &bytes)?;
    if scan.torn_end != scan.end {
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            offset: scan.end,
            problem: "the log ends with a torn record".to_owned(),
        });
    }
    Ok(scan.records)
}

/// A record and its bytes as the file stores them.
pub type RawRecord = (LogRecord, Vec<u8>);

/// A file log that is not in use, read whole for copying elsewhere (`log
/// import`): the file opened read-only and locked (refused while a server holds
/// it), every record checked (a torn tail is an error here), and the tree
/// checked against the persisted checkpoint. Each record comes with its bytes as
/// the file stores them. The lock is held as long as the returned file is.
pub fn read_unused(
    dir: &Path,
    origin: &str,
    key: &ServerKey,
) -> Result<(File, Vec<RawRecord>), AuditError> {
    let path = dir.join(LOG_FILE);
    let io = |source| AuditError::Io {
        path: path.clone(),
        source,
    };
    let mut file = File::open(&path).map_err(io)?;
    lock_exclusively(&file, &path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    let scan = scan(&path, &bytes)?;
    if scan.torn_end != scan.end {
        return Err(AuditError::Corrupt {
            path,
            offset: scan.end,
            problem: "the log ends with a torn batch; start and stop a server on it first"
                .to_owned(),
        });
    }
    let mut leaves = LeafIndex::default();
    for record in &scan.records {
        leaves.push(&record.leaf);
    }
    if let Some(stored) = read_checkpoint(dir, key)? {
        check_against_checkpoint(dir, &path, &leaves.tree, &stored, origin)?;
    }
    let raw = scan
        .records
        .into_iter()
        .zip(scan.offsets)
        .map(|(record, offset)| {
            let start = offset as usize;
            let bytes = bytes[start..start + record.encoded_len()].to_vec();
            (record, bytes)
        })
        .collect();
    Ok((file, raw))
}

/// Rewrites a checked v1 log as v2: the same records, as one batch 0 whose last
/// record is marked (so that recovery knows where the next batch begins), then a
/// chunk of zeros. Written to a temporary file, locked, synced and renamed over
/// `path`, so that a crash leaves either the v1 file or the v2 one. Returns the new
/// file and its length.
fn convert_v1(
    dir: &Path,
    path: &Path,
    records: &[LogRecord],
    chunk: u64,
) -> Result<(File, u64), AuditError> {
    let tmp = dir.join(format!("{LOG_FILE}.v2"));
    let io = |source| AuditError::Io {
        path: tmp.clone(),
        source,
    };
    let mut bytes = FILE_MAGIC.to_vec();
    for (position, record) in records.iter().enumerate() {
        let mark = BatchMark {
            batch: 0,
            last: position + 1 == records.len(),
        };
        record.encode_into(mark, &mut bytes);
    }
    bytes.resize(bytes.len() + chunk as usize, 0);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(AuditError::Locked { path: tmp });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
    }
    file.write_all_at(&bytes, 0).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok((file, bytes.len() as u64))
}

/// What reading a log file found.
struct Scan {
    version: Version,
    records: Vec<LogRecord>,
    /// File offset of each record.
    offsets: Vec<u64>,
    /// Where the log ends: the header plus the valid records.
    end: u64,
    /// Where the bytes of a torn final batch end (`end` when there are none): from
    /// `end` to here is zeroed (v2) or cut (v1) at open.
    torn_end: u64,
    /// The number of the writer's next batch.
    next_batch: u16,
}

fn scan(path: &Path, bytes: &[u8]) -> Result<Scan, AuditError> {
    match bytes.get(..FILE_MAGIC.len()) {
        Some(header) if header == FILE_MAGIC => scan_v2(path, bytes),
        Some(header) if header == FILE_MAGIC_V1 => scan_v1(path, bytes),
        _ => Err(AuditError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            problem: "the file does not start with an audit log v1 or v2 header".to_owned(),
        }),
    }
}

/// The v1 rules: records up to the end of the file; only the last can be torn.
fn scan_v1(path: &Path, bytes: &[u8]) -> Result<Scan, AuditError> {
    let mut offset = FILE_MAGIC_V1.len();
    let mut records = Vec::new();
    let mut offsets = Vec::new();
    while offset < bytes.len() {
        match LogRecord::decode(&bytes[offset..], Version::V1) {
            Decoded::Record(record, _, used) => {
                records.push(record);
                offsets.push(offset as u64);
                offset += used;
            }
            // Only the last record can be torn: appends are sequential.
            Decoded::Incomplete => break,
            other => {
                let problem = match other {
                    Decoded::Invalid(problem) => problem,
                    _ => "zeros where a record should be".to_owned(),
                };
                return Err(AuditError::Corrupt {
                    path: path.to_owned(),
                    offset: offset as u64,
                    problem: format!("record {}: {problem}", records.len()),
                });
            }
        }
    }
    Ok(Scan {
        version: Version::V1,
        records,
        offsets,
        end: offset as u64,
        torn_end: bytes.len() as u64,
        // Converted at open into batch 0; the next batch is 1.
        next_batch: 1,
    })
}

/// The v2 rules (module doc, "Recovery").
fn scan_v2(path: &Path, bytes: &[u8]) -> Result<Scan, AuditError> {
    let header = FILE_MAGIC.len();
    let content_end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(header, |last| (last + 1).max(header));
    let mut records = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = header;
    // Where the batch that the next record belongs to began.
    let mut batch_start = header;
    let mut previous: Option<BatchMark> = None;
    let damage = loop {
        if offset >= content_end {
            break None;
        }
        match LogRecord::decode(&bytes[offset..], Version::V2) {
            Decoded::Record(record, mark, used) => {
                records.push(record);
                offsets.push(offset as u64);
                offset += used;
                if mark.last {
                    batch_start = offset;
                }
                previous = Some(mark);
            }
            Decoded::Zeros => break Some("zeros, then data".to_owned()),
            Decoded::Incomplete => break Some("the file ends inside a record".to_owned()),
            Decoded::Invalid(problem) => break Some(problem),
        }
    };
    // The batch the next record belongs to: the first is 0, then each record marked
    // last ends one.
    let next_batch = match previous {
        None => 0,
        Some(mark) if mark.last => BatchMark::next_batch(mark.batch),
        Some(mark) => mark.batch,
    };
    let scan = Scan {
        version: Version::V2,
        end: offset as u64,
        torn_end: offset as u64,
        next_batch,
        records,
        offsets,
    };
    let Some(problem) = damage else {
        return Ok(scan);
    };
    let refuse = |why: String| AuditError::Corrupt {
        path: path.to_owned(),
        offset: offset as u64,
        problem: format!("record {}: {problem}; {why}", scan.records.len()),
    };
    if (content_end - batch_start) as u64 > MAX_BATCH_BYTES {
        return Err(refuse(format!(
            "data goes on to byte offset {content_end}, past what one unfinished batch \
             begun at byte offset {batch_start} can hold"
        )));
    }
    // The bytes after the damage may hold further records of the torn batch (pages
    // reach the disk in any order); a record of a later batch proves that the
    // damaged one had been synced, that is acknowledged.
    let mut at = offset + 1;
    while at < content_end {
        match LogRecord::decode(&bytes[at..], Version::V2) {
            Decoded::Record(_, mark, used) => {
                if is_later(mark.batch, next_batch) {
                    return Err(refuse(format!(
                        "a record of a later batch follows at byte offset {at}, so this \
                         record's batch had been synced and acknowledged"
                    )));
                }
                at += used;
            }
            _ => at += 1,
        }
    }
    Ok(Scan {
        torn_end: content_end as u64,
        ..scan
    })
}

/// Whether batch number `batch` comes after `than`, modulo 2^15 (a torn batch's
/// bytes span at most 1024 records, so near numbers are all that is compared).
fn is_later(batch: u16, than: u16) -> bool {
    let ahead = batch.wrapping_sub(than) % super::record::BATCH_MODULUS;
    (1..super::record::BATCH_MODULUS / 2).contains(&ahead)
}

/// Reads and checks `dir/checkpoint`, if there is one.
pub(crate) fn read_checkpoint(
    dir: &Path,
    key: &ServerKey,
) -> Result<Option<SignedCheckpoint>, AuditError> {
    read_checkpoint_file(&dir.join(CHECKPOINT_FILE), key)
}

/// Reads a persisted checkpoint (the format of `dir/checkpoint`) and checks its
/// signature under `key`, if the file exists.
pub(crate) fn read_checkpoint_file(
    path: &Path,
    key: &ServerKey,
) -> Result<Option<SignedCheckpoint>, AuditError> {
    let path = path.to_owned();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AuditError::Io { path, source }),
    };
    let corrupt = |problem: &str| AuditError::Corrupt {
        path: path.clone(),
        offset: 0,
        problem: problem.to_owned(),
    };
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.len() != 4 {
        return Err(corrupt("expected three body lines and a signature line"));
    }
    let signature_line = lines.pop().expect("four lines");
    let body: String = lines.concat();
    let checkpoint = Checkpoint::parse(&body).map_err(|error| corrupt(&error.to_string()))?;
    let signature = B64
        .decode(signature_line.trim_end_matches('\n'))
        .map_err(|_| corrupt("the signature line is not base64"))?;
    key.public()
        .verify(body.as_bytes(), &signature)
        .map_err(|_| corrupt("the signature does not verify under this server's key"))?;
    Ok(Some(SignedCheckpoint {
        checkpoint,
        signature,
    }))
}

/// The recovered tree must contain the persisted checkpoint's tree.
pub(crate) fn check_against_checkpoint(
    dir: &Path,
    log_path: &Path,
    tree: &MerkleTree,
    stored: &SignedCheckpoint,
    origin: &str,
) -> Result<(), AuditError> {
    let path = dir.join(CHECKPOINT_FILE);
    let checkpoint = &stored.checkpoint;
    if checkpoint.origin != origin {
        return Err(AuditError::Corrupt {
            path,
            offset: 0,
            problem: format!(
                "the checkpoint names the log `{}` but the configured origin is `{origin}`",
                checkpoint.origin
            ),
        });
    }
    if tree.size() < checkpoint.tree_size {
        return Err(AuditError::Corrupt {
            path: log_path.to_owned(),
            offset: 0,
            problem: format!(
                "the log holds {} records but its signed checkpoint covers {}: records were lost",
                tree.size(),
                checkpoint.tree_size
            ),
        });
    }
    let root = tree
        .root(checkpoint.tree_size)
        .expect("size checked against the tree");
    if !crate::envelope::digest_eq(&root, &checkpoint.root_hash) {
        return Err(AuditError::Corrupt {
            path: log_path.to_owned(),
            offset: 0,
            problem: format!(
                "the first {} records do not hash to the root of the signed checkpoint in {}",
                checkpoint.tree_size,
                path.display()
            ),
        });
    }
    Ok(())
}

/// Writes `dir/checkpoint` atomically: temporary file, sync, rename, sync the
/// directory.
pub(crate) fn write_checkpoint(dir: &Path, signed: &SignedCheckpoint) -> std::io::Result<()> {
    write_checkpoint_file(dir, CHECKPOINT_FILE, signed)
}

/// Writes `dir/name` in the format of `dir/checkpoint`, atomically.
pub(crate) fn write_checkpoint_file(
    dir: &Path,
    name: &str,
    signed: &SignedCheckpoint,
) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut text = signed.checkpoint.body();
    text.push_str(&B64.encode(&signed.signature));
    text.push('\n');
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// How long the writer lets a group form once the queue is empty, having taken
/// `taken` appends: not at all for a lone append or for a group at least as large
/// as the previous batch (`previous`), otherwise a [`GATHER_FRACTION`] of the last
/// commit's duration, at most [`MAX_GATHER`].
pub fn gather_window(taken: usize, previous: usize, last_commit: Duration) -> Option<Duration> {
    if taken < 2 || taken >= previous || taken >= MAX_BATCH {
        return None;
    }
    let window = (last_commit / GATHER_FRACTION).min(MAX_GATHER);
    (!window.is_zero()).then_some(window)
}

/// The file and where it stands; whoever holds it (behind [`Shared::writer`])
/// writes the next batch.
struct Writer {
    file: File,
    /// Where the log ends: the next batch is written here.
    end: u64,
    /// The file's length: from `end` to here are durable zeros.
    allocated: u64,
    /// Bytes of zeros the file grows by.
    chunk: u64,
    /// The number of the next batch.
    batch: u16,
    /// How long the last successful write and sync took.
    last_commit: Duration,
    /// Records in the last batch.
    previous_batch: usize,
    /// The encoded batch, reused.
    buffer: Vec<u8>,
}

/// Marks the log stopped however the writer thread ends, so that health checks
/// and waiting appends learn of it: appends still queued are answered with an
/// error (their answer channels are dropped), never left waiting.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.queue_slots.close();
        let mut queue = self.0.lock_queue();
        queue.closed = true;
        queue.pending.clear();
        queue.close_done.clear();
    }
}

/// The writer thread: sleeps until woken (see [`Queue::wake`]), then writes every
/// queued append, letting a group form as [`gather_window`] says, persists the
/// checkpoint once a [`CHECKPOINT_INTERVAL`], and on a close writes the rest,
/// persists the exact checkpoint, releases the file and ends.
fn writer_thread(shared: Arc<Shared>) {
    let _stop = StopGuard(shared.clone());
    loop {
        let closing = {
            let mut queue = shared.lock_queue();
            while !queue.wake {
                queue = shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            queue.wake = false;
            queue.closed
        };
        {
            let mut guard = shared.lock_writer();
            let Some(writer) = guard.as_mut() else {
                return;
            };
            loop {
                let mut batch = writer.gather(&shared);
                if batch.is_empty() {
                    break;
                }
                writer.commit(&shared, &mut batch);
                writer.keep_ahead(&shared);
            }
            if closing {
                let _ = writer.file.sync_all();
                // Releases the file (and its lock).
                *guard = None;
            }
        }
        persist_checkpoint(&shared);
        if closing {
            shared.stopped.store(true, Ordering::Release);
            shared.queue_slots.close();
            for done in shared.lock_queue().close_done.drain(..) {
                let _ = done.send(());
            }
            return;
        }
        // Appends that queued while this thread held the file left themselves to
        // it: look again before sleeping.
        let mut queue = shared.lock_queue();
        if !queue.pending.is_empty() {
            queue.wake = true;
        }
    }
}

/// Signs and persists a checkpoint of the durable tree, if it grew.
fn persist_checkpoint(shared: &Shared) {
    let mut persisted = shared
        .persisted
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    persisted.at = Instant::now();
    let (size, root) = {
        let index = shared.lock_index();
        let size = index.leaves.tree.size();
        (
            size,
            index
                .leaves
                .tree
                .root(size)
                .expect("the current size is in range"),
        )
    };
    if persisted.size == Some(size) {
        return;
    }
    let signed = shared.signer.sign(size, root);
    match write_checkpoint(&shared.dir, &signed) {
        Ok(()) => persisted.size = Some(size),
        Err(error) => {
            tracing::error!(dir = %shared.dir.display(), %error, "cannot persist the audit checkpoint")
        }
    }
}

impl Writer {
    /// On the writer thread: takes what is queued (at most [`MAX_BATCH`]), waiting
    /// for more as [`gather_window`] says.
    fn gather(&mut self, shared: &Shared) -> Vec<Pending> {
        let mut queue = shared.lock_queue();
        let Some(window) =
            gather_window(queue.pending.len(), self.previous_batch, self.last_commit)
        else {
            let count = queue.pending.len().min(MAX_BATCH);
            return queue.pending.drain(..count).collect();
        };
        shared.gathered.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + window;
        queue.gathering = true;
        // The group stops forming when it is as large as the previous batch.
        while queue.pending.len() < self.previous_batch.min(MAX_BATCH) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = shared
                .wake
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        queue.gathering = false;
        let count = queue.pending.len().min(MAX_BATCH);
        queue.pending.drain(..count).collect()
    }

    /// Writes one batch with a single write and sync, then acknowledges each append.
    fn commit(&mut self, shared: &Shared, batch: &mut Vec<Pending>) {
        if batch.is_empty() {
            return;
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let count = batch.len();
        for (position, (record, _)) in batch.iter().enumerate() {
            let mark = BatchMark {
                batch: self.batch,
                last: position + 1 == count,
            };
            record.encode_into(mark, &mut buffer);
        }
        let start = self.end;
        // The health flag changes before any acknowledgement goes out, so that a
        // client that was answered and then asks `/health` sees the same state.
        match self.write_durably(&buffer) {
            Ok(()) => {
                self.batch = BatchMark::next_batch(self.batch);
                self.previous_batch = count;
                shared.batches.fetch_add(1, Ordering::Relaxed);
                shared.records.fetch_add(count as u64, Ordering::Relaxed);
                shared.last_batch_ok.store(true, Ordering::Release);
                let mut index = shared.lock_index();
                let mut offset = start;
                for (record, done) in batch.drain(..) {
                    let position = index.leaves.tree.size();
                    index.push(&record, offset);
                    offset += record.encoded_len() as u64;
                    let _ = done.send(Ok(position));
                }
            }
            Err(error) => {
                shared.last_batch_ok.store(false, Ordering::Release);
                tracing::error!(path = %shared.path.display(), %error, "audit log append failed; the batch was not acknowledged");
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(AuditError::Unavailable(error.to_string())));
                }
            }
        }
        self.buffer = buffer;
    }

    /// After a batch: grows the file when the zeros left fall below a quarter of a
    /// chunk.
    fn keep_ahead(&mut self, shared: &Shared) {
        if self.allocated.saturating_sub(self.end) < self.chunk / 4 {
            let target = self.allocated + self.chunk;
            if let Err(error) = self.grow(target) {
                tracing::error!(path = %shared.path.display(), %error, "cannot grow the audit log's preallocated segment");
            }
        }
    }

    /// Writes `bytes` at the end of the log over preallocated zeros (growing the
    /// file first if they would not fit) and syncs them. On failure, puts the zeros
    /// back (best effort) so that the next batch, written at the same offset, is
    /// not followed by this one's remains.
    fn write_durably(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let end = self.end + bytes.len() as u64;
        if end > self.allocated {
            self.grow(end.max(self.allocated + self.chunk))?;
        }
        let started = Instant::now();
        let result = self
            .file
            .write_all_at(bytes, self.end)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.last_commit = started.elapsed();
                self.end = end;
                Ok(())
            }
            Err(error) => {
                let zeros = vec![0; bytes.len()];
                let _ = self
                    .file
                    .write_all_at(&zeros, self.end)
                    .and_then(|()| self.file.sync_data());
                Err(error)
            }
        }
    }

    /// Extends the file to `target` bytes with zeros actually written, then
    /// `fsync`s it (its size changed): the appends that overwrite them later are
    /// data-only.
    fn grow(&mut self, target: u64) -> std::io::Result<()> {
        const PIECE: usize = 64 * 1024;
        let zeros = vec![0u8; PIECE];
        let mut at = self.allocated;
        while at < target {
            let piece = PIECE.min((target - at) as usize);
            self.file.write_all_at(&zeros[..piece], at)?;
            at += piece as u64;
        }
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_hypervisor_protocol::leaf::Leaf;

    fn key() -> Arc<ServerKey> {
        Arc::new(ServerKey::from_scalar(crate::envelope::Provider::default(), &[7; 32]).unwrap())
    }

    fn open(dir: &Path) -> Result<(FileLog, Recovery), AuditError> {
        FileLog::open(dir, "test.example/log", key())
    }

    fn record(n: u8) -> LogRecord {
        LogRecord {
            leaf: Leaf {
                execution_id: Uuid::from_bytes([n; 16]),
                timestamp_ms: u64::from(n),
                commitment: [n; 32],
            },
            signature: vec![n; 70],
        }
    }

    fn records(range: std::ops::RangeInclusive<u8>) -> Vec<LogRecord> {
        range.map(record).collect()
    }

    fn log_path(dir: &Path) -> PathBuf {
        dir.join(LOG_FILE)
    }

    /// A log in a fresh directory with `n` records appended one at a time (one batch
    /// each), closed cleanly: its checkpoint covers all of them.
    async fn closed_log_of(n: u8) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path()).unwrap();
        for i in 1..=n {
            log.append(record(i)).await.unwrap();
        }
        log.close().await;
        dir
    }

    /// Where the log in `dir` ends and the number its next batch gets.
    fn end_of_log(dir: &Path) -> (u64, u16) {
        let scan = scan(&log_path(dir), &std::fs::read(log_path(dir)).unwrap()).unwrap();
        assert_eq!(scan.torn_end, scan.end, "the log ends cleanly");
        (scan.end, scan.next_batch)
    }

    /// What a crash during the next batch leaves: `batch` encoded as the writer
    /// would, damaged by `damage`, written at the end of the log and synced, but
    /// never acknowledged. Returns the offset it was written at.
    fn crash_during_batch(
        dir: &Path,
        batch: &[LogRecord],
        damage: impl FnOnce(&mut Vec<u8>),
    ) -> u64 {
        let (end, next_batch) = end_of_log(dir);
        let mut bytes = Vec::new();
        for (position, record) in batch.iter().enumerate() {
            let mark = BatchMark {
                batch: next_batch,
                last: position + 1 == batch.len(),
            };
            record.encode_into(mark, &mut bytes);
        }
        damage(&mut bytes);
        let file = OpenOptions::new().write(true).open(log_path(dir)).unwrap();
        file.write_all_at(&bytes, end).unwrap();
        file.sync_all().unwrap();
        end
    }

    /// Opens the log in `dir`, expects exactly `expected` records (and a tree that
    /// matches its persisted checkpoint, which `open` checks), appends one more and
    /// checks that a second reopening reads the file cleanly with all of them.
    async fn reopens_with_exactly(dir: &Path, expected: &[LogRecord]) -> Recovery {
        let (log, recovery) = open(dir).unwrap();
        assert_eq!(recovery.records, expected.len() as u64);
        assert_eq!(
            log.append(record(200)).await.unwrap(),
            expected.len() as u64
        );
        log.close().await;
        let mut all = expected.to_vec();
        all.push(record(200));
        assert_eq!(read_records(&log_path(dir)).unwrap(), all);
        let (log, again) = open(dir).unwrap();
        assert_eq!(again.records, all.len() as u64);
        assert_eq!(again.torn_bytes, 0);
        assert_eq!(again.checkpoint_size, Some(all.len() as u64));
        log.close().await;
        recovery
    }

    fn expect_corrupt(result: Result<(FileLog, Recovery), AuditError>) -> (u64, String) {
        match result {
            Err(AuditError::Corrupt {
                offset, problem, ..
            }) => (offset, problem),
            Err(other) => panic!("expected corruption, got {other}"),
            Ok((_, recovery)) => panic!("expected corruption, opened {recovery:?}"),
        }
    }

    #[tokio::test]
    async fn appended_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (log, recovery) = open(dir.path()).unwrap();
        assert_eq!(recovery.records, 0);
        assert_eq!(log.append(record(1)).await.unwrap(), 0);
        assert_eq!(log.append(record(2)).await.unwrap(), 1);
        log.close().await;
        assert!(matches!(
            log.append(record(3)).await,
            Err(AuditError::Unavailable(_))
        ));
        let (log, recovery) = open(dir.path()).unwrap();
        assert_eq!(recovery.records, 2);
        assert_eq!(log.index_of(&Uuid::from_bytes([2; 16])), Some(1));
        assert_eq!(
            read_records(&log_path(dir.path())).unwrap(),
            vec![record(1), record(2)]
        );
    }

    #[tokio::test]
    async fn a_new_log_is_a_header_and_a_durable_chunk_of_zeros_that_appends_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path()).unwrap();
        let len = std::fs::metadata(log_path(dir.path())).unwrap().len();
        assert_eq!(len, FILE_MAGIC.len() as u64 + SEGMENT_CHUNK);
        log.append(record(1)).await.unwrap();
        log.append(record(2)).await.unwrap();
        assert_eq!(
            std::fs::metadata(log_path(dir.path())).unwrap().len(),
            len,
            "appends do not change the file's size"
        );
        let bytes = std::fs::read(log_path(dir.path())).unwrap();
        assert_eq!(&bytes[..FILE_MAGIC.len()], FILE_MAGIC);
        let end = FILE_MAGIC.len() + 2 * record(1).encoded_len();
        assert!(bytes[end..].iter().all(|&b| b == 0));
        log.close().await;
    }

    #[tokio::test]
    async fn appends_across_many_chunks_grow_the_file_ahead_and_reopen_intact() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = 1024;
        let (log, _) =
            FileLog::open_with_chunk(dir.path(), "test.example/log", key(), chunk).unwrap();
        for n in 1..=60 {
            log.append(record(n)).await.unwrap();
        }
        let len = std::fs::metadata(log_path(dir.path())).unwrap().len();
        let end = FILE_MAGIC.len() as u64 + 60 * record(1).encoded_len() as u64;
        assert!(
            len - end >= chunk / 4,
            "the writer keeps a quarter chunk of zeros ahead ({len} - {end})"
        );
        log.close().await;
        reopens_with_exactly(dir.path(), &records(1..=60)).await;
    }

    /// A writer on `file` over an empty log in `dir`, as `FileLog::open` builds it
    /// but without its thread, and a handle that reads its state.
    fn writer_on(file: File, dir: &Path) -> (Writer, FileLog) {
        let path = log_path(dir);
        std::fs::write(&path, FILE_MAGIC).unwrap();
        let shared = Arc::new(Shared::new(
            Index::default(),
            File::open(&path).unwrap(),
            dir,
            "test.example/log",
            key(),
            Persisted {
                size: None,
                at: Instant::now(),
            },
        ));
        let writer = Writer {
            file,
            end: FILE_MAGIC.len() as u64,
            allocated: FILE_MAGIC.len() as u64,
            chunk: 4096,
            batch: 0,
            last_commit: Duration::ZERO,
            previous_batch: 0,
            buffer: Vec::new(),
        };
        let log = FileLog {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        };
        (writer, log)
    }

    fn commit_one(
        writer: &mut Writer,
        log: &FileLog,
        record: LogRecord,
    ) -> Result<u64, AuditError> {
        let (done, acknowledged) = oneshot::channel();
        writer.commit(&log.shared, &mut vec![(record, done)]);
        acknowledged.blocking_recv().unwrap()
    }

    #[test]
    fn a_failed_write_makes_the_log_unwritable_until_a_batch_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        // Every write to /dev/full fails with ENOSPC: a full disk, not a mock.
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let (mut writer, log) = writer_on(full, dir.path());
        assert!(log.is_writable());
        assert!(matches!(
            commit_one(&mut writer, &log, record(1)),
            Err(AuditError::Unavailable(_))
        ));
        assert!(!log.is_writable());
        assert_eq!(log.size(), 0, "nothing was acknowledged");

        // Space is back: the next batch succeeds and the log is writable again.
        writer.file = OpenOptions::new()
            .write(true)
            .open(log_path(dir.path()))
            .unwrap();
        assert_eq!(commit_one(&mut writer, &log, record(2)).unwrap(), 0);
        assert!(log.is_writable());
        assert_eq!(
            read_records(&log_path(dir.path())).unwrap(),
            vec![record(2)]
        );
    }

    #[tokio::test]
    async fn a_closed_log_is_not_writable() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path()).unwrap();
        assert!(log.is_writable());
        log.close().await;
        assert!(!log.is_writable());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_are_acknowledged_only_once_durable_with_distinct_indices() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for n in 0..200u8 {
            let log = log.clone();
            tasks.push(tokio::spawn(
                async move { (n, log.append(record(n)).await) },
            ));
        }
        let mut acknowledged = Vec::new();
        for task in tasks {
            let (n, index) = task.await.unwrap();
            acknowledged.push((index.unwrap(), n));
        }
        acknowledged.sort();
        assert_eq!(
            acknowledged.iter().map(|(i, _)| *i).collect::<Vec<u64>>(),
            (0..200).collect::<Vec<u64>>()
        );
        let stats = log.writer_stats();
        assert_eq!(stats.records, 200);
        assert!(stats.batches <= 200);
        // Without closing (no final sync), a fresh reader finds every acknowledged
        // record at its index; reopening after close does too.
        let on_disk = read_records(&log_path(dir.path())).unwrap();
        for (index, n) in &acknowledged {
            assert_eq!(on_disk[*index as usize], record(*n));
        }
        log.close().await;
        let (_, recovery) = open(dir.path()).unwrap();
        assert_eq!(recovery.records, 200);
    }

    #[tokio::test]
    async fn a_lone_append_is_written_by_its_own_task_and_never_waits_for_company() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path()).unwrap();
        for n in 1..=20 {
            log.append(record(n)).await.unwrap();
        }
        assert_eq!(
            log.writer_stats(),
            WriterStats {
                batches: 20,
                records: 20,
                gathered: 0,
                inline: 20,
            },
            "each lone append is written by its own task, with no thread hand-off"
        );
        log.close().await;
    }

    #[test]
    fn gather_window_waits_only_for_a_group_known_to_be_forming() {
        let sync = Duration::from_micros(100);
        assert_eq!(gather_window(1, 8, sync), None, "a lone append");
        assert_eq!(
            gather_window(8, 8, sync),
            None,
            "as large as the last batch"
        );
        assert_eq!(gather_window(9, 8, sync), None);
        assert_eq!(gather_window(2, 0, sync), None, "no batch yet");
        assert_eq!(
            gather_window(3, 8, sync),
            Some(Duration::from_micros(25)),
            "a quarter of the last commit"
        );
        assert_eq!(
            gather_window(3, 8, Duration::from_millis(10)),
            Some(MAX_GATHER)
        );
        assert_eq!(gather_window(3, 8, Duration::ZERO), None);
    }

    #[test]
    fn batch_numbers_compare_across_the_wrap() {
        let last = super::super::record::BATCH_MODULUS - 1;
        assert!(is_later(1, 0));
        assert!(is_later(0, last), "0 follows the last number");
        assert!(is_later(2, last));
        assert!(!is_later(last, 0));
        assert!(!is_later(5, 5));
        assert!(!is_later(4, 5));
        assert_eq!(BatchMark::next_batch(last), 0);
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, _) = open(dir.path()).unwrap();
        assert!(matches!(open(dir.path()), Err(AuditError::Locked { .. })));
    }

    // Crash tests: real files, real syncs. Each acknowledged record is appended
    // through the log; what a crash leaves of an unacknowledged batch is written
    // where the writer would have put it.

    #[tokio::test]
    async fn a_torn_final_record_is_zeroed_and_the_log_goes_on() {
        let dir = closed_log_of(3).await;
        let at = crash_during_batch(dir.path(), &[record(4)], |bytes| bytes.truncate(40));
        let (log, recovery) = open(dir.path()).unwrap();
        assert_eq!(recovery.torn_bytes, 40);
        log.close().await;
        let bytes = std::fs::read(log_path(dir.path())).unwrap();
        assert!(
            bytes[at as usize..].iter().all(|&b| b == 0),
            "the torn bytes are zeros again"
        );
        reopens_with_exactly(dir.path(), &records(1..=3)).await;
    }

    #[tokio::test]
    async fn a_torn_batch_whose_later_pages_reached_the_disk_is_zeroed() {
        let dir = closed_log_of(2).await;
        let len = record(1).encoded_len();
        // Records 3..=6 as one batch; record 4's bytes never reached the disk but
        // records 5 and 6 (the batch's last) did.
        crash_during_batch(dir.path(), &records(3..=6), |bytes| {
            bytes[len..2 * len].fill(0);
        });
        let recovery = reopens_with_exactly(dir.path(), &records(1..=3)).await;
        assert_eq!(recovery.torn_bytes, 3 * len as u64);
    }

    #[tokio::test]
    async fn a_zeroed_final_record_ends_the_log_before_it() {
        // All of it zeros (its data never reached the disk): a clean end.
        let dir = closed_log_of(3).await;
        crash_during_batch(dir.path(), &[record(4)], |bytes| bytes.fill(0));
        let recovery = reopens_with_exactly(dir.path(), &records(1..=3)).await;
        assert_eq!(recovery.torn_bytes, 0);

        // Its header zeros, the rest on disk: a torn record.
        let dir = closed_log_of(3).await;
        crash_during_batch(dir.path(), &[record(4)], |bytes| bytes[..8].fill(0));
        let recovery = reopens_with_exactly(dir.path(), &records(1..=3)).await;
        assert_eq!(recovery.torn_bytes, record(4).encoded_len() as u64);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_the_acknowledged_log_refuses_to_open_naming_its_offset() {
        let dir = closed_log_of(5).await;
        let path = log_path(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let second = FILE_MAGIC.len() + record(1).encoded_len();
        bytes[second + 30] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let (offset, problem) = expect_corrupt(open(dir.path()));
        assert_eq!(offset, second as u64);
        assert!(problem.contains("record 1"), "{problem}");
        assert!(problem.contains("later batch"), "{problem}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "nothing was rewritten"
        );
    }

    #[tokio::test]
    async fn a_flipped_byte_followed_by_more_than_one_batch_of_data_refuses_to_open() {
        // Every record after the damage is damaged too, so no later batch can be
        // recognised: the amount of data after it decides.
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let mut bytes = FILE_MAGIC.to_vec();
        let count = MAX_BATCH_BYTES as usize / record(1).encoded_len() + 10;
        for n in 0..count {
            let mark = BatchMark {
                batch: (n % 100) as u16,
                last: true,
            };
            record((n % 250) as u8).encode_into(mark, &mut bytes);
        }
        let first = FILE_MAGIC.len();
        for at in (first + 10..bytes.len()).step_by(record(1).encoded_len()) {
            bytes[at] ^= 0x01;
        }
        bytes.resize(bytes.len() + 4096, 0);
        std::fs::write(&path, &bytes).unwrap();
        let (offset, problem) = expect_corrupt(open(dir.path()));
        assert_eq!(offset, first as u64);
        assert!(
            problem.contains("past what one unfinished batch"),
            "{problem}"
        );
    }

    #[tokio::test]
    async fn a_flipped_byte_in_the_unacknowledged_final_record_is_zeroed_like_a_torn_write() {
        let dir = closed_log_of(3).await;
        crash_during_batch(dir.path(), &[record(4)], |bytes| bytes[30] ^= 0x04);
        let recovery = reopens_with_exactly(dir.path(), &records(1..=3)).await;
        assert_eq!(recovery.torn_bytes, record(4).encoded_len() as u64);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_the_last_acknowledged_record_is_caught_by_the_checkpoint() {
        let dir = closed_log_of(3).await;
        let path = log_path(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let third = FILE_MAGIC.len() + 2 * record(1).encoded_len();
        bytes[third + 30] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let (_, problem) = expect_corrupt(open(dir.path()));
        assert!(problem.contains("records were lost"), "{problem}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "nothing was rewritten"
        );
    }

    #[tokio::test]
    async fn a_crash_while_growing_leaves_a_log_that_opens_and_grows_again() {
        let chunk = 1024;
        let open_small =
            |dir: &Path| FileLog::open_with_chunk(dir, "test.example/log", key(), chunk).unwrap();
        for (what, len_after_crash) in [
            ("no zeros written yet", 0u64),
            ("part of the chunk written", 300),
            ("the size extended but no data", u64::MAX),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (log, _) = open_small(dir.path());
            for n in 1..=10 {
                log.append(record(n)).await.unwrap();
            }
            log.close().await;
            let (end, _) = end_of_log(dir.path());
            let file = OpenOptions::new()
                .write(true)
                .open(log_path(dir.path()))
                .unwrap();
            match len_after_crash {
                u64::MAX => file.set_len(end + 10 * chunk).unwrap(),
                extra => file.set_len(end + extra).unwrap(),
            }
            file.sync_all().unwrap();
            drop(file);

            let (log, recovery) = open_small(dir.path());
            assert_eq!(recovery.records, 10, "{what}");
            assert_eq!(recovery.torn_bytes, 0, "{what}");
            for n in 11..=40 {
                log.append(record(n)).await.unwrap();
            }
            log.close().await;
            assert_eq!(
                read_records(&log_path(dir.path())).unwrap(),
                records(1..=40),
                "{what}"
            );
            let (_, again) = open_small(dir.path());
            assert_eq!(again.checkpoint_size, Some(40), "{what}");
        }
    }

    #[tokio::test]
    async fn a_file_whose_creation_was_interrupted_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(log_path(dir.path()), vec![0; 5000]).unwrap();
        let recovery = reopens_with_exactly(dir.path(), &[]).await;
        assert_eq!(recovery.records, 0);
    }

    #[tokio::test]
    async fn a_v1_log_is_converted_once_keeping_its_records_proofs_and_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let mut bytes = FILE_MAGIC_V1.to_vec();
        for r in records(1..=4) {
            r.encode_v1_into(&mut bytes);
        }
        // A v1 server crashed during a fifth append.
        let mut fifth = Vec::new();
        record(5).encode_v1_into(&mut fifth);
        bytes.extend_from_slice(&fifth[..50]);
        std::fs::write(&path, &bytes).unwrap();
        // ... and had persisted a checkpoint of three records.
        let mut tree = MerkleTree::default();
        for r in records(1..=3) {
            tree.push(r.leaf.hash());
        }
        let checkpoint = Checkpoint {
            origin: "test.example/log".to_owned(),
            tree_size: 3,
            root_hash: tree.root(3).unwrap(),
        };
        let signature = key().sign(checkpoint.body().as_bytes());
        write_checkpoint(
            dir.path(),
            &SignedCheckpoint {
                checkpoint,
                signature,
            },
        )
        .unwrap();

        let (log, recovery) = open(dir.path()).unwrap();
        assert!(recovery.converted_from_v1);
        assert_eq!(recovery.records, 4);
        assert_eq!(recovery.torn_bytes, 50);
        assert_eq!(recovery.checkpoint_size, Some(3));
        assert_eq!(
            log.inclusion(&Uuid::from_bytes([2; 16]))
                .unwrap()
                .unwrap()
                .record,
            record(2)
        );
        log.close().await;
        let converted = std::fs::read(&path).unwrap();
        assert_eq!(&converted[..FILE_MAGIC.len()], FILE_MAGIC);
        let last = bytes.len() - 50 - record(4).encoded_len();
        assert_eq!(
            converted[FILE_MAGIC.len()..last],
            bytes[FILE_MAGIC.len()..last],
            "the records' bytes are unchanged but for the last one's batch mark"
        );
        assert!(!dir.path().join("audit.log.v2").exists());
        let recovery = reopens_with_exactly(dir.path(), &records(1..=4)).await;
        assert!(!recovery.converted_from_v1);

        // A torn first v2 batch after the converted history is zeroed like any other.
        crash_during_batch(dir.path(), &records(6..=7), |bytes| bytes.truncate(100));
        let mut expected = records(1..=4);
        expected.push(record(200));
        let recovery = reopens_with_exactly(dir.path(), &expected).await;
        assert_eq!(recovery.torn_bytes, 100);
    }

    #[tokio::test]
    async fn a_torn_first_batch_after_a_converted_v1_log_longer_than_a_batch_is_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let many = |n: u32| LogRecord {
            leaf: Leaf {
                execution_id: Uuid::from_u128(u128::from(n) + 1000),
                timestamp_ms: u64::from(n),
                commitment: [(n % 251) as u8; 32],
            },
            signature: vec![0x30; 70],
        };
        let history: Vec<LogRecord> = (0..1200).map(many).collect();
        assert!(history.len() * record(1).encoded_len() > MAX_BATCH_BYTES as usize);
        let mut bytes = FILE_MAGIC_V1.to_vec();
        for r in &history {
            r.encode_v1_into(&mut bytes);
        }
        std::fs::write(log_path(dir.path()), &bytes).unwrap();
        let (log, recovery) = open(dir.path()).unwrap();
        assert!(recovery.converted_from_v1);
        log.close().await;
        crash_during_batch(dir.path(), &records(1..=2), |bytes| bytes.truncate(100));
        let recovery = reopens_with_exactly(dir.path(), &history).await;
        assert_eq!(recovery.torn_bytes, 100);
    }

    #[test]
    fn a_damaged_v1_log_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let mut bytes = FILE_MAGIC_V1.to_vec();
        for r in records(1..=3) {
            r.encode_v1_into(&mut bytes);
        }
        bytes[FILE_MAGIC_V1.len() + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (offset, problem) = expect_corrupt(open(dir.path()));
        assert_eq!(offset, FILE_MAGIC_V1.len() as u64);
        assert!(problem.contains("record 0"), "{problem}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[tokio::test]
    async fn inclusion_proofs_verify_against_the_signed_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path()).unwrap();
        for n in 1..=5 {
            log.append(record(n)).await.unwrap();
        }
        for n in 1..=5u8 {
            let inclusion = log.inclusion(&Uuid::from_bytes([n; 16])).unwrap().unwrap();
            assert_eq!(inclusion.record, record(n));
            let checkpoint = &inclusion.checkpoint.checkpoint;
            assert_eq!(checkpoint.tree_size, 5);
            wasm_hypervisor_protocol::merkle::verify_inclusion(
                &inclusion.record.leaf.hash(),
                inclusion.index,
                checkpoint.tree_size,
                &inclusion.proof,
                &checkpoint.root_hash,
            )
            .unwrap();
            key()
                .public()
                .verify(
                    checkpoint.body().as_bytes(),
                    &inclusion.checkpoint.signature,
                )
                .unwrap();
        }
        assert!(log.inclusion(&Uuid::from_bytes([9; 16])).unwrap().is_none());
    }

    #[tokio::test]
    async fn closing_persists_a_checkpoint_that_reopening_checks() {
        let dir = closed_log_of(3).await;
        let (log, recovery) = open(dir.path()).unwrap();
        assert_eq!(recovery.checkpoint_size, Some(3));
        log.close().await;

        // Zeroing a whole acknowledged record leaves a valid-looking log of two, but
        // not the tree the checkpoint signed.
        let third = FILE_MAGIC.len() + 2 * record(1).encoded_len();
        let file = OpenOptions::new()
            .write(true)
            .open(log_path(dir.path()))
            .unwrap();
        file.write_all_at(&vec![0; record(3).encoded_len()], third as u64)
            .unwrap();
        let (_, problem) = expect_corrupt(open(dir.path()));
        assert!(problem.contains("records were lost"), "{problem}");
    }

    #[tokio::test]
    async fn a_checkpoint_signed_by_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path()).unwrap();
        log.append(record(1)).await.unwrap();
        log.close().await;
        let other = Arc::new(
            ServerKey::from_scalar(crate::envelope::Provider::default(), &[8; 32]).unwrap(),
        );
        match FileLog::open(dir.path(), "test.example/log", other) {
            Err(AuditError::Corrupt { problem, .. }) => {
                assert!(problem.contains("signature"), "{problem}")
            }
            other => panic!("expected a refusal, got {:?}", other.map(|(_, r)| r)),
        }
    }
}
