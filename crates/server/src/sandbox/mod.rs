//! The Wasmtime sandbox: one engine, linkers and module cache for the process, a
//! fresh store per execution, and the policy that bounds a guest.
//!
//! A guest is a core module ([`core`]: WASI preview1, `_start`) or a component
//! ([`component`]: WASI preview2, `wasi:cli/run`), told apart by the binary's
//! header. Either runs as a command with the request's args, env and stdin and its
//! stdout/stderr captured, or has one export called with WAVE-encoded arguments
//! (`invoke`). The guest gets no preopened directories, no sockets, nothing of the
//! host's environment, and these limits, every one set explicitly because
//! Wasmtime's defaults are permissive:
//!
//! | limit | mechanism | status when hit |
//! | --- | --- | --- |
//! | fuel | `Config::consume_fuel`, `Store::set_fuel` | `fuel_exhausted` |
//! | linear memories and tables, together | [`GuestLimiter`]: one `memory_bytes` budget over every memory and table (8 bytes an element), initial sizes included | `memory_limit` |
//! | table elements | [`GuestLimiter::table_growing`], [`MAX_TABLE_ELEMENTS`] | `memory_limit` |
//! | bytes passed guest to host in one call | `Store::set_hostcall_fuel`: `max_output_bytes`, at least [`MIN_HOSTCALL_FUEL`] | `trap` |
//! | invoke return values | WAVE-encoded within `max_output_bytes`, stopping as soon as they pass it | `trap` |
//! | compilation | [`shape`] check, then a [`compiler`] worker process under `RLIMIT_CPU`/`RLIMIT_AS` | `invalid_module` |
//! | wall clock | epoch deadline callback + `tokio::time::timeout` around the whole run | `timeout` |
//! | wasm stack | `Config::max_wasm_stack`, [`MAX_WASM_STACK`] | `trap` (stack overflow) |
//! | instances, tables, memories | pool limits and [`GuestLimiter`] counts | `invalid_module` / `memory_limit` |
//! | output | [`output::CappedOutput`] keeps `max_output_bytes`, flags the rest | never an error |
//!
//! The timeout covers instantiation too, so a module's start function runs under the
//! same fuel, memory and time limits as the rest.
//!
//! Architecture invariant: this module never sees ciphertext, keys or HTTP, and
//! nothing it logs contains guest bytes, arguments or output.

pub mod cache;
pub mod compiler;
pub mod component;
pub mod core;
pub mod output;
pub mod shape;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::I32Exit;

use self::cache::ModuleCache;
use self::compiler::{CompileError, Compiler, CompilerSettings};
use self::output::CappedOutput;

/// Bytes of each pooled linear memory reset with `memset` rather than `madvise`
/// (see `Sandbox::new`): two wasm pages, what small WASI programs use.
const KEEP_RESIDENT_MEMORY_BYTES: usize = 128 << 10;
/// The same for tables.
const KEEP_RESIDENT_TABLE_BYTES: usize = 16 << 10;

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

/// Core instances per store: a core module is one; a component made from a module
/// and the WASI adapter has a handful.
pub const MAX_INSTANCES: usize = 16;
/// Tables per core module. Each pooled table slot reserves `MAX_TABLE_ELEMENTS`
/// pointers of address space, so this stays small.
pub const MAX_TABLES: usize = 4;
/// Linear memories per core module, each bounded by the memory limit. Each pooled
/// memory slot reserves 4 GiB of address space, so this stays small; compilers emit
/// one memory.
pub const MAX_MEMORIES: usize = 2;
/// Tables in one execution (all core instances of a component together).
pub const MAX_STORE_TABLES: usize = 8;
/// Linear memories in one execution (all core instances of a component together).
pub const MAX_STORE_MEMORIES: usize = 4;

/// Frames of wasm backtrace kept in a trap's error text.
pub const MAX_BACKTRACE_FRAMES: usize = 16;

/// argv[0] as the guest sees it (protocol §2).
pub const ARGV0: &str = "module.wasm";

/// Address space of each pooled memory slot: the whole 32-bit range.
const POOL_MEMORY_BYTES: usize = 4 << 30;

