//! `wasm-hypervisor log monitor` (protocol v1.2 §T6) against real servers: an
//! honest log followed as it grows; a fork (a copy of the data directory, keys
//! and log, started as a second server that logs other executions) and a rollback
//! (a server restarted on an older copy of its data directory) refused by name;
//! a policy of another log key (bad signature) or requiring a witness the log does
//! not have (missing quorum); tampered tiles and entries, served by a proxy in
//! front of an honest server, refused. The real binary runs each time, as a timer
//! would run it, and its exit code and one line are checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasm_hypervisor_protocol::note::{CosignerKey, NoteSigningKey};
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::wire::KeysResponse;

use crate::helpers::{DataDir, TestApp, cli_command, fixture, request};

/// What one run of the monitor said.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `log monitor URL --policy POLICY --state STATE` once.
async fn monitor(url: &str, policy: &Path, state: &Path) -> Run {
    let output = cli_command()
        .args(["log", "monitor", url, "--policy"])
        .arg(policy)
        .arg("--state")
        .arg(state)
        .output()
        .await
        .expect("run the monitor");
    Run {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A directory of the test's own: the policy files and the monitor's state.
struct Scratch {
    _dir: DataDir,
    path: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = DataDir::new();
        std::fs::create_dir_all(&dir.path).unwrap();
        let path = dir.path.clone();
        Scratch { _dir: dir, path }
    }

    fn policy(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn state(&self) -> PathBuf {
        self.path.join("state")
    }
}

/// The policy `log <the server's note key>` / `quorum none`.
async fn log_policy(app: &TestApp) -> String {
    let keys: KeysResponse = app.get_json("/keys").await;
    let vkey = keys.note_verifier_key.expect("a v1.2 server");
    format!("log {vkey}\nquorum none\n")
}

async fn execute_times(app: &TestApp, count: usize) {
    for _ in 0..count {
        app.execute(&request(&fixture("exit_code"))).await;
    }
}

async fn served_checkpoint(app: &TestApp) -> String {
    app.http
        .get(app.url("/tlog/checkpoint"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A copy of a stopped server's data directory: its keys, its log, its
/// checkpoint.
fn copy_data_dir(from: &DataDir) -> DataDir {
    let copy = DataDir::new();
    let status = Command::new("cp")
        .arg("-a")
        .arg(&from.path)
        .arg(&copy.path)
        .status()
        .expect("cp");
    assert!(status.success());
    copy
}

fn assert_refused(run: &Run, code: i32, starts: &str) {
    assert_eq!(run.code, code, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .starts_with(&format!("wasm-hypervisor: log monitor: {starts}")),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_honest_log_is_followed_as_it_grows_and_its_state_kept() {
    let app = TestApp::spawn().await;
    let scratch = Scratch::new();
    let policy = scratch.policy("log.policy", &log_policy(&app).await);
    let state = scratch.state();
    execute_times(&app, 3).await;

    let run = monitor(&app.base, &policy, &state).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "consistent: wasm-hypervisor.test 0 → 3 entries (3 entries read, 2 tiles read)\n"
    );
    let saved = std::fs::read_to_string(state.join("checkpoint")).unwrap();
    assert_eq!(saved, served_checkpoint(&app).await);

    // Across a tile's boundary: the full tile now authenticated by the level
    // above it, the partial bundle of the last run read again.
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, key, plaintext) = (
            app.client.clone(),
            app.identity.public_key,
            plaintext.clone(),
        );
        tasks.spawn(async move {
            for _ in 0..32 {
                let session = client.open_session(&key).await.unwrap();
                client.execute(&session, &plaintext).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let run = monitor(&app.base, &policy, &state).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "consistent: wasm-hypervisor.test 3 → 259 entries (256 entries read, 5 tiles read)\n"
    );
    let saved = std::fs::read_to_string(state.join("checkpoint")).unwrap();
    assert_eq!(saved, served_checkpoint(&app).await);

    let run = monitor(&app.base, &policy, &state).await;
    assert_eq!(
        run.stdout,
        "consistent: wasm-hypervisor.test 259 → 259 entries (0 entries read, 0 tiles read)\n"
    );
    assert!(
        !state.join("refused-checkpoint").exists(),
        "nothing was refused"
    );
    assert_eq!(app.stop_and_verify_log().await, 259);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_from_a_copy_of_the_data_directory_is_refused_naming_a_fork() {
    let app = TestApp::spawn().await;
    let scratch = Scratch::new();
    let policy = scratch.policy("log.policy", &log_policy(&app).await);
    let state = scratch.state();
    execute_times(&app, 3).await;
    let data_dir = app.stop().await;
    let copy = copy_data_dir(&data_dir);
    let honest = TestApp::spawn_in(data_dir, |_| {}).await;
    let fork = TestApp::spawn_in(copy, |_| {}).await;
    assert_eq!(
        fork.identity.key_id, honest.identity.key_id,
        "the same keys"
    );
    execute_times(&honest, 2).await;
    let run = monitor(&honest.base, &policy, &state).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let seen = std::fs::read_to_string(state.join("checkpoint")).unwrap();

    // The copy logs other executions: at the same size, another root.
    execute_times(&fork, 2).await;
    let run = monitor(&fork.base, &policy, &state).await;
    println!("fork, same size: {}", run.stderr.trim_end());
    assert_refused(&run, 7, "fork: the log has 5 entries with root ");
    // One more: a larger tree that does not extend the one seen.
    execute_times(&fork, 1).await;
    let run = monitor(&fork.base, &policy, &state).await;
    println!("fork, larger: {}", run.stderr.trim_end());
    assert_refused(
        &run,
        7,
        "fork: the log at 6 entries does not extend the checkpoint seen before at 5",
    );
    // The state is untouched, the fork's note kept as evidence, and the honest log
    // still followed.
    assert_eq!(
        std::fs::read_to_string(state.join("checkpoint")).unwrap(),
        seen
    );
    assert_eq!(
        std::fs::read_to_string(state.join("refused-checkpoint")).unwrap(),
        served_checkpoint(&fork).await
    );
    execute_times(&honest, 1).await;
    let run = monitor(&honest.base, &policy, &state).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fork.stop_and_verify_log().await, 6);
    assert_eq!(honest.stop_and_verify_log().await, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_restarted_on_an_older_copy_is_refused_naming_a_rollback() {
    let app = TestApp::spawn().await;
    let scratch = Scratch::new();
    let policy = scratch.policy("log.policy", &log_policy(&app).await);
    let state = scratch.state();
    execute_times(&app, 3).await;
    let data_dir = app.stop().await;
    let backup = copy_data_dir(&data_dir);
    let app = TestApp::spawn_in(data_dir, |_| {}).await;
    execute_times(&app, 2).await;
    let run = monitor(&app.base, &policy, &state).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(app.stop_and_verify_log().await, 5);

    let restored = TestApp::spawn_in(backup, |_| {}).await;
    let run = monitor(&restored.base, &policy, &state).await;
    println!("rollback: {}", run.stderr.trim_end());
    assert_refused(
        &run,
        6,
        "rollback: the log has 3 entries, fewer than the 5 of the checkpoint seen before",
    );
    assert!(state.join("refused-checkpoint").exists());
    assert_eq!(restored.stop_and_verify_log().await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_log_key_is_a_bad_signature_and_a_missing_cosignature_a_missing_quorum() {
    let app = TestApp::spawn().await;
    let scratch = Scratch::new();
    execute_times(&app, 1).await;
    let provider = Provider::default();
    let impostor = NoteSigningKey::generate(provider, "wasm-hypervisor.test").unwrap();
    let policy = scratch.policy(
        "other.policy",
        &format!("log {}\nquorum none\n", impostor.verifier_key()),
    );
    let run = monitor(&app.base, &policy, &scratch.state()).await;
    assert_refused(&run, 4, "bad signature: ");

    let witness = CosignerKey::generate(provider, "witness.test").unwrap();
    let policy = scratch.policy(
        "witnessed.policy",
        &format!(
            "{}witness w {}\nquorum w\n",
            log_policy(&app).await.replace("quorum none\n", ""),
            witness.verifier_key()
        ),
    );
    let run = monitor(&app.base, &policy, &scratch.state()).await;
    assert_refused(&run, 5, "missing quorum: ");
    assert!(
        !scratch.state().join("checkpoint").exists(),
        "a refused checkpoint is not saved"
    );

    // Not a policy at all: the monitor's own input, before any request.
    let policy = scratch.policy("bad.policy", "quorum nobody\n");
    let run = monitor(&app.base, &policy, &scratch.state()).await;
    assert_refused(&run, 2, "");
    assert_eq!(app.stop_and_verify_log().await, 1);
}

/// A proxy in front of `upstream` that flips byte `at` (from the end when
/// negative) of the answer to `GET path`: a mirror or a CDN that lies.
async fn tampering_proxy(upstream: String, path: &'static str, at: isize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let http = reqwest::Client::new();
    let router = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let response = http
                .get(format!("{upstream}{}", uri.path()))
                .send()
                .await
                .unwrap();
            let status = axum::http::StatusCode::from_u16(response.status().as_u16()).unwrap();
            let mut bytes = response.bytes().await.unwrap().to_vec();
            if uri.path() == path {
                let at = if at < 0 {
                    bytes.len() - at.unsigned_abs()
                } else {
                    at as usize
                };
                bytes[at] ^= 0x01;
            }
            (status, bytes)
        }
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_tiles_and_entries_are_refused() {
    let app = TestApp::spawn().await;
    let scratch = Scratch::new();
    let policy = scratch.policy("log.policy", &log_policy(&app).await);
    execute_times(&app, 3).await;
    for (path, at, refusal) in [
        (
            "/tlog/tile/0/000.p/3",
            40,
            "bad tile: the tiles do not hash to the checkpoint's root",
        ),
        (
            "/tlog/tile/entries/000.p/3",
            -1,
            "bad entry: entry 2 does not hash to its leaf hash in the tiles",
        ),
        (
            "/tlog/tile/entries/000.p/3",
            2,
            "bad entry: entry 0 is not a 57-byte v1 leaf (version byte 0x01)",
        ),
    ] {
        let proxy = tampering_proxy(app.base.clone(), path, at).await;
        let state = scratch.path.join(format!("state-{}", at));
        let run = monitor(&proxy, &policy, &state).await;
        assert_refused(&run, 8, refusal);
        assert!(!state.join("checkpoint").exists());
    }
    // The same log, not tampered with, through the same kind of proxy.
    let proxy = tampering_proxy(app.base.clone(), "/nothing", 0).await;
    let run = monitor(&proxy, &policy, &scratch.state()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    // A log that cannot be read is not a fork: its own exit code.
    let data_dir_base = app.base.clone();
    assert_eq!(app.stop_and_verify_log().await, 3);
    let run = monitor(&data_dir_base, &policy, &scratch.state()).await;
    assert_refused(&run, 3, "unreachable: ");
}
