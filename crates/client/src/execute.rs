//! One execution answered at once: the request sealed to a session in the
//! client's wire version (a JSON or a binary body), posted, and its answer read
//! in either body type, then opened and checked ([`open_execution`]).

use wasm_hypervisor_protocol::binary;
use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::envelope::{self, ResponseKeys};
use wasm_hypervisor_protocol::wire::{ExecuteBody, ExecuteResponse};

use crate::http::parse;
use crate::run::Observer;
use crate::{Client, ClientError, Execution, Session, Violation, Wire, open_execution, upload};

impl Client {
    /// Seals `request_plaintext` to the session, posts it, opens the result and
    /// checks that the server's commitment is the one both sides can compute.
    pub async fn execute(
        &self,
        session: &Session,
        request_plaintext: &[u8],
    ) -> Result<Execution, ClientError> {
        self.execute_observed(session, request_plaintext, None)
            .await
    }

    /// [`Client::execute`], reporting the upload of a large body to `observer`.
    pub(crate) async fn execute_observed(
        &self,
        session: &Session,
        request_plaintext: &[u8],
        observer: Option<&Observer>,
    ) -> Result<Execution, ClientError> {
        let (body, keys) = self.seal(session, request_plaintext)?;
        let response = body.post(self, observer).send().await?;
        let response = parse_execute_answer(response).await?;
        open_execution(response, &keys, request_plaintext)
    }

    /// The `/execute` body sealing `request_plaintext` to `session`, in this
    /// client's wire version, and the keys that open its answer.
    pub(crate) fn seal(
        &self,
        session: &Session,
        request_plaintext: &[u8],
    ) -> Result<(SealedBody, ResponseKeys), ClientError> {
        let sealed = envelope::seal_request(
            self.provider,
            &session.public_key,
            &session.id,
            request_plaintext,
        )
        .map_err(ClientError::Seal)?;
        let body = match self.wire {
            Wire::V1 => SealedBody::Json(ExecuteBody {
                session_id: session.id.hyphenated().to_string(),
                enc: Base64(sealed.enc),
                ciphertext: Base64(sealed.ciphertext),
            }),
            Wire::V1_1 => SealedBody::Binary(
                binary::ExecuteBody {
                    session_id: session.id,
                    enc: sealed.enc,
                    ciphertext: &sealed.ciphertext,
                }
                .to_vec(),
            ),
        };
        Ok((body, sealed.keys))
    }
}

/// A sealed `/execute` body in one of the two body types.
pub(crate) enum SealedBody {
    Json(ExecuteBody),
    Binary(Vec<u8>),
}

impl SealedBody {
    /// `POST /execute` with this body and its `Content-Type`; with an observer, a
    /// large body goes in chunks, each reported ([`upload`]).
    pub(crate) fn post(
        self,
        client: &Client,
        observer: Option<&Observer>,
    ) -> reqwest::RequestBuilder {
        let request = client.post("/execute");
        match (self, observer) {
            (SealedBody::Json(body), None) => request.json(&body),
            (SealedBody::Json(body), Some(observer)) => match serde_json::to_vec(&body) {
                Ok(bytes) => upload::body(
                    request.header(reqwest::header::CONTENT_TYPE, "application/json"),
                    bytes,
                    observer,
                ),
                // As `json` does: the error is the request's when it is sent.
                Err(_) => request.json(&body),
            },
            (SealedBody::Binary(bytes), observer) => {
                let request =
                    request.header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
                match observer {
                    Some(observer) => upload::body(request, bytes, observer),
                    None => request.body(bytes),
                }
            }
        }
    }
}

/// An `/execute` `200` (or a finished `GET /executions/{id}`) in either body
/// type, as the JSON document: a binary answer (protocol v1.1 §B) is told by its
/// `Content-Type`. Errors are JSON whatever the request's type.
pub(crate) async fn parse_execute_answer(
    response: reqwest::Response,
) -> Result<ExecuteResponse, ClientError> {
    let binary = response.status().is_success()
        && response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/octet-stream"));
    if !binary {
        return parse(response).await;
    }
    let bytes = response.bytes().await?;
    let answer = binary::ExecuteAnswer::parse(&bytes).map_err(Violation::Binary)?;
    Ok(ExecuteResponse {
        execution_id: answer.execution_id.hyphenated().to_string(),
        ciphertext: Base64(answer.ciphertext.to_vec()),
        commitment: Hex(answer.commitment),
        log_index: answer.log_index,
        leaf_signature: Base64(answer.leaf_signature.to_vec()),
    })
}
