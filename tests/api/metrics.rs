//! `GET /metrics` after real traffic: parsed as OpenMetrics text, every required
//! series present and moving the right way, and every label value from a fixed set;
//! without a metrics token, nothing that one execution's content moves.

use std::collections::BTreeMap;

use wasm_hypervisor_client::Execution;
use wasm_hypervisor_protocol::payload::{Status, encode_base64};
use wasm_hypervisor_server::config::TokenDigest;
use wasm_hypervisor_server::envelope::sha256;

use crate::helpers::{TestApp, example, fixture, limits, request, token_digest};

/// The metrics token of the tests that need every series.
const SCRAPER_TOKEN: &str = "scraper-token-please-ignore";

fn scraper_digest() -> TokenDigest {
    token_digest(SCRAPER_TOKEN)
}

/// The series an open `/metrics` may show (PROTOCOL.md, "Metrics").
const PUBLIC_SERIES: [&str; 9] = [
    "wasm_hypervisor_http_requests_total",
    "wasm_hypervisor_executions_total",
    "wasm_hypervisor_executions_in_flight",
    "wasm_hypervisor_execution_queue_depth",
    "wasm_hypervisor_sessions_pending",
    "wasm_hypervisor_audit_log_size",
    "wasm_hypervisor_async_executions_total",
    "wasm_hypervisor_async_executions_pending",
    "wasm_hypervisor_async_results_stored",
];

