//! Cluster mode (issue 16) with real processes: three `wasm-hypervisor serve`
//! replicas sharing one real PostgreSQL (`postgres`), one signing key file and
//! one origin. Sessions, async answers and the audit log go through the
//! database, so a client may use any replica for any step, and every replica
//! proves every execution.
//!
//! The fault tests (kill -9 of a replica and of the sequencer, PostgreSQL
//! restarted) run under load and print their figures: executions acknowledged,
//! acknowledged but lost (must be 0), and the time from the fault until
//! executions succeed again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use wasm_hypervisor_client::{Client, ClientError, Execution, Retries, ServerIdentity, Session};
use wasm_hypervisor_protocol::payload::ExecutionRequest;
use wasm_hypervisor_protocol::receipt::{self, Receipt};
use wasm_hypervisor_protocol::wire::CheckpointResponse;

use crate::helpers::{DataDir, ServerProcess, TestApp, cli_command, fixture, request};
use crate::postgres::{self, Sql, TestPostgres};
use crate::sessions::{FLOOD_BATCH, batches_answered_before_a_fresh_clients_session};

/// How long a recovery after PostgreSQL comes back may take.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

const ORIGIN: &str = "cluster.test/wasm-hypervisor";

/// The log sequencer's advisory lock key (`cluster::log::LOG_LOCK`, "wasmhlog"),
/// as `pg_locks` shows a bigint key: its high and low 32 bits.
const LOG_LOCK: i64 = 0x7761_736d_686c_6f67;
const LOG_LOCK_HIGH: u32 = 0x7761_736d;
const LOG_LOCK_LOW: u32 = 0x686c_6f67;

/// A replica: its process, its own data directory, and a client bound to it.
struct Replica {
    process: ServerProcess,
    data_dir: DataDir,
    client: Client,
}

/// Replicas of one service: one database URL, one key file, one origin.
struct Cluster {
    url: String,
    /// SQL in the cluster's database.
    sql: Sql,
    /// Holds the shared signing key file.
    key_dir: TempDir,
    replicas: Vec<Replica>,
}

impl Cluster {
    /// `count` replicas on a fresh database of the shared PostgreSQL.
    fn start(count: usize) -> Cluster {
        let (url, sql) = postgres::shared().database_with_sql();
        Cluster::start_on(url, sql, count)
    }

    fn start_on(url: String, sql: Sql, count: usize) -> Cluster {
        let mut cluster = Cluster::empty(url, sql);
        // One after the other: the first creates the key file the others read.
        for _ in 0..count {
            cluster.add_replica();
        }
        cluster
    }

    /// No replica yet.
    fn empty(url: String, sql: Sql) -> Cluster {
        Cluster {
            url,
            sql,
            key_dir: tempfile::tempdir().unwrap(),
            replicas: Vec::new(),
        }
    }

    fn key_file(&self) -> PathBuf {
        self.key_dir.path().join("signing_key.pem")
    }

    fn add_replica(&mut self) {
        self.add_replica_in(DataDir::new());
    }

    fn add_replica_in(&mut self, data_dir: DataDir) {
        self.add_replica_with(data_dir, &[]);
    }

    /// A replica with more environment (configuration) than the cluster's.
    fn add_replica_with(&mut self, data_dir: DataDir, more_env: &[(&str, &str)]) {
        let key_file = self.key_file();
        let mut env = replica_env(&self.url, &key_file, ORIGIN);
        env.extend_from_slice(more_env);
        let process = ServerProcess::start_with(&data_dir.path, &[], &env);
        let client = Client::new(&process.base, None);
        self.replicas.push(Replica {
            process,
            data_dir,
            client,
        });
    }

    fn client(&self, index: usize) -> &Client {
        &self.replicas[index].client
    }

    /// The log's size in the database.
    fn log_size(&self) -> u64 {
        self.sql
            .run("SELECT size FROM log_head")
            .trim()
            .parse()
            .unwrap()
    }

    /// Waits until every replica's signed checkpoint covers the whole log in
    /// the database, with one root; returns that checkpoint.
    async fn caught_up_checkpoint(&self, identity: &ServerIdentity) -> CheckpointResponse {
        let size = self.log_size();
        let deadline = Instant::now() + RECOVERY_DEADLINE;
        let mut first: Option<CheckpointResponse> = None;
        for replica in &self.replicas {
            let checkpoint = loop {
                let checkpoint = replica.client.checkpoint().await.unwrap();
                if checkpoint.tree_size == size {
                    break checkpoint;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} reached {} of {size} leaves",
                    replica.process.base,
                    checkpoint.tree_size
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            receipt::check_checkpoint(&checkpoint, &identity.public_key).unwrap();
            match &first {
                None => first = Some(checkpoint),
                Some(first) => assert_eq!(
                    first.root_hash, checkpoint.root_hash,
                    "two replicas' trees of one size differ"
                ),
            }
        }
        first.expect("a replica")
    }

    /// Checks that every replica has caught up with the one log (same size and
    /// root) and stops every replica gracefully; returns the log's size.
    async fn stop_and_check_log(self, identity: &ServerIdentity) -> u64 {
        let checkpoint = self.caught_up_checkpoint(identity).await;
        for replica in self.replicas {
            replica.process.sigterm();
            let exited = replica.process.wait().await;
            assert!(exited.status.success(), "{:?}", exited.stderr);
        }
        checkpoint.tree_size
    }

    /// The process id of the replica whose backend holds the log's sequencer
    /// lock right now, if any (`application_name` is `wasm-hypervisor
    /// <host>/<pid>`).
    fn sequencer_pid(&self) -> Option<u32> {
        let holders = self.sql.run(&format!(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
             AND l.classid = {LOG_LOCK_HIGH} AND l.objid = {LOG_LOCK_LOW}"
        ));
        holders.lines().find_map(|name| {
            name.strip_prefix("wasm-hypervisor ")?
                .rsplit('/')
                .next()?
                .parse()
                .ok()
        })
    }

    /// Waits (polling `pg_locks`, at most 10 s) for a replica to hold the
    /// sequencer lock and kills it with SIGKILL; returns the instant of the kill
    /// and the index it had.
    fn kill_the_sequencer(&mut self) -> (Instant, usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = self.sequencer_pid()
                && let Some(index) = self
                    .replicas
                    .iter()
                    .position(|replica| replica.process.pid() == pid)
            {
                let replica = self.replicas.remove(index);
                let killed = Instant::now();
                replica.process.kill();
                return (killed, index);
            }
            assert!(
                Instant::now() < deadline,
                "no replica was seen holding the sequencer lock"
            );
        }
    }
}

fn replica_env<'a>(url: &'a str, key_file: &'a Path, origin: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("WASM_HYPERVISOR_CLUSTER__DATABASE_URL", url),
        (
            "WASM_HYPERVISOR_SIGNING_KEY_FILE",
            key_file.to_str().unwrap(),
        ),
        ("WASM_HYPERVISOR_ORIGIN", origin),
    ]
}

/// The plaintext of a small command, in the client's wire format.
fn plaintext(client: &Client) -> Vec<u8> {
    let request: ExecutionRequest = request(&fixture("exit_code"));
    client.wire().encode_request(&request).unwrap()
}

fn server_code(error: ClientError) -> (u16, String) {
    match error {
        ClientError::Server { status, code, .. } => (status, code),
        other => panic!("expected an error answer, got {other}"),
    }
}

