//! `POST /execute` (protocol §3): the body parsed into a [`SealedExecution`], the
//! client's execution slot, and the sealed, committed, logged answer; with
//! `Prefer: respond-async` (protocol v1.1 §F) a `202` once the plaintext opens,
//! and `GET /executions/{execution_id}` for the answer.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::access::{ClientKey, Scope};
use crate::answer::ExecutionReceipt;
use crate::async_results::{Answer, Phase, ReadersFull, View, Withheld};
use crate::envelope::{Enc, Provider};
use crate::execution::{ExecutionError, SealedExecution};
use wasm_hypervisor_protocol::binary;
use wasm_hypervisor_protocol::wire::{
    ErrorBody, ExecuteBody, ExecuteResponse, ExecutionAccepted, ExecutionPhase, ExecutionState,
    PendingState,
};

use super::AppState;
use super::answer_stream::AnswerBody;
use super::error::ApiError;
use super::extract::{
    BodyFormat, QuotaClient, body_format, json_body, parse_uuid, read_body, read_split_body,
};

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

/// The sealed request a binary `/execute` body carries (protocol v1.1 §B): at
/// least 81 bytes, `enc` a point on P-256. The session id is any 16 bytes (one
/// the server never issued is `session_not_found`, as in JSON).
pub fn sealed_binary_execution(
    bytes: &[u8],
    provider: Provider,
    client: ClientKey,
) -> Result<SealedExecution, ApiError> {
    let (head, ciphertext) = bytes.split_at(bytes.len().min(binary::MIN_EXECUTE_BODY));
    sealed_binary_parts(head, ciphertext.to_vec(), provider, client)
}

/// [`sealed_binary_execution`] of a body read in two parts ([`read_split_body`]):
/// its first 81 bytes, and its ciphertext, kept as it is (decrypted in place
/// later: no copy).
fn sealed_binary_parts(
    head: &[u8],
    ciphertext: Vec<u8>,
    provider: Provider,
    client: ClientKey,
) -> Result<SealedExecution, ApiError> {
    let body = binary::ExecuteBody::parse(head)
        .map_err(|_| binary::BinaryError::BodyTooShort(head.len() + ciphertext.len()))
        .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
    let enc = Enc::parse(provider, &body.enc).map_err(|_| {
        ApiError::MalformedBody("`enc` is not a 65-byte uncompressed P-256 point".to_owned())
    })?;
    Ok(SealedExecution {
        session_id: body.session_id,
        enc,
        ciphertext,
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

/// `Preference-Applied` (RFC 7240 §3).
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// Whether the request's `Prefer` headers (RFC 7240 §2) hold the preference
/// `respond-async`: each header a comma-separated list of preferences, each a
/// token (case-insensitive), optionally `=value` and `;parameters`, which are
/// ignored, as are all other preferences (`wait=`, `return=`, unknown ones).
fn prefers_respond_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| {
            let token = preference.split([';', '=']).next().unwrap_or("");
            token.trim().eq_ignore_ascii_case("respond-async")
        })
}

/// The answer `/execute` gives for a receipt, in JSON (protocol §3) or binary
/// (protocol v1.1 §B): the same body `GET /executions/{execution_id}` streams
/// ([`AnswerBody`]), so neither copies the ciphertext: the binary body is the
/// answer's head followed by slices of the receipt's own (shared) ciphertext,
/// and the JSON body writes the ciphertext's base64 a piece at a time as it is
/// sent.
fn execute_response(receipt: ExecutionReceipt, format: BodyFormat) -> Result<Response, ApiError> {
    let content_type = match format {
        BodyFormat::Json => "application/json",
        BodyFormat::Binary => OCTET_STREAM,
    };
    Ok(AnswerBody::new(Answer::Kept(Arc::new(receipt)), format, None)?.into_response(content_type))
}

const OCTET_STREAM: &str = "application/octet-stream";

/// Whether the request's `Accept` headers name `application/octet-stream` (its
/// media type, parameters ignored, in any case): `GET /executions/{id}` then
/// answers a finished execution in binary (protocol v1.1 §F).
fn accepts_binary(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mime = range.split(';').next().unwrap_or("");
            mime.trim().eq_ignore_ascii_case(OCTET_STREAM)
        })
}

