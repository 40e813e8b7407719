//! The per-execution crypto: what every `/sessions` and `/execute` pays besides the
//! guest. Run with `cargo bench --bench envelope`; results in BENCHMARKS.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use uuid::Uuid;
use wasm_hypervisor::envelope::{self, Enc};
use wasm_hypervisor::keys::ServerKey;

/// A typical sealed request: a 1 KiB plaintext (a tiny module and its input).
const REQUEST_BYTES: usize = 1024;
/// A module-sized request: 64 KiB.
const LARGE_REQUEST_BYTES: usize = 64 << 10;

fn crypto(c: &mut Criterion) {
    let server_key = ServerKey::from_scalar(&[7; 32]).unwrap();
    let session_id = Uuid::new_v4();

    c.bench_function("a session key pair is generated", |b| {
        b.iter(envelope::generate_session_key)
    });
    c.bench_function("a message is signed with the server key", |b| {
        b.iter(|| server_key.sign(black_box(&[0x42; 57])))
    });

    let mut group = c.benchmark_group("a sealed request is opened");
    for size in [REQUEST_BYTES, LARGE_REQUEST_BYTES] {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size} bytes"), |b| {
            b.iter_batched(
                || {
                    let (secret, public) = envelope::generate_session_key();
                    let sealed = envelope::seal_request(&public, &session_id, &plaintext).unwrap();
                    (secret, Enc::parse(&sealed.enc).unwrap(), sealed.ciphertext)
                },
                |(secret, enc, ciphertext)| {
                    envelope::open_request(secret, &session_id, &enc, &ciphertext).unwrap()
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    let (secret, public) = envelope::generate_session_key();
    let sealed = envelope::seal_request(&public, &session_id, b"{}").unwrap();
    let opened = envelope::open_request(
        secret,
        &session_id,
        &Enc::parse(&sealed.enc).unwrap(),
        &sealed.ciphertext,
    )
    .unwrap();
    let result = vec![0x33; REQUEST_BYTES];
    c.bench_function("a 1 KiB result is sealed and committed to", |b| {
        b.iter(|| {
            let ct = opened.keys.seal_result(&session_id, black_box(&result));
            let commitment = opened.keys.commitment(b"{}", &result);
            (ct, commitment)
        })
    });
}

criterion_group!(benches, crypto);
criterion_main!(benches);