/// A session opened on replica `on`.
async fn open_on(cluster: &Cluster, identity: &ServerIdentity, on: usize) -> Session {
    cluster
        .client(on)
        .open_session(&identity.public_key)
        .await
        .unwrap()
}

/// A session opened on replica `on` and executed on replica `run`.
async fn open_and_execute(
    cluster: &Cluster,
    identity: &ServerIdentity,
    on: usize,
    run: usize,
) -> Result<Execution, ClientError> {
    let session = open_on(cluster, identity, on).await;
    let client = cluster.client(run);
    client.execute(&session, &plaintext(client)).await
}

/// A session on replica `on`, executed on replica `run`: the receipt.
async fn execute_across(
    cluster: &Cluster,
    identity: &ServerIdentity,
    on: usize,
    run: usize,
) -> Receipt {
    let execution = open_and_execute(cluster, identity, on, run).await.unwrap();
    assert_eq!(execution.result.exit_code, Some(42));
    execution.receipt(&cluster.replicas[run].process.base, identity)
}

/// Whether `receipt` verifies at `client` with the client's own checks: the
/// leaf, its signature, and its inclusion proof against the replica's signed
/// checkpoint.
async fn verifies_at(client: &Client, receipt: &Receipt, identity: &ServerIdentity) -> bool {
    match client.inclusion(&receipt.execution_id).await {
        Ok(answer) => receipt::all_hold(&receipt::check_receipt(
            receipt,
            &answer,
            &identity.public_key,
        )),
        Err(_) => false,
    }
}

/// Checks that `new` (from any replica) extends `old` (from any other), with a
/// consistency proof from `client`.
async fn assert_consistent(
    client: &Client,
    old: &CheckpointResponse,
    new: &CheckpointResponse,
    identity: &ServerIdentity,
) {
    assert!(old.tree_size <= new.tree_size);
    let proof = if old.tree_size == 0 {
        Vec::new()
    } else {
        client
            .consistency(old.tree_size, new.tree_size)
            .await
            .unwrap()
            .proof
    };
    let checks = receipt::check_consistency(old, new, &proof, &identity.public_key);
    assert!(receipt::all_hold(&checks), "{old:?} -> {new:?}: {checks:?}");
}

#[tokio::test]
async fn every_replica_serves_the_same_key_and_origin() {
    let cluster = Cluster::start(3);
    let first = cluster.client(0).identity(None).await.unwrap();
    for index in 1..3 {
        let identity = cluster
            .client(index)
            .identity(Some(&first.key_id.to_string()))
            .await
            .unwrap();
        assert_eq!(identity.origin, ORIGIN);
        assert_eq!(identity.key_id, first.key_id);
    }
}

#[tokio::test]
async fn a_session_opened_on_one_replica_executes_on_another_and_only_once() {
    let cluster = Cluster::start(3);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let session = open_on(&cluster, &identity, 0).await;
    let execution = cluster
        .client(1)
        .execute(&session, &plaintext(cluster.client(1)))
        .await
        .expect("replica B executes a session replica A issued");
    assert_eq!(execution.result.exit_code, Some(42));
    // Single use holds across replicas.
    let again = cluster
        .client(2)
        .execute(&session, &plaintext(cluster.client(2)))
        .await
        .err()
        .expect("a used session is refused on another replica");
    assert_eq!(server_code(again), (404, "session_not_found".to_owned()));
    assert_eq!(cluster.stop_and_check_log(&identity).await, 1);
}

#[tokio::test]
async fn a_batch_opened_on_one_replica_is_used_across_the_others() {
    let cluster = Cluster::start(3);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let batch = cluster
        .client(0)
        .open_sessions(&identity.public_key, 6)
        .await
        .unwrap();
    for (index, session) in batch.iter().enumerate() {
        let session = Session {
            id: session.session_id,
            public_key: session.public_key,
        };
        let client = cluster.client(1 + index % 2);
        let execution = client.execute(&session, &plaintext(client)).await.unwrap();
        assert_eq!(execution.result.exit_code, Some(42));
    }
    assert_eq!(cluster.stop_and_check_log(&identity).await, 6);
}

