//! Reproducible executions (protocol v1.2 §R) and the fuel cost table (§U):
//! a guest that reads both clocks, draws random bytes and computes with NaNs
//! gives the same bytes and fuel in two deterministic runs, and not in a normal
//! one; the timeout of a deterministic run is a fuel bound; the table and the
//! deterministic engine are published with their hashes; `replay` passes on an
//! honest bundle, names each tampering, refuses a normal execution's, and
//! works offline once the server is gone.

use std::path::{Path, PathBuf};

use wasm_hypervisor_protocol::digest::sha256;
use wasm_hypervisor_protocol::encoding::{Hex, decode_base64, encode_base64};
use wasm_hypervisor_protocol::payload::{ExecutionRequest, ExecutionResult, Status};
use wasm_hypervisor_protocol::plaintext;
use wasm_hypervisor_protocol::reproducible::Bundle;
use wasm_hypervisor_protocol::wire::{FuelCostsResponse, KeysResponse};

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

/// The CLI with `args`: its exit code, stdout and stderr.
async fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = crate::helpers::cli_command();
    command.args(args);
    crate::helpers::cli_output(command).await
}

/// `bundle` with one byte of `field`'s plaintext changed where `needle` is in
/// it, written beside it as `name`.
fn tampered_plaintext(bundle: &Path, name: &str, field: &str, needle: &[u8]) -> PathBuf {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    let mut bytes = decode_base64(value[field].as_str().unwrap()).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("the bytes are in the plaintext");
    bytes[at] ^= 1;
    value[field] = serde_json::Value::String(encode_base64(&bytes));
    let path = bundle.with_file_name(name);
    std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    path
}

