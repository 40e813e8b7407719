//! The load generator (`src/bin/loadgen.rs`) against a real server process: it
//! drives the whole protocol, counts what the server answered, and reads the
//! server's CPU time from `/proc`.

use serde_json::Value;
use wasm_hypervisor_client::Client;

use crate::helpers::{DataDir, ServerProcess, verify_log_file};

/// Runs loadgen with `args` and `--json`; its report, and its stderr.
async fn loadgen_json(args: &[&str]) -> (Value, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--json")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

/// Two clients for one second after 0.2 s of warm-up.
const SHORT_RUN: [&str; 6] = ["--concurrency", "2", "--warmup", "0.2", "--duration", "1"];

#[tokio::test]
async fn loadgen_runs_the_protocol_and_reports_latency_outcomes_and_server_cpu() {
    let data_dir = DataDir::new();
    let server = ServerProcess::start(&data_dir.path);
    let key = Client::new(&server.base, None)
        .identity(None)
        .await
        .unwrap()
        .public_key;
    let pid = server.pid().to_string();
    let (report, _) = loadgen_json(
        &[
            &["--server", &server.base, "--server-pid", &pid][..],
            &SHORT_RUN,
        ]
        .concat(),
    )
    .await;
    let executions = report["executions"].as_u64().unwrap();
    assert!(executions > 0, "{report}");
    // Every counted execution ran the built-in tiny module to completion.
    assert_eq!(report["outcomes"]["completed"].as_u64(), Some(executions));
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    let latency = &report["latency_us"];
    let percentiles: Vec<f64> = ["p50", "p90", "p99", "max"]
        .iter()
        .map(|p| latency[p].as_f64().unwrap())
        .collect();
    assert!(percentiles[0] > 0.0, "{report}");
    assert!(percentiles.windows(2).all(|w| w[0] <= w[1]), "{report}");
    assert!(report["server_cpu_us_per_execution"].as_f64().unwrap() > 0.0);

    server.sigterm();
    assert!(server.wait().await.status.success());
    // Warm-up and measured executions alike are all in the log.
    assert!(verify_log_file(&data_dir.path, &key) as u64 >= executions);
}

#[tokio::test]
async fn loadgen_counts_refusals_as_errors_not_as_executions() {
    let data_dir = DataDir::new();
    // One request a second: almost everything the generator sends is refused.
    let server = ServerProcess::start_with(
        &data_dir.path,
        &[],
        &[
            ("WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND", "1"),
            ("WASM_HYPERVISOR_CLIENTS__BURST", "1"),
        ],
    );
    let (report, stderr) =
        loadgen_json(&["--server", &server.base, "--warmup", "0", "--duration", "1"]).await;
    let refused = report["outcomes"]["http 429 rate_limited"]
        .as_u64()
        .unwrap();
    assert!(refused > 0, "{report}");
    assert_eq!(report["errors"].as_u64(), Some(refused), "{report}");
    let completed = report["outcomes"]["completed"].as_u64().unwrap_or(0);
    assert_eq!(report["executions"].as_u64(), Some(completed), "{report}");
    assert!(stderr.contains("WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND=0"));
    server.kill();
}

#[tokio::test]
async fn loadgen_spreads_clients_over_every_server_and_sums_their_cpu() {
    let (first_dir, second_dir) = (DataDir::new(), DataDir::new());
    let first = ServerProcess::start(&first_dir.path);
    let second = ServerProcess::start(&second_dir.path);
    let mut keys = Vec::new();
    for server in [&first, &second] {
        let identity = Client::new(&server.base, None)
            .identity(None)
            .await
            .unwrap();
        keys.push(identity.public_key);
    }
    // Two servers, the first's CPU as the servers', the second's (with its
    // descendants) as the extra process tree.
    let (first_pid, second_pid) = (first.pid().to_string(), second.pid().to_string());
    let servers = [
        "--server",
        &first.base,
        "--server",
        &second.base,
        "--server-pid",
        &first_pid,
        "--extra-pid",
        &second_pid,
    ];
    let (report, _) = loadgen_json(&[&servers[..], &SHORT_RUN].concat()).await;
    assert_eq!(report["servers"].as_u64(), Some(2), "{report}");
    let executions = report["executions"].as_u64().unwrap();
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    let server_cpu = report["server_cpu_us_per_execution"].as_f64().unwrap();
    let extra_cpu = report["extra_cpu_us_per_execution"].as_f64().unwrap();
    assert!(server_cpu > 0.0 && extra_cpu > 0.0, "{report}");
    let total = report["server_and_extra_cpu_us_per_execution"]
        .as_f64()
        .unwrap();
    assert!((total - (server_cpu + extra_cpu)).abs() < 1e-6, "{report}");

    // Each server ran a share: both logs hold executions, together every one.
    let mut logged = 0;
    for ((server, dir), key) in [(first, &first_dir), (second, &second_dir)]
        .into_iter()
        .zip(&keys)
    {
        server.sigterm();
        assert!(server.wait().await.status.success());
        let records = verify_log_file(&dir.path, key);
        assert!(records > 0, "a server got no client");
        logged += records as u64;
    }
    assert!(logged >= executions);
}
