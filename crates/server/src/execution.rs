//! The one orchestrator of an execution: admit → take session → open → run →
//! seal → commit → sign → log (protocol §3).
//!
//! Errors before the plaintext is recovered are [`ExecutionError`]s, answered in the
//! clear. Once the plaintext is open, every outcome, including an unparsable
//! request, is an execution: it gets an id, a sealed result, a commitment and a
//! durable log record.
//!
//! Architecture invariant: the session is taken (and its key destroyed) only after a
//! slot is granted (for a long job, a place in [`AsyncExecutions`]), so a request
//! turned away for overload or a malformed body keeps its session and can be
//! retried unchanged.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::FutureExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use uuid::Uuid;

use zeroize::{Zeroize, Zeroizing};

use crate::access::{ClientKey, Scope};
use crate::async_results::{AsyncExecutions, AsyncFull, Withheld};
use crate::audit::{AuditError, AuditLog, LogRecord};
use crate::blobs::{Blob, BlobStore, BlobStores};
use crate::compile_budget::{BudgetError, CompileBudgets};
use crate::envelope::{self, Enc, Plaintext, ResponseKeys};
use crate::keys::ServerKey;
use crate::metrics::Metrics;
use crate::sandbox::compiler::CompileError;
use crate::sandbox::fs::{ArchiveError, MountsOut, TreeArchive, archive::mounts_out_bound};
use crate::sandbox::wasi::InputError;
use crate::sandbox::{
    self, Entry, GuestInput, GuestLimits, GuestOutcome, MountError, MountSpec, RunError, RunReport,
    RunTarget, Sandbox,
};
use crate::session::{SessionError, SessionStore};
use wasm_hypervisor_protocol::cbor::CborError;
use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::payload::{
    self, EffectiveLimits, ExecutionRequest, ExecutionResult, LimitError, MAX_MOUNT_PATH_BYTES,
    MAX_MOUNTS, MountPathError, MountRequest, Status,
};
use wasm_hypervisor_protocol::plaintext::{
    self, ArchiveSource, Format, RequestBytes, StreamedMount,
};

/// The longest `error` a result carries, in bytes: a longer text (a trap's
/// backtrace through functions with long names, an import's name) is cut at a
/// character boundary and ends with `…`, so that [`answer_bound`] holds whatever
/// a module names.
pub const MAX_ERROR_BYTES: usize = 65_536;

/// Room in [`answer_bound`] for every field of the result but the output, the
/// `returns`, the `error` and `mounts_out`: keys and punctuation, the ids and
/// hashes, numbers at their longest, the engine, at most 17 `missing_blobs`
/// (checked by `answer_bound_holds_for_the_worst_result`).
const FIXED_FIELDS_BYTES: u64 = 4096;

/// The largest answer an execution can produce: its result plaintext, sealed
/// (the 16-byte AES-GCM tag included), for the effective `limits`, the
/// server's `max_mount_entries`, whether the request has a writable mount, and
/// the plaintext's `format`. It counts stdout and stderr at `max_output_bytes`
/// each, `returns` at `max_output_bytes` of WAVE text, an `error` of
/// [`MAX_ERROR_BYTES`], every other field at its longest, and with a writable
/// mount `mounts_out` at its bound ([`mounts_out_bound`]: `files_bytes` +
/// 1,024 bytes per entry and per archive, for [`MAX_MOUNTS`] archives) with
/// their paths; in JSON every byte field as base64 (4/3) and every text at its
/// worst escaping. The result is built in one buffer of at most this size,
/// which then holds its ciphertext: the memory an execution's answer takes.
pub fn answer_bound(
    limits: &EffectiveLimits,
    max_mount_entries: u32,
    writable_mounts: bool,
    format: Format,
) -> u64 {
    let output = limits.max_output_bytes;
    // A byte string of `n` bytes, and a text of `n` bytes, each with its
    // framing: in JSON base64 in quotes, and a text where every byte may need
    // `\u00XX`; in CBOR the bytes after a head of at most 9.
    let bytes = |n: u64| match format {
        Format::Json => n.div_ceil(3).saturating_mul(4).saturating_add(2),
        Format::Cbor => n.saturating_add(9),
    };
    let text = |n: u64| match format {
        Format::Json => n.saturating_mul(6).saturating_add(2),
        Format::Cbor => n.saturating_add(9),
    };
    // WAVE text escapes every control character, so JSON escapes only its `"`
    // and `\`: each value of L >= 1 bytes is at most 2L + 3 with its quotes and
    // comma (5 bytes a byte at worst); in CBOR L + a head no longer than L.
    let returns = match format {
        Format::Json => output.saturating_mul(5).saturating_add(2),
        Format::Cbor => output.saturating_mul(2).saturating_add(9),
    };
    let mut bound = FIXED_FIELDS_BYTES
        .saturating_add(bytes(output).saturating_mul(2))
        .saturating_add(returns)
        .saturating_add(text(MAX_ERROR_BYTES as u64));
    if writable_mounts {
        let archives = MAX_MOUNTS as u64;
        let total = mounts_out_bound(
            limits.files_bytes.unwrap_or(0),
            u64::from(max_mount_entries),
            archives,
        );
        // Each archive's bytes (base64 pads each one to 4), its path, and the
        // keys and punctuation around them.
        let per_archive = bytes(0) + 2 + text(MAX_MOUNT_PATH_BYTES as u64) + 32;
        bound = bound
            .saturating_add(bytes(total))
            .saturating_add(archives.saturating_mul(per_archive));
    }
    bound.saturating_add(wasm_hypervisor_protocol::hpke::NT as u64)
}

/// The smallest [`answer_bound`] of any request (no output, no writable mount,
/// CBOR): what an async execution reserves at least (checked against
/// [`answer_bound`] by `the_smallest_answer_bound_is_the_bound_of_a_request_with_no_output`).
pub const SMALLEST_ANSWER_BOUND: u64 = FIXED_FIELDS_BYTES
    + 2 * 9
    + 9
    + (MAX_ERROR_BYTES as u64 + 9)
    + wasm_hypervisor_protocol::hpke::NT as u64;

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

