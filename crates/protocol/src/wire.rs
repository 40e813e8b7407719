//! The HTTP bodies of protocol v1 (§1, §3, §4), as typed documents: what the server
//! writes and every client reads.
//!
//! Bytes are [`Base64`] and [`Hex`] fields, so a body that parses holds bytes of
//! the right length. The server's `api` converts between these and its domain
//! types; nothing here knows HTTP itself. With the `openapi` feature each type is
//! also a `utoipa` schema, from which the server's OpenAPI document is made.

use serde::{Deserialize, Serialize};

use crate::checkpoint::SignedCheckpoint;
use crate::encoding::{Base64, Hex};

/// The protocol's error shape.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What an error body says.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable snake_case code; each response below names the codes it can carry.
    #[cfg_attr(feature = "openapi", schema(example = "session_not_found"))]
    pub code: String,
    /// For a person to read; may change between versions.
    pub message: String,
}

/// `POST /sessions` answer (protocol §1).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionResponse {
    /// UUID v4, 36 characters.
    pub session_id: String,
    /// Base64 of the session's 65-byte SEC1 uncompressed P-256 point.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub public_key: Base64<[u8; 65]>,
    pub suite: Suite,
    /// RFC 3339 UTC, whole seconds.
    pub expires_at: String,
    /// Base64 DER ECDSA P-256 SHA-256 by the server's key over
    /// `"wasm-hypervisor v1 session " || session_id || public_key`.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub signature: Base64,
}

/// The HPKE suite a session uses; v1 has one.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suite {
    pub kem: String,
    pub kdf: String,
    pub aead: String,
}

impl Suite {
    /// DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
    pub fn v1() -> Suite {
        Suite {
            kem: "DHKEM(P-256, HKDF-SHA256)".to_owned(),
            kdf: "HKDF-SHA256".to_owned(),
            aead: "AES-256-GCM".to_owned(),
        }
    }
}

/// `POST /execute` body (protocol §3).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// From `POST /sessions`.
    pub session_id: String,
    /// Base64 of the HPKE encapsulated key, a 65-byte uncompressed P-256 point.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub enc: Base64<[u8; 65]>,
    /// Base64 of the HPKE-sealed request plaintext.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub ciphertext: Base64,
}

/// `POST /execute` answer (protocol §3).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecuteResponse {
    /// UUID v4, 36 characters.
    pub execution_id: String,
    /// Base64 of the AES-256-GCM-sealed result plaintext.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub ciphertext: Base64,
    /// Hex SHA-256 commitment to request and result.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub commitment: Hex,
    /// The execution's position in the audit log.
    pub log_index: u64,
    /// Base64 DER ECDSA P-256 SHA-256 over the 57-byte leaf.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub leaf_signature: Base64,
}

/// `202 Accepted` answer to `POST /execute` with `Prefer: respond-async`
/// (protocol v1.1 §F): the execution's plaintext opened and it will run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionAccepted {
    /// UUID v4, 36 characters.
    pub execution_id: String,
    /// `/executions/{execution_id}`, where the answer is fetched (also the
    /// `Location` header).
    pub location: String,
}

/// `202` answer to `GET /executions/{execution_id}` while the execution has not
/// finished (protocol v1.1 §F).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionState {
    /// UUID v4, 36 characters.
    pub execution_id: String,
    pub state: PendingState,
}

/// Where an accepted execution that has not finished is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PendingState {
    /// Waiting for a guest slot (or a compilation).
    Queued,
    /// Its guest runs, or its result is being sealed and logged.
    Running,
}

/// `GET /keys` answer (protocol §4).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeysResponse {
    /// The log's name in signed checkpoints.
    pub origin: String,
    /// Base64 of the signing key's SPKI DER.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub public_key: Base64,
    /// Hex SHA-256 of the SPKI DER.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key_id: Hex,
}

/// `GET /health` answer, the same shape with 200 and with 503.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// `ok` (200) or `unavailable` (503).
    pub status: String,
    pub version: String,
    pub uptime_secs: u64,
    pub slots_in_use: usize,
    /// The most guests that ran at once since start.
    pub slots_peak: usize,
    pub queue_depth: usize,
    pub sessions_pending: usize,
    pub log_size: u64,
    /// Why the instance is unavailable, from a fixed set of words; empty with 200.
    pub reasons: Vec<String>,
}

/// A signed checkpoint on the wire (protocol §4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointResponse {
    pub origin: String,
    pub tree_size: u64,
    /// Base64 of the 32-byte root hash.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub root_hash: Base64<[u8; 32]>,
    /// The C2SP tlog-checkpoint body that `signature` signs.
    pub body: String,
    /// Base64 DER ECDSA P-256 SHA-256 over the bytes of `body`.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub signature: Base64,
}

impl From<&SignedCheckpoint> for CheckpointResponse {
    fn from(signed: &SignedCheckpoint) -> Self {
        CheckpointResponse {
            origin: signed.checkpoint.origin.clone(),
            tree_size: signed.checkpoint.tree_size,
            root_hash: Base64(signed.checkpoint.root_hash),
            body: signed.checkpoint.body(),
            signature: Base64(signed.signature.clone()),
        }
    }
}

/// `GET /verify/{execution_id}` answer (protocol §4).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyResponse {
    pub execution_id: String,
    pub log_index: u64,
    pub timestamp_ms: u64,
    /// Hex of the 32-byte commitment.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub commitment: Hex,
    /// Base64 of the 57-byte leaf.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub leaf: Base64,
    /// Base64 DER ECDSA over the leaf bytes.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub leaf_signature: Base64,
    /// Base64 hashes, RFC 9162 §2.1.3, against `checkpoint`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub inclusion_proof: Vec<Base64<[u8; 32]>>,
    pub checkpoint: CheckpointResponse,
}

/// `GET /log/consistency` answer (protocol §4).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyResponse {
    pub first: u64,
    pub second: u64,
    /// Base64 hashes, RFC 9162 §2.1.4.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub proof: Vec<Base64<[u8; 32]>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_answer_with_a_short_key_does_not_parse() {
        let good = serde_json::json!({
            "session_id": "00000000-0000-4000-8000-000000000000",
            "public_key": crate::encoding::encode_base64(&[4; 65]),
            "suite": Suite::v1(),
            "expires_at": "2026-11-29T00:00:00Z",
            "signature": "MAA=",
        });
        let parsed: SessionResponse = serde_json::from_value(good.clone()).unwrap();
        assert_eq!(parsed.public_key.0, [4; 65]);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), good);
        let mut short = good;
        short["public_key"] = crate::encoding::encode_base64(&[4; 64]).into();
        assert!(serde_json::from_value::<SessionResponse>(short).is_err());
    }

    #[test]
    fn an_execute_body_refuses_unknown_fields() {
        let body = serde_json::json!({
            "session_id": "s",
            "enc": crate::encoding::encode_base64(&[4; 65]),
            "ciphertext": "",
            "extra": 1,
        });
        let error = serde_json::from_value::<ExecuteBody>(body).unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}
