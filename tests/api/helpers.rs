//! `TestApp`: a server on an ephemeral port with its own data directory, and typed
//! helpers to drive it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Once};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasm_hypervisor_client::{Client, Execution, ServerIdentity, Wire};
use wasm_hypervisor_protocol::merkle::{MerkleTree, leaf_hash};
use wasm_hypervisor_protocol::payload::{ExecutionRequest, RequestedLimits, encode_base64};
use wasm_hypervisor_protocol::wire::CheckpointResponse;
use wasm_hypervisor_server::api::AppState;
use wasm_hypervisor_server::audit::LogRecord;
use wasm_hypervisor_server::audit::file::verify_stopped_log;
use wasm_hypervisor_server::config::{Bounded, Config, Millis, TokenDigest};
use wasm_hypervisor_server::envelope::{self, Provider};
use wasm_hypervisor_server::keys::PublicKey;
use wasm_hypervisor_server::server::{ServerError, Service};

static TRACING: Once = Once::new();

/// Held by the tests that load the machine on purpose (the hostile suite, the 150
/// clients), so that they do not run at the same time and each measures its own
/// load, not the other's.
static LOAD_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn load_heavy_test() -> tokio::sync::MutexGuard<'static, ()> {
    LOAD_HEAVY.lock().await
}

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug,cranelift=info,wasmtime=info,hyper=info")
                .with_test_writer()
                .try_init();
        }
    });
}

/// A running server.
pub(crate) struct TestApp {
    pub base: String,
    /// The server's executor, for what only the process can see (cache counters).
    pub executor: wasm_hypervisor_server::execution::Executor,
    /// The server's state, to reach it without HTTP (while it drains, say).
    pub state: AppState,
    pub client: Client,
    pub identity: ServerIdentity,
    pub http: reqwest::Client,
    pub data_dir: DataDir,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<Result<(), ServerError>>>,
}

/// The data directory of a test server, kept across restarts.
pub(crate) struct DataDir {
    _temp: TempDir,
    pub path: PathBuf,
}

impl DataDir {
    pub(crate) fn new() -> DataDir {
        let temp = tempfile::tempdir().expect("temporary directory");
        let path = temp.path().join("data");
        DataDir { _temp: temp, path }
    }
}

/// The configuration tests start from: small limits so hostile guests end fast.
pub(crate) fn test_config(data_dir: &Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.try_into().unwrap(),
        origin: "wasm-hypervisor.test".parse().unwrap(),
        ..Config::default()
    };
    config.limits.timeout_ms = Millis::constant::<5_000>();
    config.limits.memory_bytes = Bounded::constant::<{ 64 << 20 }>();
    config.limits.max_module_bytes = Bounded::constant::<{ 1 << 20 }>();
    config.limits.max_request_bytes = Bounded::constant::<{ 2 << 20 }>();
    // Every test client is 127.0.0.1: per-client limits are off unless a test
    // (tests/api/access.rs) is about them.
    config.clients.requests_per_second = Bounded::constant::<0>();
    config.clients.max_concurrent_executions = Bounded::constant::<0>();
    // The server compiles in worker processes of its own binary; this test
    // binary is not it.
    config.execution.compile_worker = Some(PathBuf::from(env!("CARGO_BIN_EXE_wasm-hypervisor")));
    // Likewise the per-address bounds of the HTTP layer (tests/api/http_limits.rs):
    // tests poll /health in loops and open many connections from 127.0.0.1.
    config.http.health_requests_per_second = Bounded::constant::<0>();
    config.http.max_connections_per_address = Bounded::constant::<1_000_000>();
    config
        .sessions
        .set_max_pending_per_client(Bounded::constant::<0>())
        .unwrap();
    // The fastest provider this build has (`aws-lc` unless built without it).
    config.crypto.provider = Provider::default();
    config
}

