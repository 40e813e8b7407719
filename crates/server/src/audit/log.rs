//! The durable audit-log file, `audit.log` in the data directory.
//!
//! The file is a 32-byte header followed by records (see [`super::record`]), only
//! ever appended to. One writer thread owns the file: appends from all requests
//! queue on a channel, and the writer takes every queued record, writes them with
//! one `write`, calls `fdatasync` once, and only then acknowledges each with its log
//! index (group commit). An append that returns `Ok` is on disk.
//!
//! Beside it, `checkpoint` holds the last signed checkpoint the writer persisted (at
//! most a second behind the log, and exactly the log at a clean close): the C2SP
//! body, then the base64 DER signature on a fourth line.
//!
//! On open the whole file is checked: a partial record at the very end (a crash in
//! the middle of an append, never acknowledged) is cut off and reported; any other
//! damage stops the open with the file and byte offset. The recovered tree must then
//! contain the persisted checkpoint's tree: at least as many leaves, and the same
//! root at that size. History is never rewritten.
//!
//! In memory the log keeps its [`MerkleTree`] (about 64 bytes per leaf), each
//! record's file offset (8 bytes) and an execution id → index map (about 40 bytes):
//! proofs cost O(log n) hashes, and a leaf is read back from the file by offset.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::AuditError;
use super::record::{Decoded, LogRecord, MAX_SIGNATURE_LEN, RECORD_HEADER_LEN};
use crate::keys::ServerKey;
use wasm_hypervisor_protocol::checkpoint::{Checkpoint, SignedCheckpoint};
use wasm_hypervisor_protocol::leaf::LEAF_LEN;
use wasm_hypervisor_protocol::merkle::{Hash, MerkleError, MerkleTree};

/// File name of the log inside the data directory.
pub const LOG_FILE: &str = "audit.log";
/// File name of the persisted signed checkpoint inside the data directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";

/// How far the persisted checkpoint may lag behind the log while appends go on.
/// Persisting costs a signature, a write and two syncs; once a second bounds that
/// cost under load, and a clean close always persists the exact tree.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// First bytes of every log file: names the format and its version.
pub const FILE_MAGIC: &[u8; 32] = b"wasm-hypervisor audit log v1\n\0\0\0";

/// Most records the writer takes into one write and sync.
const MAX_BATCH: usize = 1024;
/// Appends waiting for the writer before senders wait too.
const QUEUE_DEPTH: usize = 4096;

/// What opening the log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records in the log.
    pub records: u64,
    /// Bytes of a torn final record that were cut off (0 when the file was clean).
    pub truncated_bytes: u64,
    /// Tree size of the persisted checkpoint the log was checked against.
    pub checkpoint_size: Option<u64>,
}

/// A record with its inclusion proof against a signed checkpoint.
#[derive(Debug, Clone)]
pub struct Inclusion {
    pub index: u64,
    pub record: LogRecord,
    pub proof: Vec<Hash>,
    pub checkpoint: SignedCheckpoint,
}

/// A handle on the log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

/// What the handle and the writer share.
struct Shared {
    index: Mutex<Index>,
    /// A read-only handle for reading records back by offset.
    reader: File,
    path: PathBuf,
    origin: String,
    key: Arc<ServerKey>,
    /// The latest signed checkpoint, re-signed only when the tree has grown.
    latest: Mutex<Option<SignedCheckpoint>>,
    /// Whether the writer's last batch was written and synced. Set by the writer
    /// only, after every batch; read by health checks.
    last_batch_ok: AtomicBool,
}

enum Command {
    Append {
        record: LogRecord,
        done: oneshot::Sender<Result<u64, AuditError>>,
    },
    /// Sync, release the file and stop; appends queued before it are written first.
    Close { done: oneshot::Sender<()> },
}

/// What the process keeps of the log in memory.
#[derive(Default)]
struct Index {
    tree: MerkleTree,
    /// File offset of each record.
    offsets: Vec<u64>,
    by_execution: HashMap<Uuid, u64>,
}

impl Index {
    fn push(&mut self, record: &LogRecord, offset: u64) {
        let position = self.tree.size();
        self.tree.push(record.leaf.hash());
        self.offsets.push(offset);
        self.by_execution.insert(record.leaf.execution_id, position);
    }
}

