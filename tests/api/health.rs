//! `GET /health`: 200 while the instance can execute and append, 503 with the
//! reasons when it cannot. Every failure here is real: a file system that refuses
//! the write, a directory that is gone, a free-space threshold above what the disk
//! has.

use serde_json::Value;
use wasm_hypervisor_client::{Client, ClientError};
use wasm_hypervisor_protocol::payload::Status;

use crate::helpers::{
    DataDir, ServerProcess, TestApp, fixture, logged_records, request, verify_log_file,
};

async fn get_health(http: &reqwest::Client, base: &str) -> (u16, Value) {
    let response = http.get(format!("{base}/health")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_working_instance_is_200_ok_with_no_reasons() {
    let app = TestApp::spawn().await;
    app.execute(&request(&fixture("exit_code"))).await;
    let (status, body) = get_health(&app.http, &app.base).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["reasons"], serde_json::json!([]));
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["log_size"], 1);
    assert_eq!(body["slots_in_use"], 0);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn less_free_space_than_the_threshold_is_503_data_dir_low_space() {
    // No disk has 16 EiB free: the real statvfs answer is below this threshold.
    let app = TestApp::spawn_with(|config| config.data_dir_min_free_bytes = u64::MAX).await;
    let (status, body) = get_health(&app.http, &app.base).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["reasons"], serde_json::json!(["data_dir_low_space"]));
    // The same shape as a 200.
    assert_eq!(body["log_size"], 0);
    assert!(body["uptime_secs"].is_u64());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_that_disappeared_is_503_data_dir_not_writable() {
    let app = TestApp::spawn().await;
    std::fs::remove_dir_all(&app.data_dir.path).unwrap();
    let (status, body) = get_health(&app.http, &app.base).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["reasons"],
        serde_json::json!(["data_dir_not_writable"])
    );
    app.stop().await;
}

/// The server runs under a 1 KiB file-size limit (`ulimit -f 2`, with SIGXFSZ
/// ignored so that the kernel fails the write with EFBIG instead of killing the
/// process): the audit log takes a handful of records, then growing it genuinely
/// fails.
#[tokio::test(flavor = "multi_thread")]
async fn when_the_log_cannot_be_written_health_is_503_and_nothing_unlogged_is_answered() {
    let data_dir = DataDir::new();
    // The log is preallocated, so appends overwrite zeros and only growing the file
    // can hit a file-size limit. Here the log has room for a few records (a header
    // and 900 zeros, as a crash while growing it can leave), and the limit refuses
    // the first chunk it grows by: the appends that fit are answered, the first
    // that needs the file to grow is refused.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&data_dir.path)
        .unwrap();
    let log = data_dir
        .path
        .join(wasm_hypervisor_server::audit::file::LOG_FILE);
    let mut preallocated = wasm_hypervisor_server::audit::file::FILE_MAGIC.to_vec();
    preallocated.resize(preallocated.len() + 900, 0);
    std::fs::write(&log, &preallocated).unwrap();
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let server = ServerProcess::start_with(
        &data_dir.path,
        &["sh", "-c", r#"trap "" XFSZ; ulimit -f 2; exec "$@""#, "sh"],
        &[],
    );
    let http = reqwest::Client::new();
    assert_eq!(get_health(&http, &server.base).await.0, 200);
    let client = Client::new(&server.base, None);
    let key = client.identity(None).await.unwrap().public_key;
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();

    let mut answered = Vec::new();
    let refused = loop {
        assert!(answered.len() < 20, "the file-size limit never bit");
        let session = client.open_session(&key).await.unwrap();
        match client.execute(&session, &plaintext).await {
            Ok(execution) => {
                assert_eq!(execution.result.status, Status::Completed);
                answered.push(execution.execution_id);
            }
            Err(error) => break error,
        }
    };
    match refused {
        ClientError::Server { status, code, .. } => {
            assert_eq!((status, code.as_str()), (503, "log_unavailable"))
        }
        other => panic!("expected 503 log_unavailable, got {other}"),
    }
    let (status, body) = get_health(&http, &server.base).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(
        body["reasons"],
        serde_json::json!(["audit_log_write_failed"])
    );
    assert_eq!(body["log_size"], answered.len());

    server.sigterm();
    let exited = server.wait().await;
    assert!(exited.status.success());
    // The operator's log names the cause.
    assert!(
        exited
            .stderr
            .iter()
            .any(|line| line.contains("audit log append failed") && line.contains("File too large")),
        "{:#?}",
        exited.stderr
    );
    // The failed batch left nothing: the log holds exactly the answered records.
    let records = logged_records(&data_dir.path, &key);
    let logged: Vec<_> = records.iter().map(|r| r.leaf.execution_id).collect();
    assert_eq!(logged, answered);
    assert_eq!(verify_log_file(&data_dir.path, &key), answered.len());
}

/// `wasm-hypervisor health` with no `--server`, as a container's health check runs
/// it: in the server's environment, with no flags.
fn health_command(listen_env: Option<&str>) -> tokio::process::Command {
    let mut command = crate::helpers::cli_command();
    command
        .arg("health")
        .env_remove("WASM_HYPERVISOR_SERVER")
        .env_remove("WASM_HYPERVISOR_LISTEN")
        .env(
            "WASM_HYPERVISOR_CRYPTO__PROVIDER",
            wasm_hypervisor_server::envelope::Provider::default().name(),
        );
    if let Some(listen) = listen_env {
        command.env("WASM_HYPERVISOR_LISTEN", listen);
    }
    command
}

/// A server listening on every interface, on a port of the kernel's choosing (never
/// the default 8080), and that port.
fn server_on_every_interface(data_dir: &DataDir) -> (ServerProcess, u16) {
    let server = ServerProcess::start_listening(&data_dir.path, "0.0.0.0:0", &[], &[]);
    let port = server.base.rsplit(':').next().unwrap().parse().unwrap();
    (server, port)
}

/// The `health` command exited 0; otherwise fails with what it printed.
fn assert_succeeded(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_without_server_probes_the_listen_address_from_the_environment_on_loopback() {
    let data_dir = DataDir::new();
    let (_server, port) = server_on_every_interface(&data_dir);
    let output = health_command(Some(&format!("0.0.0.0:{port}")))
        .output()
        .await
        .unwrap();
    assert_succeeded(&output);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_without_server_probes_the_listen_address_from_its_config_file() {
    let data_dir = DataDir::new();
    let (_server, port) = server_on_every_interface(&data_dir);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), format!("listen: \"0.0.0.0:{port}\"\n")).unwrap();
    let output = health_command(None)
        .arg("--config")
        .arg(config.path())
        .output()
        .await
        .unwrap();
    assert_succeeded(&output);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_without_server_fails_naming_the_configured_address_when_nothing_answers_there() {
    let data_dir = DataDir::new();
    let (server, port) = server_on_every_interface(&data_dir);
    // The port is the server's until it exits, then nothing listens on it.
    server.kill();
    let output = health_command(Some(&format!("0.0.0.0:{port}")))
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/health")),
        "{stderr}"
    );
}
