//! A request plaintext carrying a 64 KiB module, read the two ways the server
//! reads it: JSON (v1: the document, then the module's base64) and CBOR (v1.1 §C:
//! the module borrowed from the plaintext). Run with `cargo bench -p
//! wasm-hypervisor-protocol --bench plaintext`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wasm_hypervisor_protocol::encoding::{decode_base64, encode_base64};
use wasm_hypervisor_protocol::payload::ExecutionRequest;
use wasm_hypervisor_protocol::plaintext;

/// The module's size: about a small Rust WASI program's.
const MODULE_BYTES: usize = 64 << 10;

fn decode(c: &mut Criterion) {
    let module: Vec<u8> = (0..MODULE_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let request = ExecutionRequest {
        module: Some(encode_base64(&module)),
        args: vec!["--flag".into(), "input".into()],
        ..Default::default()
    };
    let json = serde_json::to_vec(&request).unwrap();
    let cbor = plaintext::encode_request(&request).unwrap();

    let mut group = c.benchmark_group("a request plaintext with a 64 KiB module is read");
    group.throughput(Throughput::Bytes(MODULE_BYTES as u64));
    group.bench_function("from JSON, its module from base64", |b| {
        b.iter(|| {
            let request: ExecutionRequest = serde_json::from_slice(black_box(&json)).unwrap();
            decode_base64(request.module.as_deref().unwrap()).unwrap()
        })
    });
    group.bench_function("from CBOR, its module borrowed", |b| {
        b.iter(|| {
            let (_, bytes) = plaintext::decode_request(black_box(&cbor)).unwrap();
            bytes.module.unwrap().len()
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