/// A refusal before the plaintext opened, or a withheld answer, as HTTP.
fn api_error(error: ExecutionError) -> ApiError {
    match error {
        ExecutionError::UnknownSession => ApiError::SessionNotFound,
        ExecutionError::DecryptionFailed => ApiError::DecryptionFailed,
        ExecutionError::Overloaded { retry_after } => ApiError::Overloaded { retry_after },
        ExecutionError::TooManyAsyncResults { retry_after } => {
            ApiError::TooManyAsyncResults { retry_after }
        }
        ExecutionError::LogUnavailable(cause) => {
            tracing::error!(error = %cause, "execution not recorded");
            ApiError::LogUnavailable
        }
        ExecutionError::SessionsUnavailable => ApiError::DatabaseUnavailable,
    }
}

/// Run a sealed request. Once its plaintext opens, every outcome is a 200 with a
/// sealed result, committed and logged; with `Prefer: respond-async`, a 202 and
/// the same answer later at `GET /executions/{execution_id}`.
#[utoipa::path(
    post,
    path = "/execute",
    tag = "protocol",
    security((), ("bearer" = [])),
    params(("Prefer" = Option<String>, Header, description = "`respond-async` (RFC 7240): answer 202 as soon as the plaintext opens, and keep the answer for `GET /executions/{execution_id}` (protocol v1.1 §F); other preferences are ignored")),
    request_body(content(
        (ExecuteBody = "application/json"),
        (Vec<u8> = "application/octet-stream"),
    )),
    responses(
        (status = 200, description = "An execution, sealed, committed and durably logged (protocol §3); for a binary body, `application/octet-stream`: execution_id (16 bytes) || log_index (u64 BE) || commitment (32 bytes) || leaf_signature_length (u16 BE) || leaf_signature || ciphertext (protocol v1.1 §B)", body = ExecuteResponse),
        (status = 202, description = "With `Prefer: respond-async`: the plaintext opened and the execution will run; its answer is at `Location`", body = ExecutionAccepted,
            headers(("Location" = String, description = "`/executions/{execution_id}`"),
                    ("Preference-Applied" = String, description = "`respond-async`"))),
        (status = 400, description = "`malformed_body`: not the JSON this endpoint takes, or a binary body shorter than 81 bytes or with a bad `enc`; `decryption_failed`: the ciphertext does not open under the session's key", body = ErrorBody),
        (status = 401, description = "`unauthorized`: authentication is on and no valid bearer token was sent", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "`session_not_found`: unknown, expired, evicted or already used session", body = ErrorBody),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `http.body_read_timeout_ms`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over `limits.max_request_bytes`, announced (refused before it is read) or streamed; the connection is closed", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is neither `application/json` nor `application/octet-stream`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`; `too_many_executions`: this client has `clients.max_concurrent_executions` executions in flight; `quota_exceeded`: this client has used a quota of the current UTC hour or day (`quotas`; see `GET /usage`), refused before the session is used, with `Retry-After` the seconds until that window ends; `too_many_async_results`: with `Prefer: respond-async`, the largest answer this request can produce does not fit in what is left of this client's share of the async answers (`execution.async_results_bytes_per_client`); refused before the session is used when not even the smallest answer fits, else once the plaintext opened (the session is used: open a new one)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying, at least 1"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`overloaded`: no execution slot within the queue bounds, or with `Prefer: respond-async` no room for another async execution: `execution.max_async_pending` pending, or the largest answer this request can produce does not fit in what is left of `execution.async_results_bytes` (refused before the session is used when not even the smallest answer fits, else once the plaintext opened) (with `Retry-After`); `log_unavailable`: the record could not be made durable, so the result is withheld; `database_unavailable`: cluster mode's database cannot be reached (the session was not used)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "With `overloaded` or `database_unavailable`: seconds to wait before retrying"))),
    )
)]
pub(super) async fn execute(
    State(state): State<AppState>,
    QuotaClient(client): QuotaClient,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let format = body_format(&request).ok_or(ApiError::UnsupportedMediaType)?;
    let sealed = read_sealed(request, &state, format, client).await?;
    // Its usage quotas (protocol v1.2 §U), before the session is used: refused,
    // the request can be sent again unchanged once the window ends. Executions
    // in flight are not counted yet, so they may carry the client past a quota.
    state.usage.check(client, crate::usage::unix_now())?;
    // One of the client's execution slots (`clients.max_concurrent_executions`),
    // taken only now that the body is read and decoded: a slow, oversized or
    // malformed body never holds one.
    let permit = state.quotas.begin_execution(client, Instant::now())?;
    // With `execution.max_async_pending` 0 the preference is ignored (RFC 7240
    // lets a server do so): answered synchronously, without `Preference-Applied`.
    if prefers_respond_async(&headers) && state.async_executions.enabled() {
        return execute_async(state, sealed, permit).await;
    }
    // Its own task: a client that disconnects must not cancel an execution whose
    // plaintext is already open (it still has to be logged), and a panic in it must
    // only fail this request. It runs whole, from the session's key to the durable
    // log record, on this thread when the server is otherwise idle, else on the
    // guest runtime: two thread crossings, there and back (`Executor::spawn`).
    // The task runs inside this request's span, so its log lines carry the request
    // id even after the client has gone.
    let executor = state.executor.clone();
    let receipt = state
        .executor
        .spawn(
            &state.executions,
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
        .map_err(api_error)?;
    record_in_span(&receipt);
    execute_response(receipt, format)
}

/// Reads and decodes the body of an `/execute` request in `format`, and counts it.
async fn read_sealed(
    request: Request,
    state: &AppState,
    format: BodyFormat,
    client: ClientKey,
) -> Result<SealedExecution, ApiError> {
    let provider = state.sessions.provider();
    let sealed = match format {
        BodyFormat::Json => {
            let bytes = read_body(request, state).await?;
            sealed_execution(json_body::<ExecuteBody>(&bytes)?, provider, client)?
        }
        BodyFormat::Binary => {
            let (head, ciphertext) =
                read_split_body(request, state, binary::MIN_EXECUTE_BODY).await?;
            sealed_binary_parts(&head, ciphertext, provider, client)?
        }
    };
    state.metrics.record_execute_body(format.as_str());
    Ok(sealed)
}

fn record_in_span(receipt: &ExecutionReceipt) {
    let span = tracing::Span::current();
    span.record(
        "execution_id",
        tracing::field::display(receipt.execution_id),
    );
    span.record("execution_status", receipt.status.as_str());
}

/// `execute` with `Prefer: respond-async`: the same task as a synchronous
/// execution (tracked, so a shutdown waits for it), which tells this handler the
/// execution id as soon as the plaintext opens and its answer's bound is
/// reserved; refusals before that are answered in the clear, as a synchronous
/// `/execute` answers them.
async fn execute_async(
    state: AppState,
    sealed: SealedExecution,
    permit: crate::access::ExecutionPermit,
) -> Result<Response, ApiError> {
    let (accepted, opened) = oneshot::channel();
    let executor = state.executor.clone();
    let results = state.async_executions.clone();
    let runtime = state.executor.runtime().clone();
    let task = state.executions.spawn_on(
        async move {
            let _permit = permit;
            let outcome = executor.execute_async(sealed, &results, accepted).await;
            // Nobody awaits an accepted execution's task: say here what the
            // synchronous handler would have said.
            match &outcome {
                Ok(receipt) => record_in_span(receipt),
                Err(ExecutionError::LogUnavailable(cause)) => {
                    tracing::error!(error = %cause, "async execution not recorded; its answer is withheld");
                }
                Err(_) => {}
            }
            outcome
        }
        .in_current_span(),
        &runtime,
    );
    let Ok(execution_id) = opened.await else {
        // The plaintext never opened (or the task panicked before): the task's
        // own answer says why.
        let outcome = task.await.map_err(|join_error| {
            tracing::error!(error = %join_error, "execution task failed");
            ApiError::Internal
        })?;
        return Err(match outcome {
            Err(error) => api_error(error),
            // Unreachable: an opened plaintext sends its id first.
            Ok(_) => ApiError::Internal,
        });
    };
    // Cluster mode: the client may ask any replica next.
    state.async_executions.published(execution_id).await;
    state.metrics.record_async_execution();
    tracing::Span::current().record("execution_id", tracing::field::display(execution_id));
    accepted_response(execution_id)
}

/// The 202 of an execution accepted with `Prefer: respond-async`: its id, and
/// where its answer will be.
fn accepted_response(execution_id: uuid::Uuid) -> Result<Response, ApiError> {
    let id = execution_id.hyphenated().to_string();
    let location = format!("/executions/{id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(ExecutionAccepted {
            execution_id: id,
            location: location.clone(),
        }),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::try_from(location).map_err(|_| ApiError::Internal)?,
    );
    headers.insert(
        PREFERENCE_APPLIED,
        HeaderValue::from_static("respond-async"),
    );
    Ok(response)
}