/// What a long job's admission reads of its plaintext: its `limits` and which
/// mounts are writable, and nothing else (every other field is skipped, not
/// decoded).
#[derive(serde::Deserialize)]
struct RequestShape {
    #[serde(default)]
    limits: Option<payload::RequestedLimits>,
    #[serde(default)]
    mounts: Vec<MountShape>,
}

#[derive(serde::Deserialize)]
struct MountShape {
    #[serde(default)]
    writable: bool,
}

/// [`answer_bound`] of an opened request, at its effective limits. A request
/// that does not parse, or whose limits are refused, is answered with an
/// `invalid_request` result, smaller than the bound at the server's maxima
/// without mounts, which it gets.
fn answer_bound_of(plaintext: &[u8], policy: &ExecutionPolicy) -> u64 {
    let format = Format::of(plaintext);
    let shape = match format {
        Format::Json => serde_json::from_slice::<RequestShape>(plaintext)
            .ok()
            .map(|shape| {
                let writable = shape.mounts.iter().filter(|mount| mount.writable).count();
                (shape.limits, writable)
            }),
        Format::Cbor => plaintext::decode_request(plaintext)
            .ok()
            .map(|(request, _)| {
                let writable = request.mounts.iter().filter(|mount| mount.writable).count();
                (request.limits, writable)
            }),
    };
    let (limits, writable_mounts) = shape
        .and_then(|(requested, count)| {
            EffectiveLimits::apply(policy.maxima, requested)
                .ok()
                .map(|limits| (limits, count))
        })
        .unwrap_or((policy.maxima, 0));
    answer_bound(
        &limits,
        policy.max_mount_entries,
        writable_mounts > 0,
        format,
    )
}

