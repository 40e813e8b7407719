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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{Config, Engine, Linker, Module, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

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
/// Tables per store.
pub const MAX_TABLES: usize = 16;
/// Linear memories per store (each bounded by the memory limit).
pub const MAX_MEMORIES: usize = 4;

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

/// A compiled module. Cheap to clone.
#[derive(Clone)]
pub struct CompiledModule(Module);

/// The engine, the WASI linker and the epoch ticker, built once at start.
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<GuestState>>,
    _ticker: EpochTicker,
}

impl Sandbox {
    pub fn new() -> Result<Sandbox, SandboxError> {
        let mut config = Config::new();
        config
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
        let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut linker: Linker<GuestState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut GuestState| {
            &mut state.wasi
        })
        .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
            _ticker: ticker,
        })
    }

    /// "wasmtime X.Y.Z", the `engine` field of results.
    pub fn engine_name() -> String {
        format!("wasmtime {}", env!("WASMTIME_VERSION"))
    }

    /// Compiles a core module on a blocking thread (Cranelift is CPU-bound and must
    /// not stall the async workers). The error text is for the client only.
    pub async fn compile(&self, bytes: Arc<[u8]>) -> Result<CompiledModule, String> {
        match classify(&bytes) {
            BinaryKind::CoreModule => {}
            BinaryKind::Component => {
                return Err(
                    "this module is a WebAssembly component; components are not \
                            supported yet, only core modules"
                        .to_owned(),
                );
            }
            BinaryKind::Other => {
                return Err("not a WebAssembly binary (bad magic number or version)".to_owned());
            }
        }
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || Module::from_binary(&engine, &bytes))
            .await
            .map_err(|_| "the compiler failed unexpectedly".to_owned())?
            .map(CompiledModule)
            .map_err(|e| format!("module does not compile: {e:#}"))
    }

    /// Runs a WASI preview1 command to completion or to a limit.
    pub async fn run_command(
        &self,
        module: &CompiledModule,
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
        let mut store = Store::new(&self.engine, state);
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
                GuestOutcome::Trapped(format!("cannot set fuel: {e}")),
                &store,
            );
        }

        // Link before the clock starts: a missing import is the module's fault, not
        // a runtime event, and runs no guest code.
        let pre = match self.linker.instantiate_pre(&module.0) {
            Ok(pre) => pre,
            Err(e) => return report(GuestOutcome::InvalidModule(format!("{e:#}")), &store),
        };
        if module.0.get_export("_start").is_none() {
            return report(
                GuestOutcome::InvalidModule(
                    "module does not export a `_start` function (not a WASI command)".to_owned(),
                ),
                &store,
            );
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
            let start_fn = instance
                .get_typed_func::<(), ()>(&mut store, "_start")
                .map_err(|e| wasmtime::Error::from(NotACommand(format!("{e:#}"))))?;
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
    if let Some(NotACommand(message)) = error.downcast_ref::<NotACommand>() {
        return GuestOutcome::InvalidModule(format!(
            "`_start` is not a function of type [] -> []: {message}"
        ));
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

/// `_start` exists but has the wrong type.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotACommand(String);

/// Per-store data: the WASI context and the limiter.
struct GuestState {
    wasi: WasiP1Ctx,
    limiter: GuestLimiter,
}

/// Which limit a guest ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LimitHit {
    Memory { desired: usize, limit: u64 },
    Table { desired: usize },
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
                desired,
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
            let hit = LimitHit::Table { desired };
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

/// An in-memory stdout/stderr that keeps the first `capacity` bytes and quietly
/// drops the rest, remembering that it did. The guest always sees its writes
/// succeed: output past the cap is the host's truncation, not the guest's error.
#[derive(Clone)]
pub struct CappedOutput {
    inner: Arc<Mutex<CappedBuffer>>,
}

struct CappedBuffer {
    bytes: Vec<u8>,
    capacity: usize,
    truncated: bool,
}

/// Largest write a guest is offered at once; it only bounds one host-side copy.
const WRITE_BUDGET: usize = 64 << 10;

impl CappedOutput {
    pub fn new(capacity: usize) -> CappedOutput {
        CappedOutput {
            inner: Arc::new(Mutex::new(CappedBuffer {
                bytes: Vec::new(),
                capacity,
                truncated: false,
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut buffer = self.lock();
        let room = buffer.capacity - buffer.bytes.len();
        if data.len() > room {
            buffer.truncated = true;
        }
        let kept = data.len().min(room);
        buffer.bytes.extend_from_slice(&data[..kept]);
    }

    pub fn contents(&self) -> Bytes {
        Bytes::copy_from_slice(&self.lock().bytes)
    }

    pub fn truncated(&self) -> bool {
        self.lock().truncated
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CappedBuffer> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_output_keeps_the_first_bytes_and_flags_the_rest() {
        let out = CappedOutput::new(5);
        out.push(b"abc");
        assert!(!out.truncated());
        out.push(b"defg");
        assert_eq!(&out.contents()[..], b"abcde");
        assert!(out.truncated());
        out.push(b"h");
        assert_eq!(&out.contents()[..], b"abcde");
    }

    #[test]
    fn binaries_are_told_apart_by_their_header() {
        assert_eq!(classify(b"\0asm\x01\0\0\0rest"), BinaryKind::CoreModule);
        assert_eq!(classify(b"\0asm\x0d\0\x01\0"), BinaryKind::Component);
        assert_eq!(classify(b"\0asm"), BinaryKind::Other);
        assert_eq!(classify(b"(module)"), BinaryKind::Other);
    }
}
