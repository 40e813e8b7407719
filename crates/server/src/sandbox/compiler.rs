//! Compilation in worker processes: each module is checked ([`super::shape`]) and
//! compiled by a child process of our own binary (`wasm-hypervisor compile-worker`)
//! that the kernel bounds in CPU time (`RLIMIT_CPU`) and address space
//! (`RLIMIT_AS`), and that the server kills past a wall-clock deadline. The child
//! writes the compiled artifact (`Module::serialize`) back over a pipe; the server
//! loads it with `Module::deserialize`.
//!
//! Why a process: Cranelift cannot be interrupted, and its time and memory are not
//! linear in a module's size (a 10.9 KB module took 11 s and 660 MB). A thread that
//! runs away cannot be stopped; a process can, and the kernel enforces its limits
//! however the compiler allocates.
//!
//! At most `slots` compilations run at once, each on one core
//! (`parallel_compilation(false)`), so the other cores keep running guests; how
//! many may wait for one is bounded by the caller (`execution`'s compile tickets).
//!
//! Architecture invariant: the child gets the module bytes on its stdin and nothing
//! else: no environment (but the allocator's setting), no inherited descriptors
//! but its three pipes, no key.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use wasmtime::Engine;

use super::BinaryKind;

/// The subcommand that runs a worker (hidden from `--help`).
pub const WORKER_COMMAND: &str = "compile-worker";

/// First byte of a worker's answer: the compiled artifact follows.
const COMPILED: u8 = b'C';
/// First byte of a worker's answer: the module was refused; UTF-8 reason follows.
const REFUSED: u8 = b'R';

/// Bytes of a worker's stderr kept to classify how it died.
const STDERR_KEPT: u64 = 4096;

/// How compilations are bounded, from the configuration.
#[derive(Debug, Clone)]
pub struct CompilerSettings {
    /// The program to run as `PROGRAM compile-worker`: this executable in the
    /// server, the built `wasm-hypervisor` binary in tests.
    pub program: PathBuf,
    /// Compilations at once (`execution.max_concurrent_compilations`).
    pub slots: usize,
    /// CPU time of one compilation (`execution.compile_timeout_secs`).
    pub cpu: Duration,
    /// Address space of one worker (`execution.compile_memory_bytes`).
    pub memory_bytes: u64,
}

/// Why a module was not compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The module is at fault: it does not parse, fails the shape check, does not
    /// compile, or its compilation exceeded the CPU or memory bound. The same bytes
    /// always fail the same way, so the refusal is cached by hash.
    #[error("{0}")]
    Refused(String),
    /// The server could not compile it now (the wall-clock bound passed on a busy
    /// machine, the worker could not start): retryable, and not cached.
    #[error("{0}")]
    Unavailable(String),
}

impl CompileError {
    /// Whether the same bytes would fail the same way again.
    pub fn is_cacheable(&self) -> bool {
        matches!(self, CompileError::Refused(_))
    }
}

/// Runs compilations in worker processes, a bounded number at once.
pub struct Compiler {
    settings: CompilerSettings,
    slots: Arc<Semaphore>,
}

/// A compiled artifact, as the worker serialized it.
pub struct Artifact(pub Vec<u8>);

impl Compiler {
    pub fn new(settings: CompilerSettings) -> Compiler {
        Compiler {
            slots: Arc::new(Semaphore::new(settings.slots.max(1))),
            settings,
        }
    }

    /// Compilations running now.
    pub fn running(&self) -> usize {
        self.settings.slots.max(1) - self.slots.available_permits()
    }

    /// Waits for a slot, then compiles `bytes` in a worker under the CPU, memory
    /// and wall-clock bounds.
    pub async fn compile(&self, kind: BinaryKind, bytes: &[u8]) -> Result<Artifact, CompileError> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let compiled = self.run_worker(kind, bytes).await;
        drop(permit);
        compiled
    }

    async fn run_worker(&self, kind: BinaryKind, bytes: &[u8]) -> Result<Artifact, CompileError> {
        let settings = &self.settings;
        let cpu_secs = settings.cpu.as_secs().max(1);
        let mut child = tokio::process::Command::new(&settings.program)
            .arg(WORKER_COMMAND)
            .arg(match kind {
                BinaryKind::Component => "component",
                _ => "module",
            })
            .arg(cpu_secs.to_string())
            .arg(settings.memory_bytes.to_string())
            .env_clear()
            // mimalloc otherwise reserves 1 GiB of address space up front, in
            // which the heap then grows unseen by RLIMIT_AS; without the
            // reservation, every allocation counts against the bound.
            .env("MIMALLOC_ARENA_RESERVE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                tracing::error!(%error, program = %settings.program.display(), "cannot start a compile worker");
                CompileError::Unavailable("the server could not start a compiler; retry later".to_owned())
            })?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        // Three times the CPU bound, and some: a worker that is not getting the
        // CPU on a busy machine is not the module's fault, so this one is not
        // cached.
        let wall = settings.cpu * 3 + Duration::from_secs(5);
        let exchange = async {
            // A worker that dies early closes its stdin: the write fails, and
            // its exit status says why.
            let _ = async {
                stdin.write_all(bytes).await?;
                stdin.shutdown().await
            }
            .await;
            drop(stdin);
            let mut answer = Vec::new();
            let read = stdout.read_to_end(&mut answer).await;
            let mut diagnostics = Vec::new();
            let _ = stderr.take(STDERR_KEPT).read_to_end(&mut diagnostics).await;
            let status = child.wait().await;
            (read.map(|_| answer), diagnostics, status)
        };
        let (answer, diagnostics, status) = match tokio::time::timeout(wall, exchange).await {
            Ok(done) => done,
            Err(_elapsed) => {
                // Dropping the exchange drops the child, which kills it.
                return Err(CompileError::Unavailable(format!(
                    "the compilation did not finish within {} s of wall-clock time; retry later",
                    wall.as_secs()
                )));
            }
        };
        let status = status.map_err(|_| {
            CompileError::Unavailable("the compiler failed unexpectedly; retry later".to_owned())
        })?;
        if status.success() {
            let answer = answer.unwrap_or_default();
            return match answer.split_first() {
                Some((&COMPILED, artifact)) => Ok(Artifact(artifact.to_vec())),
                Some((&REFUSED, reason)) => Err(CompileError::Refused(
                    String::from_utf8_lossy(reason).into_owned(),
                )),
                _ => Err(CompileError::Unavailable(
                    "the compiler failed unexpectedly; retry later".to_owned(),
                )),
            };
        }
        Err(died(status, &diagnostics, cpu_secs, settings.memory_bytes))
    }
}