/// Bytes in a WebAssembly page.
const WASM_PAGE: u64 = 65_536;

/// The sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Wasmtime refused the engine configuration or the WASI linker.
    #[error("cannot set up the Wasmtime engine: {0}")]
    Engine(String),
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

impl GuestInput {
    /// Checks the guest's argv and environment against the server's maxima: at most
    /// `max_args` arguments, `max_env` variables, and `max_bytes` in all as the
    /// guest's `args_sizes_get`/`environ_sizes_get` count them (each string and its
    /// NUL, `NAME=value` for a variable). The error is for the client.
    pub fn check_size(
        &self,
        max_args: usize,
        max_env: usize,
        max_bytes: usize,
    ) -> Result<(), String> {
        if self.args.len() > max_args {
            return Err(format!(
                "`args` has {} entries; this server allows at most {max_args} (limits.max_args)",
                self.args.len()
            ));
        }
        if self.env.len() > max_env {
            return Err(format!(
                "`env` has {} entries; this server allows at most {max_env} (limits.max_env)",
                self.env.len()
            ));
        }
        let args: usize = self.args.iter().map(|arg| arg.len() + 1).sum();
        let env: usize = self
            .env
            .iter()
            .map(|(name, value)| name.len() + value.len() + 2)
            .sum();
        if args + env > max_bytes {
            return Err(format!(
                "`args` and `env` take {} bytes; this server allows at most {max_bytes} \
                 (limits.max_args_env_bytes)",
                args + env
            ));
        }
        Ok(())
    }
}

