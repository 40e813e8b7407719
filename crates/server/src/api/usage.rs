//! `GET /usage` (protocol v1.2 §U): the calling client's own usage and quotas.
//! The client is the one its request counts against ([`QuotaClient`]): its
//! token, or without authentication its address; nothing here names another.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use wasm_hypervisor_protocol::wire::{
    ErrorBody, UsageCounts, UsageQuota, UsageResponse, UsageWindow,
};

use super::AppState;
use super::extract::QuotaClient;
use crate::usage::{Counts, Limits, Window, unix_now};

/// The calling client's usage: executions, fuel, bytes in and out, in the current
/// UTC hour and day (with their quotas) and in total.
#[utoipa::path(
    get,
    path = "/usage",
    tag = "protocol",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The calling client's own usage (its token's, or without authentication its address's): logged executions, the sum of their `fuel_consumed`, and the bytes of their sealed requests and results, in the current UTC hour and day with their quotas, and in total (protocol v1.2 §U)", body = UsageResponse),
        (status = 401, description = "`unauthorized`: authentication is on and no valid bearer token was sent", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
pub(super) async fn usage(
    State(state): State<AppState>,
    QuotaClient(client): QuotaClient,
) -> Json<UsageResponse> {
    let now = unix_now();
    let report = state.usage.report(client, now);
    let settings = state.usage.settings();
    let window = |window: Window, (start, used): (u64, Counts), limits: Limits| UsageWindow {
        start: rfc3339(start),
        end: rfc3339(window.end(now).unwrap_or(start)),
        used: counts(used),
        quota: quota(limits),
    };
    Json(UsageResponse {
        hour: window(Window::Hour, report.hour, settings.per_hour),
        day: window(Window::Day, report.day, settings.per_day),
        total: counts(report.total),
    })
}

fn rfc3339(unix_seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_seconds)).to_string()
}

fn counts(counts: Counts) -> UsageCounts {
    UsageCounts {
        executions: counts.executions,
        fuel: counts.fuel,
        bytes_in: counts.bytes_in,
        bytes_out: counts.bytes_out,
    }
}

fn quota(limits: Limits) -> UsageQuota {
    let limit = |value: u64| (value != 0).then_some(value);
    UsageQuota {
        executions: limit(limits.executions),
        fuel: limit(limits.fuel),
        bytes_in: limit(limits.bytes_in),
        bytes_out: limit(limits.bytes_out),
    }
}
