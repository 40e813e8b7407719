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
//! How a worker ended says whose fault it was ([`died`]): the CPU bound (the
//! kernel's `SIGXCPU`, or `SIGKILL` once the worker's own CPU time, read before
//! it is reaped, reached the bound), the memory bound, a crash, our own
//! wall-clock kill, or a kill from outside (the out-of-memory killer, an
//! operator). Only the first three are the module's, and cached; a worker
//! killed from outside is started again once, then reported as retryable.
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

use super::engine::{self, Flavor};
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
/// is cached by hash. The last four are the server's, retryable, and not cached.
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
    /// The worker was killed by a signal that none of its bounds sends (the
    /// out-of-memory killer, an operator), also when compiling again.
    #[error(
        "the compiler was killed from outside the server (signal {signal}), also when \
         retried; retry later"
    )]
    Killed { signal: i32 },
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
            CompileError::CannotStart
            | CompileError::WallClock { .. }
            | CompileError::Killed { .. }
            | CompileError::Failed => false,
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
    /// and wall-clock bounds. A worker killed from outside is replaced once, in
    /// the same slot: such a kill (the out-of-memory killer choosing the largest
    /// process of a full machine, say) says nothing about the module, and the
    /// user asked for a compilation, not for a retry of their own.
    pub async fn compile(
        &self,
        kind: TargetKind,
        flavor: Flavor,
        bytes: &[u8],
    ) -> Result<Artifact, CompileError> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut compiled = self.run_worker(kind, flavor, bytes).await;
        if let Err(CompileError::Killed { signal }) = compiled {
            tracing::warn!(
                signal,
                "a compile worker was killed from outside; compiling again"
            );
            compiled = self.run_worker(kind, flavor, bytes).await;
            if let Err(CompileError::Killed { signal }) = compiled {
                tracing::error!(signal, "a compile worker was killed from outside twice");
            }
        }
        drop(permit);
        compiled
    }

    /// One compilation in one worker, bounded in wall-clock time as well.
    async fn run_worker(
        &self,
        kind: TargetKind,
        flavor: Flavor,
        bytes: &[u8],
    ) -> Result<Artifact, CompileError> {
        let settings = &self.settings;
        let cpu_secs = settings.cpu.as_secs().max(1);
        let child = self.spawn_worker(kind, flavor, cpu_secs)?;
        // Three times the CPU bound, and some: a worker that is not getting the
        // CPU on a busy machine is not the module's fault, so this one is not
        // cached.
        let wall = settings.cpu * 3 + Duration::from_secs(5);
        let Ok(exchanged) = tokio::time::timeout(wall, exchange(child, bytes)).await else {
            // Dropping the exchange drops the child, which kills it.
            return Err(CompileError::WallClock {
                wall_secs: wall.as_secs(),
            });
        };
        let status = exchanged.status.map_err(|_| CompileError::Failed)?;
        if status.success() {
            return read_answer(&exchanged.answer.unwrap_or_default());
        }
        Err(died(
            status,
            &exchanged.diagnostics,
            exchanged.cpu_used,
            cpu_secs,
            settings.memory_bytes,
        ))
    }

    /// Starts a worker for `kind` and `flavor` under `cpu_secs` of CPU and the
    /// memory bound, its three streams piped, killed if dropped.
    fn spawn_worker(
        &self,
        kind: TargetKind,
        flavor: Flavor,
        cpu_secs: u64,
    ) -> Result<tokio::process::Child, CompileError> {
        let settings = &self.settings;
        let mut command = tokio::process::Command::new(&settings.program);
        command
            .arg(WORKER_COMMAND)
            .arg(kind.as_str())
            .arg(cpu_secs.to_string())
            .arg(settings.memory_bytes.to_string());
        // The normal engine's command line is the one it always was.
        if flavor != Flavor::Normal {
            command.arg(flavor.as_str());
        }
        command
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
            })
    }
}

/// What a worker gave back: its stdout, the start of its stderr, how it
/// exited, and the CPU time it used if that could be read.
struct Exchanged {
    answer: std::io::Result<Vec<u8>>,
    diagnostics: Vec<u8>,
    status: std::io::Result<std::process::ExitStatus>,
    cpu_used: Option<Duration>,
}

/// Writes the module to the worker, reads what it answers and says, and reaps
/// it. Dropping this future drops the child, which kills it.
async fn exchange(mut child: tokio::process::Child, bytes: &[u8]) -> Exchanged {
    // Known until the child is reaped, which happens only in `wait` below.
    let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // A worker that dies early closes its stdin: the write fails, and its exit
    // status says why.
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
    // Its CPU time is gone once it is reaped: read it from the zombie.
    let cpu_used = match pid {
        Some(pid) => tokio::task::spawn_blocking(move || cpu_time_at_exit(pid))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let status = child.wait().await;
    Exchanged {
        answer: read.map(|_| answer),
        diagnostics,
        status,
        cpu_used,
    }
}

/// The artifact, or the refusal, a worker that exited normally wrote.
fn read_answer(answer: &[u8]) -> Result<Artifact, CompileError> {
    match answer.split_first() {
        Some((&COMPILED, artifact)) => Ok(Artifact(artifact.to_vec())),
        Some((&REFUSED, reason)) => Err(CompileError::Refused(
            String::from_utf8_lossy(reason).into_owned(),
        )),
        _ => Err(CompileError::Failed),
    }
}

/// Waits until the worker `pid` has exited, without reaping it (`WNOWAIT`), and
/// returns the CPU time it used (user and system, all its threads), which
/// `/proc` keeps for a zombie. `None` if it cannot be read.
fn cpu_time_at_exit(pid: i32) -> Option<Duration> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let pid = Pid::from_raw(pid)?;
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
            Ok(_) => break,
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_time_in_stat(&stat, rustix::param::clock_ticks_per_second())
}

