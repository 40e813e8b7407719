//! The Rust client of wasm-hypervisor: the client side of the protocol over HTTP.
//! It fetches and pins the server's key, opens a session and checks its signature,
//! seals a request, opens the result and checks the commitment, and fetches what
//! a receipt is checked against (`/verify`, checkpoints, consistency proofs) or
//! carries (the tlog-proof of protocol v1.2 §T4).
//!
//! It is the protocol crate ([`wasm_hypervisor_protocol`]) plus HTTP (reqwest);
//! the `run`, `verify` and `health` commands, `loadgen` and the integration tests
//! use it. It never depends on the server.
//!
//! # Layout
//! - The crate root: [`Client`] and what its calls return, [`ClientError`] and the
//!   [`Violation`]s of the protocol a client refuses; [`Wire`], the protocol
//!   version it speaks (v1.1's binary bodies and CBOR plaintexts by default).
//! - `retry`: [`Retries`], how an idempotent call answered 429 or 503 with
//!   `Retry-After` is made again, within a bound.
//! - [`pool`]: a pool of pre-opened sessions, opened in signed batches (protocol
//!   v1.1 §A) that grow on demand, that replaces an expired session without the
//!   caller noticing.
//! - [`archive`]: mount archives, a host directory packed and a `mounts_out`
//!   archive unpacked.
//! - [`run`]: [`Client::run`], one execution end to end from a [`Run`] (session
//!   from the pool, blobs by reference, long jobs, progress); [`blob_cache`]: the
//!   blobs a server is believed to hold, in memory or in the user's cache.
//! - `upload`: a large request body sent in chunks, each reported.
//! - [`tlog`]: the log in the C2SP formats (protocol v1.2 §T2, §T4): the
//!   checkpoint note, an execution's tlog-proof, and the receipt that carries it,
//!   checked before it is written.
//! - [`monitor`]: `log monitor` (protocol v1.2 §T6): the log followed from its
//!   checkpoint and tiles alone against a tlog-policy, each checkpoint proved to
//!   extend the last one seen (kept in a state directory), each new entry checked.

pub mod archive;
pub mod blob_cache;
pub mod monitor;
pub mod pool;
mod retry;
pub mod run;
pub mod tlog;
mod upload;

pub use blob_cache::BlobCache;
pub use pool::SessionPool;
pub use retry::Retries;
pub use run::{References, Run, RunError, RunOutcome, RunProgress};
pub use tlog::{ProvedReceipt, TlogProofOutcome};

use std::sync::{Arc, Mutex};

use run::{Observer, RunContext};

use uuid::Uuid;
use wasm_hypervisor_protocol::binary::{self, BinaryError};
use wasm_hypervisor_protocol::cbor::CborError;
use wasm_hypervisor_protocol::digest::sha256;
use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::envelope::{self, EnvelopeError, POINT_LEN, ResponseKeys};
use wasm_hypervisor_protocol::note::{TYPE_ED25519, VerifierKey};
use wasm_hypervisor_protocol::payload::{ExecutionRequest, ExecutionResult};
use wasm_hypervisor_protocol::plaintext::{self, Format};
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::receipt::{RECEIPT_VERSION, Receipt};
use wasm_hypervisor_protocol::signing::PublicKey;
use wasm_hypervisor_protocol::wire::{
    CheckpointResponse, ConsistencyResponse, ErrorBody, ExecuteBody, ExecuteResponse,
    ExecutionAccepted, ExecutionPhase, ExecutionState, HealthResponse, KeysResponse, PendingState,
    SessionResponse, Suite, VerifyResponse,
};

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or the connection failed.
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error in the protocol's error shape.
    #[error("the server answered {status} {code}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
        /// Seconds from the `Retry-After` header, when the server sent one.
        retry_after: Option<u64>,
    },
    /// The server's key does not match the pinned key id.
    #[error("the server's key id is {actual}, not the pinned {expected}")]
    KeyMismatch { expected: String, actual: String },
    /// A session key's signature does not verify under the server's key.
    #[error("the session key is not signed by the server's key; refusing to encrypt to it")]
    BadSessionSignature,
    /// The server answered something that does not follow the protocol.
    #[error("protocol violation: {0}")]
    Protocol(#[from] Violation),
    /// The request could not be sealed to the session's key.
    #[error("cannot seal the request: {0}")]
    Seal(EnvelopeError),
}

