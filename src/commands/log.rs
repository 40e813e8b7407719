//! `log import`: a data directory's file log moved into cluster mode's database
//! (the work is `server::import_log`'s).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use wasm_hypervisor_server::config::Overrides;
use wasm_hypervisor_server::server;

use super::{init_tracing, load_config, runtime};

#[derive(Debug, Args)]
pub struct ImportArgs {
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

pub fn import_log(args: ImportArgs) -> ExitCode {
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
