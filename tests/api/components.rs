//! Component Model guests: `wasi:cli/run` commands (a real C program wrapped with
//! the WASI preview1 adapter) and `invoke` of exports with WAVE arguments, for
//! components and core modules, under the same limits and statuses.

use std::path::Path;

use wasm_hypervisor_protocol::payload::{ExecutionRequest, RequestedLimits, Status, encode_base64};

use crate::helpers::{TestApp, example, fixture, limits, request};

/// Assembles `tests/fixtures/components/NAME.wat`, or `examples/calc.wat`, the
/// component the README demonstrates.
fn component(name: &str) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = match name {
        "calc" => root.join("examples/calc.wat"),
        _ => root
            .join("tests/fixtures/components")
            .join(format!("{name}.wat")),
    };
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Wraps a WASI preview1 command module into a `wasi:cli/run` component with the
/// adapter published by the Wasmtime project.
pub(crate) fn componentize(module: &[u8]) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .unwrap()
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

fn invoke(module: &[u8], expression: &str) -> ExecutionRequest {
    ExecutionRequest {
        invoke: Some(expression.to_owned()),
        ..request(module)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_command_wrapped_as_a_component_runs_like_the_module() {
    let app = TestApp::spawn().await;
    let hello = componentize(&example("hello"));
    assert_eq!(&hello[4..8], b"\x0d\0\x01\0", "a component, not a module");
    let mut req = request(&hello);
    req.args = vec!["one".into(), "two words".into()];
    req.env.insert("NAME".into(), "wasm".into());
    req.stdin = Some(encode_base64(b"line\n"));
    let result = app.execute(&req).await.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(
        String::from_utf8(result.stdout_bytes()).unwrap(),
        "hello from wasm\narg[1]=one\narg[2]=two words\nNAME=wasm\nstdin: 5 bytes\nline\n"
    );
    assert_eq!(result.stderr_bytes(), b"hello: done\n");
    assert!(result.fuel_consumed > 0);

    // A failing command completes with a non-zero exit code, as `wasmtime run` says.
    req.env.insert("EXIT_CODE".into(), "7".into());
    let failed = app.execute(&req).await.result;
    assert_eq!(failed.status, Status::Completed);
    assert!(
        failed.exit_code.is_some_and(|code| code != 0),
        "{:?}",
        failed.exit_code
    );

    // Output caps apply to components too.
    let mut flood = request(&hello);
    flood.stdin = Some(encode_base64(&vec![b'x'; 50_000]));
    flood.limits = Some(RequestedLimits {
        max_output_bytes: Some(100),
        ..Default::default()
    });
    let capped = app.execute(&flood).await.result;
    assert_eq!(capped.stdout_bytes().len(), 100);
    assert!(capped.stdout_truncated);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_components_end_with_the_same_statuses_as_modules() {
    let app = TestApp::spawn().await;
    let memhog = app
        .execute(&request(&componentize(&example("memhog"))))
        .await
        .result;
    assert_eq!(memhog.status, Status::MemoryLimit, "{:?}", memhog.error);

    let hostile = component("hostile");
    let mut spin = invoke(&hostile, "spin()");
    spin.limits = limits(Some(2_000_000), None);
    assert_eq!(
        app.execute(&spin).await.result.status,
        Status::FuelExhausted
    );
    spin.limits = limits(None, Some(300));
    assert_eq!(app.execute(&spin).await.result.status, Status::Timeout);
    let bomb = app.execute(&invoke(&hostile, "bomb()")).await.result;
    assert_eq!(bomb.status, Status::MemoryLimit, "{:?}", bomb.error);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_passes_and_returns_scalars_strings_lists_and_records_in_wave() {
    let app = TestApp::spawn().await;
    let calc = component("calc");
    let cases = [
        ("add(1, 2)", "3"),
        ("add(4000000000, 1)", "4000000001"),
        (r#"greet("world")"#, r#""Hello, world!""#),
        (r#"greet("wörld \u{1f600}")"#, r#""Hello, wörld 😀!""#),
        ("sum([1, 2, 3, 4])", "10"),
        ("sum([])", "0"),
        ("swap({x: 1, y: -2})", "{x: -2, y: 1}"),
    ];
    for (expression, expected) in cases {
        let result = app.execute(&invoke(&calc, expression)).await.result;
        assert_eq!(
            result.status,
            Status::Completed,
            "{expression}: {:?}",
            result.error
        );
        assert_eq!(result.returns, vec![expected.to_owned()], "{expression}");
        assert_eq!(result.exit_code, None, "an invoke is not a command");
    }
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_calls_numeric_exports_of_core_modules() {
    let app = TestApp::spawn().await;
    let module = fixture("no_start");
    let result = app.execute(&invoke(&module, "add(2, 40)")).await.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(result.returns, vec!["42".to_owned()]);
    let result = app.execute(&invoke(&module, "add(-5, 2)")).await.result;
    assert_eq!(result.returns, vec!["-3".to_owned()]);
    // A module that is a command can be invoked too, and the trap is a trap.
    let trap = app
        .execute(&invoke(&fixture("trap"), "_start()"))
        .await
        .result;
    assert_eq!(trap.status, Status::Trap);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_invocations_are_invalid_request_saying_why() {
    let app = TestApp::spawn().await;
    let calc = component("calc");
    let core = fixture("no_start");
    let cases: Vec<(&[u8], &str, &str)> = vec![
        (&calc, "nope(1)", "no function named `nope`"),
        (&calc, "add(1)", "do not fit"),
        (&calc, r#"add("one", 2)"#, "do not fit"),
        (&calc, "greet(1)", "do not fit"),
        (&calc, "swap({x: 1})", "do not fit"),
        (&calc, "add(1, 2", "not a WAVE call expression"),
        (&calc, "point()", "not a function"),
        (&core, "mul(1, 2)", "no export named `mul`"),
        (&core, "add(1.5, 2)", "do not fit"),
        (&core, "memory()", "no export named `memory`"),
    ];
    for (module, expression, needle) in cases {
        let result = app.execute(&invoke(module, expression)).await.result;
        assert_eq!(
            result.status,
            Status::InvalidRequest,
            "{expression}: {:?}",
            result.error
        );
        let error = result.error.unwrap();
        assert!(error.contains(needle), "{expression}: {error}");
    }
    // A component without `wasi:cli/run` cannot run as a command.
    let not_a_command = app.execute(&request(&calc)).await.result;
    assert_eq!(not_a_command.status, Status::InvalidModule);
    assert!(not_a_command.error.unwrap().contains("wasi:cli/run"));
    app.stop_and_verify_log().await;
}

/// The component model's async ABI is not enabled (PROTOCOL.md, "The guest's
/// world"): a component with an async-lifted export does not compile, and says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_using_the_async_abi_is_invalid_module() {
    let app = TestApp::spawn().await;
    let result = app
        .execute(&invoke(&component("async_lift"), "double(2)"))
        .await
        .result;
    assert_eq!(result.status, Status::InvalidModule, "{:?}", result.error);
    let error = result.error.unwrap();
    assert!(
        error.contains("requires the component model async feature"),
        "{error}"
    );
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_invoke_on_the_command_line_prints_the_returns() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calc.wasm");
    std::fs::write(&path, component("calc")).unwrap();
    let output = crate::helpers::cli_command()
        .args(["run", "--server", &app.base, "--invoke", r#"greet("cli")"#])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "\"Hello, cli!\"\n"
    );
    let bad = crate::helpers::cli_command()
        .args(["run", "--server", &app.base, "--invoke", "nope()"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid_request"));
    app.stop_and_verify_log().await;
}
