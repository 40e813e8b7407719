//! The HTTP answer read the protocol's way: a 2xx body, or the error shape as
//! [`ClientError::Server`] with its `Retry-After`.

use wasm_hypervisor_protocol::wire::ErrorBody;

use crate::{ClientError, Violation};

/// Seconds from the `Retry-After` header, when it is a number of seconds.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

pub(crate) async fn parse<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let bytes = success_body(response).await?;
    serde_json::from_slice(&bytes).map_err(|error| Violation::Body(error).into())
}

/// The body of a 2xx answer; any other status as [`ClientError::Server`], read
/// from the protocol's error shape when it is one.
pub(crate) async fn success_body(response: reqwest::Response) -> Result<bytes::Bytes, ClientError> {
    let status = response.status();
    let retry_after = retry_after(&response);
    let bytes = response.bytes().await?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ClientError::Server {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
                retry_after,
            },
            Err(_) => ClientError::Server {
                status: status.as_u16(),
                code: "unknown".to_owned(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                retry_after,
            },
        });
    }
    Ok(bytes)
}
