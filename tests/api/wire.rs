//! Protocol v1.1 §A–C on the wire: session batches, binary `/execute` bodies and
//! answers, CBOR plaintexts, and the client's session pool.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasm_hypervisor_client::{Client, SessionPool, Wire};
use wasm_hypervisor_protocol::payload::{ExecutionRequest, Status, encode_base64};
use wasm_hypervisor_protocol::plaintext::{self, Format};
use wasm_hypervisor_protocol::receipt;
use wasm_hypervisor_protocol::wire::SessionBatchResponse;
use wasm_hypervisor_protocol::{binary, cbor};
use wasm_hypervisor_server::config::{Bounded, Secs};
use wasm_hypervisor_server::envelope::{self, Provider};

use crate::helpers::{TestApp, sealed_body};

/// `examples/tiny.wat`: writes `hello` to stdout.
const TINY: &[u8] = include_bytes!("../../examples/tiny.wasm");

fn tiny() -> ExecutionRequest {
    ExecutionRequest {
        module: Some(encode_base64(TINY)),
        ..Default::default()
    }
}

/// A v1.1 client of `app` (binary bodies; the plaintext format is the caller's).
fn v1_1(app: &TestApp) -> Client {
    Client::new(&app.base, None).with_wire(Wire::V1_1)
}

