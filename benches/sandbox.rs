//! The sandbox's per-execution costs: compiling a real ~1 MB module cold and
//! finding it warm in the cache, and instantiating and running a cached module
//! from the pool. Run with `cargo bench --bench sandbox`; results in BENCHMARKS.md.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use wasm_hypervisor_server::envelope::sha256;
use wasm_hypervisor_server::sandbox::compiler::CompilerSettings;
use wasm_hypervisor_server::sandbox::{
    Entry, GuestInput, GuestLimits, GuestOutcome, Sandbox, SandboxSettings,
};

/// SQLite 3.54.1 built by Emscripten: 879,084 bytes (see benches/fixtures/README.md).
const SQLITE: &[u8] = include_bytes!("fixtures/sqlite3.wasm");
/// examples/tiny.wat: a 153-byte WASI command that writes `hello`.
const TINY: &[u8] = include_bytes!("../examples/tiny.wasm");
/// The C example from examples/hello.c (33 KB, wasi-libc).
const HELLO: &[u8] = include_bytes!("../examples/hello.wasm");

fn limits() -> GuestLimits {
    GuestLimits {
        fuel: 1_000_000_000,
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(10),
        max_output_bytes: 1 << 20,
        files_bytes: 0,
        max_mount_entries: 0,
    }
}

fn sandbox(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sandbox = Sandbox::new(SandboxSettings {
        max_concurrent: 100,
        module_cache_bytes: 256 << 20,
        guest_threads: 2,
        compiler: CompilerSettings {
            program: env!("CARGO_BIN_EXE_wasm-hypervisor").into(),
            slots: 1,
            cpu: std::time::Duration::from_secs(300),
            memory_bytes: 4 << 30,
        },
    })
    .unwrap();
    let sqlite: &[u8] = SQLITE;

    let mut group = c.benchmark_group("the 879 KB SQLite module");
    group.sample_size(10);
    let mut n = 0u64;
    group.bench_function("is compiled cold (cache miss) in a worker process", |b| {
        b.iter(|| {
            // A key never used before forces a compilation of the same bytes.
            n += 1;
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&n.to_be_bytes());
            let lookup = runtime.block_on(sandbox.prepare(key, sqlite));
            assert!(!lookup.hit && lookup.value.is_ok());
        })
    });
    group.finish();
    let key = sha256(SQLITE);
    runtime.block_on(sandbox.prepare(key, sqlite));
    c.bench_function("the 879 KB SQLite module is found warm in the cache", |b| {
        b.iter(|| {
            assert!(matches!(sandbox.lookup(&key), Some(Ok(_))));
        })
    });

    let tiny = runtime
        .block_on(sandbox.prepare(sha256(TINY), TINY))
        .value
        .unwrap();
    c.bench_function(
        "a tiny WASI command is instantiated from the pool, run and dropped",
        |b| {
            b.iter(|| {
                let report = runtime.block_on(sandbox.run(
                    tiny.clone(),
                    Entry::Command,
                    GuestInput::default(),
                    Vec::new(),
                    limits(),
                ));
                assert!(
                    matches!(report.outcome, GuestOutcome::Exited(0)),
                    "{:?}",
                    report.outcome
                );
            })
        },
    );

    let hello_key = sha256(HELLO);
    let hello = runtime
        .block_on(sandbox.prepare(hello_key, HELLO))
        .value
        .unwrap();
    c.bench_function(
        "a cached C program is instantiated from the pool and run to exit",
        |b| {
            b.iter(|| {
                let report = runtime.block_on(sandbox.run(
                    hello.clone(),
                    Entry::Command,
                    GuestInput::default(),
                    Vec::new(),
                    limits(),
                ));
                assert!(
                    matches!(report.outcome, GuestOutcome::Exited(0)),
                    "{:?}",
                    report.outcome
                );
            })
        },
    );
}

criterion_group!(benches, sandbox);
criterion_main!(benches);
