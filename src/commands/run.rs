//! `run`: execute a module on a server end to end as a client ([`Client::run`]),
//! print its output and exit with the guest's exit code when the execution
//! completed. Otherwise it prints one line on stderr and exits with a code of its
//! own:
//!
//! | status / failure | exit code |
//! | --- | --- |
//! | `timeout` | 124 |
//! | the client could not complete the protocol | 125 |
//! | `invalid_module`, `invalid_request` | 126 |
//! | `trap` | 134 |
//! | `memory_limit` | 137 |
//! | `fuel_exhausted` | 152 |
//!
//! On a terminal, stderr shows the upload of a large request and, with
//! `--async`, the job's progress (`crate::progress`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use wasm_hypervisor_client::archive::{self, ArchiveError};
use wasm_hypervisor_client::{
    BlobCache, Client, Execution, References, Run, RunProgress, TlogProofOutcome, Wire,
};
use wasm_hypervisor_protocol::payload::{RequestedLimits, Status};

use super::{CliError, EXIT_CLIENT_ERROR, runtime, write_private};
use crate::progress::ProgressLine;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
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
    /// Write a receipt (JSON) that proves this execution later. From a v1.2
    /// server it carries the execution's tlog-proof, checked under the server's
    /// note key, so that `verify --note-key` or `--policy` checks it offline; if
    /// the proof cannot be had, the receipt is written without it (it verifies
    /// online) and one line on stderr says so.
    #[arg(long, value_name = "FILE")]
    receipt: Option<PathBuf>,
    /// Run reproducibly (protocol v1.2 §R): clocks that advance only with the
    /// guest's reads, random bytes from `--seed`, the timeout turned into a fuel
    /// bound; the result names its engine (`engine_sha256`).
    #[arg(long)]
    deterministic: bool,
    /// The 32 bytes (64 hex digits) a deterministic guest's random bytes come
    /// from (default: zero). Implies `--deterministic`.
    #[arg(long, value_name = "HEX", value_parser = parse_seed)]
    seed: Option<[u8; 32]>,
    /// Write a replay bundle (the receipt and the request and result plaintexts
    /// exactly as sealed; PROTOCOL.md, "Replay bundles"). It holds the
    /// plaintexts: it is written readable by its owner only. Implies
    /// --no-references: the module and archives are sent as bytes, so that the
    /// bundle holds them and `replay` can run it again.
    #[arg(long, value_name = "FILE")]
    replay_bundle: Option<PathBuf>,
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

/// A `--seed` value that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("expected 64 hex digits (32 bytes), got `{0}`")]
struct SeedError(String);

fn parse_seed(text: &str) -> Result<[u8; 32], SeedError> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text, &mut seed).map_err(|_| SeedError(text.to_owned()))?;
    Ok(seed)
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

pub(crate) fn run(args: RunArgs) -> ExitCode {
    match runtime().block_on(run_client(args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("wasm-hypervisor: {message}");
            ExitCode::from(EXIT_CLIENT_ERROR)
        }
    }
}

async fn run_client(args: RunArgs) -> Result<ExitCode, CliError> {
    let run = build_run(&args)?;
    let progress = ProgressLine::on_stderr();
    let line = progress.clone();
    let run = run.on_progress(move |event| {
        if let RunProgress::Accepted { execution_id } = &event {
            line.clear();
            eprintln!("wasm-hypervisor: execution {execution_id}");
        }
        line.show(&event);
    });
    let by_bytes = sends_bytes(&args);
    let client = Client::new(&args.server, args.token.clone())
        .with_wire(args.wire)
        .with_key_id(args.key_id.clone())
        // One execution (two if blobs must be sent again): batches of one.
        .with_batch(1)
        // Named rather than sent: what this machine sent before, when it is worth it.
        .with_blob_cache(if by_bytes {
            BlobCache::in_memory()
        } else {
            BlobCache::on_disk(args.token.as_deref())
        });
    let outcome = client.run(&run).await;
    // The request plaintext is wiped with the run, as soon as it is done.
    drop(run);
    progress.clear();
    let outcome = outcome?;

    if args.receipt.is_some() || args.replay_bundle.is_some() {
        let proved = outcome.receipt_with_proof(&args.server).await?;
        if let TlogProofOutcome::Unavailable(why) = &proved.tlog_proof {
            eprintln!(
                "wasm-hypervisor: the receipt carries no tlog_proof ({why}): it verifies online only"
            );
        }
        if let Some(path) = &args.receipt {
            write_private(path, &proved.receipt)?;
        }
        if let Some(path) = &args.replay_bundle {
            write_private(path, &outcome.replay_bundle(proved.receipt.clone()))?;
        }
    }
    let execution = &outcome.execution;
    for (host, guest) in &args.out_dirs {
        let written = execution
            .result
            .mounts_out
            .iter()
            .flatten()
            .find(|out| &out.path == guest);
        if let Some(out) = written {
            archive::unpack_into(&out.tar.0, host)?;
        }
    }
    Ok(report(execution))
}

/// Whether the module and archives go as bytes, never by SHA-256: asked for, or
/// needed by a replay bundle (a request naming its module by hash could not be
/// run again from the bundle alone).
fn sends_bytes(args: &RunArgs) -> bool {
    args.no_references || args.replay_bundle.is_some()
}

/// The run the arguments ask for: the module, stdin and directories read.
fn build_run(args: &RunArgs) -> Result<Run, CliError> {
    let (module_path, guest_args) = args
        .module_and_args
        .split_first()
        .expect("clap requires the module");
    let module = std::fs::read(module_path).map_err(|source| CliError::Read {
        what: module_path.clone(),
        source,
    })?;
    let stdin = guest_stdin(args.stdin.as_deref())?;
    // Refused now rather than after the run: an output directory that is not empty.
    for (host, _) in &args.out_dirs {
        if std::fs::read_dir(host).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(ArchiveError::NotEmpty(host.clone()).into());
        }
    }
    let mut run = Run::new(module)
        .args(guest_args.iter().cloned())
        .env(args.env.iter().cloned())
        .stdin(&stdin)
        .limits(RequestedLimits {
            fuel: args.fuel,
            memory_bytes: args.memory,
            timeout_ms: args.timeout_ms,
            max_output_bytes: args.max_output_bytes,
            files_bytes: args.files_bytes,
        })
        .references(if sends_bytes(args) {
            References::Never
        } else {
            References::Auto
        })
        .asynchronous(args.submit_async);
    if let Some(expression) = &args.invoke {
        run = run.invoke(expression.clone());
    }
    if args.deterministic || args.seed.is_some() {
        run = run.deterministic(args.seed);
    }
    for (host, guest) in &args.dirs {
        run = run.mount(guest.clone(), archive::pack_directory(host)?);
    }
    for (_, guest) in &args.out_dirs {
        run = run.writable_mount(guest.clone());
    }
    Ok(run)
}

/// The guest's stdin: the file given, else this process's stdin, or nothing if
/// it is a terminal.
fn guest_stdin(path: Option<&Path>) -> Result<Vec<u8>, CliError> {
    match path {
        Some(path) => std::fs::read(path).map_err(|source| CliError::Read {
            what: path.display().to_string(),
            source,
        }),
        None if std::io::stdin().is_terminal() => Ok(Vec::new()),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|source| CliError::Read {
                    what: "stdin".to_owned(),
                    source,
                })?;
            Ok(bytes)
        }
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