/// Why an opened plaintext is not a request that can run (status
/// `invalid_request`). Public for the fuzz target `request_plaintext`.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The plaintext is not an `ExecutionRequest` in JSON.
    #[error("the request is not a valid execution request: {0}")]
    NotARequest(serde_json::Error),
    /// The plaintext is a CBOR map but not an `ExecutionRequest` in the strict
    /// CBOR of protocol v1.1 §C.
    #[error("the request is not a valid execution request: {0}")]
    NotACborRequest(CborError),
    /// Neither or both of `module` and `module_sha256`.
    #[error("exactly one of `module` and `module_sha256` is required")]
    ModuleChoice,
    /// `module` is not base64.
    #[error("`module` is not valid base64: {0}")]
    ModuleBase64(base64::DecodeError),
    /// A mount's path is not absolute and normalized.
    #[error("`mounts[{index}].path` {reason}")]
    MountPath {
        index: usize,
        reason: MountPathError,
    },
    /// Two mounts at the same path, or one inside another.
    #[error("`mounts[{inner}].path` is inside `mounts[{outer}].path`; mounts may not overlap")]
    MountsOverlap { inner: usize, outer: usize },
    /// A mount with both `tar` and `tar_sha256`, or a read-only one with neither.
    #[error(
        "`mounts[{0}]` needs exactly one of `tar` and `tar_sha256` (a writable mount may \
         have neither and starts empty)"
    )]
    MountSource(usize),
    /// A mount's archive breaks the rules of protocol v1.1 §E (a link, a device,
    /// an absolute name, `..`, a member claiming more bytes than it has, ...).
    #[error("`mounts[{index}]`'s archive is refused: {error}")]
    Archive { index: usize, error: ArchiveError },
    /// The mounts' initial contents are over `files_bytes` or
    /// `max_mount_entries`.
    #[error("the mounts' contents are refused: {0}")]
    MountContents(MountError),
    /// A mount's `tar` is not base64.
    #[error("`mounts[{index}].tar` is not valid base64: {error}")]
    TarBase64 {
        index: usize,
        error: base64::DecodeError,
    },
    /// A requested limit is refused (it names the key).
    #[error(transparent)]
    Limits(LimitError),
    /// `stdin` is not base64.
    #[error("`stdin` is not valid base64: {0}")]
    StdinBase64(base64::DecodeError),
    /// An argument holds a NUL, which WASI cannot pass.
    #[error("`args` may not contain NUL characters")]
    NulInArgs,
    /// An environment name is empty or holds `=` or NUL.
    #[error("`env` names must be non-empty and may not contain `=` or NUL")]
    BadEnvName,
    /// An environment value holds a NUL.
    #[error("`env` values may not contain NUL characters")]
    NulInEnvValue,
    /// argv and environment are past the server's maxima.
    #[error(transparent)]
    Input(#[from] InputError),
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
struct Opened {
    plaintext: Plaintext,
    keys: ResponseKeys,
}

/// What `/execute` answers after a recovered plaintext.
#[derive(Debug, Clone)]
pub struct ExecutionReceipt {
    pub execution_id: Uuid,
    /// The sealed result, in the buffer it was written and sealed in (shared,
    /// never copied per reader).
    pub ciphertext: bytes::Bytes,
    pub commitment: [u8; 32],
    pub log_index: u64,
    pub leaf_signature: Vec<u8>,
    /// For the operator's log line only; it also travels inside the sealed result.
    pub status: Status,
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
}

impl Executor {
    pub fn new(
        sessions: Arc<dyn SessionStore>,
        key: Arc<ServerKey>,
        sandbox: Sandbox,
        log: AuditLog,
        policy: ExecutionPolicy,
        metrics: Metrics,
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
        let inner = &self.inner;
        if !inner
            .sessions
            .is_live(&sealed.session_id)
            .await
            .map_err(session_error)?
        {
            return Err(ExecutionError::UnknownSession);
        }
        let permit = self.admit().await?;
        self.note_peak();
        let opened = self
            .open(sealed.session_id, &sealed.enc, sealed.ciphertext)
            .await?;
        let execution_id = Uuid::new_v4();
        self.carry_out(execution_id, opened, permit, sealed.client)
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
        let inner = &self.inner;
        if !inner
            .sessions
            .is_live(&sealed.session_id)
            .await
            .map_err(session_error)?
        {
            return Err(ExecutionError::UnknownSession);
        }
        // Dropped (and so given back) if the session or decryption fails.
        let ticket = results.reserve(sealed.client).map_err(async_refusal)?;
        let opened = self
            .open(sealed.session_id, &sealed.enc, sealed.ciphertext)
            .await?;
        let execution_id = Uuid::new_v4();
        // Owned by this task from here: a panic or an abort records a withheld
        // answer instead of leaving the entry queued for ever. A bound that does
        // not fit is refused now, in the clear: the session is used, but
        // nothing ran and nothing is logged.
        let bound = answer_bound_of(&opened.plaintext, &inner.policy);
        let entry = ticket
            .register(execution_id, bound)
            .map_err(async_refusal)?;
        let _ = accepted.send(execution_id);
        let permit = inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.note_peak();
        entry.mark_running();
        let outcome = self
            .carry_out(execution_id, opened, permit, sealed.client)
            .await;
        entry.finish(match &outcome {
            Ok(receipt) => Ok(receipt.clone()),
            Err(ExecutionError::LogUnavailable(_)) => Err(Withheld::LogUnavailable),
            Err(_) => Err(Withheld::Internal),
        });
        outcome
    }

    /// Takes the session out of the store (its key leaves memory with this
    /// attempt) and opens the request (in place: the plaintext is the ciphertext's
    /// buffer).
    async fn open(
        &self,
        session_id: Uuid,
        enc: &Enc,
        ciphertext: Vec<u8>,
    ) -> Result<Opened, ExecutionError> {
        let secret = self
            .inner
            .sessions
            .take(&session_id)
            .await
            .map_err(session_error)?;
        let envelope::OpenedRequest {
            mut plaintext,
            keys,
        } = envelope::open_request(secret, &session_id, enc, ciphertext)
            .map_err(|_| ExecutionError::DecryptionFailed)?;
        Ok(Opened {
            // Moved, not copied: what is left in `plaintext` is an empty vector.
            plaintext: Plaintext::new(std::mem::take(&mut *plaintext)),
            keys,
        })
    }

    /// Everything after the plaintext opened: run (holding `permit`), seal,
    /// commit, sign, log.
    async fn carry_out(
        &self,
        execution_id: Uuid,
        opened: Opened,
        permit: OwnedSemaphorePermit,
        client: ClientKey,
    ) -> Result<ExecutionReceipt, ExecutionError> {
        let inner = &self.inner;
        let started = Instant::now();
        // From here on the plaintext is open: whatever happens, including a panic
        // while preparing or running the guest, must end as a logged execution.
        // `run` gives the slot back while it waits for a compilation, and takes
        // one again to run the guest; it holds none when it returns (or panics).
        let mut mounts_out = None;
        let ran = AssertUnwindSafe(self.run(
            execution_id,
            &opened.plaintext,
            permit,
            client,
            &mut mounts_out,
        ))
        .catch_unwind()
        .await;
        let mut result = match ran {
            Ok(result) => result,
            Err(_panic) => {
                tracing::error!(%execution_id, "preparing or running an execution panicked");
                mounts_out = None;
                host_failure(execution_id, inner.policy.maxima)
            }
        };

        let status = result.status;
        inner
            .metrics
            .observe_execution(status, result.fuel_consumed, result.wall_time_us);
        // Protocol v1.1 §C: the result is in the request plaintext's format.
        let format = Format::of(&opened.plaintext);
        inner.metrics.record_request_plaintext(format.as_str());
        cap_error(&mut result.error);
        // One buffer, of the plaintext's exact length and room for the tag: the
        // archives are written into it from the trees (each tree dropped once
        // its archive is in), and it is sealed in place.
        let mut sealed = result_plaintext(&result, format, mounts_out);
        // The guest's output, in the clear, is no longer needed.
        result.stdout.0.zeroize();
        result.stderr.0.zeroize();
        result.returns.zeroize();
        if let Some(error) = result.error.as_mut() {
            error.zeroize();
        }
        let commitment = opened.keys.commitment(&opened.plaintext, &sealed);
        opened.keys.seal_result_in_place(&execution_id, &mut sealed);
        // Ciphertext now, which needs no zeroizing: moved out of its `Zeroizing`
        // (left empty), not copied.
        let ciphertext = bytes::Bytes::from(std::mem::take(&mut *sealed));
        let leaf = Leaf {
            execution_id,
            timestamp_ms: unix_millis(SystemTime::now()),
            commitment,
        };
        let leaf_signature = inner.key.sign(&leaf.to_bytes());
        let append_started = Instant::now();
        let log_index = inner
            .log
            .append(LogRecord {
                leaf,
                signature: leaf_signature.clone(),
            })
            .await
            .map_err(ExecutionError::LogUnavailable)?;
        inner
            .metrics
            .observe_audit_append(append_started.elapsed().as_secs_f64());
        // The one line an execution logs (the HTTP layer logs none for an answered
        // execution): ids, status, counts, durations and sizes, never content.
        tracing::info!(
            %execution_id,
            status = status.as_str(),
            log_index,
            fuel_consumed = result.fuel_consumed,
            wall_time_us = result.wall_time_us,
            append_us = append_started.elapsed().as_micros() as u64,
            elapsed_us = started.elapsed().as_micros() as u64,
            request_bytes = opened.plaintext.len(),
            result_bytes = ciphertext.len(),
            "execution recorded"
        );
        Ok(ExecutionReceipt {
            execution_id,
            ciphertext,
            commitment,
            log_index,
            leaf_signature,
            status,
        })
    }

    /// Records the number of guests running now if it is a new high.
    fn note_peak(&self) {
        self.inner
            .peak
            .fetch_max(self.slots_in_use(), Ordering::Relaxed);
    }

    /// Waits for a guest slot: at once if one is free, otherwise in a queue bounded
    /// in length and in time.
    async fn admit(&self) -> Result<OwnedSemaphorePermit, ExecutionError> {
        let inner = &self.inner;
        if let Ok(permit) = inner.slots.clone().try_acquire_owned() {
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

    /// Everything between the opened plaintext and the result document. Holds
    /// `slot` while the guest runs; a module that must be compiled gives it back
    /// while it waits for and goes through compilation, so that executions of
    /// cached modules never wait behind a compiler, and takes a slot again after.
    /// A guest that ran with writable mounts leaves their archives, not yet
    /// written, in `mounts_out`.
    async fn run(
        &self,
        execution_id: Uuid,
        plaintext: &Plaintext,
        slot: OwnedSemaphorePermit,
        client: ClientKey,
        mounts_out: &mut Option<PendingMountsOut>,
    ) -> ExecutionResult {
        // Fault injection for the crash-isolation test; compiled out of every build
        // but the crate's own unit tests.
        #[cfg(test)]
        if **plaintext == *tests::PANIC_TRIGGER {
            panic!("a panic injected by a test");
        }
        let policy = &self.inner.policy;
        let mut result = blank_result(execution_id, policy.maxima);
        let invalid_request =
            |result, error: RequestError| refused(result, Status::InvalidRequest, error);

        let (mut request, bytes) = match parse_request(plaintext) {
            Ok(parsed) => parsed,
            Err(error) => return invalid_request(result, error),
        };
        // `limits.files_bytes` is in the result only for a request that uses files,
        // so that a v1 request's result is a v1 result byte for byte.
        let uses_files = !request.mounts.is_empty()
            || request
                .limits
                .is_some_and(|limits| limits.files_bytes.is_some());
        if let Err(error) = check_mounts(&request.mounts, &bytes) {
            return invalid_request(result, error);
        }
        let store = self.inner.blobs.scope(Scope::of(client));
        let blobs = match receive_blobs(&store, &mut request, &bytes) {
            Ok(blobs) => blobs,
            Err(error) => return invalid_request(result, error),
        };
        result.module_sha256 = Some(Hex(blobs.module_sha256));
        self.inner
            .metrics
            .record_blob_lookups(blobs.found, blobs.missing.len() as u64);
        match EffectiveLimits::apply(policy.maxima, request.limits) {
            Ok(limits) => result.limits = limits,
            Err(error) => return invalid_request(result, RequestError::Limits(error)),
        }
        // The files limit in force, whether or not the result shows it.
        let files_bytes = result.limits.files_bytes.unwrap_or(0);
        if !uses_files {
            result.limits.files_bytes = None;
        }
        let entry = match &request.invoke {
            Some(expression) => Entry::Invoke(expression.clone()),
            None => Entry::Command,
        };
        // A CBOR request's stdin reaches the guest as a view of the plaintext.
        let input = match guest_input_with(request, bytes.stdin.map(|part| plaintext.view(part))) {
            Ok(input) => input,
            Err(error) => return invalid_request(result, error),
        };
        if let Err(error) =
            input.check_size(policy.max_args, policy.max_env, policy.max_args_env_bytes)
        {
            return invalid_request(result, error.into());
        }
        let FoundBlobs { module, mounts } = match blobs.complete() {
            Ok(found) => found,
            Err(missing) => {
                let list = missing
                    .iter()
                    .map(|hash| Hex(*hash).to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                result.missing_blobs = Some(missing.into_iter().map(Hex).collect());
                return refused(
                    result,
                    Status::MissingBlob,
                    format_args!(
                        "blobs not in this client's store: {list}; send them again with their bytes"
                    ),
                );
            }
        };
        let module_hash = module.sha256;
        if module.bytes.len() as u64 > policy.max_module_bytes {
            let too_large = CompileRefusal::TooLarge {
                bytes: module.bytes.len(),
                limit: policy.max_module_bytes,
            };
            return refused(result, Status::InvalidModule, too_large);
        }
        // Each archive is parsed and checked once per blob, at the server's
        // maxima; the request's own `files_bytes` is checked over all of them.
        let max_files_bytes = policy.maxima.files_bytes.unwrap_or(0);
        let mut specs = Vec::with_capacity(mounts.len());
        for (index, mount) in mounts.into_iter().enumerate() {
            let image = match &mount.archive {
                Some(blob) => match blob.image(max_files_bytes, policy.max_mount_entries) {
                    Ok(image) => Some(image),
                    Err(error) => {
                        return invalid_request(result, RequestError::Archive { index, error });
                    }
                },
                None => None,
            };
            specs.push(MountSpec {
                path: mount.path,
                writable: mount.writable,
                image,
            });
        }
        if let Err(error) = sandbox::fs::check_limits(&specs, files_bytes, policy.max_mount_entries)
        {
            return invalid_request(result, RequestError::MountContents(error));
        }
        let writable: Vec<String> = specs
            .iter()
            .filter(|spec| spec.writable)
            .map(|spec| spec.path.clone())
            .collect();

        let (prepared, slot) = match self.inner.sandbox.lookup(&module_hash) {
            Some(found) => {
                self.inner.metrics.record_module_cache(true);
                (found.map_err(CompileRefusal::Compiler), slot)
            }
            None => match self.inner.compile_tickets.clone().try_acquire_owned() {
                // The usual case: the slot goes back while this execution
                // waits for and goes through compilation, and it queues for one
                // again after; the tickets bound how many do so.
                Ok(ticket) => {
                    drop(slot);
                    let prepared = self.compile(module_hash, &module.bytes, client).await;
                    let slot = self
                        .inner
                        .slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    drop(ticket);
                    self.note_peak();
                    (prepared, slot)
                }
                // So many executions are compiling that this one compiles in
                // its slot, as if compilation were part of running: bounded by
                // the slots, and never refused after its plaintext was opened.
                Err(_) => (self.compile(module_hash, &module.bytes, client).await, slot),
            },
        };
        drop(module);
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(error) => return refused(result, Status::InvalidModule, error),
        };
        let limits = GuestLimits {
            fuel: result.limits.fuel,
            memory_bytes: result.limits.memory_bytes,
            timeout: Duration::from_millis(result.limits.timeout_ms),
            max_output_bytes: usize::try_from(result.limits.max_output_bytes).unwrap_or(usize::MAX),
            files_bytes,
            max_mount_entries: policy.max_mount_entries,
        };
        let report = self
            .inner
            .sandbox
            .run(prepared, entry, input, specs, limits)
            .await;
        drop(slot);
        *mounts_out = fill_from_report(&mut result, report, writable);
        result
    }

    /// Compiles a module that is not cached, if `client`'s compilation budget
    /// allows, and charges the budget with the time it took.
    async fn compile(
        &self,
        hash: [u8; 32],
        module: &[u8],
        client: ClientKey,
    ) -> Result<Arc<RunTarget>, CompileRefusal> {
        let inner = &self.inner;
        if let Err(BudgetError::Spent { retry_after }) = inner.budgets.check(client, Instant::now())
        {
            return Err(CompileRefusal::Budget { retry_after });
        }
        let preparation = inner.sandbox.prepare(hash, module).await;
        inner.metrics.record_module_cache(preparation.hit);
        if let Some(compile_time) = preparation.compile_time {
            inner.metrics.observe_compile(compile_time.as_secs_f64());
            inner.budgets.charge(client, compile_time, Instant::now());
        }
        preparation.value.map_err(CompileRefusal::Compiler)
    }
}

/// Why a module was not compiled (status `invalid_module`).
#[derive(Debug, thiserror::Error)]
enum CompileRefusal {
    /// The module is larger than `limits.max_module_bytes`.
    #[error("the module is {bytes} bytes; the limit is {limit} bytes")]
    TooLarge { bytes: usize, limit: u64 },
    /// The compiler refused it, or could not compile it now.
    #[error(transparent)]
    Compiler(CompileError),
    /// The client's compilation budget is spent.
    #[error(
        "this client has spent its compilation budget (clients.compile_seconds_per_hour); \
         modules already compiled still run; retry an uncached module in {} s",
        retry_after.as_secs().max(1)
    )]
    Budget { retry_after: Duration },
}

/// `result` for an execution that ended with `error` before its guest ran: the
/// status, and the text for the client, rendered here.
fn refused(
    mut result: ExecutionResult,
    status: Status,
    error: impl std::fmt::Display,
) -> ExecutionResult {
    result.status = status;
    result.error = Some(error.to_string());
    result
}

/// A result with nothing in it yet: the starting point of every result.
fn blank_result(execution_id: Uuid, limits: EffectiveLimits) -> ExecutionResult {
    ExecutionResult::blank(
        execution_id.hyphenated().to_string(),
        EffectiveLimits {
            files_bytes: None,
            ..limits
        },
        Sandbox::engine_name(),
    )
}

/// The result of an execution the host failed to carry out (a server bug).
fn host_failure(execution_id: Uuid, limits: EffectiveLimits) -> ExecutionResult {
    ExecutionResult {
        status: Status::Trap,
        error: Some(RunError::HostFailure.to_string()),
        ..blank_result(execution_id, limits)
    }
}

/// Parses a request plaintext in either format (protocol v1.1 §C: a CBOR map
/// head first is CBOR, anything else JSON exactly as in v1). A CBOR request's
/// byte fields stay in the plaintext, borrowed.
fn parse_request(plaintext: &[u8]) -> Result<(ExecutionRequest, RequestBytes<'_>), RequestError> {
    match Format::of(plaintext) {
        Format::Json => serde_json::from_slice(plaintext)
            .map(|request| (request, RequestBytes::default()))
            .map_err(RequestError::NotARequest),
        Format::Cbor => plaintext::decode_request(plaintext).map_err(RequestError::NotACborRequest),
    }
}

/// Checks the shape of a request's mounts (protocol v1.1 §E): each path absolute
/// and normalized, no two overlapping, and each with at most one of `tar` and
/// `tar_sha256`, a read-only one with exactly one. `bytes` holds the archives of
/// a CBOR request.
fn check_mounts(mounts: &[MountRequest], bytes: &RequestBytes<'_>) -> Result<(), RequestError> {
    for (index, mount) in mounts.iter().enumerate() {
        payload::check_mount_path(&mount.path)
            .map_err(|reason| RequestError::MountPath { index, reason })?;
        let sources = usize::from(mount.tar.is_some() || bytes.tar(index).is_some())
            + usize::from(mount.tar_sha256.is_some());
        if sources > 1 || (sources == 0 && !mount.writable) {
            return Err(RequestError::MountSource(index));
        }
    }
    for (inner, mount) in mounts.iter().enumerate() {
        for (outer, other) in mounts.iter().enumerate() {
            if inner != outer && payload::mount_path_within(&mount.path, &other.path) {
                return Err(RequestError::MountsOverlap { inner, outer });
            }
        }
    }
    Ok(())
}

/// A request's blobs after [`receive_blobs`]: those it sent, now in the store, and
/// those it named, found there or missing.
struct RequestBlobs {
    /// The module's SHA-256, computed or named.
    module_sha256: [u8; 32],
    module: Option<Arc<Blob>>,
    mounts: Vec<MountBlobs>,
    /// Every named blob the store does not hold: the module first, then the
    /// mounts' archives in request order, each once.
    missing: Vec<[u8; 32]>,
    /// Named blobs the store held.
    found: u64,
}

/// A request's blobs, every one of them found.
struct FoundBlobs {
    module: Arc<Blob>,
    mounts: Vec<MountBlobs>,
}

/// One mount with its archive, if it has one and the store holds it.
struct MountBlobs {
    path: String,
    writable: bool,
    archive: Option<Arc<Blob>>,
}

impl RequestBlobs {
    /// The module and mounts, or every missing hash.
    fn complete(self) -> Result<FoundBlobs, Vec<[u8; 32]>> {
        match self.module {
            Some(module) if self.missing.is_empty() => Ok(FoundBlobs {
                module,
                mounts: self.mounts,
            }),
            // A module that is not here was named and not found: it is in `missing`.
            _ => Err(self.missing),
        }
    }
}

/// Decodes every module and archive `request` sends, keeps each in `store`
/// (protocol v1.1 §D: every blob received, even if the execution then fails), and
/// looks up those it names. The base64 text is zeroized as it is decoded; a CBOR
/// request's bytes (`bytes`) are copied once, into the store.
fn receive_blobs(
    store: &BlobStore,
    request: &mut ExecutionRequest,
    bytes: &RequestBytes<'_>,
) -> Result<RequestBlobs, RequestError> {
    let mut missing = Vec::new();
    let mut found = 0;
    let mut named = |hash: [u8; 32], missing: &mut Vec<[u8; 32]>| {
        let blob = store.get(&hash);
        match &blob {
            Some(_) => found += 1,
            None if !missing.contains(&hash) => missing.push(hash),
            None => {}
        }
        blob
    };
    let (module_sha256, module) = match (request.module.take(), request.module_sha256.take()) {
        (None, None) if bytes.module.is_some() => {
            let module = bytes.module.unwrap_or_default();
            let hash = envelope::sha256(module);
            (hash, Some(store.insert(hash, module.to_vec())))
        }
        (None, Some(_)) if bytes.module.is_some() => return Err(RequestError::ModuleChoice),
        (Some(mut text), None) => {
            let decoded = payload::decode_base64(&text);
            text.zeroize();
            let bytes = decoded.map_err(RequestError::ModuleBase64)?;
            let hash = envelope::sha256(&bytes);
            (hash, Some(store.insert(hash, bytes)))
        }
        (None, Some(Hex(hash))) => (hash, named(hash, &mut missing)),
        (Some(mut text), Some(_)) => {
            text.zeroize();
            return Err(RequestError::ModuleChoice);
        }
        (None, None) => return Err(RequestError::ModuleChoice),
    };
    let mut mounts = Vec::with_capacity(request.mounts.len());
    for (index, mount) in request.mounts.iter_mut().enumerate() {
        let archive = match (mount.tar.take(), mount.tar_sha256.take()) {
            (None, _) if bytes.tar(index).is_some() => {
                let tar = bytes.tar(index).unwrap_or_default();
                let hash = envelope::sha256(tar);
                Some(store.insert(hash, tar.to_vec()))
            }
            (Some(mut text), _) => {
                let decoded = payload::decode_base64(&text);
                text.zeroize();
                let bytes = decoded.map_err(|error| RequestError::TarBase64 { index, error })?;
                let hash = envelope::sha256(&bytes);
                Some(store.insert(hash, bytes))
            }
            (None, Some(Hex(hash))) => named(hash, &mut missing),
            (None, None) => None,
        };
        mounts.push(MountBlobs {
            path: std::mem::take(&mut mount.path),
            writable: mount.writable,
            archive,
        });
    }
    Ok(RequestBlobs {
        module_sha256,
        module,
        mounts,
        missing,
        found,
    })
}

/// The guest's argv, env and stdin, checked for what WASI cannot carry. Public
/// for the fuzz target `request_plaintext`, which drives it with the rest of the
/// plaintext's parsing.
pub fn guest_input(request: ExecutionRequest) -> Result<GuestInput, RequestError> {
    guest_input_with(request, None)
}

/// [`guest_input`], with a CBOR request's `stdin` bytes (a view of the
/// plaintext, not a copy).
fn guest_input_with(
    mut request: ExecutionRequest,
    stdin: Option<bytes::Bytes>,
) -> Result<GuestInput, RequestError> {
    // Moved into a `GuestInput` first: it zeroizes them when dropped, also when
    // they are refused below.
    let mut input = GuestInput {
        args: std::mem::take(&mut request.args),
        env: std::mem::take(&mut request.env).into_iter().collect(),
        stdin: bytes::Bytes::new(),
    };
    if let Some(mut text) = request.stdin.take() {
        let decoded = payload::decode_base64(&text);
        text.zeroize();
        input.stdin = decoded.map_err(RequestError::StdinBase64)?.into();
    } else if let Some(stdin) = stdin {
        input.stdin = stdin;
    }
    if input.args.iter().any(|arg| arg.contains('\0')) {
        return Err(RequestError::NulInArgs);
    }
    for (name, value) in &input.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(RequestError::BadEnvName);
        }
        if value.contains('\0') {
            return Err(RequestError::NulInEnvValue);
        }
    }
    Ok(input)
}