impl Drop for GuestInput {
    fn drop(&mut self) {
        // Plaintext-derived: cleared before the allocator sees it again.
        use zeroize::Zeroize;
        self.args.zeroize();
        for (name, value) in &mut self.env {
            name.zeroize();
            value.zeroize();
        }
        self.stdin.zeroize();
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

/// What to run.
#[derive(Debug, Clone)]
pub enum Entry {
    /// The guest as a command: `_start`, or `wasi:cli/run` for a component.
    Command,
    /// One export called with arguments: a WAVE call expression, `add(1, 2)`.
    Invoke(String),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// A command finished: `_start` returned (0), `proc_exit(code)`, or a component's
    /// `run` returned `ok` (0) or `err` (1).
    Exited(i32),
    /// An invoked export returned; `RunReport::returns` has its results.
    Returned,
    /// A trap other than the ones below; the text says which.
    Trapped(String),
    OutOfFuel,
    TimedOut,
    /// A memory or table grew, or started, past its limit.
    MemoryLimit(String),
    /// The binary is not a runnable guest (bad binary, missing import, no entry).
    InvalidModule(String),
    /// `invoke` names no export, or its arguments do not fit the export's type.
    BadInvoke(String),
    /// The host failed (a panic in Wasmtime or a host function: a bug).
    HostFailure(String),
}

/// A finished run.
#[derive(Debug)]
pub struct RunReport {
    pub outcome: GuestOutcome,
    /// WAVE-encoded results of an invoked export.
    pub returns: Vec<String>,
    pub stdout: zeroize::Zeroizing<Vec<u8>>,
    pub stderr: zeroize::Zeroizing<Vec<u8>>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub fuel_consumed: u64,
    pub wall_time: Duration,
}

/// A compiled guest, linked against WASI once: what the cache holds.
pub enum Prepared {
    Core(core::PreparedModule),
    Component(component::PreparedComponent),
}

/// A cache lookup: the prepared guest (or why it does not compile) and whether it
/// was compiled for this request.
pub type Preparation = cache::Lookup<Prepared>;

/// The Wasmtime configuration of both the server's engine and the compile
/// workers' (`pool` is the server's; a worker only compiles and allocates
/// nothing). Everything that shapes the compiled code is set here, once, so that
/// an artifact from a worker loads into the server's engine.
pub(crate) fn engine_config(pool: Option<PoolingAllocationConfig>, parallel: bool) -> Config {
    let mut config = Config::new();
    if let Some(pool) = pool {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
        .memory_init_cow(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .wasm_component_model(true)
        // Shared memories are not seen by the resource limiter, and GC heaps are
        // not bounded by it: both are off so that `memory_bytes` means what it says.
        .wasm_threads(false)
        .wasm_gc(false)
        // A worker compiles on one core: `execution.max_concurrent_compilations`
        // is then the number of cores compilation may take.
        .parallel_compilation(parallel)
        // Traps carry a short wasm backtrace into the (sealed) `error` text;
        // capped so a deep recursion cannot make the error itself huge.
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(MAX_BACKTRACE_FRAMES));
    config
}

/// The engine, the WASI linkers, the module cache, the guest runtime and the epoch
/// ticker, built once at start.
pub struct Sandbox {
    engine: Engine,
    core_linker: Arc<wasmtime::Linker<core::CoreState>>,
    component_linker: Arc<wasmtime::component::Linker<component::ComponentState>>,
    cache: ModuleCache<Prepared>,
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
        let engine_error = |e: wasmtime::Error| SandboxError::Engine(format!("{e:#}"));
        let slots = u32::try_from(settings.max_concurrent.max(1)).unwrap_or(u32::MAX);
        // The pooling allocator reserves every instance, memory, table and fiber
        // stack up front, sized for `max_concurrent` guests at their largest; an
        // execution then takes a slot instead of mapping fresh memory, and
        // copy-on-write images make instantiation a few page-table updates.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(slots.saturating_mul(MAX_INSTANCES as u32))
            .total_component_instances(slots)
            .total_memories(slots.saturating_mul(MAX_STORE_MEMORIES as u32))
            .total_tables(slots.saturating_mul(MAX_STORE_TABLES as u32))
            .total_stacks(slots)
            .total_gc_heaps(0)
            .max_core_instances_per_component(MAX_INSTANCES as u32)
            .max_memories_per_component(MAX_STORE_MEMORIES as u32)
            .max_tables_per_component(MAX_STORE_TABLES as u32)
            .max_memories_per_module(MAX_MEMORIES as u32)
            .max_tables_per_module(MAX_TABLES as u32)
            .table_elements(MAX_TABLE_ELEMENTS)
            // Slots are sized for the largest 32-bit memory (each reserves that much
            // address space anyway): the pool would otherwise refuse an oversized
            // module at compile time with a generic error. The configured limit is
            // enforced by `GuestLimiter` and `check_resources`, which say so.
            .max_memory_size(POOL_MEMORY_BYTES)
            // A released slot's first bytes are zeroed with `memset` (and a memory's
            // image copied back) instead of `madvise`: for small guests this saves
            // the system call, the TLB shootdown it causes on every core, and the
            // page faults of the next run. Beyond these bytes, `madvise` as before.
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY_BYTES)
            .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES);
        let config = engine_config(Some(pool), true);
        let engine = Engine::new(&config).map_err(engine_error)?;
        let core_linker = core::linker(&engine).map_err(engine_error)?;
        let component_linker = component::linker(&engine).map_err(engine_error)?;
        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.guest_threads.max(1))
            .thread_name("guest")
            .enable_time()
            .build()
            .map_err(|e| SandboxError::Engine(format!("cannot start the guest runtime: {e}")))?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Sandbox {
            engine,
            core_linker: Arc::new(core_linker),
            component_linker: Arc::new(component_linker),
            cache: ModuleCache::new(settings.module_cache_bytes),
            compiler: Compiler::new(settings.compiler),
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

    /// The prepared guest (or its cached refusal) for the module whose SHA-256 is
    /// `hash`, if the cache has it. Costs a map lookup; never compiles.
    pub fn lookup(&self, hash: &[u8; 32]) -> Option<Result<Arc<Prepared>, CompileError>> {
        self.cache.get(hash)
    }

    /// Compilations running now.
    pub fn compilations_running(&self) -> usize {
        self.compiler.running()
    }

    /// The compiled and linked guest for `bytes`, compiled now in a bounded
    /// worker process (once, however many requests ask at the same time) unless
    /// the cache has it. `hash` is the SHA-256 of `bytes`. The error text is for
    /// the client only.
    pub async fn prepare(&self, hash: [u8; 32], bytes: &[u8]) -> Preparation {
        self.cache
            .get_or_compile(hash, || async move {
                let charge = bytes.len();
                let kind = classify(bytes);
                if kind == BinaryKind::Other {
                    let error = "not a WebAssembly module or component (bad magic number, \
                                 version or layer)";
                    return (Err(CompileError::Refused(error.to_owned())), charge);
                }
                let artifact = match self.compiler.compile(kind, bytes).await {
                    Ok(artifact) => artifact,
                    Err(error) => return (Err(error), charge),
                };
                // Loading maps the artifact and links it: quick, but not async.
                let engine = self.engine.clone();
                let core_linker = self.core_linker.clone();
                let component_linker = self.component_linker.clone();
                let loaded = tokio::task::spawn_blocking(move || match kind {
                    BinaryKind::CoreModule => core::load(&engine, &core_linker, &artifact.0)
                        .map(|(module, size)| (Prepared::Core(module), size)),
                    _ => component::load(&engine, &component_linker, &artifact.0)
                        .map(|(component, size)| (Prepared::Component(component), size)),
                })
                .await;
                match loaded {
                    Ok(Ok((prepared, size))) => (Ok(prepared), size.max(charge)),
                    Ok(Err(error)) => (Err(CompileError::Refused(error)), charge),
                    Err(_) => (
                        Err(CompileError::Unavailable(
                            "the compiler failed unexpectedly; retry later".to_owned(),
                        )),
                        charge,
                    ),
                }
            })
            .await
    }

    /// Runs a prepared guest to completion or to a limit.
    ///
    /// Fairness: guests run on the sandbox's own multi-thread runtime, and yield to
    /// it at every epoch tick (10 ms). The HTTP side has its own runtime, so however
    /// many guests are computing, the operating system's scheduler shares the CPU
    /// between the two sets of threads and `/health` stays responsive; among guests,
    /// the per-tick yield gives each a turn, so a long CPU-bound guest cannot starve
    /// short ones. The alternative, one blocking thread per guest, would need up to
    /// `max_concurrent` OS threads and could not be cancelled in a host call.
    pub async fn run(
        &self,
        prepared: Arc<Prepared>,
        entry: Entry,
        input: GuestInput,
        limits: GuestLimits,
    ) -> RunReport {
        let engine = self.engine.clone();
        let guests = self.guests.as_ref().expect("present until drop");
        let run = async move {
            match &*prepared {
                Prepared::Core(module) => core::run(&engine, module, entry, input, limits).await,
                Prepared::Component(component) => {
                    component::run(&engine, component, entry, input, limits).await
                }
            }
        };
        match guests.spawn(run).await {
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
                    returns: Vec::new(),
                    stdout: Default::default(),
                    stderr: Default::default(),
                    stdout_truncated: false,
                    stderr_truncated: false,
                    fuel_consumed: 0,
                    wall_time: Duration::ZERO,
                }
            }
        }
    }
}