/// `utime + stime` of a `/proc/PID/stat` line (proc(5): fields 14 and 15, in
/// clock ticks). The command name, field 2, may hold spaces and parentheses, so
/// fields are counted after its last `)`.
fn cpu_time_in_stat(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = user.checked_add(system)?;
    Some(Duration::from_millis(
        ticks.checked_mul(1000)? / ticks_per_second.max(1),
    ))
}

/// What a worker's death by `status` says about the module. `cpu_used` is the
/// worker's CPU time as it exited, if it could be read.
///
/// The signals tell the causes apart: the CPU bound sends `SIGXCPU` at
/// `cpu_secs` (the soft limit) and `SIGKILL` a second later (the hard limit);
/// the memory bound makes the allocator abort or the stack fault; our own
/// wall-clock kill never gets here (the exchange is dropped). Any other signal,
/// and a `SIGKILL` before the worker used its CPU time, came from outside (the
/// out-of-memory killer sends `SIGKILL`): the server's failure, not the module's.
fn died(
    status: std::process::ExitStatus,
    diagnostics: &[u8],
    cpu_used: Option<Duration>,
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
    let cpu_spent = cpu_used.is_some_and(|used| used >= Duration::from_secs(cpu_secs));
    match status.signal() {
        Some(SIGXCPU) => CompileError::CpuTime { cpu_secs },
        Some(SIGKILL) if cpu_spent => CompileError::CpuTime { cpu_secs },
        Some(SIGABRT | SIGSEGV | SIGBUS | SIGILL | SIGFPE | SIGTRAP | SIGSYS) | None
            if out_of_memory =>
        {
            CompileError::Memory { memory_bytes }
        }
        Some(SIGABRT | SIGSEGV | SIGBUS | SIGILL | SIGFPE | SIGTRAP | SIGSYS) => {
            // A signal the worker brings on itself, without an allocation
            // failure: a compiler bug this module triggers, every time.
            tracing::error!(?status, "a compile worker died");
            CompileError::Crashed
        }
        Some(signal) => {
            tracing::warn!(
                signal,
                cpu_ms = cpu_used.map(|used| used.as_millis() as u64),
                "a compile worker was killed by a signal none of its bounds sends"
            );
            CompileError::Killed { signal }
        }
        None => {
            tracing::error!(?status, "a compile worker failed");
            CompileError::Failed
        }
    }
}

// Linux's signal numbers (signal(7), x86 and ARM alike).
const SIGILL: i32 = 4;
const SIGTRAP: i32 = 5;
const SIGABRT: i32 = 6;
const SIGBUS: i32 = 7;
const SIGFPE: i32 = 8;
const SIGKILL: i32 = 9;
const SIGSEGV: i32 = 11;
const SIGXCPU: i32 = 24;
const SIGSYS: i32 = 31;

/// The worker's side: `PROGRAM compile-worker module|component CPU_SECS
/// MEMORY_BYTES [normal|deterministic]`, module bytes on stdin, the answer on
/// stdout. Sets its own limits before it reads a byte.
pub fn worker_main(args: &[String]) -> ExitCode {
    let Some((kind, cpu_secs, memory_bytes, flavor)) = worker_args(args) else {
        eprintln!(
            "usage: {WORKER_COMMAND} module|component CPU_SECS MEMORY_BYTES \
             [normal|deterministic]"
        );
        return ExitCode::from(2);
    };
    if let Err(code) = limit_worker(cpu_secs, memory_bytes) {
        return code;
    }
    let mut bytes = Vec::new();
    if let Err(error) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("cannot read the module: {error}");
        return ExitCode::from(3);
    }
    let answer = match compile_here(kind, flavor, &bytes) {
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

/// The worker's arguments after its command: kind, CPU seconds, memory bytes,
/// and the engine's flavor (normal when not given).
fn worker_args(args: &[String]) -> Option<(TargetKind, u64, u64, Flavor)> {
    let [kind, cpu, memory, flavor @ ..] = args else {
        return None;
    };
    let flavor = match flavor {
        [] => Some(Flavor::Normal),
        [word] => Flavor::parse(word),
        _ => None,
    };
    Some((
        TargetKind::parse(kind)?,
        cpu.parse().ok()?,
        memory.parse().ok()?,
        flavor?,
    ))
}

/// Sets the worker's own CPU and address-space limits, or says why it cannot
/// and gives the exit code to end with.
fn limit_worker(cpu_secs: u64, memory_bytes: u64) -> Result<(), ExitCode> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    // The budget is for compiling: on top of what the worker has mapped when it
    // starts (its binary, its libraries, the allocator's first pages).
    let Some(mapped) = mapped_bytes() else {
        eprintln!("cannot read the compile worker's own size");
        return Err(ExitCode::from(3));
    };
    let memory_bytes = mapped.saturating_add(memory_bytes);
    setrlimit(
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
    })
    .map_err(|error| {
        eprintln!("cannot set the compile worker's limits: {error}");
        ExitCode::from(3)
    })
}