/// The writable mounts of a guest that ran: their paths, in request order, and
/// their archives, planned but not yet written.
struct PendingMountsOut {
    paths: Vec<String>,
    archives: MountsOut,
}

/// The result of a guest that ran, from its report; `writable` are the paths of
/// the writable mounts, in request order, which come back in `mounts_out`
/// (returned, to be written into the result plaintext).
fn fill_from_report(
    result: &mut ExecutionResult,
    mut report: RunReport,
    writable: Vec<String>,
) -> Option<PendingMountsOut> {
    let (status, exit_code, error) = match report.outcome {
        GuestOutcome::Exited(code) => (Status::Completed, Some(code), None),
        GuestOutcome::Returned => (Status::Completed, None, None),
        GuestOutcome::Failed(error) => (status_of(&error), None, Some(error.to_string())),
    };
    result.status = status;
    result.exit_code = exit_code;
    result.error = error;
    result.returns = report.returns;
    // Moved, not copied: the result's buffers are zeroized once it is sealed.
    result.stdout = Base64(std::mem::take(&mut *report.stdout));
    result.stderr = Base64(std::mem::take(&mut *report.stderr));
    result.stdout_truncated = report.stdout_truncated;
    result.stderr_truncated = report.stderr_truncated;
    result.fuel_consumed = report.fuel_consumed;
    result.wall_time_us = u64::try_from(report.wall_time.as_micros()).unwrap_or(u64::MAX);
    // One archive per writable mount, planned after the guest ended whatever
    // its status; none after a host failure.
    if writable.is_empty() || report.mounts_out.archives.len() != writable.len() {
        return None;
    }
    result.mounts_out_truncated = report.mounts_out.truncated;
    Some(PendingMountsOut {
        paths: writable,
        archives: report.mounts_out,
    })
}

