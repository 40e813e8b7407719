//! The file log as a whole: appends and their acknowledgement, the writer's
//! batches, and crash recovery on real files with real syncs.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::recovery::{is_later, read_records, scan};
use super::writer::{Persisted, Writer};
use super::*;
use crate::audit::record::BatchMark;
use crate::audit::{AuditLog, checkpoint_file};
use wasm_hypervisor_protocol::checkpoint::Checkpoint;
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::merkle::MerkleTree;

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
fn crash_during_batch(dir: &Path, batch: &[LogRecord], damage: impl FnOnce(&mut Vec<u8>)) -> u64 {
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
    let (log, _) = FileLog::open_with_chunk(dir.path(), "test.example/log", key(), chunk).unwrap();
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
    let header = FILE_MAGIC.len() as u64;
    let writer = Writer::new(file, header, header, 4096, 0);
    let log = FileLog {
        _owner: Arc::new(Owner(shared.clone())),
        shared,
    };
    (writer, log)
}

fn commit_one(writer: &mut Writer, log: &FileLog, record: LogRecord) -> Result<u64, AuditError> {
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
    let last = crate::audit::record::BATCH_MODULUS - 1;
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
    checkpoint_file::write(
        dir.path(),
        CHECKPOINT_FILE,
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
    let other =
        Arc::new(ServerKey::from_scalar(crate::envelope::Provider::default(), &[8; 32]).unwrap());
    match FileLog::open(dir.path(), "test.example/log", other) {
        Err(AuditError::Corrupt { problem, .. }) => {
            assert!(problem.contains("signature"), "{problem}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|(_, r)| r)),
    }
}

#[tokio::test]
async fn entries_of_a_range_are_the_logged_leaves_in_order_and_a_range_past_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path()).unwrap();
    for n in 1..=6 {
        log.append(record(n)).await.unwrap();
    }
    let leaves = |range: std::ops::RangeInclusive<u8>| -> Vec<Leaf> {
        records(range).into_iter().map(|r| r.leaf).collect()
    };
    assert_eq!(log.entries(0..6).unwrap(), leaves(1..=6));
    assert_eq!(log.entries(2..4).unwrap(), leaves(3..=4));
    assert_eq!(log.entries(6..6).unwrap(), vec![]);
    assert!(matches!(
        log.entries(4..7),
        Err(AuditError::BeyondTree { size: 6, .. })
    ));
    // Through the interface the rest of the server holds, as the tiles will read them.
    let handle = AuditLog::new(log.clone());
    assert_eq!(handle.entries(1..3).await.unwrap(), leaves(2..=3));
    assert_eq!(
        handle.perfect_subtree(1, 0),
        Some(wasm_hypervisor_protocol::merkle::node_hash(
            &leaves(1..=1)[0].hash(),
            &leaves(2..=2)[0].hash()
        ))
    );
    assert_eq!(
        handle.perfect_subtree(1, 3),
        None,
        "leaves 6 and 7: not whole"
    );
    log.close().await;
}
