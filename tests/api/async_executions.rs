//! Long jobs (protocol v1.1 §F): `POST /execute` with `Prefer: respond-async`
//! answers 202 once the plaintext opens, and `GET /executions/{id}` answers
//! `queued`/`running` (202) until the very body a synchronous `/execute` would
//! have answered (200). Every accepted execution is logged, fetched or not.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;
use wasm_hypervisor_client::{Client, Progress};
use wasm_hypervisor_protocol::payload::{
    EffectiveLimits, ExecutionRequest, RequestedLimits, Status,
};
use wasm_hypervisor_protocol::plaintext::Format;
use wasm_hypervisor_protocol::receipt;
use wasm_hypervisor_protocol::wire::PendingState;
use wasm_hypervisor_server::access::Scope;
use wasm_hypervisor_server::answer::answer_bound;
use wasm_hypervisor_server::async_results::{
    Answer, MAX_READERS_PER_CLIENT, View, reservation, stored_bytes,
};
use wasm_hypervisor_server::config::{Bounded, Millis};

use crate::helpers::{
    TEST_TOKEN, TestApp, example, fixture, limits, request, sealed_body, token_digest,
};

/// A guest that sleeps `ms` milliseconds (at most 5 s).
fn sleeper(ms: u64) -> ExecutionRequest {
    let mut sleeper = request(&example("sleep"));
    sleeper.args = vec![ms.to_string()];
    sleeper.limits = limits(None, Some(5000));
    sleeper
}

/// `POST /execute` with `body`, with `Prefer: respond-async` if `prefer`.
async fn post_execute(
    app: &TestApp,
    token: Option<&str>,
    body: String,
    prefer: bool,
) -> reqwest::Response {
    let mut post = app
        .http
        .post(app.url("/execute"))
        .header("content-type", "application/json")
        .body(body);
    if prefer {
        post = post.header("prefer", "wait=5, respond-async");
    }
    if let Some(token) = token {
        post = post.bearer_auth(token);
    }
    post.send().await.unwrap()
}

/// `GET /executions/{id}` as `token`.
async fn get_execution(app: &TestApp, token: Option<&str>, id: &str) -> reqwest::Response {
    let mut get = app.http.get(app.url(&format!("/executions/{id}")));
    if let Some(token) = token {
        get = get.bearer_auth(token);
    }
    get.send().await.unwrap()
}

/// Submits `request` as a long job through the client library.
async fn submit(
    app: &TestApp,
    request: &ExecutionRequest,
) -> wasm_hypervisor_client::PendingExecution {
    let session = app
        .client
        .open_session(&app.identity.public_key)
        .await
        .unwrap();
    app.client
        .execute_async(&session, &serde_json::to_vec(request).unwrap())
        .await
        .expect("accepted")
}

