//! `token`: a new random bearer token and its SHA-256 digest.

use std::process::ExitCode;

use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_server::access;

/// Prints a fresh token and its digest. The token goes to the client, the digest
/// to the server's configuration; the server never sees the token at rest.
pub(crate) fn token() -> ExitCode {
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
