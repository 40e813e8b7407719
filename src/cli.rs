//! The command line: `serve` runs the service, `run` executes a module on a server
//! end to end as a client, `verify` proves an execution from its receipt (or the
//! log's consistency with a saved checkpoint), `health` probes a server for
//! container health checks (by default the address `serve` is configured to listen
//! on), `token` makes a bearer token and its digest, `key new` writes a signing key
//! file (the one a cluster's replicas share).
//!
//! `run` exits with the guest's exit code when the execution completed. Otherwise it
//! prints one line on stderr and exits with a code of its own:
//!
//! | status / failure | exit code |
//! | --- | --- |
//! | `timeout` | 124 |
//! | the client could not complete the protocol | 125 |
//! | `invalid_module`, `invalid_request` | 126 |
//! | `trap` | 134 |
//! | `memory_limit` | 137 |
//! | `fuel_exhausted` | 152 |

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use wasm_hypervisor_client::{Client, ClientError, Execution, ServerIdentity, SessionPool, Wire};
use wasm_hypervisor_protocol::encoding::{Hex, encode_base64};
use wasm_hypervisor_protocol::payload::{ExecutionRequest, MountRequest, RequestedLimits, Status};

use crate::blob_cache::BlobCache;
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::receipt::{self, Check, Receipt};
use wasm_hypervisor_protocol::signing::{PublicKey, SignatureError};
use wasm_hypervisor_protocol::wire::CheckpointResponse;
use wasm_hypervisor_server::access;
use wasm_hypervisor_server::config::{Config, LogFormat, Overrides};
use wasm_hypervisor_server::keys::ServerKey;
use wasm_hypervisor_server::sandbox::compiler;
use wasm_hypervisor_server::server::{self, ServerError, Service, shutdown_signal};

/// Exit code when the client could not complete the protocol.
pub const EXIT_CLIENT_ERROR: u8 = 125;