/// Bytes of address space this process has mapped (`VmSize`).
fn mapped_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Checks the shape and compiles, in this process, with the worker's engine of
/// `flavor`: what a worker does between reading and writing.
pub fn compile_here(
    kind: TargetKind,
    flavor: Flavor,
    bytes: &[u8],
) -> Result<Vec<u8>, CompileError> {
    match shape::check(bytes) {
        Ok(()) => {}
        // Wasmtime's validator says precisely what is wrong with the binary.
        Err(ShapeError::Malformed(_)) => {}
        Err(error) => return Err(CompileError::Shape(error)),
    }
    let engine =
        engine::worker(flavor).map_err(|error| CompileError::WorkerEngine(Arc::new(error)))?;
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
        let error = compile_here(
            TargetKind::Component,
            Flavor::Normal,
            b"\0asm\x0d\0\x01\0junk",
        )
        .unwrap_err();
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
        assert!(!CompileError::Killed { signal: 9 }.is_cacheable());
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

    /// How a worker that ended with the raw wait status `raw` is judged, with
    /// `cpu_ms` of CPU used against a bound of 60 s.
    fn judged(raw: i32, diagnostics: &str, cpu_ms: Option<u64>) -> CompileError {
        use std::os::unix::process::ExitStatusExt;
        died(
            std::process::ExitStatus::from_raw(raw),
            diagnostics.as_bytes(),
            cpu_ms.map(Duration::from_millis),
            60,
            1 << 30,
        )
    }

    #[test]
    fn a_sigkill_before_the_cpu_bound_is_a_kill_from_outside_and_never_cached() {
        // The out-of-memory killer, 0.1 s into a compilation bounded to 60 s.
        let killed = judged(SIGKILL, "", Some(100));
        assert!(
            matches!(killed, CompileError::Killed { signal: SIGKILL }),
            "{killed:?}"
        );
        assert!(!killed.is_cacheable());
        assert!(killed.to_string().ends_with("retry later"), "{killed}");
        // CPU time unknown: not charged to the module either.
        assert!(matches!(
            judged(SIGKILL, "", None),
            CompileError::Killed { .. }
        ));
        // Any signal none of the bounds sends.
        assert!(matches!(
            judged(15, "", Some(59_000)),
            CompileError::Killed { signal: 15 }
        ));
    }

    #[test]
    fn the_cpu_bound_is_sigxcpu_or_a_sigkill_once_the_cpu_time_is_spent() {
        for (raw, cpu_ms) in [
            (SIGXCPU, Some(60_000)),
            (SIGXCPU, None),
            (SIGKILL, Some(61_000)),
        ] {
            let judged = judged(raw, "", cpu_ms);
            assert!(
                matches!(judged, CompileError::CpuTime { cpu_secs: 60 }),
                "{raw} after {cpu_ms:?} ms: {judged:?}"
            );
            assert!(judged.is_cacheable());
        }
    }

    #[test]
    fn the_memory_bound_and_a_crash_are_the_modules_and_an_exit_code_is_not() {
        let allocation = "memory allocation of 1048576 bytes failed";
        assert!(matches!(
            judged(SIGABRT, allocation, Some(10)),
            CompileError::Memory { .. }
        ));
        assert!(matches!(
            judged(SIGSEGV, "", Some(10)),
            CompileError::Memory { .. }
        ));
        assert!(matches!(
            judged(3 << 8, allocation, Some(10)),
            CompileError::Memory { .. }
        ));
        assert!(matches!(
            judged(SIGABRT, "assertion failed", Some(10)),
            CompileError::Crashed
        ));
        assert!(matches!(judged(3 << 8, "", Some(10)), CompileError::Failed));
    }

    #[test]
    fn cpu_time_is_user_plus_system_counted_after_the_command_names_last_parenthesis() {
        // proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt
        // cminflt majflt cmajflt utime stime ...; a name may hold ") (".
        let stat = "4242 (odd) (name) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 17 0 0 20 0";
        assert_eq!(
            cpu_time_in_stat(stat, 100),
            Some(Duration::from_millis(2_670))
        );
        assert_eq!(cpu_time_in_stat("4242 (cut) S 1", 100), None);
    }

    #[test]
    fn the_cpu_time_of_an_exited_child_is_read_before_it_is_reaped() {
        // A child that burns some CPU, then exits; read from its zombie, then
        // reaped by `wait` as the server does.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        assert!(
            cpu_time_at_exit(child.id() as i32).is_some(),
            "read from the zombie"
        );
        assert!(child.wait().unwrap().success(), "still reapable");
    }
}