impl AuditLog {
    /// Opens (or creates) `dir/audit.log`, checks every record, cuts a torn tail,
    /// checks the tree against the persisted checkpoint, takes an exclusive lock on
    /// the file and starts the writer thread. `origin` names the log in checkpoints,
    /// which `key` signs.
    pub fn open(
        dir: &Path,
        origin: &str,
        key: Arc<ServerKey>,
    ) -> Result<(AuditLog, Recovery), AuditError> {
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
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked { path });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        if bytes.is_empty() {
            file.write_all(FILE_MAGIC).map_err(io)?;
            file.sync_all().map_err(io)?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            bytes.extend_from_slice(FILE_MAGIC);
        }
        let stored = read_checkpoint(dir, &key)?;
        let scan = scan(&path, &bytes)?;
        let mut index = Index::default();
        for (record, offset) in scan.records.iter().zip(&scan.offsets) {
            index.push(record, *offset);
        }
        if let Some(stored) = &stored {
            check_against_checkpoint(dir, &path, &index.tree, stored, origin)?;
        }
        let truncated_bytes = bytes.len() as u64 - scan.valid_len;
        if truncated_bytes > 0 {
            file.set_len(scan.valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::Start(scan.valid_len)).map_err(io)?;
        let reader = File::open(&path).map_err(io)?;

        let recovery = Recovery {
            records: index.tree.size(),
            truncated_bytes,
            checkpoint_size: stored.map(|s| s.checkpoint.tree_size),
        };
        let shared = Arc::new(Shared {
            index: Mutex::new(index),
            reader,
            path: path.clone(),
            origin: origin.to_owned(),
            key,
            latest: Mutex::new(None),
            last_batch_ok: AtomicBool::new(true),
        });
        let (commands, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            file,
            dir: dir.to_owned(),
            committed_len: scan.valid_len,
            shared: shared.clone(),
            persisted_size: recovery.checkpoint_size,
            persisted_at: Instant::now(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(io)?;
        Ok((AuditLog { commands, shared }, recovery))
    }

    /// Appends a record and returns its log index once it is durably on disk.
    pub async fn append(&self, record: LogRecord) -> Result<u64, AuditError> {
        let (done, acknowledged) = oneshot::channel();
        self.commands
            .send(Command::Append { record, done })
            .await
            .map_err(|_| AuditError::Unavailable("the log writer has stopped".to_owned()))?;
        acknowledged
            .await
            .map_err(|_| AuditError::Unavailable("the log writer has stopped".to_owned()))?
    }

    /// Writes everything queued so far, releases the file and stops the writer.
    /// Appends after this fail with [`AuditError::Unavailable`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close { done }).await.is_ok() {
            let _ = closed.await;
        }
    }

    /// Whether an append can be expected to succeed: false once the writer's last
    /// write or sync failed (until a later batch succeeds) or once the writer has
    /// stopped. Nothing is retried in the background: after an I/O error the next
    /// append is the probe.
    pub fn is_writable(&self) -> bool {
        self.shared.last_batch_ok.load(Ordering::Acquire) && !self.commands.is_closed()
    }

    /// Number of durable records.
    pub fn size(&self) -> u64 {
        self.lock().tree.size()
    }

    /// The log index of an execution, if it is in the log.
    pub fn index_of(&self, execution_id: &Uuid) -> Option<u64> {
        self.lock().by_execution.get(execution_id).copied()
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Approximate heap bytes of the in-memory index: the tree, the record offsets
    /// and the execution id map (16-byte key, 8-byte value, 1 control byte a slot).
    pub fn memory_bytes(&self) -> usize {
        let index = self.lock();
        index.tree.memory_bytes()
            + index.offsets.capacity() * std::mem::size_of::<u64>()
            + index.by_execution.capacity() * (16 + 8 + 1)
    }

    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// A signed checkpoint of the whole log as it is now.
    pub fn checkpoint(&self) -> SignedCheckpoint {
        let (size, root) = {
            let index = self.lock();
            let size = index.tree.size();
            (
                size,
                index.tree.root(size).expect("the current size is in range"),
            )
        };
        self.shared.sign(size, root)
    }

    /// An execution's record and its inclusion proof against a fresh checkpoint, or
    /// `None` if the execution is not in the log.
    pub fn inclusion(&self, execution_id: &Uuid) -> Result<Option<Inclusion>, AuditError> {
        let (index, offset, size, root, proof) = {
            let guard = self.lock();
            let Some(&index) = guard.by_execution.get(execution_id) else {
                return Ok(None);
            };
            let size = guard.tree.size();
            let proof = guard
                .tree
                .inclusion_proof(index, size)
                .expect("a logged index is inside the tree");
            let root = guard.tree.root(size).expect("the current size is in range");
            (index, guard.offsets[index as usize], size, root, proof)
        };
        let record = self.shared.read_record(offset)?;
        Ok(Some(Inclusion {
            index,
            record,
            proof,
            checkpoint: self.shared.sign(size, root),
        }))
    }

    /// RFC 9162 §2.1.4 consistency proof between two sizes of this log.
    pub fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        self.lock().tree.consistency_proof(first, second)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.shared.lock_index()
    }
}

