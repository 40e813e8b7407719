//! [`Client::run`]: one execution end to end, as the `run` command, the Python
//! client's `Client.run` and the JS client's `run` do it. A [`Run`] says what to
//! run (module, arguments, environment, stdin, limits, mounts, `invoke`), whether
//! modules and archives go by reference and whether as a long job; the client
//! takes a session from its pool, names by SHA-256 the blobs the server is
//! believed to hold (its [`BlobCache`]), seals, posts, opens the answer and checks
//! its commitment, sends again by bytes what the server had lost, and returns a
//! [`RunOutcome`] (the execution and what its receipt needs, the tlog-proof
//! fetched on demand: [`RunOutcome::receipt_with_proof`]).
//!
//! The server's identity and the session pool are fetched and made by the first
//! run, once for the client and its clones ([`Client::with_key_id`] pins the key,
//! [`Client::with_batch`] bounds the pool's batches).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use uuid::Uuid;
use wasm_hypervisor_protocol::digest::sha256;
use wasm_hypervisor_protocol::encoding::{Hex, encode_base64};
use wasm_hypervisor_protocol::payload::{ExecutionRequest, MountRequest, RequestedLimits, Status};
use wasm_hypervisor_protocol::receipt::Receipt;
use wasm_hypervisor_protocol::reproducible::Bundle;
use wasm_hypervisor_protocol::wire::{ExecutionPhase, PendingState};
use zeroize::Zeroizing;

use crate::blob_cache::BlobCache;
use crate::tlog::ProvedReceipt;
use crate::{Client, ClientError, EncodeError, Execution, ServerIdentity, SessionPool, Wire};

/// Modules and archives smaller than this go by bytes under [`References::Auto`]:
/// naming them saves little, and a reference the server no longer holds costs a
/// round trip.
pub const REFERENCE_MIN_BYTES: usize = 4096;

/// When modules and mount archives go by SHA-256 instead of bytes (protocol v1.1
/// §D). Whatever the policy, a blob the server no longer holds is sent again by
/// bytes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum References {
    /// One of at least [`REFERENCE_MIN_BYTES`] that the client's [`BlobCache`]
    /// says the server holds goes by SHA-256 (the default).
    #[default]
    Auto,
    /// Every one goes by SHA-256 first, bytes following if the server lacks it.
    Always,
    /// Always the bytes; the blob cache is neither read nor written.
    Never,
}

/// What happens during a run, for a caller that shows it (the `run` command's
/// progress line on a terminal).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunProgress {
    /// `sent` bytes of the sealed request's `total` went to the server. Reported
    /// only for a request larger than one chunk (64 KiB), then chunk by chunk.
    Upload { sent: u64, total: u64 },
    /// The server accepted a long job ([`Run::asynchronous`]) under this id.
    Accepted { execution_id: Uuid },
    /// A long job has not finished; this is where the server says it is, and
    /// what it is doing (`None` from a server that does not say).
    Pending {
        state: PendingState,
        phase: Option<ExecutionPhase>,
    },
}

/// A caller's observer of a run's [`RunProgress`].
pub(crate) type Observer = Arc<dyn Fn(RunProgress) + Send + Sync>;

/// A module or archive a run sends, with its SHA-256.
struct Blob {
    bytes: Vec<u8>,
    sha256: [u8; 32],
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        let sha256 = sha256(&bytes);
        Blob { bytes, sha256 }
    }
}

/// A mount of a [`Run`]: where the guest sees it, whether it may write there,
/// and the archive of its initial contents.
struct RunMount {
    path: String,
    writable: bool,
    archive: Option<Blob>,
}

/// One execution to run with [`Client::run`]: a builder, from the module's bytes.
pub struct Run {
    module: Blob,
    /// Arguments, environment, stdin, limits, `invoke`: all but the blobs.
    base: ExecutionRequest,
    mounts: Vec<RunMount>,
    references: References,
    asynchronous: bool,
    observer: Option<Observer>,
    /// The last plaintext encoded, for the same wire and references: a caller
    /// that runs the same `Run` again (a load generator) encodes it once. Wiped
    /// when replaced or dropped.
    encoded: Mutex<Option<Encoded>>,
}

