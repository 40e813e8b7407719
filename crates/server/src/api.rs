//! The HTTP surface: routes, wire DTOs, and the one mapping of errors to HTTP status
//! codes and the protocol's error shape `{"error": {"code", "message"}}`.
//!
//! Architecture invariant: this is the only module that knows HTTP. Handlers parse
//! the wire format into domain types ([`SealedExecution`]), call the domain, and
//! turn its answers back into JSON. A 4xx is logged at debug level without its
//! body; a 5xx is logged with its cause but answered with an opaque message.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query,
    Request, State,
};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use ipnet::IpNet;
use tokio_util::task::TaskTracker;
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::access::{ClientKey, QuotaError, Quotas, TokenSet};
use crate::envelope::{self, Enc, Provider};
use crate::execution::{ExecutionError, Executor, SealedExecution};
use crate::health::Health;
use crate::keys::ServerKey;
use crate::metrics::{self, Audience, Gauges, Metrics};
use crate::session::{SessionError, SessionStore};
use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::wire::{
    CheckpointResponse, ConsistencyResponse, ErrorBody, ErrorDetail, ExecuteBody, ExecuteResponse,
    HealthResponse, KeysResponse, SessionResponse, Suite, VerifyResponse,
};

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
    pub sessions: Arc<SessionStore>,
    pub health: Health,
    pub metrics: Metrics,
    pub key: Arc<ServerKey>,
    pub origin: Arc<str>,
    pub started: Instant,
    /// Tokens accepted by `POST /sessions` and `POST /execute`; empty: open.
    pub tokens: TokenSet,
    /// Who may read `GET /metrics`, and how much of it.
    pub metrics_access: MetricsAccess,
    /// Per-client request rates and executions in flight.
    pub quotas: Quotas,
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
    pub max_request_bytes: usize,
}

/// Every route with its OpenAPI description: each handler's `#[utoipa::path]` is
/// both what the router serves and what `/openapi.json` documents, so the two
/// cannot drift apart. Access control needs the state (tokens, quotas); the
/// document does not depend on it, so it is built without (`state` = `None`).
///
/// What each route goes through, outermost first (after what every request goes
/// through, `router`):
/// - `POST /sessions`, `POST /execute`: the client's token (when `auth.tokens_sha256`
///   is set), then its request rate (keyed by that token, else by address); and
///   for `/execute`, once its body is read and decoded, its executions in flight.
/// - `GET /metrics`: the scraper's token (when `auth.metrics_tokens_sha256` is set;
///   closed to everyone when only `auth.tokens_sha256` is: see [`MetricsAccess`]),
///   then the request rate.
/// - `/health`: a request rate of its own per address
///   (`http.health_requests_per_second`), so that a client's API traffic never
///   makes its load balancer's probes fail.
/// - every other route, and the 404 and 405 fallbacks: the request rate, keyed
///   by address.
fn routes(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    let execute = OpenApiRouter::new().routes(routes!(execute));
    let mut protected = OpenApiRouter::new().routes(routes!(create_session));
    let mut metrics = OpenApiRouter::new().routes(routes!(metrics_text));
    let mut public = OpenApiRouter::new()
        .routes(routes!(keys))
        .routes(routes!(checkpoint))
        .routes(routes!(consistency))
        .routes(routes!(verify))
        .routes(routes!(openapi_json));
    let mut health = OpenApiRouter::new().routes(routes!(health));
    if let Some(state) = state {
        let limit_rate = || middleware::from_fn_with_state(state.clone(), limit_requests);
        protected = protected
            .merge(execute)
            .route_layer(limit_rate())
            .route_layer(middleware::from_fn_with_state(
                state.tokens.clone(),
                authenticate,
            ));
        metrics = metrics
            .route_layer(limit_rate())
            .route_layer(middleware::from_fn_with_state(
                state.metrics_access.clone(),
                authorize_scraper,
            ));
        public = public.route_layer(limit_rate());
        health = health.route_layer(middleware::from_fn_with_state(
            state.clone(),
            limit_health_probes,
        ));
    } else {
        protected = protected.merge(execute);
    }
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(protected)
        .merge(metrics)
        .merge(public)
        .merge(health)
}

/// The OpenAPI 3.1 document of every route, as `GET /openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes(None).into_openapi()
}

/// The service's routes with their layers. Every request goes through, outermost
/// first: request id, trace span, request metrics, the connection's standing
/// ([`ExcessConnection`]: 429), header size (431), an announced body size (413),
/// then its route's own layers (`routes`).
pub fn router(state: AppState) -> Router {
    let (routes, _document) = routes(Some(&state)).split_for_parts();
    routes
        .fallback(no_such_route)
        .method_not_allowed_fallback(no_such_method)
        .layer(DefaultBodyLimit::max(state.max_request_bytes))
        .layer(middleware::from_fn_with_state(
            state.max_request_bytes,
            refuse_announced_oversize,
        ))
        .layer(middleware::from_fn_with_state(
            state.max_header_bytes,
            limit_headers,
        ))
        .layer(middleware::from_fn(refuse_excess_connection))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            count_request,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(DefaultOnRequest::new())
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(LatencyUnit::Micros),
                )
                // A 5xx is already logged once, with its code, by `ApiError`.
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_unusable_request_id))
        .with_state(state)
}

