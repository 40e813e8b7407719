//! `log import`: a data directory's file log moved into cluster mode's database
//! (the work is `server::import_log`'s). `log monitor`: the log followed from its
//! checkpoint and tiles against a tlog-policy, once per run (the work is the client
//! crate's `monitor`); its exit codes name the failure:
//!
//! | outcome | exit code |
//! | --- | --- |
//! | the checkpoint extends the one seen before; state updated | 0 |
//! | the monitor's own inputs: the policy file, the state directory (unreadable, unwritable, another log's) | 2 |
//! | the log could not be read (connection, HTTP error, a tile not served) | 3 |
//! | bad signature: no log key of the policy signed the checkpoint, or a known signature does not verify | 4 |
//! | missing quorum: the witnesses' cosignatures do not make the policy's quorum | 5 |
//! | rollback: fewer entries than the checkpoint seen before | 6 |
//! | fork: another root at the same size, or no consistency proof holds | 7 |
//! | a tile or an entry does not hash to what the checkpoint vouches for | 8 |

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use wasm_hypervisor_client::Client;
use wasm_hypervisor_client::monitor::{MonitorError, StateDir};
use wasm_hypervisor_protocol::policy::Policy;
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_server::config::Overrides;
use wasm_hypervisor_server::server;

use super::{init_tracing, load_config, runtime};

/// `log monitor`'s exit codes (the module doc's table).
pub(crate) mod exit {
    /// The policy file or the state directory.
    pub(crate) const INPUTS: u8 = 2;
    /// The log could not be read.
    pub(crate) const UNREACHABLE: u8 = 3;
    pub(crate) const BAD_SIGNATURE: u8 = 4;
    pub(crate) const MISSING_QUORUM: u8 = 5;
    pub(crate) const ROLLBACK: u8 = 6;
    pub(crate) const FORK: u8 = 7;
    /// A tile or an entry that does not hash.
    pub(crate) const BAD_TILE: u8 = 8;
}

/// How long one request to the log may take: a monitor run by a timer must end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// The log's server (or a mirror serving its /tlog/ files), e.g.
    /// https://log.example; its checkpoint is read from <URL>/tlog/checkpoint.
    #[arg(value_name = "URL")]
    server: String,
    /// The C2SP tlog-policy file the checkpoint must pass (`log`, `witness`, `group`
    /// and `quorum` lines; `quorum none` for a log without witnesses).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The directory holding the last checkpoint seen (made owner-only if absent);
    /// one per log followed.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
}

/// One run of the monitor: a one-line summary on stdout and exit 0, or the failure
/// named on stderr and its exit code.
pub(crate) fn monitor(args: MonitorArgs) -> ExitCode {
    let policy = match std::fs::read(&args.policy) {
        Ok(bytes) => Policy::parse(Provider::default(), &bytes)
            .map_err(|error| format!("{}: {error}", args.policy.display())),
        Err(error) => Err(format!("cannot read {}: {error}", args.policy.display())),
    };
    let outcome = policy
        .map_err(|message| (exit::INPUTS, message))
        .and_then(|policy| {
            let client = Client::with_timeout(&args.server, None, REQUEST_TIMEOUT)
                .map_err(|error| (exit::INPUTS, error.to_string()))?;
            let state = StateDir::open(&args.state).map_err(failure)?;
            runtime()
                .block_on(client.monitor(&policy, &state))
                .map_err(failure)
        });
    match outcome {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("wasm-hypervisor: log monitor: {message}");
            ExitCode::from(code)
        }
    }
}

/// The exit code and the message of a failed run.
fn failure(error: MonitorError) -> (u8, String) {
    let code = match &error {
        MonitorError::BadSignature(_) => exit::BAD_SIGNATURE,
        MonitorError::MissingQuorum => exit::MISSING_QUORUM,
        MonitorError::Rollback { .. } => exit::ROLLBACK,
        MonitorError::ForkSameSize { .. } | MonitorError::ForkInconsistent { .. } => exit::FORK,
        MonitorError::Tile(_) | MonitorError::Entry { .. } | MonitorError::TileNotRead { .. } => {
            exit::BAD_TILE
        }
        MonitorError::Fetch(_) => exit::UNREACHABLE,
        MonitorError::OtherLog { .. }
        | MonitorError::State { .. }
        | MonitorError::StateCorrupt { .. } => exit::INPUTS,
    };
    (code, error.to_string())
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
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

pub(crate) fn import_log(args: ImportArgs) -> ExitCode {
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
