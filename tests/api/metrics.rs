//! `GET /metrics` after real traffic: parsed as OpenMetrics text, every required
//! series present and moving the right way, and every label value from a fixed set.

use std::collections::BTreeMap;

use wasm_hypervisor::envelope::sha256;
use wasm_hypervisor::payload::Status;

use crate::helpers::{TestApp, example, fixture, limits, request};

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

async fn scrape(app: &TestApp) -> Exposition {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
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
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_real_traffic_with_labels_from_fixed_sets_only() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    for status in Status::ALL {
        let series = [("status", status.as_str())];
        assert_eq!(before.get("wasm_hypervisor_executions_total", &series), 0.0);
    }
    assert_eq!(before.get("wasm_hypervisor_audit_log_size", &[]), 0.0);
    assert_eq!(before.get("wasm_hypervisor_fuel_consumed_total", &[]), 0.0);

    // Five executions: two completed, a trap, an invalid module, and a guest that
    // sleeps into its timeout while the gauges are read.
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
        let metrics = scrape(&app).await;
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

    // Requests that are refused, with ids in their paths and a made-up method.
    let missing_id = uuid::Uuid::new_v4().to_string();
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

    let after = scrape(&app).await;
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

    // Labels: only fixed sets, and nothing that identifies an execution, a
    // session, a module or a path a client sent.
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
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut secrets = vec![missing_id, idle_session.id.to_string()];
    for execution in &executions {
        secrets.push(execution.execution_id.to_string());
        secrets.push(execution.response.execution_id.clone());
        if let Some(hash) = &execution.result.module_sha256 {
            secrets.push(hash.clone());
        }
    }
    secrets.push(hex::encode(sha256(&fixture("exit_code"))));
    for secret in secrets {
        assert!(!text.contains(&secret), "/metrics mentions {secret}");
    }
    app.stop_and_verify_log().await;
}
