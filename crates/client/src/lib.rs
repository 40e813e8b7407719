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
//! - The crate root: [`Client`], its settings and its builders; [`Wire`], the
//!   protocol version it speaks (v1.1's binary bodies and CBOR plaintexts by
//!   default). Its calls are in the modules that follow, by what they do.
//! - `error`: [`ClientError`] and the [`Violation`]s of the protocol a client
//!   refuses.
//! - `identity`: the server's identity (`GET /keys`, pinned) and sessions, one or
//!   a signed batch ([`ServerIdentity`], [`Session`]).
//! - `execute`: one request sealed, posted in the wire version's body and
//!   answered at once ([`Client::execute`]); `jobs`: long jobs, posted with
//!   `Prefer: respond-async` and polled ([`PendingExecution`], [`Progress`]).
//! - `execution`: the answer opened and checked ([`open_execution`], the
//!   commitment), and the receipt of an [`Execution`].
//! - `reads`: `/health` ([`Health`]), `/log/checkpoint`, `/verify/{id}`,
//!   `/log/consistency`.
//! - `http`: an answer read the protocol's way (a 2xx body, or the error shape).
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
mod error;
mod execute;
mod execution;
mod http;
mod identity;
mod jobs;
pub mod monitor;
pub mod pool;
mod reads;
mod retry;
pub mod run;
pub mod tlog;
mod upload;

pub use blob_cache::BlobCache;
pub use error::{ClientError, Violation};
pub use execution::{Execution, open_execution};
pub use identity::{ServerIdentity, Session};
pub use jobs::{PendingExecution, Progress};
pub use pool::SessionPool;
pub use reads::Health;
pub use retry::Retries;
pub use run::{References, Run, RunError, RunOutcome, RunProgress};
pub use tlog::{ProvedReceipt, TlogProofOutcome};

use std::sync::{Arc, Mutex};

use run::RunContext;

use wasm_hypervisor_protocol::payload::ExecutionRequest;
use wasm_hypervisor_protocol::plaintext;
use wasm_hypervisor_protocol::provider::Provider;

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
}