/// One sample line: `name{label="value",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A whole exposition; parsing panics on any line that is not a comment, a
/// well-formed sample or the final `# EOF`.
struct Exposition {
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.pop(), Some("# EOF"), "OpenMetrics ends with # EOF");
        let samples = lines
            .into_iter()
            .filter(|line| !line.starts_with('#'))
            .map(parse_sample)
            .collect();
        Exposition { samples }
    }

    /// The value of the series with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no series {name} {labels:?}"))
    }
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = match line.rfind('}') {
        Some(end) => (&line[..=end], line[end + 1..].trim()),
        None => line.split_once(' ').expect("a sample has a value"),
    };
    let value: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("bad value in {line:?}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap(), line)),
        None => (series, BTreeMap::new()),
    };
    assert!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "bad metric name in {line:?}"
    );
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn parse_labels(text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels in {line:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    labels
}

/// Scrapes with the metrics token.
async fn scrape(app: &TestApp) -> Exposition {
    scrape_as(app, Some(SCRAPER_TOKEN)).await
}

async fn scrape_as(app: &TestApp, token: Option<&str>) -> Exposition {
    let mut get = app.http.get(app.url("/metrics"));
    if let Some(token) = token {
        get = get.bearer_auth(token);
    }
    let response = get.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    Exposition::parse(&response.text().await.unwrap())
}

/// The label values the server may use, and nothing else.
fn label_value_is_from_a_fixed_set(key: &str, value: &str) -> bool {
    const ROUTES: [&str; 9] = [
        "/sessions",
        "/execute",
        "/keys",
        "/health",
        "/metrics",
        "/log/checkpoint",
        "/log/consistency",
        "/verify/{execution_id}",
        "unmatched",
    ];
    const METHODS: [&str; 8] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
    ];
    match key {
        "route" => ROUTES.contains(&value),
        "method" => METHODS.contains(&value),
        "status" => {
            Status::ALL.iter().any(|s| s.as_str() == value)
                || (value.len() == 3 && value.parse::<u16>().is_ok_and(|c| (100..600).contains(&c)))
        }
        "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
        // Protocol v1.1's body types and plaintext formats.
        "body" => ["json", "binary"].contains(&value),
        "plaintext" => ["json", "cbor"].contains(&value),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_real_traffic_with_labels_from_fixed_sets_only() {
    let app =
        TestApp::spawn_with(|config| config.auth.metrics_tokens_sha256 = vec![scraper_digest()])
            .await;
    let before = scrape(&app).await;
    for status in Status::ALL {
        let series = [("status", status.as_str())];
        assert_eq!(before.get("wasm_hypervisor_executions_total", &series), 0.0);
    }
    assert_eq!(before.get("wasm_hypervisor_audit_log_size", &[]), 0.0);
    assert_eq!(before.get("wasm_hypervisor_fuel_consumed_total", &[]), 0.0);

    let traffic = five_executions(&app).await;
    // Requests that are refused, with ids in their paths and a made-up method.
    let missing_id = uuid::Uuid::new_v4().to_string();
    send_refused_requests(&app, &missing_id).await;

    let after = scrape(&app).await;
    assert_executions_counted(&after, &traffic.executions);
    assert_requests_counted(&after, traffic.scrapes);
    let mut secrets = vec![missing_id, traffic.idle_session];
    for execution in &traffic.executions {
        secrets.push(execution.execution_id.to_string());
        secrets.push(execution.response.execution_id.clone());
        if let Some(hash) = &execution.result.module_sha256 {
            secrets.push(hash.to_string());
        }
    }
    secrets.push(hex::encode(sha256(&fixture("exit_code"))));
    assert_nothing_identifies(&app, &after, &secrets).await;
    app.stop_and_verify_log().await;
}

/// What [`five_executions`] made happen.
struct Traffic {
    executions: Vec<Execution>,
    /// The id of a session opened and never used.
    idle_session: String,
    /// Scrapes of `/metrics` so far (the test's first one included).
    scrapes: u32,
}

/// Five executions: two completed, a trap, an invalid module, and a guest that
/// sleeps into its timeout while the gauges are read (with a session left idle).
async fn five_executions(app: &TestApp) -> Traffic {
    let mut executions = vec![
        app.execute(&request(&fixture("exit_code"))).await,
        app.execute(&request(&fixture("exit_code"))).await,
        app.execute(&request(&fixture("trap"))).await,
        app.execute(&request(b"not a wasm module")).await,
    ];
    let mut sleeper = request(&example("sleep"));
    sleeper.args = vec!["60000".into()];
    sleeper.limits = limits(None, Some(1000));
    let sleeping = {
        let client = app.client.clone();
        let key = app.identity.public_key;
        let plaintext = serde_json::to_vec(&sleeper).unwrap();
        tokio::spawn(async move {
            let session = client.open_session(&key).await.unwrap();
            client.execute(&session, &plaintext).await.unwrap()
        })
    };
    let idle_session = app
        .client
        .open_session(&app.identity.public_key)
        .await
        .unwrap();
    // The gauges are read at scrape time: wait for the sleeper to hold its slot.
    // Scrapes so far (`before`); a scrape counts the ones before it, not itself.
    let mut scrapes = 1;
    let during = loop {
        let metrics = scrape(app).await;
        scrapes += 1;
        if metrics.get("wasm_hypervisor_executions_in_flight", &[]) == 1.0 {
            break metrics;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(during.get("wasm_hypervisor_sessions_pending", &[]), 1.0);
    assert_eq!(
        during.get("wasm_hypervisor_execution_queue_depth", &[]),
        0.0
    );
    executions.push(sleeping.await.unwrap());
    Traffic {
        executions,
        idle_session: idle_session.id.to_string(),
        scrapes,
    }
}

/// Requests refused 404 or 405, one with `missing_id` in its path and one with
/// a made-up method.
async fn send_refused_requests(app: &TestApp, missing_id: &str) {
    let refused = [
        (reqwest::Method::GET, format!("/verify/{missing_id}"), 404),
        (reqwest::Method::GET, format!("/no/such/{missing_id}"), 404),
        (
            reqwest::Method::from_bytes(b"BREW").unwrap(),
            "/health".to_owned(),
            405,
        ),
    ];
    for (method, path, status) in &refused {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), *status, "{method} {path}");
    }
}

/// The execution series after [`five_executions`]: counts by status, fuel and
/// guest time.
fn assert_executions_counted(after: &Exposition, executions: &[Execution]) {
    let statuses: Vec<Status> = executions.iter().map(|e| e.result.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Completed,
            Status::Completed,
            Status::Trap,
            Status::InvalidModule,
            Status::Timeout
        ]
    );
    for status in Status::ALL {
        let expected = statuses.iter().filter(|s| **s == status).count() as f64;
        let series = [("status", status.as_str())];
        assert_eq!(
            after.get("wasm_hypervisor_executions_total", &series),
            expected,
            "{status:?}"
        );
    }
    let fuel: u64 = executions.iter().map(|e| e.result.fuel_consumed).sum();
    assert!(fuel > 0);
    assert_eq!(
        after.get("wasm_hypervisor_fuel_consumed_total", &[]),
        fuel as f64
    );
    // Guest time: the four executions that started a guest, their wall_time_us.
    let ran: Vec<_> = executions
        .iter()
        .filter(|e| e.result.status != Status::InvalidModule)
        .collect();
    assert_eq!(
        after.get("wasm_hypervisor_execution_duration_seconds_count", &[]),
        ran.len() as f64
    );
    let guest_seconds: f64 = ran.iter().map(|e| e.result.wall_time_us as f64 / 1e6).sum();
    let sum = after.get("wasm_hypervisor_execution_duration_seconds_sum", &[]);
    assert!(
        (sum - guest_seconds).abs() < 1e-6,
        "{sum} != {guest_seconds}"
    );
    assert!(sum >= 1.0, "the sleeper ran into its 1 s timeout");
    assert_compiles_appends_and_gauges(after);
}

/// After [`five_executions`]: five modules compiled or found compiled, five
/// appends, and the gauges back at rest but for the idle session.
fn assert_compiles_appends_and_gauges(after: &Exposition) {
    // Each of the five modules was compiled or found compiled in the module cache
    // (with a cache, the second exit_code is a hit); every execution was appended.
    let compiles = after.get("wasm_hypervisor_compile_duration_seconds_count", &[]);
    let cache_hits = after.get("wasm_hypervisor_module_cache_hits_total", &[]);
    assert_eq!(compiles + cache_hits, 5.0, "{compiles} + {cache_hits}");
    assert_eq!(
        after.get("wasm_hypervisor_audit_append_duration_seconds_count", &[]),
        5.0
    );
    assert_eq!(after.get("wasm_hypervisor_audit_log_size", &[]), 5.0);
    assert_eq!(after.get("wasm_hypervisor_executions_in_flight", &[]), 0.0);
    assert_eq!(after.get("wasm_hypervisor_execution_queue_depth", &[]), 0.0);
    assert_eq!(after.get("wasm_hypervisor_sessions_pending", &[]), 1.0);
    assert!(
        after
            .value("wasm_hypervisor_module_cache_misses_total", &[])
            .is_some()
    );
}

/// The HTTP series after [`five_executions`], [`send_refused_requests`] and
/// `scrapes` scrapes, by route template, method and status.
fn assert_requests_counted(after: &Exposition, scrapes: u32) {
    let requests = "wasm_hypervisor_http_requests_total";
    let counted = |route, method, status| {
        after.get(
            requests,
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(counted("/execute", "POST", "200"), 5.0);
    assert_eq!(counted("/sessions", "POST", "201"), 6.0);
    assert_eq!(counted("/keys", "GET", "200"), 1.0);
    assert_eq!(counted("/verify/{execution_id}", "GET", "404"), 1.0);
    assert_eq!(counted("unmatched", "GET", "404"), 1.0);
    assert_eq!(counted("/health", "other", "405"), 1.0);
    assert_eq!(counted("/metrics", "GET", "200"), f64::from(scrapes));
    assert_eq!(
        after.get(
            "wasm_hypervisor_http_request_duration_seconds_count",
            &[("route", "/execute")]
        ),
        5.0
    );
}

/// Labels only from fixed sets, and none of `secrets` (what identifies an
/// execution, a session, a module or a path a client sent) in the text.
async fn assert_nothing_identifies(app: &TestApp, after: &Exposition, secrets: &[String]) {
    for sample in &after.samples {
        for (key, value) in &sample.labels {
            assert!(
                label_value_is_from_a_fixed_set(key, value),
                "{} has the label {key}={value:?}",
                sample.name
            );
        }
    }
    let text = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(SCRAPER_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "/metrics mentions {secret}");
    }
}

/// Every series of `after` with its step since `before` (a series absent before
/// counts from 0).
fn steps(before: &Exposition, after: &Exposition) -> BTreeMap<String, f64> {
    after
        .samples
        .iter()
        .map(|sample| {
            let labels: Vec<(&str, &str)> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let was = before.value(&sample.name, &labels).unwrap_or(0.0);
            (
                format!("{}{:?}", sample.name, sample.labels),
                sample.value - was,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_metrics_endpoint_has_no_series_that_reveals_an_executions_fuel_or_time() {
    // No token of either kind: /metrics is open, to the public series.
    let app = TestApp::spawn().await;
    let mut runs = Vec::new();
    // The same guest on 10 and on 1,000 bytes of input: different fuel, different
    // time, and (the module is cached after the first run) the same steps.
    for stdin_bytes in [10, 1000, 10, 1000] {
        let before = scrape_as(&app, None).await;
        let mut hashing = request(&example("sha256sum"));
        hashing.stdin = Some(encode_base64(&vec![b'x'; stdin_bytes]));
        let execution = app.execute(&hashing).await;
        assert_eq!(execution.result.status, Status::Completed);
        let after = scrape_as(&app, None).await;
        for sample in &after.samples {
            assert!(
                PUBLIC_SERIES.contains(&sample.name.as_str()),
                "{} is on an open /metrics",
                sample.name
            );
        }
        runs.push((execution.result, steps(&before, &after)));
    }
    let (small, large) = (&runs[2], &runs[3]);
    assert!(large.0.fuel_consumed > small.0.fuel_consumed);
    // Every series moved by one request or execution at most...
    for (_, steps) in &runs {
        for (series, step) in steps {
            assert!([0.0, 1.0].contains(step), "{series} moved by {step}");
        }
    }
    // ...and by the same around either input, so no step carries its fuel.
    assert_eq!(small.1, large.1);
    // Executions are still counted by status, and the gauges are there.
    let last = scrape_as(&app, None).await;
    assert_eq!(
        last.get(
            "wasm_hypervisor_executions_total",
            &[("status", "completed")]
        ),
        4.0
    );
    assert_eq!(last.get("wasm_hypervisor_audit_log_size", &[]), 4.0);
    assert_eq!(last.get("wasm_hypervisor_sessions_pending", &[]), 0.0);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_metrics_token_every_series_is_shown_and_without_it_only_the_public_ones() {
    let app =
        TestApp::spawn_with(|config| config.auth.metrics_tokens_sha256 = vec![scraper_digest()])
            .await;
    let mut hashing = request(&example("sha256sum"));
    hashing.stdin = Some(encode_base64(b"0123456789"));
    let execution = app.execute(&hashing).await;
    let full = scrape(&app).await;
    assert_eq!(
        full.get("wasm_hypervisor_fuel_consumed_total", &[]),
        execution.result.fuel_consumed as f64
    );
    for series in [
        "wasm_hypervisor_execution_duration_seconds_count",
        "wasm_hypervisor_compile_duration_seconds_count",
        "wasm_hypervisor_module_cache_misses_total",
        "wasm_hypervisor_audit_append_duration_seconds_count",
    ] {
        assert_eq!(full.get(series, &[]), 1.0, "{series}");
    }
    for series in PUBLIC_SERIES {
        assert!(
            full.samples.iter().any(|sample| sample.name == series),
            "{series}"
        );
    }
    // Without the token: 401, not the public set.
    let refused = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    app.stop_and_verify_log().await;
}