/// The header that carries a request's id, set by the client or by us.
const REQUEST_ID: &str = "x-request-id";

/// One span per request, carrying what identifies it in the logs: method, route
/// template (never the raw path), request id, and once known the execution's id and
/// status. Never a body, a key or a header other than the request id.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::UNMATCHED_ROUTE, MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
        execution_id = tracing::field::Empty,
        execution_status = tracing::field::Empty,
    )
}

/// A client's `x-request-id` is honoured (kept, logged, returned) only if it looks
/// like an id: 1 to 128 characters of letters, digits and `-_.:`. Anything else is
/// dropped here, so that `SetRequestIdLayer` gives the request a fresh UUID instead
/// of writing an arbitrary client string into every log line.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let usable = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    if request
        .headers()
        .get_all(REQUEST_ID)
        .iter()
        .any(|value| !usable(value))
    {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// Every error the API answers with. `code` and status are part of the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `malformed_body`: the body is not the JSON the endpoint takes.
    #[error("{0}")]
    MalformedBody(String),
    /// 415 `unsupported_media_type`: the body is not `application/json`.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// 413 `payload_too_large`: the body is over `limits.max_request_bytes`.
    #[error("the body is larger than this server accepts (limits.max_request_bytes)")]
    PayloadTooLarge,
    /// 400 `invalid_parameter`: a path or query parameter is missing, malformed or
    /// out of range.
    #[error("{0}")]
    InvalidParameter(String),
    /// 404 `execution_not_found`: no execution with this id is in the log.
    #[error("no execution with this id is in the log")]
    ExecutionNotFound,
    /// 401 `unauthorized`: authentication is on and no valid bearer token was sent.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 408 `request_timeout`: the body did not arrive within
    /// `http.body_read_timeout_ms`.
    #[error("the request body did not arrive in time (http.body_read_timeout_ms)")]
    RequestTimeout,
    /// 431 `headers_too_large`: request line and headers are over
    /// `http.max_header_bytes`.
    #[error("the request's headers are larger than this server accepts (http.max_header_bytes)")]
    HeadersTooLarge,
    /// 429 `rate_limited`: this client is over `clients.requests_per_second`.
    #[error("too many requests from this client; retry later")]
    RateLimited { retry_after: Duration },
    /// 429 `too_many_executions`: this client has
    /// `clients.max_concurrent_executions` executions in flight.
    #[error("this client has as many executions in flight as it may; retry when one ends")]
    TooManyExecutions,
    /// 429 `too_many_connections`: this address has
    /// `http.max_connections_per_address` connections open.
    #[error(
        "this address has as many connections open as it may (http.max_connections_per_address); reuse one"
    )]
    TooManyConnections,
    /// 429 `too_many_client_sessions`: this client has
    /// `sessions.max_pending_per_client` sessions pending.
    #[error("this client has as many pending sessions as it may; use or let expire one of them")]
    TooManyClientSessions { retry_after: Duration },
    /// 404 `session_not_found`: unknown, expired, evicted or already used session.
    #[error("unknown, expired or already used session")]
    SessionNotFound,
    /// 400 `decryption_failed`: the ciphertext does not open under the session.
    #[error("decryption failed")]
    DecryptionFailed,
    /// 503 `overloaded`: no execution slot within the queue bounds.
    #[error("the server is at capacity; retry later")]
    Overloaded { retry_after: Duration },
    /// 503 `too_many_sessions`: the bound on pending sessions is reached.
    #[error("too many pending sessions; retry later")]
    TooManySessions { retry_after: Duration },
    /// 503 `log_unavailable`: the audit log cannot record, so no result is released.
    #[error("the audit log is not writable; the execution was not recorded")]
    LogUnavailable,
    /// 404 `not_found`: no such route.
    #[error("no such endpoint")]
    NotFound,
    /// 405 `method_not_allowed`: the route exists but not with this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// 500 `internal_error`: a bug; the cause is in the server's log only.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedBody(_)
            | ApiError::DecryptionFailed
            | ApiError::InvalidParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::RateLimited { .. }
            | ApiError::TooManyExecutions
            | ApiError::TooManyConnections
            | ApiError::TooManyClientSessions { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::SessionNotFound | ApiError::NotFound | ApiError::ExecutionNotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Overloaded { .. }
            | ApiError::TooManySessions { .. }
            | ApiError::LogUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedBody(_) => "malformed_body",
            ApiError::InvalidParameter(_) => "invalid_parameter",
            ApiError::ExecutionNotFound => "execution_not_found",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::HeadersTooLarge => "headers_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManyExecutions => "too_many_executions",
            ApiError::TooManyConnections => "too_many_connections",
            ApiError::TooManyClientSessions { .. } => "too_many_client_sessions",
            ApiError::SessionNotFound => "session_not_found",
            ApiError::DecryptionFailed => "decryption_failed",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::TooManySessions { .. } => "too_many_sessions",
            ApiError::LogUnavailable => "log_unavailable",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal => "internal_error",
        }
    }
}

