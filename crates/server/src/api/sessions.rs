//! `POST /sessions` (protocol §1): a fresh session key, signed by the server; with
//! the body `{"count": N}`, a batch of N under one signature (protocol v1.1 §A).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::envelope::{self};
use crate::session::{IssuedSession, SessionError};
use wasm_hypervisor_protocol::encoding::Base64;
use wasm_hypervisor_protocol::wire::{
    BatchedSession, ErrorBody, SessionBatchResponse, SessionResponse, SessionsRequest, Suite,
};

use super::AppState;
use super::error::ApiError;
use super::extract::{QuotaClient, json_body, read_small_body};

/// The `201` of `POST /sessions` as the OpenAPI document shows it: one session
/// without a body, a batch with `{"count": N}`. A schema only: each handler
/// branch builds its own type.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum SessionsAnswer {
    One(SessionResponse),
    Batch(SessionBatchResponse),
}

/// Open a session: a fresh P-256 key for one `/execute`, signed by the server's
/// key; or, with `{"count": N}`, N of them under one signature.
#[utoipa::path(
    post,
    path = "/sessions",
    tag = "protocol",
    security((), ("bearer" = [])),
    request_body(content = Option<SessionsRequest>, content_type = "application/json",
        description = "None: one session (protocol §1). `{\"count\": N}`: a batch of N, 1 <= N <= `sessions.max_batch` (protocol v1.1 §A)"),
    responses(
        (status = 201, description = "A session (protocol §1), or with a body a batch (`SessionBatchResponse`, protocol v1.1 §A)", body = SessionsAnswer),
        (status = 400, description = "`malformed_body`: a body that is not `{\"count\": N}` with N an integer; `invalid_parameter`: N outside 1..=`sessions.max_batch`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: authentication is on and no valid bearer token was sent", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `http.body_read_timeout_ms`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 1,024 bytes", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`; `too_many_client_sessions`: this client has `sessions.max_pending_per_client` sessions pending (or would, with the batch)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again (`rate_limited`) or until its oldest pending session expires (`too_many_client_sessions`; 1 while its batches are still being made), at least 1"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`too_many_sessions`: `sessions.max_pending` sessions are pending (or would be, with the batch) and no client holds more of them than this one; `database_unavailable`: cluster mode's database cannot be reached", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the oldest pending session expires (`too_many_sessions`), or to wait (`database_unavailable`), at least 1"))),
    )
)]
pub(super) async fn create_session(
    State(state): State<AppState>,
    QuotaClient(client): QuotaClient,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_small_body(request, &state, MAX_SESSIONS_BODY_BYTES).await?;
    // No body: exactly protocol v1.
    if body.is_empty() {
        let session = state
            .sessions
            .create_for(client)
            .await
            .map_err(session_error)?;
        let message = envelope::session_signature_message(&session.id, &session.public_key);
        let body = SessionResponse {
            session_id: session.id.hyphenated().to_string(),
            public_key: Base64(session.public_key),
            suite: Suite::v1(),
            expires_at: expires_at(&session),
            signature: Base64(state.key.sign(&message)),
        };
        return Ok((StatusCode::CREATED, Json(body)).into_response());
    }
    let SessionsRequest { count } = json_body::<SessionsRequest>(&body)?;
    let max = state.max_session_batch;
    let count = usize::try_from(count)
        .ok()
        .filter(|count| (1..=max).contains(count))
        .ok_or_else(|| ApiError::InvalidParameter(format!("`count` must be from 1 to {max}")))?;
    let sessions = state
        .sessions
        .create_batch_for(client, count)
        .await
        .map_err(session_error)?;
    let message = envelope::sessions_signature_message(
        sessions
            .iter()
            .map(|session| (&session.id, &session.public_key)),
    );
    let body = SessionBatchResponse {
        sessions: sessions
            .iter()
            .map(|session| BatchedSession {
                session_id: session.id.hyphenated().to_string(),
                public_key: Base64(session.public_key),
                expires_at: expires_at(session),
            })
            .collect(),
        suite: Suite::v1(),
        signature: Base64(state.key.sign(&message)),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The largest `POST /sessions` body: `{"count": N}` is a dozen bytes, and a
/// client may not make the server buffer more than this to open sessions.
pub(super) const MAX_SESSIONS_BODY_BYTES: usize = 1024;

fn expires_at(session: &IssuedSession) -> String {
    humantime::format_rfc3339_seconds(session.expires_at).to_string()
}

fn session_error(error: SessionError) -> ApiError {
    match error {
        SessionError::ClientShareReached { retry_after } => {
            ApiError::TooManyClientSessions { retry_after }
        }
        SessionError::TooManyPending { retry_after } => ApiError::TooManySessions { retry_after },
        SessionError::Unavailable => ApiError::DatabaseUnavailable,
        SessionError::Unknown => ApiError::Internal,
    }
}
