//! The `wasm-hypervisor` binary: parse the command line and hand over to [`cli`].

use std::process::ExitCode;

use wasm_hypervisor::cli;

fn main() -> ExitCode {
    cli::main()
}
