//! [`ApiError`]: every answer that is not a success, and the one place where an
//! error becomes an HTTP status, a stable `code` and the protocol's error shape
//! `{"error": {"code", "message"}}`. A 4xx is logged at debug level without its
//! body; a 5xx is logged with its cause but answered with an opaque message.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access::QuotaError;
use crate::usage::QuotaExceeded;
use wasm_hypervisor_protocol::wire::{ErrorBody, ErrorDetail};

/// Every error the API answers with. `code` and status are part of the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `malformed_body`: the body is not the JSON the endpoint takes.
    #[error("{0}")]
    MalformedBody(String),
    /// 415 `unsupported_media_type`: the body is not of a type the endpoint takes
    /// (`application/json`, or for `/execute` also `application/octet-stream`).
    #[error("the body must be application/json (or, for POST /execute, application/octet-stream)")]
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
    /// 429 `too_many_async_results`: a long job's answer would put this client's
    /// async answers, pending and kept, over
    /// `execution.async_results_bytes_per_client`.
    #[error(
        "this client's async answers, pending and kept, would be over its share \
         (execution.async_results_bytes_per_client); retry once some expire, or \
         lower limits.max_output_bytes or limits.files_bytes"
    )]
    TooManyAsyncResults { retry_after: Duration },
    /// 429 `quota_exceeded`: this client has used a quota of the current UTC hour
    /// or day (`quotas`); `retry_after` is the time until that window ends.
    #[error("this client has used its {window} quota (quotas); retry when the window ends")]
    QuotaExceeded {
        window: &'static str,
        retry_after: Duration,
    },
    /// 429 `too_many_readers`: this client, or the server, is sending as many
    /// async answers at once as it may.
    #[error("as many async answers are being sent at once as may be; retry when one is read")]
    TooManyReaders,
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
    /// 503 `database_unavailable`: cluster mode's database cannot be reached, so
    /// no session is issued or used and no async answer is looked up.
    #[error("the cluster's database is unreachable; retry later")]
    DatabaseUnavailable,
    /// 404 `not_found`: no such route.
    #[error("no such endpoint")]
    NotFound,
    /// 404 `not_yet_published`: the witnesses have not yet cosigned a checkpoint
    /// that covers this entry (protocol v1.2 §T4–T5); retry after `Retry-After`.
    #[error(
        "no published checkpoint covers this yet: its witnesses have not cosigned one; retry later"
    )]
    NotYetPublished,
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
            | ApiError::TooManyClientSessions { .. }
            | ApiError::TooManyAsyncResults { .. }
            | ApiError::QuotaExceeded { .. }
            | ApiError::TooManyReaders => StatusCode::TOO_MANY_REQUESTS,
            ApiError::SessionNotFound
            | ApiError::NotFound
            | ApiError::NotYetPublished
            | ApiError::ExecutionNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Overloaded { .. }
            | ApiError::TooManySessions { .. }
            | ApiError::LogUnavailable
            | ApiError::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
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
            ApiError::TooManyAsyncResults { .. } => "too_many_async_results",
            ApiError::QuotaExceeded { .. } => "quota_exceeded",
            ApiError::TooManyReaders => "too_many_readers",
            ApiError::SessionNotFound => "session_not_found",
            ApiError::DecryptionFailed => "decryption_failed",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::TooManySessions { .. } => "too_many_sessions",
            ApiError::LogUnavailable => "log_unavailable",
            ApiError::DatabaseUnavailable => "database_unavailable",
            ApiError::NotFound => "not_found",
            ApiError::NotYetPublished => "not_yet_published",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal => "internal_error",
        }
    }

    /// How long a client should wait before it tries again (`Retry-After`), for
    /// the refusals that pass.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Overloaded { retry_after }
            | ApiError::TooManySessions { retry_after }
            | ApiError::TooManyClientSessions { retry_after }
            | ApiError::TooManyAsyncResults { retry_after }
            | ApiError::QuotaExceeded { retry_after, .. }
            | ApiError::RateLimited { retry_after } => Some(*retry_after),
            // Executions take seconds; a client that retries at once only burns
            // its request rate. Connections close within a second or so of their
            // last request.
            // The pool reconnects within a second or so of the database's return.
            // An answer is sent in seconds, or its connection's write deadline
            // ends it.
            ApiError::TooManyExecutions
            | ApiError::TooManyConnections
            | ApiError::TooManyReaders
            | ApiError::DatabaseUnavailable => Some(Duration::from_secs(1)),
            // Witnesses cosign within a second or so of a new checkpoint.
            ApiError::NotYetPublished => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
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
        if let Some(wait) = self.retry_after() {
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

impl From<QuotaExceeded> for ApiError {
    fn from(error: QuotaExceeded) -> Self {
        ApiError::QuotaExceeded {
            window: error.window.as_str(),
            retry_after: error.retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::header;
    use axum::response::IntoResponse;

    use super::*;
    use crate::api::openapi;

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
            ApiError::TooManyAsyncResults {
                retry_after: Duration::ZERO,
            },
            ApiError::QuotaExceeded {
                window: "hour",
                retry_after: Duration::ZERO,
            },
            ApiError::TooManyReaders,
            ApiError::SessionNotFound,
            ApiError::DecryptionFailed,
            ApiError::Overloaded {
                retry_after: Duration::ZERO,
            },
            ApiError::TooManySessions {
                retry_after: Duration::ZERO,
            },
            ApiError::LogUnavailable,
            ApiError::DatabaseUnavailable,
            ApiError::NotFound,
            ApiError::NotYetPublished,
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
        let doc = include_str!("../../../../PROTOCOL.md");
        for error in all_errors() {
            let row = format!("| `{}` | {} |", error.code(), error.status().as_u16());
            assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row}");
        }
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
