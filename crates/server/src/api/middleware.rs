//! The layers every request goes through before its handler: request id and
//! span, request metrics and log line, the connection's standing, header and announced body
//! size, bearer tokens (clients and scrapers), request rates, and the 404/405
//! fallbacks, each answering with an [`ApiError`].

use std::convert::Infallible;
use std::future::Ready;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use tower::{Layer, Service};

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
pub(super) fn drop_unusable_request_id(mut request: Request) -> Request {
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
/// logs its one line; before the route's own layers, answers the requests refused
/// whatever their route: a connection past its address's cap
/// ([`ExcessConnection`]: 429), headers over `http.max_header_bytes` (431), a body
/// announced over `limits.max_request_bytes` (413), in that order, so that those
/// are counted and logged too.
///
/// A tower layer rather than `middleware::from_fn`s: it runs after routing (inside
/// each route, so the matched route is known; the fallback has none), and a
/// `from_fn` boxes its inner service and its future on every request.
#[derive(Clone)]
pub(super) struct CountRequestLayer {
    pub(super) metrics: Metrics,
    pub(super) max_header_bytes: usize,
    pub(super) max_request_bytes: usize,
}

impl<S> Layer<S> for CountRequestLayer {
    type Service = CountRequest<S>;

    fn layer(&self, inner: S) -> CountRequest<S> {
        CountRequest {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`CountRequestLayer`].
#[derive(Clone)]
pub(super) struct CountRequest<S> {
    inner: S,
    layer: CountRequestLayer,
}

impl<S> Service<Request> for CountRequest<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CountedRequest<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> CountedRequest<S::Future> {
        let started = Instant::now();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        let answer = match refusal(&request, &self.layer) {
            Some(refused) => Answer::Refused(Some(refused.into_response())),
            None => Answer::Running(self.inner.call(request)),
        };
        CountedRequest {
            answer,
            metrics: self.layer.metrics.clone(),
            started,
            route,
            method,
        }
    }
}

/// Why a request is refused before its route's own layers, if it is.
fn refusal(request: &Request, layer: &CountRequestLayer) -> Option<ApiError> {
    if request.extensions().get::<ExcessConnection>().is_some() {
        return Some(ApiError::TooManyConnections);
    }
    if header_bytes(request) > layer.max_header_bytes {
        return Some(ApiError::HeadersTooLarge);
    }
    // hyper has already refused a `Content-Length` that is not one number.
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > layer.max_request_bytes as u64) {
        return Some(ApiError::PayloadTooLarge);
    }
    None
}

/// The request line and headers' size as on the wire. hyper enforces a slightly
/// larger hard limit before this layer sees anything (`server`), answering a bare
/// 431.
fn header_bytes(request: &Request) -> usize {
    // "METHOD URI HTTP/1.1\r\n", then "name: value\r\n" per header.
    let request_line = request.method().as_str().len() + uri_len(request.uri()) + 12;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    request_line + headers
}

/// The length of `uri` as `Display` writes it, without building the string.
fn uri_len(uri: &Uri) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            self.0 += piece.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a counter cannot fail.
    let _ = std::fmt::write(&mut count, format_args!("{uri}"));
    count.0
}

/// The future of [`CountRequest`]: the route's answer (or the refusal), then the
/// request's metrics and log line.
pub(super) struct CountedRequest<F> {
    answer: Answer<F>,
    metrics: Metrics,
    started: Instant,
    route: Option<MatchedPath>,
    method: Method,
}

/// What [`CountedRequest`] waits for.
enum Answer<F> {
    Running(F),
    /// Taken when the future completes.
    Refused(Option<Response>),
}

impl<F> Future for CountedRequest<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let response = match &mut this.answer {
            Answer::Running(future) => match Pin::new(future).poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
            Answer::Refused(refused) => refused
                .take()
                .unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        };
        this.finish(&response);
        Poll::Ready(Ok(response))
    }
}

impl<F> CountedRequest<F> {
    /// The request's metrics, and its one line unless the execution logs its own.
    fn finish(&self, response: &Response) {
        let route = self
            .route
            .as_ref()
            .map_or(metrics::UNMATCHED_ROUTE, MatchedPath::as_str);
        let status = response.status();
        let latency = self.started.elapsed();
        self.metrics.observe_http(
            route,
            self.method.as_str(),
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
    }
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
pub(super) fn authenticate(tokens: &TokenSet, request: &mut Request) -> Result<(), ApiError> {
    if tokens.is_empty() {
        return Ok(());
    }
    let digest = bearer_digest(request.headers(), tokens).ok_or(ApiError::Unauthorized)?;
    request
        .extensions_mut()
        .insert(Authenticated(ClientKey::Token(digest)));
    Ok(())
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
pub(super) fn authorize_scraper(
    access: &MetricsAccess,
    request: &mut Request,
) -> Result<(), ApiError> {
    let audience = match access {
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
    Ok(())
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
pub(super) fn limit_requests(state: &AppState, request: &mut Request) -> Result<(), ApiError> {
    let client = client_of(state, request.extensions(), request.headers());
    state.quotas.check_request(client, Instant::now())?;
    Ok(())
}

/// Counts a `/health` request against its address's own probe rate
/// (`http.health_requests_per_second`), apart from the API's rate: a map lookup,
/// so that a flood of probes costs less than answering them would (a `statvfs`
/// and an `faccessat` each).
pub(super) fn limit_health_probes(state: &AppState, request: &mut Request) -> Result<(), ApiError> {
    let address = address_of(state, request.extensions(), request.headers());
    state.health_quotas.check_request(address, Instant::now())?;
    Ok(())
}

/// A route's own check (a token, a request rate), as a layer: the request goes on
/// to the route if `check` accepts it, else it is answered with `check`'s error.
/// Synchronous and without the boxes of a `middleware::from_fn`, which boxes its
/// inner service and its future on every request.
#[derive(Clone)]
pub(super) struct CheckLayer<C>(pub(super) C);

impl<S, C: Clone> Layer<S> for CheckLayer<C> {
    type Service = Checked<S, C>;

    fn layer(&self, inner: S) -> Checked<S, C> {
        Checked {
            inner,
            check: self.0.clone(),
        }
    }
}

/// The service of [`CheckLayer`].
#[derive(Clone)]
pub(super) struct Checked<S, C> {
    inner: S,
    check: C,
}

impl<S, C> Service<Request> for Checked<S, C>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    C: Fn(&mut Request) -> Result<(), ApiError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match (self.check)(&mut request) {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(refused) => Either::Left(std::future::ready(Ok(refused.into_response()))),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_len_is_the_length_the_uri_is_written_with() {
        for text in [
            "/execute",
            "/log/verify?index=3&leaf=%20a",
            "http://example.com:8080/a/b?c=d",
            "*",
        ] {
            let uri: Uri = text.parse().unwrap();
            assert_eq!(uri_len(&uri), uri.to_string().len(), "{text}");
        }
    }
}
