//! `POST /sessions` and `GET /keys`: shapes, signatures, single use, expiry, bounds.

use std::time::Duration;

use wasm_hypervisor::api::{KeysResponse, SessionResponse};
use wasm_hypervisor::envelope;
use wasm_hypervisor::keys::PublicKey;
use wasm_hypervisor::payload::{Status, decode_base64};

use crate::helpers::{TestApp, fixture, request};

#[tokio::test(flavor = "multi_thread")]
async fn a_session_carries_a_fresh_key_signed_by_the_server_key() {
    let app = TestApp::spawn().await;
    let keys: KeysResponse = app
        .http
        .get(app.url("/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys.origin, "wasm-hypervisor.test");
    let server_key = PublicKey::from_spki_der(
        envelope::Provider::default(),
        &decode_base64(&keys.public_key).unwrap(),
    )
    .unwrap();
    assert_eq!(
        keys.key_id,
        hex::encode(envelope::sha256(&decode_base64(&keys.public_key).unwrap()))
    );

    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let response = app.http.post(app.url("/sessions")).send().await.unwrap();
        assert_eq!(response.status(), 201);
        let session: SessionResponse = response.json().await.unwrap();
        assert_eq!(session.session_id.len(), 36);
        let public_key = decode_base64(&session.public_key).unwrap();
        assert_eq!(public_key.len(), 65);
        assert_eq!(public_key[0], 0x04, "SEC1 uncompressed");
        assert!(seen.insert(public_key.clone()), "a fresh key per session");
        assert_eq!(session.suite.kem, "DHKEM(P-256, HKDF-SHA256)");
        assert_eq!(session.suite.kdf, "HKDF-SHA256");
        assert_eq!(session.suite.aead, "AES-256-GCM");
        assert!(
            session.expires_at.ends_with('Z') && session.expires_at.len() == 20,
            "{}",
            session.expires_at
        );
        let mut message = b"wasm-hypervisor v1 session ".to_vec();
        message.extend_from_slice(session.session_id.as_bytes());
        message.extend_from_slice(&public_key);
        server_key
            .verify(&message, &decode_base64(&session.signature).unwrap())
            .unwrap();
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_is_used_by_exactly_one_execution() {
    let app = TestApp::spawn().await;
    let session = app
        .client
        .open_session(&app.identity.public_key)
        .await
        .unwrap();
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
    let first = app.client.execute(&session, &plaintext).await.unwrap();
    assert_eq!(first.result.status, Status::Completed);
    // The same sealed request again, and a fresh one on the same session: both 404.
    let replay = app
        .client
        .execute(&session, &plaintext)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(replay.contains("404 session_not_found"), "{replay}");
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_session_is_refused() {
    let app = TestApp::spawn_with(|config| config.sessions.ttl_secs = 1).await;
    let session = app
        .client
        .open_session(&app.identity.public_key)
        .await
        .unwrap();
    // Waiting out the session's lifetime is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
    let error = app
        .client
        .execute(&session, &plaintext)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("404 session_not_found"), "{error}");
    assert_eq!(app.stop_and_verify_log().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_sessions_are_bounded_with_retry_after() {
    let app = TestApp::spawn_with(|config| config.sessions.max_pending = 2).await;
    for _ in 0..2 {
        assert_eq!(
            app.http
                .post(app.url("/sessions"))
                .send()
                .await
                .unwrap()
                .status(),
            201
        );
    }
    let response = app.http.post(app.url("/sessions")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_sessions");
    app.stop().await;
}
