//! Receipts that carry their proof (protocol v1.2 §T4, §T6): `run --receipt`
//! writes the execution's tlog-proof into the receipt, `verify --note-key` and
//! `verify --policy` check it with the server stopped, tampering is refused by
//! the check's name, and receipts without the proof still verify online.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use wasm_hypervisor_client::{ClientError, Run, ServerIdentity, TlogProofOutcome, Violation};
use wasm_hypervisor_protocol::note::{CosignerKey, NoteSigningKey, VerifierKey};
use wasm_hypervisor_protocol::policy::Policy;
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::receipt::{self, Receipt};
use wasm_hypervisor_protocol::wire::KeysResponse;

use crate::helpers::{TestApp, cli_command, example, fixture, request};

const CHECKS: [&str; 6] = [
    "receipt key",
    "leaf signature",
    "leaf contents",
    "commitment opening",
    "checkpoint signature",
    "inclusion proof",
];

async fn cli(args: &[&str]) -> Output {
    cli_command()
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The note key's vkey, as `GET /keys` gives it.
async fn note_vkey(app: &TestApp) -> String {
    let keys: KeysResponse = app.get_json("/keys").await;
    keys.note_verifier_key
        .expect("a v1.2 server gives its note key")
}

/// `run --receipt` of the `hello` example into `dir`; the receipt's path.
async fn run_with_receipt(app: &TestApp, dir: &Path) -> PathBuf {
    let receipt = dir.join("receipt.json");
    let module = dir.join("hello.wasm");
    std::fs::write(&module, example("hello")).unwrap();
    let run = cli(&[
        "run",
        "--server",
        &app.base,
        "--receipt",
        receipt.to_str().unwrap(),
        module.to_str().unwrap(),
    ])
    .await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        !text(&run.stderr).contains("tlog_proof"),
        "the proof was had: {}",
        text(&run.stderr)
    );
    receipt
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `receipt` with `edit` applied, written beside it as `name`.
fn tampered(receipt: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut value = read(receipt);
    edit(&mut value);
    let path = receipt.with_file_name(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    path
}

/// `verify` of `receipt` with `flags`: its exit code and stdout.
async fn verify(flags: &[&str], receipt: &Path) -> (Option<i32>, String) {
    let mut args = vec!["verify"];
    args.extend_from_slice(flags);
    args.push(receipt.to_str().unwrap());
    let output = cli(&args).await;
    (output.status.code(), text(&output.stdout))
}

fn assert_all_ok(stdout: &str) {
    for check in CHECKS {
        assert!(stdout.contains(&format!("ok      {check}\n")), "{stdout}");
    }
    assert!(stdout.contains("verified: execution"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receipt_from_run_verifies_offline_with_the_server_stopped() {
    let app = TestApp::spawn().await;
    // Two executions first, so that the proof has hashes to tamper with.
    for _ in 0..2 {
        app.execute(&request(&fixture("exit_code"))).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let receipt = run_with_receipt(&app, dir.path()).await;
    let vkey = note_vkey(&app).await;
    let key_id = app.identity.key_id.to_string();

    // The proof is the receipt's last field, as the server served it.
    let written = std::fs::read_to_string(&receipt).unwrap();
    let value = read(&receipt);
    let execution_id = value["execution_id"].as_str().unwrap().to_owned();
    let (_, proof) = app_text(&app, &format!("/tlog/proof/{execution_id}")).await;
    assert_eq!(value["tlog_proof"].as_str(), Some(proof.as_str()));
    let last_key = written.rfind("\n  \"").unwrap();
    assert!(written[last_key..].starts_with("\n  \"tlog_proof\": \"c2sp.org/tlog-proof@v1\\n"));

    let policy = dir.path().join("policy.txt");
    std::fs::write(
        &policy,
        format!("# this log, no witness\nlog {vkey}\nquorum none\n"),
    )
    .unwrap();
    let other_key = NoteSigningKey::generate(Provider::default(), "wasm-hypervisor.test")
        .unwrap()
        .verifier_key()
        .to_string();
    let base = app.base.clone();
    app.stop_and_verify_log().await;

    // The server is gone: online verification cannot be made...
    let (code, _) = verify(&["--server", &base], &receipt).await;
    assert_eq!(code, Some(125));
    // ...offline verification can, under the note key or the policy file.
    let (code, stdout) = verify(&["--note-key", &vkey, "--key-id", &key_id], &receipt).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_all_ok(&stdout);
    assert!(stdout.contains(&format!("under key {key_id}")), "{stdout}");
    let (code, stdout) = verify(&["--policy", policy.to_str().unwrap()], &receipt).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_all_ok(&stdout);
    assert!(stdout.contains("not pinned"), "{stdout}");

    // Tampering is refused, by the check's name.
    let origin = tampered(&receipt, "origin.json", |receipt| {
        receipt["origin"] = "another.example".into()
    });
    let commitment = tampered(&receipt, "commitment.json", |receipt| {
        receipt["commitment"] = "22".repeat(32).into()
    });
    let hash = tampered(&receipt, "hash.json", |receipt| {
        let proof = receipt["tlog_proof"].as_str().unwrap();
        let (head, rest) = proof.split_once("\nindex ").unwrap();
        let (index, rest) = rest.split_once('\n').unwrap();
        // The first proof hash, another one of 32 bytes.
        let (_, rest) = rest.split_once('\n').unwrap();
        receipt["tlog_proof"] =
            format!("{head}\nindex {index}\n{}\n{rest}", "A".repeat(43) + "=").into();
    });
    for (path, flags, failed) in [
        (
            &origin,
            ["--note-key", vkey.as_str()],
            "checkpoint signature",
        ),
        (&commitment, ["--note-key", vkey.as_str()], "leaf contents"),
        (&hash, ["--note-key", vkey.as_str()], "inclusion proof"),
        (
            &receipt,
            ["--note-key", other_key.as_str()],
            "checkpoint signature",
        ),
    ] {
        let (code, stdout) = verify(&flags, path).await;
        assert_eq!(code, Some(1), "{}: {stdout}", path.display());
        assert!(stdout.contains(&format!("FAILED  {failed}: ")), "{stdout}");
        assert!(stdout.contains("verification failed"), "{stdout}");
    }
    // A wrong pin is refused before any check, as online.
    let (code, _) = verify(
        &["--note-key", &vkey, "--key-id", &"00".repeat(32)],
        &receipt,
    )
    .await;
    assert_eq!(code, Some(125));
    // A witness's key cannot stand for the log's, nor can what is not a vkey.
    let witness = CosignerKey::generate(Provider::default(), "w.example")
        .unwrap()
        .verifier_key()
        .to_string();
    for bad in [witness.as_str(), "w.example+00000000+AAAA"] {
        let output = cli(&["verify", "--note-key", bad, receipt.to_str().unwrap()]).await;
        assert_eq!(output.status.code(), Some(125));
        assert!(
            text(&output.stderr).contains("--note-key: "),
            "{}",
            text(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receipt_without_a_tlog_proof_verifies_online_and_says_so_offline() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let receipt = run_with_receipt(&app, dir.path()).await;
    // A receipt as written before v1.2.
    let old = tampered(&receipt, "old.json", |receipt| {
        receipt.as_object_mut().unwrap().remove("tlog_proof");
    });
    let (code, stdout) = verify(&["--server", &app.base], &old).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_all_ok(&stdout);
    // The online check ignores the proof a receipt carries.
    let (code, stdout) = verify(&["--server", &app.base], &receipt).await;
    assert_eq!(code, Some(0), "{stdout}");
    let vkey = note_vkey(&app).await;
    let (code, stdout) = verify(&["--note-key", &vkey], &old).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "FAILED  inclusion proof: the receipt carries no tlog_proof; verify it online\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("ok      commitment opening"), "{stdout}");
    app.stop_and_verify_log().await;
}

/// GETs `path` and returns its status and body.
async fn app_text(app: &TestApp, path: &str) -> (u16, String) {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_puts_a_checked_proof_in_the_receipt_or_says_why_not() {
    let app = TestApp::spawn().await;
    let outcome = app.client.run(&Run::new(example("hello"))).await.unwrap();
    let vkey = note_vkey(&app).await;
    let note_key = VerifierKey::parse(Provider::default(), &vkey).unwrap();
    assert_eq!(outcome.identity.note_verifier_key.as_ref(), Some(&note_key));

    // From a v1.2 server: the proof, checked, verifying offline.
    let proved = outcome.receipt_with_proof(&app.base).await.unwrap();
    assert!(matches!(proved.tlog_proof, TlogProofOutcome::Included));
    let policy = Policy::single_log(note_key.clone()).unwrap();
    let checks = receipt::check_receipt_offline(&proved.receipt, &policy, Provider::default());
    assert!(receipt::all_hold(&checks), "{checks:?}");
    // With the proof taken out, it is the receipt without one, byte for byte.
    let without = Receipt {
        tlog_proof: None,
        ..proved.receipt.clone()
    };
    assert_eq!(
        serde_json::to_string(&without).unwrap(),
        serde_json::to_string(&outcome.receipt(&app.base)).unwrap()
    );
    // The checkpoint note passes the same policy.
    let note = app.client.tlog_checkpoint().await.unwrap();
    let verified = policy.verify_checkpoint(note.as_bytes()).unwrap();
    assert!(verified.checkpoint.tree_size > proved.receipt.log_index);

    // A server without a note key (before v1.2): the receipt as before.
    let before_v1_2 = ServerIdentity {
        note_verifier_key: None,
        ..outcome.identity.clone()
    };
    let plain = app
        .client
        .prove_receipt(outcome.receipt(&app.base), &before_v1_2)
        .await
        .unwrap();
    assert!(matches!(plain.tlog_proof, TlogProofOutcome::NotOffered));
    assert_eq!(plain.receipt.tlog_proof, None);

    // A proof the server cannot give (no such execution): the receipt without it.
    let unknown = Receipt {
        execution_id: "7c9e6679-7425-40de-944b-e07fc1f90ae7".to_owned(),
        ..outcome.receipt(&app.base)
    };
    let missing = app
        .client
        .prove_receipt(unknown, &outcome.identity)
        .await
        .unwrap();
    assert!(
        matches!(
            &missing.tlog_proof,
            TlogProofOutcome::Unavailable(ClientError::Server { status: 404, .. })
        ),
        "{:?}",
        missing.tlog_proof
    );
    assert_eq!(missing.receipt.tlog_proof, None);

    // A proof that does not check under the note key the client holds is a
    // protocol violation, and no receipt comes of it.
    let impostor = ServerIdentity {
        note_verifier_key: Some(
            NoteSigningKey::generate(Provider::default(), "wasm-hypervisor.test")
                .unwrap()
                .verifier_key(),
        ),
        ..outcome.identity.clone()
    };
    let refused = app
        .client
        .prove_receipt(outcome.receipt(&app.base), &impostor)
        .await
        .err();
    assert!(
        matches!(
            refused,
            Some(ClientError::Protocol(Violation::TlogProof {
                check: "checkpoint signature",
                ..
            }))
        ),
        "{refused:?}"
    );
    app.stop_and_verify_log().await;
}