/// The document's frame: title, version (from Cargo), the error conventions and the
/// optional bearer authentication. The paths come from the handlers (`routes`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wasm-hypervisor",
        description = "Runs untrusted WebAssembly behind HPKE-sealed requests and results, \
            and logs every execution in a signed Merkle audit log. The byte-level protocol \
            (sealing, result encryption, the commitment, the log) is PROTOCOL.md; this \
            document is its HTTP surface.\n\n\
            Every error is `{\"error\": {\"code\", \"message\"}}` (`ErrorBody`). Besides \
            the codes each operation lists, any request can get `not_found` (404) for a \
            path that is not listed here, `method_not_allowed` (405) for a listed path \
            with a method it does not list (both counted against the client's request \
            rate, so also `rate_limited` (429)), `headers_too_large` (431) when its \
            request line and headers are over `http.max_header_bytes`, and \
            `too_many_connections` (429) on a connection past \
            `http.max_connections_per_address`. Every response carries `x-request-id`."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the `bearer` scheme that `POST /sessions`, `POST /execute` and `GET
/// /metrics` accept.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Required by `POST /sessions` and `POST /execute` only when \
                         the server sets `auth.tokens_sha256`, and by `GET /metrics` \
                         when it sets `auth.metrics_tokens_sha256` (with only \
                         `auth.tokens_sha256` set, `GET /metrics` is closed); otherwise no \
                         authentication",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`: this document, built once.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json"),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), "request failed");
        } else {
            tracing::debug!(code = self.code(), "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        let retry_after = match &self {
            ApiError::Overloaded { retry_after }
            | ApiError::TooManySessions { retry_after }
            | ApiError::TooManyClientSessions { retry_after }
            | ApiError::RateLimited { retry_after } => Some(*retry_after),
            // Executions take seconds; a client that retries at once only burns
            // its request rate. Connections close within a second or so of their
            // last request.
            ApiError::TooManyExecutions | ApiError::TooManyConnections => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        };
        if let Some(wait) = retry_after {
            // Whole seconds, at least one (RFC 9110 §10.2.3).
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        match self {
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of the body may still be on its way: end the connection
            // rather than read it. A connection past its address's cap is only
            // kept for this answer.
            ApiError::RequestTimeout
            | ApiError::HeadersTooLarge
            | ApiError::PayloadTooLarge
            | ApiError::TooManyConnections => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// A JSON body extractor whose every rejection is an [`ApiError`], so that even
/// serde's complaints come back in the protocol's error shape.
pub struct ApiJson<T>(pub T);

impl<T> FromRequest<AppState> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        // One deadline for the whole body, so that a client cannot hold a
        // connection (and, for `/execute`, one of its execution slots) by sending
        // a byte now and then.
        let bytes =
            tokio::time::timeout(state.body_read_timeout, Bytes::from_request(request, state))
                .await
                .map_err(|_elapsed| ApiError::RequestTimeout)?
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(ref failed)
                        if failed.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                    {
                        ApiError::PayloadTooLarge
                    }
                    other => ApiError::MalformedBody(format!("cannot read the body: {other}")),
                })?;
        json_body(&bytes).map(ApiJson)
    }
}

/// Counts every request by route template (never the raw path: see `metrics`).
/// The layer runs after routing, so the matched route is known; the fallback has
/// none.
async fn count_request(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.observe_http(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The client a request belongs to, once its token is accepted.
#[derive(Debug, Clone, Copy)]
struct Authenticated(ClientKey);

/// Lets the request through if `tokens` is empty or it carries
/// `Authorization: Bearer <token>` with one of them (RFC 6750 §2.1; the scheme is
/// case-insensitive, RFC 9110 §11.1). The accepted token's digest then keys the
/// client's quotas; a refused token leaves no trace.
async fn authenticate(
    State(tokens): State<TokenSet>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if tokens.is_empty() {
        return Ok(next.run(request).await);
    }
    let digest = bearer_digest(request.headers(), &tokens).ok_or(ApiError::Unauthorized)?;
    request
        .extensions_mut()
        .insert(Authenticated(ClientKey::Token(digest)));
    Ok(next.run(request).await)
}

/// The digest of the request's `Authorization: Bearer` token, if it is one of
/// `tokens`.
fn bearer_digest(headers: &HeaderMap, tokens: &TokenSet) -> Option<[u8; 32]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, token)| tokens.accept(token.trim()))
}

/// Who may read `GET /metrics`, and how much of it (PROTOCOL.md, "Metrics"): only
/// a scraper with a metrics token sees the series that one execution's content
/// moves (fuel, times, module cache lookups).
#[derive(Clone)]
pub enum MetricsAccess {
    /// No token of either kind is configured: open, to [`Audience::Public`].
    Open,
    /// `auth.metrics_tokens_sha256` is set: one of its tokens required, then
    /// [`Audience::Operator`].
    Token(TokenSet),
    /// Authentication is on (`auth.tokens_sha256`) and no metrics token is set:
    /// closed, 401 to everyone. A server that guards its executions does not show
    /// anything about them to whoever asks.
    Closed,
}