impl Shared {
    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index> {
        // Index updates are pushes and an insert; a panic cannot leave them torn.
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Signs a checkpoint for `size`, reusing the last signature when the tree has
    /// not grown since (signing is most of the cost of serving a proof).
    fn sign(&self, size: u64, root: Hash) -> SignedCheckpoint {
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(signed) = latest.as_ref()
            && signed.checkpoint.tree_size == size
        {
            return signed.clone();
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            tree_size: size,
            root_hash: root,
        };
        let signature = self.key.sign(checkpoint.body().as_bytes());
        let signed = SignedCheckpoint {
            checkpoint,
            signature,
        };
        if latest
            .as_ref()
            .is_none_or(|current| current.checkpoint.tree_size < size)
        {
            *latest = Some(signed.clone());
        }
        signed
    }

    fn read_record(&self, offset: u64) -> Result<LogRecord, AuditError> {
        let mut buffer = [0u8; RECORD_HEADER_LEN + LEAF_LEN + MAX_SIGNATURE_LEN];
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
        match LogRecord::decode(&buffer[..filled]) {
            Decoded::Record(record, _) => Ok(record),
            Decoded::Incomplete => Err(AuditError::Corrupt {
                path: self.path.clone(),
                offset,
                problem: "a logged record is cut short on disk".to_owned(),
            }),
            Decoded::Invalid(problem) => Err(AuditError::Corrupt {
                path: self.path.clone(),
                offset,
                problem,
            }),
        }
    }
}

/// Reads every record of a log file from scratch, without opening it for writing:
/// for verification, tests and tools. A torn tail is reported as an error here.
pub fn read_records(path: &Path) -> Result<Vec<LogRecord>, AuditError> {
    let bytes = std::fs::read(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    let scan = scan(path, &bytes)?;
    if scan.valid_len != bytes.len() as u64 {
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            offset: scan.valid_len,
            problem: "the file ends inside a record".to_owned(),
        });
    }
    Ok(scan.records)
}

struct Scan {
    records: Vec<LogRecord>,
    /// File offset of each record.
    offsets: Vec<u64>,
    /// Length of the valid prefix: header plus whole records.
    valid_len: u64,
}

fn scan(path: &Path, bytes: &[u8]) -> Result<Scan, AuditError> {
    let corrupt = |offset: usize, problem: String| AuditError::Corrupt {
        path: path.to_owned(),
        offset: offset as u64,
        problem,
    };
    if bytes.len() < FILE_MAGIC.len() || &bytes[..FILE_MAGIC.len()] != FILE_MAGIC {
        return Err(corrupt(
            0,
            "the file does not start with the audit log v1 header".to_owned(),
        ));
    }
    let mut offset = FILE_MAGIC.len();
    let mut records = Vec::new();
    let mut offsets = Vec::new();
    loop {
        if offset == bytes.len() {
            break;
        }
        match LogRecord::decode(&bytes[offset..]) {
            Decoded::Record(record, used) => {
                records.push(record);
                offsets.push(offset as u64);
                offset += used;
            }
            // Only the last record can be torn: appends are sequential.
            Decoded::Incomplete => break,
            Decoded::Invalid(problem) => {
                return Err(corrupt(
                    offset,
                    format!("record {}: {problem}", records.len()),
                ));
            }
        }
    }
    Ok(Scan {
        records,
        offsets,
        valid_len: offset as u64,
    })
}

