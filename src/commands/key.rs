//! `key new`: a new signing key file, the one a cluster's replicas share.

use std::path::Path;
use std::process::ExitCode;

use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_server::keys::ServerKey;

/// Writes a new signing key file, never over an existing one, and prints its key id.
pub(crate) fn key_new(file: &Path) -> ExitCode {
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