/// A request plaintext and what it was encoded for.
struct Encoded {
    wire: Wire,
    by_reference: Vec<[u8; 32]>,
    plaintext: Arc<Zeroizing<Vec<u8>>>,
}

impl Run {
    /// A run of the module (a core module or a component, its bytes).
    pub fn new(module: Vec<u8>) -> Run {
        Run {
            module: Blob::new(module),
            base: ExecutionRequest::default(),
            mounts: Vec::new(),
            references: References::default(),
            asynchronous: false,
            observer: None,
            encoded: Mutex::new(None),
        }
    }

    /// The guest's arguments after `argv[0]`.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Run {
        self.base.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// The guest's whole environment.
    pub fn env<I: IntoIterator<Item = (String, String)>>(mut self, env: I) -> Run {
        self.base.env = env.into_iter().collect::<BTreeMap<_, _>>();
        self
    }

    /// The guest's stdin (empty by default).
    pub fn stdin(mut self, stdin: &[u8]) -> Run {
        self.base.stdin = (!stdin.is_empty()).then(|| encode_base64(stdin));
        self
    }

    /// Limits that may lower the server's (none by default).
    pub fn limits(mut self, limits: RequestedLimits) -> Run {
        self.base.limits = (limits != RequestedLimits::default()).then_some(limits);
        self
    }

    /// A reproducible execution (protocol v1.2 §R), its random bytes drawn from
    /// `seed` (zero when `None`).
    pub fn deterministic(mut self, seed: Option<[u8; 32]>) -> Run {
        self.base.deterministic = true;
        self.base.seed = seed.map(Hex);
        self
    }

    /// Calls one export, a WAVE call expression (`add(1, 2)`), instead of
    /// running a command.
    pub fn invoke(mut self, expression: impl Into<String>) -> Run {
        self.base.invoke = Some(expression.into());
        self
    }

    /// A read-only mount at `path` holding the tar `archive`
    /// ([`crate::archive::pack_directory`] packs a host directory).
    pub fn mount(mut self, path: impl Into<String>, archive: Vec<u8>) -> Run {
        self.mounts.push(RunMount {
            path: path.into(),
            writable: false,
            archive: Some(Blob::new(archive)),
        });
        self
    }

    /// A writable mount at `path`, starting empty; what the guest leaves there is
    /// in the result's `mounts_out`.
    pub fn writable_mount(mut self, path: impl Into<String>) -> Run {
        self.mounts.push(RunMount {
            path: path.into(),
            writable: true,
            archive: None,
        });
        self
    }

    /// When the module and archives go by SHA-256 ([`References::Auto`] by default).
    pub fn references(mut self, references: References) -> Run {
        self.references = references;
        self
    }

    /// As a long job (`Prefer: respond-async`, protocol v1.1 §F): accepted at
    /// once, then polled as the server's `Retry-After` says until it has finished.
    pub fn asynchronous(mut self, asynchronous: bool) -> Run {
        self.asynchronous = asynchronous;
        self
    }

