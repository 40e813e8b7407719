//! Access control and abuse limits: bearer tokens (for executions and for
//! `/metrics`), the token command, the warning of an open server, per-client
//! request rates and executions in flight, and client addresses behind proxies.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasm_hypervisor_client::{ClientError, Retries};
use wasm_hypervisor_protocol::payload::Status;
use wasm_hypervisor_protocol::receipt;
use wasm_hypervisor_server::access::ClientKey;
use wasm_hypervisor_server::config::Bounded;
use wasm_hypervisor_server::envelope;

use crate::helpers::{
    DataDir, ServerProcess, TEST_TOKEN, TestApp, example, fixture, limits, open_session, request,
    sealed_body, token_digest,
};

fn digest(token: &str) -> String {
    hex::encode(envelope::sha256(token.as_bytes()))
}

/// (status, error code, the whole response's headers) of an answer in the error
/// shape.
async fn error_of(response: reqwest::Response) -> (u16, String, reqwest::header::HeaderMap) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body: Value = response.json().await.expect("errors are JSON");
    assert!(body["error"]["message"].is_string(), "{body}");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    (status, code, headers)
}

fn post_execute(app: &TestApp, body: String) -> reqwest::RequestBuilder {
    app.http
        .post(app.url("/execute"))
        .header("content-type", "application/json")
        .body(body)
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_accepted_rejected_and_required_and_bad_ones_leave_no_trace() {
    let other = "another-accepted-token";
    let app = TestApp::spawn_with(|config| {
        config.auth.tokens_sha256 = vec![token_digest(TEST_TOKEN), token_digest(other)];
        config.clients.requests_per_second = Bounded::constant::<1000>();
    })
    .await;
    let tracked = app.state.quotas.tracked();
    let sessions = app.url("/sessions");

    let missing = app.http.post(&sessions).send().await.unwrap();
    let (status, code, headers) = error_of(missing).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert_eq!(headers["www-authenticate"], "Bearer");
    for authorization in [
        "Bearer guess".to_owned(),
        format!("Bearer {TEST_TOKEN}x"),
        format!("Basic {TEST_TOKEN}"),
        format!("Bearer{TEST_TOKEN}"),
        "Bearer ".to_owned(),
    ] {
        let wrong = app
            .http
            .post(&sessions)
            .header("authorization", &authorization)
            .send()
            .await
            .unwrap();
        let (status, code, headers) = error_of(wrong).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "unauthorized"),
            "{authorization}"
        );
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
    // /execute checks the token before it reads the body.
    let (status, code, _) = error_of(post_execute(&app, "{".into()).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    // Refused tokens created no per-client entries.
    assert_eq!(app.state.quotas.tracked(), tracked);

    // Every accepted token works, the scheme in any case.
    for authorization in [format!("Bearer {TEST_TOKEN}"), format!("bearer {other}")] {
        let accepted = app
            .http
            .post(&sessions)
            .header("authorization", &authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 201, "{authorization}");
    }
    // The test client sends its token: a whole execution goes through.
    let result = app.execute(&request(&fixture("exit_code"))).await.result;
    assert_eq!(result.status, Status::Completed);
    // The auditors' endpoints need none; /metrics, with no metrics token set, is
    // closed to everyone, the client's token included.
    let execution_id = app
        .execute(&request(&fixture("exit_code")))
        .await
        .execution_id;
    for path in [
        "/health".to_owned(),
        "/keys".to_owned(),
        "/log/checkpoint".to_owned(),
        "/log/consistency?first=1&second=2".to_owned(),
        format!("/verify/{execution_id}"),
        "/openapi.json".to_owned(),
    ] {
        let open = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(open.status(), 200, "{path}");
    }
    for token in [None, Some(TEST_TOKEN)] {
        let mut get = app.http.get(app.url("/metrics"));
        if let Some(token) = token {
            get = get.bearer_auth(token);
        }
        let (status, code, headers) = error_of(get.send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{token:?}");
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_have_a_token_of_its_own() {
    let scraper = "scraper-token";
    let app = TestApp::spawn_with(|config| {
        config.auth.tokens_sha256 = vec![token_digest(TEST_TOKEN)];
        config.auth.metrics_tokens_sha256 = vec![token_digest(scraper)];
    })
    .await;
    let metrics = app.url("/metrics");
    let (status, code, headers) = error_of(app.http.get(&metrics).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert_eq!(headers["www-authenticate"], "Bearer");
    // A client's token is not a scraper's.
    let client = app
        .http
        .get(&metrics)
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(client.status(), 401);
    let scraped = app
        .http
        .get(&metrics)
        .bearer_auth(scraper)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    // The whole set, with what only an operator sees.
    let text = scraped.text().await.unwrap();
    assert!(text.contains("wasm_hypervisor_executions_total"), "{text}");
    assert!(
        text.contains("wasm_hypervisor_fuel_consumed_total"),
        "{text}"
    );
    // And a scraper's token opens no session.
    let session = open_session(&app, Some(scraper)).await;
    assert_eq!(session.status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_command_prints_a_fresh_token_and_its_digest() {
    let run = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-hypervisor"))
            .arg("token")
            .output()
            .unwrap();
        assert!(output.status.success());
        let stdout = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        (lines[0].clone(), lines[1].clone())
    };
    let (token, printed_digest) = run();
    assert!(token.len() >= 43, "{token}");
    assert_eq!(printed_digest, digest(&token));
    assert_ne!(run().0, token, "every token is new");

    // The digest configures a server that then accepts the token.
    let app = TestApp::spawn_with(|config| {
        config.auth.tokens_sha256 = vec![printed_digest.parse().unwrap()]
    })
    .await;
    let accepted = open_session(&app, Some(&token)).await;
    assert_eq!(accepted.status(), 201);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_server_says_so_at_start_only_when_it_listens_beyond_loopback() {
    const WARNING: &str = "AUTHENTICATION IS OFF";
    let data_dir = DataDir::new();
    let wide = ServerProcess::start_listening(&data_dir.path, "0.0.0.0:0", &[], &[]);
    assert!(
        wide.stderr_so_far()
            .iter()
            .any(|line| line.contains(WARNING)),
        "{:?}",
        wide.stderr_so_far()
    );
    wide.kill();

    let local = ServerProcess::start(&data_dir.path);
    assert!(
        !local
            .stderr_so_far()
            .iter()
            .any(|line| line.contains(WARNING))
    );
    local.kill();

    let digest = digest(TEST_TOKEN);
    let env = [(
        "WASM_HYPERVISOR_AUTH__TOKENS_SHA256",
        format!("[\"{digest}\"]"),
    )];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let guarded = ServerProcess::start_listening(&data_dir.path, "0.0.0.0:0", &[], &env);
    assert!(
        !guarded
            .stderr_so_far()
            .iter()
            .any(|line| line.contains(WARNING))
    );
    let open = reqwest::Client::new()
        .post(format!("{}/sessions", guarded.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        open.status(),
        401,
        "the token list from the environment is in force"
    );
    guarded.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tokens_and_no_metrics_token_metrics_is_closed_and_the_server_says_so() {
    const NOTICE: &str = "GET /metrics is closed";
    let data_dir = DataDir::new();
    let open = ServerProcess::start(&data_dir.path);
    assert!(
        !open
            .stderr_so_far()
            .iter()
            .any(|line| line.contains(NOTICE))
    );
    open.kill();

    let env = [(
        "WASM_HYPERVISOR_AUTH__TOKENS_SHA256",
        format!("[\"{}\"]", digest(TEST_TOKEN)),
    )];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let guarded = ServerProcess::start_with(&data_dir.path, &[], &env);
    assert!(
        guarded
            .stderr_so_far()
            .iter()
            .any(|line| line.contains(NOTICE)),
        "{:?}",
        guarded.stderr_so_far()
    );
    let scrape = reqwest::Client::new()
        .get(format!("{}/metrics", guarded.base))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(scrape).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    guarded.kill();
}

/// GET /keys as the client at `address`, forwarded by the proxy at 127.0.0.1.
async fn keys_as(app: &TestApp, address: &str) -> reqwest::Response {
    app.http
        .get(app.url("/keys"))
        .header("x-forwarded-for", address)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_recovers_after_it() {
    let app = TestApp::spawn_with(|config| {
        config.clients.requests_per_second = Bounded::constant::<1>();
        config.clients.burst = Bounded::constant::<2>();
        config.clients.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let client = "192.0.2.1";
    assert_eq!(keys_as(&app, client).await.status(), 200);
    assert_eq!(keys_as(&app, client).await.status(), 200);
    let (status, code, headers) = error_of(keys_as(&app, client).await).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert_eq!(headers["retry-after"], "1");
    // Other clients are not affected, and health probes are never limited.
    assert_eq!(keys_as(&app, "192.0.2.2").await.status(), 200);
    for _ in 0..5 {
        let health = app
            .http
            .get(app.url("/health"))
            .header("x-forwarded-for", client)
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
    // Waiting the announced Retry-After is enough (a documented, configured window).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(keys_as(&app, client).await.status(), 200);
    app.stop().await;
}

/// Requests `/keys` until the server answers 429: the caller's bucket is empty.
async fn empty_the_bucket(app: &TestApp) {
    while app
        .http
        .get(app.url("/keys"))
        .send()
        .await
        .unwrap()
        .status()
        != 429
    {}
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_retries_a_rate_limited_verify_after_retry_after_within_its_bound() {
    let app = TestApp::spawn_with(|config| {
        config.clients.requests_per_second = Bounded::constant::<1>();
        config.clients.burst = Bounded::constant::<4>();
    })
    .await;
    let session = app
        .client
        .open_session(&app.identity.public_key)
        .await
        .unwrap();
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
    let execution = app.client.execute(&session, &plaintext).await.unwrap();
    let execution_id = execution.response.execution_id.clone();

    // One try only: the 429 is the caller's, typed, with its Retry-After.
    empty_the_bucket(&app).await;
    let once = app.client.clone().with_retries(Retries::NONE);
    match once.inclusion(&execution_id).await {
        Err(ClientError::Server {
            status: 429,
            code,
            retry_after: Some(_),
            ..
        }) if code == "rate_limited" => {}
        other => panic!("expected 429 rate_limited, got {:?}", other.map(|_| ())),
    }

    // The default retries wait the announced second and get the proof.
    empty_the_bucket(&app).await;
    let answer = app.client.inclusion(&execution_id).await.unwrap();
    let receipt = execution.receipt(&app.base, &app.identity);
    let checks = receipt::check_receipt(&receipt, &answer, &app.identity.public_key);
    assert!(receipt::all_hold(&checks), "{checks:?}");
    // (The log through the state: HTTP is rate limited.)
    assert_eq!(app.state.log.size(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tokens_each_token_has_its_own_rate() {
    let second = "second-token";
    let app = TestApp::spawn_with(|config| {
        config.auth.tokens_sha256 = vec![token_digest(TEST_TOKEN), token_digest(second)];
        config.clients.requests_per_second = Bounded::constant::<1>();
        config.clients.burst = Bounded::constant::<3>();
    })
    .await;
    let open = |token: &'static str| {
        app.http
            .post(app.url("/sessions"))
            .bearer_auth(token)
            .send()
    };
    // Same address, one token drained (at most one refill can happen meanwhile)...
    let mut refused = None;
    for _ in 0..6 {
        let response = open(TEST_TOKEN).await.unwrap();
        if response.status() != 201 {
            refused = Some(error_of(response).await);
            break;
        }
    }
    let (status, code, _) = refused.expect("the first token ran out of requests");
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    // ...and the other token still has its whole burst.
    for _ in 0..3 {
        assert_eq!(open(second).await.unwrap().status(), 201);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    // Not trusted: every request is 127.0.0.1's, whatever it claims.
    let app = TestApp::spawn_with(|config| {
        config.clients.requests_per_second = Bounded::constant::<1>();
        config.clients.burst = Bounded::constant::<3>();
    })
    .await;
    let started = Instant::now();
    let mut refused = 0;
    for n in 0..10 {
        if keys_as(&app, &format!("192.0.2.{n}")).await.status() == 429 {
            refused += 1;
        }
    }
    // At most the burst plus one refill a second got through.
    let allowed = 3 + started.elapsed().as_secs() as usize;
    assert!(10 - refused <= allowed + 1, "{refused} refused");
    app.stop().await;

    // Trusted: each forwarded address is its own client, by either header.
    let app = TestApp::spawn_with(|config| {
        config.clients.requests_per_second = Bounded::constant::<1>();
        config.clients.burst = Bounded::constant::<1>();
        config.clients.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    for n in 0..10 {
        assert_eq!(keys_as(&app, &format!("192.0.2.{n}")).await.status(), 200);
        let forwarded = app
            .http
            .get(app.url("/keys"))
            .header(
                "forwarded",
                format!("for=\"[2001:db8:{n}::1]:4711\";proto=https"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(forwarded.status(), 200);
    }
    // A client that puts a made-up hop in front is still keyed by the hop the
    // proxy added (the rightmost one).
    // (Its bucket of one may have refilled since; the second of two requests in a
    // row cannot have.)
    keys_as(&app, "203.0.113.9, 192.0.2.0").await;
    let spoofed = keys_as(&app, "203.0.113.9, 192.0.2.0").await;
    assert_eq!(error_of(spoofed).await.0, 429);
    assert_eq!(keys_as(&app, "203.0.113.9").await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_gets_429_past_its_executions_in_flight_and_gets_them_back_on_every_path() {
    let app = TestApp::spawn_with(|config| {
        config.clients.max_concurrent_executions = Bounded::constant::<1>();
        config.clients.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let local = ClientKey::address(IpAddr::from([127, 0, 0, 1]));
    let mut sleeper = request(&example("sleep"));
    sleeper.args = vec!["60000".into()];
    sleeper.limits = limits(None, Some(1500));
    let sleeper = serde_json::to_vec(&sleeper).unwrap();
    let quick = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();

    // One execution in flight; the same client's second is refused, another
    // client's runs.
    let body = sealed_body(&app, None, &sleeper).await;
    let busy = tokio::spawn(post_execute(&app, body).send());
    while app.health().await["slots_in_use"] != 1 {
        tokio::task::yield_now().await;
    }
    assert_eq!(app.state.quotas.executions(local), 1);
    let body = sealed_body(&app, None, &quick).await;
    let (status, code, headers) =
        error_of(post_execute(&app, body.clone()).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (429, "too_many_executions"));
    assert_eq!(headers["retry-after"], "1");
    let other = sealed_body(&app, None, &quick).await;
    let elsewhere = post_execute(&app, other)
        .header("x-forwarded-for", "192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 200);
    // Success (here a timeout, an execution like any other) gives the slot back;
    // the refused request's session was not used, so it retries unchanged.
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);
    assert_eq!(app.state.quotas.executions(local), 0);
    assert_eq!(post_execute(&app, body).send().await.unwrap().status(), 200);

    // A request refused before it runs gives it back at once.
    let (status, _, _) = error_of(post_execute(&app, "{".into()).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(app.state.quotas.executions(local), 0);

    // A client that hangs up: the slot stays taken while its execution runs (it
    // is still using the machine), and comes back when the execution ends.
    let body = sealed_body(&app, None, &sleeper).await;
    let hung_up = tokio::spawn(post_execute(&app, body).send());
    while app.health().await["slots_in_use"] != 1 {
        tokio::task::yield_now().await;
    }
    hung_up.abort();
    assert!(hung_up.await.unwrap_err().is_cancelled());
    assert_eq!(app.state.quotas.executions(local), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.state.quotas.executions(local) != 0 {
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = sealed_body(&app, None, &quick).await;
    assert_eq!(post_execute(&app, body).send().await.unwrap().status(), 200);
    assert_eq!(app.stop_and_verify_log().await, 5);
}
