//! The one orchestrator of an execution (protocol §3): admit → take the session →
//! open → read (the protocol's [`Request::read`], once) → resolve (its blobs, in
//! `resolve`) → prepare (module size, mounts, compilation, in `prepare`) → run
//! (the sandbox) → the result document (`result`) → seal → commit → sign → log
//! (`record`). `replay` runs a deterministic request plaintext again through the
//! same steps on this machine, without session, seal or log (protocol v1.2 §R).
//!
//! Errors before the plaintext is recovered are [`ExecutionError`]s, answered in the
//! clear. Once the plaintext is open, every outcome, including an unparsable
//! request, is an execution: it gets an id, a sealed result, a commitment and a
//! durable log record.
//!
//! Where an execution waits: for a guest slot (`Executor::admit`, or for a long
//! job and after a compilation `Executor::wait_for_slot`), for a compilation
//! (`prepare`'s `Executor::compiled`, which gives the slot back meanwhile), and
//! for its guest (`Executor::run_guest`). Each reports a long job's phase there
//! (`async_results::report_phase`; nothing for a synchronous execution).
//!
//! Architecture invariant: the session is taken (and its key destroyed) only after a
//! slot is granted (for a long job, a place in [`AsyncExecutions`]), so a request
//! turned away for overload or a malformed body keeps its session and can be
//! retried unchanged.

mod prepare;
mod record;
mod replay;
mod resolve;
mod result;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::task::TaskTracker;
use uuid::Uuid;
use wasm_hypervisor_protocol::payload::{EffectiveLimits, ExecutionResult};
use wasm_hypervisor_protocol::plaintext::Format;
use wasm_hypervisor_protocol::request::{Ceilings, Refused, Request};

use self::prepare::Prepared;
use self::result::PendingMountsOut;
use crate::access::{ClientKey, Scope};
use crate::answer::{ExecutionReceipt, answer_bound};
use crate::async_results::{AsyncExecutions, AsyncFull, Phase, Withheld, report_phase};
use crate::audit::{AuditError, AuditLog};
use crate::blobs::BlobStores;
use crate::compile_budget::CompileBudgets;
use crate::envelope::{self, Enc, Plaintext, ResponseKeys};
use crate::keys::ServerKey;
use crate::metrics::Metrics;
use crate::sandbox::{RunReport, Sandbox};
use crate::session::{SessionError, SessionStore};
use crate::usage::Usage;

pub use self::replay::{ReplayError, ReplayLimits, replay_locally};

/// Why an `/execute` was refused before its plaintext was recovered (or, for a
/// long job, before it was accepted).
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// The session was never issued, has expired or was already used.
    #[error("unknown, expired or already used session")]
    UnknownSession,
    /// The ciphertext did not open under the session's key.
    #[error("decryption failed")]
    DecryptionFailed,
    /// Every slot is busy and the queue is full or the wait timed out.
    #[error("the server is at capacity")]
    Overloaded { retry_after: Duration },
    /// A long job's answer would put its client's async answers, pending and
    /// kept, over `execution.async_results_bytes_per_client`.
    #[error("the client's async answers would be over its share")]
    TooManyAsyncResults { retry_after: Duration },
    /// The result could not be made durable in the audit log, so it is withheld.
    #[error("the audit log is not writable")]
    LogUnavailable(#[source] AuditError),
    /// The session store (cluster mode's database) cannot be reached; the
    /// session was not used.
    #[error("the session store is unavailable")]
    SessionsUnavailable,
}

/// A session store's refusal, as an execution's.
fn session_error(error: SessionError) -> ExecutionError {
    match error {
        SessionError::Unavailable => ExecutionError::SessionsUnavailable,
        _ => ExecutionError::UnknownSession,
    }
}

/// A full async store, as an execution's refusal: the client's share is its
/// own (429), the rest an overload (503).
fn async_refusal(full: AsyncFull) -> ExecutionError {
    match full {
        AsyncFull::ClientShare { retry_after } => {
            ExecutionError::TooManyAsyncResults { retry_after }
        }
        AsyncFull::Pending | AsyncFull::Bytes => ExecutionError::Overloaded {
            retry_after: Duration::from_secs(1),
        },
    }
}

/// A request as it arrives: which session, the sealed bytes, and whose it is.
#[derive(Clone)]
pub struct SealedExecution {
    pub session_id: Uuid,
    pub enc: Enc,
    pub ciphertext: Vec<u8>,
    /// The client it counts against (its compilation budget).
    pub client: ClientKey,
}