    /// Calls `observer` with the run's [`RunProgress`] as it goes, on the task
    /// that runs it: keep it short.
    pub fn on_progress(mut self, observer: impl Fn(RunProgress) + Send + Sync + 'static) -> Run {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The module, then each mount's archive.
    fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.module).chain(self.mounts.iter().filter_map(|m| m.archive.as_ref()))
    }

    /// The blobs the first try names instead of sending.
    fn initial_references(&self, known: &BlobCache) -> Vec<[u8; 32]> {
        let named = |blob: &&Blob| match self.references {
            References::Never => false,
            References::Always => true,
            References::Auto => {
                blob.bytes.len() >= REFERENCE_MIN_BYTES && known.contains(&blob.sha256)
            }
        };
        self.blobs().filter(named).map(|blob| blob.sha256).collect()
    }

    /// The request, each blob by bytes or, if in `by_reference`, by SHA-256.
    fn request(&self, by_reference: &[[u8; 32]]) -> ExecutionRequest {
        let named = |blob: &Blob| by_reference.contains(&blob.sha256);
        ExecutionRequest {
            mounts: self
                .mounts
                .iter()
                .map(|mount| MountRequest {
                    path: mount.path.clone(),
                    writable: mount.writable,
                    tar: mount
                        .archive
                        .as_ref()
                        .filter(|blob| !named(blob))
                        .map(|blob| encode_base64(&blob.bytes)),
                    tar_sha256: mount
                        .archive
                        .as_ref()
                        .filter(|blob| named(blob))
                        .map(|blob| Hex(blob.sha256)),
                })
                .collect(),
            module: (!named(&self.module)).then(|| encode_base64(&self.module.bytes)),
            module_sha256: named(&self.module).then_some(Hex(self.module.sha256)),
            ..self.base.clone()
        }
    }

    /// The request plaintext in `wire`'s format, encoded once per wire and
    /// references.
    fn plaintext(
        &self,
        wire: Wire,
        by_reference: &[[u8; 32]],
    ) -> Result<Arc<Zeroizing<Vec<u8>>>, EncodeError> {
        let mut encoded = self.encoded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = encoded.as_ref()
            && last.wire == wire
            && last.by_reference == by_reference
        {
            return Ok(last.plaintext.clone());
        }
        let request = self.request(by_reference);
        let plaintext = Arc::new(Zeroizing::new(wire.encode_request(&request)?));
        *encoded = Some(Encoded {
            wire,
            by_reference: by_reference.to_vec(),
            plaintext: plaintext.clone(),
        });
        Ok(plaintext)
    }

    fn observe(&self, progress: RunProgress) {
        if let Some(observer) = &self.observer {
            observer(progress);
        }
    }
}

/// A finished run: the execution, opened and checked, and the server it ran on.
pub struct RunOutcome {
    pub execution: Execution,
    /// The server's key the session was signed by (pinned if the client pins one).
    pub identity: ServerIdentity,
    /// SHA-256s the final request named instead of sending.
    pub sent_by_reference: Vec<[u8; 32]>,
    /// SHA-256s the server had lost (`missing_blob`), sent again by bytes.
    pub resent_blobs: Vec<[u8; 32]>,
    /// The request plaintext as it was sealed, for a replay bundle. Secret.
    pub request_plaintext: Arc<Zeroizing<Vec<u8>>>,
    /// The client that ran it, for the receipt's tlog-proof.
    client: Client,
}

impl RunOutcome {
    /// The receipt that proves the execution later, naming the server as
    /// `server`, without its tlog-proof: it verifies online only. Keep it
    /// private, it holds the salt.
    pub fn receipt(&self, server: &str) -> Receipt {
        self.execution.receipt(server, &self.identity)
    }

    /// The replay bundle of this execution (protocol v1.2 §R): `receipt` and the
    /// two plaintexts exactly as sealed. It holds the plaintexts: keep it as
    /// private as the request itself.
    pub fn replay_bundle(&self, receipt: Receipt) -> Bundle {
        Bundle::new(
            receipt,
            self.request_plaintext.to_vec(),
            self.execution.result_plaintext.clone(),
        )
    }

    /// The receipt with its tlog-proof (protocol v1.2 §T4), fetched from the
    /// server now and checked ([`Client::prove_receipt`]): what `run --receipt`
    /// writes, and what verifies with no network. A server older than v1.2, or a
    /// proof that could not be had, gives the receipt without it, and
    /// [`ProvedReceipt::tlog_proof`] says which; a proof that does not check is an
    /// error.
    pub async fn receipt_with_proof(&self, server: &str) -> Result<ProvedReceipt, ClientError> {
        self.client
            .prove_receipt(self.receipt(server), &self.identity)
            .await
    }
}

