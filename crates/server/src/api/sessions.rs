//! `POST /sessions` (protocol §1): a fresh session key, signed by the server.

#![forbid(unsafe_code)]

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::envelope::{self};
use crate::session::SessionError;
use wasm_hypervisor_protocol::encoding::Base64;
use wasm_hypervisor_protocol::wire::{ErrorBody, SessionResponse, Suite};

use super::AppState;
use super::error::ApiError;
use super::extract::QuotaClient;

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
pub(super) async fn create_session(
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