/// Reads and checks `dir/checkpoint`, if there is one.
fn read_checkpoint(dir: &Path, key: &ServerKey) -> Result<Option<SignedCheckpoint>, AuditError> {
    let path = dir.join(CHECKPOINT_FILE);
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
fn check_against_checkpoint(
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
fn write_checkpoint(dir: &Path, signed: &SignedCheckpoint) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
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
    std::fs::rename(&tmp, dir.join(CHECKPOINT_FILE))?;
    File::open(dir)?.sync_all()
}

/// Owns the file; runs on its own thread so that `write` and `fdatasync` never
/// block an async worker.
struct Writer {
    file: File,
    dir: PathBuf,
    committed_len: u64,
    shared: Arc<Shared>,
    persisted_size: Option<u64>,
    persisted_at: Instant,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        let mut batch: Vec<(LogRecord, oneshot::Sender<Result<u64, AuditError>>)> =
            Vec::with_capacity(MAX_BATCH);
        let mut buffer = Vec::new();
        let mut close = None;
        while let Some(first) = queue.blocking_recv() {
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append { record, done } => batch.push((record, done)),
                    Command::Close { done } => {
                        close = Some(done);
                        break;
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            self.commit(&mut batch, &mut buffer);
            if self.persisted_at.elapsed() >= CHECKPOINT_INTERVAL {
                self.persist_checkpoint();
            }
            if let Some(done) = close.take() {
                queue.close();
                // Appends that raced with the close are refused, never lost silently.
                while let Ok(command) = queue.try_recv() {
                    if let Command::Append { done, .. } = command {
                        let _ =
                            done.send(Err(AuditError::Unavailable("the log is closed".to_owned())));
                    }
                }
                let _ = self.file.sync_all();
                self.persist_checkpoint();
                drop(self.file);
                let _ = done.send(());
                return;
            }
        }
    }

    /// Writes one batch with a single write and sync, then acknowledges each append.
    fn commit(
        &mut self,
        batch: &mut Vec<(LogRecord, oneshot::Sender<Result<u64, AuditError>>)>,
        buffer: &mut Vec<u8>,
    ) {
        if batch.is_empty() {
            return;
        }
        buffer.clear();
        for (record, _) in batch.iter() {
            record.encode_into(buffer);
        }
        let start = self.committed_len;
        // The health flag changes before any acknowledgement goes out, so that a
        // client that was answered and then asks `/health` sees the same state.
        match self.write_durably(buffer) {
            Ok(()) => {
                self.shared.last_batch_ok.store(true, Ordering::Release);
                let mut index = self.shared.lock_index();
                let mut offset = start;
                for (record, done) in batch.drain(..) {
                    let position = index.tree.size();
                    index.push(&record, offset);
                    offset += record.encoded_len() as u64;
                    let _ = done.send(Ok(position));
                }
            }
            Err(error) => {
                self.shared.last_batch_ok.store(false, Ordering::Release);
                tracing::error!(path = %self.shared.path.display(), %error, "audit log append failed; the batch was not acknowledged");
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(AuditError::Unavailable(error.to_string())));
                }
            }
        }
    }

    /// Signs and persists a checkpoint of the durable tree, if it grew.
    fn persist_checkpoint(&mut self) {
        self.persisted_at = Instant::now();
        let (size, root) = {
            let index = self.shared.lock_index();
            let size = index.tree.size();
            (
                size,
                index.tree.root(size).expect("the current size is in range"),
            )
        };
        if self.persisted_size == Some(size) {
            return;
        }
        let signed = self.shared.sign(size, root);
        match write_checkpoint(&self.dir, &signed) {
            Ok(()) => self.persisted_size = Some(size),
            Err(error) => {
                tracing::error!(dir = %self.dir.display(), %error, "cannot persist the audit checkpoint")
            }
        }
    }

    /// Writes and syncs `bytes`; on failure, cuts the file back to its last durable
    /// length so that the next batch starts on a record boundary.
    fn write_durably(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let result = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.committed_len += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                let _ = self.file.set_len(self.committed_len);
                let _ = self.file.seek(SeekFrom::Start(self.committed_len));
                let _ = self.file.sync_data();
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_hypervisor_protocol::leaf::Leaf;

    fn key() -> Arc<ServerKey> {
        Arc::new(ServerKey::from_scalar(crate::envelope::Provider::default(), &[7; 32]).unwrap())
    }

    fn open(dir: &Path) -> Result<(AuditLog, Recovery), AuditError> {
        AuditLog::open(dir, "test.example/log", key())
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
            read_records(&dir.path().join(LOG_FILE)).unwrap(),
            vec![record(1), record(2)]
        );
    }

    /// A writer on `file` over an empty log in `dir`, as `AuditLog::open` builds it
    /// but without its thread, and a handle that reads its state.
    fn writer_on(file: File, dir: &Path) -> (Writer, AuditLog, mpsc::Receiver<Command>) {
        let path = dir.join(LOG_FILE);
        std::fs::write(&path, FILE_MAGIC).unwrap();
        let shared = Arc::new(Shared {
            index: Mutex::default(),
            reader: File::open(&path).unwrap(),
            path,
            origin: "test.example/log".to_owned(),
            key: key(),
            latest: Mutex::new(None),
            last_batch_ok: AtomicBool::new(true),
        });
        let (commands, queue) = mpsc::channel(1);
        let writer = Writer {
            file,
            dir: dir.to_owned(),
            committed_len: FILE_MAGIC.len() as u64,
            shared: shared.clone(),
            persisted_size: None,
            persisted_at: Instant::now(),
        };
        (writer, AuditLog { commands, shared }, queue)
    }

    fn commit_one(writer: &mut Writer, record: LogRecord) -> Result<u64, AuditError> {
        let (done, acknowledged) = oneshot::channel();
        writer.commit(&mut vec![(record, done)], &mut Vec::new());
        acknowledged.blocking_recv().unwrap()
    }

    #[test]
    fn a_failed_write_makes_the_log_unwritable_until_a_batch_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        // Every write to /dev/full fails with ENOSPC: a full disk, not a mock.
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let (mut writer, log, _queue) = writer_on(full, dir.path());
        assert!(log.is_writable());
        assert!(matches!(
            commit_one(&mut writer, record(1)),
            Err(AuditError::Unavailable(_))
        ));
        assert!(!log.is_writable());
        assert_eq!(log.size(), 0, "nothing was acknowledged");

        // Space is back: the next batch succeeds and the log is writable again.
        let mut file = OpenOptions::new()
            .write(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        file.seek(SeekFrom::End(0)).unwrap();
        writer.file = file;
        assert_eq!(commit_one(&mut writer, record(2)).unwrap(), 0);
        assert!(log.is_writable());
        assert_eq!(
            read_records(&dir.path().join(LOG_FILE)).unwrap(),
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

    #[tokio::test]
    async fn concurrent_appends_get_distinct_indices() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for n in 0..50u8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move { log.append(record(n)).await }));
        }
        let mut indices = Vec::new();
        for task in tasks {
            indices.push(task.await.unwrap().unwrap());
        }
        indices.sort();
        assert_eq!(indices, (0..50).collect::<Vec<u64>>());
        assert_eq!(read_records(&dir.path().join(LOG_FILE)).unwrap().len(), 50);
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, _) = open(dir.path()).unwrap();
        assert!(matches!(open(dir.path()), Err(AuditError::Locked { .. })));
    }

    #[test]
    fn torn_tail_is_cut_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut bytes = FILE_MAGIC.to_vec();
        record(1).encode_into(&mut bytes);
        record(2).encode_into(&mut bytes);
        let whole = bytes.len();
        bytes.truncate(whole - 10);
        std::fs::write(&path, &bytes).unwrap();
        let (log, recovery) = open(dir.path()).unwrap();
        assert_eq!(recovery.records, 1);
        assert!(recovery.truncated_bytes > 0);
        assert_eq!(log.size(), 1);
        drop(log);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut bytes = FILE_MAGIC.to_vec();
        record(1).encode_into(&mut bytes);
        record(2).encode_into(&mut bytes);
        bytes[FILE_MAGIC.len() + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        match open(dir.path()) {
            Err(AuditError::Corrupt { offset, .. }) => assert_eq!(offset, FILE_MAGIC.len() as u64),
            other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r)),
        }
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
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path()).unwrap();
        let mut ends = Vec::new();
        for n in 1..=3 {
            log.append(record(n)).await.unwrap();
            ends.push(std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len());
        }
        log.close().await;
        let (log, recovery) = open(dir.path()).unwrap();
        assert_eq!(recovery.checkpoint_size, Some(3));
        log.close().await;

        // Dropping a whole acknowledged record leaves a valid-looking file, but not
        // the tree the checkpoint signed.
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        file.set_len(ends[1]).unwrap();
        match open(dir.path()) {
            Err(AuditError::Corrupt { problem, .. }) => {
                assert!(problem.contains("records were lost"), "{problem}")
            }
            other => panic!("expected a refusal, got {:?}", other.map(|(_, r)| r)),
        }
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
        match AuditLog::open(dir.path(), "test.example/log", other) {
            Err(AuditError::Corrupt { problem, .. }) => {
                assert!(problem.contains("signature"), "{problem}")
            }
            other => panic!("expected a refusal, got {:?}", other.map(|(_, r)| r)),
        }
    }
}