/// How a server's answer breaks the protocol.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    /// A body is not the document the protocol says.
    #[error("unexpected answer: {0}")]
    Body(serde_json::Error),
    /// `/keys` gave a public key that is not a P-256 SPKI.
    #[error("`public_key` is not a P-256 SPKI")]
    PublicKey,
    /// `/keys` gave a key id that is not the key's SHA-256.
    #[error("`key_id` is not the SHA-256 of the public key")]
    KeyId,
    /// `/keys` gave a `note_verifier_key` that is not an Ed25519 vkey named after
    /// the origin (protocol v1.2 §T1).
    #[error("`note_verifier_key` is not an Ed25519 verifier key named after the origin")]
    NoteVerifierKey,
    /// A text answer (a tlog-proof, a checkpoint note) that is not UTF-8.
    #[error("the answer is not UTF-8 text")]
    NotText,
    /// The tlog-proof the server gave for an execution does not prove it under
    /// the server's note key: the named receipt check failed.
    #[error("the tlog-proof fails the check `{check}`: {failure}")]
    TlogProof {
        check: &'static str,
        failure: wasm_hypervisor_protocol::receipt::CheckFailure,
    },
    /// A session of another suite than v1's.
    #[error("unexpected cipher suite {0:?}")]
    Suite(Suite),
    /// A session id that is not a UUID.
    #[error("`session_id` is not a UUID")]
    SessionId,
    /// An execution id that is not a UUID.
    #[error("`execution_id` is not a UUID")]
    ExecutionId,
    /// The sealed result does not open with the request's keys.
    #[error("the result does not decrypt with this request's keys")]
    ResultDoesNotOpen,
    /// The opened result is not a result plaintext.
    #[error("the result is not valid: {0}")]
    Result(serde_json::Error),
    /// The opened result of a CBOR request is not a CBOR result plaintext.
    #[error("the result is not valid CBOR: {0}")]
    CborResult(CborError),
    /// A binary answer whose framing does not hold (protocol v1.1 §B).
    #[error("the binary answer is not valid: {0}")]
    Binary(BinaryError),
    /// A batch of sessions that is not what was asked, or not signed by the
    /// server's key over the batch (protocol v1.1 §A).
    #[error("the session batch is refused: {0}")]
    Batch(wasm_hypervisor_protocol::wire::BatchError),
    /// The opened result names another execution than the answer.
    #[error("the sealed result names another execution")]
    OtherExecution,
    /// The commitment is not the one request and result give.
    #[error("the commitment does not match the request and result")]
    Commitment,
    /// A `202` to `Prefer: respond-async` without `Preference-Applied:
    /// respond-async`, or whose `location` is not the execution's.
    #[error("the server's 202 is not an accepted async execution")]
    Accepted,
    /// A session's `expires_at` that is not RFC 3339.
    #[error("`expires_at` is not an RFC 3339 time")]
    ExpiresAt,
    /// An answer of a status the endpoint does not give.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
}

/// The server's identity, from `GET /keys`.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub origin: String,
    pub public_key: PublicKey,
    pub key_id: Hex,
    /// The log's note key (protocol v1.2 §T1), which signs its checkpoint notes:
    /// `None` from a server older than v1.2, which has no tlog-proofs.
    pub note_verifier_key: Option<VerifierKey>,
}

/// An open session whose key the server vouched for.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub public_key: [u8; POINT_LEN],
}

/// The protocol version a client speaks on `/execute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wire {
    /// Protocol v1: JSON bodies and JSON plaintexts, base64 for bytes.
    V1,
    /// Protocol v1.1 §B and §C: binary bodies and CBOR plaintexts (the default).
    #[default]
    V1_1,
}

