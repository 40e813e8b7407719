//! Opening the file log: reading it whole, telling a torn final batch from
//! damage, converting a v1 file, and checking the tree against the persisted
//! checkpoint; and reading a log no server holds (`log import`, verification).
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
//!   [`Recovery::torn_bytes`](super::Recovery::torn_bytes) says how much was zeroed.
//! - **Damage**: anything else (a flipped byte inside the acknowledged log, a record
//!   that fails its checksum followed by a record of a later batch or by more data
//!   than one batch) stops the open with the file, the byte offset and the record
//!   number. Nothing is repaired.
//!
//! A flipped byte in the final batch is indistinguishable from a torn write: it is
//! zeroed like one. If that batch had been acknowledged, the checkpoint check below
//! refuses the open once the checkpoint covers it ("records were lost"); a record
//! appended less than [`CHECKPOINT_INTERVAL`](super::super::checkpoint_file::CHECKPOINT_INTERVAL) before such damage is lost silently
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

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::super::AuditError;
use super::super::checkpoint_file::{self, NotContained};
use super::super::record::{BATCH_MODULUS, BatchMark, Decoded, LogRecord, Version};
use super::super::tree::LeafIndex;
use super::writer::{self, MAX_BATCH_BYTES};
use super::{CHECKPOINT_FILE, Index, LOG_FILE, Recovery};
use crate::keys::{PublicKey, ServerKey};
use wasm_hypervisor_protocol::checkpoint::SignedCheckpoint;
use wasm_hypervisor_protocol::merkle::MerkleTree;

/// First bytes of every log file this release writes: names the format and version.
pub const FILE_MAGIC: &[u8; 32] = b"wasm-hypervisor audit log v2\n\0\0\0";
/// First bytes of a log file of earlier releases, converted at open.
pub const FILE_MAGIC_V1: &[u8; 32] = b"wasm-hypervisor audit log v1\n\0\0\0";

/// What opening the file found and made of it: the file, ready for the writer.
pub(super) struct Recovered {
    /// The log file, opened for writing and locked.
    pub(super) file: File,
    /// A read-only handle for reading records back.
    pub(super) reader: File,
    pub(super) index: Index,
    /// Where the log ends: the next batch is written here.
    pub(super) end: u64,
    /// The file's length: zeros from `end` on.
    pub(super) allocated: u64,
    /// The number of the writer's next batch.
    pub(super) next_batch: u16,
    pub(super) recovery: Recovery,
}

/// Opens (or creates) `dir/audit.log` locked, checks every record and the tree
/// against the persisted checkpoint, and only then repairs the file: zeroes a torn
/// final batch or converts a v1 file.
pub(super) fn recover(
    dir: &Path,
    origin: &str,
    key: &ServerKey,
    chunk: u64,
) -> Result<Recovered, AuditError> {
    let path = dir.join(LOG_FILE);
    let (file, bytes) = open_locked(dir, &path, chunk)?;
    let stored = read_checkpoint(dir, key.public())?;
    let scan = scan(&path, &bytes)?;
    let mut index = Index::default();
    for (record, offset) in scan.records.iter().zip(&scan.offsets) {
        index.push(record, *offset);
    }
    if let Some(stored) = &stored {
        check_against_checkpoint(dir, &path, &index.leaves.tree, stored, origin)?;
    }
    // Only now, with the history checked, is the file touched.
    let (file, allocated, next_batch) = repair(dir, &path, file, &scan, bytes.len() as u64, chunk)?;
    let io = |source| AuditError::Io {
        path: path.clone(),
        source,
    };
    // Also makes durable zeros that a crash interrupted before their `fsync`.
    file.sync_all().map_err(io)?;
    let reader = File::open(&path).map_err(io)?;
    let recovery = Recovery {
        records: index.leaves.size(),
        torn_bytes: scan.torn_end - scan.end,
        checkpoint_size: stored.map(|s| s.checkpoint.tree_size),
        converted_from_v1: scan.version == Version::V1,
    };
    Ok(Recovered {
        file,
        reader,
        index,
        end: scan.end,
        allocated,
        next_batch,
        recovery,
    })
}

