//! One run of a guest, whichever its kind: a fresh store ([`new_store`]) with the
//! run's fuel, memory budget, hostcall fuel and deadline; its pipes; how it ended
//! ([`GuestOutcome`], and for a failure the [`RunError`] that says why, with the
//! classification of Wasmtime's error into it); and the [`RunReport`] handed
//! back. What a run *is* for each kind of guest is in [`super::core`] and
//! [`super::component`], which build on this; [`super::target`] picks one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::wasm_wave::wasm::WasmValue;
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};
use zeroize::Zeroizing;

use super::deadline::{self, DeadlineReached};
use super::engine::{
    DETERMINISTIC_FUEL_PER_MS, DETERMINISTIC_WALL_CLOCK_FACTOR, MAX_MEMORIES, MAX_TABLES,
    MAX_WASM_STACK,
};
use super::fs::{self, MountError, Mounts};
use super::invoke::{self, InvokeError};
use super::limits::{GuestLimiter, GuestLimits, LimitHit, MIN_HOSTCALL_FUEL};
use super::output::CappedOutput;
use super::wasi::{self, GuestInput};

/// What to run.
#[derive(Debug, Clone)]
pub enum Entry {
    /// The guest as a command: `_start`, or `wasi:cli/run` for a component.
    Command,
    /// One export called with arguments: a WAVE call expression, `add(1, 2)`.
    Invoke(String),
}

/// How a run ended.
#[derive(Debug)]
pub enum GuestOutcome {
    /// A command finished: `_start` returned (0), `proc_exit(code)`, or a component's
    /// `run` returned `ok` (0) or `err` (1).
    Exited(i32),
    /// An invoked export returned; `RunReport::returns` has its results.
    Returned,
    /// The run did not finish: a trap, a limit, or a guest that cannot run as asked.
    Failed(RunError),
}

/// Why a run did not finish. The text is for the client (the sealed `error`);
/// `execution` renders it and picks the status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A trap other than the ones below: Wasmtime's text, with a short wasm backtrace.
    #[error("{0:#}")]
    Trap(wasmtime::Error),
    /// The guest used more than [`MAX_WASM_STACK`] of wasm stack.
    #[error(
        "stack overflow: the guest used more than {stack_kib} KiB of wasm stack: {0:#}",
        stack_kib = MAX_WASM_STACK >> 10
    )]
    StackOverflow(wasmtime::Error),
    /// One call passed the host more bytes than the run's hostcall fuel.
    #[error(
        "the guest passed the host more than {fuel} bytes in one call \
         (max_output_bytes, at least {MIN_HOSTCALL_FUEL})"
    )]
    HostcallFuel { fuel: usize },
    /// An invoked export's return values, in WAVE, are larger than `max_output_bytes`.
    #[error(
        "the invoked export's return values are larger than max_output_bytes \
         ({max_output_bytes} bytes)"
    )]
    ReturnsTooLarge { max_output_bytes: usize },
    /// The guest used all of its fuel.
    #[error("the guest used all of its {fuel} units of fuel")]
    OutOfFuel { fuel: u64 },
    /// The guest ran past its wall-clock limit.
    #[error("the guest ran past its {} ms wall-clock limit", .timeout.as_millis())]
    TimedOut { timeout: Duration },
    /// A deterministic guest used the fuel its `timeout_ms` stands for (status
    /// `timeout`).
    #[error(
        "the guest used the {fuel} units of fuel its {} ms timeout allows a deterministic \
         execution ({DETERMINISTIC_FUEL_PER_MS} a millisecond)",
        .timeout.as_millis()
    )]
    FuelTimeout { timeout: Duration, fuel: u64 },
    /// A memory or table grew, or started, past its limit.
    #[error(transparent)]
    MemoryLimit(LimitHit),
    /// The guest does not link against WASI (an import WASI lacks): Wasmtime's text.
    #[error("{0:#}")]
    Unlinkable(Arc<wasmtime::Error>),
    /// A core module defines more than [`MAX_MEMORIES`] memories.
    #[error("the module defines {defined} memories; at most {MAX_MEMORIES} are allowed")]
    TooManyMemories { defined: u32 },
    /// A core module defines more than [`MAX_TABLES`] tables.
    #[error("the module defines {defined} tables; at most {MAX_TABLES} are allowed")]
    TooManyTables { defined: u32 },
    /// A core module run as a command exports no `_start`.
    #[error(
        "module does not export a `_start` function (not a WASI command); name an export \
         with `invoke` to call it"
    )]
    NoStart,
    /// A core module's `_start` is not a function of no parameters and results.
    #[error("`_start` is not a function of type [] -> []")]
    StartNotCommand,
    /// A component run as a command does not export `wasi:cli/run`.
    #[error(
        "the component does not export `wasi:cli/run` (not a WASI command); name an export \
         with `invoke` to call it"
    )]
    NoCliRun,
    /// `invoke` names no export, or its arguments do not fit the export's type.
    #[error(transparent)]
    BadInvoke(#[from] InvokeError),
    /// The mounts' initial contents are over `files_bytes` or
    /// `max_mount_entries` (status `invalid_request`).
    #[error(transparent)]
    Mounts(#[from] MountError),
    /// The host failed (a panic in Wasmtime or a host function: a bug).
    #[error(
        "the host failed while running the guest (a server bug; the server's log has the \
         details)"
    )]
    HostFailure,
}

