//! The Wasmtime sandbox: one engine and linker for the process, a fresh store per
//! execution, and the policy that bounds a guest.
//!
//! A core module runs as a WASI preview1 command: `_start` with the request's args,
//! env and stdin, stdout/stderr captured in memory. The guest gets no preopened
//! directories, no sockets, nothing of the host's environment, and these limits,
//! every one set explicitly because Wasmtime's defaults are permissive:
//!
//! | limit | mechanism | status when hit |
//! | --- | --- | --- |
//! | fuel | `Config::consume_fuel`, `Store::set_fuel` | `fuel_exhausted` |
//! | linear memory | [`GuestLimiter::memory_growing`] errs past the limit, also for the initial size | `memory_limit` |
//! | table elements | [`GuestLimiter::table_growing`], [`MAX_TABLE_ELEMENTS`] | `memory_limit` |
//! | wall clock | epoch deadline callback + `tokio::time::timeout` around the whole run | `timeout` |
//! | wasm stack | `Config::max_wasm_stack`, [`MAX_WASM_STACK`] | `trap` (stack overflow) |
//! | instances, tables, memories | [`GuestLimiter`] counts | `memory_limit` / `invalid_module` |
//! | output | [`CappedOutput`] keeps `max_output_bytes`, flags the rest | never an error |
//!
//! The timeout covers instantiation too, so a module's start function runs under the
//! same fuel, memory and time limits as `_start`.
//!
//! Architecture invariant: this module never sees ciphertext, keys or HTTP, and
//! nothing it logs contains guest bytes, arguments or output.

pub mod cache;
pub mod output;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use self::cache::ModuleCache;
use self::output::CappedOutput;

/// How often the engine's epoch advances. It is the granularity of the wall-clock
/// timeout and of the points where a running guest yields to other tasks: 10 ms
/// keeps both tight while costing one atomic increment per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Wasm stack available to a guest. Deep enough for ordinary recursive programs;
/// unbounded recursion ends as a `trap` ("call stack exhausted").
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Native stack of the fiber a guest runs on: the wasm stack plus room for host
/// calls (WASI) made from the deepest wasm frame.
pub const ASYNC_STACK: usize = MAX_WASM_STACK + (1 << 20);

/// Elements per table. A C program's function table has a few hundred; a million
/// pointer-sized elements is 8 MiB.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Instances per store: a core module is one; the rest is headroom for components.
pub const MAX_INSTANCES: usize = 16;
/// Tables per module (and store). Each pooled table slot reserves
/// `MAX_TABLE_ELEMENTS` pointers of address space, so this stays small.
pub const MAX_TABLES: usize = 4;
/// Linear memories per module (and store), each bounded by the memory limit. Each
/// pooled memory slot reserves address space for the largest memory, so this stays
/// small; compilers emit one memory.
pub const MAX_MEMORIES: usize = 2;

/// Address space of each pooled memory slot: the whole 32-bit range.
const POOL_MEMORY_BYTES: usize = 4 << 30;

/// Bytes in a WebAssembly page.
const WASM_PAGE: u64 = 65_536;

/// Frames of wasm backtrace kept in a trap's error text.
pub const MAX_BACKTRACE_FRAMES: usize = 16;

/// argv[0] as the guest sees it (protocol §2).
pub const ARGV0: &str = "module.wasm";

/// The sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Wasmtime refused the engine configuration or the WASI linker.
    #[error("cannot set up the Wasmtime engine: {0}")]
    Engine(String),
}

/// Limits for one run, already capped by the server's maxima.
#[derive(Debug, Clone, Copy)]
pub struct GuestLimits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub max_output_bytes: usize,
}

/// What the guest is given.
#[derive(Default)]
pub struct GuestInput {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
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

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// `_start` returned (code 0) or the guest called `proc_exit(code)`.
    Exited(i32),
    /// A trap other than the ones below; the text says which.
    Trapped(String),
    OutOfFuel,
    TimedOut,
    /// A memory or table grew, or started, past its limit.
    MemoryLimit(String),
    /// The module is not a runnable command (bad binary, missing import, no `_start`).
    InvalidModule(String),
    /// The host failed (a panic in Wasmtime or a host function: a bug).
    HostFailure(String),
}

/// A finished run.
#[derive(Debug)]
pub struct RunReport {
    pub outcome: GuestOutcome,
    pub stdout: Bytes,
    pub stderr: Bytes,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub fuel_consumed: u64,
    pub wall_time: Duration,
}

/// How the sandbox is sized, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct SandboxSettings {
    /// Guests running at once (`execution.max_concurrent`): sizes the instance pool.
    pub max_concurrent: usize,
    /// Bytes of compiled code the module cache keeps (`execution.module_cache_bytes`).
    pub module_cache_bytes: usize,
    /// Threads of the guest runtime.
    pub guest_threads: usize,
}

