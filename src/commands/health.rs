//! `health`: exit 0 if a server's `/health` answers 200 within 5 seconds, for
//! container health checks; by default the server probed is the one the
//! configuration says `serve` listens on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use wasm_hypervisor_client::Client;
use wasm_hypervisor_server::config::{Config, Overrides};

use super::runtime;

#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
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

/// How long `health` waits for an answer: it is a container's health check.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) fn health(args: HealthArgs) -> ExitCode {
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
