//! The Wasmtime sandbox: one engine, linkers and module cache for the process, a
//! fresh store per execution, and the policy that bounds a guest.
//!
//! A guest is a [`RunTarget`]: a core module ([`core`]: WASI preview1, `_start`)
//! or a component ([`component`]: WASI preview2, `wasi:cli/run`), told apart by
//! the binary's header. Either runs as a command with the request's args, env and
//! stdin and its stdout/stderr captured, or has one export called with
//! WAVE-encoded arguments ([`invoke`]). The guest gets no directory of the host
//! (its files are the request's mounts, in memory: [`fs`]), no sockets, nothing
//! of the host's environment ([`wasi`]), and these limits,
//! every one set explicitly because Wasmtime's defaults are permissive:
//!
//! | limit | mechanism | status when hit |
//! | --- | --- | --- |
//! | fuel | `Config::consume_fuel`, `Store::set_fuel` | `fuel_exhausted` |
//! | linear memories and tables, together | [`limits::GuestLimiter`]: one `memory_bytes` budget over every memory and table (8 bytes an element), initial sizes included | `memory_limit` |
//! | table elements | [`limits::GuestLimiter`], [`engine::MAX_TABLE_ELEMENTS`] (also the pool's table size) | `memory_limit` |
//! | bytes passed guest to host in one call | `Store::set_hostcall_fuel`: `max_output_bytes`, at least [`limits::MIN_HOSTCALL_FUEL`] | `trap` |
//! | invoke return values | WAVE-encoded within `max_output_bytes`, stopping as soon as they pass it | `trap` |
//! | compilation | [`shape`] check, then a [`compiler`] worker process under `RLIMIT_CPU`/`RLIMIT_AS` and a wall-clock kill | `invalid_module` |
//! | wall clock | [`deadline`]: epoch deadline callback, and `tokio::time::timeout` around the whole run | `timeout` |
//! | wasm stack | `Config::max_wasm_stack`, [`engine::MAX_WASM_STACK`] | `trap` (stack overflow) |
//! | memories and tables of a core module | [`engine::MAX_MEMORIES`], [`engine::MAX_TABLES`], checked before it is instantiated (the pool's per-module limits too) | `invalid_module` |
//! | core instances, memories and tables of an execution | [`engine::MAX_INSTANCES`], [`engine::MAX_STORE_MEMORIES`], [`engine::MAX_STORE_TABLES`]: `GuestLimiter`'s counts and the pool's per-component limits; Wasmtime refuses the instantiation past them | `trap` |
//! | output | [`output::CappedOutput`] keeps `max_output_bytes`, flags the rest | never an error |
//! | files | [`fs::FilesBudget`]: `files_bytes` of regular files and `max_mount_entries` files and directories in all mounts; 1,024 preview1 descriptors | initial contents: `invalid_request`; during the run the guest gets ENOSPC / EMFILE |
//! | writable mounts' archives (`mounts_out`) | [`fs::MountsOut`]: at most `files_bytes` + 1,024 bytes per entry and per mount in all, every member's length computed before any is written | never an error: cut at a whole entry, `mounts_out_truncated` |
//!
//! The timeout covers instantiation too, so a module's start function runs under the
//! same fuel, memory and time limits as the rest.
//!
//! # Layout
//!
//! - [`engine`]: the Wasmtime `Config` and `Engine`, the pooling allocator, the
//!   fixed limits.
//! - [`limits`]: a run's limits, the memory-and-table budget, hostcall fuel.
//! - [`deadline`]: the epoch ticker and the per-store deadline.
//! - [`target`]: [`RunTarget`] and the run of its kind, a binary's kind, loading
//!   compiled code (the only unsafe code), the WASI linkers.
//! - [`run`]: a fresh store per run, how a run ended ([`RunError`]), its report.
//! - [`core`], [`component`]: what a run is for each kind of guest.
//! - [`invoke`]: parsing a call, why it does not fit, rendering return values.
//! - [`wasi`]: what the guest is given, and its WASI context.
//! - [`output`]: the capped stdout and stderr pipes.
//! - [`fs`]: the guest's file system in memory (mounts, archives in and out,
//!   the preview1 front end).
//! - [`shape`], [`compiler`], [`cache`]: before a guest runs: the shape check,
//!   compilation in worker processes, the compiled-module cache.
//!
//! Each builds only on those listed before it: `engine`, `limits`, `deadline`,
//! `output`, `wasi`, `invoke`, `shape`, `fs`; then `run`; then `core` and `component`;
//! then `target`; then `compiler`, `cache` and the `Sandbox` here.
//!
//! Architecture invariant: this module never sees ciphertext, keys or HTTP, and
//! nothing it logs contains guest bytes, arguments or output.

pub mod cache;
pub mod compiler;
pub(crate) mod component;
pub(crate) mod core;
pub(crate) mod deadline;
pub(crate) mod engine;
pub mod fs;
pub(crate) mod invoke;
pub(crate) mod limits;
pub(crate) mod output;
pub(crate) mod run;
pub(crate) mod shape;
pub(crate) mod target;
pub(crate) mod wasi;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use wasmtime::Engine;