#[derive(Debug, Parser)]
#[command(
    name = "wasm-hypervisor",
    version,
    about = "Runs untrusted WebAssembly behind sealed requests and results, with a verifiable audit log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Execute a WebAssembly module on a server and print its output.
    Run(RunArgs),
    /// Prove an execution from its receipt, or that the log is consistent with a
    /// checkpoint saved earlier. Exit 0 only if every check holds.
    Verify(VerifyArgs),
    /// Exit 0 if the server's /health answers 200 within 5 seconds (for container
    /// health checks), 1 otherwise. Without --server, it probes the address the
    /// server is configured to listen on.
    Health(HealthArgs),
    /// The audit log: `log import` moves a file log into cluster mode's database.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Print a new random bearer token on the first line and its SHA-256 digest
    /// (for `auth.tokens_sha256` or `auth.metrics_tokens_sha256`) on the second.
    Token,
    /// The signing key file.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Internal: compile one module read from stdin under CPU and memory limits,
    /// for the server (see `sandbox::compiler`).
    #[command(name = "compile-worker", hide = true)]
    CompileWorker {
        #[arg(num_args = 3, value_names = ["KIND", "CPU_SECS", "MEMORY_BYTES"])]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Write a new signing key to FILE (P-256, PKCS#8 PEM, mode 0600), which must
    /// not exist, and print its key id (hex SHA-256 of the SPKI, what clients pin
    /// with --key-id). For `signing_key_file`, shared by a cluster's replicas.
    New {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Copy the file log of a data directory (no server may be using it) into the
    /// empty audit log of a cluster's database, checked against its persisted
    /// checkpoint and by root; recorded, so that a replica on that data directory
    /// starts. Uses the configuration's signing key and origin.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// The cluster's PostgreSQL URL (default: the configuration's
    /// cluster.database_url).
    #[arg(
        long,
        value_name = "URL",
        env = "WASM_HYPERVISOR_CLUSTER__DATABASE_URL"
    )]
    database_url: Option<String>,
    /// Data directory holding audit.log, overriding the configuration.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// YAML configuration file (as `serve --config`): data directory, signing key
    /// file, origin.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The server's URL (default: the receipt's server, else http://127.0.0.1:8080).
    #[arg(long, value_name = "URL", env = "WASM_HYPERVISOR_SERVER")]
    server: Option<String>,
    /// The key id the server must have (hex SHA-256 of its SPKI). Without it, the key
    /// from /keys (or, with --proof, the receipt's) is used and printed.
    #[arg(long, value_name = "HEX", env = "WASM_HYPERVISOR_KEY_ID")]
    key_id: Option<String>,
    /// Check the log is consistent with this checkpoint (the JSON of an earlier
    /// GET /log/checkpoint) instead of verifying a receipt.
    #[arg(long, value_name = "OLD.json", conflicts_with_all = ["receipt", "proof", "save_proof"])]
    checkpoint: Option<PathBuf>,
    /// With --checkpoint: after a successful check, write the current checkpoint here
    /// (the same file, for a monitor that runs periodically).
    #[arg(long, value_name = "FILE", requires = "checkpoint")]
    save: Option<PathBuf>,
    /// Verify offline against a saved /verify answer instead of asking the server.
    #[arg(long, value_name = "FILE", conflicts_with = "save_proof")]
    proof: Option<PathBuf>,
    /// Save the server's /verify answer, to verify offline later with --proof.
    #[arg(long, value_name = "FILE")]
    save_proof: Option<PathBuf>,
    /// The receipt written by `run --receipt`.
    #[arg(value_name = "RECEIPT.json", required_unless_present = "checkpoint")]
    receipt: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct HealthArgs {
    /// The server's URL (default: the address `serve` is configured to listen on,
    /// from the same file and WASM_HYPERVISOR_* environment, with 0.0.0.0 or ::
    /// probed on loopback).
    #[arg(long, value_name = "URL", env = "WASM_HYPERVISOR_SERVER")]
    server: Option<String>,
    /// The server's YAML configuration file (as `serve --config`), for its listen
    /// address; not read with --server.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// YAML configuration file (every key optional; see config.yaml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding the configuration.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Data directory (signing key, audit log), overriding the configuration.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The server's URL.
    #[arg(
        long,
        value_name = "URL",
        env = "WASM_HYPERVISOR_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Bearer token, when the server requires one.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WASM_HYPERVISOR_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Expected key id (hex SHA-256 of the server's SPKI); refuse any other key.
    #[arg(long, value_name = "HEX", env = "WASM_HYPERVISOR_KEY_ID")]
    key_id: Option<String>,
    /// Write a receipt (JSON) that proves this execution later.
    #[arg(long, value_name = "FILE")]
    receipt: Option<PathBuf>,
    /// The guest's stdin (default: this process's stdin, or empty if it is a terminal).
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// An environment variable for the guest; repeatable.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env_pair)]
    env: Vec<(String, String)>,
    /// Fuel limit (at most the server's).
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Linear-memory limit in bytes (at most the server's).
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Wall-clock limit in milliseconds (at most the server's).
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Cap on each of stdout and stderr, in bytes (at most the server's).
    #[arg(long, value_name = "BYTES")]
    max_output_bytes: Option<u64>,
    /// Call one export instead of running a command, written as a WAVE call
    /// expression (`add(1, 2)`, `greet("x")`); its results are printed one a line.
    #[arg(long, value_name = "EXPR")]
    invoke: Option<String>,
    /// Submit as a long job (`Prefer: respond-async`): print the execution id on
    /// stderr as soon as the server accepts it, then poll for the answer.
    #[arg(long = "async")]
    submit_async: bool,
    /// Mount the host directory HOST read-only at GUEST, as `wasmtime run --dir`
    /// does (its regular files and directories; a symbolic link is an error).
    /// Repeatable.
    #[arg(long = "dir", value_name = "HOST::GUEST", value_parser = parse_mapping)]
    dirs: Vec<(PathBuf, String)>,
    /// Give the guest a writable directory at GUEST, starting empty; what the
    /// guest leaves there is written into HOST (created if missing, which must
    /// otherwise be empty) once it ends, whatever its status. Repeatable.
    #[arg(long = "out-dir", value_name = "HOST::GUEST", value_parser = parse_mapping)]
    out_dirs: Vec<(PathBuf, String)>,
    /// Bytes of all mounts' files together (at most the server's).
    #[arg(long, value_name = "BYTES")]
    files_bytes: Option<u64>,
    /// Always send the module and archives themselves. By default a module or
    /// archive this machine already sent to the server goes by its SHA-256, and is
    /// sent again if the server no longer holds it.
    #[arg(long)]
    no_references: bool,
    /// The protocol: `v1.1` (binary body, CBOR plaintext, a session from a signed
    /// batch) or `v1` (JSON throughout, protocol v1 exactly).
    #[arg(long, value_name = "VERSION", default_value = "v1.1")]
    wire: Wire,
    /// The module, then everything for the guest: `run prog.wasm -d x` passes `-d x`.
    #[arg(value_name = "MODULE.wasm", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    module_and_args: Vec<String>,
}

/// Why a client command (`run`, `verify`, `health`) could not do its work; a
/// failed check is not one of these, it is a result.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// A file or stdin could not be read.
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    /// A file is not the JSON document it should be.
    #[error("{} is not valid: {source}", path.display())]
    Document {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A document could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    /// The request plaintext could not be written.
    #[error(transparent)]
    Plaintext(#[from] wasm_hypervisor_client::EncodeError),
    /// Talking to the server failed, or its answer broke the protocol.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The receipt carries a key that is not a P-256 SPKI.
    #[error("the receipt's public key: {0}")]
    ReceiptKey(SignatureError),
    /// The receipt was signed by another key than the one pinned.
    #[error("the receipt's key id is {actual}, not the pinned {pinned}")]
    ReceiptKeyNotPinned { actual: String, pinned: String },
    /// A directory could not be packed for a mount, or a writable mount unpacked.
    #[error("{0}")]
    Archive(#[from] wasm_hypervisor_client::archive::ArchiveError),
}

/// A `--dir` or `--out-dir` value that is not `HOST::GUEST`.
#[derive(Debug, thiserror::Error)]
#[error("expected HOST::GUEST with a non-empty host path and an absolute guest path, got `{0}`")]
struct MappingError(String);

fn parse_mapping(text: &str) -> Result<(PathBuf, String), MappingError> {
    match text.split_once("::") {
        Some((host, guest)) if !host.is_empty() && guest.starts_with('/') => {
            Ok((PathBuf::from(host), guest.to_owned()))
        }
        _ => Err(MappingError(text.to_owned())),
    }
}

/// A `--env` value that is not `NAME=VALUE`.
#[derive(Debug, thiserror::Error)]
#[error("expected NAME=VALUE, got `{0}`")]
struct EnvPairError(String);

fn parse_env_pair(text: &str) -> Result<(String, String), EnvPairError> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(EnvPairError(text.to_owned())),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Run(args) => run(args),
        Command::Health(args) => health(args),
        Command::Verify(args) => verify(args),
        Command::Log {
            command: LogCommand::Import(args),
        } => import_log(args),
        Command::Token => token(),
        Command::Key(KeyCommand::New { file }) => key_new(&file),
        Command::CompileWorker { args } => compiler::worker_main(&args),
    }
}

/// Prints a fresh token and its digest. The token goes to the client, the digest
/// to the server's configuration; the server never sees the token at rest.
fn token() -> ExitCode {
    match access::new_token(Provider::default()) {
        Ok((token, digest)) => {
            println!("{token}");
            println!("{digest}");
            eprintln!(
                "wasm-hypervisor: line 1 is the token (give it to the client: `run --token`, \
                 WASM_HYPERVISOR_TOKEN); line 2 its SHA-256, for auth.tokens_sha256"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("wasm-hypervisor: cannot read the OS random source: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a new signing key file, never over an existing one, and prints its key id.
fn key_new(file: &Path) -> ExitCode {
    match ServerKey::create_new_at(Provider::default(), file) {
        Ok(key) => {
            println!("{}", key.public().key_id_hex());
            eprintln!(
                "wasm-hypervisor: wrote {} (mode 0600); the line above is its key id. Give \
                 every replica this file as signing_key_file, readable by the server's user only",
                file.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("wasm-hypervisor: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Exit code of `verify` when a check failed.
const EXIT_VERIFY_FAILED: u8 = 1;

fn verify(args: VerifyArgs) -> ExitCode {
    match runtime().block_on(verify_client(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_VERIFY_FAILED),
        Err(message) => {
            eprintln!("wasm-hypervisor: {message}");
            ExitCode::from(EXIT_CLIENT_ERROR)
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Read {
        what: path.display().to_string(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| CliError::Document {
        path: path.to_owned(),
        source,
    })
}

/// Fetches the server's key, pinned to `key_id` when given, and says which it is.
async fn server_identity(
    client: &Client,
    key_id: Option<&str>,
) -> Result<ServerIdentity, CliError> {
    let identity = client.identity(key_id).await?;
    if key_id.is_none() {
        println!(
            "server key id {} (not pinned; pass --key-id to pin it)",
            identity.key_id
        );
    }
    Ok(identity)
}

fn report_checks(checks: &[Check]) -> bool {
    for check in checks {
        match &check.outcome {
            Ok(()) => println!("ok      {}", check.name),
            Err(why) => println!("FAILED  {}: {why}", check.name),
        }
    }
    receipt::all_hold(checks)
}

async fn verify_client(args: VerifyArgs) -> Result<bool, CliError> {
    if let Some(path) = &args.checkpoint {
        let server = args.server.as_deref().unwrap_or("http://127.0.0.1:8080");
        let client = Client::new(server, None);
        let identity = server_identity(&client, args.key_id.as_deref()).await?;
        let old: CheckpointResponse = read_json(path)?;
        let new = client.checkpoint().await?;
        let proof = if old.tree_size > 0 && old.tree_size <= new.tree_size {
            client
                .consistency(old.tree_size, new.tree_size)
                .await?
                .proof
        } else {
            Vec::new()
        };
        let checks = receipt::check_consistency(&old, &new, &proof, &identity.public_key);
        let held = report_checks(&checks);
        if held {
            println!(
                "consistent: the log `{}` at {} entries extends the saved checkpoint at {}",
                new.origin, new.tree_size, old.tree_size
            );
            if let Some(save) = &args.save {
                write_private(save, &new)?;
            }
        } else {
            println!("verification failed: the log is NOT consistent with the saved checkpoint");
        }
        return Ok(held);
    }

    let receipt_path = args.receipt.as_deref().expect("clap requires a receipt");
    let receipt: Receipt = read_json(receipt_path)?;
    let (answer, key) = match &args.proof {
        Some(proof_path) => {
            let key = PublicKey::from_spki_der(Provider::default(), &receipt.public_key.0)
                .map_err(CliError::ReceiptKey)?;
            match &args.key_id {
                Some(pinned) if !pinned.eq_ignore_ascii_case(&key.key_id_hex()) => {
                    return Err(CliError::ReceiptKeyNotPinned {
                        actual: key.key_id_hex(),
                        pinned: pinned.clone(),
                    });
                }
                Some(_) => {}
                None => println!(
                    "receipt key id {} (not pinned; pass --key-id to pin it)",
                    key.key_id_hex()
                ),
            }
            (read_json(proof_path)?, key)
        }
        None => {
            let server = args.server.as_deref().unwrap_or(&receipt.server);
            let client = Client::new(server, None);
            let identity = server_identity(&client, args.key_id.as_deref()).await?;
            let answer = client.inclusion(&receipt.execution_id).await?;
            if let Some(save) = &args.save_proof {
                write_private(save, &answer)?;
            }
            (answer, identity.public_key)
        }
    };
    let checks = receipt::check_receipt(&receipt, &answer, &key);
    let held = report_checks(&checks);
    if held {
        println!(
            "verified: execution {} ({}) is entry {} of the log `{}` at size {}, under key {}",
            receipt.execution_id,
            receipt.status,
            answer.log_index,
            answer.checkpoint.origin,
            answer.checkpoint.tree_size,
            key.key_id_hex()
        );
    } else {
        println!("verification failed");
    }
    Ok(held)
}

/// How long `health` waits for an answer: it is a container's health check.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn health(args: HealthArgs) -> ExitCode {
    let server = match args.server {
        Some(server) => server,
        // The server's own configuration, loaded as `serve` loads it, so that the
        // check follows WASM_HYPERVISOR_LISTEN (a container's health check runs in
        // the server's environment).
        None => match Config::load(args.config.as_deref(), &Overrides::default()) {
            Ok(config) => probe_url(config.listen),
            Err(error) => {
                eprintln!("wasm-hypervisor: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    let url = format!("{}/health", server.trim_end_matches('/'));
    let checked = runtime().block_on(async {
        let client = Client::with_timeout(&server, None, HEALTH_TIMEOUT)?;
        client.health().await
    });
    match checked {
        Ok(health) if health.is_ok() => ExitCode::SUCCESS,
        Ok(health) => {
            eprintln!(
                "wasm-hypervisor: {url} answered {} {}",
                health.status,
                health.reasons.join(", ")
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("wasm-hypervisor: {url}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The URL that reaches, from the same host, a server listening on `listen`: an
/// unspecified address (every interface) is reached on loopback of its family.
fn probe_url(listen: SocketAddr) -> String {
    let mut address = listen;
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => address.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => address.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    format!("http://{address}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}

/// The configuration from `file` (if any), the environment and `overrides`; a
/// configuration that does not load is said on stderr and exits 2.
fn load_config(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ExitCode> {
    Config::load(file, overrides).map_err(|error| {
        eprintln!("wasm-hypervisor: {error}");
        ExitCode::from(2)
    })
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
    };
    let config = match load_config(args.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(code) => return code,
    };
    init_tracing(config.log_format);
    let runtime = runtime();
    let result = runtime.block_on(async move {
        let service = Service::open(&config).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(ServerError::Serve)?;
        tracing::info!(
            listen = %listener.local_addr().map_err(ServerError::Serve)?,
            data_dir = %config.data_dir.as_path().display(),
            "wasm-hypervisor serving"
        );
        service.serve(listener, shutdown_signal()).await
    });
    // The log is closed. Executions abandoned at the end of the grace period may
    // still hold a thread (a compilation): dropping the runtime would wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wasm-hypervisor: {error}");
            ExitCode::FAILURE
        }
    }
}

fn import_log(args: ImportArgs) -> ExitCode {
    let overrides = Overrides {
        listen: None,
        data_dir: args.data_dir,
    };
    let config = match load_config(args.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let url = match args.database_url {
        Some(url) => url,
        None if config.cluster.database_url.is_set() => {
            config.cluster.database_url.expose().to_owned()
        }
        None => {
            eprintln!("wasm-hypervisor: log import needs --database-url (or cluster.database_url)");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    match runtime().block_on(server::import_log(&config, &url)) {
        Ok(imported) => {
            println!(
                "imported {} records from {} (root {})",
                imported.records,
                config
                    .data_dir
                    .as_path()
                    .join(wasm_hypervisor_server::audit::file::LOG_FILE)
                    .display(),
                hex::encode(imported.root)
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("wasm-hypervisor: log import: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // Every enclosing span, so that each line carries the request's id and route
        // even when it comes from deeper down.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}

fn run(args: RunArgs) -> ExitCode {
    match runtime().block_on(run_client(args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("wasm-hypervisor: {message}");
            ExitCode::from(EXIT_CLIENT_ERROR)
        }
    }
}

async fn run_client(args: RunArgs) -> Result<ExitCode, CliError> {
    let (module_path, guest_args) = args
        .module_and_args
        .split_first()
        .expect("clap requires the module");
    let module = std::fs::read(module_path).map_err(|source| CliError::Read {
        what: module_path.clone(),
        source,
    })?;
    let stdin = match &args.stdin {
        Some(path) => std::fs::read(path).map_err(|source| CliError::Read {
            what: path.display().to_string(),
            source,
        })?,
        None if std::io::stdin().is_terminal() => Vec::new(),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|source| CliError::Read {
                    what: "stdin".to_owned(),
                    source,
                })?;
            bytes
        }
    };
    let limits = RequestedLimits {
        fuel: args.fuel,
        memory_bytes: args.memory,
        timeout_ms: args.timeout_ms,
        max_output_bytes: args.max_output_bytes,
        files_bytes: args.files_bytes,
    };
    // Refused now rather than after the run: an output directory that is not empty.
    for (host, _) in &args.out_dirs {
        if std::fs::read_dir(host).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(
                wasm_hypervisor_client::archive::ArchiveError::NotEmpty(host.clone()).into(),
            );
        }
    }
    let module = OutgoingBlob::new(module);
    let mut mounts = Vec::with_capacity(args.dirs.len() + args.out_dirs.len());
    for (host, guest) in &args.dirs {
        let archive = wasm_hypervisor_client::archive::pack_directory(host)?;
        mounts.push((guest.clone(), false, Some(OutgoingBlob::new(archive))));
    }
    for (_, guest) in &args.out_dirs {
        mounts.push((guest.clone(), true, None));
    }
    let base = ExecutionRequest {
        invoke: args.invoke.clone(),
        args: guest_args.to_vec(),
        env: args.env.into_iter().collect::<BTreeMap<_, _>>(),
        stdin: (!stdin.is_empty()).then(|| encode_base64(&stdin)),
        limits: (limits != RequestedLimits::default()).then_some(limits),
        ..Default::default()
    };

    let client = Client::new(&args.server, args.token.clone()).with_wire(args.wire);
    let identity = client.identity(args.key_id.as_deref()).await?;
    // One execution (two if blobs must be sent again): batches of one.
    let pool = SessionPool::new(client.clone(), identity.public_key).with_batch(1);
    let mut cache = (!args.no_references)
        .then(|| BlobCache::load(&identity.key_id.to_string(), args.token.as_deref()));
    let blobs =
        || std::iter::once(&module).chain(mounts.iter().filter_map(|(_, _, blob)| blob.as_ref()));
    // Named rather than sent: what this machine sent before, when it is worth it.
    let mut by_reference: Vec<[u8; 32]> = match &cache {
        Some(cache) => blobs()
            .filter(|blob| blob.bytes.len() >= REFERENCE_MIN_BYTES && cache.contains(&blob.sha256))
            .map(|blob| blob.sha256)
            .collect(),
        None => Vec::new(),
    };
    let execution = loop {
        let request = ExecutionRequest {
            mounts: mounts
                .iter()
                .map(|(path, writable, blob)| MountRequest {
                    path: path.clone(),
                    writable: *writable,
                    tar: blob
                        .as_ref()
                        .filter(|blob| !by_reference.contains(&blob.sha256))
                        .map(|blob| encode_base64(&blob.bytes)),
                    tar_sha256: blob
                        .as_ref()
                        .filter(|blob| by_reference.contains(&blob.sha256))
                        .map(|blob| Hex(blob.sha256)),
                })
                .collect(),
            module: (!by_reference.contains(&module.sha256)).then(|| encode_base64(&module.bytes)),
            module_sha256: by_reference
                .contains(&module.sha256)
                .then_some(Hex(module.sha256)),
            ..base.clone()
        };
        let plaintext = zeroize::Zeroizing::new(args.wire.encode_request(&request)?);
        drop(request);
        let execution = if args.submit_async {
            let pending = pool.execute_async(&plaintext).await?;
            eprintln!("wasm-hypervisor: execution {}", pending.execution_id);
            client.wait(pending).await?
        } else {
            pool.execute(&plaintext).await?
        };
        // A server that lost blobs it held (a restart, an eviction) names them:
        // send those again with their bytes, once.
        let missing = execution.result.missing_blobs.clone().unwrap_or_default();
        let resend = execution.result.status == Status::MissingBlob
            && !missing.is_empty()
            && missing.iter().all(|hash| by_reference.contains(&hash.0));
        if !resend {
            break execution;
        }
        by_reference.retain(|hash| !missing.iter().any(|lost| lost.0 == *hash));
        if let Some(cache) = cache.as_mut() {
            for hash in &missing {
                cache.remove(&hash.0);
            }
        }
    };
    if let Some(cache) = cache.as_mut()
        && execution.result.status != Status::MissingBlob
    {
        // The server keeps every blob it receives (within its budget).
        for blob in blobs() {
            cache.insert(blob.sha256);
        }
        cache.save();
    }

    if let Some(path) = &args.receipt {
        let receipt = execution.receipt(&args.server, &identity);
        write_private(path, &receipt)?;
    }
    for (host, guest) in &args.out_dirs {
        let written = execution
            .result
            .mounts_out
            .iter()
            .flatten()
            .find(|out| &out.path == guest);
        if let Some(out) = written {
            wasm_hypervisor_client::archive::unpack_into(&out.tar.0, host)?;
        }
    }
    Ok(report(&execution))
}

/// Modules and archives smaller than this always go by bytes: naming them saves
/// little, and a reference the server no longer holds costs a round trip.
const REFERENCE_MIN_BYTES: usize = 4096;

/// A module or archive `run` sends, with its SHA-256.
struct OutgoingBlob {
    bytes: Vec<u8>,
    sha256: [u8; 32],
}

impl OutgoingBlob {
    fn new(bytes: Vec<u8>) -> OutgoingBlob {
        let sha256 = wasm_hypervisor_protocol::digest::sha256(&bytes);
        OutgoingBlob { bytes, sha256 }
    }
}

/// Writes the guest's output to ours and picks the exit code.
fn report(execution: &Execution) -> ExitCode {
    let result = &execution.result;
    let _ = std::io::stdout().write_all(&result.stdout_bytes());
    for value in &result.returns {
        println!("{value}");
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(&result.stderr_bytes());
    for (truncated, stream) in [
        (result.stdout_truncated, "stdout"),
        (result.stderr_truncated, "stderr"),
    ] {
        if truncated {
            eprintln!(
                "wasm-hypervisor: the guest's {stream} was truncated at {} bytes",
                result.limits.max_output_bytes
            );
        }
    }
    let code = match result.status {
        Status::Completed => {
            // Exit codes outside 0..=255 cannot be passed on as they are.
            let code = result.exit_code.unwrap_or(0);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Status::Timeout => 124,
        // `run` sends its module's bytes; a server answering `missing_blob` to that
        // is refusing the request as it was made.
        Status::InvalidModule | Status::InvalidRequest | Status::MissingBlob => 126,
        Status::Trap => 134,
        Status::MemoryLimit => 137,
        Status::FuelExhausted => 152,
    };
    let reason = result
        .error
        .as_deref()
        .and_then(|error| error.lines().next())
        .unwrap_or("");
    eprintln!(
        "wasm-hypervisor: execution {} ended with status {}: {reason}",
        execution.execution_id, result.status
    );
    ExitCode::from(code)
}

fn write_private(path: &Path, value: &impl Serialize) -> Result<(), CliError> {
    let mut json = serde_json::to_vec_pretty(value).map_err(CliError::Encode)?;
    json.push(b'\n');
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(&json))
        .map_err(|source| CliError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        assert_eq!(
            probe_url("0.0.0.0:9000".parse().unwrap()),
            "http://127.0.0.1:9000"
        );
        assert_eq!(probe_url("[::]:9001".parse().unwrap()), "http://[::1]:9001");
    }

    #[test]
    fn a_specific_listen_address_is_probed_as_it_is() {
        assert_eq!(
            probe_url("10.1.2.3:8080".parse().unwrap()),
            "http://10.1.2.3:8080"
        );
        assert_eq!(
            probe_url("127.0.0.1:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            probe_url("[fd00::7]:443".parse().unwrap()),
            "http://[fd00::7]:443"
        );
    }
}