impl TestApp {
    pub(crate) async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub(crate) async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_in(DataDir::new(), configure).await
    }

    /// A server on `crypto.provider` `server` and a client sealing and verifying on
    /// `client`.
    #[cfg(all(feature = "aws-lc", feature = "rustcrypto"))]
    pub(crate) async fn spawn_with_providers(server: Provider, client: Provider) -> TestApp {
        TestApp::spawn_with_client_provider(DataDir::new(), client, |config| {
            config.crypto.provider = server
        })
        .await
    }

    /// Starts a server on `data_dir` (possibly one a previous server used).
    pub(crate) async fn spawn_in(
        data_dir: DataDir,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        TestApp::spawn_with_client_provider(data_dir, Provider::default(), configure).await
    }

    async fn spawn_with_client_provider(
        data_dir: DataDir,
        client_provider: Provider,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        init_tracing();
        let mut config = test_config(&data_dir.path);
        configure(&mut config);
        // `open` builds either mode: a test may set `cluster.database_url`.
        let service = Service::open(&config).await.expect("service builds");
        let executor = service.state.executor.clone();
        let state = service.state.clone();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel::<()>();
        let served = tokio::spawn(service.serve(listener, async move {
            let _ = stop.await;
        }));
        let token = config
            .auth
            .tokens_sha256
            .first()
            .map(|_| TEST_TOKEN.to_owned());
        // Protocol v1 exactly (JSON bodies), as every test written before v1.1
        // expects; tests/api/wire.rs makes v1.1 clients of its own.
        let client = Client::new(&base, token)
            .with_provider(client_provider)
            .with_wire(Wire::V1);
        let identity = client.identity(None).await.expect("GET /keys");
        TestApp {
            base,
            executor,
            state,
            client,
            identity,
            http: reqwest::Client::new(),
            data_dir,
            shutdown: Some(shutdown),
            served: Some(served),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs a request through the whole protocol and returns the opened result.
    pub(crate) async fn execute(&self, request: &ExecutionRequest) -> Execution {
        let session = self
            .client
            .open_session(&self.identity.public_key)
            .await
            .expect("open a session");
        let plaintext = serde_json::to_vec(request).unwrap();
        self.client
            .execute(&session, &plaintext)
            .await
            .expect("execute")
    }

    /// Runs raw request plaintext bytes (for invalid requests).
    pub(crate) async fn execute_plaintext(&self, plaintext: &[u8]) -> Execution {
        let session = self
            .client
            .open_session(&self.identity.public_key)
            .await
            .expect("open a session");
        self.client
            .execute(&session, plaintext)
            .await
            .expect("execute")
    }

    /// GETs `path` and parses the JSON answer.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        response.json().await.unwrap()
    }

    pub(crate) async fn health(&self) -> serde_json::Value {
        self.get_json("/health").await
    }

    /// Signals the server to shut down, as SIGTERM would, without waiting.
    pub(crate) fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Stops the server gracefully and waits until it has closed its log.
    pub(crate) async fn stop(mut self) -> DataDir {
        self.begin_stop();
        self.served
            .take()
            .unwrap()
            .await
            .expect("server task")
            .expect("server stopped cleanly");
        self.data_dir
    }

    pub(crate) async fn checkpoint(&self) -> CheckpointResponse {
        self.get_json("/log/checkpoint").await
    }

    /// Stops the server, then re-reads the whole audit log from the file and checks
    /// it against the latest checkpoint the server signed. Returns the number of
    /// records.
    pub(crate) async fn stop_and_verify_log(self) -> usize {
        let key = self.identity.public_key;
        let served = self.checkpoint().await;
        let data_dir = self.stop().await;
        let records = verify_log_file(&data_dir.path, &key);
        assert_eq!(
            served.tree_size, records as u64,
            "the last served checkpoint covers the whole log"
        );
        records
    }
}

/// Re-verifies a stopped server's log from scratch: the server's own check
/// (`audit::file::verify_stopped_log`: every record's framing, every leaf's
/// signature under the server's key, unique execution ids, the persisted
/// checkpoint's signature and root), then, independently of the server's code,
/// the root of all leaves against that checkpoint, which must cover the whole log
/// (a clean stop). Returns the record count.
pub(crate) fn verify_log_file(data_dir: &Path, key: &PublicKey) -> usize {
    let stopped = verify_stopped_log(data_dir, key).expect("the log verifies from scratch");
    let signed = stopped
        .checkpoint
        .expect("a cleanly stopped server leaves a checkpoint");
    let checkpoint = &signed.checkpoint;
    key.verify(checkpoint.body().as_bytes(), &signed.signature)
        .expect("the persisted checkpoint is signed by the server key");
    let mut tree = MerkleTree::new();
    for record in &stopped.records {
        tree.push(leaf_hash(&record.leaf.to_bytes()));
    }
    assert_eq!(checkpoint.tree_size, stopped.records.len() as u64);
    assert_eq!(
        tree.root(checkpoint.tree_size).unwrap(),
        checkpoint.root_hash,
        "the root of every leaf in the file is the signed root"
    );
    stopped.records.len()
}

/// The records of a stopped server's log, in order, once it verifies
/// ([`verify_log_file`]).
pub(crate) fn logged_records(data_dir: &Path, key: &PublicKey) -> Vec<LogRecord> {
    verify_log_file(data_dir, key);
    verify_stopped_log(data_dir, key).unwrap().records
}

/// `POST /sessions`, with `token` as the bearer token if given.
pub(crate) async fn open_session(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut post = app.http.post(app.url("/sessions"));
    if let Some(token) = token {
        post = post.bearer_auth(token);
    }
    post.send().await.unwrap()
}