impl Wire {
    /// The request plaintext of `request` in this version's format: JSON (v1) or
    /// deterministic CBOR (v1.1). Its byte fields hold base64, as for JSON.
    pub fn encode_request(self, request: &ExecutionRequest) -> Result<Vec<u8>, EncodeError> {
        match self {
            Wire::V1 => serde_json::to_vec(request).map_err(EncodeError::Json),
            Wire::V1_1 => plaintext::encode_request(request).map_err(EncodeError::Cbor),
        }
    }
}

impl std::str::FromStr for Wire {
    type Err = String;
    fn from_str(text: &str) -> Result<Wire, String> {
        match text {
            "v1" => Ok(Wire::V1),
            "v1.1" => Ok(Wire::V1_1),
            other => Err(format!("unknown wire version `{other}` (v1 or v1.1)")),
        }
    }
}

/// Why a request could not be written as a plaintext.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot write the request as JSON: {0}")]
    Json(serde_json::Error),
    #[error("cannot write the request as CBOR: {0}")]
    Cbor(plaintext::EncodeError),
}

/// A finished execution, opened and checked.
pub struct Execution {
    pub response: ExecuteResponse,
    pub execution_id: Uuid,
    pub result: ExecutionResult,
    pub result_plaintext: Vec<u8>,
    pub request_sha256: [u8; 32],
    pub result_sha256: [u8; 32],
    pub salt: [u8; 32],
    pub commitment: [u8; 32],
}

impl Execution {
    /// The receipt that proves this execution later, offline or against the log
    /// (`verify`): what `run --receipt` writes. It holds the commitment's salt,
    /// so whoever keeps it should keep it private.
    pub fn receipt(&self, server: &str, identity: &ServerIdentity) -> Receipt {
        Receipt {
            version: RECEIPT_VERSION,
            server: server.to_owned(),
            origin: identity.origin.clone(),
            key_id: identity.key_id,
            public_key: Base64(identity.public_key.spki_der()),
            execution_id: self.response.execution_id.clone(),
            log_index: self.response.log_index,
            status: self.result.status,
            commitment: self.response.commitment,
            salt: Hex(self.salt),
            request_sha256: Hex(self.request_sha256),
            result_sha256: Hex(self.result_sha256),
            module_sha256: self.result.module_sha256,
            leaf_signature: self.response.leaf_signature.clone(),
            tlog_proof: None,
        }
    }
}

/// An HTTP client for one server, with the crypto provider it seals and verifies
/// with (independent of the server's: the bytes on the wire are the same).
///
/// A client and its clones share what [`Client::run`] makes on first use (the
/// server's identity and a session pool) and its [`BlobCache`]; each `with_*`
/// gives a client with run state of its own.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    provider: Provider,
    wire: Wire,
    retries: Retries,
    /// The key id [`Client::run`] requires of the server, if pinned.
    pinned_key_id: Option<String>,
    /// The most sessions one batch of [`Client::run`]'s pool asks for.
    batch: usize,
    blobs: Arc<Mutex<BlobCache>>,
    runs: Arc<tokio::sync::OnceCell<RunContext>>,
}