/// The result plaintext in `format`, in one buffer with room for the tag
/// ([`plaintext::write_result`]), `mounts_out`'s archives written straight
/// into it.
fn result_plaintext(
    result: &ExecutionResult,
    format: Format,
    mounts_out: Option<PendingMountsOut>,
) -> Zeroizing<Vec<u8>> {
    let Some(PendingMountsOut { paths, archives }) = mounts_out else {
        return plaintext::write_result(result, format, &mut []);
    };
    let mut archives = archives.archives;
    let mut mounts: Vec<StreamedMount<'_>> = paths
        .iter()
        .zip(archives.iter_mut())
        .map(|(path, tar)| StreamedMount { path, tar })
        .collect();
    plaintext::write_result(result, format, &mut mounts)
}

impl ArchiveSource for TreeArchive {
    fn archive_len(&self) -> u64 {
        self.len()
    }

    fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8])) {
        self.write(sink);
    }
}

/// Cuts an `error` longer than [`MAX_ERROR_BYTES`] at a character boundary,
/// ending it with `…`.
fn cap_error(error: &mut Option<String>) {
    let Some(text) = error else {
        return;
    };
    if text.len() <= MAX_ERROR_BYTES {
        return;
    }
    let mut cut = MAX_ERROR_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push('…');
}