/// A finished run.
#[derive(Debug)]
pub struct RunReport {
    pub outcome: GuestOutcome,
    /// WAVE-encoded results of an invoked export.
    pub returns: Vec<String>,
    pub stdout: Zeroizing<Vec<u8>>,
    pub stderr: Zeroizing<Vec<u8>>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub fuel_consumed: u64,
    pub wall_time: Duration,
    /// One archive per writable mount, in request order, planned after the
    /// guest ended however it ended, within its bound, and written by whoever
    /// builds the result (see [`fs::MountsOut`]); it holds the mounts' trees
    /// until then (the guest's store is gone).
    pub mounts_out: fs::MountsOut,
}

impl RunReport {
    /// The report of a run the host failed to carry out (a panic): nothing ran
    /// that can be reported.
    pub(super) fn host_failure() -> RunReport {
        RunReport {
            outcome: GuestOutcome::Failed(RunError::HostFailure),
            returns: Vec::new(),
            stdout: Zeroizing::default(),
            stderr: Zeroizing::default(),
            stdout_truncated: false,
            stderr_truncated: false,
            fuel_consumed: 0,
            wall_time: Duration::ZERO,
            mounts_out: fs::MountsOut::default(),
        }
    }
}

/// Per-store data of either kind of guest: what every store needs of it.
pub(super) trait GuestState: Send + 'static {
    fn limiter(&mut self) -> &mut GuestLimiter;
    /// The run's file system, if it has one.
    fn mounts(&self) -> Option<&Mounts>;
}

/// A fresh store for one run, with its limits: `state`'s limiter over memories
/// and tables, `limits.fuel`, the hostcall fuel, and the wall-clock deadline
/// `limits.timeout` from now (the epoch half; the other is the timeout around
/// the run, see [`Run::timeout`]).
pub(super) fn new_store<T: GuestState>(
    engine: &Engine,
    state: T,
    limits: &GuestLimits,
) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| state.limiter());
    store.set_hostcall_fuel(limits.hostcall_fuel());
    store
        .set_fuel(limits.fuel)
        .expect("fuel is enabled in the engine's configuration");
    deadline::arm(&mut store, Instant::now() + limits.timeout);
    store
}

/// A run under way: its store, the pipes the guest writes to, when it started
/// and its limits.
pub(super) struct Run<T: GuestState> {
    pub(super) store: Store<T>,
    stdout: CappedOutput,
    stderr: CappedOutput,
    started: Instant,
    limits: GuestLimits,
    /// A deterministic run whose fuel is its timeout's bound, lower than its
    /// `fuel` limit: running out of it is a `timeout`.
    fuel_is_timeout: bool,
}