/// A compiled module, linked against WASI once: what the cache holds.
pub struct Prepared {
    module: Module,
    /// The linked, ready-to-instantiate module, or why it cannot run as a command
    /// (a missing import, no `_start`, the wrong `_start` type).
    runnable: Result<InstancePre<GuestState>, String>,
}

/// A cache lookup: the prepared module (or why it does not compile) and whether it
/// was compiled for this request.
pub type Preparation = cache::Lookup<Prepared>;

/// The engine, the WASI linker, the module cache, the guest runtime and the epoch
/// ticker, built once at start.
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<GuestState>>,
    cache: ModuleCache<Prepared>,
    /// Guests run on their own runtime, not the one serving HTTP (see
    /// [`Sandbox::run_command`]). An `Option` only so that `Drop` can take it.
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
        let engine_error = |e: wasmtime::Error| SandboxError::Engine(format!("{e:#}"));
        let slots = u32::try_from(settings.max_concurrent.max(1)).unwrap_or(u32::MAX);
        // The pooling allocator reserves every instance, memory, table and fiber
        // stack up front, sized for `max_concurrent` guests at their largest; an
        // execution then takes a slot instead of mapping fresh memory, and
        // copy-on-write images make instantiation a few page-table updates.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(slots.saturating_mul(MAX_INSTANCES as u32))
            .total_memories(slots.saturating_mul(MAX_MEMORIES as u32))
            .total_tables(slots.saturating_mul(MAX_TABLES as u32))
            .total_stacks(slots)
            .total_component_instances(0)
            .total_gc_heaps(0)
            .max_memories_per_module(MAX_MEMORIES as u32)
            .max_tables_per_module(MAX_TABLES as u32)
            .table_elements(MAX_TABLE_ELEMENTS)
            // Slots are sized for the largest 32-bit memory (each reserves that much
            // address space anyway): the pool would otherwise refuse an oversized
            // module at compile time with a generic error. The configured limit is
            // enforced by `GuestLimiter` and `check_resources`, which say so.
            .max_memory_size(POOL_MEMORY_BYTES);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .async_stack_size(ASYNC_STACK)
            // Shared memories are not seen by the resource limiter, and GC heaps are
            // not bounded by it: both are off so that `memory_bytes` means what it says.
            .wasm_threads(false)
            .wasm_gc(false)
            .wasm_component_model(false)
            // Traps carry a short wasm backtrace into the (sealed) `error` text;
            // capped so a deep recursion cannot make the error itself huge.
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(MAX_BACKTRACE_FRAMES));
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker: Linker<GuestState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut GuestState| {
            &mut state.wasi
        })
        .map_err(engine_error)?;
        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.guest_threads.max(1))
            .thread_name("guest")
            .enable_time()
            .build()
            .map_err(|e| SandboxError::Engine(format!("cannot start the guest runtime: {e}")))?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
            cache: ModuleCache::new(settings.module_cache_bytes),
            guests: Some(guests),
            _ticker: ticker,
        })
    }

    /// "wasmtime X.Y.Z", the `engine` field of results.
    pub fn engine_name() -> String {
        format!("wasmtime {}", env!("WASMTIME_VERSION"))
    }

    /// The module cache's hit and miss counts.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.cache.hits(), self.cache.misses())
    }

    /// The compiled and linked module for `bytes`, from the cache or compiled now
    /// (once, however many requests ask at the same time). `hash` is the SHA-256 of
    /// `bytes`. The error text is for the client only.
    pub async fn prepare(&self, hash: [u8; 32], bytes: Arc<[u8]>) -> Preparation {
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        self.cache
            .get_or_compile(hash, || async move {
                let charge = bytes.len();
                match classify(&bytes) {
                    BinaryKind::CoreModule => {}
                    BinaryKind::Component => {
                        let error = "this module is a WebAssembly component; components are \
                                     not supported yet, only core modules";
                        return (Err(error.to_owned()), charge);
                    }
                    BinaryKind::Other => {
                        let error = "not a WebAssembly binary (bad magic number or version)";
                        return (Err(error.to_owned()), charge);
                    }
                }
                // Cranelift is CPU-bound: compile on a blocking thread, never on an
                // async worker.
                let compiled =
                    tokio::task::spawn_blocking(move || Module::from_binary(&engine, &bytes)).await;
                match compiled {
                    Ok(Ok(module)) => {
                        let image = module.image_range();
                        let size = (image.end as usize).saturating_sub(image.start as usize);
                        let runnable = link_command(&linker, &module);
                        (Ok(Prepared { module, runnable }), size.max(charge))
                    }
                    Ok(Err(error)) => (Err(format!("module does not compile: {error:#}")), charge),
                    Err(_) => (Err("the compiler failed unexpectedly".to_owned()), charge),
                }
            })
            .await
    }

    /// Runs a WASI preview1 command to completion or to a limit.
    ///
    /// Fairness: guests run on the sandbox's own multi-thread runtime, and yield to
    /// it at every epoch tick (10 ms). The HTTP side has its own runtime, so however
    /// many guests are computing, the operating system's scheduler shares the CPU
    /// between the two sets of threads and `/health` stays responsive; among guests,
    /// the per-tick yield gives each a turn, so a long CPU-bound guest cannot starve
    /// short ones. The alternative, one blocking thread per guest, would need up to
    /// `max_concurrent` OS threads and could not be cancelled in a host call.
    pub async fn run_command(
        &self,
        prepared: Arc<Prepared>,
        input: GuestInput,
        limits: GuestLimits,
    ) -> RunReport {
        let engine = self.engine.clone();
        let guests = self.guests.as_ref().expect("present until drop");
        match guests
            .spawn(run_command(engine, prepared, input, limits))
            .await
        {
            Ok(report) => report,
            Err(join_error) => {
                // A panic in Wasmtime or a host function: a bug, contained to this
                // execution, which still ends (and is logged) with a status.
                tracing::error!(error = %join_error, "a guest run panicked");
                RunReport {
                    outcome: GuestOutcome::HostFailure(
                        "the host failed while running the guest (a server bug; the \
                         server's log has the details)"
                            .to_owned(),
                    ),
                    stdout: Bytes::new(),
                    stderr: Bytes::new(),
                    stdout_truncated: false,
                    stderr_truncated: false,
                    fuel_consumed: 0,
                    wall_time: Duration::ZERO,
                }
            }
        }
    }
}

