//! Extractors and the parsing done once at the edge: a body's type
//! ([`BodyFormat`]) and its reading (deadline, size, every rejection in our error
//! shape), JSON bodies with serde's rejections as `malformed_body`, the client a
//! request counts against ([`QuotaClient`]), and ids in their only accepted form.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use uuid::Uuid;

use crate::access::ClientKey;

use super::AppState;
use super::error::ApiError;
use super::middleware::client_of;

/// The two body types `POST /execute` takes (protocol v1.1 §B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFormat {
    /// `application/json`: protocol v1.
    Json,
    /// `application/octet-stream`: protocol v1.1 §B.
    Binary,
}

impl BodyFormat {
    /// `json` or `binary`, for a metric label.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            BodyFormat::Json => "json",
            BodyFormat::Binary => "binary",
        }
    }
}

/// The body type the request's `Content-Type` names (its media type, parameters
/// ignored, in any case), if it is one of the two.
pub(super) fn body_format(request: &Request) -> Option<BodyFormat> {
    let mime = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())?
        .trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Some(BodyFormat::Json)
    } else if mime.eq_ignore_ascii_case("application/octet-stream") {
        Some(BodyFormat::Binary)
    } else {
        None
    }
}

/// Reads the whole body within `http.body_read_timeout_ms` and under
/// `limits.max_request_bytes`.
pub(super) async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    // One deadline for the whole body, so that a client cannot hold a
    // connection (and, for `/execute`, one of its execution slots) by sending
    // a byte now and then.
    tokio::time::timeout(state.body_read_timeout, Bytes::from_request(request, state))
        .await
        .map_err(|_elapsed| ApiError::RequestTimeout)?
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(ref failed)
                if failed.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::PayloadTooLarge
            }
            other => ApiError::MalformedBody(format!("cannot read the body: {other}")),
        })
}

/// Most bytes of a binary `/execute` ciphertext reserved before any arrive: a
/// body announcing more still grows its buffer as it comes, so that an announced
/// length alone never reserves `limits.max_request_bytes`.
const PRESIZE_LIMIT: usize = 64 << 20;

/// Reads a binary `/execute` body (protocol v1.1 §B) as [`read_body`] reads a
/// body (the same deadline, limit and rejections), but in two parts: its first
/// `head_len` bytes (session id and `enc`), and the rest, the ciphertext, straight
/// into a vector of its own, which is then decrypted in place. So the ciphertext
/// is copied once, out of the connection's buffers, like any body, and never
/// again. A body shorter than `head_len` comes back with a short head.
pub(super) async fn read_split_body(
    request: Request,
    state: &AppState,
    head_len: usize,
) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    use bytes::Buf;
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    let mut head = Vec::with_capacity(head_len);
    let mut rest = Vec::with_capacity(
        announced
            .unwrap_or(0)
            .saturating_sub(head_len)
            .min(state.max_request_bytes)
            .min(PRESIZE_LIMIT),
    );
    let mut body = Limited::new(request.into_body(), state.max_request_bytes);
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(mut data) = frame?.into_data() else {
                continue; // trailers
            };
            let wanted = (head_len - head.len()).min(data.len());
            head.extend_from_slice(&data[..wanted]);
            data.advance(wanted);
            rest.extend_from_slice(&data);
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    };
    match tokio::time::timeout(state.body_read_timeout, read).await {
        Err(_elapsed) => Err(ApiError::RequestTimeout),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge)
        }
        Ok(Err(error)) => Err(ApiError::MalformedBody(format!(
            "cannot read the body: {error}"
        ))),
        Ok(Ok(())) => Ok((head, rest)),
    }
}

/// Reads a body that must be small (a `POST /sessions` body): over `limit`
/// bytes is 413 `payload_too_large`, refused on its announced length before it is
/// read, or as soon as the bytes received pass the limit; within
/// `http.body_read_timeout_ms` as every body.
pub(super) async fn read_small_body(
    request: Request,
    state: &AppState,
    limit: usize,
) -> Result<Bytes, ApiError> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let body = Limited::new(request.into_body(), limit);
    match tokio::time::timeout(state.body_read_timeout, body.collect()).await {
        Err(_elapsed) => Err(ApiError::RequestTimeout),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge)
        }
        Ok(Err(error)) => Err(ApiError::MalformedBody(format!(
            "cannot read the body: {error}"
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The client a request counts against (see `client_of`), as an extractor: for
/// `/execute`, which takes an execution slot only once its body is decoded.
pub(super) struct QuotaClient(pub(super) ClientKey);

impl FromRequestParts<AppState> for QuotaClient {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(QuotaClient(client_of(
            state,
            &parts.extensions,
            &parts.headers,
        )))
    }
}

/// Parses a JSON body, every failure a `malformed_body`.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::MalformedBody(format!("invalid JSON body: {error}")))
}

/// Session and execution ids travel in their 36-character lowercase hyphenated
/// form only (PROTOCOL.md, "Sessions"): one spelling per id, as the server writes
/// them, so that an id compared or logged as text is the same id.
pub(super) fn parse_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 36 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Uuid::try_parse(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_taken_only_in_their_36_character_lowercase_form() {
        let lowercase = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
        let id = parse_uuid(lowercase).unwrap();
        assert_eq!(id.hyphenated().to_string(), lowercase);
        assert_eq!(parse_uuid(&lowercase.to_uppercase()), None);
        assert_eq!(parse_uuid("1B4e28ba-2fa1-41d2-883f-0016d3cca427"), None);
        assert_eq!(parse_uuid(&id.simple().to_string()), None);
        assert_eq!(parse_uuid(&id.braced().to_string()), None);
        assert_eq!(parse_uuid(&id.urn().to_string()), None);
    }
}