/// Splits an `invoke` expression into the export's name and its WAVE arguments.
///
/// WAVE parses the whole call, but its names are kebab-case labels, and exports
/// are often not: `_start`, `add_one`, `example:app/api#greet`. So the name is
/// everything before the first `(`, and only the argument list goes to WAVE.
/// Public for the fuzz target `wave_invoke`.
pub fn parse_call(
    expression: &str,
) -> Result<
    (
        String,
        wasmtime::component::wasm_wave::untyped::UntypedFuncCall<'static>,
    ),
    String,
> {
    let expression = expression.trim();
    let open = expression
        .find('(')
        .ok_or("`invoke` must be a call expression such as `add(1, 2)`")?;
    let name = expression[..open].trim();
    if name.is_empty() {
        return Err("`invoke` names no function before `(`".to_owned());
    }
    let arguments = format!("f{}", &expression[open..]);
    let call = wasmtime::component::wasm_wave::untyped::UntypedFuncCall::parse(&arguments)
        .map_err(|error| format!("`invoke` is not a WAVE call expression: {error}"))?
        .into_owned();
    Ok((name.to_owned(), call))
}

/// What a binary's 8-byte header says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    CoreModule,
    Component,
    Other,
}

/// Tells a core module (`\0asm`, version 1, layer 0) from a component (`\0asm`,
/// version 0x0d, layer 1) by the header alone.
pub fn classify(bytes: &[u8]) -> BinaryKind {
    match bytes.get(..8) {
        Some([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) => BinaryKind::CoreModule,
        Some([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]) => BinaryKind::Component,
        _ => BinaryKind::Other,
    }
}

/// The WASI context both kinds of guest get: argv (with [`ARGV0`]), env and stdin
/// from the request, stdout and stderr into capped pipes, and no network. Nothing
/// of the host's environment, no preopened directory.
///
/// Our copies of argv and env are zeroized when `input` drops; the WASI context's
/// own copies, and the stdin buffer handed to it, are freed by Wasmtime without
/// clearing (see PROTOCOL.md, "What is zeroized").
fn wasi_context(
    mut input: GuestInput,
    stdout: &CappedOutput,
    stderr: &CappedOutput,
) -> wasmtime_wasi::WasiCtxBuilder {
    let mut argv = zeroize::Zeroizing::new(Vec::with_capacity(input.args.len() + 1));
    argv.push(ARGV0.to_owned());
    argv.append(&mut input.args);
    let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
    builder
        .args(&argv)
        .envs(&input.env)
        .stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(
            std::mem::take(&mut input.stdin),
        ))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
}

