//! The client side of the protocol over HTTP: fetch and pin the server's key, open a
//! session and check its signature, seal a request, open the result and check the
//! commitment. Used by `wasm-hypervisor run` and by the integration tests.

use uuid::Uuid;

use crate::api::{
    CheckpointResponse, ConsistencyResponse, ErrorBody, ExecuteBody, ExecuteResponse, KeysResponse,
    SessionResponse, Suite, VerifyResponse,
};
use crate::envelope::{self, EnvelopeError, POINT_LEN, Provider, ResponseKeys};
use crate::keys::PublicKey;
use crate::payload::{ExecutionResult, decode_base64, encode_base64};

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or the connection failed.
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error in the protocol's error shape.
    #[error("the server answered {status} {code}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
        /// Seconds from the `Retry-After` header, when the server sent one.
        retry_after: Option<u64>,
    },
    /// The server's key does not match the pinned key id.
    #[error("the server's key id is {actual}, not the pinned {expected}")]
    KeyMismatch { expected: String, actual: String },
    /// A session key's signature does not verify under the server's key.
    #[error("the session key is not signed by the server's key; refusing to encrypt to it")]
    BadSessionSignature,
    /// The server answered something that does not follow the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// The server's identity, from `GET /keys`.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub origin: String,
    pub public_key: PublicKey,
    pub key_id: String,
}

/// An open session whose key the server vouched for.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub public_key: [u8; POINT_LEN],
}

/// A finished execution, opened and checked.
pub struct Execution {
    pub response: ExecuteResponse,
    pub execution_id: Uuid,
    pub result: ExecutionResult,
    pub result_plaintext: Vec<u8>,
    pub request_sha256: [u8; 32],
    pub result_sha256: [u8; 32],
    pub salt: [u8; 32],
    pub commitment: [u8; 32],
}

/// An HTTP client for one server, with the crypto provider it seals and verifies
/// with (independent of the server's: the bytes on the wire are the same).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    provider: Provider,
}

