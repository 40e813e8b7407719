//! The HTTP surface: routes, the conversion between the protocol's wire types and
//! domain values, and the one mapping of errors to HTTP status codes and the
//! protocol's error shape.
//!
//! Architecture invariant: with `server`, which serves it, this is the only module
//! that knows HTTP. Handlers parse the wire format into domain types
//! ([`SealedExecution`](crate::execution::SealedExecution)), call the domain, and
//! turn its answers back into the protocol's wire types.
//!
//! # Layout
//! - `router`: the routes and the OpenAPI document made from the same annotations.
//! - [`error`]: [`ApiError`] and its one mapping to status, code and body.
//! - `extract`: the JSON extractor, body reading and the two `/execute` body
//!   types, the client a request counts against, ids.
//! - `middleware`: the layers before the handlers (ids, spans, metrics, sizes,
//!   tokens, rates, fallbacks).
//! - `forwarded`: the client's address behind trusted proxies.
//! - `answer_stream`: a kept async answer's body, streamed piece by piece.
//! - [`witness_client`]: the HTTP side of witness submissions (`crate::witness`).
//! - Handlers, by resource: `sessions`, `executions`, `keys`, `log`,
//!   `operations` (`/health`, `/metrics`), `usage` (`/usage`); `playground`, the static page at
//!   `/playground/` when `playground: true`.

mod answer_stream;
mod error;
mod executions;
mod extract;
mod forwarded;
mod keys;
mod log;
mod middleware;
mod operations;
mod playground;
mod router;
mod sessions;
mod tlog;
mod usage;
pub(crate) mod witness_client;

pub use self::error::ApiError;
pub use self::executions::{decode_execute_body, sealed_binary_execution, sealed_execution};
pub use self::forwarded::client_address;
pub use self::middleware::{ExcessConnection, MetricsAccess};
pub use self::router::{openapi, router};

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio_util::task::TaskTracker;

use crate::access::{Quotas, TokenSet};
use crate::async_results::AsyncExecutions;
use crate::audit::AuditLog;
use crate::execution::Executor;
use crate::health::Health;
use crate::keys::ServerKey;
use crate::metrics::Metrics;
use crate::session::SessionStore;
use wasm_hypervisor_protocol::note::NoteSigningKey;

/// Shared state of the handlers: one `Arc`, because axum clones the state for
/// every extractor of every request (a struct of a dozen `Arc`s cost more CPU per
/// request than routing it; see BENCHMARKS.md).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub executor: Executor,
    /// The audit log, which the log's routes and the gauges read directly; only
    /// the executor appends to it.
    pub log: AuditLog,
    pub sessions: Arc<dyn SessionStore>,
    pub health: Health,
    pub metrics: Metrics,
    pub key: Arc<ServerKey>,
    /// The log's tiles (protocol v1.2 §T3), with their cache.
    pub(crate) tiles: crate::tlog::Tiles,
    /// The log's note key (protocol v1.2 §T1), named `origin`.
    pub note_key: Arc<NoteSigningKey>,
    /// Witness cosigning and the published checkpoint (protocol v1.2 §T5);
    /// `None` without `witnesses.policy_file`: every checkpoint is published.
    pub witnessing: Option<crate::witness::Witnessing>,
    pub origin: Arc<str>,
    pub started: Instant,
    /// Tokens accepted by `POST /sessions` and `POST /execute`; empty: open.
    pub tokens: TokenSet,
    /// Who may read `GET /metrics`, and how much of it.
    pub metrics_access: MetricsAccess,
    /// Per-client request rates and executions in flight.
    pub quotas: Quotas,
    /// Each client's usage and quotas of executions, fuel and bytes (protocol
    /// v1.2 §U).
    pub usage: crate::usage::Usage,
    /// `GET /health`'s own request rate per address (`http.health_requests_per_second`).
    pub health_quotas: Quotas,
    /// Peers whose `X-Forwarded-For` / `Forwarded` header is believed.
    pub trusted_proxies: Arc<[IpNet]>,
    /// How long a client may take to send a whole body.
    pub body_read_timeout: Duration,
    /// Most bytes of request line and headers accepted.
    pub max_header_bytes: usize,
    /// The execution tasks, which a shutdown waits for: they outlive their request
    /// when the client goes away.
    pub executions: TaskTracker,
    /// Executions accepted with `Prefer: respond-async` and their kept answers.
    pub async_executions: AsyncExecutions,
    pub max_request_bytes: usize,
    /// Most sessions one `POST /sessions {"count": N}` may ask for
    /// (`sessions.max_batch`).
    pub max_session_batch: usize,
    /// Whether `/playground/` is served (`playground`).
    pub playground: bool,
}
