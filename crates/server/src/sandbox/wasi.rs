//! The guest's WASI world, the same for both kinds of guest: what the request
//! gives it ([`GuestInput`]: argv, environment, stdin, checked as the request is
//! read, in the protocol's `request`) and
//! the WASI context built from that, with stdout and stderr into capped pipes and
//! nothing of the host: no environment, no preopened directory of the host (a
//! guest's files are its request's mounts, in memory: [`super::fs`]), no network.
//! A deterministic execution's context has, instead of the host's clocks and
//! random source, clocks that advance only as the guest reads them and random
//! bytes from its request's seed ([`DeterministicClock`], [`SeededRandom`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasm_hypervisor_protocol::reproducible::{SeedStream, StreamLabel};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};
use zeroize::{Zeroize, Zeroizing};

use super::engine::{DETERMINISTIC_CLOCK_STEP_NS, DETERMINISTIC_EPOCH_SECS};
use super::output::CappedOutput;

/// argv[0] as the guest sees it (protocol §2).
pub(crate) const ARGV0: &str = "module.wasm";

/// What the guest is given.
#[derive(Default)]
pub struct GuestInput {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Shared, not copied: for a CBOR request, a view of the request plaintext,
    /// which its owner wipes once the guest's store (holding this view) is gone.
    pub stdin: bytes::Bytes,
    /// A deterministic execution (protocol v1.2 §R): the seed of its random
    /// bytes.
    pub deterministic: Option<[u8; 32]>,
}

impl Drop for GuestInput {
    fn drop(&mut self) {
        // Plaintext-derived: cleared before the allocator sees it again.
        self.args.zeroize();
        for (name, value) in &mut self.env {
            name.zeroize();
            value.zeroize();
        }
        self.deterministic.zeroize();
    }
}

impl GuestInput {
    /// The engine this input runs on: the deterministic one when it has a seed.
    pub fn flavor(&self) -> super::engine::Flavor {
        match self.deterministic {
            Some(_) => super::engine::Flavor::Deterministic,
            None => super::engine::Flavor::Normal,
        }
    }
}

impl std::fmt::Debug for GuestInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInput")
            .field("args", &self.args.len())
            .field("env", &self.env.len())
            .field("stdin_bytes", &self.stdin.len())
            .field("deterministic", &self.deterministic.is_some())
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
pub(crate) fn context(
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
    if let Some(seed) = input.deterministic {
        let reads = Arc::new(AtomicU64::new(0));
        let mut insecure_seed = [0u8; 16];
        SeedStream::new(seed, StreamLabel::InsecureSeed).fill(&mut insecure_seed);
        builder
            .wall_clock(DeterministicClock(reads.clone()))
            .monotonic_clock(DeterministicClock(reads))
            .secure_random(SeededRandom(SeedStream::new(seed, StreamLabel::Secure)))
            .insecure_random(SeededRandom(SeedStream::new(seed, StreamLabel::Insecure)))
            .insecure_random_seed(u128::from_le_bytes(insecure_seed));
    }
    builder
}

/// A deterministic guest's clocks: both advance by
/// [`DETERMINISTIC_CLOCK_STEP_NS`] at each read of either (the count is shared),
/// the wall clock from [`DETERMINISTIC_EPOCH_SECS`], the monotonic one from zero.
/// Wasmtime's clock hooks cannot see the store's fuel, so the guest's reads are
/// the measure of its work.
struct DeterministicClock(Arc<AtomicU64>);

impl DeterministicClock {
    /// Nanoseconds since the clock's start, after this read.
    fn tick(&self) -> u64 {
        let reads = self.0.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        reads.saturating_mul(DETERMINISTIC_CLOCK_STEP_NS)
    }
}

impl HostWallClock for DeterministicClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(DETERMINISTIC_CLOCK_STEP_NS)
    }

    fn now(&self) -> Duration {
        Duration::from_secs(DETERMINISTIC_EPOCH_SECS) + Duration::from_nanos(self.tick())
    }
}

impl HostMonotonicClock for DeterministicClock {
    fn resolution(&self) -> u64 {
        DETERMINISTIC_CLOCK_STEP_NS
    }

    fn now(&self) -> u64 {
        self.tick()
    }
}

/// A deterministic guest's random bytes: the request seed's stream (protocol
/// v1.2 §R, [`SeedStream`]).
struct SeededRandom(SeedStream);

impl rand::TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.0.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.0.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}