/// Bytes of compiled code and data behind an artifact, for the cache's budget.
fn image_size(image: std::ops::Range<*const u8>) -> usize {
    (image.end as usize).saturating_sub(image.start as usize)
}

/// A value in WAVE, the `returns` encoding, in at most `room` bytes: `None` if
/// it needs more. The encoding stops as soon as it passes `room`, so a huge
/// return value costs the host no more than `room` bytes of text.
fn wave(
    value: &impl wasmtime::component::wasm_wave::wasm::WasmValue,
    room: usize,
) -> Option<String> {
    /// A string that refuses to grow past its room.
    struct Capped {
        text: String,
        room: usize,
    }
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            if self.text.len() + piece.len() > self.room {
                return Err(std::fmt::Error);
            }
            self.text.push_str(piece);
            Ok(())
        }
    }
    let mut capped = Capped {
        text: String::new(),
        room,
    };
    let mut writer = wasmtime::component::wasm_wave::writer::Writer::new(&mut capped);
    match writer.write_value(value) {
        Ok(()) => Some(capped.text),
        Err(_) if capped.text.len() + 64 > room => None,
        Err(error) => Some(format!("<not encodable in WAVE: {error}>")),
    }
}

/// Hostcall fuel: the bytes one call may copy from the guest into the host
/// (a string or list argument of a WASI call, an invoked export's return
/// values). Wasmtime's default is 128 MiB; it is set to the run's
/// `max_output_bytes`, and never below this floor so that WASI calls with
/// ordinary arguments (paths, environment) work when output is capped low.
pub const MIN_HOSTCALL_FUEL: usize = 1 << 20;

/// Per-store data common to both kinds of guest.
trait Guest: Send + 'static {
    fn limiter(&mut self) -> &mut GuestLimiter;
}

/// A store with the run's fuel, limits and deadline, and the pipes it writes to.
struct Run<T: Guest> {
    store: Store<T>,
    stdout: CappedOutput,
    stderr: CappedOutput,
    started: Instant,
    limits: GuestLimits,
}

