//! What one request can make the server hold is bounded by the request's own
//! limits: return values by `max_output_bytes`, argv and environment by
//! `limits.max_args`/`max_env`/`max_args_env_bytes` (and a parsing ceiling),
//! every memory and table of a guest together by `memory_bytes`. Each attack ends
//! with a status and another request still served.

use std::path::Path;

use wasm_hypervisor_client::Client;
use wasm_hypervisor_protocol::payload::{ExecutionRequest, RequestedLimits, Status};
use wasm_hypervisor_server::config::Bounded;

use crate::helpers::{DataDir, ServerProcess, TestApp, example, fixture, request};

fn component(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/components")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap()
}

fn two_memories(pages_each: u32) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/two_memories.wat");
    let text = std::fs::read_to_string(path).unwrap();
    wat::parse_str(text.replace("PAGES", &pages_each.to_string())).unwrap()
}

fn bigstr(bytes: u32, max_output_bytes: Option<u64>) -> ExecutionRequest {
    ExecutionRequest {
        invoke: Some(format!("bigstr({bytes})")),
        limits: Some(RequestedLimits {
            max_output_bytes,
            ..Default::default()
        }),
        ..request(&component("bigstr"))
    }
}

/// Kilobytes of a process's peak resident memory (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `plaintext` through the whole protocol against a server process.
async fn execute_on(
    base: &str,
    plaintext: &[u8],
) -> wasm_hypervisor_protocol::payload::ExecutionResult {
    let client = Client::new(base, None);
    let identity = client.identity(None).await.unwrap();
    let session = client.open_session(&identity.public_key).await.unwrap();
    client.execute(&session, plaintext).await.unwrap().result
}