use self::cache::ModuleCache;
use self::compiler::{CompileError, Compiler, CompilerSettings};
use self::deadline::EpochTicker;
use self::engine::Flavor;
use self::target::{Linkers, TargetKind};

pub use self::fs::{MountError, MountImage, MountSpec};
pub use self::invoke::parse_call;
pub use self::limits::GuestLimits;
pub use self::run::{Entry, GuestOutcome, RunError, RunReport};
pub use self::target::RunTarget;
pub use self::wasi::GuestInput;

/// The sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Wasmtime refused the engine configuration or a WASI linker.
    #[error("cannot set up the Wasmtime engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The guest runtime's threads could not be started.
    #[error("cannot set up the Wasmtime engine: cannot start the guest runtime: {0}")]
    GuestRuntime(std::io::Error),
    /// The epoch ticker's thread could not be started.
    #[error("cannot set up the Wasmtime engine: cannot start the epoch ticker: {0}")]
    EpochTicker(std::io::Error),
}

/// How the sandbox is sized, from the configuration.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Guests running at once (`execution.max_concurrent`): sizes the instance pool.
    pub max_concurrent: usize,
    /// Bytes of compiled code the module cache keeps (`execution.module_cache_bytes`).
    pub module_cache_bytes: usize,
    /// Threads of the guest runtime.
    pub guest_threads: usize,
    /// How compilations are bounded.
    pub compiler: CompilerSettings,
}

/// A cache lookup: the target (or why it does not compile) and whether it was
/// compiled for this request.
pub type Preparation = cache::Lookup<RunTarget>;

/// An engine and its WASI linkers.
struct Engined {
    engine: Engine,
    linkers: Arc<Linkers>,
}

impl Engined {
    fn new(max_concurrent: usize, flavor: Flavor) -> Result<Engined, SandboxError> {
        let engine = engine::server(max_concurrent, flavor).map_err(SandboxError::Engine)?;
        let linkers = Linkers::new(&engine).map_err(SandboxError::Engine)?;
        Ok(Engined {
            engine,
            linkers: Arc::new(linkers),
        })
    }
}

/// The cache key of a module compiled for `flavor`: its SHA-256 for the normal
/// engine (as before), and a hash of it for the deterministic one, whose code
/// differs.
fn cache_key(flavor: Flavor, hash: &[u8; 32]) -> [u8; 32] {
    match flavor {
        Flavor::Normal => *hash,
        Flavor::Deterministic => {
            wasm_hypervisor_protocol::digest::sha256_parts(&[b"deterministic\0", hash])
        }
    }
}

/// The engines (the normal one and the deterministic one of protocol v1.2 §R),
/// their WASI linkers, the module cache, the guest runtime and the epoch
/// ticker, built once at start.
pub struct Sandbox {
    normal: Engined,
    deterministic: Engined,
    /// Both engines' targets, the deterministic ones under [`cache_key`].
    cache: ModuleCache<RunTarget>,
    compiler: Compiler,
    /// Guests run on their own runtime, not the one serving HTTP (see
    /// [`Sandbox::run`]). An `Option` only so that `Drop` can take it.
    guests: Option<tokio::runtime::Runtime>,
    _ticker: EpochTicker,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks stop, which is not allowed
        // inside another runtime; nothing is left to wait for once the sandbox is
        // dropped, so let its threads wind down in the background.
        if let Some(runtime) = self.guests.take() {
            runtime.shutdown_background();
        }
    }
}

