//! The audit log at scale: start-up (open, checksum and rebuild the tree), proof
//! serving and memory with a million records. Run with
//! `cargo bench --bench audit_log`; results in BENCHMARKS.md.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_server::audit::file::{FILE_MAGIC, LOG_FILE, SEGMENT_CHUNK};
use wasm_hypervisor_server::audit::record::{BATCH_MODULUS, BatchMark};
use wasm_hypervisor_server::audit::{FileLog, LogRecord};
use wasm_hypervisor_server::envelope::Provider;
use wasm_hypervisor_server::keys::ServerKey;

/// Records in the benchmark log.
const RECORDS: u64 = 1_000_000;

fn execution_id(n: u64) -> Uuid {
    Uuid::from_u64_pair(n, !n)
}

/// The `n`th benchmark record: a distinct id, timestamp and commitment, and one
/// real signature reused (neither start-up nor appends verify signatures).
fn record(n: u64, signature: &[u8]) -> LogRecord {
    LogRecord {
        leaf: Leaf {
            execution_id: execution_id(n),
            timestamp_ms: 1_795_000_000_000 + n,
            commitment: [(n % 251) as u8; 32],
        },
        signature: signature.to_vec(),
    }
}

/// Writes a log of `RECORDS` records straight to disk (start-up does not verify
/// signatures, so one real signature is reused for every record).
fn write_log(dir: &std::path::Path, key: &ServerKey) {
    let signature = key.sign(b"benchmark");
    let mut bytes = FILE_MAGIC.to_vec();
    for n in 0..RECORDS {
        // One batch per record, as appends one at a time would write them.
        let mark = BatchMark {
            batch: (n % u64::from(BATCH_MODULUS)) as u16,
            last: true,
        };
        record(n, &signature).encode_into(mark, &mut bytes);
    }
    // The preallocated zeros of a live log.
    bytes.resize(bytes.len() + SEGMENT_CHUNK as usize, 0);
    std::fs::File::create(dir.join(LOG_FILE))
        .unwrap()
        .write_all(&bytes)
        .unwrap();
}

fn audit_log(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(ServerKey::from_scalar(Provider::default(), &[7; 32]).unwrap());
    let started = Instant::now();
    write_log(dir.path(), &key);
    let size = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    eprintln!(
        "wrote {RECORDS} records ({size} bytes) in {:?}",
        started.elapsed()
    );

    appends(c, &runtime, &key);

    let mut group = c.benchmark_group("a log of 1,000,000 records");
    group.sample_size(10);
    group.bench_function("is opened, checked and indexed at start-up", |b| {
        b.iter(|| {
            let (log, recovery) = FileLog::open(dir.path(), "bench/log", key.clone()).unwrap();
            assert_eq!(recovery.records, RECORDS);
            runtime.block_on(log.close());
        })
    });
    let (log, _) = FileLog::open(dir.path(), "bench/log", key.clone()).unwrap();
    eprintln!(
        "in-memory index at {RECORDS} records: {} bytes",
        log.memory_bytes()
    );
    group.finish();

    let mut group = c.benchmark_group("from a log of 1,000,000 records");
    let mut n = 0u64;
    group.bench_function("an execution's leaf and inclusion proof are served", |b| {
        b.iter(|| {
            n = (n + 7919) % RECORDS;
            log.inclusion(&execution_id(n)).unwrap().unwrap()
        })
    });
    group.bench_function("a consistency proof from 500,000 is served", |b| {
        b.iter(|| log.consistency(RECORDS / 2, RECORDS).unwrap())
    });
    group.finish();
    runtime.block_on(log.close());
}

/// Leaves appended together in the batched benchmark: what a busy server's
/// concurrent executions hand the writer between two syncs.
const BATCH: usize = 256;

/// Durable appends (write + fdatasync) to a fresh log: one at a time, each waiting
/// for its own sync, and `BATCH` at once, which the writer commits with one sync.
fn appends(c: &mut Criterion, runtime: &tokio::runtime::Runtime, key: &Arc<ServerKey>) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = FileLog::open(dir.path(), "bench/appends", key.clone()).unwrap();
    let log = Arc::new(log);
    let signature = key.sign(b"benchmark");
    let mut n = 0u64;
    let mut next_record = move || {
        n += 1;
        record(n, &signature)
    };
    let mut group = c.benchmark_group("durable appends to the audit log");
    group.throughput(criterion::Throughput::Elements(1));
    group.bench_function("one at a time (one fdatasync each)", |b| {
        b.iter(|| runtime.block_on(log.append(next_record())).unwrap())
    });
    group.throughput(criterion::Throughput::Elements(BATCH as u64));
    group.bench_function(format!("{BATCH} at once (group commit)"), |b| {
        b.iter(|| {
            let appends: Vec<_> = (0..BATCH)
                .map(|_| {
                    let (log, record) = (log.clone(), next_record());
                    runtime.spawn(async move { log.append(record).await })
                })
                .collect();
            runtime.block_on(async {
                for append in appends {
                    append.await.unwrap().unwrap();
                }
            })
        })
    });
    group.finish();
    runtime.block_on(log.close());
}

criterion_group!(benches, audit_log);
criterion_main!(benches);