impl<T: GuestState> Run<T> {
    /// Capped pipes, the WASI context from `input` into them, the store's data
    /// that `state` makes of that context and a limiter, and a fresh store.
    pub(super) fn new(
        engine: &Engine,
        input: GuestInput,
        limits: GuestLimits,
        state: impl FnOnce(WasiCtxBuilder, GuestLimiter) -> T,
    ) -> Run<T> {
        let stdout = CappedOutput::new(limits.max_output_bytes);
        let stderr = CappedOutput::new(limits.max_output_bytes);
        let deterministic = input.deterministic.is_some();
        let wasi = wasi::context(input, &stdout, &stderr);
        let state = state(wasi, GuestLimiter::new(limits.memory_bytes));
        // Protocol v1.2 §R: a deterministic run's time limit is fuel, and the
        // wall clock only a safety net further away.
        let mut store_limits = limits;
        let mut fuel_is_timeout = false;
        if deterministic {
            let timeout_ms = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX);
            let bound = timeout_ms.saturating_mul(DETERMINISTIC_FUEL_PER_MS);
            fuel_is_timeout = bound < limits.fuel;
            store_limits.fuel = limits.fuel.min(bound);
            store_limits.timeout = limits
                .timeout
                .saturating_mul(DETERMINISTIC_WALL_CLOCK_FACTOR);
        }
        let store = new_store(engine, state, &store_limits);
        Run {
            store,
            stdout,
            stderr,
            started: Instant::now(),
            limits: store_limits,
            fuel_is_timeout,
        }
    }

    /// The wall-clock limit to put around the whole run, instantiation included:
    /// it drops (and so cancels) a guest parked in an async host call such as a
    /// sleep, which the epoch deadline cannot reach.
    pub(super) fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// How a run that Wasmtime ended with `error` ended (see [`classify`]); a
    /// deterministic run out of its timeout's fuel timed out.
    fn classify(&mut self, error: wasmtime::Error) -> GuestOutcome {
        let outcome = classify(error, &self.limits, self.store.data_mut().limiter().hit());
        match outcome {
            GuestOutcome::Failed(RunError::OutOfFuel { fuel }) if self.fuel_is_timeout => {
                GuestOutcome::Failed(RunError::FuelTimeout {
                    timeout: self.limits.timeout / DETERMINISTIC_WALL_CLOCK_FACTOR,
                    fuel,
                })
            }
            other => other,
        }
    }

    /// The outcome of a guest future run under [`Run::timeout`]: its value, or how
    /// it ended otherwise (`proc_exit` included).
    pub(super) fn outcome<R>(
        &mut self,
        result: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
    ) -> Result<R, GuestOutcome> {
        match result {
            Err(_elapsed) => Err(GuestOutcome::Failed(RunError::TimedOut {
                timeout: self.limits.timeout,
            })),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify(error)),
        }
    }

    /// The report of an invoked export: its results in WAVE, or how it failed.
    pub(super) fn finish_invoke<V: WasmValue>(
        mut self,
        result: Result<wasmtime::Result<Vec<V>>, tokio::time::error::Elapsed>,
    ) -> RunReport {
        let results = match self.outcome(result) {
            Ok(results) => results,
            Err(outcome) => return self.finish(outcome),
        };
        match invoke::render_returns(&results, self.limits.max_output_bytes) {
            Some(returns) => self.report(GuestOutcome::Returned, returns),
            None => {
                drop(results);
                let max_output_bytes = self.limits.max_output_bytes;
                self.fail(RunError::ReturnsTooLarge { max_output_bytes })
            }
        }
    }

    /// The report of a run that ended with `outcome` and returned nothing.
    pub(super) fn finish(self, outcome: GuestOutcome) -> RunReport {
        self.report(outcome, Vec::new())
    }

    /// The report of a run that failed with `error`.
    pub(super) fn fail(self, error: RunError) -> RunReport {
        self.finish(GuestOutcome::Failed(error))
    }

    fn report(self, outcome: GuestOutcome, returns: Vec<String>) -> RunReport {
        let wall_time = self.started.elapsed();
        let writable_roots: Vec<_> = self
            .store
            .data()
            .mounts()
            .into_iter()
            .flat_map(|mounts| mounts.mounts())
            .filter(|mount| mount.writable)
            .map(|mount| mount.root.clone())
            .collect();
        let fuel_consumed = self
            .limits
            .fuel
            .saturating_sub(self.store.get_fuel().unwrap_or(0));
        // The guest's memory goes before its mounts' archives are made: the
        // answer is built while only the trees remain of the run.
        drop(self.store);
        let mounts_out = fs::MountsOut::plan(
            writable_roots,
            self.limits.files_bytes,
            self.limits.max_mount_entries,
        );
        RunReport {
            outcome,
            returns,
            stdout: self.stdout.take_contents(),
            stderr: self.stderr.take_contents(),
            stdout_truncated: self.stdout.truncated(),
            stderr_truncated: self.stderr.truncated(),
            fuel_consumed,
            wall_time,
            mounts_out,
        }
    }
}

