//! The router and its OpenAPI document, made from the same handler annotations
//! (`#[utoipa::path]`), so that what is served and what is documented cannot drift
//! apart; which layers each route goes through.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use wasm_hypervisor_protocol::wire::{ErrorBody, ErrorDetail};

use super::AppState;
use super::middleware::{
    CheckLayer, CountRequestLayer, authenticate, authorize_scraper, drop_unusable_request_id,
    limit_health_probes, limit_requests, no_such_method, no_such_route, request_span,
};
use super::{executions, keys, log, operations, playground, sessions, tlog, usage};

/// Every route with its OpenAPI description: each handler's `#[utoipa::path]` is
/// both what the router serves and what `/openapi.json` documents, so the two
/// cannot drift apart. Access control needs the state (tokens, quotas); the
/// document does not depend on it, so it is built without (`state` = `None`).
///
/// What each route goes through, outermost first (after what every request goes
/// through, `router`):
/// - `POST /sessions`, `POST /execute`, `GET /executions/{execution_id}`, `GET
///   /usage`: the client's token (when `auth.tokens_sha256` is set), then its request rate
///   (keyed by that token, else by address); and for `/execute`, once its body is
///   read and decoded, its usage quotas, then its executions in flight.
/// - `GET /metrics`: the scraper's token (when `auth.metrics_tokens_sha256` is set;
///   closed to everyone when only `auth.tokens_sha256` is: see [`MetricsAccess`]),
///   then the request rate.
/// - `/health`: a request rate of its own per address
///   (`http.health_requests_per_second`), so that a client's API traffic never
///   makes its load balancer's probes fail.
/// - every other route, and the 404 and 405 fallbacks: the request rate, keyed
///   by address.
pub(super) fn routes(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    let execute = OpenApiRouter::new().routes(routes!(executions::execute));
    let mut protected = OpenApiRouter::new()
        .routes(routes!(sessions::create_session))
        .routes(routes!(executions::get_execution))
        .routes(routes!(usage::usage));
    let mut metrics = OpenApiRouter::new().routes(routes!(operations::metrics_text));
    let mut public = OpenApiRouter::new()
        .routes(routes!(keys::keys))
        .routes(routes!(keys::fuel_costs))
        .routes(routes!(log::checkpoint))
        .routes(routes!(log::consistency))
        .routes(routes!(log::verify))
        .routes(routes!(tlog::checkpoint))
        .routes(routes!(tlog::proof))
        // A tile's path has several segments, which an OpenAPI path parameter
        // cannot say: documented as `/tlog/tile/{path}` (`ApiDoc`), served here.
        .route("/tlog/tile/{*path}", axum::routing::get(tlog::tile))
        .routes(routes!(openapi_json));
    let mut health = OpenApiRouter::new().routes(routes!(operations::health));
    if let Some(state) = state {
        let limit_rate = {
            let state = state.clone();
            CheckLayer(move |request: &mut Request| limit_requests(&state, request))
        };
        let tokens = state.tokens.clone();
        // One `route_layer` per group, outermost first: each boxes the routes again.
        protected = protected.merge(execute).route_layer(
            ServiceBuilder::new()
                .layer(CheckLayer(move |request: &mut Request| {
                    authenticate(&tokens, request)
                }))
                .layer(limit_rate.clone()),
        );
        let access = state.metrics_access.clone();
        metrics = metrics.route_layer(
            ServiceBuilder::new()
                .layer(CheckLayer(move |request: &mut Request| {
                    authorize_scraper(&access, request)
                }))
                .layer(limit_rate.clone()),
        );
        public = public.route_layer(limit_rate);
        let probes = state.clone();
        health = health.route_layer(CheckLayer(move |request: &mut Request| {
            limit_health_probes(&probes, request)
        }));
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
    let (mut routes, _document) = routes(Some(&state)).split_for_parts();
    if state.playground {
        routes = routes.merge(playground::routes(&state));
    }
    // One layer, made of statically composed services, around each route and the
    // fallbacks: each `Router::layer` boxes the route it wraps, and that box is
    // cloned and its future boxed again on every request.
    let every_request = ServiceBuilder::new()
        .map_request(drop_unusable_request_id)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span as fn(&Request) -> tracing::Span)
                // The span only: a request's one line comes from `CountRequest`
                // (or, for an answered execution, from the execution), and a 5xx is
                // also logged once, with its code, by `ApiError`.
                .on_request(())
                .on_response(())
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CountRequestLayer {
            metrics: state.metrics.clone(),
            max_header_bytes: state.max_header_bytes,
            max_request_bytes: state.max_request_bytes,
        })
        .layer(DefaultBodyLimit::max(state.max_request_bytes));
    routes
        .fallback(no_such_route)
        .method_not_allowed_fallback(no_such_method)
        .layer(every_request)
        .with_state(state)
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
    paths(tlog::tile),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub(super) struct ApiDoc;

/// Declares the `bearer` scheme that `POST /sessions`, `POST /execute`, `GET
/// /executions/{execution_id}`, `GET /usage` and `GET /metrics` accept.
pub(super) struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Required by `POST /sessions`, `POST /execute`, `GET \
                         /executions/{execution_id}` and `GET /usage` only when the server sets \
                         `auth.tokens_sha256`, and by `GET /metrics` \
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
pub(super) async fn openapi_json() -> Response {
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
