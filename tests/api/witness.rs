//! Witness cosigning (protocol v1.2 §T5) against an independent witness: the Go
//! program's `witness` command (tests/interop/go/witness.go), whose note
//! verification, consistency checks and tree hashes are Go's x/mod `note` and
//! `tlog`. A checkpoint is published only once cosigned; faults of a witness
//! never hold an execution and show in `/health` and the metrics; a forked and a
//! rolled-back copy of a log are refused by the witness and not published.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use wasm_hypervisor_protocol::policy::{Policy, PolicyError};
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::tlog_proof::{TlogProof, TlogProofError};
use wasm_hypervisor_protocol::wire::KeysResponse;
use wasm_hypervisor_server::config::Millis;

use crate::helpers::{DataDir, TestApp, fixture, request, token_digest};
use crate::tlog::go_program;

const SCRAPER_TOKEN: &str = "witness-scraper-token";

/// A running Go witness and its state directory.
struct GoWitness {
    name: String,
    dir: TempDir,
    addr: String,
    vkey: String,
    /// More arguments of its command line (the Compose flags).
    args: Vec<String>,
    child: Option<Child>,
}

impl GoWitness {
    fn start(name: &str) -> GoWitness {
        let dir = tempfile::tempdir().unwrap();
        let mut witness = GoWitness {
            name: name.to_owned(),
            dir,
            addr: "127.0.0.1:0".to_owned(),
            vkey: String::new(),
            args: Vec::new(),
            child: None,
        };
        witness.up();
        witness
    }