impl Client {
    /// `base` is the server's URL, e.g. `http://127.0.0.1:8080`. The client uses the
    /// fastest provider compiled in until [`Client::with_provider`] says otherwise.
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client::with_http(reqwest::Client::new(), base, token)
    }

    /// As [`Client::new`], over `http` (bound to a local address, say).
    pub fn with_http(http: reqwest::Client, base: &str, token: Option<String>) -> Client {
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            provider: Provider::default(),
        }
    }

    /// The same client, sealing and verifying on `provider`.
    pub fn with_provider(self, provider: Provider) -> Client {
        Client { provider, ..self }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.post(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET /keys`; with `pinned_key_id`, the server's key must be that one.
    pub async fn identity(
        &self,
        pinned_key_id: Option<&str>,
    ) -> Result<ServerIdentity, ClientError> {
        let response = self.http.get(format!("{}/keys", self.base)).send().await?;
        let keys: KeysResponse = parse(response).await?;
        let der = decode_base64(&keys.public_key)
            .map_err(|_| ClientError::Protocol("`public_key` is not base64".into()))?;
        let public_key = PublicKey::from_spki_der(self.provider, &der)
            .map_err(|_| ClientError::Protocol("`public_key` is not a P-256 SPKI".into()))?;
        let key_id = public_key.key_id_hex();
        if key_id != keys.key_id {
            return Err(ClientError::Protocol(
                "`key_id` is not the SHA-256 of the public key".into(),
            ));
        }
        if let Some(expected) = pinned_key_id
            && !expected.eq_ignore_ascii_case(&key_id)
        {
            return Err(ClientError::KeyMismatch {
                expected: expected.to_owned(),
                actual: key_id,
            });
        }
        Ok(ServerIdentity {
            origin: keys.origin,
            public_key,
            key_id,
        })
    }

    /// `POST /sessions`, checking the session key's signature under `server_key`.
    pub async fn open_session(&self, server_key: &PublicKey) -> Result<Session, ClientError> {
        let response = self.post("/sessions").send().await?;
        let session: SessionResponse = parse(response).await?;
        if session.suite != Suite::v1() {
            return Err(ClientError::Protocol(format!(
                "unexpected cipher suite {:?}",
                session.suite
            )));
        }
        let id = Uuid::try_parse(&session.session_id)
            .map_err(|_| ClientError::Protocol("`session_id` is not a UUID".into()))?;
        let public_key: [u8; POINT_LEN] = decode_base64(&session.public_key)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| ClientError::Protocol("`public_key` is not 65 bytes".into()))?;
        let signature = decode_base64(&session.signature)
            .map_err(|_| ClientError::Protocol("`signature` is not base64".into()))?;
        let message = envelope::session_signature_message(&id, &public_key);
        server_key
            .verify(&message, &signature)
            .map_err(|_| ClientError::BadSessionSignature)?;
        Ok(Session { id, public_key })
    }

    /// Seals `request_plaintext` to the session, posts it, opens the result and
    /// checks that the server's commitment is the one both sides can compute.
    pub async fn execute(
        &self,
        session: &Session,
        request_plaintext: &[u8],
    ) -> Result<Execution, ClientError> {
        let sealed = envelope::seal_request(
            self.provider,
            &session.public_key,
            &session.id,
            request_plaintext,
        )
        .map_err(|error| ClientError::Protocol(error.to_string()))?;
        let body = ExecuteBody {
            session_id: session.id.hyphenated().to_string(),
            enc: encode_base64(&sealed.enc),
            ciphertext: encode_base64(&sealed.ciphertext),
        };
        let response = self.post("/execute").json(&body).send().await?;
        let response: ExecuteResponse = parse(response).await?;
        open_execution(response, &sealed.keys, request_plaintext)
    }
}

impl Client {
    /// `GET /log/checkpoint`.
    pub async fn checkpoint(&self) -> Result<CheckpointResponse, ClientError> {
        let response = self
            .http
            .get(format!("{}/log/checkpoint", self.base))
            .send()
            .await?;
        parse(response).await
    }

    /// `GET /verify/{execution_id}`.
    pub async fn inclusion(&self, execution_id: &str) -> Result<VerifyResponse, ClientError> {
        let response = self
            .http
            .get(format!("{}/verify/{execution_id}", self.base))
            .send()
            .await?;
        parse(response).await
    }

    /// `GET /log/consistency?first=..&second=..`.
    pub async fn consistency(
        &self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyResponse, ClientError> {
        let response = self
            .http
            .get(format!(
                "{}/log/consistency?first={first}&second={second}",
                self.base
            ))
            .send()
            .await?;
        parse(response).await
    }
}

/// Opens and checks an `/execute` answer with the keys of the request it answers.
pub fn open_execution(
    response: ExecuteResponse,
    keys: &ResponseKeys,
    request_plaintext: &[u8],
) -> Result<Execution, ClientError> {
    let execution_id = Uuid::try_parse(&response.execution_id)
        .map_err(|_| ClientError::Protocol("`execution_id` is not a UUID".into()))?;
    let ciphertext = decode_base64(&response.ciphertext)
        .map_err(|_| ClientError::Protocol("`ciphertext` is not base64".into()))?;
    let result_plaintext =
        keys.open_result(&execution_id, &ciphertext)
            .map_err(|_: EnvelopeError| {
                ClientError::Protocol("the result does not decrypt with this request's keys".into())
            })?;
    let result: ExecutionResult = serde_json::from_slice(&result_plaintext)
        .map_err(|error| ClientError::Protocol(format!("the result is not valid: {error}")))?;
    if result.execution_id != response.execution_id {
        return Err(ClientError::Protocol(
            "the sealed result names another execution".into(),
        ));
    }
    let commitment = keys.commitment(request_plaintext, &result_plaintext);
    if hex::encode(commitment) != response.commitment {
        return Err(ClientError::Protocol(
            "the commitment does not match the request and result".into(),
        ));
    }
    Ok(Execution {
        execution_id,
        request_sha256: envelope::sha256(request_plaintext),
        result_sha256: envelope::sha256(&result_plaintext),
        salt: keys.salt(),
        commitment,
        result,
        result_plaintext,
        response,
    })
}

async fn parse<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
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
    serde_json::from_slice(&bytes)
        .map_err(|error| ClientError::Protocol(format!("unexpected answer: {error}")))
}
