//! The sandbox's per-execution costs: compiling a real ~1 MB module cold and
//! finding it warm in the cache, and instantiating and running a cached module
//! (and the same C program as a component) from the pool. Run with `cargo bench --bench sandbox`; results in BENCHMARKS.md.

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
/// The same program wrapped as a `wasi:cli/run` component (64 KB): the guest of
/// issue 30's component rows.
const HELLO_COMPONENT: &[u8] = include_bytes!("../examples/hello.component.wasm");

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

    let runs = [
        (
            TINY,
            "a tiny WASI command is instantiated from the pool, run and dropped",
        ),
        (
            HELLO,
            "a cached C program is instantiated from the pool and run to exit",
        ),
        (
            HELLO_COMPONENT,
            "the same C program as a component is instantiated and run to exit",
        ),
    ];
    for (bytes, name) in runs {
        let target = runtime
            .block_on(sandbox.prepare(sha256(bytes), bytes))
            .value
            .unwrap();
        c.bench_function(name, |b| {
            b.iter(|| {
                let report = runtime.block_on(sandbox.run(
                    target.clone(),
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
        });
    }
}

criterion_group!(benches, sandbox);
criterion_main!(benches);
