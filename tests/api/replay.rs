//! Reproducible executions (protocol v1.2 §R) and the fuel cost table (§U):
//! a guest that reads both clocks, draws random bytes and computes with NaNs
//! gives the same bytes and fuel in two deterministic runs, and not in a normal
//! one; the timeout of a deterministic run is a fuel bound; the table and the
//! deterministic engine are published with their hashes.

use wasm_hypervisor_protocol::digest::sha256;
use wasm_hypervisor_protocol::encoding::Hex;
use wasm_hypervisor_protocol::payload::{ExecutionRequest, ExecutionResult, Status};
use wasm_hypervisor_protocol::plaintext;
use wasm_hypervisor_protocol::wire::FuelCostsResponse;

use crate::helpers::{TestApp, fixture, limits, request};

fn deterministic(module: &[u8], seed: Option<[u8; 32]>) -> ExecutionRequest {
    ExecutionRequest {
        deterministic: true,
        seed: seed.map(Hex),
        ..request(module)
    }
}

/// The fixture's output, split: realtime, monotonic, random, f32 NaN, f64 NaN.
fn fields(result: &ExecutionResult) -> (u64, u64, Vec<u8>, u32, u64) {
    let out = result.stdout_bytes();
    assert_eq!(out.len(), 60, "{result:?}");
    let u64_at = |at: usize| u64::from_le_bytes(out[at..at + 8].try_into().unwrap());
    (
        u64_at(0),
        u64_at(8),
        out[16..48].to_vec(),
        u32::from_le_bytes(out[48..52].try_into().unwrap()),
        u64_at(52),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_deterministic_runs_agree_to_the_byte_and_a_normal_run_does_not() {
    let app = TestApp::spawn().await;
    let module = fixture("reproducible");
    let published: FuelCostsResponse = app.get_json("/fuel-costs").await;

    let first = app.execute(&deterministic(&module, None)).await.result;
    // The same request again, in CBOR this time: the format changes nothing.
    let cbor = plaintext::encode_request(&deterministic(&module, None)).unwrap();
    let second = app.execute_plaintext(&cbor).await.result;
    for result in [&first, &second] {
        assert_eq!(result.status, Status::Completed, "{result:?}");
        assert!(result.deterministic);
        assert_eq!(
            result.engine_sha256,
            Some(published.deterministic_engine_sha256)
        );
    }
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(first.fuel_consumed, second.fuel_consumed);
    let (realtime, monotonic, random, nan32, nan64) = fields(&first);
    // 2024-01-01T00:00:00Z, one 1 µs step per read; the monotonic clock from 0.
    assert_eq!(realtime, 1_704_067_200_000_000_000 + 1_000);
    assert_eq!(monotonic, 2_000);
    // The seed's stream: SHA-256 in counter mode over the zero seed, each byte
    // the first of the next four (wasmtime-wasi draws a byte as a u32 and keeps
    // its low byte).
    let stream: Vec<u8> = (0u64..4)
        .flat_map(|counter| {
            let mut block = b"wasm-hypervisor seed stream v1\0secure\0".to_vec();
            block.extend_from_slice(&[0; 32]);
            block.extend_from_slice(&counter.to_be_bytes());
            sha256(&block)
        })
        .collect();
    let expected: Vec<u8> = stream.chunks(4).map(|word| word[0]).collect();
    assert_eq!(random, expected);
    // Canonical NaNs, whatever the CPU's default.
    assert_eq!(nan32, 0x7fc0_0000);
    assert_eq!(nan64, 0x7ff8_0000_0000_0000);

    let other_seed = app
        .execute(&deterministic(&module, Some([1; 32])))
        .await
        .result;
    assert_ne!(
        fields(&other_seed).2,
        random,
        "the seed picks the random bytes"
    );
    assert_eq!(fields(&other_seed).0, realtime);

    let normal = app.execute(&request(&module)).await.result;
    assert_eq!(normal.status, Status::Completed);
    assert!(!normal.deterministic);
    assert_eq!(normal.engine_sha256, None);
    assert_ne!(
        fields(&normal).0,
        realtime,
        "a normal run reads the host's clock"
    );
    // A normal result has no byte of §R.
    let json = String::from_utf8(app.execute(&request(&module)).await.result_plaintext).unwrap();
    assert!(!json.contains("deterministic") && !json.contains("engine_sha256"));
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deterministic_runs_timeout_is_a_fuel_bound_it_reaches_exactly() {
    let app = TestApp::spawn().await;
    let looping = ExecutionRequest {
        limits: limits(None, Some(20)),
        ..deterministic(&fixture("infinite_loop"), None)
    };
    let result = app.execute(&looping).await.result;
    assert_eq!(result.status, Status::Timeout, "{result:?}");
    assert_eq!(result.fuel_consumed, 20 * 100_000);
    assert!(
        result
            .error
            .as_deref()
            .unwrap()
            .contains("fuel its 20 ms timeout allows"),
        "{result:?}"
    );
    let seed_alone = ExecutionRequest {
        seed: Some(Hex([1; 32])),
        ..request(&fixture("exit_code"))
    };
    let refused = app.execute(&seed_alone).await.result;
    assert_eq!(refused.status, Status::InvalidRequest);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fuel_cost_table_and_the_deterministic_engine_are_published_with_their_hashes() {
    let app = TestApp::spawn().await;
    let published: FuelCostsResponse = app.get_json("/fuel-costs").await;
    assert_eq!(published.version, "v1");
    assert_eq!(published.sha256, Hex(sha256(published.table.as_bytes())));
    assert!(published.table.starts_with("{\"Unreachable\":0,\"Nop\":0,"));
    assert_eq!(
        published.deterministic_engine_sha256,
        Hex(sha256(published.deterministic_engine.as_bytes()))
    );
    assert!(
        published
            .deterministic_engine
            .contains(&format!("fuel_costs v1 {}\n", published.sha256))
    );
    assert!(published.classes.iter().any(|class| class.cost == 1));
    app.stop_and_verify_log().await;
}