/// An opened request: its plaintext and the keys exported from its HPKE context.
pub(crate) struct Opened {
    plaintext: Plaintext,
    keys: ResponseKeys,
    /// Bytes of the sealed request (its ciphertext, tag included): its client's
    /// bytes in (`usage`).
    sealed_bytes: usize,
    /// Whose request it is: whose usage it counts in.
    client: ClientKey,
}

/// Server-side limits on executions, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionPolicy {
    pub maxima: EffectiveLimits,
    pub max_module_bytes: u64,
    /// Most `args` entries (`limits.max_args`).
    pub max_args: usize,
    /// Most `env` entries (`limits.max_env`).
    pub max_env: usize,
    /// Most bytes of `args` and `env` as the guest sees them
    /// (`limits.max_args_env_bytes`).
    pub max_args_env_bytes: usize,
    pub max_concurrent: usize,
    /// Executions in the compile stage without a guest slot
    /// (`execution.max_queued_compilations`).
    pub max_compiling: usize,
    /// Most files and directories of all mounts together
    /// (`limits.max_mount_entries`).
    pub max_mount_entries: u32,
    /// Bytes of blobs each scope keeps (`blobs.store_bytes`).
    pub blob_store_bytes: usize,
    /// Each client's compilation budget (`clients.compile_seconds_per_hour`).
    pub compile_seconds_per_hour: u64,
    pub max_queued: usize,
    pub queue_timeout: Duration,
}

impl ExecutionPolicy {
    /// The bounds a request plaintext is read under.
    pub fn ceilings(&self) -> Ceilings {
        Ceilings {
            maxima: self.maxima,
            max_args: self.max_args,
            max_env: self.max_env,
            max_args_env_bytes: self.max_args_env_bytes,
        }
    }
}

/// Runs executions; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Arc<dyn SessionStore>,
    key: Arc<ServerKey>,
    sandbox: Sandbox,
    log: AuditLog,
    policy: ExecutionPolicy,
    slots: Arc<Semaphore>,
    /// One per execution in the compile stage (waiting for, or going through, a
    /// compilation, then waiting for a slot to run) without a guest slot
    /// (`execution.max_queued_compilations`).
    compile_tickets: Arc<Semaphore>,
    queued: AtomicUsize,
    /// The most guests ever running at once since start (a high-water mark).
    peak: AtomicUsize,
    metrics: Metrics,
    budgets: CompileBudgets,
    blobs: Arc<BlobStores>,
    /// Each client's usage, counted as its executions are logged.
    usage: Usage,
    /// Taken by the one execution at a time that runs on the runtime that
    /// received it ([`Executor::spawn`]).
    receiving_turn: Arc<AtomicBool>,
}

/// The turn of the execution running on the runtime that received it; given
/// back when the execution's task ends (or is dropped).
struct ReceivingTurn(Arc<AtomicBool>);

