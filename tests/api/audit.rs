//! The audit log over HTTP: inclusion proofs, checkpoints, consistency proofs, and
//! the `verify` command proving a receipt end to end.

use std::process::Output;

use serde_json::Value;
use wasm_hypervisor_protocol::merkle::{self, Hash};
use wasm_hypervisor_protocol::receipt;
use wasm_hypervisor_protocol::wire::{CheckpointResponse, VerifyResponse};

use crate::helpers::{TestApp, example, fixture, request};

#[tokio::test(flavor = "multi_thread")]
async fn every_execution_has_an_inclusion_proof_against_a_signed_checkpoint() {
    let app = TestApp::spawn().await;
    let mut executions = Vec::new();
    for _ in 0..5 {
        executions.push(app.execute(&request(&fixture("exit_code"))).await);
    }
    for execution in &executions {
        let answer: VerifyResponse = app
            .client
            .inclusion(&execution.response.execution_id)
            .await
            .unwrap();
        assert_eq!(answer.execution_id, execution.response.execution_id);
        assert_eq!(answer.log_index, execution.response.log_index);
        assert_eq!(answer.commitment, execution.response.commitment);
        let leaf = answer.leaf.0.clone();
        assert_eq!(leaf.len(), 57);
        assert_eq!(&leaf[1..17], execution.execution_id.as_bytes());
        assert_eq!(&leaf[25..57], &execution.commitment);
        assert_eq!(
            u64::from_be_bytes(leaf[17..25].try_into().unwrap()),
            answer.timestamp_ms
        );
        let key = &app.identity.public_key;
        key.verify(&leaf, &answer.leaf_signature.0).unwrap();
        assert_eq!(answer.leaf_signature, execution.response.leaf_signature);
        let checkpoint = receipt::check_checkpoint(&answer.checkpoint, key).unwrap();
        assert_eq!(checkpoint.tree_size, 5);
        assert_eq!(checkpoint.origin, "wasm-hypervisor.test");
        let proof: Vec<Hash> = answer.inclusion_proof.iter().map(|h| h.0).collect();
        merkle::verify_inclusion(
            &merkle::leaf_hash(&leaf),
            answer.log_index,
            5,
            &proof,
            &checkpoint.root_hash,
        )
        .unwrap();
    }
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consistency_proofs_link_every_pair_of_checkpoints() {
    let app = TestApp::spawn().await;
    let mut checkpoints: Vec<CheckpointResponse> = vec![app.checkpoint().await];
    assert_eq!(checkpoints[0].tree_size, 0);
    for _ in 0..6 {
        app.execute(&request(&fixture("exit_code"))).await;
        checkpoints.push(app.checkpoint().await);
    }
    for old in &checkpoints {
        for new in checkpoints.iter().filter(|c| c.tree_size >= old.tree_size) {
            let proof = if old.tree_size == 0 {
                Vec::new()
            } else {
                let answer = app
                    .client
                    .consistency(old.tree_size, new.tree_size)
                    .await
                    .unwrap();
                assert_eq!(
                    (answer.first, answer.second),
                    (old.tree_size, new.tree_size)
                );
                answer.proof
            };
            let checks = receipt::check_consistency(old, new, &proof, &app.identity.public_key);
            assert!(receipt::all_hold(&checks), "{old:?} -> {new:?}: {checks:?}");
        }
    }
    // A newer tree is not consistent with a forged older root.
    let mut forged = checkpoints[3].clone();
    forged.root_hash = checkpoints[2].root_hash.clone();
    let proof = app.client.consistency(3, 6).await.unwrap().proof;
    let checks =
        receipt::check_consistency(&forged, &checkpoints[6], &proof, &app.identity.public_key);
    assert!(!receipt::all_hold(&checks));
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proof_endpoints_refuse_bad_parameters_in_the_error_shape() {
    let app = TestApp::spawn().await;
    app.execute(&request(&fixture("exit_code"))).await;
    app.execute(&request(&fixture("exit_code"))).await;
    let cases = [
        ("/verify/not-a-uuid", 400, "invalid_parameter"),
        (
            "/verify/7c9e6679-7425-40de-944b-e07fc1f90ae7",
            404,
            "execution_not_found",
        ),
        ("/log/consistency", 400, "invalid_parameter"),
        ("/log/consistency?first=1", 400, "invalid_parameter"),
        (
            "/log/consistency?first=x&second=2",
            400,
            "invalid_parameter",
        ),
        (
            "/log/consistency?first=0&second=2",
            400,
            "invalid_parameter",
        ),
        (
            "/log/consistency?first=2&second=1",
            400,
            "invalid_parameter",
        ),
        (
            "/log/consistency?first=1&second=3",
            400,
            "invalid_parameter",
        ),
        (
            "/log/consistency?first=-1&second=2",
            400,
            "invalid_parameter",
        ),
    ];
    for (path, status, code) in cases {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    let ok = app.client.consistency(1, 2).await.unwrap();
    assert_eq!(ok.proof.len(), 1);
    app.stop_and_verify_log().await;
}

/// Runs the real `wasm-hypervisor` binary.
async fn cli(args: &[&str], stdin: &[u8]) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = crate::helpers::cli_command()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `verify` of `receipt` against the live server: every check passes with the
/// key pinned, the server's key is used and printed without a pin, and a wrong
/// pin is refused before any check.
async fn verify_online_pinned_unpinned_and_wrongly_pinned(
    app: &TestApp,
    receipt: &str,
    key_id: &str,
) {
    let verified = cli(
        &["verify", "--server", &app.base, "--key-id", key_id, receipt],
        b"",
    )
    .await;
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let stdout = text(&verified.stdout);
    for check in [
        "receipt key",
        "leaf signature",
        "leaf contents",
        "commitment opening",
        "checkpoint signature",
        "inclusion proof",
    ] {
        assert!(stdout.contains(&format!("ok      {check}")), "{stdout}");
    }
    assert!(stdout.contains("verified: execution"), "{stdout}");

    // Without a pin, the server's key is used and printed.
    let unpinned = cli(&["verify", "--server", &app.base, receipt], b"").await;
    assert!(unpinned.status.success());
    assert!(text(&unpinned.stdout).contains(key_id));

    // A wrong pin is refused before any check.
    let wrong = "00".repeat(32);
    let pinned = cli(
        &["verify", "--server", &app.base, "--key-id", &wrong, receipt],
        b"",
    )
    .await;
    assert_eq!(pinned.status.code(), Some(125), "{}", text(&pinned.stderr));
}

/// `verify` against the live server of a copy of `receipt` (written in `dir`)
/// whose hex field `field` is 32 bytes of `byte`; it fails (exit 1).
async fn verify_tampered(
    app: &TestApp,
    dir: &std::path::Path,
    receipt: &str,
    field: &str,
    byte: &str,
) -> Output {
    let mut tampered: Value = serde_json::from_slice(&std::fs::read(receipt).unwrap()).unwrap();
    tampered[field] = Value::String(byte.repeat(32));
    let tampered_path = dir.join("tampered.json");
    std::fs::write(&tampered_path, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let failed = cli(
        &[
            "verify",
            "--server",
            &app.base,
            tampered_path.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    assert_eq!(failed.status.code(), Some(1));
    failed
}

/// `verify --save-proof` of `receipt` into `dir`, then `verify --checkpoint`
/// of the checkpoint of that moment after one more execution: consistent.
/// Returns the proof's path.
async fn save_proof_and_check_consistency(
    app: &TestApp,
    dir: &std::path::Path,
    receipt: &str,
) -> std::path::PathBuf {
    let proof = dir.join("proof.json");
    let saved = cli(
        &[
            "verify",
            "--server",
            &app.base,
            "--save-proof",
            proof.to_str().unwrap(),
            receipt,
        ],
        b"",
    )
    .await;
    assert!(saved.status.success());
    let checkpoint_path = dir.join("checkpoint.json");
    std::fs::write(
        &checkpoint_path,
        serde_json::to_vec(&app.checkpoint().await).unwrap(),
    )
    .unwrap();
    app.execute(&request(&fixture("exit_code"))).await;
    let monitored = cli(
        &[
            "verify",
            "--server",
            &app.base,
            "--checkpoint",
            checkpoint_path.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    assert!(monitored.status.success(), "{}", text(&monitored.stdout));
    assert!(text(&monitored.stdout).contains("consistent"));
    proof
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receipt_from_run_is_proven_by_verify_and_tampering_is_named() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let receipt_path = dir.path().join("receipt.json");
    let module = dir.path().join("sha256sum.wasm");
    std::fs::write(&module, example("sha256sum")).unwrap();
    let run = cli(
        &[
            "run",
            "--server",
            &app.base,
            "--receipt",
            receipt_path.to_str().unwrap(),
            module.to_str().unwrap(),
        ],
        b"abc",
    )
    .await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        text(&run.stdout),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n"
    );
    let receipt = receipt_path.to_str().unwrap();
    let key_id = app.identity.key_id.to_string();
    verify_online_pinned_unpinned_and_wrongly_pinned(&app, receipt, &key_id).await;

    // A receipt whose salt was changed no longer opens its commitment.
    let failed = verify_tampered(&app, dir.path(), receipt, "salt", "11").await;
    let stdout = text(&failed.stdout);
    assert!(stdout.contains("FAILED  commitment opening"), "{stdout}");
    assert!(stdout.contains("ok      inclusion proof"), "{stdout}");

    // A receipt claiming another commitment fails the leaf check.
    let failed = verify_tampered(&app, dir.path(), receipt, "commitment", "22").await;
    assert!(text(&failed.stdout).contains("FAILED  leaf contents"));

    // Save the proof, stop the server, and verify offline.
    let proof = save_proof_and_check_consistency(&app, dir.path(), receipt).await;
    let base = app.base.clone();
    app.stop_and_verify_log().await;

    let offline = cli(
        &[
            "verify",
            "--key-id",
            &key_id,
            "--proof",
            proof.to_str().unwrap(),
            receipt,
        ],
        b"",
    )
    .await;
    assert!(offline.status.success(), "{}", text(&offline.stdout));
    // ...and the server is really gone.
    let gone = cli(&["verify", "--server", &base, receipt], b"").await;
    assert_eq!(gone.status.code(), Some(125));
}
