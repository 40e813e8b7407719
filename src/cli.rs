//! The command line: the clap tree of the `wasm-hypervisor` binary and the
//! dispatch to [`crate::commands`], one file per command. `serve` runs the
//! service, `run` executes a module on a server end to end as a client (its exit
//! codes are in `commands::run`), `verify` proves an execution from its receipt
//! (or the log's consistency with a saved checkpoint), `replay` re-runs a
//! deterministic execution from its bundle (its exit codes are in
//! `commands::replay`), `health` probes a server
//! for container health checks (by default the address `serve` is configured to
//! listen on), `token` makes a bearer token and its digest, `key new` writes a
//! signing key file (the one a cluster's replicas share), `log import` moves a
//! file log into a cluster's database, `log monitor` follows a log from its
//! checkpoint and tiles (its exit codes are in `commands::log`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wasm_hypervisor_server::sandbox::compiler;

use crate::commands::health::{self, HealthArgs};
use crate::commands::log::{self, ImportArgs, MonitorArgs};
use crate::commands::replay::{self, ReplayArgs};
use crate::commands::run::{self, RunArgs};
use crate::commands::serve::{self, ServeArgs};
use crate::commands::verify::{self, VerifyArgs};
use crate::commands::{key, token};

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
    /// Check a deterministic execution by running it again here (protocol v1.2
    /// §R): the bundle of `run --replay-bundle` must open its receipt's
    /// commitment and be logged (online, or offline with --note-key or
    /// --policy); its request is re-run in this machine's sandbox and its
    /// status, exit code, stdout, stderr, returns, fuel, mounts_out and engine
    /// compared. Exit 0 if all are identical; 1 a check of the bundle failed; 3
    /// the replay differs (the first difference is named); 4 the request is not
    /// deterministic; 125 the replay could not be made.
    Replay(ReplayArgs),
    /// Exit 0 if the server's /health answers 200 within 5 seconds (for container
    /// health checks), 1 otherwise. Without --server, it probes the address the
    /// server is configured to listen on.
    Health(HealthArgs),
    /// The audit log: `log import` moves a file log into cluster mode's database,
    /// `log monitor` follows a log from its tiles and refuses a fork or a rollback.
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
        #[arg(num_args = 3..=4, value_names = ["KIND", "CPU_SECS", "MEMORY_BYTES", "FLAVOR"])]
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
    /// Follow a log from its checkpoint and tiles alone, once: check the checkpoint
    /// against a C2SP tlog-policy, prove it extends the one seen before (kept in
    /// --state) and that every new entry hashes to its leaf, then save it. Exit 0
    /// with a one-line summary, else a code naming the failure: 3 the log could not
    /// be read, 4 bad signature, 5 missing quorum, 6 rollback, 7 fork, 8 a tile or
    /// entry that does not hash (2: the policy or state). Run it from a timer.
    Monitor(MonitorArgs),
}

/// Entry point of the binary.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Run(args) => run::run(args),
        Command::Health(args) => health::health(args),
        Command::Verify(args) => verify::verify(args),
        Command::Replay(args) => replay::replay(args),
        Command::Log {
            command: LogCommand::Import(args),
        } => log::import_log(args),
        Command::Log {
            command: LogCommand::Monitor(args),
        } => log::monitor(args),
        Command::Token => token::token(),
        Command::Key(KeyCommand::New { file }) => key::key_new(&file),
        Command::CompileWorker { args } => compiler::worker_main(&args),
    }
}