impl Drop for ReceivingTurn {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Executor {
    // Each argument is a handle the server also shares with others (the state,
    // the background tasks); a struct of them would only be unpacked here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sessions: Arc<dyn SessionStore>,
        key: Arc<ServerKey>,
        sandbox: Sandbox,
        log: AuditLog,
        policy: ExecutionPolicy,
        metrics: Metrics,
        usage: Usage,
    ) -> Executor {
        Executor {
            inner: Arc::new(Inner {
                sessions,
                key,
                sandbox,
                log,
                slots: Arc::new(Semaphore::new(policy.max_concurrent)),
                compile_tickets: Arc::new(Semaphore::new(policy.max_compiling)),
                queued: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                policy,
                metrics,
                budgets: CompileBudgets::new(policy.compile_seconds_per_hour),
                blobs: Arc::new(BlobStores::new(policy.blob_store_bytes)),
                usage,
                receiving_turn: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// Guests running now.
    pub fn slots_in_use(&self) -> usize {
        self.inner.policy.max_concurrent - self.inner.slots.available_permits()
    }

    /// The most guests that ever ran at once since start.
    pub fn peak_slots_in_use(&self) -> usize {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// Module cache hits and misses since start.
    pub fn module_cache_stats(&self) -> (u64, u64) {
        self.inner.sandbox.cache_stats()
    }

    /// Modules being compiled now (in worker processes).
    pub fn compilations_running(&self) -> usize {
        self.inner.sandbox.compilations_running()
    }

    /// Requests waiting for a slot now.
    pub fn queue_depth(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Where executions must run (see [`Sandbox::runtime`]).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.inner.sandbox.runtime()
    }

    /// Spawns an execution's task on `tracker`: on the runtime that calls this
    /// (and so, from one of its workers, on that very thread: no hand-off to wake
    /// another thread, there or back) when no guest is running and no other
    /// execution has that turn; otherwise on [`Executor::runtime`].
    ///
    /// At low load that saves the two thread hand-offs per execution, which
    /// cost a single client more than its guest and its P-256 work. Only one
    /// execution at a time takes it, and only on a runtime of two or more
    /// workers, so a worker of the receiving runtime (the one serving
    /// `/health`) is always free of executions (their P-256 work, guest and
    /// the log's `fdatasync`); under load, executions run on the guest runtime
    /// as before.
    pub fn spawn<F>(&self, tracker: &TaskTracker, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.receiving_turn() {
            Some(turn) => tracker.spawn(async move {
                let _turn = turn;
                task.await
            }),
            None => tracker.spawn_on(task, self.runtime()),
        }
    }

    /// The turn to run on the calling runtime (see [`Executor::spawn`]), if it
    /// is free, no guest is running and the calling runtime has another worker.
    fn receiving_turn(&self) -> Option<ReceivingTurn> {
        let here = tokio::runtime::Handle::try_current().ok()?;
        if here.metrics().num_workers() < 2 || self.slots_in_use() > 0 {
            return None;
        }
        let turn = &self.inner.receiving_turn;
        turn.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(ReceivingTurn(turn.clone()))
    }

    pub fn log(&self) -> &AuditLog {
        &self.inner.log
    }

    /// The blob stores (protocol v1.1 §D).
    pub fn blobs(&self) -> &BlobStores {
        &self.inner.blobs
    }

    /// Runs one sealed request end to end. Callers should run this on its own task
    /// (see `api`): once the plaintext is open, the execution must finish and be
    /// logged even if the client goes away. That task belongs on
    /// [`Executor::runtime`]: the log append may block its thread for a sync.
    pub async fn execute(
        &self,
        sealed: SealedExecution,
    ) -> Result<ExecutionReceipt, ExecutionError> {
        // A slot free at once: nothing waits and no queue can refuse, so the
        // live check would protect nothing (the take refuses a dead session
        // alike) and is skipped: in cluster mode it is a database round trip.
        let slot = match self.free_slot() {
            Some(slot) => slot,
            None => {
                self.check_session(&sealed.session_id).await?;
                self.admit().await?
            }
        };
        self.note_peak();
        let client = sealed.client;
        let opened = self.open(sealed).await?;
        let execution_id = Uuid::new_v4();
        let reading = read(&opened.plaintext, &self.inner.policy.ceilings());
        self.carry_out(execution_id, &opened, reading, slot, client)
            .await
    }

    /// As [`Executor::execute`] for a request with `Prefer: respond-async`
    /// (protocol v1.1 §F). Admission is a place in `results` instead of a slot
    /// (refused, like a full queue, before the session is used); once the
    /// plaintext opens, the largest answer it can produce ([`answer_bound`]) is
    /// reserved in `results` for its client (refused, with the session used,
    /// when it does not fit), `accepted` receives the execution id, and the
    /// execution then waits for a slot as long as it takes (it was accepted: no
    /// `queue_timeout_ms`), runs, is sealed, committed and logged, and its answer
    /// is kept in `results`. A dropped `accepted` means nothing: the execution
    /// still finishes.
    pub async fn execute_async(
        &self,
        sealed: SealedExecution,
        results: &AsyncExecutions,
        accepted: oneshot::Sender<Uuid>,
    ) -> Result<ExecutionReceipt, ExecutionError> {
        // Dropped (and so given back) if the session or decryption fails. A
        // refused place is answered as a dead session if the session is one
        // (as if checked first); a granted one needs no check: the take
        // refuses a dead session alike.
        let ticket = match results.reserve(sealed.client) {
            Ok(ticket) => ticket,
            Err(full) => {
                self.check_session(&sealed.session_id).await?;
                return Err(async_refusal(full));
            }
        };
        let client = sealed.client;
        let opened = self.open(sealed).await?;
        let execution_id = Uuid::new_v4();
        let reading = read(&opened.plaintext, &self.inner.policy.ceilings());
        // Owned by this task from here: a panic or an abort records a withheld
        // answer instead of leaving the entry queued for ever. A bound that does
        // not fit is refused now, in the clear: the session is used, but
        // nothing ran and nothing is logged.
        let bound = answer_bound_of(&opened.plaintext, &reading, &self.inner.policy);
        let entry = ticket
            .register(execution_id, bound)
            .map_err(async_refusal)?;
        let _ = accepted.send(execution_id);
        let slot = self.wait_for_slot().await;
        entry.mark_running();
        let carried_out = self.carry_out(execution_id, &opened, reading, slot, client);
        let outcome = entry.reporting_phases(carried_out).await;
        entry.finish(match &outcome {
            Ok(receipt) => Ok(receipt.clone()),
            Err(ExecutionError::LogUnavailable(_)) => Err(Withheld::LogUnavailable),
            Err(_) => Err(Withheld::Internal),
        });
        outcome
    }

    /// Refuses a session that is not live, before anything waits or is used
    /// (only needed when something would: see `execute`).
    async fn check_session(&self, session_id: &Uuid) -> Result<(), ExecutionError> {
        let live = self
            .inner
            .sessions
            .is_live(session_id)
            .await
            .map_err(session_error)?;
        if live {
            Ok(())
        } else {
            Err(ExecutionError::UnknownSession)
        }
    }

    /// Takes the session out of the store (its key leaves memory with this
    /// attempt) and opens the request (in place: the plaintext is the ciphertext's
    /// buffer).
    async fn open(&self, sealed: SealedExecution) -> Result<Opened, ExecutionError> {
        let SealedExecution {
            session_id,
            enc,
            ciphertext,
            client,
        } = sealed;
        let secret = self
            .inner
            .sessions
            .take(&session_id)
            .await
            .map_err(session_error)?;
        let sealed_bytes = ciphertext.len();
        let envelope::OpenedRequest {
            mut plaintext,
            keys,
        } = envelope::open_request(secret, &session_id, &enc, ciphertext)
            .map_err(|_| ExecutionError::DecryptionFailed)?;
        Ok(Opened {
            // Moved, not copied: what is left in `plaintext` is an empty vector.
            plaintext: Plaintext::new(std::mem::take(&mut *plaintext)),
            keys,
            sealed_bytes,
            client,
        })
    }

    /// Everything after the plaintext opened and was read: run (holding
    /// `slot`), then seal, commit, sign, log.
    async fn carry_out(
        &self,
        execution_id: Uuid,
        opened: &Opened,
        reading: Reading<'_>,
        slot: OwnedSemaphorePermit,
        client: ClientKey,
    ) -> Result<ExecutionReceipt, ExecutionError> {
        let started = Instant::now();
        // From here on the plaintext is open: whatever happens, including a panic
        // while preparing or running the guest, must end as a logged execution.
        // `run` gives the slot back while it waits for a compilation, and takes
        // one again to run the guest; it holds none when it returns (or panics).
        let ran =
            AssertUnwindSafe(self.run(execution_id, &opened.plaintext, reading, slot, client))
                .catch_unwind()
                .await;
        let (result, mounts_out) = match ran {
            Ok(ran) => ran,
            Err(_panic) => {
                tracing::error!(%execution_id, "preparing or running an execution panicked");
                let maxima = self.inner.policy.maxima;
                (result::host_failure(execution_id, maxima), None)
            }
        };
        self.record(execution_id, opened, result, mounts_out, started)
            .await
    }

    /// From the request as read to its result document: resolve its blobs,
    /// prepare it, run its guest. Holds `slot` while the guest runs (`prepare`
    /// gives it back during a compilation). A guest that ran with writable
    /// mounts leaves their archives, not yet written, in the second value.
    async fn run(
        &self,
        execution_id: Uuid,
        plaintext: &Plaintext,
        reading: Reading<'_>,
        slot: OwnedSemaphorePermit,
        client: ClientKey,
    ) -> (ExecutionResult, Option<PendingMountsOut>) {
        // Fault injection for the crash-isolation test; compiled out of every build
        // but the crate's own unit tests.
        #[cfg(test)]
        if **plaintext == *tests::PANIC_TRIGGER {
            panic!("a panic injected by a test");
        }
        let inner = &self.inner;
        let maxima = inner.policy.maxima;
        let store = inner.blobs.scope(Scope::of(client));
        let request = match reading {
            Reading::Request(request) => request,
            Reading::Refused(refused) => {
                let result = result::refused_request(execution_id, maxima, &refused);
                resolve::receive_refused(&store, &inner.metrics, refused.read);
                return (result, None);
            }
            Reading::Panicked => return (result::host_failure(execution_id, maxima), None),
        };
        let mut result = result::for_request(execution_id, &request);
        let limits = request.limits;
        let resolved = match resolve::resolve(&store, &inner.metrics, request, plaintext) {
            Ok(resolved) => resolved,
            Err(resolve::Missing(hashes)) => return (result::missing_blobs(result, hashes), None),
        };
        let mut ready = match self.prepare(resolved, limits, slot, client).await {
            Ok(ready) => ready,
            Err(refusal) => {
                return (
                    result::refused_with(result, refusal.status(), refusal),
                    None,
                );
            }
        };
        let writable = std::mem::take(&mut ready.writable);
        let report = self.run_guest(ready).await;
        let mounts_out = result::fill_from_report(&mut result, report, writable);
        (result, mounts_out)
    }

    /// Runs a prepared guest in its slot, given back when the guest ends.
    async fn run_guest(&self, ready: Prepared) -> RunReport {
        report_phase(Phase::Running);
        let Prepared {
            target,
            slot,
            entry,
            input,
            mounts,
            limits,
            ..
        } = ready;
        let report = self
            .inner
            .sandbox
            .run(target, entry, input, mounts, limits)
            .await;
        drop(slot);
        report
    }

    /// Records the number of guests running now if it is a new high.
    fn note_peak(&self) {
        self.inner
            .peak
            .fetch_max(self.slots_in_use(), Ordering::Relaxed);
    }

    /// A guest slot if one is free now, without waiting.
    fn free_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.slots.clone().try_acquire_owned().ok()
    }

    /// Waits for a guest slot: at once if one is free, otherwise in a queue bounded
    /// in length and in time.
    async fn admit(&self) -> Result<OwnedSemaphorePermit, ExecutionError> {
        let inner = &self.inner;
        if let Some(permit) = self.free_slot() {
            return Ok(permit);
        }
        let overloaded = ExecutionError::Overloaded {
            retry_after: Duration::from_secs(1),
        };
        if inner.queued.fetch_add(1, Ordering::AcqRel) >= inner.policy.max_queued {
            inner.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded);
        }
        let waited = tokio::time::timeout(
            inner.policy.queue_timeout,
            inner.slots.clone().acquire_owned(),
        )
        .await;
        inner.queued.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(overloaded),
        }
    }

    /// Waits for a guest slot as long as it takes: for an execution already
    /// accepted (a long job, or one that gave its slot back to compile).
    async fn wait_for_slot(&self) -> OwnedSemaphorePermit {
        report_phase(Phase::Queued);
        let slot = self
            .inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        report_phase(Phase::Running);
        self.note_peak();
        slot
    }
}

/// An opened plaintext, read once.
enum Reading<'a> {
    /// A request that passed its own checks.
    Request(Request<'a>),
    /// A request its own checks refused (`invalid_request`).
    Refused(Refused<'a>),
    /// Reading it panicked (a bug): the execution ends as a host failure, as a
    /// panic while running does.
    Panicked,
}

/// Reads `plaintext` under `ceilings`. The plaintext is open: even a panic
/// here must end as a logged execution, so it is caught.
fn read<'a>(plaintext: &'a Plaintext, ceilings: &Ceilings) -> Reading<'a> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| Request::read(plaintext, ceilings))) {
        Ok(Ok(request)) => Reading::Request(request),
        Ok(Err(refused)) => Reading::Refused(*refused),
        Err(_panic) => {
            tracing::error!("reading a request plaintext panicked");
            Reading::Panicked
        }
    }
}