#[tokio::test(flavor = "multi_thread")]
async fn two_memories_share_one_memory_budget() {
    let app = TestApp::spawn().await; // memory_bytes: 64 MiB
    // 2 x (1 + 320) pages = 40 MiB in all: fits.
    let fits = app.execute(&request(&two_memories(320))).await.result;
    assert_eq!(fits.status, Status::Completed, "{:?}", fits.error);
    // 2 x (1 + 640) pages = 80 MiB in all, each memory 40 MiB: refused.
    let over = app.execute(&request(&two_memories(640))).await.result;
    assert_eq!(over.status, Status::MemoryLimit, "{:?}", over.error);
    let error = over.error.unwrap();
    assert!(error.contains("in all"), "{error}");
    assert!(error.contains("67108864"), "{error}");
    let hello = app.execute(&request(&example("hello"))).await.result;
    assert_eq!(hello.status, Status::Completed);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_components_return_values_count_against_max_output_bytes() {
    let app = TestApp::spawn().await;
    let small = app.execute(&bigstr(1000, Some(2000))).await.result;
    assert_eq!(small.status, Status::Completed, "{:?}", small.error);
    assert_eq!(small.returns, vec![format!("\"{}\"", "a".repeat(1000))]);

    // Copied out of the guest (under the 1 MiB hostcall floor), but its WAVE text
    // is over the request's max_output_bytes.
    let over = app.execute(&bigstr(100_000, Some(50_000))).await.result;
    assert_eq!(over.status, Status::Trap, "{:?}", over.error);
    assert!(over.returns.is_empty());
    let error = over.error.unwrap();
    assert!(
        error.contains("larger than max_output_bytes (50000 bytes)"),
        "{error}"
    );

    // Past the hostcall fuel: Wasmtime refuses to copy it out of the guest at all.
    let huge = app.execute(&bigstr(8 << 20, Some(1 << 20))).await.result;
    assert_eq!(huge.status, Status::Trap, "{:?}", huge.error);
    let error = huge.error.unwrap();
    assert!(
        error.contains("more than 1048576 bytes in one call"),
        "{error}"
    );

    let hello = app.execute(&request(&example("hello"))).await.result;
    assert_eq!(hello.status, Status::Completed);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_60_mib_return_value_costs_the_server_a_bounded_amount_of_memory() {
    let data = DataDir::new();
    let server = ServerProcess::start(&data.path);
    let hello = serde_json::to_vec(&request(&example("hello"))).unwrap();
    assert_eq!(
        execute_on(&server.base, &hello).await.status,
        Status::Completed
    );
    let before = peak_rss_kib(server.pid());
    // The review's attack: 62,914,560 bytes of return value (a 503 MB response
    // before). The guest's own 60 MiB of memory is resident while it runs.
    let attack = serde_json::to_vec(&bigstr(62_914_560, None)).unwrap();
    let result = execute_on(&server.base, &attack).await;
    assert_eq!(result.status, Status::Trap, "{:?}", result.error);
    let grown_mib = (peak_rss_kib(server.pid()) - before) / 1024;
    eprintln!("a 60 MiB return value: the server's peak memory grew by {grown_mib} MiB");
    assert!(
        grown_mib < 160,
        "the server's peak memory grew by {grown_mib} MiB for a 60 MiB guest"
    );
    assert_eq!(
        execute_on(&server.base, &hello).await.status,
        Status::Completed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn args_and_env_are_bounded_in_count_and_bytes() {
    let app = TestApp::spawn_with(|config| {
        config.limits.max_args = Bounded::constant::<4>();
        config.limits.max_env = Bounded::constant::<2>();
        config.limits.max_args_env_bytes = Bounded::constant::<64>();
    })
    .await;
    let hello = example("hello");
    let with = |args: Vec<&str>, env: Vec<(&str, &str)>| ExecutionRequest {
        args: args.into_iter().map(str::to_owned).collect(),
        env: env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..request(&hello)
    };
    let cases = [
        (with(vec!["a"; 5], vec![]), "limits.max_args"),
        (
            with(vec![], vec![("A", ""), ("B", ""), ("C", "")]),
            "limits.max_env",
        ),
        (
            with(vec![&"x".repeat(40)], vec![("NAME", &"y".repeat(20))]),
            "limits.max_args_env_bytes",
        ),
    ];
    for (request, key) in cases {
        let result = app.execute(&request).await.result;
        assert_eq!(result.status, Status::InvalidRequest, "{key}");
        assert!(
            result.error.as_deref().unwrap_or("").contains(key),
            "{:?}",
            result.error
        );
    }
    // At the limits exactly: 4 args of 1 byte (8 bytes with NULs), 2 variables.
    let at = app
        .execute(&with(
            vec!["a", "b", "c", "d"],
            vec![("A", "1"), ("B", "2")],
        ))
        .await
        .result;
    assert_eq!(at.status, Status::Completed, "{:?}", at.error);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn millions_of_empty_arguments_cost_the_server_a_bounded_amount_of_memory() {
    let data = DataDir::new();
    let server = ServerProcess::start(&data.path);
    let hello = serde_json::to_vec(&request(&example("hello"))).unwrap();
    assert_eq!(
        execute_on(&server.base, &hello).await.status,
        Status::Completed
    );
    let before = peak_rss_kib(server.pid());
    // 2.5 million empty arguments: a 10 MB plaintext (the review's 4 million in
    // 16 MB cost 350 MB of memory each).
    let module = wasm_hypervisor_protocol::payload::encode_base64(&example("hello"));
    let plaintext = format!(
        r#"{{"module":"{module}","args":[{}""]}}"#,
        "\"\",".repeat(2_500_000)
    );
    let result = execute_on(&server.base, plaintext.as_bytes()).await;
    assert_eq!(result.status, Status::InvalidRequest);
    let error = result.error.unwrap();
    assert!(error.contains("more than 65536 entries"), "{error}");
    let grown_mib = (peak_rss_kib(server.pid()) - before) / 1024;
    eprintln!("2.5 million empty arguments: the server's peak memory grew by {grown_mib} MiB");
    // The body (13 MB), its decoded ciphertext and the plaintext in place are
    // what remains; 2.5 million `String`s would be over 200 MB.
    assert!(
        grown_mib < 100,
        "the server's peak memory grew by {grown_mib} MiB"
    );
    assert_eq!(
        execute_on(&server.base, &hello).await.status,
        Status::Completed
    );
}

fn keep_exceptions(count: u32, memory_bytes: u64) -> ExecutionRequest {
    ExecutionRequest {
        invoke: Some(format!("keep({count})")),
        limits: Some(RequestedLimits {
            memory_bytes: Some(memory_bytes),
            ..Default::default()
        }),
        ..request(&fixture("exceptions"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_using_exception_handling_throws_and_catches() {
    let app = TestApp::spawn().await;
    let caught = ExecutionRequest {
        invoke: Some("catch_one()".into()),
        ..request(&fixture("exceptions"))
    };
    let result = app.execute(&caught).await.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(result.returns, vec!["42".to_owned()]);
    // A thousand exception objects kept alive fit in 4 MiB.
    let result = app.execute(&keep_exceptions(1_000, 4 << 20)).await.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(result.returns, vec!["1000".to_owned()]);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exception_objects_count_in_the_memory_budget() {
    let app = TestApp::spawn().await;
    // 200,000 kept exceptions: their exnref table is 1.6 MB, within 2 MiB, but
    // the objects themselves (GC heap) are several times that. (2 MiB, not more:
    // the guest stops at the limit, after about 40,000 throws, well within its
    // wall-clock limit in a debug build on a busy machine.)
    let result = app.execute(&keep_exceptions(200_000, 2 << 20)).await.result;
    let error = result.error.clone().unwrap_or_default();
    assert_eq!(result.status, Status::MemoryLimit, "{error}");
    assert!(error.contains("2097152"), "{error}");
    // The slot, its memories and its GC heap went back to the pool: the next
    // execution runs.
    let result = app.execute(&keep_exceptions(1_000, 4 << 20)).await.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    app.stop_and_verify_log().await;
}
