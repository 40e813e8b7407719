//! The durable audit-log file, `audit.log` in the data directory.
//!
//! The file is a 32-byte header followed by records (see [`super::record`]), only
//! ever appended to. One writer thread owns the file: appends from all requests
//! queue on a channel, and the writer takes every queued record, writes them with
//! one `write`, calls `fdatasync` once, and only then acknowledges each with its log
//! index (group commit). An append that returns `Ok` is on disk.
//!
//! On open the whole file is checked: a partial record at the very end (a crash in
//! the middle of an append, never acknowledged) is cut off and reported; any other
//! damage stops the open with the file and byte offset. History is never rewritten.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::AuditError;
use super::record::{Decoded, LogRecord};

/// File name of the log inside the data directory.
pub const LOG_FILE: &str = "audit.log";

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
}

/// A handle on the log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    commands: mpsc::Sender<Command>,
    index: Arc<Mutex<Index>>,
    path: PathBuf,
}

enum Command {
    Append {
        record: LogRecord,
        done: oneshot::Sender<Result<u64, AuditError>>,
    },
    /// Sync, release the file and stop; appends queued before it are written first.
    Close { done: oneshot::Sender<()> },
}

/// What the process keeps of the log in memory: the leaf hash of every record (for
/// the Merkle tree) and where each execution id sits.
#[derive(Default)]
struct Index {
    leaf_hashes: Vec<[u8; 32]>,
    by_execution: HashMap<Uuid, u64>,
}

impl AuditLog {
    /// Opens (or creates) `dir/audit.log`, checks every record, cuts a torn tail,
    /// takes an exclusive lock on the file and starts the writer thread.
    pub fn open(dir: &Path) -> Result<(AuditLog, Recovery), AuditError> {
        let path = dir.join(LOG_FILE);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
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
        let scan = scan(&path, &bytes)?;
        let truncated_bytes = bytes.len() as u64 - scan.valid_len;
        if truncated_bytes > 0 {
            file.set_len(scan.valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::Start(scan.valid_len)).map_err(io)?;

        let mut index = Index::default();
        for (position, record) in scan.records.iter().enumerate() {
            index.leaf_hashes.push(record.leaf.hash());
            index
                .by_execution
                .insert(record.leaf.execution_id, position as u64);
        }
        let recovery = Recovery {
            records: scan.records.len() as u64,
            truncated_bytes,
        };
        let index = Arc::new(Mutex::new(index));
        let (commands, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            file,
            path: path.clone(),
            committed_len: scan.valid_len,
            index: index.clone(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(io)?;
        Ok((
            AuditLog {
                commands,
                index,
                path,
            },
            recovery,
        ))
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

    /// Number of durable records.
    pub fn size(&self) -> u64 {
        self.lock().leaf_hashes.len() as u64
    }

    /// The log index of an execution, if it is in the log.
    pub fn index_of(&self, execution_id: &Uuid) -> Option<u64> {
        self.lock().by_execution.get(execution_id).copied()
    }

    /// The leaf hashes of the first `n` records (all when `n` is larger).
    pub fn leaf_hashes(&self, n: usize) -> Vec<[u8; 32]> {
        let index = self.lock();
        index.leaf_hashes[..n.min(index.leaf_hashes.len())].to_vec()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // Index updates are a push and an insert; a panic cannot leave them torn.
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    loop {
        if offset == bytes.len() {
            break;
        }
        match LogRecord::decode(&bytes[offset..]) {
            Decoded::Record(record, used) => {
                records.push(record);
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
        valid_len: offset as u64,
    })
}

/// Owns the file; runs on its own thread so that `write` and `fdatasync` never
/// block an async worker.
struct Writer {
    file: File,
    path: PathBuf,
    committed_len: u64,
    index: Arc<Mutex<Index>>,
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
        match self.write_durably(buffer) {
            Ok(()) => {
                let mut index = self
                    .index
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (record, done) in batch.drain(..) {
                    let position = index.leaf_hashes.len() as u64;
                    index.leaf_hashes.push(record.leaf.hash());
                    index
                        .by_execution
                        .insert(record.leaf.execution_id, position);
                    let _ = done.send(Ok(position));
                }
            }
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "audit log append failed; the batch was not acknowledged");
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(AuditError::Unavailable(error.to_string())));
                }
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
    use super::super::record::Leaf;
    use super::*;

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
        let (log, recovery) = AuditLog::open(dir.path()).unwrap();
        assert_eq!(recovery.records, 0);
        assert_eq!(log.append(record(1)).await.unwrap(), 0);
        assert_eq!(log.append(record(2)).await.unwrap(), 1);
        log.close().await;
        assert!(matches!(
            log.append(record(3)).await,
            Err(AuditError::Unavailable(_))
        ));
        let (log, recovery) = AuditLog::open(dir.path()).unwrap();
        assert_eq!(recovery.records, 2);
        assert_eq!(log.index_of(&Uuid::from_bytes([2; 16])), Some(1));
        assert_eq!(
            read_records(&dir.path().join(LOG_FILE)).unwrap(),
            vec![record(1), record(2)]
        );
    }

    #[tokio::test]
    async fn concurrent_appends_get_distinct_indices() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path()).unwrap();
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
        let (_log, _) = AuditLog::open(dir.path()).unwrap();
        assert!(matches!(
            AuditLog::open(dir.path()),
            Err(AuditError::Locked { .. })
        ));
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
        let (log, recovery) = AuditLog::open(dir.path()).unwrap();
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
        match AuditLog::open(dir.path()) {
            Err(AuditError::Corrupt { offset, .. }) => assert_eq!(offset, FILE_MAGIC.len() as u64),
            other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r)),
        }
    }
}
