//! Capacity and isolation: pooled instances come back clean, modules compile once,
//! hostile guests end in bounded time without slowing `/health`, and 150 clients at
//! once each get their own answer or a quick, retryable refusal.

use std::time::{Duration, Instant};

use wasm_hypervisor_client::ClientError;
use wasm_hypervisor_protocol::payload::{ExecutionRequest, RequestedLimits, Status, encode_base64};
use wasm_hypervisor_server::config::{Bounded, Millis};

use crate::helpers::{TestApp, example, fixture, limits, request};

#[tokio::test(flavor = "multi_thread")]
async fn executions_never_see_each_others_memory_globals_or_growth() {
    let app = TestApp::spawn().await;
    let probe = request(&fixture("memory_probe"));
    for _ in 0..5 {
        let result = app.execute(&probe).await.result;
        assert_eq!(result.stdout_bytes(), b"fresh\n");
    }
    let mut concurrent = Vec::new();
    for _ in 0..10 {
        let (client, key, probe) = (app.client.clone(), app.identity.public_key, probe.clone());
        concurrent.push(tokio::spawn(async move {
            let session = client.open_session(&key).await.unwrap();
            let plaintext = serde_json::to_vec(&probe).unwrap();
            client.execute(&session, &plaintext).await.unwrap().result
        }));
    }
    for run in concurrent {
        assert_eq!(run.await.unwrap().stdout_bytes(), b"fresh\n");
    }
    app.stop_and_verify_log().await;
}