impl MetricsAccess {
    pub fn new(tokens: &TokenSet, metrics_tokens: TokenSet) -> MetricsAccess {
        if !metrics_tokens.is_empty() {
            MetricsAccess::Token(metrics_tokens)
        } else if tokens.is_empty() {
            MetricsAccess::Open
        } else {
            MetricsAccess::Closed
        }
    }
}

/// Lets a scrape through as [`MetricsAccess`] says, marking it with the
/// [`Audience`] it may see. An accepted metrics token keys the scraper's request
/// rate, as a client's token keys its own.
async fn authorize_scraper(
    State(access): State<MetricsAccess>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let audience = match &access {
        MetricsAccess::Open => Audience::Public,
        MetricsAccess::Closed => return Err(ApiError::Unauthorized),
        MetricsAccess::Token(tokens) => {
            let digest = bearer_digest(request.headers(), tokens).ok_or(ApiError::Unauthorized)?;
            request
                .extensions_mut()
                .insert(Authenticated(ClientKey::Token(digest)));
            Audience::Operator
        }
    };
    request.extensions_mut().insert(audience);
    Ok(next.run(request).await)
}

/// Whom a request counts against: its accepted token, else its address.
fn client_of(state: &AppState, extensions: &Extensions, headers: &HeaderMap) -> ClientKey {
    if let Some(Authenticated(client)) = extensions.get::<Authenticated>() {
        return *client;
    }
    address_of(state, extensions, headers)
}

/// The client's address as a quota key, whether or not it authenticated.
fn address_of(state: &AppState, extensions: &Extensions, headers: &HeaderMap) -> ClientKey {
    // Served without a socket (in-process tests): one anonymous client.
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    ClientKey::address(client_address(peer, headers, &state.trusted_proxies))
}

/// The client a request counts against (see `client_of`), as an extractor: for
/// `/execute`, which takes an execution slot only once its body is decoded.
struct QuotaClient(ClientKey);

impl FromRequestParts<AppState> for QuotaClient {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(QuotaClient(client_of(
            state,
            &parts.extensions,
            &parts.headers,
        )))
    }
}

impl From<QuotaError> for ApiError {
    fn from(error: QuotaError) -> Self {
        match error {
            QuotaError::RateLimited { retry_after } => ApiError::RateLimited { retry_after },
            QuotaError::TooManyExecutions => ApiError::TooManyExecutions,
            QuotaError::TableFull => ApiError::RateLimited {
                retry_after: Duration::from_secs(1),
            },
        }
    }
}

/// Counts the request against its client's rate (`clients.requests_per_second`).
async fn limit_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = client_of(&state, request.extensions(), request.headers());
    state.quotas.check_request(client, Instant::now())?;
    Ok(next.run(request).await)
}

/// Counts a `/health` request against its address's own probe rate
/// (`http.health_requests_per_second`), apart from the API's rate: a map lookup,
/// so that a flood of probes costs less than answering them would (a `statvfs`
/// and an `faccessat` each).
async fn limit_health_probes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let address = address_of(&state, request.extensions(), request.headers());
    state.health_quotas.check_request(address, Instant::now())?;
    Ok(next.run(request).await)
}

/// The 404 fallback: a path that is not a route still takes one request of the
/// client's rate, so that probing for paths costs like any request.
async fn no_such_route(State(state): State<AppState>, request: Request) -> ApiError {
    let client = client_of(&state, request.extensions(), request.headers());
    match state.quotas.check_request(client, Instant::now()) {
        Ok(()) => ApiError::NotFound,
        Err(refused) => refused.into(),
    }
}

/// The 405 fallback, counted like [`no_such_route`].
async fn no_such_method(State(state): State<AppState>, request: Request) -> ApiError {
    let client = client_of(&state, request.extensions(), request.headers());
    match state.quotas.check_request(client, Instant::now()) {
        Ok(()) => ApiError::MethodNotAllowed,
        Err(refused) => refused.into(),
    }
}

/// Marks the requests of a connection admitted past
/// `http.max_connections_per_address` (set by `server`): each is answered 429
/// `too_many_connections` with `Connection: close`, before anything else is done
/// for it.
#[derive(Debug, Clone, Copy)]
pub struct ExcessConnection;

async fn refuse_excess_connection(request: Request, next: Next) -> Result<Response, ApiError> {
    if request.extensions().get::<ExcessConnection>().is_some() {
        return Err(ApiError::TooManyConnections);
    }
    Ok(next.run(request).await)
}

/// Refuses a body whose `Content-Length` announces more than
/// `limits.max_request_bytes` (413, and the connection is closed), before any of
/// it is read and before authentication or any quota is spent on it. A body
/// without a length (chunked) is cut off at the limit as it streams in
/// (`DefaultBodyLimit`, in the extractor).
async fn refuse_announced_oversize(
    State(max_request_bytes): State<usize>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // hyper has already refused a `Content-Length` that is not one number.
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > max_request_bytes as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(next.run(request).await)
}