/// Opens `path` for writing (owner-only, like everything in the data directory),
/// takes its lock and reads it whole. A new file, or one whose creation a crash
/// interrupted before its first sync (nothing was ever appended to it), is
/// written as a header and a chunk of zeros first.
fn open_locked(dir: &Path, path: &Path, chunk: u64) -> Result<(File, Vec<u8>), AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    lock_exclusively(&file, path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    if bytes.iter().all(|&b| b == 0) {
        bytes.clear();
        bytes.extend_from_slice(FILE_MAGIC);
        bytes.resize(FILE_MAGIC.len() + chunk as usize, 0);
        writer::write_in_pieces(&file, &bytes, 0).map_err(io)?;
        file.sync_all().map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok((file, bytes))
}

/// Makes the checked file one the writer can append to: a v1 file converted, or
/// a torn final batch zeroed. Returns the file, its length and the next batch's
/// number.
fn repair(
    dir: &Path,
    path: &Path,
    file: File,
    scan: &Scan,
    len: u64,
    chunk: u64,
) -> Result<(File, u64, u16), AuditError> {
    if scan.version == Version::V1 {
        let (converted, allocated) = convert_v1(dir, path, &scan.records, chunk)?;
        // The old file, replaced, is released only now that the new one is held.
        drop(file);
        return Ok((converted, allocated, BatchMark::next_batch(0)));
    }
    let torn_bytes = scan.torn_end - scan.end;
    if torn_bytes > 0 {
        let zeros = vec![0; torn_bytes as usize];
        file.write_all_at(&zeros, scan.end)
            .map_err(|source| AuditError::Io {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok((file, len, scan.next_batch))
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
pub(crate) fn read_records(path: &Path) -> Result<Vec<LogRecord>, AuditError> {
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
pub(crate) type RawRecord = (LogRecord, Vec<u8>);

/// A file log that is not in use, read whole for copying elsewhere (`log
/// import`): the file opened read-only and locked (refused while a server holds
/// it), every record checked (a torn tail is an error here), and the tree
/// checked against the persisted checkpoint. Each record comes with its bytes as
/// the file stores them. The lock is held as long as the returned file is.
pub(crate) fn read_unused(
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
    if let Some(stored) = read_checkpoint(dir, key.public())? {
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

/// A stopped file log, read and checked whole by [`verify_stopped_log`].
#[derive(Debug, Clone)]
pub struct StoppedLog {
    /// Every record, in log order.
    pub records: Vec<LogRecord>,
    /// The persisted checkpoint, if there is one (a cleanly stopped server leaves
    /// one that covers every record).
    pub checkpoint: Option<SignedCheckpoint>,
}

/// Re-verifies the file log in `data_dir` from scratch, without opening it for
/// writing: for tests and tools that check a log a server left. Every record's
/// framing and checksum (a torn tail is an error here), every leaf's signature
/// under `key`, execution ids unique, and the persisted checkpoint's signature
/// under `key` and its root over the records it covers.
pub fn verify_stopped_log(data_dir: &Path, key: &PublicKey) -> Result<StoppedLog, AuditError> {
    let path = data_dir.join(LOG_FILE);
    let records = read_records(&path)?;
    let corrupt = |index: usize, problem: &str| AuditError::Corrupt {
        path: path.clone(),
        offset: 0,
        problem: format!("record {index}: {problem}"),
    };
    let mut ids = HashSet::with_capacity(records.len());
    let mut leaves = LeafIndex::default();
    for (index, record) in records.iter().enumerate() {
        key.verify(&record.leaf.to_bytes(), &record.signature)
            .map_err(|_| corrupt(index, "the leaf's signature does not verify under this key"))?;
        if !ids.insert(record.leaf.execution_id) {
            return Err(corrupt(index, "its execution id is logged twice"));
        }
        leaves.push(&record.leaf);
    }
    let checkpoint = read_checkpoint(data_dir, key)?;
    if let Some(stored) = &checkpoint {
        let origin = stored.checkpoint.origin.clone();
        check_against_checkpoint(data_dir, &path, &leaves.tree, stored, &origin)?;
    }
    Ok(StoppedLog {
        records,
        checkpoint,
    })
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
    writer::write_in_pieces(&file, &bytes, 0).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok((file, bytes.len() as u64))
}

/// What reading a log file found.
pub(super) struct Scan {
    pub(super) version: Version,
    pub(super) records: Vec<LogRecord>,
    /// File offset of each record.
    pub(super) offsets: Vec<u64>,
    /// Where the log ends: the header plus the valid records.
    pub(super) end: u64,
    /// Where the bytes of a torn final batch end (`end` when there are none): from
    /// `end` to here is zeroed (v2) or cut (v1) at open.
    pub(super) torn_end: u64,
    /// The number of the writer's next batch.
    pub(super) next_batch: u16,
}

pub(super) fn scan(path: &Path, bytes: &[u8]) -> Result<Scan, AuditError> {
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
    match damage {
        None => Ok(scan),
        Some(problem) => {
            torn_batch_or_damage(path, bytes, scan, &problem, content_end, batch_start)
        }
    }
}

/// The v2 scan stopped at `problem` (at `scan.end`): a torn final batch if
/// everything after it can be the rest of one unfinished batch begun at
/// `batch_start` (the scan, its torn bytes ending at `content_end`), damage
/// otherwise (module doc, "Recovery").
fn torn_batch_or_damage(
    path: &Path,
    bytes: &[u8],
    scan: Scan,
    problem: &str,
    content_end: usize,
    batch_start: usize,
) -> Result<Scan, AuditError> {
    let offset = scan.end as usize;
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
                if is_later(mark.batch, scan.next_batch) {
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
pub(super) fn is_later(batch: u16, than: u16) -> bool {
    let ahead = batch.wrapping_sub(than) % BATCH_MODULUS;
    (1..BATCH_MODULUS / 2).contains(&ahead)
}

/// Reads and checks `dir/checkpoint`, if there is one.
fn read_checkpoint(dir: &Path, key: &PublicKey) -> Result<Option<SignedCheckpoint>, AuditError> {
    checkpoint_file::read(&dir.join(CHECKPOINT_FILE), key)
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
    let (path, problem) = match checkpoint_file::check_contained(tree, stored, origin) {
        Ok(()) => return Ok(()),
        Err(NotContained::Origin { checkpoint }) => (
            path,
            format!(
                "the checkpoint names the log `{checkpoint}` but the configured origin is `{origin}`"
            ),
        ),
        Err(NotContained::Smaller { size, covered }) => (
            log_path.to_owned(),
            format!(
                "the log holds {size} records but its signed checkpoint covers {covered}: records were lost"
            ),
        ),
        Err(NotContained::OtherRoot { covered }) => (
            log_path.to_owned(),
            format!(
                "the first {covered} records do not hash to the root of the signed checkpoint in {}",
                path.display()
            ),
        ),
    };
    Err(AuditError::Corrupt {
        path,
        offset: 0,
        problem,
    })
}