/// Why [`Client::run`] returned no execution.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The request plaintext could not be written.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Talking to the server failed, or its answer broke the protocol.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What [`Client::run`] makes once per client: the server's identity and a pool
/// of sessions signed by its key.
pub(crate) struct RunContext {
    identity: ServerIdentity,
    pool: SessionPool,
}

impl Client {
    /// Runs `run` and returns its execution, opened and checked: a session from
    /// the client's pool, blobs the server is believed to hold named by SHA-256
    /// (and sent again by bytes if it answers `missing_blob` for them), sealed,
    /// posted, opened, its commitment checked. Every outcome after the server
    /// opened the request is an [`Execution`] (see its `result.status`); refusals
    /// before it are errors.
    ///
    /// The first run fetches the server's key (`GET /keys`, pinned by
    /// [`Client::with_key_id`]) and binds the blob cache to it; an on-disk cache is
    /// written after each run that was not a `missing_blob`.
    pub async fn run(&self, run: &Run) -> Result<RunOutcome, RunError> {
        let context = self.run_context().await?;
        let mut by_reference = run.initial_references(&self.known_blobs());
        let mut resent = Vec::new();
        let (execution, request_plaintext) = loop {
            let plaintext = run.plaintext(self.wire, &by_reference)?;
            let execution = if run.asynchronous {
                let pending = context
                    .pool
                    .execute_async_observed(&plaintext, run.observer.as_ref())
                    .await?;
                run.observe(RunProgress::Accepted {
                    execution_id: pending.execution_id,
                });
                self.wait_observed(pending, run.observer.as_ref()).await?
            } else {
                context
                    .pool
                    .execute_observed(&plaintext, run.observer.as_ref())
                    .await?
            };
            let missing = resend_needed(&execution, &by_reference);
            if missing.is_empty() {
                break (execution, plaintext);
            }
            // A server that lost blobs it held (a restart, an eviction) names
            // them: send those again with their bytes, once.
            by_reference.retain(|hash| !missing.contains(hash));
            let mut known = self.known_blobs();
            for hash in &missing {
                known.remove(hash);
            }
            resent.extend(missing);
        };
        if run.references != References::Never && execution.result.status != Status::MissingBlob {
            // The server keeps every blob it receives (within its budget).
            let mut known = self.known_blobs();
            for blob in run.blobs() {
                known.insert(blob.sha256);
            }
            known.save();
        }
        Ok(RunOutcome {
            execution,
            identity: context.identity.clone(),
            sent_by_reference: by_reference,
            resent_blobs: resent,
            request_plaintext,
            client: self.clone(),
        })
    }

    /// Fetches the server's identity (pinned by [`Client::with_key_id`]) and
    /// makes the session pool [`Client::run`] uses, unless this client or a clone
    /// already did: a caller that wants an unreachable server or a wrong key to be
    /// an error before its first run. Returns the identity.
    pub async fn connect(&self) -> Result<&ServerIdentity, ClientError> {
        Ok(&self.run_context().await?.identity)
    }

    /// The identity and pool, made by the first run of this client or a clone.
    async fn run_context(&self) -> Result<&RunContext, ClientError> {
        self.runs
            .get_or_try_init(|| async {
                let identity = self.identity(self.pinned_key_id.as_deref()).await?;
                self.known_blobs().bind(&identity.key_id.to_string());
                // The pool's client is this one without the run state: the pool
                // lives in that state, and must not keep it alive.
                let pool =
                    SessionPool::new(self.detached(), identity.public_key).with_batch(self.batch);
                Ok(RunContext { identity, pool })
            })
            .await
    }