/// Links a module against WASI and checks that it is a command.
fn link_command(
    linker: &Linker<GuestState>,
    module: &Module,
) -> Result<InstancePre<GuestState>, String> {
    let pre = linker
        .instantiate_pre(module)
        .map_err(|error| format!("{error:#}"))?;
    match module.get_export("_start") {
        Some(ExternType::Func(func)) if func.params().len() == 0 && func.results().len() == 0 => {
            Ok(pre)
        }
        Some(_) => Err("`_start` is not a function of type [] -> []".to_owned()),
        None => Err("module does not export a `_start` function (not a WASI command)".to_owned()),
    }
}

/// Checks what a module needs before instantiating it, so that the pool's own
/// refusals never surface as generic errors.
fn check_resources(module: &Module, memory_bytes: u64) -> Result<(), GuestOutcome> {
    let needs = module.resources_required();
    if needs.num_memories as usize > MAX_MEMORIES {
        return Err(GuestOutcome::InvalidModule(format!(
            "the module defines {} memories; at most {MAX_MEMORIES} are allowed",
            needs.num_memories
        )));
    }
    if needs.num_tables as usize > MAX_TABLES {
        return Err(GuestOutcome::InvalidModule(format!(
            "the module defines {} tables; at most {MAX_TABLES} are allowed",
            needs.num_tables
        )));
    }
    let initial_memory = needs
        .max_initial_memory_size
        .unwrap_or(0)
        .saturating_mul(WASM_PAGE);
    if initial_memory > memory_bytes {
        return Err(GuestOutcome::MemoryLimit(
            LimitHit::Memory {
                desired: initial_memory,
                limit: memory_bytes,
            }
            .to_string(),
        ));
    }
    let initial_table = needs.max_initial_table_size.unwrap_or(0);
    if initial_table > MAX_TABLE_ELEMENTS as u64 {
        return Err(GuestOutcome::MemoryLimit(
            LimitHit::Table {
                desired: initial_table,
            }
            .to_string(),
        ));
    }
    Ok(())
}