/// A module no earlier request can have compiled: `trap.wat` plus a custom section
/// holding `tag`.
fn unique_module(tag: &str) -> Vec<u8> {
    let mut module = fixture("exit_code");
    let name = b"tag";
    let payload_len = 1 + name.len() + tag.len();
    module.push(0); // custom section id
    module.push(payload_len as u8);
    module.push(name.len() as u8);
    module.extend_from_slice(name);
    module.extend_from_slice(tag.as_bytes());
    module
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_for_one_new_module_compile_it_once() {
    let app = TestApp::spawn().await;
    let module = request(&unique_module(&uuid::Uuid::new_v4().to_string()));
    let (hits_before, misses_before) = app.executor.module_cache_stats();
    let mut runs = Vec::new();
    for _ in 0..20 {
        let (client, key, module) = (app.client.clone(), app.identity.public_key, module.clone());
        runs.push(tokio::spawn(async move {
            let session = client.open_session(&key).await.unwrap();
            let plaintext = serde_json::to_vec(&module).unwrap();
            client.execute(&session, &plaintext).await.unwrap().result
        }));
    }
    for run in runs {
        assert_eq!(run.await.unwrap().exit_code, Some(42));
    }
    let (hits, misses) = app.executor.module_cache_stats();
    assert_eq!(misses - misses_before, 1, "compiled once");
    assert_eq!(hits - hits_before, 19);
    // A module that does not link is cached as such: asking again compiles nothing.
    let broken = request(&fixture("missing_import"));
    app.execute(&broken).await;
    let (_, misses_after_first) = app.executor.module_cache_stats();
    let result = app.execute(&broken).await.result;
    assert_eq!(result.status, Status::InvalidModule);
    assert_eq!(app.executor.module_cache_stats().1, misses_after_first);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_guests_end_with_their_status_in_bounded_time_while_health_answers() {
    let _alone = crate::helpers::load_heavy_test().await;
    let app =
        TestApp::spawn_with(|config| config.limits.timeout_ms = Millis::constant::<3_000>()).await;
    let with = |module: Vec<u8>, limits: Option<RequestedLimits>| ExecutionRequest {
        limits,
        ..request(&module)
    };
    let mut too_big = fixture("trap");
    too_big.resize((1 << 20) + 1, 0);
    let mut sleeper = with(example("sleep"), limits(None, Some(500)));
    sleeper.args = vec!["60000".into()];
    let flood = RequestedLimits {
        timeout_ms: Some(500),
        max_output_bytes: Some(4096),
        ..Default::default()
    };
    let cases: Vec<(&str, ExecutionRequest, &[Status], u64)> = vec![
        (
            "infinite loop, fuel",
            with(fixture("infinite_loop"), limits(Some(5_000_000), None)),
            &[Status::FuelExhausted],
            10,
        ),
        (
            "infinite loop, time",
            with(fixture("infinite_loop"), limits(None, Some(500))),
            &[Status::Timeout],
            10,
        ),
        (
            "start function loop",
            with(fixture("start_function_loop"), limits(None, Some(500))),
            &[Status::Timeout],
            10,
        ),
        (
            "memory growth bomb",
            with(fixture("memory_bomb"), None),
            &[Status::MemoryLimit],
            10,
        ),
        (
            "initial memory too large",
            with(fixture("initial_memory_too_large"), None),
            &[Status::MemoryLimit],
            10,
        ),
        (
            "table growth bomb",
            with(fixture("table_bomb"), None),
            &[Status::MemoryLimit],
            10,
        ),
        (
            "unbounded recursion",
            with(fixture("unbounded_recursion"), None),
            &[Status::Trap],
            10,
        ),
        (
            "output flood",
            with(fixture("output_flood"), Some(flood)),
            &[Status::Timeout, Status::FuelExhausted],
            10,
        ),
        ("sleep past the timeout", sleeper, &[Status::Timeout], 10),
        (
            "missing import",
            with(fixture("missing_import"), None),
            &[Status::InvalidModule],
            10,
        ),
        (
            "random bytes",
            with(b"\x7fELF random bytes, not wasm".to_vec(), None),
            &[Status::InvalidModule],
            10,
        ),
        (
            "just over the size limit",
            with(too_big, None),
            &[Status::InvalidModule],
            10,
        ),
    ];

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (http, url, done) = (app.http.clone(), app.url("/health"), done.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let response = http.get(&url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                worst = worst.max(started.elapsed());
            }
            worst
        })
    };
    let mut runs = Vec::new();
    for (name, req, expected, bound) in cases {
        let (client, key) = (app.client.clone(), app.identity.public_key);
        runs.push(tokio::spawn(async move {
            let started = Instant::now();
            let session = client.open_session(&key).await.unwrap();
            let plaintext = serde_json::to_vec(&req).unwrap();
            let result = client.execute(&session, &plaintext).await.unwrap().result;
            let took = started.elapsed();
            assert!(
                expected.contains(&result.status),
                "{name}: {:?} {:?}",
                result.status,
                result.error
            );
            assert!(took < Duration::from_secs(bound), "{name} took {took:?}");
            (name, took)
        }));
    }
    for run in runs {
        let (name, took) = run.await.unwrap();
        eprintln!("hostile guest `{name}` ended in {took:?}");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = poller.await.unwrap();
    eprintln!("worst /health latency during the hostile suite: {worst:?}");
    assert!(worst < Duration::from_secs(1), "/health took {worst:?}");
    // The server is still fine for everyone else.
    assert_eq!(
        app.execute(&request(&fixture("exit_code")))
            .await
            .result
            .exit_code,
        Some(42)
    );
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_hundred_fifty_clients_get_their_own_answers_or_a_retryable_503() {
    let _alone = crate::helpers::load_heavy_test().await;
    const CLIENTS: usize = 150;
    const SLOTS: usize = 10;
    let app = TestApp::spawn_with(|config| {
        config.execution.max_concurrent = Bounded::constant::<{ SLOTS as u64 }>();
        config.execution.max_queued = Bounded::constant::<20>();
        config.execution.queue_timeout_ms = Millis::constant::<500>();
        // Each CPU-bound guest must end by its fuel, which proves the answer is
        // its own; time is not what this test is about, and on a loaded machine
        // ten guests sharing two cores can take seconds each.
        config.limits.timeout_ms = Millis::constant::<60_000>();
    })
    .await;
    let echo = example("hello");
    let spin = fixture("infinite_loop");
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (client, key) = (app.client.clone(), app.identity.public_key);
        let cpu_bound = n % 2 == 0;
        // Each client's request is its own: a distinct stdin, or a distinct fuel
        // budget that its result must report back exactly.
        let mut req = request(if cpu_bound { &spin } else { &echo });
        let fuel = 100_000_000 + n as u64;
        if cpu_bound {
            req.limits = limits(Some(fuel), None);
        } else {
            req.stdin = Some(encode_base64(format!("client {n}").as_bytes()));
        }
        clients.push(tokio::spawn(async move {
            let session = client.open_session(&key).await.unwrap();
            let plaintext = serde_json::to_vec(&req).unwrap();
            match client.execute(&session, &plaintext).await {
                Ok(execution) => {
                    let result = execution.result;
                    if cpu_bound {
                        assert_eq!(result.status, Status::FuelExhausted);
                        assert_eq!(
                            result.fuel_consumed, fuel,
                            "client {n} got another's result"
                        );
                    } else {
                        let stdout = String::from_utf8(result.stdout_bytes()).unwrap();
                        let own = format!("client {n}");
                        assert!(stdout.ends_with(&own), "client {n} got {stdout:?}");
                    }
                    true
                }
                Err(ClientError::Server {
                    status,
                    retry_after,
                    ..
                }) => {
                    assert!(status == 503 || status == 429, "status {status}");
                    assert!(retry_after.is_some_and(|s| s >= 1), "no Retry-After");
                    false
                }
                Err(other) => panic!("client {n}: {other}"),
            }
        }));
    }
    let all = async {
        let mut answered = 0;
        for client in clients {
            answered += usize::from(client.await.unwrap());
        }
        answered
    };
    let answered = tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("no client hangs");
    let peak = app.executor.peak_slots_in_use();
    eprintln!(
        "{answered} of {CLIENTS} answered, {} refused; peak guests at once: {peak}",
        CLIENTS - answered
    );
    assert!(
        peak <= SLOTS,
        "{peak} guests ran at once; the limit is {SLOTS}"
    );
    assert!(answered >= SLOTS, "at least the first wave is answered");
    assert_eq!(app.health().await["slots_peak"], peak);
    let records = app.stop_and_verify_log().await;
    assert_eq!(
        records, answered,
        "every answered execution, and only those, is logged"
    );
}
