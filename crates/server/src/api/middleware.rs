//! The layers every request goes through before its handler: request id and
//! span, request metrics and log line, the connection's standing, header and announced body
//! size, bearer tokens (clients and scrapers), request rates, and the 404/405
//! fallbacks, each answering with an [`ApiError`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::access::{ClientKey, TokenSet};
use crate::metrics::{self, Audience, Metrics};

use super::AppState;
use super::error::ApiError;
use super::forwarded::client_address;

/// The header that carries a request's id, set by the client or by us.
pub(super) const REQUEST_ID: &str = "x-request-id";

/// One span per request, carrying what identifies it in the logs: method, route
/// template (never the raw path), request id, and once known the execution's id and
/// status. Never a body, a key or a header other than the request id.
pub(super) fn request_span(request: &Request) -> tracing::Span {
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
pub(super) async fn drop_unusable_request_id(mut request: Request) -> Request {
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

/// Counts every request by route template (never the raw path: see `metrics`) and
/// logs its one line. The layer runs after routing, so the matched route is known;
/// the fallback has none.
pub(super) async fn count_request(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let latency = started.elapsed();
    metrics.observe_http(
        &route,
        method.as_str(),
        status.as_u16(),
        latency.as_secs_f64(),
    );
    // One line per request, inside its span (method, route, request id). An
    // execution that was answered (200) or accepted (202) logs its own line, with
    // its id, status, log index, durations and sizes, when it is recorded: that is
    // the one line for it, and this one is left out.
    let answered_execution =
        route == EXECUTE_ROUTE && (status == StatusCode::OK || status == StatusCode::ACCEPTED);
    if !answered_execution {
        tracing::info!(
            status = status.as_u16(),
            latency_us = latency.as_micros() as u64,
            "request finished"
        );
    }
    response
}

/// The route whose answered requests are logged by the execution they ran.
const EXECUTE_ROUTE: &str = "/execute";

/// The client a request belongs to, once its token is accepted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Authenticated(ClientKey);

/// Lets the request through if `tokens` is empty or it carries
/// `Authorization: Bearer <token>` with one of them (RFC 6750 §2.1; the scheme is
/// case-insensitive, RFC 9110 §11.1). The accepted token's digest then keys the
/// client's quotas; a refused token leaves no trace.
pub(super) async fn authenticate(
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
pub(super) fn bearer_digest(headers: &HeaderMap, tokens: &TokenSet) -> Option<[u8; 32]> {
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
pub(super) async fn authorize_scraper(
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
pub(super) fn client_of(
    state: &AppState,
    extensions: &Extensions,
    headers: &HeaderMap,
) -> ClientKey {
    if let Some(Authenticated(client)) = extensions.get::<Authenticated>() {
        return *client;
    }
    address_of(state, extensions, headers)
}

/// The client's address as a quota key, whether or not it authenticated.
pub(super) fn address_of(
    state: &AppState,
    extensions: &Extensions,
    headers: &HeaderMap,
) -> ClientKey {
    // Served without a socket (in-process tests): one anonymous client.
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    ClientKey::address(client_address(peer, headers, &state.trusted_proxies))
}

/// Counts the request against its client's rate (`clients.requests_per_second`).
pub(super) async fn limit_requests(
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
pub(super) async fn limit_health_probes(
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
pub(super) async fn no_such_route(State(state): State<AppState>, request: Request) -> ApiError {
    let client = client_of(&state, request.extensions(), request.headers());
    match state.quotas.check_request(client, Instant::now()) {
        Ok(()) => ApiError::NotFound,
        Err(refused) => refused.into(),
    }
}

/// The 405 fallback, counted like [`no_such_route`].
pub(super) async fn no_such_method(State(state): State<AppState>, request: Request) -> ApiError {
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

pub(super) async fn refuse_excess_connection(
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
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
pub(super) async fn refuse_announced_oversize(
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

/// Refuses a request whose request line and headers are over `max_header_bytes`
/// (431), counted as on the wire. hyper enforces a slightly larger hard limit
/// before this layer sees anything (`server`), answering a bare 431.
pub(super) async fn limit_headers(
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
