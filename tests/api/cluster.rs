//! Cluster mode (issue 16, stage 1) with real processes: three `wasm-hypervisor
//! serve` replicas sharing one real PostgreSQL (`postgres`), one signing key file
//! and one origin. Sessions and async answers go through the database, so a
//! client may use any replica for any step.
//!
//! In this stage each replica still keeps its own file audit log in its own
//! `data_dir` (the shared log is stage 2): an execution is provable at the
//! replica that ran it, and each test that executes ends by stopping the
//! replicas and re-verifying every replica's log from scratch.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use wasm_hypervisor_client::{Client, ClientError, ServerIdentity, Session};
use wasm_hypervisor_protocol::payload::ExecutionRequest;

use crate::helpers::{DataDir, ServerProcess, cli_command, fixture, request, verify_log_file};
use crate::postgres::{self, TestPostgres};

/// How long a recovery after PostgreSQL comes back may take.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

const ORIGIN: &str = "cluster.test/wasm-hypervisor";

/// A replica: its process, its own data directory, and a client bound to it.
struct Replica {
    process: ServerProcess,
    data_dir: DataDir,
    client: Client,
}

/// Replicas of one service: one database URL, one key file, one origin.
struct Cluster {
    url: String,
    /// Holds the shared signing key file.
    key_dir: TempDir,
    replicas: Vec<Replica>,
}

impl Cluster {
    /// `count` replicas on a fresh database of the shared PostgreSQL.
    fn start(count: usize) -> Cluster {
        Cluster::start_on(postgres::shared().database(), count)
    }

    fn start_on(url: String, count: usize) -> Cluster {
        let mut cluster = Cluster {
            url,
            key_dir: tempfile::tempdir().unwrap(),
            replicas: Vec::new(),
        };
        // One after the other: the first creates the key file the others read.
        for _ in 0..count {
            cluster.add_replica();
        }
        cluster
    }

    fn key_file(&self) -> PathBuf {
        self.key_dir.path().join("signing_key.pem")
    }

    fn add_replica(&mut self) {
        let data_dir = DataDir::new();
        let key_file = self.key_file();
        let process = ServerProcess::start_with(
            &data_dir.path,
            &[],
            &replica_env(&self.url, &key_file, ORIGIN),
        );
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

    /// Stops every replica gracefully and re-verifies each one's log under the
    /// shared key; returns the records of all of them.
    async fn stop_and_verify_logs(self, identity: &ServerIdentity) -> usize {
        let mut records = 0;
        for replica in self.replicas {
            replica.process.sigterm();
            let exited = replica.process.wait().await;
            assert!(exited.status.success(), "{:?}", exited.stderr);
            records += verify_log_file(&replica.data_dir.path, &identity.public_key);
        }
        records
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
    let session = cluster
        .client(0)
        .open_session(&identity.public_key)
        .await
        .unwrap();
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
    assert_eq!(cluster.stop_and_verify_logs(&identity).await, 1);
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
    assert_eq!(cluster.stop_and_verify_logs(&identity).await, 6);
}

#[tokio::test]
async fn an_async_execution_submitted_on_one_replica_is_fetched_from_another() {
    let cluster = Cluster::start(2);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let session = cluster
        .client(0)
        .open_session(&identity.public_key)
        .await
        .unwrap();
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
    assert_eq!(cluster.stop_and_verify_logs(&identity).await, 1);
}

/// `serve` on `url` with `key_file` and `origin`: it must exit without
/// listening; its stderr.
async fn refused_start(url: &str, key_file: &Path, origin: &str) -> String {
    let data_dir = DataDir::new();
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
    let cluster = Cluster::start_on(server.database(), 2);
    let identity = cluster.client(0).identity(None).await.unwrap();
    let session = cluster
        .client(0)
        .open_session(&identity.public_key)
        .await
        .unwrap();

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
    assert_eq!(cluster.stop_and_verify_logs(&identity).await, 1);
}