/// The client's address. The socket peer, unless the peer is a trusted proxy:
/// then the forwarding header's hops are read from the right (the one the proxy
/// added) and the first that is not itself a trusted proxy is the client.
/// `X-Forwarded-For` is read if present, else `Forwarded` (RFC 7239). A hop that
/// does not parse (`unknown`, an obfuscated name) ends the walk at the last
/// trusted hop: no one the operator does not trust can choose the key.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| {
        let address = address.to_canonical();
        trusted.iter().any(|network| network.contains(&address))
    };
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<Option<IpAddr>> = if headers.contains_key("x-forwarded-for") {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("?").split(','))
            .map(|hop| parse_hop(hop.trim()))
            .collect()
    } else {
        headers
            .get_all(header::FORWARDED)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("for=?").split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_hop(value.trim().trim_matches('"')))
            })
            .collect()
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(address) = hop else { break };
        client = address;
        if !is_trusted(&address) {
            break;
        }
    }
    client
}

/// One hop of a forwarding header: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`
/// or `[2001:db8::1]:4711`.
fn parse_hop(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
}

/// Refuses a request whose request line and headers are over `max_header_bytes`
/// (431), counted as on the wire. hyper enforces a slightly larger hard limit
/// before this layer sees anything (`server`), answering a bare 431.
async fn limit_headers(
    State(max_header_bytes): State<usize>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // "METHOD URI HTTP/1.1\r\n", then "name: value\r\n" per header.
    let request_line = request.method().as_str().len() + request.uri().to_string().len() + 12;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if request_line + headers > max_header_bytes {
        return Err(ApiError::HeadersTooLarge);
    }
    Ok(next.run(request).await)
}

