//! `POST /execute` (protocol §3): the body parsed into a [`SealedExecution`], the
//! client's execution slot, and the sealed, committed, logged answer.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use tracing::Instrument;

use crate::access::ClientKey;
use crate::envelope::{Enc, Provider};
use crate::execution::{ExecutionError, SealedExecution};
use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::wire::{ErrorBody, ExecuteBody, ExecuteResponse};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, QuotaClient, json_body, parse_uuid};

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
pub(super) async fn execute(
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