async fn post_sessions(app: &TestApp, body: &str) -> reqwest::Response {
    app.http
        .post(app.url("/sessions"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_signed_once_over_the_exact_message_and_each_session_opens_once() {
    let app = TestApp::spawn().await;
    let response = post_sessions(&app, r#"{"count": 3}"#).await;
    assert_eq!(response.status(), 201);
    let batch: SessionBatchResponse = response.json().await.unwrap();
    assert_eq!(batch.sessions.len(), 3);
    // The message, built here byte by byte from protocol v1.1 §A.
    let mut message = b"wasm-hypervisor v1 sessions ".to_vec();
    for session in &batch.sessions {
        assert_eq!(session.session_id.len(), 36);
        message.extend_from_slice(session.session_id.as_bytes());
        message.extend_from_slice(&session.public_key.0);
    }
    app.identity
        .public_key
        .verify(&message, &batch.signature.0)
        .expect("one signature over the whole batch");
    let sessions = batch.verify(&app.identity.public_key).unwrap();
    assert_eq!(app.state.sessions.pending(), 3);

    let client = v1_1(&app);
    let plaintext = plaintext::encode_request(&tiny()).unwrap();
    for verified in sessions {
        let session = wasm_hypervisor_client::Session {
            id: verified.session_id,
            public_key: verified.public_key,
        };
        let execution = client.execute(&session, &plaintext).await.unwrap();
        assert_eq!(execution.result.stdout_bytes(), b"hello\n");
        let Err(again) = client.execute(&session, &plaintext).await else {
            panic!("a session opens once");
        };
        assert!(
            matches!(&again, wasm_hypervisor_client::ClientError::Server { code, .. } if code == "session_not_found"),
            "{again}"
        );
    }
    assert_eq!(app.state.sessions.pending(), 0);
    assert_eq!(app.stop_and_verify_log().await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_count_out_of_range_is_invalid_parameter() {
    let app = TestApp::spawn().await;
    for body in [r#"{"count": 0}"#, r#"{"count": 65}"#, r#"{"count": -1}"#] {
        let (status, code) = error_of(post_sessions(&app, body).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_parameter"),
            "{body}"
        );
    }
    assert_eq!(app.state.sessions.pending(), 0);
    let response = post_sessions(&app, r#"{"count": 64}"#).await;
    assert_eq!(response.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_count_is_malformed() {
    let app = TestApp::spawn().await;
    for body in [
        r#"{"count": "x"}"#,
        "[1]",
        r#"{"count": 1, "x": 2}"#,
        "{}",
        r#"{"count": 1.5}"#,
        "not json",
    ] {
        let (status, code) = error_of(post_sessions(&app, body).await).await;
        assert_eq!((status, code.as_str()), (400, "malformed_body"), "{body}");
    }
    assert_eq!(app.state.sessions.pending(), 0);
    // No body at all is protocol v1: one session, its own signature.
    let single: Value = app
        .http
        .post(app.url("/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(single["session_id"].is_string() && single["signature"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_counts_n_against_the_pending_bound_all_or_nothing() {
    let app = TestApp::spawn_with(|config| {
        config
            .sessions
            .set_max_pending(Bounded::constant::<70>())
            .unwrap();
    })
    .await;
    assert_eq!(post_sessions(&app, r#"{"count": 64}"#).await.status(), 201);
    let response = post_sessions(&app, r#"{"count": 7}"#).await;
    assert!(response.headers().contains_key("retry-after"));
    let (status, code) = error_of(response).await;
    assert_eq!((status, code.as_str()), (503, "too_many_sessions"));
    assert_eq!(
        app.state.sessions.pending(),
        64,
        "nothing of the refused batch"
    );
    assert_eq!(post_sessions(&app, r#"{"count": 6}"#).await.status(), 201);
    assert_eq!(app.state.sessions.pending(), 70);
}

async fn post_binary(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(app.url("/execute"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_80_byte_binary_body_is_malformed_and_errors_stay_json() {
    let app = TestApp::spawn().await;
    let response = post_binary(&app, vec![0; 80]).await;
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "errors keep the JSON shape"
    );
    assert_eq!(error_of(response).await, (400, "malformed_body".to_owned()));
    // 81 bytes: the shape holds, but the enc is no point.
    let response = post_binary(&app, vec![0; 81]).await;
    assert_eq!(error_of(response).await, (400, "malformed_body".to_owned()));
    // A real point for a session that does not exist: 404, in JSON.
    let (_, point) = envelope::generate_session_key(Provider::default());
    let body = binary::ExecuteBody {
        session_id: uuid::Uuid::new_v4(),
        enc: point,
        ciphertext: b"whatever",
    }
    .to_vec();
    let response = post_binary(&app, body).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        error_of(response).await,
        (404, "session_not_found".to_owned())
    );
    // Another media type is still 415.
    let response = app
        .http
        .post(app.url("/execute"))
        .header("content-type", "application/cbor")
        .body(vec![0; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (415, "unsupported_media_type".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_through_binary_and_cbor_verifies() {
    let app = TestApp::spawn().await;
    let client = v1_1(&app);
    let pool = SessionPool::new(client.clone(), app.identity.public_key).with_batch(4);
    let request = ExecutionRequest {
        stdin: Some(encode_base64(&[0xff; 70_000])),
        ..tiny()
    };
    let plaintext = Wire::V1_1.encode_request(&request).unwrap();
    assert_eq!(Format::of(&plaintext), Format::Cbor);
    let execution = pool.execute(&plaintext).await.unwrap();
    assert_eq!(execution.result.status, Status::Completed);
    assert_eq!(execution.result.stdout_bytes(), b"hello\n");
    assert_eq!(
        Format::of(&execution.result_plaintext),
        Format::Cbor,
        "a CBOR request gets a CBOR result"
    );
    assert_eq!(
        execution.result.module_sha256.unwrap().0,
        envelope::sha256(TINY)
    );
    assert_eq!(pool.len(), 3, "the rest of the batch waits in the pool");
    let answer = client
        .inclusion(&execution.response.execution_id)
        .await
        .unwrap();
    let receipt = execution.receipt(&app.base, &app.identity);
    let checks = receipt::check_receipt(&receipt, &answer, &app.identity.public_key);
    assert!(receipt::all_hold(&checks), "{checks:?}");
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_request_in_a_binary_body_gets_a_json_result() {
    let app = TestApp::spawn().await;
    let client = v1_1(&app);
    let session = client.open_session(&app.identity.public_key).await.unwrap();
    let plaintext = serde_json::to_vec(&tiny()).unwrap();
    let execution = client.execute(&session, &plaintext).await.unwrap();
    assert_eq!(execution.result_plaintext.first(), Some(&b'{'));
    assert_eq!(execution.result.stdout_bytes(), b"hello\n");
    assert_eq!(app.stop_and_verify_log().await, 1);
}

/// Runs raw plaintext bytes through a v1.1 client, on a fresh session.
async fn run_plaintext(app: &TestApp, plaintext: &[u8]) -> wasm_hypervisor_client::Execution {
    let client = v1_1(app);
    let session = client.open_session(&app.identity.public_key).await.unwrap();
    client.execute(&session, plaintext).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_duplicate_and_indefinite_cbor_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    // A two-entry map head, then "module": h'…'; the key under test follows.
    let module = {
        let mut map = cbor::Item::Map(vec![("module", cbor::Item::Bytes(TINY))]).to_vec();
        map[0] = 0xA2;
        map
    };
    let unknown = [module.clone(), vec![0x64, b'a', b'r', b'g', b'v', 0x80]].concat();
    let duplicate = [
        module.clone(),
        vec![0x66, b'm', b'o', b'd', b'u', b'l', b'e', 0x40],
    ]
    .concat();
    // {"module": h'…', "args": [_ "x"]}: an indefinite-length array inside.
    let indefinite_inside = [
        module.clone(),
        vec![0x64, b'a', b'r', b'g', b's', 0x9F, 0x61, b'x', 0xFF],
    ]
    .concat();
    // An indefinite-length map: 0xBF is no CBOR map head (§C), so it is read as
    // JSON and fails as JSON.
    let indefinite_map = [vec![0xBF], module[1..].to_vec(), vec![0xFF]].concat();
    for (name, plaintext, says, format) in [
        ("unknown key", unknown, "unknown field `argv`", Format::Cbor),
        (
            "duplicate key",
            duplicate,
            "duplicate field `module`",
            Format::Cbor,
        ),
        (
            "indefinite array",
            indefinite_inside,
            "indefinite length",
            Format::Cbor,
        ),
        (
            "indefinite map",
            indefinite_map,
            "not a valid execution request",
            Format::Json,
        ),
    ] {
        let execution = run_plaintext(&app, &plaintext).await;
        assert_eq!(execution.result.status, Status::InvalidRequest, "{name}");
        let error = execution.result.error.clone().unwrap();
        assert!(error.contains(says), "{name}: {error}");
        assert_eq!(
            Format::of(&execution.result_plaintext),
            format,
            "{name}: the result is in the request's format"
        );
    }
    assert_eq!(app.stop_and_verify_log().await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn cbor_and_json_requests_give_the_same_execution() {
    let app = TestApp::spawn().await;
    let request = ExecutionRequest {
        args: vec!["a".into()],
        env: [("K".to_owned(), "v".to_owned())].into_iter().collect(),
        ..tiny()
    };
    let cbor = run_plaintext(&app, &Wire::V1_1.encode_request(&request).unwrap()).await;
    let json = run_plaintext(&app, &Wire::V1.encode_request(&request).unwrap()).await;
    assert_eq!(json.result_plaintext.first(), Some(&b'{'));
    let comparable = |mut result: wasm_hypervisor_protocol::payload::ExecutionResult| {
        result.execution_id.clear();
        result.fuel_consumed = 0;
        result.wall_time_us = 0;
        result
    };
    assert_eq!(comparable(cbor.result), comparable(json.result));
    assert_eq!(app.stop_and_verify_log().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_binary_execution_is_fetched_in_binary_with_accept() {
    let app = TestApp::spawn().await;
    let client = v1_1(&app);
    let session = client.open_session(&app.identity.public_key).await.unwrap();
    let plaintext = Wire::V1_1.encode_request(&tiny()).unwrap();
    let pending = client.execute_async(&session, &plaintext).await.unwrap();
    let location = pending.location.clone().unwrap();
    // The client asks with `Accept: application/octet-stream`.
    let execution = client.wait(pending).await.unwrap();
    assert_eq!(execution.result.stdout_bytes(), b"hello\n");
    let binary_answer = app
        .http
        .get(app.url(&location))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(
        binary_answer.headers()["content-type"],
        "application/octet-stream"
    );
    let bytes = binary_answer.bytes().await.unwrap();
    let answer = binary::ExecuteAnswer::parse(&bytes).unwrap();
    assert_eq!(answer.execution_id, execution.execution_id);
    assert_eq!(answer.commitment, execution.commitment);
    assert_eq!(answer.ciphertext, &execution.response.ciphertext.0[..]);
    // Without it, JSON (protocol v1.1 §F).
    let json_answer: Value = app
        .http
        .get(app.url(&location))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        json_answer["execution_id"],
        json!(execution.execution_id.to_string())
    );
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_replaces_a_session_the_server_no_longer_has() {
    let app = TestApp::spawn().await;
    let pool = SessionPool::new(v1_1(&app), app.identity.public_key).with_batch(2);
    let plaintext = Wire::V1_1.encode_request(&tiny()).unwrap();
    pool.execute(&plaintext).await.unwrap();
    assert_eq!(pool.len(), 1);
    // The server forgets every pending session (as if they expired): the pooled
    // one, which the pool still holds to be valid for a minute, is gone.
    app.state
        .sessions
        .sweep(Instant::now() + Duration::from_secs(3600))
        .await;
    assert_eq!(app.state.sessions.pending(), 0);
    let execution = pool.execute(&plaintext).await.unwrap();
    assert_eq!(execution.result.stdout_bytes(), b"hello\n");
    // Retried on a fresh batch of two: one used, one pooled.
    assert_eq!(pool.len(), 1);
    assert_eq!(app.state.sessions.pending(), 1);
    assert_eq!(app.stop_and_verify_log().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_sharing_an_empty_pool_open_one_batch_between_them() {
    let app = TestApp::spawn().await;
    let pool =
        std::sync::Arc::new(SessionPool::new(v1_1(&app), app.identity.public_key).with_batch(8));
    let plaintext = Wire::V1_1.encode_request(&tiny()).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (pool, plaintext) = (pool.clone(), plaintext.clone());
            tokio::spawn(async move { pool.execute(&plaintext).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap().result.status,
            Status::Completed
        );
    }
    // A batch is only opened for an empty pool, so sixteen executions took exactly
    // three batches, of 4, 8 and 8 (each used up, so the next doubled, up to the
    // ceiling of 8): four left pooled and pending. (Each task opening its own
    // would have left 16 × 4 − 16 = 48 pending.)
    assert_eq!((pool.len(), app.state.sessions.pending()), (4, 4));
    assert_eq!(app.stop_and_verify_log().await, 16);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_halves_a_batch_the_clients_pending_share_refuses() {
    let app = TestApp::spawn_with(|config| {
        config
            .sessions
            .set_max_pending_per_client(Bounded::constant::<6>())
            .unwrap()
    })
    .await;
    // Another program of the same client holds three of its six.
    let held = post_sessions(&app, r#"{"count": 3}"#).await;
    assert_eq!(held.status(), 201);
    let pool = SessionPool::new(v1_1(&app), app.identity.public_key).with_batch(32);
    let plaintext = Wire::V1_1.encode_request(&tiny()).unwrap();
    for _ in 0..5 {
        let execution = pool.execute(&plaintext).await.unwrap();
        assert_eq!(execution.result.stdout_bytes(), b"hello\n");
    }
    // The first batch of 4 was refused (3 + 4 > 6), 2 fit; each time two were used
    // up, 4 was asked again and refused.
    assert_eq!(pool.batch(), 2);
    assert_eq!(app.stop_and_verify_log().await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_a_rate_limited_execute_did_not_use_goes_back_to_the_pool() {
    let app = TestApp::spawn_with(|config| {
        config.clients.requests_per_second = Bounded::constant::<1>();
        config.clients.burst = Bounded::constant::<4>();
    })
    .await;
    let pool = SessionPool::new(v1_1(&app), app.identity.public_key).with_batch(8);
    let plaintext = Wire::V1_1.encode_request(&tiny()).unwrap();
    pool.execute(&plaintext).await.unwrap();
    let mut executed = 1;
    let refused = loop {
        // Empty the client's bucket, then execute at once (a token refilled in
        // between lets the execution through: then again).
        while app
            .http
            .get(app.url("/keys"))
            .send()
            .await
            .unwrap()
            .status()
            != 429
        {}
        let before = (pool.len(), app.state.sessions.pending());
        match pool.execute(&plaintext).await {
            Ok(_) => executed += 1,
            Err(error) => break (error, before),
        }
        assert!(executed < 5, "no execution was ever rate limited");
    };
    let (error, before) = refused;
    assert!(
        matches!(&error, wasm_hypervisor_client::ClientError::Server { code, .. } if code == "rate_limited"),
        "{error:?}"
    );
    // Not used by the server, so not lost by the pool: it serves the next request.
    assert_eq!((pool.len(), app.state.sessions.pending()), before);
    // (The log through the state: HTTP is rate limited.)
    assert_eq!(app.state.log.size(), executed);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_drops_sessions_near_expiry() {
    // Sessions live 60 s; the pool wants 120 s left: every pooled session is near
    // expiry as soon as it is pooled, so none is used after its batch (and the
    // server keeps them all for the length of the test).
    let app = TestApp::spawn_with(|config| config.sessions.ttl_secs = Secs::constant::<60>()).await;
    let pool = SessionPool::new(v1_1(&app), app.identity.public_key)
        .with_batch(4)
        .with_margin(Duration::from_secs(120));
    let plaintext = Wire::V1_1.encode_request(&tiny()).unwrap();
    pool.execute(&plaintext).await.unwrap();
    assert_eq!((pool.len(), app.state.sessions.pending()), (3, 3));
    pool.execute(&plaintext).await.unwrap();
    // The three were dropped unused (still pending on the server), so the next
    // batch was halved: two, one of them used.
    assert_eq!(pool.len(), 1);
    assert_eq!(app.state.sessions.pending(), 4);
    assert_eq!(pool.batch(), 2);
    assert_eq!(app.stop_and_verify_log().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_starts_with_a_small_batch_and_doubles_it_while_batches_are_used_up() {
    let app = TestApp::spawn().await;
    let pool = SessionPool::new(v1_1(&app), app.identity.public_key);
    let plaintext = Wire::V1_1.encode_request(&tiny()).unwrap();
    let mut pooled_after_each_refill = Vec::new();
    for _ in 0..4 + 8 + 16 + 1 {
        let before = pool.len();
        pool.execute(&plaintext).await.unwrap();
        if before == 0 {
            pooled_after_each_refill.push(pool.len());
        }
    }
    // Batches of 4, 8, 16 and 16: up to the default ceiling.
    assert_eq!(pooled_after_each_refill, [3, 7, 15, 15]);
    assert_eq!(pool.batch(), SessionPool::DEFAULT_BATCH);
    assert_eq!(app.stop_and_verify_log().await, 29);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_programs_on_one_address_share_its_pending_sessions_without_refusal() {
    // The server's default share: 64 pending sessions per client (address).
    let app = TestApp::spawn_with(|config| {
        config
            .sessions
            .set_max_pending_per_client(Bounded::constant::<64>())
            .unwrap()
    })
    .await;
    let programs: Vec<SessionPool> = (0..3)
        .map(|_| SessionPool::new(v1_1(&app), app.identity.public_key))
        .collect();
    let plaintext = Wire::V1_1.encode_request(&tiny()).unwrap();
    for _ in 0..2 {
        for program in &programs {
            program.execute(&plaintext).await.unwrap();
        }
    }
    // Each was granted its first batch of four (none halved after a refusal), and
    // holds two of them.
    let batches: Vec<usize> = programs.iter().map(SessionPool::batch).collect();
    assert_eq!(batches, [4, 4, 4]);
    assert_eq!(app.state.sessions.pending(), 6);
    assert_eq!(app.stop_and_verify_log().await, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v1_json_body_still_works_beside_binary_ones() {
    let app = TestApp::spawn().await;
    let body = sealed_body(&app, None, &serde_json::to_vec(&tiny()).unwrap()).await;
    let response = app
        .http
        .post(app.url("/execute"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.unwrap();
    assert!(answer["ciphertext"].is_string());
    assert_eq!(app.stop_and_verify_log().await, 1);
}