/// The status of a run that failed with `error`.
fn status_of(error: &RunError) -> Status {
    match error {
        RunError::OutOfFuel { .. } => Status::FuelExhausted,
        RunError::TimedOut { .. } => Status::Timeout,
        RunError::MemoryLimit(_) => Status::MemoryLimit,
        RunError::Unlinkable(_)
        | RunError::TooManyMemories { .. }
        | RunError::TooManyTables { .. }
        | RunError::NoStart
        | RunError::StartNotCommand
        | RunError::NoCliRun => Status::InvalidModule,
        RunError::BadInvoke(_) | RunError::Mounts(_) => Status::InvalidRequest,
        RunError::Trap(_)
        | RunError::StackOverflow(_)
        | RunError::HostcallFuel { .. }
        | RunError::ReturnsTooLarge { .. } => Status::Trap,
        // No status says "the host failed"; the run was aborted like a trap, and
        // the error says whose fault it was.
        RunError::HostFailure => Status::Trap,
    }
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::async_results::reservation;
    use crate::envelope::Provider;
    use crate::sandbox::SandboxSettings;
    use crate::session::MemorySessionStore;

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
    fn the_smallest_answer_bound_is_the_bound_of_a_request_with_no_output() {
        let nothing = EffectiveLimits {
            fuel: 1,
            memory_bytes: 1,
            timeout_ms: 1,
            max_output_bytes: 0,
            files_bytes: None,
        };
        assert_eq!(
            answer_bound(&nothing, 100, false, Format::Cbor),
            SMALLEST_ANSWER_BOUND
        );
        // Every other request's bound is at least as large.
        assert!(answer_bound(&nothing, 100, false, Format::Json) >= SMALLEST_ANSWER_BOUND);
        // Saturates rather than wraps.
        let huge = EffectiveLimits {
            max_output_bytes: u64::MAX,
            ..nothing
        };
        assert_eq!(answer_bound(&huge, 100, true, Format::Json), u64::MAX);
    }

    #[test]
    fn at_the_default_limits_one_client_may_keep_any_answer_but_not_the_whole_store() {
        let defaults = crate::config::LimitsConfig::default();
        let execution = crate::config::ExecutionConfig::default();
        let limits = EffectiveLimits {
            fuel: defaults.fuel.get(),
            memory_bytes: defaults.memory_bytes.get(),
            timeout_ms: 1,
            max_output_bytes: defaults.max_output_bytes.get(),
            files_bytes: Some(defaults.files_bytes.get()),
        };
        let entries = defaults.max_mount_entries.get_u32();
        // The figures `execution.async_results_bytes_per_client` documents.
        assert_eq!(
            answer_bound(&limits, entries, false, Format::Json),
            8_436_424
        );
        assert_eq!(
            answer_bound(&limits, entries, false, Format::Cbor),
            4_263_988
        );
        assert_eq!(
            answer_bound(&limits, entries, true, Format::Json),
            503_299_370
        );
        let share = execution.async_results_bytes_per_client.get() as usize;
        let total = execution.async_results_bytes.get() as usize;
        // A request with writable mounts, alone in the store.
        let one_mount = reservation(answer_bound(&limits, entries, true, Format::Json));
        assert!(one_mount <= share);
        assert!(share < total, "one client never takes the whole store");
    }

    #[test]
    fn a_long_job_reserves_the_bound_of_its_own_limits_and_writable_mounts() {
        let policy = policy();
        let maxima = policy.maxima;
        let entries = policy.max_mount_entries;
        let json = br#"{"module":"AGFzbQEAAAA=","limits":{"max_output_bytes":10},
            "mounts":[{"path":"/a","writable":true},{"path":"/b","tar_sha256":"00"},
                      {"path":"/c","writable":true}],"stdin":"aGk="}"#;
        let lowered = EffectiveLimits {
            max_output_bytes: 10,
            ..maxima
        };
        assert_eq!(
            answer_bound_of(json, &policy),
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
            answer_bound_of(&cbor, &policy),
            answer_bound(&maxima, entries, true, Format::Cbor)
        );
        // What does not parse, or asks for more than the maxima, is answered
        // with a small `invalid_request`: the bound at the maxima covers it.
        for refused in [&b"not json"[..], br#"{"limits":{"fuel":1e99}}"#] {
            assert_eq!(
                answer_bound_of(refused, &policy),
                answer_bound(&maxima, entries, false, Format::Json)
            );
        }
        let above = br#"{"limits":{"max_output_bytes":999999999}}"#;
        assert_eq!(
            answer_bound_of(above, &policy),
            answer_bound(&maxima, entries, false, Format::Json)
        );
    }

    async fn executor(dir: &std::path::Path) -> (Executor, Arc<MemorySessionStore>) {
        let provider = Provider::default();
        let key = Arc::new(ServerKey::from_scalar(provider, &[7; 32]).unwrap());
        let (log, _) = AuditLog::open(dir, "test/log", key.clone()).unwrap();
        let sessions = Arc::new(MemorySessionStore::new(
            provider,
            Duration::from_secs(60),
            10,
        ));
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
                policy(),
                crate::metrics::Metrics::new(),
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

    /// An archive of `len` bytes, handed over 1,000 bytes at a time.
    struct Filler(u64);

    impl ArchiveSource for Filler {
        fn archive_len(&self) -> u64 {
            self.0
        }

        fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8])) {
            let mut left = self.0;
            while left > 0 {
                let piece = left.min(1000);
                sink(&[0xAB; 1000][..piece as usize]);
                left -= piece;
            }
        }
    }

    /// The largest result the limits allow, as far as we can build one: every
    /// field at its longest, output at `max_output_bytes`, `returns` as many
    /// one-byte values as fit (the worst for JSON's quotes and escapes), an
    /// `error` of control characters, and, with writable mounts, 16 of them with
    /// 4,096-byte paths of control characters and archives that fill their bound
    /// (lengths that leave base64 the most padding).
    fn worst_result(limits: EffectiveLimits) -> ExecutionResult {
        let output = limits.max_output_bytes as usize;
        ExecutionResult {
            execution_id: Uuid::from_u128(u128::MAX).hyphenated().to_string(),
            status: Status::InvalidRequest,
            exit_code: Some(i32::MIN),
            returns: vec!["\"".to_owned(); output],
            stdout: Base64(vec![0xFF; output]),
            stderr: Base64(vec![0xFF; output]),
            stdout_truncated: true,
            stderr_truncated: true,
            error: Some("\u{1}".repeat(MAX_ERROR_BYTES)),
            fuel_consumed: u64::MAX,
            wall_time_us: u64::MAX,
            module_sha256: Some(Hex([0xFF; 32])),
            limits: EffectiveLimits {
                fuel: u64::MAX,
                memory_bytes: u64::MAX,
                timeout_ms: u64::MAX,
                max_output_bytes: u64::MAX,
                files_bytes: Some(u64::MAX),
            },
            engine: Sandbox::engine_name(),
            missing_blobs: Some(vec![Hex([0xFF; 32]); MAX_MOUNTS + 1]),
            mounts_out: None,
            mounts_out_truncated: true,
        }
    }

    #[test]
    fn answer_bound_holds_for_the_worst_result() {
        for (max_output_bytes, files_bytes, entries) in [
            (0, 0, 1),
            (1, 1, 1),
            (4096, 1 << 20, 1000),
            (100_000, 3_000_001, 77),
        ] {
            let limits = EffectiveLimits {
                fuel: 1,
                memory_bytes: 1,
                timeout_ms: 1,
                max_output_bytes,
                files_bytes: Some(files_bytes),
            };
            let result = worst_result(limits);
            let total = mounts_out_bound(files_bytes, u64::from(entries), MAX_MOUNTS as u64);
            // 16 archives, each 1 more than a multiple of 3, filling the bound.
            let each = (total / MAX_MOUNTS as u64) / 3 * 3 + 1;
            let mut archives: Vec<Filler> = (0..MAX_MOUNTS)
                .map(|index| Filler(if index == 0 { total - 15 * each } else { each }))
                .collect();
            assert_eq!(archives.iter().map(|a| a.0).sum::<u64>(), total);
            let path = format!("/{}", "\u{1}".repeat(MAX_MOUNT_PATH_BYTES - 1));
            for format in [Format::Json, Format::Cbor] {
                let bare = ExecutionResult {
                    mounts_out_truncated: false,
                    ..result.clone()
                };
                let written = plaintext::write_result(&bare, format, &mut []).len() as u64;
                let bound = answer_bound(&limits, entries, false, format);
                assert!(
                    written + 16 <= bound,
                    "{format:?}: {written} + 16 > {bound}"
                );

                let mut mounts: Vec<StreamedMount<'_>> = archives
                    .iter_mut()
                    .map(|tar| StreamedMount { path: &path, tar })
                    .collect();
                let written = plaintext::write_result(&result, format, &mut mounts).len() as u64;
                let bound = answer_bound(&limits, entries, true, format);
                assert!(
                    written + 16 <= bound,
                    "{format:?}: {written} + 16 > {bound}"
                );
                // And not loose by more than the allowances for what this
                // result could not fill (its 16 archives' framing, its error's
                // escapes, the fixed fields).
                assert!(bound - written < 16_384, "{format:?}: {bound} vs {written}");
            }
        }
    }

    #[test]
    fn an_error_past_its_maximum_is_cut_at_a_character_boundary() {
        let mut error = Some("é".repeat(MAX_ERROR_BYTES));
        cap_error(&mut error);
        let error = error.unwrap();
        assert!(error.len() <= MAX_ERROR_BYTES, "{}", error.len());
        assert!(error.len() > MAX_ERROR_BYTES - 4);
        assert!(error.ends_with("é…"));
        let mut short = Some("short".to_owned());
        cap_error(&mut short);
        assert_eq!(short.as_deref(), Some("short"));
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
        drop(taken);

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
}
