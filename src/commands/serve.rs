//! `serve`: the HTTP service, until a shutdown signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use wasm_hypervisor_server::config::Overrides;
use wasm_hypervisor_server::server::{ServerError, Service, shutdown_signal};

use super::{init_tracing, load_config, runtime};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
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

pub(crate) fn serve(args: ServeArgs) -> ExitCode {
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
        let shutdown = shutdown_signal().map_err(ServerError::Serve)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(ServerError::Serve)?;
        tracing::info!(
            listen = %listener.local_addr().map_err(ServerError::Serve)?,
            data_dir = %config.data_dir.as_path().display(),
            "wasm-hypervisor serving"
        );
        service.serve(listener, shutdown).await
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