    /// Starts the process (again, on the same address and state).
    fn up(&mut self) {
        let addr_file = self.dir.path().join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let child = Command::new(go_program())
            .args([
                "witness", "-addr", &self.addr, "-name", &self.name, "-state",
            ])
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // It writes its address once it listens.
        while !addr_file.exists() {
            assert!(Instant::now() < deadline, "the Go witness did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.addr = std::fs::read_to_string(&addr_file)
            .unwrap()
            .trim()
            .to_owned();
        self.vkey = std::fs::read_to_string(self.dir.path().join("vkey"))
            .unwrap()
            .trim()
            .to_owned();
    }

    /// Stops the process: the witness is down.
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The witness trusts the log whose note key is `vkey`.
    fn trust(&self, vkey: &str) {
        std::fs::write(self.dir.path().join("logs"), format!("{vkey}\n")).unwrap();
    }

    /// `fault`: "", "slow <ms>", "status <code>" or "garbage".
    fn fault(&self, fault: &str) {
        std::fs::write(self.dir.path().join("fault"), fault).unwrap();
    }
}

impl Drop for GoWitness {
    fn drop(&mut self) {
        self.down();
    }
}

/// The server's policy file (witnesses with their URLs, `quorum`), in `dir`.
fn server_policy(dir: &Path, witnesses: &[&GoWitness], quorum: &str) -> PathBuf {
    let mut text = String::new();
    for witness in witnesses {
        text += &format!(
            "witness {} {} {}\n",
            short(witness),
            witness.vkey,
            witness.url()
        );
    }
    text += quorum;
    let path = dir.join("witnesses.policy");
    std::fs::write(&path, text).unwrap();
    path
}

/// A client's policy: the log's key, the witnesses without URLs, `quorum`.
fn client_policy(log_vkey: &str, witnesses: &[&GoWitness], quorum: &str) -> Policy {
    let mut text = format!("log {log_vkey}\n");
    for witness in witnesses {
        text += &format!("witness {} {}\n", short(witness), witness.vkey);
    }
    text += quorum;
    Policy::parse(Provider::default(), text.as_bytes()).unwrap()
}

fn short(witness: &GoWitness) -> &str {
    witness.name.rsplit('/').next().unwrap()
}

async fn spawn(policy: &Path, data_dir: DataDir, timeout_ms: Option<u64>) -> TestApp {
    let policy = policy.to_owned();
    TestApp::spawn_in(data_dir, move |config| {
        config.witnesses.policy_file = policy;
        if let Some(ms) = timeout_ms {
            config.witnesses.submit_timeout_ms = Millis::try_from(ms).unwrap();
        }
        config.auth.metrics_tokens_sha256 = vec![token_digest(SCRAPER_TOKEN)];
    })
    .await
}

async fn note_vkey(app: &TestApp) -> String {
    let keys: KeysResponse = app.get_json("/keys").await;
    keys.note_verifier_key.unwrap()
}

/// GET `path`: status, `Retry-After`, body.
async fn get(app: &TestApp, path: &str) -> (u16, Option<String>, String) {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, retry, response.text().await.unwrap())
}

async fn metrics(app: &TestApp) -> String {
    app.http
        .get(app.url("/metrics"))
        .bearer_auth(SCRAPER_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `/health`'s witness `name`.
fn witness_health<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["witnessing"]["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|witness| witness["name"] == name)
        .unwrap()
}

/// Polls `/health` until `check` holds (each poll is a real request: no sleep
/// stands for a state).
async fn until_health(app: &TestApp, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = app.health().await;
        if check(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "never: {what}; last {health:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn published_size(app: &TestApp) -> Option<u64> {
    app.health().await["witnessing"]["published_size"].as_u64()
}

async fn execute_one(app: &TestApp) -> wasm_hypervisor_client::Execution {
    app.execute(&request(&fixture("exit_code"))).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_is_published_only_once_a_witness_cosigned_it() {
    let w1 = GoWitness::start("witness.test/w1");
    let files = tempfile::tempdir().unwrap();
    let policy = server_policy(files.path(), &[&w1], "quorum w1\n");
    let app = spawn(&policy, DataDir::new(), None).await;
    let log_vkey = note_vkey(&app).await;
    // The witness does not know this log yet: nothing is published.
    let first = execute_one(&app).await;
    let path = format!("/tlog/proof/{}", first.response.execution_id);
    let (status, retry, body) = get(&app, &path).await;
    assert_eq!((status, retry.as_deref()), (404, Some("1")), "{body}");
    assert!(body.contains("not_yet_published"), "{body}");
    let (status, _, body) = get(&app, "/tlog/checkpoint").await;
    assert_eq!(status, 404, "{body}");
    let health = until_health(&app, "an unknown_log failure", |health| {
        witness_health(health, "w1")["failures"]["unknown_log"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(health["status"], "ok");
    assert!(health["witnessing"]["published_size"].is_null());
    // The unwitnessed checkpoint a client could be shown is refused under the
    // policy: it lacks the quorum.
    let client = client_policy(&log_vkey, &[&w1], "quorum w1\n");
    let bare = app.state.log.checkpoint();
    let bare_note = bare
        .to_note(&app.state.note_key, app.state.key.public())
        .unwrap()
        .to_text();
    assert!(matches!(
        client.verify_checkpoint(bare_note.as_bytes()),
        Err(PolicyError::QuorumNotMet)
    ));

    w1.trust(&log_vkey);
    let second = execute_one(&app).await;
    until_health(&app, "size 2 published", |health| {
        health["witnessing"]["published_size"].as_u64() >= Some(2)
    })
    .await;
    for execution in [&first, &second] {
        let path = format!("/tlog/proof/{}", execution.response.execution_id);
        let (status, _, text) = get(&app, &path).await;
        assert_eq!(status, 200, "{text}");
        let proof = TlogProof::parse(text.as_bytes()).unwrap();
        let verified = proof.verify(&client).unwrap();
        assert_eq!(verified.leaf.execution_id, execution.execution_id);
        assert_eq!(verified.checkpoint.cosignatures.len(), 1);
        // The same proof without the witness's line lacks the quorum.
        let stripped: String = text
            .lines()
            .filter(|line| !line.starts_with("\u{2014} witness.test/w1 "))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(matches!(
            TlogProof::parse(stripped.as_bytes())
                .unwrap()
                .verify(&client),
            Err(TlogProofError::Policy(PolicyError::QuorumNotMet))
        ));
    }
    let (status, _, checkpoint) = get(&app, "/tlog/checkpoint").await;
    assert_eq!(status, 200);
    assert!(client.verify_checkpoint(checkpoint.as_bytes()).is_ok());
    let health = app.health().await;
    assert_eq!(witness_health(&health, "w1")["lag_entries"], 0);
    assert!(health["witnessing"]["problem"].is_null());
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_witness_down_holds_no_execution_and_the_quorum_is_lost_and_regained() {
    let w1 = GoWitness::start("witness.test/w1");
    let mut w2 = GoWitness::start("witness.test/w2");
    let files = tempfile::tempdir().unwrap();
    let quorum = "group both all w1 w2\nquorum both\n";
    let policy = server_policy(files.path(), &[&w1, &w2], quorum);
    let app = spawn(&policy, DataDir::new(), Some(1_000)).await;
    let log_vkey = note_vkey(&app).await;
    w1.trust(&log_vkey);
    w2.trust(&log_vkey);
    execute_one(&app).await;
    until_health(&app, "size 1 published", |health| {
        health["witnessing"]["published_size"].as_u64() == Some(1)
    })
    .await;

    w2.down();
    let started = Instant::now();
    let mut answered = 0;
    for _ in 0..20 {
        execute_one(&app).await;
        answered += 1;
    }
    eprintln!(
        "witness down: {answered} executions answered in {:?}",
        started.elapsed()
    );
    let health = until_health(&app, "w2 unreachable", |health| {
        witness_health(health, "w2")["failures"]["unreachable"].as_u64() >= Some(1)
    })
    .await;
    // The quorum is lost: nothing new is published, and health says who lags.
    assert_eq!(health["status"], "ok");
    assert_eq!(health["witnessing"]["published_size"], 1);
    assert!(witness_health(&health, "w2")["lag_entries"].as_u64() >= Some(20));
    assert!(
        witness_health(&health, "w2")["last_error"]
            .as_str()
            .unwrap()
            .starts_with("unreachable")
    );
    let text = metrics(&app).await;
    assert!(
        text.contains(r#"wasm_hypervisor_witness_failures_total{witness="w2",kind="unreachable"}"#),
        "{text}"
    );
    // The gauges follow the submitter's ticks: poll until they caught up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(&app).await;
        let lag: u64 = text
            .lines()
            .find_map(|line| {
                line.strip_prefix(r#"wasm_hypervisor_witness_lag_entries{witness="w2"} "#)
            })
            .unwrap()
            .parse()
            .unwrap();
        if lag >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Back: the quorum is regained and the whole log published.
    w2.up();
    until_health(&app, "size 21 published", |health| {
        health["witnessing"]["published_size"].as_u64() == Some(21)
    })
    .await;
    let (status, _, checkpoint) = get(&app, "/tlog/checkpoint").await;
    assert_eq!(status, 200);
    let client = client_policy(&log_vkey, &[&w1, &w2], quorum);
    let verified = client.verify_checkpoint(checkpoint.as_bytes()).unwrap();
    assert_eq!(verified.checkpoint.tree_size, 21);
    assert_eq!(verified.cosignatures.len(), 2);
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_garbage_and_a_slow_witness_are_failures_by_kind() {
    let w1 = GoWitness::start("witness.test/w1");
    let files = tempfile::tempdir().unwrap();
    let policy = server_policy(files.path(), &[&w1], "quorum w1\n");
    let app = spawn(&policy, DataDir::new(), Some(300)).await;
    w1.trust(&note_vkey(&app).await);
    execute_one(&app).await;
    until_health(&app, "size 1 published", |health| {
        health["witnessing"]["published_size"].as_u64() == Some(1)
    })
    .await;
    for (fault, kind) in [
        ("status 403", "forbidden"),
        ("status 404", "unknown_log"),
        ("status 422", "inconsistent"),
        ("garbage", "garbage"),
        ("slow 1500", "timeout"),
    ] {
        w1.fault(fault);
        // Each fault meets a new checkpoint: a refusal is not sent again.
        execute_one(&app).await;
        let health = until_health(&app, kind, |health| {
            witness_health(health, "w1")["failures"][kind].as_u64() >= Some(1)
        })
        .await;
        assert_eq!(health["status"], "ok");
        assert_eq!(health["witnessing"]["published_size"], 1, "{fault}");
        let text = metrics(&app).await;
        assert!(
            text.contains(&format!(
                r#"wasm_hypervisor_witness_failures_total{{witness="w1",kind="{kind}"}}"#
            )),
            "{kind}: {text}"
        );
    }
    w1.fault("");
    until_health(&app, "size 6 published", |health| {
        health["witnessing"]["published_size"].as_u64() == Some(6)
    })
    .await;
    app.stop_and_verify_log().await;
}

/// A copy of a stopped server's data directory.
fn copy_data_dir(from: &Path) -> DataDir {
    let copy = DataDir::new();
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(&copy.path)
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_and_a_forked_copy_of_the_log_are_refused_and_not_published() {
    let w1 = GoWitness::start("witness.test/w1");
    let files = tempfile::tempdir().unwrap();
    let policy = server_policy(files.path(), &[&w1], "quorum w1\n");
    let app = spawn(&policy, DataDir::new(), None).await;
    let log_vkey = note_vkey(&app).await;
    w1.trust(&log_vkey);
    for _ in 0..3 {
        execute_one(&app).await;
    }
    until_health(&app, "size 3 published", |health| {
        health["witnessing"]["published_size"].as_u64() == Some(3)
    })
    .await;
    let data = app.stop().await;
    let old = copy_data_dir(&data.path);

    // The log goes on: 5 leaves, witnessed.
    let app = spawn(&policy, data, None).await;
    assert_eq!(published_size(&app).await, Some(3), "kept across a restart");
    for _ in 0..2 {
        execute_one(&app).await;
    }
    until_health(&app, "size 5 published", |health| {
        health["witnessing"]["published_size"].as_u64() == Some(5)
    })
    .await;
    app.stop_and_verify_log().await;

    // Rolled back: the old copy, 3 leaves; the witness has 5.
    let rolled = spawn(&policy, old, None).await;
    let health = until_health(&rolled, "a conflict", |health| {
        witness_health(health, "w1")["failures"]["conflict"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(health["witnessing"]["published_size"], 3);
    let said = witness_health(&health, "w1")["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(said.contains("rolled back"), "{said}");
    eprintln!("rolled back: {said}");

    // Forked: the same copy logs two other executions: 5 leaves, another root.
    for _ in 0..2 {
        execute_one(&rolled).await;
    }
    let health = until_health(&rolled, "an inconsistency", |health| {
        witness_health(health, "w1")["failures"]["inconsistent"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(health["witnessing"]["published_size"], 3);
    eprintln!("forked: {}", witness_health(&health, "w1")["last_error"]);
    // The fork's checkpoint is never served: the published one is still the
    // shared history's, which the witness's view extends.
    let (status, _, checkpoint) = get(&rolled, "/tlog/checkpoint").await;
    assert_eq!(status, 200);
    let client = client_policy(&log_vkey, &[&w1], "quorum w1\n");
    let verified = client.verify_checkpoint(checkpoint.as_bytes()).unwrap();
    assert_eq!(verified.checkpoint.tree_size, 3);
    rolled.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delay_from_an_execution_to_a_witnessed_proof() {
    let w1 = GoWitness::start("witness.test/w1");
    let files = tempfile::tempdir().unwrap();
    let policy = server_policy(files.path(), &[&w1], "quorum w1\n");
    let app = spawn(&policy, DataDir::new(), None).await;
    w1.trust(&note_vkey(&app).await);
    let mut delays = Vec::new();
    for _ in 0..200 {
        let execution = execute_one(&app).await;
        let answered = Instant::now();
        let path = format!("/tlog/proof/{}", execution.response.execution_id);
        loop {
            let (status, _, _) = get(&app, &path).await;
            if status == 200 {
                break;
            }
            assert_eq!(status, 404);
            assert!(answered.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        delays.push(answered.elapsed());
    }
    delays.sort();
    let p50 = delays[delays.len() / 2];
    let p99 = delays[delays.len() * 99 / 100];
    eprintln!(
        "execution answered -> witnessed proof served, {} executions: p50 {p50:?}, p99 {p99:?}",
        delays.len()
    );
    assert!(p99 < Duration::from_secs(10), "p99 {p99:?}");
    app.stop_and_verify_log().await;
}

/// deploy/compose.yaml's witness, as Compose runs it but on this machine: it
/// writes the log's policy before the log starts, pins the log's note key from
/// `/keys` (no manual step), then writes the clients' policy, which verifies a
/// tlog-proof the witness cosigned.
#[tokio::test(flavor = "multi_thread")]
async fn the_compose_witness_pins_the_log_key_and_writes_both_policy_files() {
    let mut w1 = GoWitness::start("witness.test/w1");
    let policies = tempfile::tempdir().unwrap();
    let policy_dir = policies.path().to_str().unwrap().to_owned();
    // Restarted on the address it took, now with the policy flags.
    w1.down();
    w1.args = vec![
        format!("-policy={policy_dir}"),
        format!("-url={}", w1.url()),
    ];
    w1.up();
    let server_policy = policies.path().join("witnesses.policy");
    assert_eq!(
        std::fs::read_to_string(&server_policy).unwrap(),
        format!("witness w1 {} {}\nquorum w1\n", w1.vkey, w1.url())
    );
    assert!(!policies.path().join("client.policy").exists());
    let app = spawn(&server_policy, DataDir::new(), None).await;
    // The log is up: the witness learns its key from it.
    w1.down();
    w1.args.push(format!("-pin-log={}", app.url("/keys")));
    w1.up();
    let client_policy = policies.path().join("client.policy");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client_policy.exists() {
        assert!(
            Instant::now() < deadline,
            "the witness never pinned the log's key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log_vkey = note_vkey(&app).await;
    assert_eq!(
        std::fs::read_to_string(w1.dir.path().join("logs")).unwrap(),
        format!("{log_vkey}\n")
    );
    let text = std::fs::read_to_string(&client_policy).unwrap();
    assert_eq!(
        text,
        format!("log {log_vkey}\nwitness w1 {}\nquorum w1\n", w1.vkey)
    );
    let policy = Policy::parse(Provider::default(), text.as_bytes()).unwrap();
    let execution = execute_one(&app).await;
    until_health(&app, "size 1 published", |health| {
        health["witnessing"]["published_size"] == 1
    })
    .await;
    let (status, _, proof) = get(
        &app,
        &format!("/tlog/proof/{}", execution.response.execution_id),
    )
    .await;
    assert_eq!(status, 200, "{proof}");
    let verified = TlogProof::parse(proof.as_bytes())
        .unwrap()
        .verify(&policy)
        .unwrap();
    assert_eq!(verified.leaf.execution_id, execution.execution_id);
    app.stop_and_verify_log().await;
}

/// deploy/compose.yaml wires that flow: the witness service's image, its flags
/// (the policy directory is a volume every replica mounts read-only and reads
/// its policy file from; the URL is the service's own; the key comes from
/// nginx), the replicas waiting for it to be healthy, and the health check
/// being the log's policy file.
#[test]
fn compose_wires_the_witness_into_every_replica() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/compose.yaml")).unwrap();
    use figment::providers::Format as _;
    let compose: Value = figment::Figment::from(figment::providers::Yaml::string(&text))
        .extract()
        .unwrap();
    let services = compose["services"].as_object().unwrap();
    let witness = &services["witness"];
    let containerfile = witness["build"]["dockerfile"].as_str().unwrap();
    let containerfile = std::fs::read_to_string(root.join(containerfile)).unwrap();
    let flags: std::collections::BTreeMap<&str, &str> = witness["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap().split_once('=').unwrap())
        .collect();
    let port = flags["-addr"].rsplit(':').next().unwrap();
    assert_eq!(flags["-url"], format!("http://witness:{port}"));
    assert_eq!(flags["-pin-log"], "http://nginx/keys");
    assert!(services.contains_key("nginx"));
    let nginx = std::fs::read_to_string(root.join("deploy/nginx.conf")).unwrap();
    assert!(nginx.contains("listen 80;"));
    let policy_dir = flags["-policy"];
    let volume_at = |service: &Value, target: &str| -> Option<String> {
        service["volumes"].as_array()?.iter().find_map(|volume| {
            let volume = volume.as_str()?;
            let (name, rest) = volume.split_once(':')?;
            (rest == target).then(|| name.to_owned())
        })
    };
    let policy_volume = volume_at(witness, policy_dir).expect("the policy directory is a volume");
    assert!(
        volume_at(witness, flags["-state"]).is_some(),
        "its state is a volume"
    );
    assert!(
        compose["volumes"]
            .as_object()
            .unwrap()
            .contains_key(&policy_volume)
    );
    assert!(containerfile.contains(&format!(
        r#"CMD ["test", "-s", "{policy_dir}/witnesses.policy"]"#
    )));
    let replicas: Vec<&String> = services
        .keys()
        .filter(|name| name.starts_with("replica-"))
        .collect();
    assert_eq!(replicas.len(), 3);
    for name in replicas {
        // `<<: *replica`, whether or not the parser merged it.
        let service = &services[name];
        let merged = |key: &str| {
            let own = &service[key];
            if own.is_null() {
                &service["<<"][key]
            } else {
                own
            }
        };
        let env = merged("environment");
        let file = env["WASM_HYPERVISOR_WITNESSES__POLICY_FILE"]
            .as_str()
            .unwrap();
        let (dir, file) = file.rsplit_once('/').unwrap();
        assert_eq!(file, "witnesses.policy", "{name}");
        let mount = service["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|volume| volume.as_str()?.strip_prefix(&format!("{policy_volume}:")))
            .unwrap_or_else(|| panic!("{name} does not mount {policy_volume}"));
        assert_eq!(mount, format!("{dir}:ro"), "{name}");
        assert_eq!(
            merged("depends_on")["witness"]["condition"],
            "service_healthy",
            "{name}"
        );
    }
}

/// Cluster mode (§T5 with replicas): the Go witness, replicas sharing one
/// database, one key file and one origin, each with the policy file.
mod cluster {
    use super::*;
    use crate::helpers::ServerProcess;
    use crate::postgres::{self, Sql};
    use wasm_hypervisor_client::{Client, ServerIdentity};

    const ORIGIN: &str = "cluster.test/witnessed";

    /// The witness lease's advisory lock key ("wasmhwit") as `pg_locks` shows it.
    const LEASE_HIGH: u32 = 0x7761_736d;
    const LEASE_LOW: u32 = 0x6877_6974;

    struct Replicas {
        url: String,
        sql: Sql,
        files: TempDir,
        policy: PathBuf,
        /// `witnesses.follow_poll_ms` of every replica.
        follow_poll_ms: &'static str,
        processes: Vec<(ServerProcess, DataDir)>,
        http: reqwest::Client,
    }

    impl Replicas {
        /// No replica yet, on a fresh database, with `w1` in a quorum of one.
        fn new(w1: &GoWitness, follow_poll_ms: &'static str) -> Replicas {
            let files = tempfile::tempdir().unwrap();
            let policy = server_policy(files.path(), &[w1], "quorum w1\n");
            let (url, sql) = postgres::shared().database_with_sql();
            Replicas {
                url,
                sql,
                files,
                policy,
                follow_poll_ms,
                processes: Vec::new(),
                http: reqwest::Client::new(),
            }
        }

        fn key_file(&self) -> PathBuf {
            self.files.path().join("signing_key.pem")
        }

        fn add(&mut self) {
            let data_dir = DataDir::new();
            let key = self.key_file();
            let env = [
                ("WASM_HYPERVISOR_CLUSTER__DATABASE_URL", self.url.as_str()),
                ("WASM_HYPERVISOR_SIGNING_KEY_FILE", key.to_str().unwrap()),
                ("WASM_HYPERVISOR_ORIGIN", ORIGIN),
                (
                    "WASM_HYPERVISOR_WITNESSES__POLICY_FILE",
                    self.policy.to_str().unwrap(),
                ),
                (
                    "WASM_HYPERVISOR_WITNESSES__FOLLOW_POLL_MS",
                    self.follow_poll_ms,
                ),
            ];
            let process = ServerProcess::start_with(&data_dir.path, &[], &env);
            self.processes.push((process, data_dir));
        }

        fn base(&self, index: usize) -> &str {
            &self.processes[index].0.base
        }

        async fn get(&self, index: usize, path: &str) -> (u16, String) {
            let response = self
                .http
                .get(format!("{}{path}", self.base(index)))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }

        async fn health(&self, index: usize) -> Value {
            serde_json::from_str(&self.get(index, "/health").await.1).unwrap()
        }

        /// Polls every replica's `/health` until `check` holds for each.
        async fn until_health(&self, what: &str, check: impl Fn(&Value) -> bool) -> Vec<Value> {
            let mut all = Vec::new();
            for index in 0..self.processes.len() {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let health = self.health(index).await;
                    if check(&health) {
                        all.push(health);
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "replica {index} never: {what}; last {health:#}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            all
        }

        /// A session opened on replica `on`, executed on replica `run`.
        async fn execute(&self, on: usize, run: usize) -> wasm_hypervisor_client::Execution {
            let opener = Client::new(self.base(on), None);
            let identity: ServerIdentity = opener.identity(None).await.unwrap();
            let session = opener.open_session(&identity.public_key).await.unwrap();
            let runner = Client::new(self.base(run), None);
            let plaintext = runner
                .wire()
                .encode_request(&request(&fixture("exit_code")))
                .unwrap();
            let execution = runner.execute(&session, &plaintext).await.unwrap();
            assert_eq!(execution.result.exit_code, Some(42));
            execution
        }

        /// The index of the replica holding the witness lease, if one does.
        fn leader(&self) -> Option<usize> {
            // Advisory locks are per database, and other tests' clusters hold
            // theirs on the same server.
            let holders = self.sql.run(&format!(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND l.classid = {LEASE_HIGH} AND l.objid = {LEASE_LOW}"
            ));
            holders.lines().find_map(|name| {
                let pid: u32 = name
                    .strip_prefix("wasm-hypervisor ")?
                    .rsplit('/')
                    .next()?
                    .parse()
                    .ok()?;
                self.processes
                    .iter()
                    .position(|(process, _)| process.pid() == pid)
            })
        }

        async fn stop_all(&mut self) {
            for (process, _) in self.processes.drain(..) {
                process.sigterm();
                assert!(process.wait().await.status.success());
            }
        }
    }

    fn published(health: &Value) -> Option<u64> {
        health["witnessing"]["published_size"].as_u64()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn replicas_serve_one_witnessed_checkpoint_a_new_submitter_takes_over_and_a_rolled_back_database_is_refused()
     {
        let mut w1 = GoWitness::start("witness.test/w1");
        let mut replicas = Replicas::new(&w1, "5000");
        replicas.add();
        replicas.add();
        let keys: KeysResponse = serde_json::from_str(&replicas.get(0, "/keys").await.1).unwrap();
        let log_vkey = keys.note_verifier_key.unwrap();
        w1.trust(&log_vkey);
        let client = client_policy(&log_vkey, &[&w1], "quorum w1\n");

        // Executions on either replica, published by both with the cosignature.
        let first = replicas.execute(0, 1).await;
        let second = replicas.execute(1, 0).await;
        replicas
            .until_health("size 2 published", |health| published(health) == Some(2))
            .await;
        let (_, on_0) = replicas.get(0, "/tlog/checkpoint").await;
        let (_, on_1) = replicas.get(1, "/tlog/checkpoint").await;
        assert_eq!(on_0, on_1, "the replicas serve one published checkpoint");
        let verified = client.verify_checkpoint(on_0.as_bytes()).unwrap();
        assert_eq!(verified.checkpoint.tree_size, 2);
        assert_eq!(verified.cosignatures.len(), 1);
        for index in 0..2 {
            for execution in [&first, &second] {
                let path = format!("/tlog/proof/{}", execution.response.execution_id);
                let (status, text) = replicas.get(index, &path).await;
                assert_eq!(status, 200, "{text}");
                let proof = TlogProof::parse(text.as_bytes())
                    .unwrap()
                    .verify(&client)
                    .unwrap();
                assert_eq!(proof.leaf.execution_id, execution.execution_id);
            }
        }
        assert_eq!(
            replicas
                .sql
                .run("SELECT published_size FROM witness_state")
                .trim(),
            "2"
        );
        // What a backup taken now holds of the witnesses.
        replicas
            .sql
            .run("CREATE TABLE witness_backup AS SELECT * FROM witness_state");

        // The delay from an execution on one replica to a witnessed proof on
        // the other.
        let mut delays = Vec::new();
        for round in 0..40 {
            let (on, other) = (round % 2, 1 - round % 2);
            let execution = replicas.execute(on, on).await;
            let answered = Instant::now();
            let path = format!("/tlog/proof/{}", execution.response.execution_id);
            loop {
                let (status, _) = replicas.get(other, &path).await;
                if status == 200 {
                    break;
                }
                assert_eq!(status, 404);
                assert!(answered.elapsed() < Duration::from_secs(30));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            delays.push(answered.elapsed());
        }
        delays.sort();
        eprintln!(
            "cluster: execution answered -> witnessed proof served by the other replica, {} executions: p50 {:?}, p99 {:?}",
            delays.len(),
            delays[delays.len() / 2],
            delays[delays.len() * 99 / 100]
        );

        // The submitter dies: the other replica takes the lease and publishes.
        let leader = replicas
            .leader()
            .expect("a replica holds the witness lease");
        let (process, _dir) = replicas.processes.remove(leader);
        process.kill();
        let survivor = replicas.execute(0, 0).await;
        replicas
            .until_health("size 43 published", |health| published(health) == Some(43))
            .await;
        assert_eq!(replicas.leader(), Some(0));
        let path = format!("/tlog/proof/{}", survivor.response.execution_id);
        let (status, text) = replicas.get(0, &path).await;
        assert_eq!(status, 200, "{text}");
        TlogProof::parse(text.as_bytes())
            .unwrap()
            .verify(&client)
            .unwrap();
        replicas.add();

        // The witness down: executions are answered, and both replicas say so.
        w1.down();
        let started = Instant::now();
        for round in 0..10 {
            replicas.execute(round % 2, round % 2).await;
        }
        eprintln!(
            "cluster, witness down: 10 executions answered in {:?}",
            started.elapsed()
        );
        let healths = replicas
            .until_health("w1 unreachable", |health| {
                witness_health(health, "w1")["failures"]["unreachable"].as_u64() >= Some(1)
            })
            .await;
        for health in &healths {
            assert_eq!(health["status"], "ok");
            assert_eq!(published(health), Some(43));
        }
        w1.up();
        replicas
            .until_health("size 53 published", |health| published(health) == Some(53))
            .await;
        replicas.stop_all().await;

        // A restored backup: the log of 2 leaves and the witness state of then,
        // under replicas with fresh data directories. The witness has 53.
        replicas.sql.run(
            "DELETE FROM log_leaves WHERE idx >= 2; UPDATE log_head SET size = 2; \
             DELETE FROM witness_state; INSERT INTO witness_state SELECT * FROM witness_backup",
        );
        replicas.add();
        replicas.add();
        let healths = replicas
            .until_health("a conflict", |health| {
                witness_health(health, "w1")["last_error"]
                    .as_str()
                    .is_some_and(|said| said.starts_with("conflict"))
            })
            .await;
        for health in &healths {
            assert_eq!(published(health), Some(2));
            let said = witness_health(health, "w1")["last_error"].as_str().unwrap();
            assert!(said.contains("rolled back"), "{said}");
            eprintln!("cluster, rolled back: {said}");
        }
        // Forked: the restored log goes on with other executions.
        for round in 0..53 {
            replicas.execute(round % 2, round % 2).await;
        }
        let healths = replicas
            .until_health("an inconsistency", |health| {
                witness_health(health, "w1")["failures"]["inconsistent"].as_u64() >= Some(1)
            })
            .await;
        for health in &healths {
            assert_eq!(published(health), Some(2));
            eprintln!(
                "cluster, forked: {}",
                witness_health(health, "w1")["last_error"]
            );
        }
        let (_, checkpoint) = replicas.get(1, "/tlog/checkpoint").await;
        let verified = client.verify_checkpoint(checkpoint.as_bytes()).unwrap();
        assert_eq!(verified.checkpoint.tree_size, 2);
        replicas.stop_all().await;
    }

    /// Two replicas trusted by `w1`, the first checkpoint published by both;
    /// the index of the one that submits.
    async fn two_replicas_publishing(w1: &GoWitness, replicas: &mut Replicas) -> usize {
        replicas.add();
        replicas.add();
        let keys: KeysResponse = serde_json::from_str(&replicas.get(0, "/keys").await.1).unwrap();
        w1.trust(&keys.note_verifier_key.unwrap());
        replicas.execute(0, 1).await;
        replicas
            .until_health("size 1 published", |health| published(health) == Some(1))
            .await;
        replicas
            .leader()
            .expect("a replica holds the witness lease")
    }

    /// `pid`'s connections that `LISTEN` for the witness state (the last
    /// statement an idle listener ran).
    fn listeners(sql: &Sql, pid: u32) -> String {
        sql.run(&format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND query = 'LISTEN wasm_hypervisor_witness' AND application_name LIKE '%/{pid}'"
        ))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_follower_learns_of_a_published_checkpoint_by_notification_not_by_polling() {
        let w1 = GoWitness::start("witness.test/w1");
        // An hour between fallback reads: what the follower learns within the
        // test, a notification told it.
        let mut replicas = Replicas::new(&w1, "3600000");
        let leader = two_replicas_publishing(&w1, &mut replicas).await;
        let follower = 1 - leader;
        for size in 2..=4 {
            let execution = replicas.execute(leader, leader).await;
            replicas
                .until_health("the follower serves the new checkpoint", |health| {
                    published(health) == Some(size)
                })
                .await;
            let path = format!("/tlog/proof/{}", execution.response.execution_id);
            let (status, text) = replicas.get(follower, &path).await;
            assert_eq!(status, 200, "{text}");
        }
        replicas.stop_all().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_follower_whose_listener_connection_is_killed_learns_at_the_fallback_poll() {
        let w1 = GoWitness::start("witness.test/w1");
        let mut replicas = Replicas::new(&w1, "500");
        let leader = two_replicas_publishing(&w1, &mut replicas).await;
        let follower = 1 - leader;
        let pid = replicas.processes[follower].0.pid();
        let killed = replicas.sql.run(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
             AND query = 'LISTEN wasm_hypervisor_witness' AND application_name LIKE '%/{pid}'"
        ));
        assert_eq!(killed.trim(), "t", "the follower had one listener");
        // Published while the follower may have no listener: the fallback poll
        // reads it (and brings the listener back).
        replicas.execute(leader, leader).await;
        replicas
            .until_health("the follower serves size 2", |health| {
                published(health) == Some(2)
            })
            .await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while listeners(&replicas.sql, pid).trim().is_empty() {
            assert!(Instant::now() < deadline, "the listener never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        replicas.execute(leader, leader).await;
        replicas
            .until_health("the follower serves size 3", |health| {
                published(health) == Some(3)
            })
            .await;
        replicas.stop_all().await;
    }
}