impl<T: Guest> Run<T> {
    fn new(
        engine: &Engine,
        state: T,
        limits: GuestLimits,
        stdout: CappedOutput,
        stderr: CappedOutput,
    ) -> Run<T> {
        let mut store = Store::new(engine, state);
        store.limiter(|state| state.limiter());
        store.set_hostcall_fuel(limits.max_output_bytes.max(MIN_HOSTCALL_FUEL));
        store
            .set_fuel(limits.fuel)
            .expect("fuel is enabled in the engine's configuration");
        let started = Instant::now();
        // The deadline is enforced twice: the epoch callback stops a guest that is
        // computing, and the tokio timeout around the run drops it (and so cancels
        // it) when the guest is parked in an async host call such as a sleep.
        let deadline = started + limits.timeout;
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::from(DeadlineReached))
            } else {
                // Yield at every tick so one guest cannot hold a worker thread.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        Run {
            store,
            stdout,
            stderr,
            started,
            limits,
        }
    }

    /// The outcome of a guest future run under the wall-clock limit.
    fn outcome<R>(
        &mut self,
        result: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
    ) -> Result<R, GuestOutcome> {
        match result {
            Err(_elapsed) => Err(GuestOutcome::TimedOut),
            Ok(Ok(value)) => Ok(value),
            // Wasmtime refused to copy more than the hostcall fuel out of the
            // guest: for an invoke, its return values.
            Ok(Err(error)) if format!("{error:#}").contains("fuel allocated for hostcalls") => {
                Err(GuestOutcome::Trapped(format!(
                    "the guest passed the host more than {} bytes in one call \
                     (max_output_bytes, at least {MIN_HOSTCALL_FUEL})",
                    self.limits.max_output_bytes.max(MIN_HOSTCALL_FUEL)
                )))
            }
            Ok(Err(error)) => Err(classify_error(
                error,
                self.store.data_mut().limiter().hit.as_ref(),
            )),
        }
    }

    /// The report of an invoked export: its results in WAVE, or how it failed.
    fn report_invoke<V>(
        mut self,
        result: Result<wasmtime::Result<Vec<V>>, tokio::time::error::Elapsed>,
        wave: fn(&V, usize) -> Option<String>,
    ) -> RunReport {
        let results = match self.outcome(result) {
            Ok(results) => results,
            Err(outcome) => return self.report(outcome, vec![]),
        };
        // The return values count against `max_output_bytes` together, as they
        // are encoded.
        let mut room = self.limits.max_output_bytes;
        let mut returns = Vec::with_capacity(results.len());
        for value in &results {
            match wave(value, room) {
                Some(text) => {
                    room -= text.len();
                    returns.push(text);
                }
                None => {
                    drop(results);
                    let outcome = self.returns_too_large();
                    return self.report(outcome, vec![]);
                }
            }
        }
        self.report(GuestOutcome::Returned, returns)
    }

    /// The outcome of return values past `max_output_bytes`.
    fn returns_too_large(&self) -> GuestOutcome {
        GuestOutcome::Trapped(format!(
            "the invoked export's return values are larger than max_output_bytes ({} bytes)",
            self.limits.max_output_bytes
        ))
    }

    fn report(self, outcome: GuestOutcome, returns: Vec<String>) -> RunReport {
        RunReport {
            outcome,
            returns,
            stdout: self.stdout.take_contents(),
            stderr: self.stderr.take_contents(),
            stdout_truncated: self.stdout.truncated(),
            stderr_truncated: self.stderr.truncated(),
            fuel_consumed: self
                .limits
                .fuel
                .saturating_sub(self.store.get_fuel().unwrap_or(0)),
            wall_time: self.started.elapsed(),
        }
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

/// Checks a core module's declared needs before instantiating it, so that the
/// pool's own refusals never surface as generic errors.
fn check_resources(
    needs: wasmtime::ResourcesRequired,
    memory_bytes: u64,
) -> Result<(), GuestOutcome> {
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

/// Raised from the epoch callback when the wall-clock deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("wall-clock timeout")]
struct DeadlineReached;

/// Which limit a guest ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LimitHit {
    /// All memories and tables together would pass `memory_bytes`.
    Memory {
        desired: u64,
        limit: u64,
    },
    Table {
        desired: u64,
    },
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Memory { desired, limit } => write!(
                f,
                "linear memory and tables of {desired} bytes in all requested; the limit is \
                 {limit} bytes"
            ),
            LimitHit::Table { desired } => write!(
                f,
                "table of {desired} elements requested; the limit is {MAX_TABLE_ELEMENTS}"
            ),
        }
    }
}