impl Client {
    /// `base` is the server's URL, e.g. `http://127.0.0.1:8080`. The client uses the
    /// fastest provider compiled in until [`Client::with_provider`] says otherwise.
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client::with_http(reqwest::Client::new(), base, token)
    }

    /// As [`Client::new`], over `http` (bound to a local address, say).
    pub fn with_http(http: reqwest::Client, base: &str, token: Option<String>) -> Client {
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            provider: Provider::default(),
            wire: Wire::default(),
            retries: Retries::default(),
            pinned_key_id: None,
            batch: SessionPool::DEFAULT_BATCH,
            blobs: Arc::default(),
            runs: Arc::default(),
        }
    }

    /// This client with run state of its own (nothing fetched yet).
    fn detached(&self) -> Client {
        Client {
            runs: Arc::default(),
            ..self.clone()
        }
    }

    /// The same client, whose [`Client::run`] requires the server's key id to be
    /// `key_id` (hex SHA-256 of its SPKI), as [`Client::identity`] does.
    pub fn with_key_id(self, key_id: Option<String>) -> Client {
        Client {
            pinned_key_id: key_id,
            ..self.detached()
        }
    }

    /// The same client, whose [`Client::run`] opens at most `batch` sessions at a
    /// time ([`SessionPool::with_batch`]; [`SessionPool::DEFAULT_BATCH`] unless
    /// told otherwise).
    pub fn with_batch(self, batch: usize) -> Client {
        Client {
            batch,
            ..self.detached()
        }
    }

    /// The same client, remembering which blobs the server holds in `cache`
    /// (in memory unless told otherwise).
    pub fn with_blob_cache(self, cache: BlobCache) -> Client {
        Client {
            blobs: Arc::new(Mutex::new(cache)),
            ..self.detached()
        }
    }

    /// As [`Client::new`], giving up on any request after `timeout`.
    pub fn with_timeout(
        base: &str,
        token: Option<String>,
        timeout: std::time::Duration,
    ) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Client::with_http(http, base, token))
    }

    /// The same client, sealing and verifying on `provider`.
    pub fn with_provider(self, provider: Provider) -> Client {
        Client {
            provider,
            ..self.detached()
        }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The same client, sending `/execute` bodies of `wire`'s version (binary for
    /// v1.1, JSON for v1). The plaintext's format is the caller's
    /// ([`Wire::encode_request`]); the result is read in whichever it is.
    pub fn with_wire(self, wire: Wire) -> Client {
        Client {
            wire,
            ..self.detached()
        }
    }

    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// The same client, retrying idempotent calls as `retries` says
    /// ([`Retries::default`] unless told otherwise).
    pub fn with_retries(self, retries: Retries) -> Client {
        Client {
            retries,
            ..self.detached()
        }
    }

    pub fn retries(&self) -> Retries {
        self.retries
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.authorized(self.http.post(format!("{}{path}", self.base)))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET /keys`; with `pinned_key_id`, the server's key must be that one.
    /// Like every idempotent call, made again after a 429 or 503 as [`Retries`]
    /// allow.
    pub async fn identity(
        &self,
        pinned_key_id: Option<&str>,
    ) -> Result<ServerIdentity, ClientError> {
        let keys: KeysResponse = retry::idempotent(
            self.retries,
            || async { parse(self.http.get(format!("{}/keys", self.base)).send().await?).await },
            |_| true,
        )
        .await?;
        let public_key = PublicKey::from_spki_der(self.provider, &keys.public_key.0)
            .map_err(|_| Violation::PublicKey)?;
        let key_id = Hex(public_key.key_id());
        if key_id != keys.key_id {
            return Err(Violation::KeyId.into());
        }
        if let Some(expected) = pinned_key_id
            && !expected.eq_ignore_ascii_case(&key_id.to_string())
        {
            return Err(ClientError::KeyMismatch {
                expected: expected.to_owned(),
                actual: key_id.to_string(),
            });
        }
        let note_verifier_key = keys
            .note_verifier_key
            .map(|text| {
                VerifierKey::parse(self.provider, &text)
                    .ok()
                    .filter(|key| key.signature_type() == TYPE_ED25519 && key.name() == keys.origin)
                    .ok_or(Violation::NoteVerifierKey)
            })
            .transpose()?;
        Ok(ServerIdentity {
            origin: keys.origin,
            public_key,
            key_id,
            note_verifier_key,
        })
    }

    /// `POST /sessions`, checking the session key's signature under `server_key`.
    pub async fn open_session(&self, server_key: &PublicKey) -> Result<Session, ClientError> {
        self.open_session_until(server_key)
            .await
            .map(|(session, _)| session)
    }

    /// [`Client::open_session`], with the session's `expires_at` as the server
    /// wrote it.
    pub async fn open_session_until(
        &self,
        server_key: &PublicKey,
    ) -> Result<(Session, String), ClientError> {
        let session: SessionResponse = retry::idempotent(
            self.retries,
            || async { parse(self.post("/sessions").send().await?).await },
            |_| true,
        )
        .await?;
        if session.suite != Suite::v1() {
            return Err(Violation::Suite(session.suite).into());
        }
        let id = Uuid::try_parse(&session.session_id).map_err(|_| Violation::SessionId)?;
        let public_key: [u8; POINT_LEN] = session.public_key.0;
        let message = envelope::session_signature_message(&id, &public_key);
        server_key
            .verify(&message, &session.signature.0)
            .map_err(|_| ClientError::BadSessionSignature)?;
        Ok((Session { id, public_key }, session.expires_at))
    }

    /// `POST /sessions {"count": N}` (protocol v1.1 §A): N sessions, their one
    /// signature checked under `server_key` over the whole batch.
    pub async fn open_sessions(
        &self,
        server_key: &PublicKey,
        count: usize,
    ) -> Result<Vec<wasm_hypervisor_protocol::wire::VerifiedSession>, ClientError> {
        let request = wasm_hypervisor_protocol::wire::SessionsRequest {
            count: i64::try_from(count).unwrap_or(i64::MAX),
        };
        let batch: wasm_hypervisor_protocol::wire::SessionBatchResponse = retry::idempotent(
            self.retries,
            || async { parse(self.post("/sessions").json(&request).send().await?).await },
            // Over a pending bound, a smaller batch now (the pool's choice)
            // beats the same batch later.
            |error| count == 1 || !pool::over_pending_bound(error),
        )
        .await?;
        let sessions = batch.verify(server_key).map_err(|error| match error {
            wasm_hypervisor_protocol::wire::BatchError::Signature => {
                ClientError::BadSessionSignature
            }
            other => Violation::Batch(other).into(),
        })?;
        if sessions.len() != count {
            return Err(Violation::Batch(wasm_hypervisor_protocol::wire::BatchError::Empty).into());
        }
        Ok(sessions)
    }

    /// Seals `request_plaintext` to the session, posts it, opens the result and
    /// checks that the server's commitment is the one both sides can compute.
    pub async fn execute(
        &self,
        session: &Session,
        request_plaintext: &[u8],
    ) -> Result<Execution, ClientError> {
        self.execute_observed(session, request_plaintext, None)
            .await
    }

    /// [`Client::execute`], reporting the upload of a large body to `observer`.
    pub(crate) async fn execute_observed(
        &self,
        session: &Session,
        request_plaintext: &[u8],
        observer: Option<&Observer>,
    ) -> Result<Execution, ClientError> {
        let (body, keys) = self.seal(session, request_plaintext)?;
        let response = body.post(self, observer).send().await?;
        let response = parse_execute_answer(response).await?;
        open_execution(response, &keys, request_plaintext)
    }

    /// The `/execute` body sealing `request_plaintext` to `session`, in this
    /// client's wire version, and the keys that open its answer.
    fn seal(
        &self,
        session: &Session,
        request_plaintext: &[u8],
    ) -> Result<(SealedBody, ResponseKeys), ClientError> {
        let sealed = envelope::seal_request(
            self.provider,
            &session.public_key,
            &session.id,
            request_plaintext,
        )
        .map_err(ClientError::Seal)?;
        let body = match self.wire {
            Wire::V1 => SealedBody::Json(ExecuteBody {
                session_id: session.id.hyphenated().to_string(),
                enc: Base64(sealed.enc),
                ciphertext: Base64(sealed.ciphertext),
            }),
            Wire::V1_1 => SealedBody::Binary(
                binary::ExecuteBody {
                    session_id: session.id,
                    enc: sealed.enc,
                    ciphertext: &sealed.ciphertext,
                }
                .to_vec(),
            ),
        };
        Ok((body, sealed.keys))
    }

    /// As [`Client::execute`], with `Prefer: respond-async` (protocol v1.1 §F):
    /// returns once the server has opened the request, with what is needed to
    /// fetch and open the answer later ([`Client::poll`], [`Client::wait`]).
    /// Refusals before the plaintext opened are errors, as with `execute`.
    pub async fn execute_async(
        &self,
        session: &Session,
        request_plaintext: &[u8],
    ) -> Result<PendingExecution, ClientError> {
        self.execute_async_observed(session, request_plaintext, None)
            .await
    }

    /// [`Client::execute_async`], reporting the upload of a large body to
    /// `observer`.
    pub(crate) async fn execute_async_observed(
        &self,
        session: &Session,
        request_plaintext: &[u8],
        observer: Option<&Observer>,
    ) -> Result<PendingExecution, ClientError> {
        let (body, keys) = self.seal(session, request_plaintext)?;
        let binary = matches!(body, SealedBody::Binary(_));
        let response = body
            .post(self, observer)
            .header("prefer", "respond-async")
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::OK {
            // A server may ignore the preference (RFC 7240): the answer is here.
            let response = parse_execute_answer(response).await?;
            let execution = open_execution(response, &keys, request_plaintext)?;
            return Ok(PendingExecution {
                execution_id: execution.execution_id,
                location: None,
                keys,
                request_plaintext: request_plaintext.to_vec(),
                finished: Some(Box::new(execution)),
                binary,
            });
        }
        let applied = response
            .headers()
            .get("preference-applied")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.eq_ignore_ascii_case("respond-async"));
        let status = response.status();
        let accepted: ExecutionAccepted = parse(response).await?;
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(Violation::Status(status.as_u16()).into());
        }
        let execution_id =
            Uuid::try_parse(&accepted.execution_id).map_err(|_| Violation::ExecutionId)?;
        if !applied || accepted.location != format!("/executions/{}", accepted.execution_id) {
            return Err(Violation::Accepted.into());
        }
        Ok(PendingExecution {
            execution_id,
            location: Some(accepted.location),
            keys,
            request_plaintext: request_plaintext.to_vec(),
            finished: None,
            binary,
        })
    }

    /// `GET /executions/{id}` once (made again after a 429 or 503 as
    /// [`Retries`] allows): the execution opened and checked if it has
    /// finished, else where it is and how long the server asks to wait. For an
    /// execution the server answered at once (it ignored the preference:
    /// `location` is `None`) there is nothing to poll; [`Client::wait`] returns it.
    pub async fn poll(&self, pending: &PendingExecution) -> Result<Progress, ClientError> {
        Ok(self.poll_phase(pending).await?.0)
    }

    /// [`Client::poll`], with the phase a pending execution is in, if the
    /// server says (a separate value so that [`Progress`] stays as it was).
    async fn poll_phase(
        &self,
        pending: &PendingExecution,
    ) -> Result<(Progress, Option<ExecutionPhase>), ClientError> {
        retry::idempotent(self.retries, || self.poll_once(pending), |_| true).await
    }

    /// One `GET /executions/{id}` of [`Client::poll`].
    async fn poll_once(
        &self,
        pending: &PendingExecution,
    ) -> Result<(Progress, Option<ExecutionPhase>), ClientError> {
        let Some(location) = &pending.location else {
            return Err(Violation::Accepted.into());
        };
        let mut request = self.authorized(self.http.get(format!("{}{location}", self.base)));
        if pending.binary {
            // Protocol v1.1 §F: the answer in binary, as the request was.
            request = request.header(reqwest::header::ACCEPT, "application/octet-stream");
        }
        let response = request.send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::ACCEPTED {
            let retry_after = retry_after(&response);
            let state: ExecutionState = parse(response).await?;
            if state.execution_id != pending.execution_id.hyphenated().to_string() {
                return Err(Violation::OtherExecution.into());
            }
            let progress = Progress::Pending {
                state: state.state,
                retry_after: std::time::Duration::from_secs(retry_after.unwrap_or(1)),
            };
            return Ok((progress, state.phase));
        }
        let response = parse_execute_answer(response).await?;
        if response.execution_id != pending.execution_id.hyphenated().to_string() {
            return Err(Violation::OtherExecution.into());
        }
        let execution = open_execution(response, &pending.keys, &pending.request_plaintext)?;
        Ok((Progress::Done(Box::new(execution)), None))
    }

    /// Polls until the execution has finished, waiting between polls as long as
    /// the server's `Retry-After` says (at most a minute).
    pub async fn wait(&self, pending: PendingExecution) -> Result<Execution, ClientError> {
        self.wait_observed(pending, None).await
    }

    /// [`Client::wait`], telling `observer` where the execution is at each poll.
    pub(crate) async fn wait_observed(
        &self,
        mut pending: PendingExecution,
        observer: Option<&Observer>,
    ) -> Result<Execution, ClientError> {
        if let Some(execution) = pending.finished.take() {
            return Ok(*execution);
        }
        loop {
            match self.poll_phase(&pending).await? {
                (Progress::Done(execution), _) => return Ok(*execution),
                (Progress::Pending { state, retry_after }, phase) => {
                    if let Some(observer) = observer {
                        observer(RunProgress::Pending { state, phase });
                    }
                    tokio::time::sleep(retry_after.min(std::time::Duration::from_secs(60))).await
                }
            }
        }
    }
}

/// An execution accepted with `Prefer: respond-async`. It holds the request's
/// response keys (which never leave the client) and plaintext (for the
/// commitment), so whoever holds it can open the answer: keep it private.
pub struct PendingExecution {
    pub execution_id: Uuid,
    /// `/executions/{execution_id}`; `None` if the server answered at once.
    pub location: Option<String>,
    keys: ResponseKeys,
    request_plaintext: Vec<u8>,
    /// The server ignored the preference and answered synchronously.
    finished: Option<Box<Execution>>,
    /// The request went as a binary body: its answer is fetched in binary.
    binary: bool,
}

/// A sealed `/execute` body in one of the two body types.
enum SealedBody {
    Json(ExecuteBody),
    Binary(Vec<u8>),
}

impl SealedBody {
    /// `POST /execute` with this body and its `Content-Type`; with an observer, a
    /// large body goes in chunks, each reported ([`upload`]).
    fn post(self, client: &Client, observer: Option<&Observer>) -> reqwest::RequestBuilder {
        let request = client.post("/execute");
        match (self, observer) {
            (SealedBody::Json(body), None) => request.json(&body),
            (SealedBody::Json(body), Some(observer)) => match serde_json::to_vec(&body) {
                Ok(bytes) => upload::body(
                    request.header(reqwest::header::CONTENT_TYPE, "application/json"),
                    bytes,
                    observer,
                ),
                // As `json` does: the error is the request's when it is sent.
                Err(_) => request.json(&body),
            },
            (SealedBody::Binary(bytes), observer) => {
                let request =
                    request.header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
                match observer {
                    Some(observer) => upload::body(request, bytes, observer),
                    None => request.body(bytes),
                }
            }
        }
    }
}

/// An `/execute` `200` (or a finished `GET /executions/{id}`) in either body
/// type, as the JSON document: a binary answer (protocol v1.1 §B) is told by its
/// `Content-Type`. Errors are JSON whatever the request's type.
async fn parse_execute_answer(response: reqwest::Response) -> Result<ExecuteResponse, ClientError> {
    let binary = response.status().is_success()
        && response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/octet-stream"));
    if !binary {
        return parse(response).await;
    }
    let bytes = response.bytes().await?;
    let answer = binary::ExecuteAnswer::parse(&bytes).map_err(Violation::Binary)?;
    Ok(ExecuteResponse {
        execution_id: answer.execution_id.hyphenated().to_string(),
        ciphertext: Base64(answer.ciphertext.to_vec()),
        commitment: Hex(answer.commitment),
        log_index: answer.log_index,
        leaf_signature: Base64(answer.leaf_signature.to_vec()),
    })
}

/// Where an async execution is.
pub enum Progress {
    /// Not finished: poll again after `retry_after`.
    Pending {
        state: PendingState,
        retry_after: std::time::Duration,
    },
    /// Finished, opened and checked.
    Done(Box<Execution>),
}

/// What `GET /health` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The HTTP status: 200 while the server can execute and log, 503 otherwise.
    pub status: u16,
    /// Why it cannot (PROTOCOL.md, "Health"); empty with 200, or when the body
    /// could not be read.
    pub reasons: Vec<String>,
}

impl Health {
    /// Whether the server is in rotation.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Client {
    /// `GET /health`. Either status is an answer; only a failed request is an error.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let response = self
            .http
            .get(format!("{}/health", self.base))
            .send()
            .await?;
        let status = response.status().as_u16();
        // A 503 names its reasons; anything else unreadable just has none.
        let reasons = response
            .json::<HealthResponse>()
            .await
            .map(|body| body.reasons)
            .unwrap_or_default();
        Ok(Health { status, reasons })
    }

    /// `GET /log/checkpoint`.
    pub async fn checkpoint(&self) -> Result<CheckpointResponse, ClientError> {
        self.get_json(format!("{}/log/checkpoint", self.base)).await
    }

    /// `GET /verify/{execution_id}`.
    pub async fn inclusion(&self, execution_id: &str) -> Result<VerifyResponse, ClientError> {
        self.get_json(format!("{}/verify/{execution_id}", self.base))
            .await
    }

    /// `GET /log/consistency?first=..&second=..`.
    pub async fn consistency(
        &self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyResponse, ClientError> {
        self.get_json(format!(
            "{}/log/consistency?first={first}&second={second}",
            self.base
        ))
        .await
    }

    /// An idempotent `GET` of a JSON document.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
    ) -> Result<T, ClientError> {
        retry::idempotent(
            self.retries,
            || async { parse(self.http.get(&url).send().await?).await },
            |_| true,
        )
        .await
    }
}

/// Opens and checks an `/execute` answer with the keys of the request it answers.
pub fn open_execution(
    response: ExecuteResponse,
    keys: &ResponseKeys,
    request_plaintext: &[u8],
) -> Result<Execution, ClientError> {
    let execution_id =
        Uuid::try_parse(&response.execution_id).map_err(|_| Violation::ExecutionId)?;
    let result_plaintext = keys
        .open_result(&execution_id, &response.ciphertext.0)
        .map_err(|_: EnvelopeError| Violation::ResultDoesNotOpen)?;
    // Protocol v1.1 §C: the result is in the request's format.
    let result: ExecutionResult = match Format::of(request_plaintext) {
        Format::Json => serde_json::from_slice(&result_plaintext).map_err(Violation::Result)?,
        Format::Cbor => {
            plaintext::decode_result(&result_plaintext).map_err(Violation::CborResult)?
        }
    };
    if result.execution_id != response.execution_id {
        return Err(Violation::OtherExecution.into());
    }
    let commitment = keys.commitment(request_plaintext, &result_plaintext);
    if !envelope::digest_eq(&commitment, &response.commitment.0) {
        return Err(Violation::Commitment.into());
    }
    Ok(Execution {
        execution_id,
        request_sha256: sha256(request_plaintext),
        result_sha256: sha256(&result_plaintext),
        salt: keys.salt(),
        commitment,
        result,
        result_plaintext,
        response,
    })
}

/// Seconds from the `Retry-After` header, when it is a number of seconds.
fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

async fn parse<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let bytes = success_body(response).await?;
    serde_json::from_slice(&bytes).map_err(|error| Violation::Body(error).into())
}

/// The body of a 2xx answer; any other status as [`ClientError::Server`], read
/// from the protocol's error shape when it is one.
async fn success_body(response: reqwest::Response) -> Result<bytes::Bytes, ClientError> {
    let status = response.status();
    let retry_after = retry_after(&response);
    let bytes = response.bytes().await?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ClientError::Server {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
                retry_after,
            },
            Err(_) => ClientError::Server {
                status: status.as_u16(),
                code: "unknown".to_owned(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                retry_after,
            },
        });
    }
    Ok(bytes)
}
