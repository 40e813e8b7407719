//! The per-execution crypto, stage by stage, on every crypto provider side by side:
//! what every `/sessions` and `/execute` pays besides the guest, and the P-256 floor
//! those stages cannot go below. Each group is one stage; its members are the
//! providers (`aws-lc`, `rustcrypto`). Run with `cargo bench -p wasm-hypervisor-protocol --bench envelope`;
//! results in BENCHMARKS.md.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use uuid::Uuid;
use wasm_hypervisor_protocol::envelope::{self, Enc};
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::signing::SigningKey;

/// A small sealed request: a tiny module and its input.
const SMALL_REQUEST_BYTES: usize = 1 << 10;
/// A module-sized request.
const LARGE_REQUEST_BYTES: usize = 1 << 20;
/// A typical result plaintext.
const RESULT_BYTES: usize = 1 << 10;

fn crypto(c: &mut Criterion) {
    let providers = Provider::compiled_in();
    let session_id = Uuid::new_v4();

    let mut group = c.benchmark_group("a session key pair is generated");
    for provider in providers {
        group.bench_function(provider.name(), |b| {
            b.iter(|| envelope::generate_session_key(*provider).unwrap())
        });
    }
    group.finish();

    let (_, session_public) = envelope::generate_session_key(Provider::default()).unwrap();
    let session_message = envelope::session_signature_message(&session_id, &session_public);
    let mut group = c.benchmark_group("a session public key is signed");
    for provider in providers {
        let server_key = SigningKey::from_scalar(*provider, &[7; 32]).unwrap();
        group.bench_function(provider.name(), |b| {
            b.iter(|| server_key.sign(black_box(&session_message)).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("a session signature is verified (client)");
    for provider in providers {
        let server_key = SigningKey::from_scalar(*provider, &[7; 32]).unwrap();
        let signature = server_key.sign(&session_message).unwrap();
        group.bench_function(provider.name(), |b| {
            b.iter(|| {
                server_key
                    .public()
                    .verify(black_box(&session_message), &signature)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("a 1 KiB request is sealed (client)");
    let plaintext = vec![0x5a; SMALL_REQUEST_BYTES];
    for provider in providers {
        group.bench_function(provider.name(), |b| {
            b.iter(|| envelope::seal_request(*provider, &session_public, &session_id, &plaintext))
        });
    }
    group.finish();

    for size in [SMALL_REQUEST_BYTES, LARGE_REQUEST_BYTES] {
        let mut group = c.benchmark_group(format!(
            "a sealed {} KiB request is opened (ECDH, key schedule, AES-GCM, exports)",
            size >> 10
        ));
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        if size == LARGE_REQUEST_BYTES {
            group.sample_size(20);
        }
        for provider in providers {
            let provider = *provider;
            group.bench_function(provider.name(), |b| {
                b.iter_batched(
                    || {
                        let (secret, public) = envelope::generate_session_key(provider).unwrap();
                        let sealed =
                            envelope::seal_request(provider, &public, &session_id, &plaintext)
                                .unwrap();
                        let enc = Enc::parse(provider, &sealed.enc).unwrap();
                        (secret, enc, sealed.ciphertext)
                    },
                    |(secret, enc, ciphertext)| {
                        envelope::open_request(secret, &session_id, &enc, ciphertext).unwrap()
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }

    let result = vec![0x33; RESULT_BYTES];
    let request = vec![0x5a; SMALL_REQUEST_BYTES];
    let opened: Vec<_> = providers
        .iter()
        .map(|provider| {
            let (secret, public) = envelope::generate_session_key(*provider).unwrap();
            let sealed = envelope::seal_request(*provider, &public, &session_id, b"{}").unwrap();
            let enc = Enc::parse(*provider, &sealed.enc).unwrap();
            envelope::open_request(secret, &session_id, &enc, sealed.ciphertext).unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("a 1 KiB result is sealed (AES-256-GCM)");
    for (provider, opened) in providers.iter().zip(&opened) {
        group.bench_function(provider.name(), |b| {
            b.iter(|| opened.keys.seal_result(&session_id, black_box(&result)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("the commitment to a 1 KiB request and result is computed");
    for (provider, opened) in providers.iter().zip(&opened) {
        group.bench_function(provider.name(), |b| {
            b.iter(|| {
                opened
                    .keys
                    .commitment(black_box(&request), black_box(&result))
            })
        });
    }
    group.finish();

    let leaf = Leaf {
        execution_id: session_id,
        timestamp_ms: 1_795_000_000_000,
        commitment: [0x11; 32],
    };
    let mut group = c.benchmark_group("an audit leaf is signed");
    for provider in providers {
        let server_key = SigningKey::from_scalar(*provider, &[7; 32]).unwrap();
        group.bench_function(provider.name(), |b| {
            b.iter(|| server_key.sign(black_box(&leaf.to_bytes())).unwrap())
        });
    }
    group.finish();

    // The floor: the P-256 work an execution cannot avoid (one key generation, one
    // ECDH, two signatures) through the provider interface with nothing of the
    // protocol around it; the counterpart of `openssl speed ecdhp256 ecdsap256`.
    let (_, client_public) = envelope::generate_session_key(Provider::default()).unwrap();
    let mut group = c.benchmark_group(
        "P-256 floor (the provider alone): one key generation, one ECDH, two signatures",
    );
    for provider in providers {
        let signer = provider.generate_signing_key().unwrap();
        group.bench_function(provider.name(), |b| {
            b.iter(|| {
                let secret = provider.generate_ecdh_key().unwrap();
                let shared = secret.diffie_hellman(black_box(&client_public)).unwrap();
                let s1 = signer.sign(secret.public_key()).unwrap();
                let s2 = signer.sign(&shared[..]).unwrap();
                (s1, s2)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, crypto);
criterion_main!(benches);