/// One run, on the guest runtime.
async fn run_command(
    engine: Engine,
    prepared: Arc<Prepared>,
    input: GuestInput,
    limits: GuestLimits,
) -> RunReport {
    let stdout = CappedOutput::new(limits.max_output_bytes);
    let stderr = CappedOutput::new(limits.max_output_bytes);
    let mut builder = WasiCtxBuilder::new();
    let mut argv = Vec::with_capacity(input.args.len() + 1);
    argv.push(ARGV0.to_owned());
    argv.extend(input.args);
    builder
        .args(&argv)
        .envs(&input.env)
        .stdin(MemoryInputPipe::new(input.stdin))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let state = GuestState {
        wasi: builder.build_p1(),
        limiter: GuestLimiter::new(limits.memory_bytes),
    };
    let mut store = Store::new(&engine, state);
    store.limiter(|state| &mut state.limiter);
    let start = Instant::now();
    let report = |outcome, store: &Store<GuestState>| RunReport {
        outcome,
        stdout: stdout.contents(),
        stderr: stderr.contents(),
        stdout_truncated: stdout.truncated(),
        stderr_truncated: stderr.truncated(),
        fuel_consumed: limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0)),
        wall_time: start.elapsed(),
    };
    if let Err(e) = store.set_fuel(limits.fuel) {
        return report(
            GuestOutcome::HostFailure(format!("cannot set fuel: {e}")),
            &store,
        );
    }
    let pre = match &prepared.runnable {
        Ok(pre) => pre.clone(),
        Err(message) => return report(GuestOutcome::InvalidModule(message.clone()), &store),
    };
    if let Err(outcome) = check_resources(&prepared.module, limits.memory_bytes) {
        return report(outcome, &store);
    }

    // The deadline is enforced twice: the epoch callback stops a guest that is
    // computing, and the tokio timeout drops the run (and so cancels it) when the
    // guest is parked in an async host call such as a `poll_oneoff` sleep.
    let deadline = start + limits.timeout;
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Error::from(DeadlineReached))
        } else {
            // Yield at every tick so one guest cannot hold a worker thread.
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);

    let run = async {
        let instance = pre.instantiate_async(&mut store).await?;
        let start_fn = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start_fn.call_async(&mut store, ()).await
    };
    let result = tokio::time::timeout(limits.timeout, run).await;
    let outcome = match result {
        Err(_elapsed) => GuestOutcome::TimedOut,
        Ok(Ok(())) => GuestOutcome::Exited(0),
        Ok(Err(error)) => classify_error(error, store.data().limiter.hit.as_ref()),
    };
    report(outcome, &store)
}

/// What a binary's 8-byte header says it is.
#[derive(Debug, PartialEq, Eq)]
pub enum BinaryKind {
    CoreModule,
    Component,
    Other,
}

/// Tells a core module (`\0asm` version 1) from a component (`\0asm` version 0x0d,
/// layer 1) by the header alone.
pub fn classify(bytes: &[u8]) -> BinaryKind {
    match bytes.get(..8) {
        Some([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) => BinaryKind::CoreModule,
        Some([0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00]) => BinaryKind::Component,
        _ => BinaryKind::Other,
    }
}

fn classify_error(error: wasmtime::Error, limit_hit: Option<&LimitHit>) -> GuestOutcome {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return GuestOutcome::Exited(exit.0);
    }
    if let Some(hit) = limit_hit {
        return GuestOutcome::MemoryLimit(hit.to_string());
    }
    if error.downcast_ref::<DeadlineReached>().is_some() {
        return GuestOutcome::TimedOut;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => GuestOutcome::OutOfFuel,
        Some(Trap::Interrupt) => GuestOutcome::TimedOut,
        Some(Trap::StackOverflow) => GuestOutcome::Trapped(format!(
            "stack overflow: the guest used more than {} KiB of wasm stack: {error:#}",
            MAX_WASM_STACK >> 10
        )),
        _ => GuestOutcome::Trapped(format!("{error:#}")),
    }
}

/// Raised from the epoch callback when the wall-clock deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("wall-clock timeout")]
struct DeadlineReached;

/// Per-store data: the WASI context and the limiter.
pub struct GuestState {
    wasi: WasiP1Ctx,
    limiter: GuestLimiter,
}

/// Which limit a guest ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LimitHit {
    Memory { desired: u64, limit: u64 },
    Table { desired: u64 },
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Memory { desired, limit } => write!(
                f,
                "linear memory of {desired} bytes requested; the limit is {limit} bytes"
            ),
            LimitHit::Table { desired } => write!(
                f,
                "table of {desired} elements requested; the limit is {MAX_TABLE_ELEMENTS}"
            ),
        }
    }
}

/// Enforces memory and table limits by failing (trapping) the growth, and
/// remembers which limit was hit so the run ends as `memory_limit` rather than a
/// generic trap.
struct GuestLimiter {
    memory_bytes: u64,
    hit: Option<LimitHit>,
}

impl GuestLimiter {
    fn new(memory_bytes: u64) -> GuestLimiter {
        GuestLimiter {
            memory_bytes,
            hit: None,
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            let hit = LimitHit::Memory {
                desired: desired as u64,
                limit: self.memory_bytes,
            };
            let message = hit.to_string();
            self.hit = Some(hit);
            return Err(wasmtime::Error::msg(message));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            let hit = LimitHit::Table {
                desired: desired as u64,
            };
            let message = hit.to_string();
            self.hit = Some(hit);
            return Err(wasmtime::Error::msg(message));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread; stops when
/// dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_told_apart_by_their_header() {
        assert_eq!(classify(b"\0asm\x01\0\0\0rest"), BinaryKind::CoreModule);
        assert_eq!(classify(b"\0asm\x0d\0\x01\0"), BinaryKind::Component);
        assert_eq!(classify(b"\0asm"), BinaryKind::Other);
        assert_eq!(classify(b"(module)"), BinaryKind::Other);
    }
}
