//! Logs: one span per request with its method, route template and request id; one
//! line per request, which for an answered execution is the execution's own (id,
//! status, log index, fuel, durations, sizes); text or JSON by configuration;
//! never plaintext.

use serde_json::{Value, json};
use wasm_hypervisor_client::{Client, open_execution};
use wasm_hypervisor_protocol::payload::{Status, encode_base64};
use wasm_hypervisor_server::envelope;

use crate::helpers::{DataDir, ServerProcess, TestApp, example, request};

const REQUEST_ID: &str = "logs-test.request:1";

/// Content only the guest and the client may see.
const SECRETS: [&str; 3] = ["argsecret5d0c", "envsecret91c2", "stdinsecret7f3a"];

/// Runs `examples/hello` with the secrets as argument, environment and stdin,
/// sending our own request id; returns the opened execution.
async fn execute_with_secrets(server: &ServerProcess) -> wasm_hypervisor_client::Execution {
    let client = Client::new(&server.base, None);
    let key = client.identity(None).await.unwrap().public_key;
    let session = client.open_session(&key).await.unwrap();
    let mut req = request(&example("hello"));
    req.args = vec![SECRETS[0].into()];
    req.env.insert("NAME".into(), SECRETS[1].into());
    req.stdin = Some(encode_base64(SECRETS[2].as_bytes()));
    let plaintext = serde_json::to_vec(&req).unwrap();
    let sealed = envelope::seal_request(
        envelope::Provider::default(),
        &session.public_key,
        &session.id,
        &plaintext,
    )
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/execute", server.base))
        .header("x-request-id", REQUEST_ID)
        .json(&json!({
            "session_id": session.id.to_string(),
            "enc": encode_base64(&sealed.enc),
            "ciphertext": encode_base64(&sealed.ciphertext),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], REQUEST_ID);
    let execution = open_execution(response.json().await.unwrap(), &sealed.keys, &plaintext)
        .expect("the result opens");
    assert_eq!(execution.result.status, Status::Completed);
    let stdout = String::from_utf8(execution.result.stdout_bytes()).unwrap();
    assert!(
        SECRETS.iter().all(|secret| stdout.contains(secret)),
        "the guest saw every secret: {stdout}"
    );
    execution
}

fn assert_no_secret_in(lines: &[String]) {
    let module_b64 = encode_base64(&example("hello"));
    for line in lines {
        for secret in SECRETS {
            assert!(!line.contains(secret), "a log line has {secret}: {line}");
            let encoded = encode_base64(secret.as_bytes());
            assert!(
                !line.contains(&encoded[..12]),
                "a log line has {secret} in base64: {line}"
            );
        }
        assert!(
            !line.contains(&module_b64[..64]),
            "a log line has the module: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_put_the_execution_inside_the_request_span_and_no_plaintext() {
    let data_dir = DataDir::new();
    let server = ServerProcess::start_with(
        &data_dir.path,
        &[],
        &[
            ("WASM_HYPERVISOR_LOG_FORMAT", "json"),
            // Debug for our own code and the HTTP layer: more lines that could leak.
            ("RUST_LOG", "info,wasm_hypervisor=debug,tower_http=debug"),
        ],
    );
    let execution = execute_with_secrets(&server).await;
    server.sigterm();
    let exited = server.wait().await;
    assert!(exited.status.success());

    let events: Vec<Value> = exited
        .stderr
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let in_request = |event: &&Value| {
        event["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|span| span["request_id"] == REQUEST_ID))
    };
    // One line for the execution, at info, inside the request's span: no request
    // line besides it.
    let lines: Vec<&Value> = events
        .iter()
        .filter(in_request)
        .filter(|event| {
            event["level"] == "INFO" || event["level"] == "WARN" || event["level"] == "ERROR"
        })
        .collect();
    assert_eq!(lines.len(), 1, "one line for the execution: {lines:?}");
    let recorded = lines[0];
    assert_eq!(recorded["message"], "execution recorded");
    let result = &execution.result;
    assert_eq!(recorded["execution_id"], execution.execution_id.to_string());
    assert_eq!(recorded["status"], "completed");
    assert_eq!(recorded["fuel_consumed"], result.fuel_consumed);
    assert_eq!(recorded["wall_time_us"], result.wall_time_us);
    assert_eq!(recorded["log_index"], 0);
    for field in ["append_us", "elapsed_us", "request_bytes", "result_bytes"] {
        assert!(recorded[field].is_u64(), "{field} missing from {recorded}");
    }
    assert!(recorded["elapsed_us"].as_u64() >= recorded["append_us"].as_u64());
    let span = &recorded["spans"][0];
    assert_eq!(span["name"], "request");
    assert_eq!(span["method"], "POST");
    assert_eq!(span["route"], "/execute");

    // Other requests keep one line each, with their status and latency: here the
    // session the client opened first.
    let session_line = events
        .iter()
        .find(|event| {
            event["message"] == "request finished" && event["spans"][0]["route"] == "/sessions"
        })
        .expect("the session request is logged");
    assert_eq!(session_line["level"], "INFO");
    assert!(
        session_line["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s))
    );
    assert!(session_line["latency_us"].is_u64());

    assert_no_secret_in(&exited.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_are_the_default_and_carry_the_same_span() {
    let data_dir = DataDir::new();
    let server = ServerProcess::start(&data_dir.path);
    let execution = execute_with_secrets(&server).await;
    server.sigterm();
    let exited = server.wait().await;
    assert!(exited.status.success());
    let recorded = exited
        .stderr
        .iter()
        .find(|line| line.contains("execution recorded"))
        .expect("the execution is logged");
    assert!(!recorded.starts_with('{'), "text, not JSON: {recorded}");
    for field in [
        format!("request{{method=POST route=\"/execute\" request_id=\"{REQUEST_ID}\"}}"),
        format!("execution_id={}", execution.execution_id),
        "status=\"completed\"".to_owned(),
    ] {
        assert!(recorded.contains(&field), "{field} missing from {recorded}");
    }
    assert_no_secret_in(&exited.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_id_that_is_not_a_plausible_id_is_replaced_by_a_fresh_one() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(129);
    for sent in ["has space", "quote\"d", long.as_str()] {
        let response = app
            .http
            .get(app.url("/health"))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let returned = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(returned, sent);
        assert!(uuid::Uuid::try_parse(returned).is_ok(), "{returned}");
    }
    let kept = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "0af7651916cd43dd8448eb211c80319c")
        .send()
        .await
        .unwrap();
    assert_eq!(
        kept.headers()["x-request-id"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    app.stop().await;
}
