//! The `wasm-hypervisor` binary: parse the command line and hand over to [`cli`],
//! which dispatches to one of [`commands`].

use std::process::ExitCode;

mod cli;
mod commands;
mod progress;

/// mimalloc instead of glibc's malloc: every request allocates and frees many small
/// buffers on two runtimes' threads, and glibc's allocator was about a tenth of the
/// server's CPU per execution under load (BENCHMARKS.md). It is C: a build without
/// the `mimalloc` feature uses the system's allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}
