//! The guest's WASI world, the same for both kinds of guest: what the request
//! gives it ([`GuestInput`]: argv, environment, stdin, checked as the request is
//! read, in the protocol's `request`) and
//! the WASI context built from that, with stdout and stderr into capped pipes and
//! nothing of the host: no environment, no preopened directory of the host (a
//! guest's files are its request's mounts, in memory: [`super::fs`]), no network.

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use zeroize::{Zeroize, Zeroizing};

use super::output::CappedOutput;

/// argv[0] as the guest sees it (protocol §2).
pub const ARGV0: &str = "module.wasm";

/// What the guest is given.
#[derive(Default)]
pub struct GuestInput {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Shared, not copied: for a CBOR request, a view of the request plaintext,
    /// which its owner wipes once the guest's store (holding this view) is gone.
    pub stdin: bytes::Bytes,
}

impl Drop for GuestInput {
    fn drop(&mut self) {
        // Plaintext-derived: cleared before the allocator sees it again.
        self.args.zeroize();
        for (name, value) in &mut self.env {
            name.zeroize();
            value.zeroize();
        }
    }
}

impl std::fmt::Debug for GuestInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInput")
            .field("args", &self.args.len())
            .field("env", &self.env.len())
            .field("stdin_bytes", &self.stdin.len())
            .finish()
    }
}

/// The WASI context both kinds of guest get: argv (with [`ARGV0`]), env and stdin
/// from the request, stdout and stderr into capped pipes, and no network. Nothing
/// of the host's environment, no preopened directory.
///
/// Our copies of argv and env are zeroized when `input` drops; the WASI context's
/// own copies are freed by Wasmtime without clearing, and so is a JSON request's
/// decoded stdin, while a CBOR request's stdin is a view of the plaintext, wiped
/// with it (see PROTOCOL.md, "What is zeroized").
pub fn context(
    mut input: GuestInput,
    stdout: &CappedOutput,
    stderr: &CappedOutput,
) -> WasiCtxBuilder {
    let mut argv = Zeroizing::new(Vec::with_capacity(input.args.len() + 1));
    argv.push(ARGV0.to_owned());
    argv.append(&mut input.args);
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&argv)
        .envs(&input.env)
        .stdin(MemoryInputPipe::new(std::mem::take(&mut input.stdin)))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
}
