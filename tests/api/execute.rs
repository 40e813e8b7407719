//! Every execution status, produced by real guests: C programs compiled with clang
//! (`examples/`) and hostile WAT fixtures (`tests/fixtures/`).

use std::time::{Duration, Instant};

use wasm_hypervisor_protocol::payload::{RequestedLimits, Status, encode_base64};

use crate::helpers::{TestApp, example, fixture, limits, request};

#[tokio::test(flavor = "multi_thread")]
async fn a_c_program_gets_its_args_env_and_stdin_and_exits_zero() {
    let app = TestApp::spawn().await;
    let mut req = request(&example("hello"));
    req.args = vec!["one".into(), "two words".into()];
    req.env.insert("NAME".into(), "wasm".into());
    req.stdin = Some(encode_base64(b"line\n"));
    let execution = app.execute(&req).await;
    let result = &execution.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(
        String::from_utf8(result.stdout_bytes()).unwrap(),
        "hello from wasm\narg[1]=one\narg[2]=two words\nNAME=wasm\nstdin: 5 bytes\nline\n"
    );
    assert_eq!(result.stderr_bytes(), b"hello: done\n");
    assert!(!result.stdout_truncated && !result.stderr_truncated);
    assert!(result.fuel_consumed > 0);
    assert!(
        result.engine.starts_with("wasmtime 48."),
        "{}",
        result.engine
    );
    assert_eq!(
        result.module_sha256.as_deref(),
        Some(hex::encode(sha256(&example("hello"))).as_str())
    );
    assert_eq!(execution.response.log_index, 0);
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_sees_no_host_environment() {
    let app = TestApp::spawn().await;
    // hello prints NAME only if set; the server's own environment has PATH, HOME...
    let execution = app.execute(&request(&example("hello"))).await;
    let stdout = String::from_utf8(execution.result.stdout_bytes()).unwrap();
    assert_eq!(stdout, "hello from wasm\nstdin: 0 bytes\n");
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_zero_exit_is_completed_with_that_code() {
    let app = TestApp::spawn().await;
    let mut req = request(&example("hello"));
    req.env.insert("EXIT_CODE".into(), "7".into());
    let c_program = app.execute(&req).await.result;
    assert_eq!(c_program.status, Status::Completed);
    assert_eq!(c_program.exit_code, Some(7));
    let wat = app.execute(&request(&fixture("exit_code"))).await.result;
    assert_eq!((wat.status, wat.exit_code), (Status::Completed, Some(42)));
    assert_eq!(app.stop_and_verify_log().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_is_reported_as_trap() {
    let app = TestApp::spawn().await;
    let result = app.execute(&request(&fixture("trap"))).await.result;
    assert_eq!(result.status, Status::Trap);
    assert_eq!(result.exit_code, None);
    assert!(result.error.unwrap().contains("unreachable"));
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_runs_out_of_fuel() {
    let app = TestApp::spawn().await;
    let mut req = request(&fixture("infinite_loop"));
    req.limits = limits(Some(1_000_000), None);
    let result = app.execute(&req).await.result;
    assert_eq!(result.status, Status::FuelExhausted, "{:?}", result.error);
    assert_eq!(result.fuel_consumed, 1_000_000);
    assert_eq!(result.limits.fuel, 1_000_000);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_with_fuel_to_spare_times_out() {
    let app = TestApp::spawn().await;
    let mut req = request(&fixture("infinite_loop"));
    req.limits = limits(None, Some(300));
    let started = Instant::now();
    let result = app.execute(&req).await.result;
    assert_eq!(result.status, Status::Timeout, "{:?}", result.error);
    assert!(result.wall_time_us >= 300_000, "{}", result.wall_time_us);
    assert!(started.elapsed() < Duration::from_secs(3));
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_sleeping_in_poll_oneoff_is_stopped_by_the_timeout() {
    let app = TestApp::spawn().await;
    let mut req = request(&example("sleep"));
    req.args = vec!["60000".into()];
    req.limits = limits(None, Some(300));
    let started = Instant::now();
    let result = app.execute(&req).await.result;
    assert_eq!(result.status, Status::Timeout, "{:?}", result.error);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(result.stdout_bytes().is_empty());
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_sleep_completes() {
    let app = TestApp::spawn().await;
    let mut req = request(&example("sleep"));
    req.args = vec!["20".into()];
    let result = app.execute(&req).await.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(result.stdout_bytes(), b"slept\n");
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_start_function_runs_under_the_same_limits() {
    let app = TestApp::spawn().await;
    let mut fuel = request(&fixture("start_function_loop"));
    fuel.limits = limits(Some(500_000), None);
    assert_eq!(
        app.execute(&fuel).await.result.status,
        Status::FuelExhausted
    );
    let mut time = request(&fixture("start_function_loop"));
    time.limits = limits(None, Some(200));
    assert_eq!(app.execute(&time).await.result.status, Status::Timeout);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn growing_memory_past_the_limit_is_memory_limit() {
    let app = TestApp::spawn().await;
    let result = app.execute(&request(&fixture("memory_bomb"))).await.result;
    assert_eq!(result.status, Status::MemoryLimit, "{:?}", result.error);
    assert!(result.error.unwrap().contains("67108864"));
    // A C program whose malloc loop would otherwise get NULL and abort.
    let result = app.execute(&request(&example("memhog"))).await.result;
    assert_eq!(result.status, Status::MemoryLimit, "{:?}", result.error);
    // A request may lower the memory limit.
    let mut lowered = request(&fixture("memory_bomb"));
    lowered.limits = Some(RequestedLimits {
        memory_bytes: Some(1 << 20),
        ..Default::default()
    });
    let result = app.execute(&lowered).await.result;
    assert_eq!(result.status, Status::MemoryLimit);
    assert!(result.error.unwrap().contains("1048576"));
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_initial_memory_over_the_limit_is_memory_limit() {
    let app = TestApp::spawn().await;
    let result = app
        .execute(&request(&fixture("initial_memory_too_large")))
        .await
        .result;
    assert_eq!(result.status, Status::MemoryLimit, "{:?}", result.error);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn growing_a_table_past_the_limit_is_memory_limit() {
    let app = TestApp::spawn().await;
    let result = app.execute(&request(&fixture("table_bomb"))).await.result;
    assert_eq!(result.status, Status::MemoryLimit, "{:?}", result.error);
    assert!(result.error.unwrap().contains("table"));
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_recursion_is_a_stack_overflow_trap() {
    let app = TestApp::spawn().await;
    let result = app
        .execute(&request(&fixture("unbounded_recursion")))
        .await
        .result;
    assert_eq!(result.status, Status::Trap);
    assert!(result.error.unwrap().contains("stack overflow"));
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn output_past_the_cap_is_truncated_and_flagged() {
    let app = TestApp::spawn().await;
    let mut req = request(&example("hello"));
    req.stdin = Some(encode_base64(&vec![b'x'; 100_000]));
    req.limits = Some(RequestedLimits {
        max_output_bytes: Some(1000),
        ..Default::default()
    });
    let result = app.execute(&req).await.result;
    assert_eq!(
        result.status,
        Status::Completed,
        "the host never fails a write"
    );
    assert_eq!(result.stdout_bytes().len(), 1000);
    assert!(result.stdout_truncated);
    assert!(!result.stderr_truncated);
    assert_eq!(result.stderr_bytes(), b"hello: done\n");
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_flood_is_capped_and_ends_by_its_limits() {
    let app = TestApp::spawn().await;
    let mut req = request(&fixture("output_flood"));
    req.limits = Some(RequestedLimits {
        timeout_ms: Some(300),
        max_output_bytes: Some(4096),
        ..Default::default()
    });
    let result = app.execute(&req).await.result;
    assert!(
        matches!(result.status, Status::Timeout | Status::FuelExhausted),
        "{:?}",
        result.status
    );
    assert_eq!(result.stdout_bytes(), vec![b'A'; 4096]);
    assert!(result.stdout_truncated);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn modules_that_cannot_run_are_invalid_module() {
    let app = TestApp::spawn().await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "random bytes",
            b"\x13\x37 definitely not wasm".to_vec(),
            "not a WebAssembly module or component",
        ),
        (
            "bad body",
            b"\0asm\x01\0\0\0\xff\xff".to_vec(),
            "does not compile",
        ),
        (
            "missing import",
            fixture("missing_import"),
            "launch_missiles",
        ),
        ("no _start", fixture("no_start"), "_start"),
        (
            "empty component",
            b"\0asm\x0d\0\x01\0".to_vec(),
            "does not export `wasi:cli/run`",
        ),
        (
            "unknown layer",
            b"\0asm\x0d\0\x02\0".to_vec(),
            "not a WebAssembly module or component",
        ),
        (
            "too large",
            {
                let mut big = fixture("trap");
                big.resize((1 << 20) + 1, 0);
                big
            },
            "limit",
        ),
    ];
    for (name, module, needle) in cases {
        let result = app.execute(&request(&module)).await.result;
        assert_eq!(
            result.status,
            Status::InvalidModule,
            "{name}: {:?}",
            result.error
        );
        let error = result.error.unwrap();
        assert!(error.contains(needle), "{name}: {error}");
        assert_eq!(result.module_sha256, Some(hex::encode(sha256(&module))));
    }
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_request_plaintexts_are_invalid_request_executions() {
    let app = TestApp::spawn().await;
    let module = encode_base64(&fixture("trap"));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not json",
            b"this is not json".to_vec(),
            "not a valid execution request",
        ),
        (
            "unknown field",
            format!(r#"{{"module":"{module}","argv":[]}}"#).into_bytes(),
            "argv",
        ),
        ("no module", br#"{"args":[]}"#.to_vec(), "module"),
        ("bad base64", br#"{"module":"***"}"#.to_vec(), "base64"),
        (
            "fuel above max",
            format!(r#"{{"module":"{module}","limits":{{"fuel":99999999999999}}}}"#).into_bytes(),
            "limits.fuel",
        ),
        (
            "timeout above max",
            format!(r#"{{"module":"{module}","limits":{{"timeout_ms":5001}}}}"#).into_bytes(),
            "limits.timeout_ms",
        ),
        (
            "bad stdin",
            format!(r#"{{"module":"{module}","stdin":"%%"}}"#).into_bytes(),
            "stdin",
        ),
        (
            "env with =",
            format!(r#"{{"module":"{module}","env":{{"A=B":"c"}}}}"#).into_bytes(),
            "env",
        ),
        (
            "duplicate env name",
            format!(r#"{{"module":"{module}","env":{{"A":"1","A":"2"}}}}"#).into_bytes(),
            "duplicate env name `A`",
        ),
    ];
    for (name, plaintext, needle) in cases {
        let execution = app.execute_plaintext(&plaintext).await;
        let result = execution.result;
        assert_eq!(result.status, Status::InvalidRequest, "{name}");
        let error = result.error.unwrap();
        assert!(error.contains(needle), "{name}: {error}");
        // Still an execution: logged, committed to, with a log index.
        assert_eq!(execution.commitment, execution.response.commitment.0);
    }
    assert_eq!(app.stop_and_verify_log().await, 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_execution_is_isolated_from_the_previous_one() {
    let app = TestApp::spawn().await;
    for text in ["first", "second"] {
        let mut req = request(&example("hello"));
        req.stdin = Some(encode_base64(text.as_bytes()));
        let stdout = app.execute(&req).await.result.stdout_bytes();
        let expected = format!("hello from wasm\nstdin: {} bytes\n{text}", text.len());
        assert_eq!(String::from_utf8(stdout).unwrap(), expected);
    }
    app.stop_and_verify_log().await;
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    wasm_hypervisor_server::envelope::sha256(bytes)
}