/// The answer of an execution accepted with `Prefer: respond-async` (protocol
/// v1.1 §F), for the client that submitted it.
#[utoipa::path(
    get,
    path = "/executions/{execution_id}",
    tag = "protocol",
    security((), ("bearer" = [])),
    params(("execution_id" = String, Path, description = "The execution id from the 202 of `POST /execute`, a 36-character lowercase UUID"),
        ("Accept" = Option<String>, Header, description = "`application/octet-stream`: a finished execution's answer in binary (protocol v1.1 §B); otherwise JSON")),
    responses(
        (status = 200, description = "Finished: exactly the body a synchronous `POST /execute` would have answered, in JSON, or in binary with `Accept: application/octet-stream`", body = ExecuteResponse),
        (status = 202, description = "Queued or running (`state`), and what it is doing (`phase`: queued, compiling or running); ask again after `Retry-After`", body = ExecutionState,
            headers(("Retry-After" = u64, description = "Seconds to wait before asking again: 1"))),
        (status = 400, description = "`invalid_parameter`: the id is not a 36-character lowercase UUID", body = ErrorBody),
        (status = 401, description = "`unauthorized`: authentication is on and no valid bearer token was sent", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "`execution_not_found`: no async execution with this id for this client: unknown, submitted with another token, or finished longer ago than `execution.async_retention_secs` (its log entry stays provable at `/verify/{execution_id}`)", body = ErrorBody),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`; `too_many_readers`: this client is being sent 4 answers already, or the server 128", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
        (status = 500, description = "`internal_error`: the execution ended without an answer (a server bug)", body = ErrorBody),
        (status = 503, description = "`log_unavailable`: the record could not be made durable, so the result is withheld; `database_unavailable`: cluster mode's database cannot be reached to look the id up", body = ErrorBody),
    )
)]
pub(super) async fn get_execution(
    State(state): State<AppState>,
    QuotaClient(client): QuotaClient,
    Path(execution_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&execution_id).ok_or_else(|| {
        ApiError::InvalidParameter(
            "the execution id is not a 36-character lowercase UUID".to_owned(),
        )
    })?;
    let view = state
        .async_executions
        .find(&id, Scope::of(client))
        .await
        .map_err(|_| ApiError::DatabaseUnavailable)?
        .ok_or(ApiError::ExecutionNotFound)?;
    let pending = |state, phase| pending_response(execution_id.clone(), state, phase);
    match view {
        View::Queued => Ok(pending(PendingState::Queued, ExecutionPhase::Queued)),
        View::Running(phase) => Ok(pending(
            PendingState::Running,
            match phase {
                Phase::Queued => ExecutionPhase::Queued,
                Phase::Compiling => ExecutionPhase::Compiling,
                Phase::Running => ExecutionPhase::Running,
            },
        )),
        View::Done(answer) => done_response(&state, client, answer, &headers),
        View::Withheld(Withheld::LogUnavailable) => Err(ApiError::LogUnavailable),
        View::Withheld(Withheld::Internal) => Err(ApiError::Internal),
    }
}

/// The 202 of an async execution not finished yet: ask again in a second.
fn pending_response(execution_id: String, state: PendingState, phase: ExecutionPhase) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        Json(ExecutionState {
            execution_id,
            state,
            phase: Some(phase),
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    response
}

/// A finished async execution's answer, in binary if `headers` accept it, else
/// JSON. Streamed from the one copy kept, by a bounded number of readers: a
/// reader that does not read holds a piece and a slot, no copy.
fn done_response(
    state: &AppState,
    client: ClientKey,
    answer: Answer,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let slot = state
        .async_executions
        .begin_read(client)
        .map_err(|_: ReadersFull| ApiError::TooManyReaders)?;
    if accepts_binary(headers) {
        Ok(AnswerBody::new(answer, BodyFormat::Binary, Some(slot))?.into_response(OCTET_STREAM))
    } else {
        Ok(
            AnswerBody::new(answer, BodyFormat::Json, Some(slot))?
                .into_response("application/json"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_hypervisor_protocol::encoding::{Base64, Hex};

    fn prefer(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn respond_async_is_found_among_other_preferences_in_any_case() {
        assert!(prefers_respond_async(&prefer(&["respond-async"])));
        assert!(prefers_respond_async(&prefer(&["Respond-Async"])));
        assert!(prefers_respond_async(&prefer(&["wait=10, respond-async"])));
        assert!(prefers_respond_async(&prefer(&[
            "return=minimal",
            " RESPOND-ASYNC ;x=1"
        ])));
        assert!(prefers_respond_async(&prefer(&[
            "handling=lenient,respond-async,wait=5"
        ])));
    }

    fn receipt(ciphertext_len: usize) -> ExecutionReceipt {
        ExecutionReceipt {
            execution_id: uuid::Uuid::from_u128(0x1b4e28ba_2fa1_41d2_883f_0016d3cca427),
            ciphertext: (0..ciphertext_len)
                .map(|i| i as u8)
                .collect::<Vec<u8>>()
                .into(),
            commitment: [0xC0; 32],
            log_index: 1 << 40,
            leaf_signature: vec![0x30; 71],
            status: wasm_hypervisor_protocol::payload::Status::Completed,
        }
    }

    async fn body_of(response: Response) -> (Option<u64>, Vec<u8>) {
        use http_body_util::BodyExt;
        // The length announced: `Content-Length`, which hyper keeps.
        let exact = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .map(|length| length.to_str().unwrap().parse().unwrap());
        let body = response.into_body();
        (exact, body.collect().await.unwrap().to_bytes().to_vec())
    }

    /// Both bodies are the documents the protocol crate writes (`ExecuteResponse`
    /// through serde, `ExecuteAnswer::to_vec`), for ciphertexts around base64's
    /// groups and the frame size, with their exact length announced.
    #[tokio::test]
    async fn answers_are_built_around_the_ciphertext_without_copying_it() {
        for len in [
            0,
            1,
            2,
            3,
            4,
            16,
            (48 << 10) - 1,
            48 << 10,
            3 * (48 << 10) + 2,
        ] {
            let receipt = receipt(len);
            let (exact, json) =
                body_of(execute_response(receipt.clone(), BodyFormat::Json).unwrap()).await;
            let expected = serde_json::to_vec(&ExecuteResponse {
                execution_id: receipt.execution_id.hyphenated().to_string(),
                ciphertext: Base64(receipt.ciphertext.to_vec()),
                commitment: Hex(receipt.commitment),
                log_index: receipt.log_index,
                leaf_signature: Base64(receipt.leaf_signature.clone()),
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(json).unwrap(),
                String::from_utf8(expected.clone()).unwrap()
            );
            assert_eq!(exact, Some(expected.len() as u64), "{len}");

            let (exact, binary) =
                body_of(execute_response(receipt.clone(), BodyFormat::Binary).unwrap()).await;
            let expected = binary::ExecuteAnswer {
                execution_id: receipt.execution_id,
                log_index: receipt.log_index,
                commitment: receipt.commitment,
                leaf_signature: &receipt.leaf_signature,
                ciphertext: &receipt.ciphertext,
            }
            .to_vec()
            .unwrap();
            assert_eq!(binary, expected);
            assert_eq!(exact, Some(expected.len() as u64));
        }
    }

    #[test]
    fn other_preferences_and_lookalikes_are_not_respond_async() {
        assert!(!prefers_respond_async(&HeaderMap::new()));
        assert!(!prefers_respond_async(&prefer(&["wait=10"])));
        assert!(!prefers_respond_async(&prefer(&["respond-asynchronously"])));
        assert!(!prefers_respond_async(&prefer(&["return=respond-async"])));
        assert!(!prefers_respond_async(&prefer(&["x-respond-async"])));
    }
}