#[tokio::test]
async fn an_async_execution_submitted_on_one_replica_is_fetched_from_another() {
    let cluster = Cluster::start(2);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let session = open_on(&cluster, &identity, 0).await;
    let pending = cluster
        .client(0)
        .execute_async(&session, &plaintext(cluster.client(0)))
        .await
        .expect("accepted");
    let execution = cluster
        .client(1)
        .wait(pending)
        .await
        .expect("replica B answers what replica A ran");
    assert_eq!(execution.result.exit_code, Some(42));
    assert_eq!(cluster.stop_and_check_log(&identity).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_phase_of_a_long_job_on_one_replica_is_reported_by_another() {
    use crate::async_executions::{CompileGate, each_phase_is_reported, one_slot_compiling_in_it};
    // Two replicas in this process (so that the runner's compile worker is the
    // gate), on one database and one key.
    let (url, sql) = postgres::shared().database_with_sql();
    let key_dir = tempfile::tempdir().unwrap();
    let replica = |config: &mut wasm_hypervisor_server::config::Config| {
        config.cluster.database_url = url.clone().into();
        config.signing_key_file = key_dir.path().join("signing_key.pem");
    };
    let gate = CompileGate::new();
    let runner = TestApp::spawn_with(|config| {
        replica(config);
        one_slot_compiling_in_it(config, &gate);
    })
    .await;
    let other = TestApp::spawn_with(replica).await;
    each_phase_is_reported(&runner, &other.base, &gate).await;
    // Both executions are in the one log, which both replicas serve.
    let size: u64 = sql.run("SELECT size FROM log_head").trim().parse().unwrap();
    assert_eq!(size, 2);
    let mut roots = Vec::new();
    for app in [&runner, &other] {
        let checkpoint = tokio::time::timeout(RECOVERY_DEADLINE, async {
            loop {
                let checkpoint = app.client.checkpoint().await.unwrap();
                if checkpoint.tree_size == size {
                    return checkpoint;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("each replica's checkpoint covers the log");
        receipt::check_checkpoint(&checkpoint, &runner.identity.public_key).unwrap();
        roots.push(checkpoint.root_hash);
    }
    assert_eq!(roots[0], roots[1], "one log");
    runner.stop().await;
    other.stop().await;
}

/// `serve` on `url` with `key_file` and `origin`: it must exit without
/// listening; its stderr.
async fn refused_start(url: &str, key_file: &Path, origin: &str) -> String {
    refused_start_in(&DataDir::new(), url, key_file, origin).await
}

/// [`refused_start`] on `data_dir`.
async fn refused_start_in(data_dir: &DataDir, url: &str, key_file: &Path, origin: &str) -> String {
    let output = cli_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir.path)
        .envs(replica_env(url, key_file, origin))
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "the replica started");
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test]
async fn a_replica_with_another_key_or_origin_refuses_to_start() {
    let cluster = Cluster::start(1);
    let other_keys = tempfile::tempdir().unwrap();
    let stderr = refused_start(
        &cluster.url,
        &other_keys.path().join("signing_key.pem"),
        ORIGIN,
    )
    .await;
    assert!(
        stderr.contains("the database was set up under signing key"),
        "{stderr}"
    );
    let stderr = refused_start(&cluster.url, &cluster.key_file(), "another.test/log").await;
    assert!(
        stderr.contains("the database was set up for origin `cluster.test/wasm-hypervisor`"),
        "{stderr}"
    );
}

/// Polls `/health` at `base` until `check` holds, or fails at the deadline.
async fn health_until(base: &str, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    loop {
        if let Ok(response) = http.get(format!("{base}/health")).send().await
            && let Ok(body) = response.json::<serde_json::Value>().await
            && check(&body)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {RECOVERY_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn while_postgres_is_down_sessions_and_executions_answer_503_and_the_service_recovers() {
    // A server of its own: this test stops it.
    let mut server = TestPostgres::start();
    let (url, sql) = server.database_with_sql();
    let cluster = Cluster::start_on(url, sql, 2);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let session = open_on(&cluster, &identity, 0).await;

    server.stop();
    health_until(
        &cluster.replicas[1].process.base,
        "/health names the database",
        |body| {
            body["reasons"]
                .as_array()
                .is_some_and(|reasons| reasons.iter().any(|r| r == "database_unreachable"))
        },
    )
    .await;
    let refused = cluster
        .client(1)
        .open_session(&identity.public_key)
        .await
        .expect_err("no session without the database");
    assert_eq!(
        server_code(refused),
        (503, "database_unavailable".to_owned())
    );
    let refused = cluster
        .client(1)
        .execute(&session, &plaintext(cluster.client(1)))
        .await
        .err()
        .expect("no execution without the database");
    assert_eq!(
        server_code(refused),
        (503, "database_unavailable".to_owned())
    );

    server.restart();
    health_until(
        &cluster.replicas[1].process.base,
        "/health is 200 again",
        |body| body["status"] == "ok",
    )
    .await;
    // The session issued before the outage was not used by the refusal.
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let execution = loop {
        match cluster
            .client(1)
            .execute(&session, &plaintext(cluster.client(1)))
            .await
        {
            Ok(execution) => break execution,
            // A pooled connection from before the restart fails once before it
            // is replaced.
            Err(ClientError::Server { status: 503, .. }) if Instant::now() < deadline => {}
            Err(other) => panic!("{other}"),
        }
    };
    assert_eq!(execution.result.exit_code, Some(42));
    assert_eq!(cluster.stop_and_check_log(&identity).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_opened_on_one_replica_runs_on_a_second_and_verifies_at_once_on_a_third_with_consistent_checkpoints()
 {
    let cluster = Cluster::start(3);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let mut checkpoints = vec![cluster.client(1).checkpoint().await.unwrap()];
    for round in 0..3 {
        let (opened_on, ran_on) = (round % 3, (round + 1) % 3);
        let receipt = execute_across(&cluster, &identity, opened_on, ran_on).await;
        // At once, with no wait for the others to catch up: on the third replica,
        // and on the one that opened the session.
        for other in (0..3).filter(|&other| other != ran_on) {
            assert!(
                verifies_at(cluster.client(other), &receipt, &identity).await,
                "replica {other} proves an execution that ran on replica {ran_on} \
                 (session opened on replica {opened_on})"
            );
            checkpoints.push(cluster.client(other).checkpoint().await.unwrap());
        }
    }
    // Checkpoints signed by different replicas, each proved consistent with
    // every later one by yet another replica.
    checkpoints.sort_by_key(|checkpoint| checkpoint.tree_size);
    for (at, old) in checkpoints.iter().enumerate() {
        for (offset, new) in checkpoints[at..].iter().enumerate() {
            assert_consistent(cluster.client((at + offset) % 3), old, new, &identity).await;
        }
    }
    for replica in &cluster.replicas {
        assert!(
            !replica.data_dir.path.join("audit.log").exists(),
            "a cluster replica keeps no file log"
        );
    }
    assert_eq!(cluster.stop_and_check_log(&identity).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_appending_concurrently_get_contiguous_unique_indices_and_end_with_one_root() {
    let cluster = Cluster::start(3);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|task| {
            let clients: Vec<(String, Client)> = cluster
                .replicas
                .iter()
                .map(|replica| (replica.process.base.clone(), replica.client.clone()))
                .collect();
            let identity = identity.clone();
            tokio::spawn(async move {
                let mut receipts = Vec::new();
                for round in 0..8 {
                    let (base, client) = &clients[(task + round) % clients.len()];
                    let session = client.open_session(&identity.public_key).await.unwrap();
                    let execution = client.execute(&session, &plaintext(client)).await.unwrap();
                    receipts.push(execution.receipt(base, &identity));
                }
                receipts
            })
        })
        .collect();
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.extend(task.await.unwrap());
    }
    let mut indices: Vec<u64> = receipts.iter().map(|receipt| receipt.log_index).collect();
    indices.sort_unstable();
    assert_eq!(
        indices,
        (0..48).collect::<Vec<u64>>(),
        "indices from 0, contiguous, unique"
    );
    let mut ids: Vec<&str> = receipts
        .iter()
        .map(|receipt| receipt.execution_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 48, "every execution id once");
    assert_eq!(
        cluster
            .sql
            .run("SELECT count(DISTINCT execution_id) FROM log_leaves")
            .trim(),
        "48"
    );
    // Every replica proves every execution, against one root.
    let checkpoint = cluster.caught_up_checkpoint(&identity).await;
    assert_eq!(checkpoint.tree_size, 48);
    for replica in &cluster.replicas {
        for receipt in &receipts {
            assert!(verifies_at(&replica.client, receipt, &identity).await);
        }
    }
    assert_eq!(cluster.stop_and_check_log(&identity).await, 48);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_cannot_fork_a_stuck_sequencer_stops_appends_with_503_and_the_index_key_refuses_a_second_leaf()
 {
    let cluster = Cluster::start(2);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let first = execute_across(&cluster, &identity, 0, 0).await;
    assert_eq!(first.log_index, 0);
    // Replica B compiles the module now, so that below its append is what waits.
    let second = execute_across(&cluster, &identity, 1, 1).await;
    assert_eq!(second.log_index, 1);

    // A stuck sequencer: a connection holds the log's lock in an open
    // transaction, longer than an append may take.
    let mut holder = cluster.sql.spawn(&format!(
        "SELECT pg_advisory_xact_lock({LOG_LOCK}); SELECT pg_sleep(7)"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster
        .sql
        .run(&format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid = {LOG_LOCK_HIGH} AND objid = {LOG_LOCK_LOW}"
        ))
        .trim()
        != "1"
    {
        assert!(Instant::now() < deadline, "the lock was never taken");
    }
    let refused = open_and_execute(&cluster, &identity, 1, 1)
        .await
        .err()
        .expect("no append while another sequencer holds the lock");
    assert_eq!(server_code(refused), (503, "log_unavailable".to_owned()));
    assert_eq!(cluster.log_size(), 2, "nothing was written");
    assert_eq!(
        cluster.sql.run("SELECT count(*) FROM log_leaves").trim(),
        "2"
    );

    // Once the lock is free, appends go on from where the log was.
    assert!(
        tokio::task::block_in_place(|| holder.wait())
            .unwrap()
            .success()
    );
    let next = execute_across(&cluster, &identity, 1, 1).await;
    assert_eq!(next.log_index, 2);

    // Even with the lock bypassed, a second leaf at a taken index is refused by
    // the key, and the log is as it was.
    let forked = cluster.sql.try_run(
        "INSERT INTO log_leaves (idx, execution_id, record) \
         VALUES (1, gen_random_uuid(), '\\x00')",
    );
    let error = forked.expect_err("a second leaf at index 1");
    assert!(error.contains("duplicate key"), "{error}");
    for replica in &cluster.replicas {
        for receipt in [&first, &second, &next] {
            assert!(verifies_at(&replica.client, receipt, &identity).await);
        }
    }
    assert_eq!(cluster.stop_and_check_log(&identity).await, 3);
}

/// One execution a load task tried.
struct Attempt {
    started: Instant,
    finished: Instant,
    /// The receipt of an acknowledged execution.
    acknowledged: Option<Receipt>,
    /// The error answer's status, if the server answered one.
    status: Option<u16>,
}

/// Client tasks executing in a loop across replicas (a session on one, the
/// execution on the same or another), recording every attempt, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Attempt>>>,
}

impl Load {
    fn start(cluster: &Cluster, identity: &ServerIdentity, tasks: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Arc<Vec<(String, Client)>> = Arc::new(
            cluster
                .replicas
                .iter()
                // Each attempt is recorded as the server answered it: a 503 is
                // what the test looks for, not something to wait out.
                .map(|replica| {
                    let client = replica.client.clone().with_retries(Retries::NONE);
                    (replica.process.base.clone(), client)
                })
                .collect(),
        );
        let tasks = (0..tasks)
            .map(|task| {
                let (stop, clients, identity) = (stop.clone(), clients.clone(), identity.clone());
                tokio::spawn(async move {
                    let mut attempts = Vec::new();
                    let mut turn = task;
                    while !stop.load(Ordering::Acquire) {
                        // Every pair (on, run), the same replica included, in turn.
                        let count = clients.len();
                        let (on, run) = (turn % count, (turn + turn / count) % count);
                        turn += 1;
                        let started = Instant::now();
                        let outcome = async {
                            let session = clients[on].1.open_session(&identity.public_key).await?;
                            let client = &clients[run].1;
                            client.execute(&session, &plaintext(client)).await
                        }
                        .await;
                        let finished = Instant::now();
                        let (acknowledged, status) = match outcome {
                            Ok(execution) => {
                                assert_eq!(execution.result.exit_code, Some(42));
                                (Some(execution.receipt(&clients[run].0, &identity)), None)
                            }
                            Err(ClientError::Server { status, .. }) => (None, Some(status)),
                            // A killed replica refuses connections at once.
                            Err(_) => (None, None),
                        };
                        if acknowledged.is_none() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        attempts.push(Attempt {
                            started,
                            finished,
                            acknowledged,
                            status,
                        });
                    }
                    attempts
                })
            })
            .collect();
        Load { stop, tasks }
    }

    async fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Release);
        let mut attempts = Vec::new();
        for task in self.tasks {
            attempts.extend(task.await.unwrap());
        }
        attempts
    }
}

/// Time from `fault` until the first execution begun after it was
/// acknowledged.
fn recovery(attempts: &[Attempt], fault: Instant) -> Duration {
    attempts
        .iter()
        .filter(|attempt| attempt.started >= fault && attempt.acknowledged.is_some())
        .map(|attempt| attempt.finished - fault)
        .min()
        .expect("an execution succeeded after the fault")
}

/// How many acknowledged executions fail to verify on some replica of
/// `clients`.
async fn lost(attempts: &[Attempt], clients: &[&Client], identity: &ServerIdentity) -> usize {
    let mut lost = 0;
    for receipt in attempts
        .iter()
        .filter_map(|attempt| attempt.acknowledged.as_ref())
    {
        for client in clients {
            if !verifies_at(client, receipt, identity).await {
                lost += 1;
                break;
            }
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_sequencer_and_of_another_replica_under_load_loses_no_acknowledged_execution()
{
    let mut cluster = Cluster::start(3);
    let identity = cluster.client(0).identity(None).await.unwrap();
    // Each replica compiles the module once before the load.
    for replica in 0..3 {
        execute_across(&cluster, &identity, replica, replica).await;
    }
    let before = cluster.client(0).checkpoint().await.unwrap();
    let load = Load::start(&cluster, &identity, 6);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sequencer_killed, _) = tokio::task::block_in_place(|| cluster.kill_the_sequencer());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sequencer = cluster.sequencer_pid();
    let other = cluster
        .replicas
        .iter()
        .position(|replica| Some(replica.process.pid()) != sequencer)
        .unwrap();
    let replica_killed = Instant::now();
    cluster.replicas.remove(other).process.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = load.finish().await;

    // A replica started afterwards loads the whole log.
    cluster.add_replica();
    let acknowledged = attempts.iter().filter(|a| a.acknowledged.is_some()).count();
    let clients: Vec<&Client> = cluster
        .replicas
        .iter()
        .map(|replica| &replica.client)
        .collect();
    let lost = lost(&attempts, &clients, &identity).await;
    let after_sequencer = recovery(&attempts, sequencer_killed);
    let after_replica = recovery(&attempts, replica_killed);
    eprintln!(
        "kill -9 under load: acknowledged {acknowledged}, lost {lost}; executions succeeded again \
         {} ms after the kill of the sequencer, {} ms after the kill of another replica",
        after_sequencer.as_millis(),
        after_replica.as_millis()
    );
    assert!(acknowledged > 0);
    assert_eq!(lost, 0, "acknowledged executions lost");
    assert!(
        attempts
            .iter()
            .all(|attempt| attempt.status.is_none_or(|status| status == 503)),
        "failures are refused connections or 503s"
    );
    let after = cluster.caught_up_checkpoint(&identity).await;
    for client in &clients {
        assert_consistent(client, &before, &after, &identity).await;
    }
    assert!(cluster.stop_and_check_log(&identity).await >= acknowledged as u64 + 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restarted_under_load_answers_503_then_recovers_losing_no_acknowledged_execution()
{
    let mut server = TestPostgres::start();
    let (url, sql) = server.database_with_sql();
    let cluster = Cluster::start_on(url, sql, 2);
    let identity = cluster.client(0).identity(None).await.unwrap();
    for replica in 0..2 {
        execute_across(&cluster, &identity, replica, replica).await;
    }
    let before = cluster.client(1).checkpoint().await.unwrap();
    let load = Load::start(&cluster, &identity, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = Instant::now();
    tokio::task::block_in_place(|| server.stop());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarting = Instant::now();
    tokio::task::block_in_place(|| server.restart());
    let back = Instant::now();
    // Nothing commits while PostgreSQL is down: the log grows again once
    // executions succeed again. Then the load goes on a little.
    let at_restart = cluster.log_size();
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    while cluster.log_size() == at_restart {
        assert!(
            Instant::now() < deadline,
            "no execution succeeded after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = load.finish().await;

    let down: Vec<&Attempt> = attempts
        .iter()
        .filter(|attempt| {
            attempt.started >= stopped + Duration::from_millis(200)
                && attempt.finished <= restarting
        })
        .collect();
    assert!(
        !down.is_empty(),
        "executions were tried while PostgreSQL was down"
    );
    assert!(
        down.iter()
            .all(|attempt| attempt.acknowledged.is_none() && attempt.status == Some(503)),
        "every execution tried while PostgreSQL was down was answered 503"
    );
    let acknowledged = attempts.iter().filter(|a| a.acknowledged.is_some()).count();
    let clients: Vec<&Client> = cluster
        .replicas
        .iter()
        .map(|replica| &replica.client)
        .collect();
    let lost = lost(&attempts, &clients, &identity).await;
    let recovered = recovery(&attempts, back);
    eprintln!(
        "PostgreSQL restarted under load: acknowledged {acknowledged}, lost {lost}; executions \
         succeeded again {} ms after PostgreSQL accepted connections ({} ms after it was stopped)",
        recovered.as_millis(),
        (back + recovered - stopped).as_millis()
    );
    assert_eq!(lost, 0, "acknowledged executions lost");
    let after = cluster.caught_up_checkpoint(&identity).await;
    for client in &clients {
        assert_consistent(client, &before, &after, &identity).await;
    }
    cluster.stop_and_check_log(&identity).await;
}

/// `wasm-hypervisor log import` of `data_dir` into `url` with `key_file`: its
/// exit status and stderr.
async fn import_into(url: &str, data_dir: &Path, key_file: &Path) -> (bool, String) {
    let output = cli_command()
        .args(["log", "import", "--database-url", url, "--data-dir"])
        .arg(data_dir)
        .envs([
            (
                "WASM_HYPERVISOR_SIGNING_KEY_FILE",
                key_file.to_str().unwrap(),
            ),
            ("WASM_HYPERVISOR_ORIGIN", ORIGIN),
        ])
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn log_import_refuses_a_data_directory_without_the_key_or_without_records() {
    let (url, sql) = postgres::shared().database_with_sql();
    let cluster = Cluster::empty(url, sql);
    let data_dir = DataDir::new();
    let missing_key = data_dir.path.join("no-such-key.pem");
    let (imported, stderr) = import_into(&cluster.url, &data_dir.path, &missing_key).await;
    assert!(!imported && stderr.contains("no signing key"), "{stderr}");

    // A server (the cluster's key and origin) that ran nothing leaves a log
    // without records.
    let key_file = cluster.key_file();
    let embedded = ServerProcess::start_with(
        &data_dir.path,
        &[],
        &[
            (
                "WASM_HYPERVISOR_SIGNING_KEY_FILE",
                key_file.to_str().unwrap(),
            ),
            ("WASM_HYPERVISOR_ORIGIN", ORIGIN),
        ],
    );
    let identity = Client::new(&embedded.base, None).identity(None).await;
    assert_eq!(identity.unwrap().origin, ORIGIN, "the server is up");
    embedded.sigterm();
    let exited = embedded.wait().await;
    assert!(
        exited.status.success(),
        "{:?}: {:?}",
        exited.status,
        exited.stderr
    );
    let (imported, stderr) = import_into(&cluster.url, &data_dir.path, &key_file).await;
    assert!(
        !imported && stderr.contains("nothing to import"),
        "{stderr}"
    );
    assert_eq!(cluster.log_size(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_log_is_imported_into_an_empty_database_once_and_replicas_then_prove_its_executions()
{
    let (url, sql) = postgres::shared().database_with_sql();
    let mut cluster = Cluster::empty(url, sql);
    // An embedded server (no database) with the cluster's key and origin.
    let data_dir = DataDir::new();
    let key_file = cluster.key_file();
    let embedded = ServerProcess::start_with(
        &data_dir.path,
        &[],
        &[
            (
                "WASM_HYPERVISOR_SIGNING_KEY_FILE",
                key_file.to_str().unwrap(),
            ),
            ("WASM_HYPERVISOR_ORIGIN", ORIGIN),
        ],
    );
    let client = Client::new(&embedded.base, None);
    let identity = client.identity(None).await.unwrap();
    let mut receipts = Vec::new();
    for _ in 0..3 {
        let session = client.open_session(&identity.public_key).await.unwrap();
        let execution = client.execute(&session, &plaintext(&client)).await.unwrap();
        receipts.push(execution.receipt(&embedded.base, &identity));
    }
    embedded.sigterm();
    assert!(embedded.wait().await.status.success());

    // A replica never ignores a file log it finds.
    let stderr = refused_start_in(&data_dir, &cluster.url, &key_file, ORIGIN).await;
    assert!(stderr.contains("wasm-hypervisor log import"), "{stderr}");

    let import = || {
        let mut command = cli_command();
        command
            .args([
                "log",
                "import",
                "--database-url",
                &cluster.url,
                "--data-dir",
            ])
            .arg(&data_dir.path)
            .envs([
                (
                    "WASM_HYPERVISOR_SIGNING_KEY_FILE",
                    key_file.to_str().unwrap(),
                ),
                ("WASM_HYPERVISOR_ORIGIN", ORIGIN),
            ]);
        command
    };
    let output = import().output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("imported 3 records"));
    let again = import().output().await.unwrap();
    assert!(!again.status.success(), "a second import");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");

    // The replica on the imported data directory starts; so does a new one.
    cluster.add_replica_in(data_dir);
    cluster.add_replica();
    for replica in &cluster.replicas {
        for receipt in &receipts {
            assert!(verifies_at(&replica.client, receipt, &identity).await);
        }
    }
    let next = execute_across(&cluster, &identity, 0, 1).await;
    assert_eq!(next.log_index, 3);
    assert_eq!(cluster.stop_and_check_log(&identity).await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_refuses_a_database_whose_log_lacks_the_checkpoint_it_saw() {
    let mut cluster = Cluster::start(1);
    let identity = cluster.client(0).identity(None).await.unwrap();
    execute_across(&cluster, &identity, 0, 0).await;
    cluster.caught_up_checkpoint(&identity).await;
    // A clean stop persists the newest checkpoint the replica saw.
    let replica = cluster.replicas.pop().unwrap();
    replica.process.sigterm();
    assert!(replica.process.wait().await.status.success());
    assert!(replica.data_dir.path.join("cluster_checkpoint").exists());

    // The same key and origin, but a database without that leaf (as a restored
    // older backup would be).
    let (other, _) = postgres::shared().database_with_sql();
    let stderr = refused_start_in(&replica.data_dir, &other, &cluster.key_file(), ORIGIN).await;
    assert!(
        stderr.contains("does not contain the checkpoint this replica saw"),
        "{stderr}"
    );
}

/// Bytes of output the guests of [`replicas_for_large_answers`] may write: a
/// sealed result of some 21 MB, over a hundred of the pieces a replica reads
/// another's answer in (192 KiB), and more than a connection's buffers hold.
const LARGE_OUTPUT: u64 = 16 << 20;

/// `count` replicas whose guests may write [`LARGE_OUTPUT`] bytes, and whose
/// stalled writes last longer than any test step.
fn replicas_for_large_answers(count: usize) -> Cluster {
    let (url, sql) = postgres::shared().database_with_sql();
    let mut cluster = Cluster::empty(url, sql);
    let output = LARGE_OUTPUT.to_string();
    for _ in 0..count {
        let data_dir = DataDir::new();
        let key_file = cluster.key_file();
        let mut env = replica_env(&cluster.url, &key_file, ORIGIN);
        env.push(("WASM_HYPERVISOR_LIMITS__MAX_OUTPUT_BYTES", &output));
        env.push(("WASM_HYPERVISOR_HTTP__RESPONSE_WRITE_TIMEOUT_MS", "60000"));
        let process = ServerProcess::start_with(&data_dir.path, &[], &env);
        let client = Client::new(&process.base, None);
        cluster.replicas.push(Replica {
            process,
            data_dir,
            client,
        });
    }
    cluster
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_sends_another_replicas_answer_in_pieces_byte_for_byte_to_a_bounded_number_of_readers()
 {
    let cluster = replicas_for_large_answers(2);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let session = open_on(&cluster, &identity, 0).await;
    let mut flood = request(&fixture("output_flood"));
    flood.limits = Some(wasm_hypervisor_protocol::payload::RequestedLimits {
        // Ended by fuel, not by the clock, however loaded the machine is: the
        // 64 KiB fill costs 65,536 and each round of 64 KiB about 6, so this is
        // some 700 rounds, the 256 that fill the cap and a few hundred more.
        fuel: Some(70_000),
        timeout_ms: Some(5_000),
        max_output_bytes: Some(LARGE_OUTPUT),
        ..Default::default()
    });
    let pending = cluster
        .client(0)
        .execute_async(&session, &serde_json::to_vec(&flood).unwrap())
        .await
        .expect("accepted");
    let path = format!("/executions/{}", pending.execution_id);
    // Replica B reads it from the database and opens it like replica A's.
    let execution = cluster.client(1).wait(pending).await.unwrap();
    assert_eq!(execution.result.stdout_bytes().len() as u64, LARGE_OUTPUT);

    // In either encoding, B's body is A's (from memory) byte for byte.
    let http = reqwest::Client::new();
    for accept in ["application/json", "application/octet-stream"] {
        let mut bodies = Vec::new();
        for replica in &cluster.replicas {
            let response = http
                .get(format!("{}{path}", replica.process.base))
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            bodies.push(response.bytes().await.unwrap());
        }
        assert!(bodies[0].len() as u64 > LARGE_OUTPUT, "{accept}");
        assert!(bodies[0] == bodies[1], "{accept}: the bodies differ");
    }

    // B sends at most 4 answers to one client at once.
    let base = &cluster.replicas[1].process.base;
    let mut readers = Vec::new();
    for _ in 0..4 {
        readers.push(crate::async_executions::stalled_reader(base, &path, true).await);
    }
    let refused = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_readers");
    drop(readers);
    assert_eq!(cluster.stop_and_check_log(&identity).await, 1);
}

impl Cluster {
    /// `count` replicas on a fresh database, each with `extra` in its
    /// environment too.
    fn start_with(count: usize, extra: &[(&str, &str)]) -> Cluster {
        let (url, sql) = postgres::shared().database_with_sql();
        let mut cluster = Cluster::empty(url, sql);
        for _ in 0..count {
            let key_file = cluster.key_file();
            let data_dir = DataDir::new();
            let mut env = replica_env(&cluster.url, &key_file, ORIGIN);
            env.extend_from_slice(extra);
            let process = ServerProcess::start_with(&data_dir.path, &[], &env);
            let client = Client::new(&process.base, None);
            cluster.replicas.push(Replica {
                process,
                data_dir,
                client,
            });
        }
        cluster
    }

    /// Rows in `sessions` that have not expired.
    fn live_sessions(&self) -> u64 {
        live_sessions(&self.sql)
    }
}

/// Rows in `sessions` of the database `sql` runs in that have not expired.
fn live_sessions(sql: &Sql) -> u64 {
    sql.run("SELECT count(*) FROM sessions WHERE expires_ms > (extract(epoch FROM now()) * 1000)::bigint")
        .trim()
        .parse()
        .unwrap()
}

/// Sets its flag to false when dropped, also by a failed assertion's unwinding.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// `POST /sessions {"count": count}` at `base` as the client at `address`,
/// forwarded by the trusted proxy at 127.0.0.1: the answer's status.
async fn open_batch_as(http: &reqwest::Client, base: &str, address: &str, count: usize) -> u16 {
    http.post(format!("{base}/sessions"))
        .header("x-forwarded-for", address)
        .json(&serde_json::json!({ "count": count }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_batches_from_many_clients_over_two_replicas_never_pass_max_pending_and_a_fresh_client_is_served()
 {
    const MAX_PENDING: u64 = 200;
    const CLIENTS_PER_ROUND: usize = 32;
    // Batches of 64 (the attack's) fill the pool; batches of 8 from new clients
    // then make room by evicting, all at once, on both replicas.
    const BATCHES: [usize; 4] = [64, 8, 64, 8];
    let cluster = Cluster::start_with(
        2,
        &[
            ("WASM_HYPERVISOR_SESSIONS__MAX_PENDING", "200"),
            ("WASM_HYPERVISOR_CLIENTS__TRUSTED_PROXIES", "[127.0.0.1]"),
        ],
    );
    // Counts the table, over and over, while the batches come in (until the
    // flood ends, or the test fails: the replicas are then stopped as usual).
    let flooding = ClearOnDrop(Arc::new(AtomicBool::new(true)));
    let sampler = {
        let (sql, flooding) = (cluster.sql.clone(), flooding.0.clone());
        std::thread::spawn(move || {
            let mut most = 0;
            while flooding.load(Ordering::SeqCst) {
                most = most.max(live_sessions(&sql));
            }
            most
        })
    };
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for (round, batch) in BATCHES.into_iter().enumerate() {
        // Every client of a round is new, holds nothing, and sends one batch at
        // once with the others, half of them to each replica.
        let batches: Vec<_> = (0..CLIENTS_PER_ROUND)
            .map(|index| {
                let (http, base) = (
                    http.clone(),
                    cluster.replicas[index % 2].process.base.clone(),
                );
                tokio::spawn(async move {
                    open_batch_as(&http, &base, &format!("10.9.{round}.{index}"), batch).await
                })
            })
            .collect();
        for batch in batches {
            answers.push(batch.await.unwrap());
        }
        let live = cluster.live_sessions();
        assert!(
            live <= MAX_PENDING,
            "round {round}: {live} sessions pending"
        );
    }
    drop(flooding);
    let most = sampler.join().unwrap();
    eprintln!(
        "{} batches of {BATCHES:?}: {} issued, {} refused; at most {most} sessions pending",
        answers.len(),
        answers.iter().filter(|&&status| status == 201).count(),
        answers.iter().filter(|&&status| status != 201).count(),
    );
    assert!(most <= MAX_PENDING, "{most} sessions pending at once");
    assert!(
        answers.iter().all(|&status| status == 201 || status == 503),
        "{answers:?}"
    );

    // The pool is full of the flood's sessions: a fresh client, on either
    // replica, takes the place of the largest holder's oldest one.
    for (index, replica) in cluster.replicas.iter().enumerate() {
        let status =
            open_batch_as(&http, &replica.process.base, &format!("10.8.0.{index}"), 1).await;
        assert_eq!(status, 201, "a fresh client on replica {index}");
    }
    assert!(cluster.live_sessions() <= MAX_PENDING);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_clients_session_is_issued_before_a_flood_of_batches_on_a_replica_is_done() {
    const FLOOD: usize = 24;
    let cluster = Cluster::start_with(
        1,
        &[
            ("WASM_HYPERVISOR_CLIENTS__TRUSTED_PROXIES", "[127.0.0.1]"),
            ("WASM_HYPERVISOR_SESSIONS__MAX_BATCH", "512"),
            ("WASM_HYPERVISOR_SESSIONS__MAX_PENDING", "20000"),
            ("WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT", "512"),
        ],
    );
    let base = &cluster.replicas[0].process.base;
    let (before, statuses) = batches_answered_before_a_fresh_clients_session(base, 6, FLOOD).await;
    assert!(statuses.iter().all(|&status| status == 201), "{statuses:?}");
    // The flood's batches are derived (and inserted) one client at a time,
    // while the fresh client's one session waits for a slice only.
    assert!(before < FLOOD / 2, "{before} of {FLOOD} batches first");
    assert_eq!(cluster.live_sessions(), (FLOOD_BATCH * FLOOD + 1) as u64);
}

/// The issue lock's key (`cluster::sessions::ISSUE_LOCK`, "wasmhses").
const ISSUE_LOCK: i64 = 0x7761_736d_6873_6573;

impl Cluster {
    /// Backends of the replicas waiting for the issue lock now.
    fn waiting_on_the_issue_lock(&self) -> usize {
        self.sql
            .run(&format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND classid = {} AND objid = {}",
                ISSUE_LOCK >> 32,
                ISSUE_LOCK & 0xffff_ffff
            ))
            .trim()
            .parse()
            .unwrap()
    }

    /// Polls `done` (at most 60 s) until it holds.
    async fn until(&self, what: &str, done: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Requests of replica `replica` that waited for their turn to store their
/// sessions (`session::issuer::Turns`, logged at debug level).
fn waited_for_a_turn(cluster: &Cluster, replica: usize) -> usize {
    cluster.replicas[replica]
        .process
        .stderr_so_far()
        .iter()
        .filter(|line| line.contains("waits for its turn to store"))
        .count()
}

/// Issue 25, row 9, at the database: while another connection holds the issue
/// lock, a flood of batches on a replica (more than its 16 connections) waits
/// with one transaction at the lock, not one per batch: an execution on that
/// replica still gets its connections, and a fresh client's one session is
/// stored right after the one batch already at the lock, not after the flood.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_behind_the_issue_lock_holds_one_connection_and_a_fresh_client_is_stored_next() {
    const FLOOD: usize = 20;
    let cluster = Cluster::start_with(
        1,
        &[
            ("WASM_HYPERVISOR_CLIENTS__TRUSTED_PROXIES", "[127.0.0.1]"),
            (
                "RUST_LOG",
                "info,wasm_hypervisor_server::session::issuer=debug",
            ),
        ],
    );
    let identity = cluster.client(0).identity(None).await.unwrap();
    // The module compiled before: the execution below waits only for what it
    // must wait for. (Each batch at the lock gives up after `lock_timeout`,
    // 4.5 s: what follows takes well under that.)
    let client = cluster.client(0);
    let warm_up = open_on(&cluster, &identity, 0).await;
    let execution = client.execute(&warm_up, &plaintext(client)).await.unwrap();
    assert_eq!(execution.result.exit_code, Some(42));
    let session = open_on(&cluster, &identity, 0).await;
    let mut holder = cluster.sql.spawn(&format!(
        "SET application_name = 'issue lock holder'; \
         SELECT pg_advisory_xact_lock({ISSUE_LOCK}); SELECT pg_sleep(90)"
    ));
    cluster
        .until("the test holds the issue lock", |cluster| {
            cluster
                .sql
                .run(&format!(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objid = {} \
                 AND a.application_name = 'issue lock holder'",
                    ISSUE_LOCK & 0xffff_ffff
                ))
                .trim()
                == "1"
        })
        .await;

    let http = reqwest::Client::new();
    let base = cluster.replicas[0].process.base.clone();
    let flood: Vec<_> = (0..FLOOD)
        .map(|n| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(
                async move { open_batch_as(&http, &base, &format!("10.9.0.{n}"), 8).await },
            )
        })
        .collect();
    // All made: one at the lock, the others waiting for their turn.
    cluster
        .until("the flood waits", |cluster| {
            waited_for_a_turn(cluster, 0) == FLOOD - 1 && cluster.waiting_on_the_issue_lock() >= 1
        })
        .await;
    assert_eq!(cluster.waiting_on_the_issue_lock(), 1);

    // An execution meanwhile: its session's take and the log's append get
    // connections, while the whole flood still waits.
    let execution = client.execute(&session, &plaintext(client)).await.unwrap();
    assert_eq!(execution.result.exit_code, Some(42));
    assert!(flood.iter().all(|batch| !batch.is_finished()));
    assert_eq!(cluster.live_sessions(), 0);

    let fresh = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move { open_batch_as(&http, &base, "10.9.255.1", 1).await })
    };
    cluster
        .until("the fresh client waits", |cluster| {
            waited_for_a_turn(cluster, 0) == FLOOD
        })
        .await;
    cluster.sql.run(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'issue lock holder'",
    );
    tokio::task::block_in_place(|| holder.wait()).unwrap();
    assert_eq!(fresh.await.unwrap(), 201);
    for batch in flood {
        assert_eq!(batch.await.unwrap(), 201);
    }
    // The clients in the order their transactions wrote (a transaction's id
    // is assigned at its first write, under the lock).
    let order = cluster.sql.run(
        "SELECT encode(client, 'hex') FROM sessions \
         GROUP BY client ORDER BY min(xmin::text::bigint)",
    );
    let order: Vec<&str> = order.lines().collect();
    assert_eq!(order.len(), FLOOD + 1, "{order:?}");
    let fresh_at = order.iter().position(|&client| client == "040a09ff01");
    assert_eq!(fresh_at, Some(1), "{order:?}");
}

/// Live sessions in the cluster's database held by the client at the IPv4
/// `address` (the `client` column: 4, then the address's octets).
fn held_by(cluster: &Cluster, address: &str) -> u64 {
    let octets: std::net::Ipv4Addr = address.parse().unwrap();
    let key = hex::encode([&[4u8][..], &octets.octets()].concat());
    cluster
        .sql
        .run(&format!(
            "SELECT count(*) FROM sessions WHERE client = '\\x{key}'::bytea \
             AND expires_ms > (extract(epoch FROM now()) * 1000)::bigint"
        ))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_cluster_pool_makes_room_from_the_largest_holder_only_if_it_holds_more_all_or_nothing()
 {
    let cluster = Cluster::start_with(
        2,
        &[
            ("WASM_HYPERVISOR_SESSIONS__MAX_PENDING", "4"),
            ("WASM_HYPERVISOR_CLIENTS__TRUSTED_PROXIES", "[127.0.0.1]"),
        ],
    );
    let http = reqwest::Client::new();
    let on = |replica: usize| cluster.replicas[replica].process.base.clone();
    let (a, b, c, d) = ("10.7.0.1", "10.7.0.2", "10.7.0.3", "10.7.0.4");
    let holdings = || [a, b, c, d].map(|client| held_by(&cluster, client));
    assert_eq!(open_batch_as(&http, &on(0), a, 3).await, 201);
    assert_eq!(open_batch_as(&http, &on(1), b, 1).await, 201);
    assert_eq!(holdings(), [3, 1, 0, 0], "the pool is full");

    // C holds less than A, the largest holder, twice: A gives up a session each
    // time, on either replica; B, which holds no more than C, keeps its one.
    assert_eq!(open_batch_as(&http, &on(1), c, 1).await, 201);
    assert_eq!(holdings(), [2, 1, 1, 0]);
    assert_eq!(open_batch_as(&http, &on(0), c, 1).await, 201);
    assert_eq!(holdings(), [1, 1, 2, 0]);
    // Now no one holds more than C: refused, nothing evicted.
    assert_eq!(open_batch_as(&http, &on(1), c, 1).await, 503);
    assert_eq!(holdings(), [1, 1, 2, 0]);

    // D's batch of two: the first place would come from C (2 > 0), the second
    // from no one (nobody holds more than the 1 D would hold by then): the
    // batch is refused whole, and C keeps both.
    assert_eq!(open_batch_as(&http, &on(1), d, 2).await, 503);
    assert_eq!(holdings(), [1, 1, 2, 0]);
    assert_eq!(open_batch_as(&http, &on(0), d, 1).await, 201);
    assert_eq!(holdings(), [1, 1, 1, 1]);
}

/// Cluster mode's backend keeps the log interface's reads (`audit::LogBackend`),
/// as the file log does: the entries of an index range are the leaves appended,
/// in order, read back from the database; a range past the tree is refused; the
/// tree's hashes are those of the leaves.
#[tokio::test(flavor = "multi_thread")]
async fn the_database_log_reads_back_the_entries_of_an_index_range() {
    use wasm_hypervisor_protocol::leaf::Leaf;
    use wasm_hypervisor_protocol::merkle::MerkleTree;
    use wasm_hypervisor_server::audit::{AuditError, AuditLog, LogRecord};
    use wasm_hypervisor_server::cluster::{self, PgLog};
    use wasm_hypervisor_server::keys::ServerKey;

    let (url, _sql) = postgres::shared().database_with_sql();
    let data_dir = tempfile::tempdir().unwrap();
    let key = Arc::new(
        ServerKey::from_scalar(
            wasm_hypervisor_server::envelope::Provider::default(),
            &[7; 32],
        )
        .unwrap(),
    );
    let cluster = cluster::Cluster::connect(&url, 2, &key, ORIGIN)
        .await
        .unwrap();
    let (log, tasks) = PgLog::open(cluster, key.clone(), ORIGIN, data_dir.path())
        .await
        .unwrap();
    let log = AuditLog::new(log);
    let leaves: Vec<Leaf> = (0..5u8)
        .map(|n| Leaf {
            execution_id: uuid::Uuid::from_bytes([n + 1; 16]),
            timestamp_ms: u64::from(n),
            commitment: [n; 32],
        })
        .collect();
    for (index, leaf) in leaves.iter().enumerate() {
        let record = LogRecord {
            leaf: *leaf,
            signature: key.sign(&leaf.to_bytes()),
        };
        assert_eq!(log.append(record).await.unwrap(), index as u64);
    }
    assert_eq!(log.entries(0..5).await.unwrap(), leaves);
    assert_eq!(log.entries(1..3).await.unwrap(), leaves[1..3]);
    assert_eq!(log.entries(5..5).await.unwrap(), []);
    assert!(matches!(
        log.entries(3..6).await,
        Err(AuditError::BeyondTree { size: 5, .. })
    ));
    let first_four = MerkleTree::from_leaf_hashes(leaves[..4].iter().map(Leaf::hash));
    assert_eq!(log.perfect_subtree(2, 0), Some(first_four.root(4).unwrap()));
    assert_eq!(log.perfect_subtree(2, 1), None, "leaves 4 to 7: not whole");
    log.close().await;
    for task in tasks {
        task.abort();
    }
}

/// The note of `/tlog/checkpoint` at `base` once its tree has `size` leaves:
/// a replica catches up on a notification or its poll, so this polls (a
/// condition, with a deadline) rather than guessing a delay.
async fn tlog_checkpoint_of_size(http: &reqwest::Client, base: &str, size: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let note = http
            .get(format!("{base}/tlog/checkpoint"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if note.lines().nth(1) == Some(size.to_string().as_str()) {
            return note;
        }
        assert!(
            Instant::now() < deadline,
            "still {note:?}, not of size {size}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_replica_serves_the_same_tiles_and_go_accepts_the_clusters_log() {
    let cluster = Cluster::start(2);
    let identity = cluster.client(0).identity(None).await.unwrap();
    // More than 256 executions, appended by both replicas: full and partial tiles.
    for n in 0..300 {
        open_and_execute(&cluster, &identity, n % 2, (n / 2) % 2)
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    let bases: Vec<&str> = cluster
        .replicas
        .iter()
        .map(|replica| replica.process.base.as_str())
        .collect();
    let mirrors = [
        crate::tlog::mirror_at(&http, bases[0], 300).await,
        crate::tlog::mirror_at(&http, bases[1], 300).await,
    ];
    assert_eq!(
        mirrors[0], mirrors[1],
        "every replica serves the same bytes"
    );

    // Go's x/mod checks the log as the second replica serves it.
    let dir = DataDir::new().path;
    let keys: serde_json::Value = http
        .get(format!("{}/keys", bases[1]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let p256 =
        wasm_hypervisor_protocol::note::VerifierKey::ecdsa_p256(ORIGIN, &identity.public_key)
            .unwrap();
    crate::tlog::write(&dir, "origin", ORIGIN);
    crate::tlog::write(&dir, "vkey", keys["note_verifier_key"].as_str().unwrap());
    crate::tlog::write(&dir, "p256-vkey", p256.to_string());
    crate::tlog::write(
        &dir,
        "checkpoint-300",
        tlog_checkpoint_of_size(&http, bases[1], 300).await,
    );
    for (path, bytes) in &mirrors[1] {
        crate::tlog::write(&dir, path, bytes);
    }
    let (code, said) = crate::tlog::go(&["check-log", "300"], &dir, None);
    assert_eq!(code, 0, "{said}");
    println!("Go, cluster mode: {said}");
    // A tampered entry is refused.
    let overlay = DataDir::new().path;
    let mut bundle = mirrors[1]["tile/entries/000"].clone();
    bundle[40] ^= 1;
    crate::tlog::write(&overlay, "tile/entries/000", bundle);
    let (code, said) = crate::tlog::go(&["check-log", "300"], &dir, Some(&overlay));
    assert_eq!(code, 1, "Go accepted a tampered entry: {said}");
}

/// How many lines of `log` (PostgreSQL's, every statement logged) are the
/// `step` (`parse` or `execute`) of a statement starting with `statement`.
fn steps(log: &str, step: &str, statement: &str) -> usize {
    log.lines()
        .filter(|line| {
            line.split_once(&format!(" {step} "))
                .and_then(|(_, rest)| rest.split_once(": "))
                .is_some_and(|(_, text)| text.starts_with(statement))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executions_statements_are_prepared_once_per_connection_and_its_live_check_skipped() {
    let (url, sql) = postgres::shared().database_with_sql();
    // Only this test's database: the replica's sessions start after it.
    sql.log_every_statement();
    let mut cluster = Cluster::empty(url, sql);
    const POOL: usize = 4;
    let pool = POOL.to_string();
    cluster.add_replica_with(
        DataDir::new(),
        &[("WASM_HYPERVISOR_CLUSTER__POOL_SIZE", pool.as_str())],
    );
    let identity = cluster.client(0).identity(None).await.unwrap();
    const EXECUTIONS: usize = 30;
    for _ in 0..EXECUTIONS {
        execute_across(&cluster, &identity, 0, 0).await;
    }
    let log = cluster.sql.server_log();
    // One execution at a time always finds a slot free, so the live check
    // never runs (it runs only before a wait for a slot): the take alone
    // refuses a dead session.
    assert_eq!(
        steps(&log, "execute", "SELECT expires_ms FROM sessions WHERE id"),
        0,
        "no live check with a slot free"
    );
    // The session's issue, its take and the append: each executed once per
    // execution (the append once per group, here one execution each), and
    // parsed at most once per pooled connection (none was replaced here).
    for statement in [
        "WITH live AS (SELECT count(*) AS total",
        "DELETE FROM sessions WHERE id",
        "WITH head AS (SELECT size FROM log_head)",
    ] {
        let (parsed, executed) = (
            steps(&log, "parse", statement),
            steps(&log, "execute", statement),
        );
        assert!(
            executed >= EXECUTIONS,
            "`{statement}` executed {executed} times for {EXECUTIONS} executions"
        );
        assert!(
            (1..=POOL).contains(&parsed),
            "`{statement}` parsed {parsed} times for {executed} calls"
        );
    }
    assert_eq!(
        cluster.stop_and_check_log(&identity).await,
        EXECUTIONS as u64
    );
}