/// How a run that Wasmtime ended with `error` ended: an exit, a limit the guest
/// ran into (the limiter's record wins over whatever error wraps its refusal),
/// the deadline, fuel, or a trap.
fn classify(error: wasmtime::Error, limits: &GuestLimits, hit: Option<&LimitHit>) -> GuestOutcome {
    // Wasmtime refused to copy more than the hostcall fuel out of the guest (for
    // an invoke, its return values). It has no error type for this; its message
    // is the only sign.
    if format!("{error:#}").contains("fuel allocated for hostcalls") {
        return GuestOutcome::Failed(RunError::HostcallFuel {
            fuel: limits.hostcall_fuel(),
        });
    }
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return GuestOutcome::Exited(exit.0);
    }
    let error = match hit {
        Some(hit) => RunError::MemoryLimit(hit.clone()),
        None if error.downcast_ref::<DeadlineReached>().is_some() => RunError::TimedOut {
            timeout: limits.timeout,
        },
        None => match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => RunError::OutOfFuel { fuel: limits.fuel },
            Some(Trap::Interrupt) => RunError::TimedOut {
                timeout: limits.timeout,
            },
            Some(Trap::StackOverflow) => RunError::StackOverflow(error),
            _ => RunError::Trap(error),
        },
    };
    GuestOutcome::Failed(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GuestLimits {
        GuestLimits {
            fuel: 1000,
            memory_bytes: 1 << 20,
            timeout: Duration::from_millis(250),
            max_output_bytes: 10,
            files_bytes: 0,
            max_mount_entries: 0,
        }
    }

    fn failure(outcome: GuestOutcome) -> String {
        match outcome {
            GuestOutcome::Failed(error) => error.to_string(),
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn wasmtime_errors_are_classified_by_what_ended_the_run() {
        let limits = limits();
        let exit = classify(wasmtime::Error::new(I32Exit(3)), &limits, None);
        assert!(matches!(exit, GuestOutcome::Exited(3)));
        assert_eq!(
            failure(classify(Trap::OutOfFuel.into(), &limits, None)),
            "the guest used all of its 1000 units of fuel"
        );
        assert_eq!(
            failure(classify(DeadlineReached.into(), &limits, None)),
            "the guest ran past its 250 ms wall-clock limit"
        );
        let hit = LimitHit::Table { desired: 2_000_000 };
        assert_eq!(
            failure(classify(Trap::TableOutOfBounds.into(), &limits, Some(&hit))),
            hit.to_string()
        );
        assert!(
            failure(classify(Trap::StackOverflow.into(), &limits, None))
                .starts_with("stack overflow: the guest used more than 512 KiB of wasm stack: ")
        );
        assert_eq!(
            failure(classify(
                wasmtime::Error::msg("exceeded fuel allocated for hostcalls"),
                &limits,
                None
            )),
            "the guest passed the host more than 1048576 bytes in one call \
             (max_output_bytes, at least 1048576)"
        );
    }

    #[test]
    fn fixed_refusals_read_as_before() {
        assert_eq!(
            RunError::TooManyMemories { defined: 3 }.to_string(),
            "the module defines 3 memories; at most 2 are allowed"
        );
        assert_eq!(
            RunError::TooManyTables { defined: 5 }.to_string(),
            "the module defines 5 tables; at most 4 are allowed"
        );
        assert_eq!(
            RunError::ReturnsTooLarge {
                max_output_bytes: 50_000
            }
            .to_string(),
            "the invoked export's return values are larger than max_output_bytes (50000 bytes)"
        );
        assert_eq!(
            RunError::HostFailure.to_string(),
            "the host failed while running the guest (a server bug; the server's log has the \
             details)"
        );
    }
}