/// An `/execute` body sealing `plaintext` to a fresh session, opened with `token`.
pub(crate) async fn sealed_body(app: &TestApp, token: Option<&str>, plaintext: &[u8]) -> String {
    let session: Value = open_session(app, token).await.json().await.unwrap();
    let id: uuid::Uuid = session["session_id"].as_str().unwrap().parse().unwrap();
    let public_key: [u8; 65] =
        wasm_hypervisor_protocol::payload::decode_base64(session["public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
    let sealed = envelope::seal_request(Provider::default(), &public_key, &id, plaintext).unwrap();
    json!({
        "session_id": id.to_string(),
        "enc": encode_base64(&sealed.enc),
        "ciphertext": encode_base64(&sealed.ciphertext),
    })
    .to_string()
}

/// The bearer token tests use when authentication is on.
pub(crate) const TEST_TOKEN: &str = "test-token-please-ignore";

/// What configures `token` in `auth.tokens_sha256` or `auth.metrics_tokens_sha256`.
pub(crate) fn token_digest(token: &str) -> TokenDigest {
    TokenDigest::from(envelope::sha256(token.as_bytes()))
}

/// Reads `tests/fixtures/NAME.wat` and assembles it.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads a compiled C example from `examples/`.
pub(crate) fn example(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A request that runs `module` with no input.
pub(crate) fn request(module: &[u8]) -> ExecutionRequest {
    ExecutionRequest {
        module: Some(encode_base64(module)),
        ..Default::default()
    }
}

pub(crate) fn limits(fuel: Option<u64>, timeout_ms: Option<u64>) -> Option<RequestedLimits> {
    Some(RequestedLimits {
        fuel,
        timeout_ms,
        ..Default::default()
    })
}

/// A `wasm-hypervisor serve` child process on an ephemeral port, killed if the test
/// ends without stopping it.
pub(crate) struct ServerProcess {
    child: Option<Child>,
    pub base: String,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

/// How a server process ended, with everything it wrote on stderr.
pub(crate) struct Exited {
    pub status: ExitStatus,
    pub stderr: Vec<String>,
}

impl ServerProcess {
    pub(crate) fn start(data_dir: &Path) -> ServerProcess {
        ServerProcess::start_with(data_dir, &[], &[])
    }

    /// Starts the server with `env` added to its environment, through `wrapper` if
    /// not empty: a program and its arguments that end by running the command line
    /// that follows them (`sh -c '...; exec "$@"' sh`).
    pub(crate) fn start_with(
        data_dir: &Path,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        ServerProcess::start_listening(data_dir, "127.0.0.1:0", wrapper, env)
    }

    /// As [`ServerProcess::start_with`], listening on `listen`.
    pub(crate) fn start_listening(
        data_dir: &Path,
        listen: &str,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let server = env!("CARGO_BIN_EXE_wasm-hypervisor");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(server);
                command
            }
            None => Command::new(server),
        };
        let mut child = command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            // As in `test_config`: every test client is 127.0.0.1.
            .env("WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND", "0")
            .env("WASM_HYPERVISOR_CLIENTS__MAX_CONCURRENT_EXECUTIONS", "0")
            .env("WASM_HYPERVISOR_HTTP__HEALTH_REQUESTS_PER_SECOND", "0")
            .env(
                "WASM_HYPERVISOR_HTTP__MAX_CONNECTIONS_PER_ADDRESS",
                "1000000",
            )
            .env("WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT", "0")
            .env(
                "WASM_HYPERVISOR_CRYPTO__PROVIDER",
                Provider::default().name(),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The server announces its address once it listens: `listen=ADDR` in a
        // text line, `"listen":"ADDR"` in a JSON one.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let base = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .unwrap();
            let address = ["listen=", "\"listen\":\""].iter().find_map(|key| {
                let rest = line.split(key).nth(1)?;
                Some(rest.split([' ', '"']).next().unwrap().to_owned())
            });
            stderr.lock().unwrap().push(line);
            if let Some(address) = address {
                break format!("http://{address}");
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        let kept = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        ServerProcess {
            child: Some(child),
            base,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The lines the server wrote on stderr so far.
    pub(crate) fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM (a graceful stop).
    pub(crate) fn sigterm(&self) {
        let pid = self.child.as_ref().unwrap().id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills the server with SIGKILL and reaps it.
    pub(crate) fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for the server to exit, without blocking the runtime, and for the
    /// last of its stderr.
    pub(crate) async fn wait(mut self) -> Exited {
        let mut child = self.child.take().unwrap();
        let reader = self.stderr_reader.take().unwrap();
        let status = tokio::task::spawn_blocking(move || {
            let status = child.wait().unwrap();
            reader.join().unwrap();
            status
        })
        .await
        .unwrap();
        Exited {
            status,
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The real `wasm-hypervisor` binary, with its blob cache (what `run` remembers
/// of the blobs a server holds) under the target directory rather than the home
/// directory of whoever runs the tests.
pub(crate) fn cli_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-hypervisor"));
    command.env(
        "XDG_CACHE_HOME",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"),
    );
    command
}

/// `command` run to its end with no stdin: its exit code, stdout and stderr.
pub(crate) async fn cli_output(
    mut command: tokio::process::Command,
) -> (Option<i32>, String, String) {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}