/// `bundle` with its receipt's `field` set to `to`, written beside it as `name`.
fn tampered_receipt(bundle: &Path, name: &str, field: &str, to: serde_json::Value) -> PathBuf {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    value["receipt"][field] = to;
    let path = bundle.with_file_name(name);
    std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_passes_on_the_honest_bundle_and_names_each_tampering() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("reproducible.wasm");
    // Padded past `REFERENCE_MIN_BYTES` with a custom section, so that `run`
    // names it by hash once the server holds it.
    let mut padded = fixture("reproducible");
    let padding = 5000u16;
    padded.extend_from_slice(&[0, 0x80 | (padding & 0x7f) as u8, (padding >> 7) as u8, 3]);
    padded.extend_from_slice(b"pad");
    padded.resize(padded.len() + usize::from(padding) - 4, 0);
    std::fs::write(&module, padded).unwrap();
    let stdin = dir.path().join("stdin");
    std::fs::write(&stdin, b"the replayed stdin").unwrap();
    let bundle = dir.path().join("bundle.json");
    let path = |path: &Path| path.to_str().unwrap().to_owned();
    // Sent once before: a run without a bundle would now name it by its hash.
    let (code, _, stderr) = cli(&["run", "--server", &app.base, &path(&module)]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = cli(&[
        "run",
        "--server",
        &app.base,
        "--deterministic",
        "--stdin",
        &path(&stdin),
        "--replay-bundle",
        &path(&bundle),
        &path(&module),
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    // A bundle the replay can run: the module went by bytes, not by hash.
    let written: Bundle = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let request = plaintext::decode_request(&written.request_plaintext.0)
        .unwrap()
        .0;
    assert!(
        request.module_sha256.is_none(),
        "the module was sent as bytes"
    );

    let (code, stdout, stderr) = cli(&["replay", "--server", &app.base, &path(&bundle)]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for check in [
        "request plaintext",
        "result plaintext",
        "commitment opening",
        "inclusion proof",
    ] {
        assert!(stdout.contains(&format!("ok      {check}\n")), "{stdout}");
    }
    assert!(
        stdout.contains("replayed: every output is identical"),
        "{stdout}"
    );

    let result = plaintext::decode_result_any(&written.result_plaintext.0).unwrap();
    let receipt = &written.receipt;
    let cases = [
        (
            tampered_plaintext(
                &bundle,
                "stdin.json",
                "request_plaintext",
                b"the replayed stdin",
            ),
            "request plaintext",
        ),
        (
            tampered_plaintext(&bundle, "stdout.json", "result_plaintext", &result.stdout.0),
            "result plaintext",
        ),
        (
            tampered_receipt(
                &bundle,
                "index.json",
                "log_index",
                (receipt.log_index + 1).into(),
            ),
            "leaf contents",
        ),
        (
            tampered_receipt(
                &bundle,
                "commitment.json",
                "commitment",
                "00".repeat(32).into(),
            ),
            "commitment opening",
        ),
    ];
    for (tampered, check) in &cases {
        let (code, stdout, _) = cli(&["replay", "--server", &app.base, &path(tampered)]).await;
        assert_eq!(code, Some(1), "{check}: {stdout}");
        assert!(
            stdout.contains(&format!("FAILED  {check}")),
            "{check}: {stdout}"
        );
        assert!(!stdout.contains("replayed:"), "{stdout}");
    }

    // A normal execution's bundle checks, but is refused: no replay can match it.
    let normal = dir.path().join("normal.json");
    let (code, _, stderr) = cli(&[
        "run",
        "--server",
        &app.base,
        "--replay-bundle",
        &path(&normal),
        &path(&module),
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, stderr) = cli(&["replay", "--server", &app.base, &path(&normal)]).await;
    assert_eq!(code, Some(4), "{stdout}{stderr}");
    assert!(stderr.contains("not deterministic"), "{stderr}");

    // With the server stopped: offline, under its note key, the replay passes.
    let keys: KeysResponse = app.get_json("/keys").await;
    let vkey = keys.note_verifier_key.unwrap();
    let base = app.base.clone();
    app.stop_and_verify_log().await;
    let (code, _, _) = cli(&["replay", "--server", &base, &path(&bundle)]).await;
    assert_eq!(code, Some(125), "online, nothing answers");
    let (code, stdout, stderr) = cli(&["replay", "--note-key", &vkey, &path(&bundle)]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("replayed: every output is identical"),
        "{stdout}"
    );
}

/// `loadgen` with `args` and `--json`, for one second after 0.2 s of warm-up:
/// its report.
async fn loadgen_report(args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args(["--concurrency", "2", "--warmup", "0.2", "--duration", "1"])
        .arg("--json")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn loadgen_deterministic_gives_one_stdout_and_one_fuel_count_under_load() {
    let data_dir = crate::helpers::DataDir::new();
    let server = crate::helpers::ServerProcess::start(&data_dir.path);
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("reproducible.wasm");
    std::fs::write(&module, fixture("reproducible")).unwrap();
    let module = module.to_str().unwrap();
    let pid = server.pid().to_string();
    let common = [
        "--server",
        &server.base,
        "--server-pid",
        &pid,
        "--module",
        module,
    ];

    let deterministic = loadgen_report(&[&common[..], &["--deterministic"]].concat()).await;
    let executions = deterministic["executions"].as_u64().unwrap();
    assert!(executions > 1, "{deterministic}");
    assert_eq!(
        deterministic["outcomes"]["completed"].as_u64(),
        Some(executions)
    );
    assert_eq!(deterministic["deterministic"], true);
    assert_eq!(deterministic["distinct_stdouts"], 1, "{deterministic}");
    assert_eq!(deterministic["distinct_fuel"], 1, "{deterministic}");
    assert!(deterministic["guest_us"]["mean"].as_f64().unwrap() > 0.0);

    // The same guest in normal mode reads the host's clock and random bytes.
    let normal = loadgen_report(&common).await;
    assert_eq!(normal["deterministic"], false);
    assert_eq!(
        normal["distinct_stdouts"].as_u64(),
        normal["executions"].as_u64(),
        "{normal}"
    );
    server.sigterm();
    assert!(server.wait().await.status.success());
}