/// Waits (polling the log's size, a condition) until the log holds `size` records.
async fn wait_for_log_size(app: &TestApp, size: u64) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while app.state.log.size() < size {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the execution is logged");
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_execution_answers_202_then_the_sync_body() {
    let app = TestApp::spawn().await;
    let sync = app.execute(&request(&example("hello"))).await;

    // The 202 itself, over raw HTTP.
    let body = sealed_body(
        &app,
        None,
        &serde_json::to_vec(&request(&example("hello"))).unwrap(),
    )
    .await;
    let accepted = post_execute(&app, None, body, true).await;
    assert_eq!(accepted.status(), 202);
    assert_eq!(accepted.headers()["preference-applied"], "respond-async");
    let location = accepted.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = accepted.json().await.unwrap();
    let id = accepted["execution_id"].as_str().unwrap();
    assert_eq!(location, format!("/executions/{id}"));
    assert_eq!(accepted["location"], location);
    assert_eq!(accepted.as_object().unwrap().len(), 2);

    // Through the client: accepted, then fetched, opened with the request's keys
    // and its commitment checked (`Client::wait` refuses it otherwise).
    let pending = submit(&app, &request(&example("hello"))).await;
    let execution = app.client.wait(pending).await.unwrap();
    assert_eq!(execution.result.status, Status::Completed);
    assert_eq!(execution.result.stdout_bytes(), sync.result.stdout_bytes());

    // The fetched body is what a synchronous /execute answers: the same fields.
    let fetched: Value = get_execution(&app, None, &execution.response.execution_id)
        .await
        .json()
        .await
        .unwrap();
    let fields = |value: &Value| -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(
        fields(&fetched),
        fields(&serde_json::to_value(&sync.response).unwrap())
    );
    assert_eq!(fetched, serde_json::to_value(&execution.response).unwrap());

    // And it is in the log: its receipt checks against /verify.
    wait_for_log_size(&app, 3).await;
    let answer = app
        .client
        .inclusion(&execution.response.execution_id)
        .await
        .unwrap();
    let receipt = execution.receipt(&app.base, &app.identity);
    let checks = receipt::check_receipt(&receipt, &answer, &app.identity.public_key);
    assert!(receipt::all_hold(&checks), "{checks:?}");
    assert_eq!(app.stop_and_verify_log().await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfinished_execution_answers_202_with_retry_after() {
    let app = TestApp::spawn_with(|config| {
        config.execution.max_concurrent = Bounded::constant::<1>();
    })
    .await;
    // Compiled once, so that both guests below only wait for the one slot.
    app.execute(&sleeper(0)).await;
    let first = submit(&app, &sleeper(3000)).await;
    let second = submit(&app, &sleeper(3000)).await;
    // One runs and the other waits for the slot, in either order.
    let states = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut states = Vec::new();
            for pending in [&first, &second] {
                let response = get_execution(&app, None, &pending.execution_id.to_string()).await;
                assert_eq!(response.status(), 202);
                assert_eq!(response.headers()["retry-after"], "1");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["execution_id"], pending.execution_id.to_string());
                // `execution_id`, `state` and `phase`.
                assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
                states.push(body["state"].as_str().unwrap().to_owned());
            }
            states.sort();
            if states == ["queued", "running"] {
                return states;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("one guest runs while the other is queued");
    assert_eq!(states, ["queued", "running"]);
    // The client library sees the same.
    match app.client.poll(&first).await.unwrap() {
        Progress::Pending { state, retry_after } => {
            assert!(matches!(
                state,
                PendingState::Queued | PendingState::Running
            ));
            assert_eq!(retry_after, Duration::from_secs(1));
        }
        Progress::Done(_) => panic!("the first sleeper ended within its 3 s"),
    }
    for pending in [first, second] {
        let execution = app.client.wait(pending).await.unwrap();
        assert_eq!(execution.result.stdout_bytes(), b"slept\n");
    }
    assert_eq!(app.stop_and_verify_log().await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_execution_whose_client_went_away_is_logged_and_fetchable_later() {
    let app = TestApp::spawn().await;
    app.execute(&sleeper(0)).await;
    let before = app.state.log.size();
    // A client of its own, dropped (connections and all) right after the 202,
    // while its guest still sleeps.
    let gone = Client::new(&app.base, None);
    let session = gone.open_session(&app.identity.public_key).await.unwrap();
    let pending = gone
        .execute_async(&session, &serde_json::to_vec(&sleeper(1000)).unwrap())
        .await
        .unwrap();
    drop(gone);
    // Another client, later, with only what the first kept (the id and the keys).
    wait_for_log_size(&app, before + 1).await;
    let later = Client::new(&app.base, None);
    let execution = later.wait(pending).await.unwrap();
    assert_eq!(execution.result.status, Status::Completed);
    assert_eq!(execution.result.stdout_bytes(), b"slept\n");
    assert_eq!(execution.response.log_index, before);
    assert_eq!(app.stop_and_verify_log().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_execution_nobody_fetches_is_still_logged() {
    let app = TestApp::spawn().await;
    let body = sealed_body(
        &app,
        None,
        &serde_json::to_vec(&request(&example("hello"))).unwrap(),
    )
    .await;
    let accepted = post_execute(&app, None, body, true).await;
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    wait_for_log_size(&app, 1).await;
    // Provable without ever being fetched.
    let answer = app
        .client
        .inclusion(accepted["execution_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(answer.log_index, 0);
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_token_gets_404() {
    const OTHER_TOKEN: &str = "another-test-token";
    let app = TestApp::spawn_with(|config| {
        config.auth.tokens_sha256 = vec![token_digest(TEST_TOKEN), token_digest(OTHER_TOKEN)];
    })
    .await;
    let pending = submit(&app, &request(&example("hello"))).await;
    let id = pending.execution_id.to_string();
    let execution = app.client.wait(pending).await.unwrap();
    assert_eq!(execution.result.status, Status::Completed);

    let other = get_execution(&app, Some(OTHER_TOKEN), &id).await;
    assert_eq!(other.status(), 404);
    assert_eq!(
        error_code(&other.json().await.unwrap()),
        "execution_not_found"
    );
    let anonymous = get_execution(&app, None, &id).await;
    assert_eq!(anonymous.status(), 401);
    let owner = get_execution(&app, Some(TEST_TOKEN), &id).await;
    assert_eq!(owner.status(), 200);
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_ids_are_404_and_400() {
    let app = TestApp::spawn().await;
    let unknown = get_execution(&app, None, &Uuid::new_v4().to_string()).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        error_code(&unknown.json().await.unwrap()),
        "execution_not_found"
    );
    // A synchronous execution was never async: nothing to fetch.
    let sync = app.execute(&request(&fixture("exit_code"))).await;
    let not_async = get_execution(&app, None, &sync.response.execution_id).await;
    assert_eq!(not_async.status(), 404);
    for malformed in [
        Uuid::new_v4().to_string().to_uppercase(),
        Uuid::new_v4().simple().to_string(),
        "nope".to_owned(),
    ] {
        let response = get_execution(&app, None, &malformed).await;
        assert_eq!(response.status(), 400, "{malformed}");
        assert_eq!(
            error_code(&response.json().await.unwrap()),
            "invalid_parameter"
        );
    }
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_before_decryption_are_answered_in_the_clear_with_prefer() {
    let app = TestApp::spawn().await;
    let plaintext = serde_json::to_vec(&request(&example("hello"))).unwrap();
    let answered_in_the_clear = |response: &reqwest::Response| {
        assert!(response.headers().get("preference-applied").is_none());
        assert!(response.headers().get("location").is_none());
    };
    // An unknown session.
    let mut body: Value = serde_json::from_str(&sealed_body(&app, None, &plaintext).await).unwrap();
    body["session_id"] = Value::String(Uuid::new_v4().to_string());
    let response = post_execute(&app, None, body.to_string(), true).await;
    assert_eq!(response.status(), 404);
    answered_in_the_clear(&response);
    assert_eq!(
        error_code(&response.json().await.unwrap()),
        "session_not_found"
    );
    // A ciphertext that does not open (its session is then used up, as in v1).
    let mut body: Value = serde_json::from_str(&sealed_body(&app, None, &plaintext).await).unwrap();
    let mut ciphertext =
        wasm_hypervisor_protocol::payload::decode_base64(body["ciphertext"].as_str().unwrap())
            .unwrap();
    ciphertext[0] ^= 1;
    body["ciphertext"] = Value::String(wasm_hypervisor_protocol::payload::encode_base64(
        &ciphertext,
    ));
    let response = post_execute(&app, None, body.to_string(), true).await;
    assert_eq!(response.status(), 400);
    answered_in_the_clear(&response);
    assert_eq!(
        error_code(&response.json().await.unwrap()),
        "decryption_failed"
    );
    // A body that is not an /execute body.
    let response = post_execute(&app, None, "{}".to_owned(), true).await;
    assert_eq!(response.status(), 400);
    answered_in_the_clear(&response);
    assert_eq!(
        error_code(&response.json().await.unwrap()),
        "malformed_body"
    );
    assert_eq!(app.state.async_executions.counts().pending, 0);
    assert_eq!(app.stop_and_verify_log().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn async_capacity_full_is_overloaded_and_keeps_the_session() {
    let app = TestApp::spawn_with(|config| {
        config.execution.max_async_pending = Bounded::constant::<1>();
    })
    .await;
    let running = submit(&app, &sleeper(1000)).await;
    // The one place is taken: refused before the session is used.
    let body = sealed_body(
        &app,
        None,
        &serde_json::to_vec(&request(&example("hello"))).unwrap(),
    )
    .await;
    let refused = post_execute(&app, None, body.clone(), true).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.headers().get("preference-applied").is_none());
    assert_eq!(error_code(&refused.json().await.unwrap()), "overloaded");
    // Once the first has finished, the very same body (its session unused) is
    // accepted.
    app.client.wait(running).await.unwrap();
    let retried = post_execute(&app, None, body, true).await;
    assert_eq!(retried.status(), 202);
    wait_for_log_size(&app, 2).await;
    assert_eq!(app.stop_and_verify_log().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_async_places_the_preference_is_ignored() {
    let app = TestApp::spawn_with(|config| {
        config.execution.max_async_pending = Bounded::constant::<0>();
    })
    .await;
    let body = sealed_body(
        &app,
        None,
        &serde_json::to_vec(&request(&example("hello"))).unwrap(),
    )
    .await;
    let response = post_execute(&app, None, body, true).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("preference-applied").is_none());
    let answer: Value = response.json().await.unwrap();
    assert!(answer["ciphertext"].is_string());
    // The client library takes a synchronous answer to a preference as the answer.
    let pending = submit(&app, &request(&example("hello"))).await;
    assert!(pending.location.is_none());
    let execution = app.client.wait(pending).await.unwrap();
    assert_eq!(execution.result.status, Status::Completed);
    assert_eq!(app.stop_and_verify_log().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn async_executions_count_in_metrics() {
    let app = TestApp::spawn().await;
    let scrape = || async {
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} missing"))
            .parse()
            .unwrap()
    };
    let before = scrape().await;
    assert_eq!(
        value(&before, "wasm_hypervisor_async_executions_total"),
        0.0
    );
    let pending = submit(&app, &sleeper(500)).await;
    let during = scrape().await;
    assert_eq!(
        value(&during, "wasm_hypervisor_async_executions_total"),
        1.0
    );
    assert_eq!(
        value(&during, "wasm_hypervisor_async_executions_pending"),
        1.0
    );
    app.client.wait(pending).await.unwrap();
    let after = scrape().await;
    assert_eq!(value(&after, "wasm_hypervisor_async_executions_total"), 1.0);
    assert_eq!(
        value(&after, "wasm_hypervisor_async_executions_pending"),
        0.0
    );
    assert_eq!(value(&after, "wasm_hypervisor_async_results_stored"), 1.0);
    // An async execution is an execution: counted by status like any.
    assert_eq!(
        value(
            &after,
            r#"wasm_hypervisor_executions_total{status="completed"}"#
        ),
        1.0
    );
    // The stored bytes follow one result's size: the operator's only.
    assert!(!after.contains("wasm_hypervisor_async_results_bytes"));
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_async_submits_and_polls() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("sleep.wasm");
    std::fs::write(&module, example("sleep")).unwrap();
    let receipt = dir.path().join("receipt.json");
    let output = crate::helpers::cli_command()
        .args(["run", "--server", &app.base, "--async", "--receipt"])
        .arg(&receipt)
        .arg(&module)
        .arg("300")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "slept\n");
    // The id comes first, so a user can `verify` later.
    let id = stderr
        .lines()
        .find_map(|line| line.strip_prefix("wasm-hypervisor: execution "))
        .expect("the execution id on stderr");
    let receipt: Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    assert_eq!(receipt["execution_id"], id);
    // A guest's failure is the exit code, as with `run`.
    let failed = crate::helpers::cli_command()
        .args(["run", "--server", &app.base, "--async", "--fuel", "1"])
        .arg(&module)
        .arg("0")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(failed.status.code(), Some(152));
    assert_eq!(app.stop_and_verify_log().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_execution_does_not_count_its_wait_against_the_queue_timeout() {
    let app = TestApp::spawn_with(|config| {
        config.execution.max_concurrent = Bounded::constant::<1>();
        config.execution.max_queued = Bounded::constant::<0>();
    })
    .await;
    app.execute(&sleeper(0)).await;
    let first = submit(&app, &sleeper(1500)).await;
    // No queue for synchronous executions, yet the second async one waits for
    // the slot rather than being refused: it was accepted.
    let second = submit(&app, &sleeper(0)).await;
    for pending in [first, second] {
        let execution = app.client.wait(pending).await.unwrap();
        assert_eq!(execution.result.stdout_bytes(), b"slept\n");
    }
    assert_eq!(app.stop_and_verify_log().await, 3);
}

/// Sets both async byte bounds: `total` in all, `share` per client.
fn async_bytes(config: &mut wasm_hypervisor_server::config::Config, total: u64, share: u64) {
    config.execution.async_results_bytes = total.try_into().unwrap();
    config.execution.async_results_bytes_per_client = share.try_into().unwrap();
}

/// What one sleeper reserves at the test limits (1 MiB of output, JSON, no
/// mounts): a little over 8 MiB.
fn sleeper_reservation() -> usize {
    let limits = EffectiveLimits {
        fuel: 1,
        memory_bytes: 1,
        timeout_ms: 1,
        max_output_bytes: 1 << 20,
        files_bytes: None,
    };
    reservation(answer_bound(&limits, 1, false, Format::Json))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_async_share_gets_429_while_another_clients_job_is_accepted() {
    const OTHER_TOKEN: &str = "another-test-token";
    let app = TestApp::spawn_with(|config| {
        config.auth.tokens_sha256 = vec![token_digest(TEST_TOKEN), token_digest(OTHER_TOKEN)];
        // Room for two answers of 1 MiB of output per client, 15 in all.
        let one = sleeper_reservation() as u64;
        async_bytes(config, 15 * one + one / 2, 2 * one + one / 2);
    })
    .await;
    app.execute(&sleeper(0)).await;
    let plaintext = serde_json::to_vec(&sleeper(2000)).unwrap();
    for _ in 0..2 {
        let body = sealed_body(&app, Some(TEST_TOKEN), &plaintext).await;
        let accepted = post_execute(&app, Some(TEST_TOKEN), body, true).await;
        assert_eq!(accepted.status(), 202);
    }
    // Its two jobs are pending: their answers count, and a third does not fit.
    let body = sealed_body(&app, Some(TEST_TOKEN), &plaintext).await;
    let refused = post_execute(&app, Some(TEST_TOKEN), body, true).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["retry-after"],
        "1",
        "its jobs may finish small"
    );
    assert!(refused.headers().get("preference-applied").is_none());
    assert_eq!(
        error_code(&refused.json().await.unwrap()),
        "too_many_async_results"
    );
    // Another client's job is accepted meanwhile.
    let body = sealed_body(&app, Some(OTHER_TOKEN), &plaintext).await;
    let other = post_execute(&app, Some(OTHER_TOKEN), body, true).await;
    assert_eq!(other.status(), 202);
    // The refused one ran nothing and logged nothing.
    wait_for_log_size(&app, 4).await;
    assert_eq!(app.stop_and_verify_log().await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_async_jobs_count_so_that_a_job_past_the_total_is_refused_before_any_finished() {
    // Two answers of 1 MiB of output, not three; one client may take all.
    let two = 2 * sleeper_reservation() as u64 + (1 << 20);
    let app = TestApp::spawn_with(|config| async_bytes(config, two, two)).await;
    app.execute(&sleeper(0)).await;
    let first = submit(&app, &sleeper(2000)).await;
    let second = submit(&app, &sleeper(2000)).await;
    let body = sealed_body(&app, None, &serde_json::to_vec(&sleeper(0)).unwrap()).await;
    let refused = post_execute(&app, None, body, true).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(error_code(&refused.json().await.unwrap()), "overloaded");
    // A synchronous execution is not bounded by the answers kept.
    let sync = app.execute(&request(&example("hello"))).await;
    assert_eq!(sync.result.status, Status::Completed);
    let counts = app.state.async_executions.counts();
    assert_eq!(counts.pending, 2);
    assert!(counts.bytes as u64 <= two, "never passed: {}", counts.bytes);
    for pending in [first, second] {
        app.client.wait(pending).await.unwrap();
    }
    assert_eq!(app.stop_and_verify_log().await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_jobs_reservation_is_trued_down_to_its_answer_when_it_finishes() {
    let app = TestApp::spawn_with(|config| {
        let two = 2 * sleeper_reservation() as u64 + (1 << 20);
        async_bytes(config, two, two);
    })
    .await;
    app.execute(&sleeper(0)).await;
    let reserved = sleeper_reservation();
    let pending = submit(&app, &sleeper(1000)).await;
    assert_eq!(
        app.state.async_executions.counts().bytes,
        reserved,
        "counted as its bound while pending"
    );
    let id = pending.execution_id;
    let execution = app.client.wait(pending).await.unwrap();
    let kept = match app.state.async_executions.get(&id, Scope::Open) {
        Some(View::Done(Answer::Kept(kept))) => kept,
        _ => panic!("the answer is kept"),
    };
    assert_eq!(
        app.state.async_executions.counts().bytes,
        stored_bytes(&kept),
        "counted as its size once finished"
    );
    assert!(stored_bytes(&kept) < 4096);
    assert_eq!(execution.result.stdout_bytes(), b"slept\n");
    // So two more bounds fit beside it.
    let more = [
        submit(&app, &sleeper(0)).await,
        submit(&app, &sleeper(0)).await,
    ];
    assert!(more.iter().all(|pending| pending.location.is_some()));
    for pending in more {
        app.client.wait(pending).await.unwrap();
    }
    assert_eq!(app.stop_and_verify_log().await, 4);
}

/// A guest whose answer is some 21 MB of sealed result: more than the
/// connection's buffers hold, so that a reader that does not read keeps its
/// body unsent.
fn large_answer() -> ExecutionRequest {
    let mut flood = request(&fixture("output_flood"));
    flood.limits = Some(RequestedLimits {
        // Ended by fuel, not by the clock, however loaded the machine is: the
        // 64 KiB fill costs 65,536 and each round of 64 KiB about 6, so this is
        // some 700 rounds, the 256 that fill the cap and a few hundred more. A
        // debug build on a machine at load 10+ took over 5 s for them: the clock
        // is a minute (`spawn_for_large_answers`), far past any run's need.
        fuel: Some(70_000),
        timeout_ms: Some(60_000),
        max_output_bytes: Some(LARGE_OUTPUT),
        ..Default::default()
    });
    flood
}

const LARGE_OUTPUT: u64 = 16 << 20;

/// Submits [`large_answer`] and waits until it is kept.
async fn kept_large_answer(app: &TestApp) -> Uuid {
    let pending = submit(app, &large_answer()).await;
    let id = pending.execution_id;
    let execution = app.client.wait(pending).await.unwrap();
    assert_eq!(
        execution.result.stdout_bytes().len() as u64,
        LARGE_OUTPUT,
        "{:?}: {:?}, fuel {}",
        execution.result.status,
        execution.result.error,
        execution.result.fuel_consumed
    );
    assert_eq!(
        execution.result.status,
        Status::FuelExhausted,
        "ended by fuel"
    );
    id
}

/// `GET path` on a connection of its own, read up to the end of the answer's
/// headers (it must be a 200) and no further: a reader that does not read.
pub(crate) async fn stalled_reader(base: &str, path: &str, binary: bool) -> TcpStream {
    let address = base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(address).await.unwrap();
    let accept = if binary {
        "accept: application/octet-stream\r\n"
    } else {
        ""
    };
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: {address}\r\n{accept}\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

/// A server whose guests may write [`LARGE_OUTPUT`] bytes, and whose stalled
/// writes last longer than any test step.
async fn spawn_for_large_answers() -> TestApp {
    TestApp::spawn_with(|config| {
        config.limits.max_output_bytes = LARGE_OUTPUT.try_into().unwrap();
        config.limits.timeout_ms = Millis::constant::<60_000>();
        config.http.response_write_timeout_ms = Millis::constant::<60_000>();
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_that_never_read_share_the_kept_answer_instead_of_each_holding_a_copy() {
    let app = spawn_for_large_answers().await;
    let id = kept_large_answer(&app).await;
    let kept = match app.state.async_executions.get(&id, Scope::Open) {
        Some(View::Done(Answer::Kept(kept))) => kept,
        _ => panic!("the answer is kept"),
    };
    let path = format!("/executions/{id}");
    let readers = [
        stalled_reader(&app.base, &path, false).await,
        stalled_reader(&app.base, &path, true).await,
        stalled_reader(&app.base, &path, false).await,
    ];
    // Each body still being sent holds the one kept answer (the store's
    // reference, this test's and one per reader), not an encoding of its own.
    assert_eq!(app.state.async_executions.readers(), 3);
    assert_eq!(Arc::strong_count(&kept), 2 + readers.len());
    drop(readers);
    drop(kept);
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_past_the_bound_get_429_until_one_is_done() {
    let app = spawn_for_large_answers().await;
    let id = kept_large_answer(&app).await;
    let path = format!("/executions/{id}");
    let mut readers = Vec::new();
    for _ in 0..MAX_READERS_PER_CLIENT {
        readers.push(stalled_reader(&app.base, &path, true).await);
    }
    let refused = get_execution(&app, None, &id.to_string()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        error_code(&refused.json().await.unwrap()),
        "too_many_readers"
    );
    // A reader that hangs up gives its place back (as soon as the server's
    // next write to it fails).
    drop(readers.pop());
    tokio::time::timeout(Duration::from_secs(30), async {
        while app.state.async_executions.readers() == MAX_READERS_PER_CLIENT {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed reader's slot is given back");
    let fetched = get_execution(&app, None, &id.to_string()).await;
    assert_eq!(fetched.status(), 200);
    let body = fetched.bytes().await.unwrap();
    assert!(body.len() as u64 > LARGE_OUTPUT);
    drop(readers);
    assert_eq!(app.stop_and_verify_log().await, 1);
}

/// A compile worker that compiles only when the test lets it: a script that
/// reads a line from a FIFO, then runs the real worker. While it waits, the
/// execution it compiles for is certainly in its `compiling` phase.
pub(crate) struct CompileGate {
    dir: tempfile::TempDir,
}

impl CompileGate {
    pub(crate) fn new() -> CompileGate {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let gate = CompileGate { dir };
        let made = std::process::Command::new("mkfifo")
            .arg(gate.fifo())
            .status()
            .expect("mkfifo (coreutils)");
        assert!(made.success(), "mkfifo");
        // The worker runs with an empty environment: no PATH, only builtins.
        let script = format!(
            "#!/bin/sh\nread -r go < '{}'\nexec '{}' \"$@\"\n",
            gate.fifo().display(),
            env!("CARGO_BIN_EXE_wasm-hypervisor")
        );
        std::fs::write(gate.program(), script).unwrap();
        std::fs::set_permissions(gate.program(), std::fs::Permissions::from_mode(0o755)).unwrap();
        gate
    }

    fn fifo(&self) -> std::path::PathBuf {
        self.dir.path().join("gate")
    }

    /// What `execution.compile_worker` names.
    pub(crate) fn program(&self) -> std::path::PathBuf {
        self.dir.path().join("compile-worker")
    }

    /// Lets one compilation through: returns once its worker has read the line
    /// (opening a FIFO to write waits for its reader).
    pub(crate) async fn open(&self) {
        let fifo = self.fifo();
        tokio::task::spawn_blocking(move || {
            let mut writer = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            std::io::Write::write_all(&mut writer, b"go\n").unwrap();
        })
        .await
        .unwrap();
    }
}

/// One guest slot, and compilation in it (no compile tickets), through `gate`:
/// a job compiling holds the slot, so that the next one is certainly queued.
pub(crate) fn one_slot_compiling_in_it(
    config: &mut wasm_hypervisor_server::config::Config,
    gate: &CompileGate,
) {
    config.execution.max_concurrent = Bounded::constant::<1>();
    config.execution.max_queued_compilations = Bounded::constant::<0>();
    config.execution.compile_worker = Some(gate.program());
}

/// `GET /executions/{id}` at `base` until its 202 says `state` and `phase`;
/// fails if it finishes first. Each phase waited for here is held by the test
/// (the gate, the one slot) or lasts as long as a sleeping guest.
async fn until_phase(base: &str, id: &str, state: &str, phase: &str) {
    let http = reqwest::Client::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let response = http
                .get(format!("{base}/executions/{id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202, "{id} finished before {phase}");
            let body: Value = response.json().await.unwrap();
            if body["state"] == state && body["phase"] == phase {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} never reported {state}/{phase}"));
}

/// Runs two long jobs on `runner` (configured by [`one_slot_compiling_in_it`]
/// with `gate`) and asks `observer` (the runner itself, or another replica)
/// for their phases: the first `compiling` while the gate is shut, the second
/// `queued` meanwhile, then the first `running` while its guest sleeps.
pub(crate) async fn each_phase_is_reported(runner: &TestApp, observer: &str, gate: &CompileGate) {
    let first = submit(runner, &sleeper(3000)).await;
    let first_id = first.execution_id.to_string();
    // It had the slot (state running) and compiles in it.
    until_phase(observer, &first_id, "running", "compiling").await;
    let second = submit(runner, &sleeper(0)).await;
    let second_id = second.execution_id.to_string();
    // Its 202 came once its registration was visible to every replica; the
    // one slot is held until the gate opens.
    let queued: Value = reqwest::get(format!("{observer}/executions/{second_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        queued,
        serde_json::json!({"execution_id": second_id, "state": "queued", "phase": "queued"})
    );
    until_phase(observer, &first_id, "running", "compiling").await;
    gate.open().await;
    until_phase(observer, &first_id, "running", "running").await;
    for pending in [first, second] {
        let execution = runner.client.wait(pending).await.unwrap();
        assert_eq!(execution.result.stdout_bytes(), b"slept\n");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_job_reports_each_phase_queued_compiling_running() {
    let gate = CompileGate::new();
    let app = TestApp::spawn_with(|config| one_slot_compiling_in_it(config, &gate)).await;
    each_phase_is_reported(&app, &app.base, &gate).await;
    assert_eq!(app.stop_and_verify_log().await, 2);
}
