//! Replays (protocol v1.2 §R) of what the small fixtures of `replay.rs` do not
//! show: a real interpreter, CPython 3.11 for WASI, whose `time.time()`,
//! `random.random()` and `os.urandom` give the same values in two deterministic
//! runs and in a replay, and not in a normal run; and an execution done by a
//! cluster-mode replica (real PostgreSQL), replayed here and proved logged by
//! another replica, and offline.
//!
//! Everything goes through the real `wasm-hypervisor` binary, as a user would:
//! `run --deterministic --replay-bundle`, then `replay`.

use std::path::Path;
use std::time::Instant;

use wasm_hypervisor_protocol::payload::{ExecutionResult, Status};
use wasm_hypervisor_protocol::plaintext;
use wasm_hypervisor_protocol::reproducible::Bundle;
use wasm_hypervisor_protocol::wire::KeysResponse;

use crate::helpers::{DataDir, ServerProcess, cli_command, fixture};
use crate::postgres;

/// The CLI with `args` (`XDG_CACHE_HOME` under `work`): its exit code, stdout
/// and stderr.
async fn cli(work: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = cli_command();
    command.env("XDG_CACHE_HOME", work.join("cache")).args(args);
    crate::helpers::cli_output(command).await
}

/// The result a bundle holds.
fn bundled_result(bundle: &Path) -> ExecutionResult {
    let bundle: Bundle = serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    plaintext::decode_result_any(&bundle.result_plaintext.0).unwrap()
}

/// Prints the clocks and three draws of the random sources; reads nothing else.
const SCRIPT: &str = "import os, random, time\n\
print(repr(time.time()), repr(random.random()), os.urandom(8).hex())\n";

/// `run` of the CPython script against `base`, deterministic or not, writing
/// the replay bundle `bundle`: the CLI's stdout (the guest's) and the bundle's
/// result.
async fn run_python(base: &str, work: &Path, deterministic: bool, bundle: &str) -> String {
    let cpython = crate::real_programs::cpython();
    let lib = format!("{}::/usr/local/lib", cpython.join("lib").display());
    let app = format!("{}::/app", work.join("app").display());
    let bundle = work.join(bundle);
    let wasm = cpython.join("python3.11.wasm");
    let mut args = vec!["run", "--server", base, "--env", "PYTHONHOME=/usr/local"];
    if deterministic {
        args.push("--deterministic");
    }
    args.extend([
        "--dir",
        &lib,
        "--dir",
        &app,
        "--replay-bundle",
        bundle.to_str().unwrap(),
        wasm.to_str().unwrap(),
        "/app/main.py",
    ]);
    let (code, stdout, stderr) = cli(work, &args).await;
    assert_eq!(code, Some(0), "{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn cpython_reads_the_same_clock_and_random_values_in_two_deterministic_runs_and_a_replay() {
    let _alone = crate::helpers::load_heavy_test().await;
    let app = crate::real_programs::cpython_app().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    std::fs::create_dir(work.join("app")).unwrap();
    std::fs::write(work.join("app/main.py"), SCRIPT).unwrap();

    let first = run_python(&app.base, work, true, "first.json").await;
    let second = run_python(&app.base, work, true, "second.json").await;
    assert_eq!(first, second, "two deterministic runs print the same");
    let (first_result, second_result) = (
        bundled_result(&work.join("first.json")),
        bundled_result(&work.join("second.json")),
    );
    assert_eq!(first_result.status, Status::Completed, "{first_result:?}");
    assert!(first_result.deterministic);
    assert_eq!(first_result.fuel_consumed, second_result.fuel_consumed);
    assert_eq!(first_result.stdout, second_result.stdout);
    // The deterministic realtime clock starts at 2024-01-01T00:00:00Z and steps
    // 1 µs per read: CPython's few reads at start-up leave it within a second.
    let printed: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(printed.len(), 3, "{first}");
    let time: f64 = printed[0].parse().unwrap();
    assert!(
        (1_704_067_200.0..1_704_067_201.0).contains(&time),
        "{first}"
    );

    // A normal run reads the host's clock and random bytes.
    let normal = run_python(&app.base, work, false, "normal.json").await;
    let normal_printed: Vec<&str> = normal.split_whitespace().collect();
    assert_eq!(normal_printed.len(), 3, "{normal}");
    for (field, (deterministic, host)) in ["time.time()", "random.random()", "os.urandom"]
        .iter()
        .zip(printed.iter().zip(&normal_printed))
    {
        assert_ne!(deterministic, host, "{field} in a normal run");
    }

    // The replay re-runs the interpreter here and finds the same outputs.
    let started = Instant::now();
    let bundle = work.join("first.json");
    let (code, stdout, stderr) = cli(
        work,
        &["replay", "--server", &app.base, bundle.to_str().unwrap()],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("replayed: every output is identical"),
        "{stdout}"
    );
    eprintln!(
        "replay of the CPython bundle ({} bytes, fuel {}): {took:?}",
        std::fs::metadata(&bundle).unwrap().len(),
        first_result.fuel_consumed
    );
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deterministic_execution_on_a_cluster_replica_replays_here_proved_by_another_and_offline()
{
    let (url, _sql) = postgres::shared().database_with_sql();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("signing_key.pem");
    let env = [
        ("WASM_HYPERVISOR_CLUSTER__DATABASE_URL", url.as_str()),
        (
            "WASM_HYPERVISOR_SIGNING_KEY_FILE",
            key_file.to_str().unwrap(),
        ),
        ("WASM_HYPERVISOR_ORIGIN", "cluster.test/wasm-hypervisor"),
    ];
    // One after the other: the first creates the key file the second reads.
    let data_dirs = [DataDir::new(), DataDir::new()];
    let ran_on = ServerProcess::start_with(&data_dirs[0].path, &[], &env);
    let other = ServerProcess::start_with(&data_dirs[1].path, &[], &env);

    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let module = work.join("reproducible.wasm");
    std::fs::write(&module, fixture("reproducible")).unwrap();
    let stdin = work.join("stdin");
    std::fs::write(&stdin, b"replayed from a cluster").unwrap();
    let bundle = work.join("bundle.json");
    let path = |path: &Path| path.to_str().unwrap().to_owned();
    let (code, _, stderr) = cli(
        work,
        &[
            "run",
            "--server",
            &ran_on.base,
            "--deterministic",
            "--seed",
            &"07".repeat(32),
            "--stdin",
            &path(&stdin),
            "--replay-bundle",
            &path(&bundle),
            &path(&module),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let result = bundled_result(&bundle);
    assert_eq!(result.status, Status::Completed, "{result:?}");
    assert!(result.deterministic && result.engine_sha256.is_some());

    // Its receipt proved logged by the replica that ran it, and by the other.
    for base in [&ran_on.base, &other.base] {
        let (code, stdout, stderr) = cli(work, &["replay", "--server", base, &path(&bundle)]).await;
        assert_eq!(code, Some(0), "{base}: {stdout}{stderr}");
        assert!(
            stdout.contains("replayed: every output is identical"),
            "{stdout}"
        );
    }
    // Offline, under the cluster's note key, with both replicas stopped.
    let keys: KeysResponse = reqwest::get(format!("{}/keys", other.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let note_key = keys.note_verifier_key.expect("a note verifier key");
    for replica in [ran_on, other] {
        replica.sigterm();
        let exited = replica.wait().await;
        assert!(exited.status.success(), "{:?}", exited.stderr);
    }
    let (code, stdout, stderr) =
        cli(work, &["replay", "--note-key", &note_key, &path(&bundle)]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("replayed: every output is identical"),
        "{stdout}"
    );
}