    /// The blob cache, locked: never held across an `.await`.
    fn known_blobs(&self) -> MutexGuard<'_, BlobCache> {
        // A panic while holding it leaves a list of hashes, which is only a hint.
        self.blobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The blobs to send again by bytes: those a `missing_blob` names, if this
/// request named every one of them (a server naming another one is refusing the
/// request as it was made, and that is its answer).
fn resend_needed(execution: &Execution, by_reference: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let result = &execution.result;
    let missing: Vec<[u8; 32]> = result
        .missing_blobs
        .iter()
        .flatten()
        .map(|hash| hash.0)
        .collect();
    let resend = result.status == Status::MissingBlob
        && !missing.is_empty()
        && missing.iter().all(|hash| by_reference.contains(hash));
    if resend { missing } else { Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(size: usize) -> Vec<u8> {
        vec![7; size]
    }

    #[test]
    fn auto_names_only_known_blobs_of_at_least_the_minimum() {
        let big = Run::new(module(REFERENCE_MIN_BYTES)).mount("/data", vec![1; 10]);
        let mut known = BlobCache::in_memory();
        assert!(big.initial_references(&known).is_empty());
        for blob in big.blobs() {
            known.insert(blob.sha256);
        }
        assert_eq!(big.initial_references(&known), vec![big.module.sha256]);
        let small = Run::new(module(REFERENCE_MIN_BYTES - 1));
        known.insert(small.module.sha256);
        assert!(small.initial_references(&known).is_empty());
    }

    #[test]
    fn always_and_never_ignore_the_cache() {
        let known = BlobCache::in_memory();
        let run = Run::new(module(10))
            .mount("/a", vec![1])
            .writable_mount("/out");
        let always = run.references(References::Always);
        assert_eq!(always.initial_references(&known).len(), 2);
        let mut known = BlobCache::in_memory();
        let never = Run::new(module(REFERENCE_MIN_BYTES)).references(References::Never);
        known.insert(never.module.sha256);
        assert!(never.initial_references(&known).is_empty());
    }

    #[test]
    fn a_named_blob_goes_by_hash_and_the_others_by_bytes() {
        let run = Run::new(module(5))
            .args(["-v"])
            .stdin(b"in")
            .mount("/a", vec![1])
            .mount("/b", vec![2])
            .writable_mount("/out");
        let named = run.mounts[0].archive.as_ref().unwrap().sha256;
        let request = run.request(&[named]);
        assert_eq!(
            request.module.as_deref(),
            Some(encode_base64(&module(5)).as_str())
        );
        assert!(request.module_sha256.is_none());
        assert_eq!(request.mounts[0].tar_sha256, Some(Hex(named)));
        assert!(request.mounts[0].tar.is_none());
        assert_eq!(request.mounts[1].tar.as_deref(), Some("Ag=="));
        assert!(request.mounts[2].writable && request.mounts[2].tar.is_none());
        assert_eq!(request.args, ["-v"]);
        assert_eq!(request.stdin.as_deref(), Some("aW4="));
        let by_hash = run.request(&[run.module.sha256]);
        assert!(by_hash.module.is_none());
        assert_eq!(by_hash.module_sha256, Some(Hex(run.module.sha256)));
    }

    #[test]
    fn the_plaintext_is_encoded_again_only_for_other_references_or_wire() {
        let run = Run::new(module(5));
        let first = run.plaintext(Wire::V1_1, &[]).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &run.plaintext(Wire::V1_1, &[]).unwrap()
        ));
        let json = run.plaintext(Wire::V1, &[]).unwrap();
        assert!(json.starts_with(b"{"));
        let named = run.plaintext(Wire::V1, &[run.module.sha256]).unwrap();
        assert!(!Arc::ptr_eq(&json, &named));
    }

    #[test]
    fn empty_stdin_and_default_limits_are_left_out() {
        let request = Run::new(module(1))
            .stdin(b"")
            .limits(RequestedLimits::default())
            .request(&[]);
        assert!(request.stdin.is_none() && request.limits.is_none());
    }
}
