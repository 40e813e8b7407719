//! The audit log's Merkle tree: what building it at start-up costs, and what one
//! `/verify` inclusion proof or one `/log/consistency` proof costs to answer and to
//! check. Run with `cargo bench -p wasm-hypervisor-protocol --bench merkle`.

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use std::hint::black_box;
use wasm_hypervisor_protocol::merkle::{self, Hash, MerkleTree};

/// Leaves in the benchmarked log: a million executions.
const LOG_SIZE: u64 = 1_000_000;
/// The older tree of the consistency proof: half the log.
const OLD_SIZE: u64 = 500_000;
/// The leaf proven included. It lies left of 2^19, so its proof holds the ragged
/// right-edge node [2^19, 10^6), which is folded from stored nodes at request time:
/// the most hashing an inclusion proof at this size does.
const PROVEN_INDEX: u64 = 123_456;

fn tree(c: &mut Criterion) {
    let leaf_hashes: Vec<Hash> = (0..LOG_SIZE)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();

    // About a second per iteration: ten samples, each of one build.
    let mut group = c.benchmark_group(format!(
        "a tree of {LOG_SIZE} leaf hashes is built from scratch"
    ));
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("level by level", |b| {
        b.iter(|| MerkleTree::from_leaf_hashes(black_box(&leaf_hashes).iter().copied()))
    });
    group.bench_function("one push at a time", |b| {
        b.iter(|| {
            let mut tree = MerkleTree::new();
            for leaf_hash in black_box(&leaf_hashes) {
                tree.push(*leaf_hash);
            }
            tree
        })
    });
    group.finish();

    let tree = MerkleTree::from_leaf_hashes(leaf_hashes.iter().copied());
    let root = tree.root(LOG_SIZE).unwrap();
    let old_root = tree.root(OLD_SIZE).unwrap();

    c.bench_function(&format!("the root at size {LOG_SIZE} is computed"), |b| {
        b.iter(|| tree.root(black_box(LOG_SIZE)).unwrap())
    });
    c.bench_function(
        &format!("an inclusion proof at size {LOG_SIZE} is generated"),
        |b| {
            b.iter(|| {
                tree.inclusion_proof(black_box(PROVEN_INDEX), black_box(LOG_SIZE))
                    .unwrap()
            })
        },
    );
    c.bench_function(
        &format!("a consistency proof from size {OLD_SIZE} to {LOG_SIZE} is generated"),
        |b| {
            b.iter(|| {
                tree.consistency_proof(black_box(OLD_SIZE), black_box(LOG_SIZE))
                    .unwrap()
            })
        },
    );

    // Proof generation as the log grows: 10^3 .. 10^6 leaves, the proven leaf in the
    // first eighth (its proof folds the tree's ragged right edge).
    let mut group = c.benchmark_group("an inclusion proof is generated at log size");
    for size in [1_000u64, 10_000, 100_000, 1_000_000] {
        let index = size / 8 + 1;
        group.bench_function(format!("{size}"), |b| {
            b.iter(|| {
                tree.inclusion_proof(black_box(index), black_box(size))
                    .unwrap()
            })
        });
    }
    group.finish();

    let inclusion = tree.inclusion_proof(PROVEN_INDEX, LOG_SIZE).unwrap();
    let consistency = tree.consistency_proof(OLD_SIZE, LOG_SIZE).unwrap();
    c.bench_function(
        &format!("an inclusion proof at size {LOG_SIZE} is verified"),
        |b| {
            b.iter(|| {
                merkle::verify_inclusion(
                    &leaf_hashes[PROVEN_INDEX as usize],
                    PROVEN_INDEX,
                    LOG_SIZE,
                    black_box(&inclusion),
                    &root,
                )
                .unwrap()
            })
        },
    );
    c.bench_function(
        &format!("a consistency proof from size {OLD_SIZE} to {LOG_SIZE} is verified"),
        |b| {
            b.iter(|| {
                merkle::verify_consistency(
                    OLD_SIZE,
                    LOG_SIZE,
                    &old_root,
                    &root,
                    black_box(&consistency),
                )
                .unwrap()
            })
        },
    );

    println!(
        "memory_bytes() at {LOG_SIZE} leaves: {} (built level by level)",
        tree.memory_bytes()
    );
    let mut pushed = MerkleTree::new();
    for leaf_hash in &leaf_hashes {
        pushed.push(*leaf_hash);
    }
    println!(
        "memory_bytes() at {LOG_SIZE} leaves: {} (built one push at a time)",
        pushed.memory_bytes()
    );
}

criterion_group!(benches, tree);
criterion_main!(benches);
