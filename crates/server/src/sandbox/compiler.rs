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

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::engine;
use super::shape::{self, ShapeError};
use super::target::{LoadError, TargetKind};

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

/// Why a module was not compiled (status `invalid_module`). The first group is
/// the module's fault: the same bytes always fail the same way, so the refusal
/// is cached by hash. The last three are the server's, retryable, and not cached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CompileError {
    /// The header says neither core module nor component.
    #[error("not a WebAssembly module or component (bad magic number, version or layer)")]
    NotWasm,
    /// (In the worker.) The module fails the shape check.
    #[error("module refused before compilation: {0}")]
    Shape(ShapeError),
    /// (In the worker.) The worker's engine could not be built.
    #[error("the compiler could not start: {0:#}")]
    WorkerEngine(Arc<wasmtime::Error>),
    /// (In the worker.) Wasmtime refused the binary: Wasmtime's text.
    #[error("{kind} does not compile: {error:#}")]
    DoesNotCompile {
        kind: TargetKind,
        error: Arc<wasmtime::Error>,
    },
    /// The worker refused the module: its reason, as it wrote it on its pipe.
    #[error("{0}")]
    Refused(String),
    /// The worker passed its CPU bound.
    #[error(
        "compiling the module took more than {cpu_secs} s of CPU time \
         (execution.compile_timeout_secs)"
    )]
    CpuTime { cpu_secs: u64 },
    /// The worker ran out of its address space.
    #[error(
        "compiling the module needed more than {memory_bytes} bytes of memory \
         (execution.compile_memory_bytes)"
    )]
    Memory { memory_bytes: u64 },
    /// The worker died otherwise: a compiler bug this module triggers, every time.
    #[error("the compiler crashed on this module (a server bug; the server's log has the details)")]
    Crashed,
    /// The worker's artifact does not load into the server's engine.
    #[error(transparent)]
    Load(LoadError),
    /// The worker could not be started.
    #[error("the server could not start a compiler; retry later")]
    CannotStart,
    /// The wall-clock bound passed (a busy machine, not the module's fault).
    #[error("the compilation did not finish within {wall_secs} s of wall-clock time; retry later")]
    WallClock { wall_secs: u64 },
    /// The worker, or loading its artifact, failed in a way that says nothing
    /// about the module.
    #[error("the compiler failed unexpectedly; retry later")]
    Failed,
}

impl CompileError {
    /// Whether the same bytes would fail the same way again.
    pub fn is_cacheable(&self) -> bool {
        match self {
            CompileError::NotWasm
            | CompileError::Shape(_)
            | CompileError::WorkerEngine(_)
            | CompileError::DoesNotCompile { .. }
            | CompileError::Refused(_)
            | CompileError::CpuTime { .. }
            | CompileError::Memory { .. }
            | CompileError::Crashed
            | CompileError::Load(_) => true,
            CompileError::CannotStart | CompileError::WallClock { .. } | CompileError::Failed => {
                false
            }
        }
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
    pub async fn compile(&self, kind: TargetKind, bytes: &[u8]) -> Result<Artifact, CompileError> {
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

    async fn run_worker(&self, kind: TargetKind, bytes: &[u8]) -> Result<Artifact, CompileError> {
        let settings = &self.settings;
        let cpu_secs = settings.cpu.as_secs().max(1);
        let mut child = tokio::process::Command::new(&settings.program)
            .arg(WORKER_COMMAND)
            .arg(kind.as_str())
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
                CompileError::CannotStart
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
                return Err(CompileError::WallClock {
                    wall_secs: wall.as_secs(),
                });
            }
        };
        let status = status.map_err(|_| CompileError::Failed)?;
        if status.success() {
            let answer = answer.unwrap_or_default();
            return match answer.split_first() {
                Some((&COMPILED, artifact)) => Ok(Artifact(artifact.to_vec())),
                Some((&REFUSED, reason)) => Err(CompileError::Refused(
                    String::from_utf8_lossy(reason).into_owned(),
                )),
                _ => Err(CompileError::Failed),
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
        Some(SIGXCPU | SIGKILL) => CompileError::CpuTime { cpu_secs },
        _ if out_of_memory => CompileError::Memory { memory_bytes },
        Some(_) => {
            // An abort without an allocation failure: a compiler bug this module
            // triggers, every time.
            tracing::error!(?status, "a compile worker died");
            CompileError::Crashed
        }
        None => {
            tracing::error!(?status, "a compile worker failed");
            CompileError::Failed
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
        [kind, cpu, memory] => match (TargetKind::parse(kind), cpu.parse(), memory.parse()) {
            (Some(kind), Ok(cpu), Ok(memory)) => Some((kind, cpu, memory)),
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
        // Rendered here, not where the result is sealed: the reason crosses a
        // process boundary, and comes back as `CompileError::Refused`.
        Err(reason) => [&[REFUSED][..], reason.to_string().as_bytes()].concat(),
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
/// a worker does between reading and writing.
pub fn compile_here(kind: TargetKind, bytes: &[u8]) -> Result<Vec<u8>, CompileError> {
    match shape::check(bytes) {
        Ok(()) => {}
        // Wasmtime's validator says precisely what is wrong with the binary.
        Err(ShapeError::Malformed(_)) => {}
        Err(error) => return Err(CompileError::Shape(error)),
    }
    let engine = engine::worker().map_err(|error| CompileError::WorkerEngine(Arc::new(error)))?;
    kind.compile(&engine, bytes)
        .map_err(|error| CompileError::DoesNotCompile {
            kind,
            error: Arc::new(error),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_from_the_worker_reads_as_it_did_in_the_worker() {
        // What the worker writes after `REFUSED`, the server shows unchanged.
        let shape = CompileError::Shape(ShapeError::LoopsNestedTooDeep {
            index: 3,
            depth: 300,
        });
        assert_eq!(
            shape.to_string(),
            "module refused before compilation: function 3 nests loops 300 deep; at most 256 \
             are allowed"
        );
        let error = compile_here(TargetKind::Component, b"\0asm\x0d\0\x01\0junk").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("component does not compile: "),
            "{error}"
        );
        assert!(CompileError::Refused(error.to_string()).is_cacheable());
    }

    #[test]
    fn only_the_servers_own_failures_are_retried() {
        assert!(CompileError::CpuTime { cpu_secs: 1 }.is_cacheable());
        assert!(CompileError::Memory { memory_bytes: 1 }.is_cacheable());
        assert!(CompileError::Crashed.is_cacheable());
        assert!(CompileError::NotWasm.is_cacheable());
        assert!(!CompileError::CannotStart.is_cacheable());
        assert!(!CompileError::WallClock { wall_secs: 8 }.is_cacheable());
        assert!(!CompileError::Failed.is_cacheable());
        assert_eq!(
            CompileError::CpuTime { cpu_secs: 1 }.to_string(),
            "compiling the module took more than 1 s of CPU time (execution.compile_timeout_secs)"
        );
        assert_eq!(
            CompileError::Memory {
                memory_bytes: 67_108_864
            }
            .to_string(),
            "compiling the module needed more than 67108864 bytes of memory \
             (execution.compile_memory_bytes)"
        );
    }
}
