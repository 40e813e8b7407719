//! One file per command of the binary, as wasmtime's `src/commands/` is: each
//! holds its clap arguments and the function that does the command's work and
//! picks its exit code. This file holds what several of them share: the runtime,
//! the server's configuration and tracing (`serve`, `log import`), the client
//! commands' error type and how they read and write JSON files.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use wasm_hypervisor_client::{ClientError, RunError};
use wasm_hypervisor_protocol::signing::SignatureError;
use wasm_hypervisor_server::config::{Config, LogFormat, Overrides};

pub(crate) mod health;
pub(crate) mod key;
pub(crate) mod log;
pub(crate) mod replay;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod token;
pub(crate) mod verify;

/// Exit code when the client could not complete the protocol.
pub(crate) const EXIT_CLIENT_ERROR: u8 = 125;

/// Why a client command (`run`, `verify`, `health`) could not do its work; a
/// failed check is not one of these, it is a result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
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
    /// The execution could not be run: its plaintext could not be written, or
    /// talking to the server failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Talking to the server failed, or its answer broke the protocol.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The receipt carries a key that is not a P-256 SPKI.
    #[error("the receipt's public key: {0}")]
    ReceiptKey(SignatureError),
    /// A `--policy` file is not a C2SP tlog-policy.
    #[error("{}: {source}", path.display())]
    Policy {
        path: PathBuf,
        source: wasm_hypervisor_protocol::policy::PolicyError,
    },
    /// A `--note-key` is not a verifier key.
    #[error("--note-key: {0}")]
    NoteKey(wasm_hypervisor_protocol::note::NoteError),
    /// A `--note-key` is a verifier key of a type no log signs with.
    #[error("--note-key: a log's key is of type 0x01 (Ed25519) or 0x02 (ECDSA P-256)")]
    NoteKeyType,
    /// The receipt was signed by another key than the one pinned.
    #[error("the receipt's key id is {actual}, not the pinned {pinned}")]
    ReceiptKeyNotPinned { actual: String, pinned: String },
    /// A directory could not be packed for a mount, or a writable mount unpacked.
    #[error("{0}")]
    Archive(#[from] wasm_hypervisor_client::archive::ArchiveError),
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}

/// The configuration from `file` (if any), the environment and `overrides`; a
/// configuration that does not load is said on stderr and exits 2.
pub(crate) fn load_config(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ExitCode> {
    Config::load(file, overrides).map_err(|error| {
        eprintln!("wasm-hypervisor: {error}");
        ExitCode::from(2)
    })
}

pub(crate) fn init_tracing(format: LogFormat) {
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

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Read {
        what: path.display().to_string(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| CliError::Document {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn write_private(path: &Path, value: &impl Serialize) -> Result<(), CliError> {
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