/// Open a session: a fresh P-256 key for one `/execute`, signed by the server's key.
#[utoipa::path(
    post,
    path = "/sessions",
    tag = "protocol",
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "A session (protocol §1)", body = SessionResponse),
        (status = 401, description = "`unauthorized`: authentication is on and no valid bearer token was sent", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`; `too_many_client_sessions`: this client has `sessions.max_pending_per_client` sessions pending", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again (`rate_limited`) or until its oldest pending session expires (`too_many_client_sessions`), at least 1"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`too_many_sessions`: `sessions.max_pending` sessions are pending and no client holds more of them than this one", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the oldest pending session expires, at least 1"))),
    )
)]
async fn create_session(
    State(state): State<AppState>,
    QuotaClient(client): QuotaClient,
) -> Result<Response, ApiError> {
    let session = state
        .sessions
        .create_for(client)
        .map_err(|error| match error {
            SessionError::ClientShareReached { retry_after } => {
                ApiError::TooManyClientSessions { retry_after }
            }
            SessionError::TooManyPending { retry_after } => {
                ApiError::TooManySessions { retry_after }
            }
            SessionError::Unknown => ApiError::Internal,
        })?;
    let message = envelope::session_signature_message(&session.id, &session.public_key);
    let body = SessionResponse {
        session_id: session.id.hyphenated().to_string(),
        public_key: Base64(session.public_key),
        suite: Suite::v1(),
        expires_at: humantime::format_rfc3339_seconds(session.expires_at).to_string(),
        signature: Base64(state.key.sign(&message)),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The sealed request an `/execute` body carries, every field checked: a
/// 36-character lowercase session id, `enc` a point on P-256 (checked on
/// `provider`); the base64 was checked as the body was read.
pub fn sealed_execution(
    body: ExecuteBody,
    provider: Provider,
    client: ClientKey,
) -> Result<SealedExecution, ApiError> {
    let session_id = parse_uuid(&body.session_id).ok_or_else(|| {
        ApiError::MalformedBody("`session_id` is not a 36-character lowercase UUID".to_owned())
    })?;
    let enc = Enc::parse(provider, &body.enc.0).map_err(|_| {
        ApiError::MalformedBody("`enc` is not a 65-byte uncompressed P-256 point".to_owned())
    })?;
    Ok(SealedExecution {
        session_id,
        enc,
        ciphertext: body.ciphertext.0,
        client,
    })
}

/// Decodes a whole `POST /execute` body as the handler does (after the media type
/// and size checks): the JSON, then [`sealed_execution`]. Pure; the fuzz target
/// `execute_body` drives it.
pub fn decode_execute_body(provider: Provider, bytes: &[u8]) -> Result<SealedExecution, ApiError> {
    sealed_execution(
        json_body::<ExecuteBody>(bytes)?,
        provider,
        ClientKey::address(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    )
}

/// Parses a JSON body, every failure a `malformed_body`.
fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::MalformedBody(format!("invalid JSON body: {error}")))
}

/// Run a sealed request. Once its plaintext opens, every outcome is a 200 with a
/// sealed result, committed and logged.
#[utoipa::path(
    post,
    path = "/execute",
    tag = "protocol",
    security((), ("bearer" = [])),
    request_body(content = ExecuteBody, content_type = "application/json"),
    responses(
        (status = 200, description = "An execution, sealed, committed and durably logged (protocol §3)", body = ExecuteResponse),
        (status = 400, description = "`malformed_body`: not the JSON this endpoint takes; `decryption_failed`: the ciphertext does not open under the session's key", body = ErrorBody),
        (status = 401, description = "`unauthorized`: authentication is on and no valid bearer token was sent", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "`session_not_found`: unknown, expired, evicted or already used session", body = ErrorBody),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `http.body_read_timeout_ms`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over `limits.max_request_bytes`, announced (refused before it is read) or streamed; the connection is closed", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`; `too_many_executions`: this client has `clients.max_concurrent_executions` executions in flight", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying, at least 1"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`overloaded`: no execution slot within the queue bounds (with `Retry-After`); `log_unavailable`: the record could not be made durable, so the result is withheld", body = ErrorBody,
            headers(("Retry-After" = u64, description = "With `overloaded`: seconds to wait before retrying"))),
    )
)]
async fn execute(
    State(state): State<AppState>,
    QuotaClient(client): QuotaClient,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> Result<Json<ExecuteResponse>, ApiError> {
    let sealed = sealed_execution(body, state.sessions.provider(), client)?;
    // One of the client's execution slots (`clients.max_concurrent_executions`),
    // taken only now that the body is read and decoded: a slow, oversized or
    // malformed body never holds one.
    let permit = state.quotas.begin_execution(client, Instant::now())?;
    // Its own task: a client that disconnects must not cancel an execution whose
    // plaintext is already open (it still has to be logged), and a panic in it must
    // only fail this request.
    // The task runs inside this request's span, so its log lines carry the request
    // id even after the client has gone.
    let executor = state.executor.clone();
    let receipt = state
        .executions
        .spawn(
            async move {
                // The client's execution slot is held until the execution ends,
                // even if the client has gone by then.
                let _permit = permit;
                executor.execute(sealed).await
            }
            .in_current_span(),
        )
        .await
        .map_err(|join_error| {
            tracing::error!(error = %join_error, "execution task failed");
            ApiError::Internal
        })?
        .map_err(|error| match error {
            ExecutionError::UnknownSession => ApiError::SessionNotFound,
            ExecutionError::DecryptionFailed => ApiError::DecryptionFailed,
            ExecutionError::Overloaded { retry_after } => ApiError::Overloaded { retry_after },
            ExecutionError::LogUnavailable(cause) => {
                tracing::error!(error = %cause, "execution not recorded");
                ApiError::LogUnavailable
            }
        })?;
    let span = tracing::Span::current();
    span.record(
        "execution_id",
        tracing::field::display(receipt.execution_id),
    );
    span.record("execution_status", receipt.status.as_str());
    Ok(Json(ExecuteResponse {
        execution_id: receipt.execution_id.hyphenated().to_string(),
        ciphertext: Base64(receipt.ciphertext),
        commitment: Hex(receipt.commitment),
        log_index: receipt.log_index,
        leaf_signature: Base64(receipt.leaf_signature),
    }))
}

/// Session and execution ids travel in their 36-character lowercase hyphenated
/// form only (PROTOCOL.md, "Sessions"): one spelling per id, as the server writes
/// them, so that an id compared or logged as text is the same id.
fn parse_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 36 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// The server's long-term public key (protocol §4).
#[utoipa::path(
    get,
    path = "/keys",
    tag = "protocol",
    responses(
        (status = 200, description = "The log's origin and the server's signing key", body = KeysResponse),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
async fn keys(State(state): State<AppState>) -> Json<KeysResponse> {
    let public = state.key.public();
    Json(KeysResponse {
        origin: state.origin.to_string(),
        public_key: Base64(public.spki_der()),
        key_id: Hex(public.key_id()),
    })
}

/// 200 while the instance can execute and append to its log, 503 otherwise, so
/// that a load balancer takes it out of rotation.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "`status` is `ok` and `reasons` is empty", body = HealthResponse),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this address is over `http.health_requests_per_second` (a bucket apart from the API's rate)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the address may probe again, at least 1"))),
        (status = 503, description = "`status` is `unavailable`; `reasons` holds one or more of `shutting_down`, `audit_log_write_failed`, `data_dir_not_writable`, `data_dir_low_space`", body = HealthResponse),
    )
)]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    let problems = state.health.problems();
    let (status, word) = if problems.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = HealthResponse {
        status: word.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: state.started.elapsed().as_secs(),
        slots_in_use: state.executor.slots_in_use(),
        slots_peak: state.executor.peak_slots_in_use(),
        queue_depth: state.executor.queue_depth(),
        sessions_pending: state.sessions.pending(),
        log_size: state.executor.log().size(),
        reasons: problems.iter().map(|p| p.as_str().to_owned()).collect(),
    };
    (status, Json(body))
}

