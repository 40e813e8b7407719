//! Usage and quotas (protocol v1.2 §U): what `GET /usage` counts, a client over
//! quota refused with 429 `quota_exceeded` while another is served, figures seen
//! only by their own client, and counts shared by the replicas of a cluster.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use wasm_hypervisor_client::{Client, ClientError, Execution, Wire};
use wasm_hypervisor_protocol::wire::UsageResponse;

use crate::helpers::{DataDir, ServerProcess, TEST_TOKEN, TestApp, fixture, request, token_digest};
use crate::postgres;

/// The bytes AES-128-GCM adds to a plaintext (protocol §2): a sealed request is
/// its plaintext and this tag.
const TAG_BYTES: u64 = 16;

async fn usage_of(http: &reqwest::Client, base: &str, token: Option<&str>) -> reqwest::Response {
    let mut get = http.get(format!("{base}/usage"));
    if let Some(token) = token {
        get = get.bearer_auth(token);
    }
    get.send().await.unwrap()
}

async fn usage(http: &reqwest::Client, base: &str, token: Option<&str>) -> UsageResponse {
    let response = usage_of(http, base, token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Runs the small `exit_code` module with `client`: (plaintext, execution).
async fn run(client: &Client) -> Result<(Vec<u8>, Execution), ClientError> {
    let identity = client.identity(None).await?;
    let session = client.open_session(&identity.public_key).await?;
    let plaintext = client
        .wire()
        .encode_request(&request(&fixture("exit_code")))
        .unwrap();
    let execution = client.execute(&session, &plaintext).await?;
    Ok((plaintext, execution))
}

#[tokio::test]
async fn usage_counts_executions_their_fuel_and_their_sealed_bytes() {
    let app = TestApp::spawn_with(|config| {
        config.quotas.per_day.fuel = 1 << 40;
    })
    .await;
    let before = usage(&app.http, &app.base, None).await;
    assert_eq!(before.total.executions, 0);
    let mut fuel = 0;
    let mut bytes_in = 0;
    let mut bytes_out = 0;
    for _ in 0..3 {
        let (plaintext, execution) = run(&app.client).await.unwrap();
        fuel += execution.result.fuel_consumed;
        bytes_in += plaintext.len() as u64 + TAG_BYTES;
        bytes_out += execution.response.ciphertext.0.len() as u64;
    }
    // Also counted: a request that is opened but refused (`invalid_request`).
    let refused = app.execute_plaintext(b"not a request").await;
    fuel += refused.result.fuel_consumed;
    bytes_in += b"not a request".len() as u64 + TAG_BYTES;
    bytes_out += refused.response.ciphertext.0.len() as u64;
    assert!(fuel > 0);
    let after = usage(&app.http, &app.base, None).await;
    for counts in [after.hour.used, after.day.used, after.total] {
        assert_eq!(counts.executions, 4);
        assert_eq!(counts.fuel, fuel);
        assert_eq!(counts.bytes_in, bytes_in);
        assert_eq!(counts.bytes_out, bytes_out);
    }
    // The windows are the current UTC hour and day, with their quotas.
    assert!(
        after.hour.start.ends_with(":00:00Z"),
        "{}",
        after.hour.start
    );
    assert!(
        after.day.start.ends_with("T00:00:00Z"),
        "{}",
        after.day.start
    );
    assert_eq!(after.day.quota.fuel, Some(1 << 40));
    assert_eq!(after.hour.quota.executions, None);
    // No series of usage in the metrics (only the route's requests, counted as
    // every route's).
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let names = metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next());
    for name in names {
        assert!(!name.contains("usage"), "{name}");
    }
    app.stop_and_verify_log().await;
}

#[tokio::test]
async fn a_client_over_its_quota_gets_429_and_another_client_is_served() {
    let other = "another-test-token";
    let app = TestApp::spawn_with(|config| {
        config.auth.tokens_sha256 = vec![token_digest(TEST_TOKEN), token_digest(other)];
        config.quotas.per_hour.executions = 2;
    })
    .await;
    run(&app.client).await.unwrap();
    run(&app.client).await.unwrap();
    let Err(refused) = run(&app.client).await else {
        panic!("the third execution in the hour ran");
    };
    let ClientError::Server {
        status,
        code,
        retry_after,
        ..
    } = refused
    else {
        panic!("expected a refusal, got {refused}");
    };
    assert_eq!((status, code.as_str()), (429, "quota_exceeded"));
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    // Refused before its session was used: the log has only the two.
    assert_eq!(app.state.log.size(), 2);

    let other_client = Client::new(&app.base, Some(other.to_owned())).with_wire(Wire::V1);
    run(&other_client).await.unwrap();

    // Each token sees its own figures, and the quota's state.
    let mine = usage(&app.http, &app.base, Some(TEST_TOKEN)).await;
    let theirs = usage(&app.http, &app.base, Some(other)).await;
    assert_eq!(mine.hour.used.executions, 2);
    assert_eq!(mine.hour.quota.executions, Some(2));
    assert_eq!(theirs.hour.used.executions, 1);
    assert_eq!(theirs.total.executions, 1);
    // Without a valid token, nothing.
    assert_eq!(
        usage_of(&app.http, &app.base, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        usage_of(&app.http, &app.base, Some("a-guess"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop_and_verify_log().await;
}

/// The environment of a replica of the cluster at `url`.
fn replica_env<'a>(url: &'a str, key_file: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("WASM_HYPERVISOR_CLUSTER__DATABASE_URL", url),
        ("WASM_HYPERVISOR_SIGNING_KEY_FILE", key_file),
        ("WASM_HYPERVISOR_ORIGIN", "usage.test/wasm-hypervisor"),
        ("WASM_HYPERVISOR_QUOTAS__PER_HOUR__EXECUTIONS", "3"),
    ]
}

/// Asks `base` for the address's usage until its hour counts `executions`.
async fn until_counted(http: &reqwest::Client, base: &str, executions: u64) -> UsageResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = usage(http, base, None).await;
        if seen.hour.used.executions == executions {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{base} still counts {:?}, not {executions}",
            seen.hour.used
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn replicas_share_each_clients_counts_and_quota() {
    let (url, sql) = postgres::shared().database_with_sql();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("signing_key.pem");
    let key_file = key_file.to_str().unwrap();
    let dirs = [DataDir::new(), DataDir::new()];
    // One after the other: the first creates the key file the second reads.
    let replicas: Vec<ServerProcess> = dirs
        .iter()
        .map(|dir| ServerProcess::start_with(&dir.path, &[], &replica_env(&url, key_file)))
        .collect();
    let clients: Vec<Client> = replicas
        .iter()
        .map(|replica| Client::new(&replica.base, None))
        .collect();
    let http = reqwest::Client::new();

    let (_, first) = run(&clients[0]).await.unwrap();
    let (_, second) = run(&clients[0]).await.unwrap();
    let (_, third) = run(&clients[1]).await.unwrap();
    let fuel = [first, second, third]
        .iter()
        .map(|execution| execution.result.fuel_consumed)
        .sum::<u64>();
    for replica in &replicas {
        let seen = until_counted(&http, &replica.base, 3).await;
        assert_eq!(seen.hour.used.fuel, fuel);
        assert_eq!(seen.total.executions, 3);
    }
    // The quota of 3 is used, whichever replica is asked.
    for client in &clients {
        match run(client).await {
            Err(ClientError::Server { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (429, "quota_exceeded"))
            }
            other => panic!("expected quota_exceeded, got {:?}", other.map(|_| ())),
        }
    }
    // Rows for the hour, the day and the total, each of the three executions.
    let rows = sql.run("SELECT count(*) FROM usage_counts WHERE executions = 3");
    assert_eq!(rows.trim(), "3");
    drop(replicas);
}