/// Host bytes of one table element: tables hold pointers.
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// Enforces one budget, `memory_bytes`, for all of a guest's linear memories and
/// tables together (a component has several core instances, each may have its
/// own), by failing (trapping) the growth that would pass it; remembers which
/// limit was hit so the run ends as `memory_limit` rather than a generic trap.
///
/// Wasmtime asks the limiter for every memory's and table's initial size at
/// instantiation (growth from 0) and for every later growth, with the sizes
/// before and after, so the sum of `desired - current` over all calls is what the
/// guest holds.
struct GuestLimiter {
    memory_bytes: u64,
    /// Bytes of memories and tables the guest holds now.
    used: u64,
    hit: Option<LimitHit>,
}

impl GuestLimiter {
    fn new(memory_bytes: u64) -> GuestLimiter {
        GuestLimiter {
            memory_bytes,
            used: 0,
            hit: None,
        }
    }

    /// Grows the total by `current -> desired` bytes, or records the hit.
    fn grow(&mut self, current: u64, desired: u64) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.memory_bytes {
            let hit = LimitHit::Memory {
                desired: total,
                limit: self.memory_bytes,
            };
            let message = hit.to_string();
            self.hit = Some(hit);
            return Err(wasmtime::Error::msg(message));
        }
        self.used = total;
        Ok(true)
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current as u64, desired as u64)
    }

    fn table_growing(
        &mut self,
        current: usize,
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
        self.grow(
            current as u64 * TABLE_ELEMENT_BYTES,
            desired as u64 * TABLE_ELEMENT_BYTES,
        )
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_STORE_TABLES
    }

    fn memories(&self) -> usize {
        MAX_STORE_MEMORIES
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
    fn invoke_names_need_not_be_wave_labels() {
        for (expression, name) in [
            ("add(1, 2)", "add"),
            ("_start()", "_start"),
            (" add_one (1) ", "add_one"),
            ("example:app/api#greet(\"x\")", "example:app/api#greet"),
        ] {
            assert_eq!(parse_call(expression).unwrap().0, name, "{expression}");
        }
        for bad in ["add", "(1)", "add(1", "add(1))", "add(,)"] {
            assert!(parse_call(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut limiter = GuestLimiter::new(4 * WASM_PAGE);
        // Two memories of two pages each: the budget is spent.
        assert!(
            limiter
                .memory_growing(0, 2 * WASM_PAGE as usize, None)
                .unwrap()
        );
        assert!(
            limiter
                .memory_growing(0, 2 * WASM_PAGE as usize, None)
                .unwrap()
        );
        // A third memory, or a table, or growing either memory, passes it.
        assert!(limiter.memory_growing(0, WASM_PAGE as usize, None).is_err());
        assert!(limiter.table_growing(0, 1, None).is_err());
        assert!(
            limiter
                .memory_growing(2 * WASM_PAGE as usize, 3 * WASM_PAGE as usize, None)
                .is_err()
        );
        assert!(matches!(
            limiter.hit,
            Some(LimitHit::Memory { desired, limit }) if desired > limit
        ));
        // Refused growth is not counted.
        assert_eq!(limiter.used, 4 * WASM_PAGE);

        let mut tables = GuestLimiter::new(1000 * TABLE_ELEMENT_BYTES);
        assert!(tables.table_growing(0, 600, None).unwrap());
        assert!(tables.table_growing(0, 500, None).is_err());
        assert!(tables.table_growing(0, 400, None).unwrap());
    }

    #[test]
    fn binaries_are_told_apart_by_their_header() {
        assert_eq!(classify(b"\0asm\x01\0\0\0rest"), BinaryKind::CoreModule);
        assert_eq!(classify(b"\0asm\x0d\0\x01\0"), BinaryKind::Component);
        assert_eq!(classify(b"\0asm\x0e\0\x01\0"), BinaryKind::Other);
        assert_eq!(classify(b"\0asm"), BinaryKind::Other);
        assert_eq!(classify(b"(module)"), BinaryKind::Other);
    }
}