/// [`answer_bound`] of a request as read, at its limits in force and with its
/// writable mounts. A refused request (or one whose reading panicked) is
/// answered with a result without output or mounts, which the bound at its
/// limits, or else the server's maxima, without mounts covers.
fn answer_bound_of(plaintext: &[u8], reading: &Reading<'_>, policy: &ExecutionPolicy) -> u64 {
    let (limits, writable_mounts) = match reading {
        Reading::Request(request) => (request.limits, request.has_writable_mounts()),
        Reading::Refused(refused) => (refused.limits.unwrap_or(policy.maxima), false),
        Reading::Panicked => (policy.maxima, false),
    };
    answer_bound(
        &limits,
        policy.max_mount_entries,
        writable_mounts,
        Format::of(plaintext),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Provider;
    use crate::sandbox::SandboxSettings;
    use crate::session::MemorySessionStore;
    use wasm_hypervisor_protocol::payload::{ExecutionRequest, MountRequest, Status};
    use wasm_hypervisor_protocol::plaintext;

    /// A request plaintext that makes `run` panic (see there).
    pub(super) const PANIC_TRIGGER: &[u8] = b"\"panic in the host\"";

    fn policy() -> ExecutionPolicy {
        ExecutionPolicy {
            maxima: EffectiveLimits {
                fuel: 1_000_000,
                memory_bytes: 1 << 20,
                timeout_ms: 1000,
                max_output_bytes: 1024,
                files_bytes: Some(1 << 20),
            },
            max_module_bytes: 1 << 20,
            max_mount_entries: 1000,
            blob_store_bytes: 1 << 20,
            max_args: 16,
            max_env: 16,
            max_args_env_bytes: 1024,
            max_concurrent: 2,
            max_compiling: 2,
            compile_seconds_per_hour: 0,
            max_queued: 0,
            queue_timeout: Duration::from_millis(100),
        }
    }

    #[test]
    fn a_long_job_reserves_the_bound_of_its_own_limits_and_writable_mounts() {
        let policy = policy();
        let maxima = policy.maxima;
        let entries = policy.max_mount_entries;
        let bound = |plaintext: &[u8]| {
            let opened = Plaintext::new(plaintext.to_vec());
            let reading = read(&opened, &policy.ceilings());
            answer_bound_of(plaintext, &reading, &policy)
        };
        let hash = "00".repeat(32);
        let json = format!(
            r#"{{"module":"AGFzbQEAAAA=","limits":{{"max_output_bytes":10}},
            "mounts":[{{"path":"/a","writable":true}},{{"path":"/b","tar_sha256":"{hash}"}},
                      {{"path":"/c","writable":true}}],"stdin":"aGk="}}"#
        );
        let lowered = EffectiveLimits {
            max_output_bytes: 10,
            ..maxima
        };
        assert_eq!(
            bound(json.as_bytes()),
            answer_bound(&lowered, entries, true, Format::Json)
        );
        let request = ExecutionRequest {
            module: Some("AGFzbQEAAAA=".to_owned()),
            mounts: vec![MountRequest {
                path: "/out".to_owned(),
                writable: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let cbor = plaintext::encode_request(&request).unwrap();
        assert_eq!(
            bound(&cbor),
            answer_bound(&maxima, entries, true, Format::Cbor)
        );
        // What does not parse, or asks for more than the maxima, is answered
        // with a small `invalid_request`: the bound at the maxima covers it.
        for refused in [&b"not json"[..], br#"{"limits":{"fuel":1e99}}"#] {
            assert_eq!(
                bound(refused),
                answer_bound(&maxima, entries, false, Format::Json)
            );
        }
        let above = br#"{"module":"","limits":{"max_output_bytes":999999999}}"#;
        assert_eq!(
            bound(above),
            answer_bound(&maxima, entries, false, Format::Json)
        );
        // One refused after its limits applied: the bound at those, without
        // its writable mounts (a refused request has no `mounts_out`).
        let nul = br#"{"module":"","limits":{"max_output_bytes":10},"args":["\u0000"],
            "mounts":[{"path":"/a","writable":true}]}"#;
        assert_eq!(
            bound(nul),
            answer_bound(&lowered, entries, false, Format::Json)
        );
    }

    /// A memory session store that counts its live checks.
    struct CountingStore {
        sessions: Arc<MemorySessionStore>,
        live_checks: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SessionStore for CountingStore {
        fn provider(&self) -> Provider {
            self.sessions.provider()
        }
        fn ttl(&self) -> Duration {
            self.sessions.ttl()
        }
        fn pending(&self) -> usize {
            self.sessions.pending()
        }
        async fn create_batch_for(
            &self,
            client: ClientKey,
            count: usize,
        ) -> Result<Vec<crate::session::IssuedSession>, SessionError> {
            SessionStore::create_batch_for(&*self.sessions, client, count).await
        }
        async fn is_live(&self, id: &Uuid) -> Result<bool, SessionError> {
            self.live_checks.fetch_add(1, Ordering::Relaxed);
            Ok(self.sessions.is_live(id))
        }
        async fn take(&self, id: &Uuid) -> Result<crate::envelope::SessionSecret, SessionError> {
            self.sessions.take(id)
        }
        async fn sweep(&self, now: Instant) -> Option<Instant> {
            self.sessions.sweep(now)
        }
    }

    async fn executor(dir: &std::path::Path) -> (Executor, Arc<MemorySessionStore>) {
        let (executor, counting) = executor_with(dir, policy()).await;
        (executor, counting.sessions.clone())
    }

    async fn executor_with(
        dir: &std::path::Path,
        policy: ExecutionPolicy,
    ) -> (Executor, Arc<CountingStore>) {
        let provider = Provider::default();
        let key = Arc::new(ServerKey::from_scalar(provider, &[7; 32]).unwrap());
        let (log, _) = AuditLog::open(dir, "test/log", key.clone()).unwrap();
        let sessions = Arc::new(CountingStore {
            sessions: Arc::new(MemorySessionStore::new(
                provider,
                Duration::from_secs(60),
                10,
            )),
            live_checks: AtomicUsize::new(0),
        });
        let sandbox = Sandbox::new(SandboxSettings {
            max_concurrent: 2,
            module_cache_bytes: 1 << 20,
            guest_threads: 1,
            // These tests send nothing that reaches the compiler.
            compiler: crate::sandbox::compiler::CompilerSettings {
                program: "/nonexistent/compile-worker".into(),
                slots: 1,
                cpu: Duration::from_secs(1),
                memory_bytes: 1 << 30,
            },
        })
        .unwrap();
        (
            Executor::new(
                sessions.clone(),
                key,
                sandbox,
                log,
                policy,
                crate::metrics::Metrics::new(),
                Usage::new(crate::usage::UsageSettings {
                    per_hour: Default::default(),
                    per_day: Default::default(),
                    max_tracked: 16,
                }),
            ),
            sessions,
        )
    }

    async fn sealed(sessions: &MemorySessionStore, plaintext: &[u8]) -> SealedExecution {
        let session = sessions.create().unwrap();
        let provider = sessions.provider();
        let sealed =
            envelope::seal_request(provider, &session.public_key, &session.id, plaintext).unwrap();
        SealedExecution {
            session_id: session.id,
            enc: Enc::parse(provider, &sealed.enc).unwrap(),
            ciphertext: sealed.ciphertext,
            client: ClientKey::address(std::net::Ipv4Addr::LOCALHOST.into()),
        }
    }

    fn thread_name() -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_server_runs_one_execution_at_a_time_where_it_was_received() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, _) = executor(dir.path()).await;
        let tracker = TaskTracker::new();
        let (release, held) = oneshot::channel::<()>();
        let first = executor.spawn(&tracker, async move {
            let name = thread_name();
            let _ = held.await;
            name
        });
        // The first holds the turn: the next goes to the guest runtime.
        let second = executor.spawn(&tracker, async { thread_name() });
        assert_eq!(second.await.unwrap().as_deref(), Some("guest"));
        release.send(()).unwrap();
        let first = first.await.unwrap();
        assert!(first.is_some_and(|name| name != "guest"), "on this runtime");
        // Given back when the first ended, but not taken while a guest runs.
        let slot = executor.admit().await.unwrap();
        let busy = executor.spawn(&tracker, async { thread_name() });
        assert_eq!(busy.await.unwrap().as_deref(), Some("guest"));
        drop(slot);
        let idle = executor.spawn(&tracker, async { thread_name() });
        assert_ne!(idle.await.unwrap().as_deref(), Some("guest"));
        executor.log().close().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_runtime_of_one_worker_never_runs_an_execution_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, _) = executor(dir.path()).await;
        let task = executor.spawn(&TaskTracker::new(), async { thread_name() });
        assert_eq!(task.await.unwrap().as_deref(), Some("guest"));
        executor.log().close().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_panic_after_the_plaintext_is_open_is_still_a_logged_execution() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, sessions) = executor(dir.path()).await;
        let receipt = executor
            .execute(sealed(&sessions, PANIC_TRIGGER).await)
            .await
            .unwrap();
        assert_eq!(receipt.status, Status::Trap);
        assert_eq!(receipt.log_index, 0);
        assert_eq!(executor.log().size(), 1);
        assert_eq!(executor.slots_in_use(), 0, "the slot was released");
        // The executor goes on serving.
        let module = wasm_hypervisor_protocol::payload::encode_base64(b"not a wasm binary");
        let request = format!(r#"{{"module":"{module}"}}"#);
        let next = executor
            .execute(sealed(&sessions, request.as_bytes()).await)
            .await
            .unwrap();
        assert_eq!(
            next.status,
            Status::InvalidModule,
            "a binary without the wasm header"
        );
        assert_eq!(next.log_index, 1);
        executor.log().close().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_async_execution_says_its_id_once_open_and_keeps_its_answer() {
        use crate::async_results::{Answer, AsyncSettings, View};
        let dir = tempfile::tempdir().unwrap();
        let (executor, sessions) = executor(dir.path()).await;
        let results = AsyncExecutions::in_memory(AsyncSettings {
            retention: Duration::from_secs(600),
            max_pending: 1,
            max_bytes: 1 << 20,
            max_bytes_per_client: 1 << 20,
        });
        let sealed_request = sealed(&sessions, b"{}").await;
        // A place is taken: refused before the session is used.
        let taken = results.reserve(sealed_request.client).unwrap();
        let (accepted, _) = oneshot::channel();
        let refused = executor
            .execute_async(sealed_request.clone(), &results, accepted)
            .await;
        assert!(matches!(refused, Err(ExecutionError::Overloaded { .. })));
        assert!(sessions.is_live(&sealed_request.session_id));
        // A dead session is refused as such, with a place or without.
        let used = sealed(&sessions, b"{}").await;
        sessions.take(&used.session_id).unwrap();
        let (accepted, _) = oneshot::channel();
        let refused = executor
            .execute_async(used.clone(), &results, accepted)
            .await;
        assert!(matches!(refused, Err(ExecutionError::UnknownSession)));
        drop(taken);
        let (accepted, _) = oneshot::channel();
        let refused = executor.execute_async(used, &results, accepted).await;
        assert!(matches!(refused, Err(ExecutionError::UnknownSession)));

        let (accepted, opened) = oneshot::channel();
        let receipt = executor
            .execute_async(sealed_request, &results, accepted)
            .await
            .unwrap();
        assert_eq!(opened.await.unwrap(), receipt.execution_id);
        assert_eq!(
            receipt.status,
            Status::InvalidRequest,
            "`{{}}` has no module"
        );
        match results.get(&receipt.execution_id, Scope::Open) {
            Some(View::Done(Answer::Kept(kept))) => assert_eq!(kept.ciphertext, receipt.ciphertext),
            _ => panic!("the answer is kept"),
        }
        assert_eq!(results.counts().pending, 0);
        assert_eq!(executor.log().size(), 1);
        executor.log().close().await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_free_slot_needs_no_live_check_and_a_busy_one_checks_first() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, store) = executor_with(dir.path(), policy()).await;
        let sessions = &store.sessions;
        let receipt = executor
            .execute(sealed(sessions, b"{}").await)
            .await
            .unwrap();
        assert_eq!(receipt.status, Status::InvalidRequest);
        assert_eq!(
            store.live_checks.load(Ordering::Relaxed),
            0,
            "a free slot: the take alone refuses a dead session"
        );
        // Every slot busy, no queue: a live session is turned away and kept.
        let held = [
            executor.admit().await.unwrap(),
            executor.admit().await.unwrap(),
        ];
        let request = sealed(sessions, b"{}").await;
        let refused = executor.execute(request.clone()).await;
        assert!(matches!(refused, Err(ExecutionError::Overloaded { .. })));
        assert_eq!(store.live_checks.load(Ordering::Relaxed), 1);
        assert!(sessions.is_live(&request.session_id), "not used");
        drop(held);
        executor.log().close().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_dead_session_is_refused_as_such_before_it_would_wait_or_be_turned_away() {
        for max_queued in [0, 1] {
            let dir = tempfile::tempdir().unwrap();
            // A queue that would wait an hour, or none at all.
            let policy = ExecutionPolicy {
                max_queued,
                queue_timeout: Duration::from_secs(3600),
                ..policy()
            };
            let (executor, store) = executor_with(dir.path(), policy).await;
            let sessions = &store.sessions;
            let used = sealed(sessions, b"{}").await;
            sessions.take(&used.session_id).unwrap();
            let held = [
                executor.admit().await.unwrap(),
                executor.admit().await.unwrap(),
            ];
            let refused =
                tokio::time::timeout(Duration::from_secs(30), executor.execute(used.clone()))
                    .await
                    .expect("refused without waiting for a slot");
            assert!(
                matches!(refused, Err(ExecutionError::UnknownSession)),
                "queue of {max_queued}: {refused:?}"
            );
            assert_eq!(executor.queue_depth(), 0);
            // The same with a slot free: the take refuses it.
            drop(held);
            let refused = executor.execute(used).await;
            assert!(matches!(refused, Err(ExecutionError::UnknownSession)));
            assert_eq!(executor.log().size(), 0, "nothing ran");
            executor.log().close().await;
        }
    }
}