impl Sandbox {
    pub fn new(settings: SandboxSettings) -> Result<Sandbox, SandboxError> {
        let normal = Engined::new(settings.max_concurrent, Flavor::Normal)?;
        let deterministic = Engined::new(settings.max_concurrent, Flavor::Deterministic)?;
        // I/O too: executions run here from the opened request to the logged
        // result (see [`Sandbox::runtime`]), and a compilation talks to its worker
        // process.
        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.guest_threads.max(1))
            .thread_name("guest")
            .enable_all()
            .build()
            .map_err(SandboxError::GuestRuntime)?;
        let ticker = EpochTicker::start(vec![normal.engine.clone(), deterministic.engine.clone()])
            .map_err(SandboxError::EpochTicker)?;
        Ok(Sandbox {
            normal,
            deterministic,
            cache: ModuleCache::new(settings.module_cache_bytes),
            compiler: Compiler::new(settings.compiler),
            guests: Some(guests),
            _ticker: ticker,
        })
    }

    /// "wasmtime X.Y.Z", the `engine` field of results.
    pub fn engine_name() -> String {
        engine::name()
    }

    /// The `engine_sha256` of deterministic results (protocol v1.2 §R).
    pub fn deterministic_engine_sha256() -> [u8; 32] {
        engine::deterministic_sha256()
    }

    fn engined(&self, flavor: Flavor) -> &Engined {
        match flavor {
            Flavor::Normal => &self.normal,
            Flavor::Deterministic => &self.deterministic,
        }
    }

    /// The guest runtime, where executions run whole: opening the request, the
    /// guest, sealing, signing and the log append, so that an execution crosses
    /// threads only twice (from the HTTP runtime and back), and the HTTP runtime
    /// that answers `/health` runs at most one execution at a time, when the
    /// server is otherwise idle, and only with a worker left free
    /// (`Executor::spawn`).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.guests.as_ref().expect("present until drop").handle()
    }

    /// The module cache's hit and miss counts.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.cache.hits(), self.cache.misses())
    }

    /// The target (or its cached refusal) for the module whose SHA-256 is `hash`,
    /// compiled for the normal engine, if the cache has it: [`Sandbox::lookup_for`]
    /// of [`Flavor::Normal`].
    pub fn lookup(&self, hash: &[u8; 32]) -> Option<Result<Arc<RunTarget>, CompileError>> {
        self.lookup_for(Flavor::Normal, hash)
    }

    /// The target (or its cached refusal) for the module whose SHA-256 is `hash`,
    /// compiled for `flavor`, if the cache has it. Costs a map lookup; never
    /// compiles.
    pub fn lookup_for(
        &self,
        flavor: Flavor,
        hash: &[u8; 32],
    ) -> Option<Result<Arc<RunTarget>, CompileError>> {
        self.cache.get(&cache_key(flavor, hash))
    }

    /// Compilations running now.
    pub fn compilations_running(&self) -> usize {
        self.compiler.running()
    }

    /// The compiled and linked target for `bytes` on the normal engine:
    /// [`Sandbox::prepare_for`] of [`Flavor::Normal`].
    pub async fn prepare(&self, hash: [u8; 32], bytes: &[u8]) -> Preparation {
        self.prepare_for(Flavor::Normal, hash, bytes).await
    }

    /// The compiled and linked target for `bytes` on the engine of `flavor`,
    /// compiled now in a bounded worker process (once, however many requests ask
    /// at the same time) unless the cache has it. `hash` is the SHA-256 of
    /// `bytes`.
    pub async fn prepare_for(&self, flavor: Flavor, hash: [u8; 32], bytes: &[u8]) -> Preparation {
        self.cache
            .get_or_compile(cache_key(flavor, &hash), || async move {
                let charge = bytes.len();
                let Some(kind) = TargetKind::of(bytes) else {
                    return (Err(CompileError::NotWasm), charge);
                };
                let artifact = match self.compiler.compile(kind, flavor, bytes).await {
                    Ok(artifact) => artifact,
                    Err(error) => return (Err(error), charge),
                };
                // Loading maps the artifact and links it: quick, but not async.
                let engine = self.engined(flavor).engine.clone();
                let linkers = self.engined(flavor).linkers.clone();
                let loaded = tokio::task::spawn_blocking(move || {
                    target::load(&engine, &linkers, kind, &artifact.0)
                })
                .await;
                match loaded {
                    Ok(Ok((target, size))) => (Ok(target), size.max(charge)),
                    Ok(Err(error)) => (Err(CompileError::Load(error)), charge),
                    Err(_) => (Err(CompileError::Failed), charge),
                }
            })
            .await
    }

    /// Runs a target to completion or to a limit, on the caller's task.
    ///
    /// Fairness: guests run on the sandbox's own multi-thread runtime (all but
    /// the one an idle server runs where its request arrived, see
    /// `Executor::spawn`), and yield at every epoch tick (10 ms). The HTTP side
    /// has its own runtime, so however many guests are computing, the operating
    /// system's scheduler shares the CPU between the two sets of threads and
    /// `/health` stays responsive; among guests,
    /// the per-tick yield gives each a turn, so a long CPU-bound guest cannot starve
    /// short ones. The alternative, one blocking thread per guest, would need up to
    /// `max_concurrent` OS threads and could not be cancelled in a host call.
    ///
    /// `mounts` are the guest's file system, in request order (see [`fs`]); the
    /// report's `mounts_out` has one archive per writable one. A deterministic
    /// `input` runs on the deterministic engine, where [`Sandbox::prepare_for`]
    /// of its flavor put `target`.
    pub async fn run(
        &self,
        target: Arc<RunTarget>,
        entry: Entry,
        input: GuestInput,
        mounts: Vec<MountSpec>,
        limits: GuestLimits,
    ) -> RunReport {
        let engine = &self.engined(input.flavor()).engine;
        // In place, on the caller's task (an execution's, on the guest runtime
        // or, when the server is idle, on the thread that received it: see
        // `Executor::spawn`): a task of its own would cost a hand-off.
        let run = target.run(engine, entry, input, mounts, limits);
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(report) => report,
            Err(_panic) => {
                // A panic in Wasmtime or a host function: a bug, contained to this
                // execution, which still ends (and is logged) with a status.
                tracing::error!("a guest run panicked");
                RunReport::host_failure()
            }
        }
    }
}
