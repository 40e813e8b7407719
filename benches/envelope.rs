//! The per-execution crypto: what every `/sessions` and `/execute` pays besides the
//! guest, stage by stage, and the P-256 floor those stages cannot go below. Run
//! with `cargo bench --bench envelope`; results in BENCHMARKS.md.

use aws_lc_rs::agreement;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use uuid::Uuid;
use wasm_hypervisor::audit::Leaf;
use wasm_hypervisor::envelope::{self, Enc};
use wasm_hypervisor::keys::ServerKey;

/// A small sealed request: a tiny module and its input.
const SMALL_REQUEST_BYTES: usize = 1 << 10;
/// A module-sized request.
const LARGE_REQUEST_BYTES: usize = 1 << 20;
/// A typical result plaintext.
const RESULT_BYTES: usize = 1 << 10;

fn crypto(c: &mut Criterion) {
    let server_key = ServerKey::from_scalar(&[7; 32]).unwrap();
    let session_id = Uuid::new_v4();

    c.bench_function("a session key pair is generated", |b| {
        b.iter(envelope::generate_session_key)
    });
    let (_, session_public) = envelope::generate_session_key();
    let session_message = envelope::session_signature_message(&session_id, &session_public);
    c.bench_function("a session public key is signed", |b| {
        b.iter(|| server_key.sign(black_box(&session_message)))
    });

    let mut group =
        c.benchmark_group("a sealed request is opened (ECDH, key schedule, AES-GCM, exports)");
    for size in [SMALL_REQUEST_BYTES, LARGE_REQUEST_BYTES] {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        if size == LARGE_REQUEST_BYTES {
            group.sample_size(20);
        }
        group.bench_function(format!("{size} bytes"), |b| {
            b.iter_batched(
                || {
                    let (secret, public) = envelope::generate_session_key();
                    let sealed = envelope::seal_request(&public, &session_id, &plaintext).unwrap();
                    (secret, Enc::parse(&sealed.enc).unwrap(), sealed.ciphertext)
                },
                |(secret, enc, ciphertext)| {
                    envelope::open_request(secret, &session_id, &enc, ciphertext).unwrap()
                },
                BatchSize::LargeInput,
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
        sealed.ciphertext,
    )
    .unwrap();
    let result = vec![0x33; RESULT_BYTES];
    c.bench_function("a 1 KiB result is sealed", |b| {
        b.iter(|| opened.keys.seal_result(&session_id, black_box(&result)))
    });
    let request = vec![0x5a; SMALL_REQUEST_BYTES];
    c.bench_function(
        "the commitment to a 1 KiB request and result is computed",
        |b| {
            b.iter(|| {
                opened
                    .keys
                    .commitment(black_box(&request), black_box(&result))
            })
        },
    );
    let leaf = Leaf {
        execution_id: session_id,
        timestamp_ms: 1_795_000_000_000,
        commitment: [0x11; 32],
    };
    c.bench_function("an audit leaf is signed", |b| {
        b.iter(|| server_key.sign(black_box(&leaf.to_bytes())))
    });

    // The floor: the P-256 work an execution cannot avoid (one key generation, one
    // ECDH, two signatures) straight from AWS-LC, with nothing of ours around it;
    // the counterpart of `openssl speed ecdhp256 ecdsap256`.
    let (_, client_public) = envelope::generate_session_key();
    let signer = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let rng = SystemRandom::new();
    c.bench_function(
        "P-256 floor (AWS-LC alone): one key generation, one ECDH, two signatures",
        |b| {
            b.iter(|| {
                let secret = agreement::PrivateKey::generate(&agreement::ECDH_P256).unwrap();
                let public = secret.compute_public_key().unwrap();
                let peer = agreement::UnparsedPublicKey::new(
                    &agreement::ECDH_P256,
                    black_box(&client_public),
                );
                let shared: [u8; 32] =
                    agreement::agree(&secret, peer, (), |x| Ok(x.try_into().unwrap())).unwrap();
                let s1 = signer.sign(&rng, public.as_ref()).unwrap();
                let s2 = signer.sign(&rng, &shared).unwrap();
                (s1, s2)
            })
        },
    );
}

criterion_group!(benches, crypto);
criterion_main!(benches);
