//! The operators' routes: `GET /health` for load balancers and `GET /metrics` for
//! Prometheus.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::metrics::{self, Audience, Gauges};
use wasm_hypervisor_protocol::wire::{ErrorBody, HealthResponse};

use super::AppState;

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
pub(super) async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
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
        log_size: state.log.size(),
        reasons: problems.iter().map(|p| p.as_str().to_owned()).collect(),
        witnessing: state.witnessing.as_ref().map(|w| w.health()),
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
pub(super) async fn metrics_text(
    State(state): State<AppState>,
    audience: Option<Extension<Audience>>,
) -> Response {
    // Unmarked (it cannot be, behind `authorize_scraper`): the least.
    let audience = audience.map_or(Audience::Public, |Extension(audience)| audience);
    let async_counts = state.async_executions.counts();
    let gauges = Gauges {
        executions_in_flight: state.executor.slots_in_use(),
        execution_queue_depth: state.executor.queue_depth(),
        sessions_pending: state.sessions.pending(),
        audit_log_size: state.log.size(),
        blob_store_bytes: state.executor.blobs().total_bytes(),
        async_executions_pending: async_counts.pending,
        async_results_stored: async_counts.stored,
        async_results_bytes: async_counts.bytes,
    };
    let text = state.metrics.render(gauges, audience);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}