/// What a worker's death says about the module.
fn died(
    status: std::process::ExitStatus,
    diagnostics: &[u8],
    cpu_secs: u64,
    memory_bytes: u64,
) -> CompileError {
    use std::os::unix::process::ExitStatusExt;
    let text = String::from_utf8_lossy(diagnostics);
    // Out of address space, the allocator fails (an abort that says so), or the
    // stack cannot grow (a segmentation fault).
    let out_of_memory = text.contains("memory allocation")
        || text.contains("out of memory")
        || text.contains("Cannot allocate memory")
        || status.signal() == Some(SIGSEGV);
    match status.signal() {
        // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one.
        Some(SIGXCPU | SIGKILL) => CompileError::Refused(format!(
            "compiling the module took more than {cpu_secs} s of CPU time \
                 (execution.compile_timeout_secs)"
        )),
        _ if out_of_memory => CompileError::Refused(format!(
            "compiling the module needed more than {memory_bytes} bytes of memory \
             (execution.compile_memory_bytes)"
        )),
        Some(_) => {
            // An abort without an allocation failure: a compiler bug this module
            // triggers, every time.
            tracing::error!(?status, "a compile worker died");
            CompileError::Refused(
                "the compiler crashed on this module (a server bug; the server's log has the \
                 details)"
                    .to_owned(),
            )
        }
        None => {
            tracing::error!(?status, "a compile worker failed");
            CompileError::Unavailable("the compiler failed unexpectedly; retry later".to_owned())
        }
    }
}

const SIGXCPU: i32 = 24;
const SIGSEGV: i32 = 11;
const SIGKILL: i32 = 9;

/// The worker's side: `PROGRAM compile-worker module|component CPU_SECS
/// MEMORY_BYTES`, module bytes on stdin, the answer on stdout. Sets its own
/// limits before it reads a byte.
pub fn worker_main(args: &[String]) -> ExitCode {
    let parsed = match args {
        [kind, cpu, memory] => match (kind.as_str(), cpu.parse::<u64>(), memory.parse::<u64>()) {
            ("module", Ok(cpu), Ok(memory)) => Some((BinaryKind::CoreModule, cpu, memory)),
            ("component", Ok(cpu), Ok(memory)) => Some((BinaryKind::Component, cpu, memory)),
            _ => None,
        },
        _ => None,
    };
    let Some((kind, cpu_secs, memory_bytes)) = parsed else {
        eprintln!("usage: {WORKER_COMMAND} module|component CPU_SECS MEMORY_BYTES");
        return ExitCode::from(2);
    };
    use rustix::process::{Resource, Rlimit, setrlimit};
    // The budget is for compiling: on top of what the worker has mapped when it
    // starts (its binary, its libraries, the allocator's first pages).
    let Some(mapped) = mapped_bytes() else {
        eprintln!("cannot read the compile worker's own size");
        return ExitCode::from(3);
    };
    let memory_bytes = mapped.saturating_add(memory_bytes);
    let limited = setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(cpu_secs),
            maximum: Some(cpu_secs + 1),
        },
    )
    .and_then(|()| {
        setrlimit(
            Resource::As,
            Rlimit {
                current: Some(memory_bytes),
                maximum: Some(memory_bytes),
            },
        )
    });
    if let Err(error) = limited {
        eprintln!("cannot set the compile worker's limits: {error}");
        return ExitCode::from(3);
    }
    let mut bytes = Vec::new();
    if let Err(error) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("cannot read the module: {error}");
        return ExitCode::from(3);
    }
    let answer = match compile_here(kind, &bytes) {
        Ok(artifact) => [&[COMPILED][..], &artifact].concat(),
        Err(reason) => [&[REFUSED][..], reason.as_bytes()].concat(),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&answer).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(3),
    }
}

/// Bytes of address space this process has mapped (`VmSize`).
fn mapped_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Checks the shape and compiles, in this process, with the worker's engine: what
/// a worker does between reading and writing. The error is for the client.
pub fn compile_here(kind: BinaryKind, bytes: &[u8]) -> Result<Vec<u8>, String> {
    match super::shape::check(bytes) {
        Ok(()) => {}
        // Wasmtime's validator says precisely what is wrong with the binary.
        Err(super::shape::ShapeError::Malformed(_)) => {}
        Err(error) => return Err(format!("module refused before compilation: {error}")),
    }
    let engine = Engine::new(&super::engine_config(None, false))
        .map_err(|error| format!("the compiler could not start: {error:#}"))?;
    match kind {
        BinaryKind::Component => wasmtime::component::Component::from_binary(&engine, bytes)
            .and_then(|component| component.serialize())
            .map_err(|error| format!("component does not compile: {error:#}")),
        _ => wasmtime::Module::from_binary(&engine, bytes)
            .and_then(|module| module.serialize())
            .map_err(|error| format!("module does not compile: {error:#}")),
    }
}
