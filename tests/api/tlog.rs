//! The log in the standard transparency formats (protocol v1.2 §T1, §T2, §T4):
//! the note key in `GET /keys`, the checkpoint as a signed note, and proofs of
//! logging that verify offline with the log's verifier key alone.

use std::os::unix::fs::PermissionsExt;

use wasm_hypervisor_protocol::checkpoint::open_note;
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::note::VerifierKey;
use wasm_hypervisor_protocol::policy::Policy;
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::tlog_proof::{TlogProof, TlogProofError};
use wasm_hypervisor_protocol::wire::KeysResponse;

use crate::helpers::{DataDir, TestApp, fixture, request};

/// The note key's vkey, as `GET /keys` gives it.
async fn note_vkey(app: &TestApp) -> String {
    let keys: KeysResponse = app.get_json("/keys").await;
    keys.note_verifier_key
        .expect("a v1.2 server gives its note key")
}

/// GETs `path` and returns its status, content type and body.
async fn get_text(app: &TestApp, path: &str) -> (u16, String, String) {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_names_the_note_key_after_the_origin_with_its_c2sp_key_id() {
    let app = TestApp::spawn().await;
    let vkey = note_vkey(&app).await;
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(parts.len(), 3, "{vkey}");
    assert_eq!(parts[0], "wasm-hypervisor.test");
    assert!(
        parts[1].len() == 8
            && parts[1]
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{vkey}"
    );
    let key = VerifierKey::parse(Provider::default(), &vkey).unwrap();
    assert_eq!(key.signature_type(), 0x01, "an Ed25519 key");
    assert_eq!(key.name(), "wasm-hypervisor.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checkpoint_note_is_the_v1_checkpoint_signed_by_both_keys() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.execute(&request(&fixture("exit_code"))).await;
    }
    let note_key = VerifierKey::parse(Provider::default(), &note_vkey(&app).await).unwrap();
    let p256 = VerifierKey::ecdsa_p256("wasm-hypervisor.test", &app.identity.public_key).unwrap();
    let response = app
        .http
        .get(app.url("/tlog/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let cache = response.headers()["cache-control"].to_str().unwrap();
    let max_age: u64 = cache
        .split("max-age=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|age| age.trim().parse().ok())
        .unwrap_or_else(|| panic!("{cache}"));
    assert!(max_age <= 5, "a few seconds at most: {cache}");
    let note = response.text().await.unwrap();
    let opened = open_note(note.as_bytes(), &[note_key, p256], &[]).unwrap();
    assert_eq!(opened.logs, vec![0, 1], "both lines verify, Ed25519 first");
    assert_eq!(opened.note.signatures().len(), 2, "no other line: {note}");
    let v1 = app.checkpoint().await;
    assert_eq!(opened.checkpoint.tree_size, 3);
    assert_eq!(opened.checkpoint.tree_size, v1.tree_size);
    assert_eq!(opened.checkpoint.root_hash, v1.root_hash.0);
    // One checkpoint, one note: nothing in it is signed anew per request.
    let (_, _, again) = get_text(&app, "/tlog/checkpoint").await;
    assert_eq!(again, note);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tlog_proof_verifies_offline_under_a_quorum_none_policy() {
    let app = TestApp::spawn().await;
    let mut executions = Vec::new();
    for _ in 0..5 {
        executions.push(app.execute(&request(&fixture("exit_code"))).await);
    }
    let vkey = note_vkey(&app).await;
    // The server is no longer needed: everything below is offline.
    let mut proofs = Vec::new();
    for execution in &executions {
        let path = format!("/tlog/proof/{}", execution.response.execution_id);
        let (status, content_type, text) = get_text(&app, &path).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/plain; charset=utf-8")
        );
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
        proofs.push(text);
    }
    app.stop().await;
    let policy = Policy::parse(
        Provider::default(),
        format!("log {vkey}\nquorum none\n").as_bytes(),
    )
    .unwrap();
    for (execution, text) in executions.iter().zip(&proofs) {
        let verified = TlogProof::parse(text.as_bytes())
            .unwrap()
            .verify(&policy)
            .unwrap();
        assert_eq!(verified.index, execution.response.log_index);
        assert_eq!(verified.leaf.execution_id, execution.execution_id);
        assert_eq!(verified.leaf.commitment, execution.commitment);
        assert_eq!(verified.checkpoint.checkpoint.tree_size, 5);
        assert_eq!(Leaf::parse(&verified.leaf.to_bytes()), Some(verified.leaf));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_tlog_proof_is_refused() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            app.execute(&request(&fixture("exit_code")))
                .await
                .response
                .execution_id,
        );
    }
    let policy = Policy::single_log(
        VerifierKey::parse(Provider::default(), &note_vkey(&app).await).unwrap(),
    )
    .unwrap();
    let (_, _, text) = get_text(&app, &format!("/tlog/proof/{}", ids[1])).await;
    let verify = |text: &str| TlogProof::parse(text.as_bytes()).and_then(|p| p.verify(&policy));
    assert!(verify(&text).is_ok());
    let lines: Vec<&str> = text.lines().collect();
    // Another index; another leaf (another execution's entry); a proof hash
    // changed; the checkpoint's size changed (its signature no longer holds).
    let (_, _, other) = get_text(&app, &format!("/tlog/proof/{}", ids[2])).await;
    let other_extra = other.lines().nth(1).unwrap();
    let first_hash = lines[3];
    let mut flipped = first_hash.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, tampered) in [
        ("index", text.replacen("\nindex 1\n", "\nindex 2\n", 1)),
        ("leaf", text.replacen(lines[1], other_extra, 1)),
        ("hash", text.replacen(first_hash, &flipped, 1)),
        ("checkpoint", text.replacen("\n4\n", "\n5\n", 1)),
    ] {
        assert_ne!(tampered, text, "{what} was changed");
        let refused = verify(&tampered);
        assert!(
            matches!(
                refused,
                Err(TlogProofError::Inclusion(_) | TlogProofError::Policy(_))
            ),
            "{what}: {refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_execution_has_no_proof_and_a_bad_id_is_a_bad_parameter() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::new_v4();
    let response = app
        .http
        .get(app.url(&format!("/tlog/proof/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let response = app
        .http
        .get(app.url("/tlog/proof/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_parameter");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_note_key_is_made_once_owner_only_and_follows_the_signing_key() {
    let app = TestApp::spawn().await;
    let vkey = note_vkey(&app).await;
    let data_dir = app.stop().await;
    let file = data_dir.path.join("note_key");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("PRIVATE+KEY+wasm-hypervisor.test+"),
        "Go's signer key text"
    );
    // The same file after a restart.
    let again = TestApp::spawn_in(data_dir, |_| {}).await;
    assert_eq!(note_vkey(&again).await, vkey);
    let data_dir = again.stop().await;
    // A replica sharing the signing key, with a data directory of its own, makes
    // the same note key.
    let signing_key = data_dir.path.join("signing_key.pem");
    let replica = TestApp::spawn_with(|config| config.signing_key_file = signing_key).await;
    assert_eq!(note_vkey(&replica).await, vkey);
    // A note key file of another log is refused at start.
    let other = DataDir::new();
    std::fs::create_dir_all(&other.path).unwrap();
    let foreign = other.path.join("note_key");
    std::fs::copy(&file, &foreign).unwrap();
    let mut config = crate::helpers::test_config(&other.path);
    config.origin = "another.example/log".parse().unwrap();
    let refused = wasm_hypervisor_server::server::Service::build(&config)
        .err()
        .expect("a note key of another origin is refused");
    assert!(
        refused.to_string().contains("not of this log's origin"),
        "{refused}"
    );
}