/// `GET /metrics`: the Prometheus exposition, gauges read now, with the series the
/// scraper's [`Audience`] may see.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The OpenMetrics text format (PROTOCOL.md, \"Metrics\"): every series with a metrics token; without one (`/metrics` open), counts by status and gauges only",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "`unauthorized`: `auth.metrics_tokens_sha256` is set and none of its tokens was sent, or authentication is on (`auth.tokens_sha256`) and no metrics token is configured, which closes `/metrics`", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
async fn metrics_text(
    State(state): State<AppState>,
    audience: Option<Extension<Audience>>,
) -> Response {
    // Unmarked (it cannot be, behind `authorize_scraper`): the least.
    let audience = audience.map_or(Audience::Public, |Extension(audience)| audience);
    let gauges = Gauges {
        executions_in_flight: state.executor.slots_in_use(),
        execution_queue_depth: state.executor.queue_depth(),
        sessions_pending: state.sessions.pending(),
        audit_log_size: state.executor.log().size(),
    };
    let text = state.metrics.render(gauges, audience);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

/// The signed tree head of the whole log as it is now (protocol §4).
#[utoipa::path(
    get,
    path = "/log/checkpoint",
    tag = "protocol",
    responses(
        (status = 200, description = "A signed checkpoint", body = CheckpointResponse),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
async fn checkpoint(State(state): State<AppState>) -> Json<CheckpointResponse> {
    Json(CheckpointResponse::from(&state.executor.log().checkpoint()))
}

/// An execution's leaf and its inclusion proof against a fresh checkpoint
/// (protocol §4).
#[utoipa::path(
    get,
    path = "/verify/{execution_id}",
    tag = "protocol",
    params(("execution_id" = String, Path, description = "The execution id, a 36-character lowercase UUID")),
    responses(
        (status = 200, description = "The leaf, its signature and an RFC 9162 inclusion proof", body = VerifyResponse),
        (status = 400, description = "`invalid_parameter`: the id is not a 36-character lowercase UUID", body = ErrorBody),
        (status = 404, description = "`execution_not_found`: no execution with this id is in the log", body = ErrorBody),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
async fn verify(
    State(state): State<AppState>,
    Path(execution_id): Path<String>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let id = parse_uuid(&execution_id).ok_or_else(|| {
        ApiError::InvalidParameter(
            "the execution id is not a 36-character lowercase UUID".to_owned(),
        )
    })?;
    let inclusion = state
        .executor
        .log()
        .inclusion(&id)
        .map_err(|error| {
            tracing::error!(%error, "cannot read a logged record back");
            ApiError::Internal
        })?
        .ok_or(ApiError::ExecutionNotFound)?;
    let leaf = inclusion.record.leaf;
    Ok(Json(VerifyResponse {
        execution_id: leaf.execution_id.hyphenated().to_string(),
        log_index: inclusion.index,
        timestamp_ms: leaf.timestamp_ms,
        commitment: Hex(leaf.commitment),
        leaf: Base64(leaf.to_bytes().to_vec()),
        leaf_signature: Base64(inclusion.record.signature),
        inclusion_proof: inclusion.proof.into_iter().map(Base64).collect(),
        checkpoint: CheckpointResponse::from(&inclusion.checkpoint),
    }))
}

/// An RFC 9162 consistency proof between two sizes of the log (protocol §4).
#[utoipa::path(
    get,
    path = "/log/consistency",
    tag = "protocol",
    params(
        ("first" = u64, Query, description = "The smaller tree size, at least 1"),
        ("second" = u64, Query, description = "The larger tree size, at most the current size"),
    ),
    responses(
        (status = 200, description = "The proof", body = ConsistencyResponse),
        (status = 400, description = "`invalid_parameter`: `first` and `second` missing, not integers, or not 1 <= first <= second <= size", body = ErrorBody),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
async fn consistency(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ConsistencyResponse>, ApiError> {
    let Query(params) = query.map_err(|rejection| {
        ApiError::InvalidParameter(format!("cannot read the query string: {rejection}"))
    })?;
    let size_param = |name: &str| -> Result<u64, ApiError> {
        let text = params.get(name).ok_or_else(|| {
            ApiError::InvalidParameter(format!("the query parameter `{name}` is required"))
        })?;
        text.parse::<u64>().map_err(|_| {
            ApiError::InvalidParameter(format!("`{name}` is not a non-negative integer"))
        })
    };
    let (first, second) = (size_param("first")?, size_param("second")?);
    let log = state.executor.log();
    let size = log.size();
    if first == 0 || first > second || second > size {
        return Err(ApiError::InvalidParameter(format!(
            "need 1 <= first <= second <= {size} (the current tree size)"
        )));
    }
    let proof = log
        .consistency(first, second)
        .map_err(|error| ApiError::InvalidParameter(error.to_string()))?;
    Ok(Json(ConsistencyResponse {
        first,
        second,
        proof: proof.into_iter().map(Base64).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_errors() -> Vec<ApiError> {
        vec![
            ApiError::MalformedBody(String::new()),
            ApiError::InvalidParameter(String::new()),
            ApiError::ExecutionNotFound,
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge,
            ApiError::Unauthorized,
            ApiError::RequestTimeout,
            ApiError::HeadersTooLarge,
            ApiError::RateLimited {
                retry_after: Duration::ZERO,
            },
            ApiError::TooManyExecutions,
            ApiError::TooManyConnections,
            ApiError::TooManyClientSessions {
                retry_after: Duration::ZERO,
            },
            ApiError::SessionNotFound,
            ApiError::DecryptionFailed,
            ApiError::Overloaded {
                retry_after: Duration::ZERO,
            },
            ApiError::TooManySessions {
                retry_after: Duration::ZERO,
            },
            ApiError::LogUnavailable,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::Internal,
        ]
    }

    /// Whether `document` names `code` with `status`: in an operation's response
    /// for that status, or in the general conventions of `info.description`.
    fn documents_code(document: &serde_json::Value, status: u16, code: &str) -> bool {
        let needle = format!("`{code}`");
        let in_an_operation = document["paths"]
            .as_object()
            .into_iter()
            .flat_map(|paths| paths.values())
            .filter_map(|item| item.as_object())
            .flat_map(|item| item.values())
            .any(|operation| {
                operation["responses"][status.to_string()]["description"]
                    .as_str()
                    .is_some_and(|description| description.contains(&needle))
            });
        let in_the_conventions = document["info"]["description"]
            .as_str()
            .is_some_and(|description| description.contains(&format!("{needle} ({status})")));
        in_an_operation || in_the_conventions
    }

    #[test]
    fn every_error_code_is_in_the_openapi_document_with_its_status() {
        let document = serde_json::to_value(openapi()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        for error in all_errors() {
            assert!(
                documents_code(&document, error.status().as_u16(), error.code()),
                "the OpenAPI document lacks `{}` with {}",
                error.code(),
                error.status()
            );
        }
    }

    #[test]
    fn every_error_code_is_documented_with_its_status_in_protocol_md() {
        let doc = include_str!("../../../PROTOCOL.md");
        for error in all_errors() {
            let row = format!("| `{}` | {} |", error.code(), error.status().as_u16());
            assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_are_ignored_unless_the_peer_is_trusted() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let claims = headers(&[
            ("x-forwarded-for", "192.0.2.1"),
            ("forwarded", "for=192.0.2.2"),
        ]);
        assert_eq!(
            client_address(ip("198.51.100.7"), &claims, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("198.51.100.7"), &claims, &[]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("10.1.1.1"), &claims, &trusted),
            ip("192.0.2.1")
        );
        // A trusted peer that forwards nothing is the client.
        assert_eq!(
            client_address(ip("10.1.1.1"), &HeaderMap::new(), &trusted),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let chain = headers(&[
            ("x-forwarded-for", "203.0.113.66, 192.0.2.1"),
            ("x-forwarded-for", "10.2.2.2"),
        ]);
        assert_eq!(
            client_address(ip("10.1.1.1"), &chain, &trusted),
            ip("192.0.2.1")
        );
        // All hops trusted: the leftmost.
        let inside = headers(&[("x-forwarded-for", "10.3.3.3, 10.2.2.2")]);
        assert_eq!(
            client_address(ip("10.1.1.1"), &inside, &trusted),
            ip("10.3.3.3")
        );
        // An unreadable hop stops the walk at the last trusted one.
        let garbage = headers(&[("x-forwarded-for", "192.0.2.1, nonsense, 10.2.2.2")]);
        assert_eq!(
            client_address(ip("10.1.1.1"), &garbage, &trusted),
            ip("10.2.2.2")
        );
        let garbage = headers(&[("x-forwarded-for", "")]);
        assert_eq!(
            client_address(ip("10.1.1.1"), &garbage, &trusted),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn forwarded_is_read_when_x_forwarded_for_is_absent() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let cases = [
            ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("For=\"192.0.2.1:80\", for=10.9.9.9", "192.0.2.1"),
            ("for=unknown", "10.1.1.1"),
            ("for=_hidden, for=192.0.2.5", "192.0.2.5"),
        ];
        for (value, expected) in cases {
            let map = headers(&[("forwarded", value)]);
            assert_eq!(
                client_address(ip("10.1.1.1"), &map, &trusted),
                ip(expected),
                "{value}"
            );
        }
        // IPv4-mapped peers match IPv4 networks.
        let map = headers(&[("forwarded", "for=192.0.2.9")]);
        assert_eq!(
            client_address(ip("::ffff:10.0.0.1"), &map, &trusted),
            ip("192.0.2.9")
        );
    }

    #[test]
    fn ids_are_taken_only_in_their_36_character_lowercase_form() {
        let lowercase = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
        let id = parse_uuid(lowercase).unwrap();
        assert_eq!(id.hyphenated().to_string(), lowercase);
        assert_eq!(parse_uuid(&lowercase.to_uppercase()), None);
        assert_eq!(parse_uuid("1B4e28ba-2fa1-41d2-883f-0016d3cca427"), None);
        assert_eq!(parse_uuid(&id.simple().to_string()), None);
        assert_eq!(parse_uuid(&id.braced().to_string()), None);
        assert_eq!(parse_uuid(&id.urn().to_string()), None);
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let response = ApiError::Overloaded {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = ApiError::TooManySessions {
            retry_after: Duration::ZERO,
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
