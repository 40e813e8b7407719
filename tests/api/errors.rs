//! Every error answered before the plaintext is recovered, in the protocol's error
//! shape, and the service still serving everyone else afterwards.

use serde_json::{Value, json};
use wasm_hypervisor_protocol::payload::{Status, encode_base64};
use wasm_hypervisor_server::config::Bounded;
use wasm_hypervisor_server::envelope;

use crate::helpers::{TestApp, example, fixture, limits, request};

/// Posts `body` to /execute and returns (status, error code).
async fn post_execute(
    app: &TestApp,
    body: impl Into<reqwest::Body>,
    content_type: &str,
) -> (u16, String) {
    let response = app
        .http
        .post(app.url("/execute"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("errors are JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    assert!(body["error"]["message"].is_string());
    (status, code)
}

async fn fresh_session(app: &TestApp) -> wasm_hypervisor_client::Session {
    app.client
        .open_session(&app.identity.public_key)
        .await
        .unwrap()
}

async fn still_serving(app: &TestApp) {
    let result = app.execute(&request(&fixture("exit_code"))).await.result;
    assert_eq!(result.status, Status::Completed);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_400_and_keep_the_session() {
    let app = TestApp::spawn().await;
    let session = fresh_session(&app).await;
    let sid = session.id.to_string();
    let enc = encode_base64(&session.public_key);
    let cases = vec![
        ("not json", "{".to_owned()),
        (
            "missing field",
            json!({"session_id": sid, "enc": enc}).to_string(),
        ),
        (
            "unknown field",
            json!({"session_id": sid, "enc": enc, "ciphertext": "", "x": 1}).to_string(),
        ),
        (
            "bad base64",
            json!({"session_id": sid, "enc": enc, "ciphertext": "!!"}).to_string(),
        ),
        (
            "enc not a point",
            json!({"session_id": sid, "enc": encode_base64(&[4u8; 65]), "ciphertext": ""})
                .to_string(),
        ),
        (
            "enc too short",
            json!({"session_id": sid, "enc": encode_base64(&[4u8; 33]), "ciphertext": ""})
                .to_string(),
        ),
        (
            "bad session id",
            json!({"session_id": "nope", "enc": enc, "ciphertext": ""}).to_string(),
        ),
        (
            "wrong types",
            json!({"session_id": 1, "enc": [], "ciphertext": null}).to_string(),
        ),
    ];
    for (name, body) in cases {
        assert_eq!(
            post_execute(&app, body, "application/json").await,
            (400, "malformed_body".to_owned()),
            "{name}"
        );
    }
    // None of those used the session: it still works.
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
    let execution = app.client.execute(&session, &plaintext).await.unwrap();
    assert_eq!(execution.result.status, Status::Completed);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_json_is_415() {
    let app = TestApp::spawn().await;
    assert_eq!(
        post_execute(&app, "{}", "text/plain").await,
        (415, "unsupported_media_type".to_owned())
    );
    still_serving(&app).await;
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_is_413_before_decoding() {
    let app =
        TestApp::spawn_with(|config| config.limits.max_request_bytes = Bounded::constant::<4096>())
            .await;
    let huge = format!("{{\"session_id\":\"{}\"}}", "x".repeat(10_000));
    assert_eq!(
        post_execute(&app, huge, "application/json").await,
        (413, "payload_too_large".to_owned())
    );
    // Also when the length is not announced up front (chunked).
    let stream = futures_stream(vec![vec![b' '; 3000], vec![b' '; 3000]]);
    assert_eq!(
        post_execute(&app, stream, "application/json").await,
        (413, "payload_too_large".to_owned())
    );
    // A binary body (protocol v1.1 §B) is read in two parts, under the same
    // limit, announced or streamed.
    assert_eq!(
        post_execute(&app, vec![0u8; 5000], "application/octet-stream").await,
        (413, "payload_too_large".to_owned())
    );
    let stream = futures_stream(vec![vec![0; 3000], vec![0; 3000]]);
    assert_eq!(
        post_execute(&app, stream, "application/octet-stream").await,
        (413, "payload_too_large".to_owned())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_body_over_a_kilobyte_is_413_announced_or_streamed() {
    let app = TestApp::spawn().await;
    let post = |body: reqwest::Body| {
        app.http
            .post(app.url("/sessions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // `{"count": 1}` padded with whitespace: valid JSON, but past 1,024 bytes.
    let padded = format!("{{\"count\": 1{}}}", " ".repeat(1100));
    let announced = post(padded.into()).await.unwrap();
    let status = announced.status().as_u16();
    let body: serde_json::Value = announced.json().await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let streamed = post(futures_stream(vec![vec![b' '; 600], vec![b' '; 600]]))
        .await
        .unwrap();
    let status = streamed.status().as_u16();
    let body: serde_json::Value = streamed.json().await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(app.state.sessions.pending(), 0);
    still_serving(&app).await;
    app.stop().await;
}

fn futures_stream(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        for chunk in chunks {
            if tx.send(Ok(chunk)).await.is_err() {
                break;
            }
        }
    });
    reqwest::Body::wrap_stream(ReceiverStream(rx))
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_session_is_404() {
    let app = TestApp::spawn().await;
    let session = fresh_session(&app).await;
    let sealed = envelope::seal_request(
        envelope::Provider::default(),
        &session.public_key,
        &session.id,
        b"{}",
    )
    .unwrap();
    let body = json!({
        "session_id": uuid::Uuid::new_v4().to_string(),
        "enc": encode_base64(&sealed.enc),
        "ciphertext": encode_base64(&sealed.ciphertext),
    });
    assert_eq!(
        post_execute(&app, body.to_string(), "application/json").await,
        (404, "session_not_found".to_owned())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ciphertext_that_does_not_open_is_400_and_uses_up_the_session() {
    let app = TestApp::spawn().await;
    let session = fresh_session(&app).await;
    let mut sealed = envelope::seal_request(
        envelope::Provider::default(),
        &session.public_key,
        &session.id,
        b"{}",
    )
    .unwrap();
    sealed.ciphertext[0] ^= 0x80;
    let body = json!({
        "session_id": session.id.to_string(),
        "enc": encode_base64(&sealed.enc),
        "ciphertext": encode_base64(&sealed.ciphertext),
    })
    .to_string();
    assert_eq!(
        post_execute(&app, body.clone(), "application/json").await,
        (400, "decryption_failed".to_owned())
    );
    // The key was destroyed with the attempt.
    assert_eq!(
        post_execute(&app, body, "application/json").await,
        (404, "session_not_found".to_owned())
    );
    // Sealed to another session's key: also one indistinct decryption failure.
    let target = fresh_session(&app).await;
    let other = fresh_session(&app).await;
    let sealed = envelope::seal_request(
        envelope::Provider::default(),
        &other.public_key,
        &target.id,
        b"{}",
    )
    .unwrap();
    let body = json!({
        "session_id": target.id.to_string(),
        "enc": encode_base64(&sealed.enc),
        "ciphertext": encode_base64(&sealed.ciphertext),
    });
    assert_eq!(
        post_execute(&app, body.to_string(), "application/json").await,
        (400, "decryption_failed".to_owned())
    );
    still_serving(&app).await;
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn overload_is_503_with_retry_after_and_keeps_the_session() {
    let app = TestApp::spawn_with(|config| {
        config.execution.max_concurrent = Bounded::constant::<1>();
        config.execution.max_queued = Bounded::constant::<0>();
    })
    .await;
    // Occupy the only slot with a sleeping guest, compiled first: an execution
    // holds no slot while its module is compiled.
    let mut sleeper = request(&example("sleep"));
    sleeper.args = vec!["0".into()];
    assert_eq!(app.execute(&sleeper).await.result.status, Status::Completed);
    sleeper.args = vec!["60000".into()];
    sleeper.limits = limits(None, Some(3000));
    let busy = {
        let client = app.client.clone();
        let key = app.identity.public_key;
        let plaintext = serde_json::to_vec(&sleeper).unwrap();
        tokio::spawn(async move {
            let session = client.open_session(&key).await.unwrap();
            client.execute(&session, &plaintext).await.unwrap()
        })
    };
    // Wait until the guest holds the slot (a condition, not a guess at timing).
    while app.health().await["slots_in_use"] != 1 {
        tokio::task::yield_now().await;
    }
    let session = fresh_session(&app).await;
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
    let sealed = envelope::seal_request(
        envelope::Provider::default(),
        &session.public_key,
        &session.id,
        &plaintext,
    )
    .unwrap();
    let body = json!({
        "session_id": session.id.to_string(),
        "enc": encode_base64(&sealed.enc),
        "ciphertext": encode_base64(&sealed.ciphertext),
    })
    .to_string();
    let response = app
        .http
        .post(app.url("/execute"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "overloaded");

    assert_eq!(busy.await.unwrap().result.status, Status::Timeout);
    // The refused request retries unchanged, on the same session, and runs.
    let response = app
        .http
        .post(app.url("/execute"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = response.json().await.unwrap();
    let execution =
        wasm_hypervisor_client::open_execution(answer, &sealed.keys, &plaintext).unwrap();
    assert_eq!(execution.result.exit_code, Some(42));
    assert_eq!(app.stop_and_verify_log().await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let missing = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let wrong_method = app.http.get(app.url("/execute")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let fresh = app.http.get(app.url("/health")).send().await.unwrap();
    assert!(fresh.headers().contains_key("x-request-id"));
    let echoed = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uppercase_ids_are_refused_and_their_lowercase_form_still_works() {
    let app = TestApp::spawn().await;
    let session = fresh_session(&app).await;
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
    let sealed = envelope::seal_request(
        envelope::Provider::default(),
        &session.public_key,
        &session.id,
        &plaintext,
    )
    .unwrap();
    let body = |session_id: String| {
        json!({
            "session_id": session_id,
            "enc": encode_base64(&sealed.enc),
            "ciphertext": encode_base64(&sealed.ciphertext),
        })
        .to_string()
    };
    let lowercase = session.id.hyphenated().to_string();
    assert_eq!(
        post_execute(&app, body(lowercase.to_uppercase()), "application/json").await,
        (400, "malformed_body".to_owned())
    );
    // The refusal did not use the session: the lowercase id runs it.
    let response = app
        .http
        .post(app.url("/execute"))
        .header("content-type", "application/json")
        .body(body(lowercase))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let execution = wasm_hypervisor_client::open_execution(
        response.json().await.unwrap(),
        &sealed.keys,
        &plaintext,
    )
    .unwrap();
    assert_eq!(execution.result.exit_code, Some(42));

    let id = execution.execution_id.hyphenated().to_string();
    let upper = app
        .http
        .get(app.url(&format!("/verify/{}", id.to_uppercase())))
        .send()
        .await
        .unwrap();
    assert_eq!(upper.status(), 400);
    let error: Value = upper.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_parameter");
    let lower = app
        .http
        .get(app.url(&format!("/verify/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200);
    assert_eq!(app.stop_and_verify_log().await, 1);
}
