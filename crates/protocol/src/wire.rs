//! The HTTP bodies of protocol v1 (§1, §3, §4), as typed documents: what the server
//! writes and every client reads.
//!
//! Bytes are [`Base64`] and [`Hex`] fields, so a body that parses holds bytes of
//! the right length. The server's `api` converts between these and its domain
//! types; nothing here knows HTTP itself. With the `openapi` feature each type is
//! also a `utoipa` schema, from which the server's OpenAPI document is made.

use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::checkpoint::SignedCheckpoint;
use crate::encoding::{Base64, Hex};
use crate::envelope::sessions_signature_message;
use crate::signing::PublicKey;

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

/// `POST /sessions` body asking for a batch (protocol v1.1 §A): `{"count": N}`,
/// nothing else. `count` is any JSON integer here; the server checks its range.
#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionsRequest {
    /// How many sessions: 1 to the server's `sessions.max_batch` (at least 64).
    pub count: i64,
}

/// Only a JSON object with the one key `count` (serde's derive would also take
/// the array `[N]`).
impl<'de> Deserialize<'de> for SessionsRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SessionsRequest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"an object {"count": N}"#)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SessionsRequest, A::Error> {
                let mut count = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key != "count" {
                        return Err(serde::de::Error::unknown_field(&key, &["count"]));
                    }
                    if count.is_some() {
                        return Err(serde::de::Error::duplicate_field("count"));
                    }
                    count = Some(map.next_value::<i64>()?);
                }
                let count = count.ok_or_else(|| serde::de::Error::missing_field("count"))?;
                Ok(SessionsRequest { count })
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// `POST /sessions` answer to a batch (protocol v1.1 §A): N ordinary sessions and
/// one signature over all of them.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionBatchResponse {
    pub sessions: Vec<BatchedSession>,
    pub suite: Suite,
    /// Base64 DER ECDSA P-256 SHA-256 by the server's key over
    /// `"wasm-hypervisor v1 sessions " || session_id_1 || public_key_1 || …`.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub signature: Base64,
}

/// One session of a batch.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchedSession {
    /// UUID v4, 36 characters.
    pub session_id: String,
    /// Base64 of the session's 65-byte SEC1 uncompressed P-256 point.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64")
    )]
    pub public_key: Base64<[u8; 65]>,
    /// RFC 3339 UTC, whole seconds.
    pub expires_at: String,
}

/// A session of a batch whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSession {
    pub session_id: Uuid,
    pub public_key: [u8; 65],
    /// As the server wrote it (RFC 3339 UTC, whole seconds).
    pub expires_at: String,
}

/// Why a batch answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Another suite than v1's.
    #[error("unexpected cipher suite")]
    Suite,
    /// A session id that is not a 36-character lowercase UUID.
    #[error("`session_id` is not a 36-character lowercase UUID")]
    SessionId,
    /// No sessions at all.
    #[error("the batch is empty")]
    Empty,
    /// The signature does not verify under the server's key over the batch.
    #[error("the batch is not signed by the server's key")]
    Signature,
}

impl SessionBatchResponse {
    /// Checks the batch's one signature under `server_key` over the exact message
    /// of protocol v1.1 §A (ids as text, keys as bytes, in the array's order) and
    /// the suite; returns its sessions.
    pub fn verify(&self, server_key: &PublicKey) -> Result<Vec<VerifiedSession>, BatchError> {
        if self.suite != Suite::v1() {
            return Err(BatchError::Suite);
        }
        if self.sessions.is_empty() {
            return Err(BatchError::Empty);
        }
        let sessions = self
            .sessions
            .iter()
            .map(|session| {
                let text = &session.session_id;
                if text.len() != 36 || text.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(BatchError::SessionId);
                }
                let session_id = Uuid::try_parse(text).map_err(|_| BatchError::SessionId)?;
                Ok(VerifiedSession {
                    session_id,
                    public_key: session.public_key.0,
                    expires_at: session.expires_at.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let message = sessions_signature_message(
            sessions
                .iter()
                .map(|session| (&session.session_id, &session.public_key)),
        );
        server_key
            .verify(&message, &self.signature.0)
            .map_err(|_| BatchError::Signature)?;
        Ok(sessions)
    }
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
    /// What it is doing now, finer than `state` (an addition to protocol v1.1
    /// §F, PROTOCOL.md "Long jobs"): absent from older servers, and read as
    /// absent when it names a phase this version does not know, so that a
    /// server may add phases without breaking a client.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_phase"
    )]
    pub phase: Option<ExecutionPhase>,
}

/// What an accepted execution that has not finished is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExecutionPhase {
    /// Waiting for a guest slot: before it first had one (`state` is
    /// `queued`), or again after its module was compiled.
    Queued,
    /// Its module is being compiled, or waits for a compiler.
    Compiling,
    /// It holds a guest slot: its guest runs, or its result is being sealed
    /// and logged.
    Running,
}

impl ExecutionPhase {
    /// The phase as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionPhase::Queued => "queued",
            ExecutionPhase::Compiling => "compiling",
            ExecutionPhase::Running => "running",
        }
    }
}

/// `phase` as a client reads it: a phase it does not know is no phase.
fn known_phase<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ExecutionPhase>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    Ok(text.and_then(|text| {
        [
            ExecutionPhase::Queued,
            ExecutionPhase::Compiling,
            ExecutionPhase::Running,
        ]
        .into_iter()
        .find(|phase| phase.as_str() == text)
    }))
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
    /// Protocol v1.2 §T1: the signed-note verifier key of the log's Ed25519 note
    /// key, `<origin>+<key id>+<base64(0x01 || public key)>`. Absent from servers
    /// older than v1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_verifier_key: Option<String>,
}

/// `GET /fuel-costs` answer (protocol v1.2 §U, §R): the fuel cost table in force
/// and the deterministic engine's description.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FuelCostsResponse {
    /// The table's version, `v1`.
    pub version: String,
    /// Hex SHA-256 of `table`'s UTF-8 bytes.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub sha256: Hex,
    /// The canonical description: every Wasmtime operator's cost as compact JSON
    /// (`{"Unreachable":0,"Nop":0,...,"variable":{...}}`), the exact bytes hashed.
    pub table: String,
    /// The table by class of operators, with why each costs what it costs.
    pub classes: Vec<FuelCostClass>,
    /// Hex SHA-256 of `deterministic_engine`: a deterministic result's
    /// `engine_sha256`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub deterministic_engine_sha256: Hex,
    /// The canonical description of the deterministic engine, one `key value`
    /// line each.
    pub deterministic_engine: String,
}

/// One class of operators of the fuel cost table.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FuelCostClass {
    pub operators: String,
    pub cost: u8,
    pub why: String,
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
    /// The witnesses and the published checkpoint (protocol v1.2 §T5); absent
    /// when no witness is configured. Informative: a lagging witness never makes
    /// the instance unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnessing: Option<WitnessingHealth>,
}

/// `GET /health`'s `witnessing`: what is published and how each witness keeps up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WitnessingHealth {
    /// Tree size of the published checkpoint (cosigned by a quorum); absent
    /// until one is.
    pub published_size: Option<u64>,
    /// Leaves in the tree not yet covered by the published checkpoint.
    pub unpublished_entries: u64,
    /// Why a checkpoint is refused publication, when the server found a reason
    /// of its own (its kept state does not match its log, say); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub witnesses: Vec<WitnessHealth>,
}

/// One witness in `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WitnessHealth {
    /// Its name in the policy file.
    pub name: String,
    /// The largest tree size it cosigned for this log, as far as the server knows.
    pub cosigned_size: Option<u64>,
    /// Tree size minus `cosigned_size`.
    pub lag_entries: u64,
    /// Seconds since its last valid cosignature; absent if it gave none.
    pub lag_secs: Option<u64>,
    /// Failed submissions since start, by kind (`unreachable`, `timeout`,
    /// `forbidden`, `unknown_log`, `inconsistent`, `conflict`, `bad_request`,
    /// `http_status`, `garbage`, `bad_cosignature`).
    pub failures: std::collections::BTreeMap<String, u64>,
    /// What its last failed submission got, while it has not cosigned since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
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

/// `GET /usage` answer (protocol v1.2 §U): the calling client's own usage, in
/// the current UTC hour, the current UTC day and in total.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageResponse {
    pub hour: UsageWindow,
    pub day: UsageWindow,
    /// Since the server started; in cluster mode, since the database began
    /// counting.
    pub total: UsageCounts,
}

/// One window of `GET /usage`: when it began and ends, what was used in it, and
/// the quota (`null` fields: none).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageWindow {
    /// RFC 3339 UTC, whole seconds: a whole hour, or midnight.
    pub start: String,
    /// RFC 3339 UTC, whole seconds: when the counts start again from zero.
    pub end: String,
    pub used: UsageCounts,
    pub quota: UsageQuota,
}

/// What a client used: logged executions, the sum of their `fuel_consumed`, and
/// the bytes of their sealed requests and results (`ciphertext`, tag included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageCounts {
    pub executions: u64,
    pub fuel: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A window's quota; `null` for no limit. A request is refused (429
/// `quota_exceeded`) once a count has reached its quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageQuota {
    pub executions: Option<u64>,
    pub fuel: Option<u64>,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_answer_reads_its_phase_and_ignores_one_it_does_not_know() {
        let id = "00000000-0000-4000-8000-000000000000";
        let read =
            |body: serde_json::Value| -> ExecutionState { serde_json::from_value(body).unwrap() };
        let compiling = read(serde_json::json!({
            "execution_id": id, "state": "running", "phase": "compiling",
        }));
        assert_eq!(compiling.phase, Some(ExecutionPhase::Compiling));
        assert_eq!(
            serde_json::to_value(&compiling).unwrap()["phase"],
            "compiling"
        );
        // An older server sends none, a newer one perhaps a phase unknown here:
        // both still parse, with their `state`.
        let older = read(serde_json::json!({"execution_id": id, "state": "queued"}));
        assert_eq!(older.phase, None);
        assert_eq!(
            serde_json::to_value(&older).unwrap(),
            serde_json::json!({"execution_id": id, "state": "queued"}),
            "no phase, no field"
        );
        let newer = read(serde_json::json!({
            "execution_id": id, "state": "running", "phase": "linking",
        }));
        assert_eq!((newer.state, newer.phase), (PendingState::Running, None));
    }

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

    fn batch(key: &crate::signing::SigningKey, count: u8) -> SessionBatchResponse {
        let sessions: Vec<(Uuid, [u8; 65])> = (0..count)
            .map(|n| (Uuid::from_bytes([n; 16]), [n; 65]))
            .collect();
        let message = sessions_signature_message(sessions.iter().map(|(id, pk)| (id, pk)));
        SessionBatchResponse {
            sessions: sessions
                .iter()
                .map(|(id, pk)| BatchedSession {
                    session_id: id.hyphenated().to_string(),
                    public_key: Base64(*pk),
                    expires_at: "2026-11-29T00:00:00Z".into(),
                })
                .collect(),
            suite: Suite::v1(),
            signature: Base64(key.sign(&message).unwrap()),
        }
    }

    fn a_batch_verifies_over_the_exact_message(provider: crate::provider::Provider) {
        let key = crate::signing::SigningKey::generate(provider).unwrap();
        let good = batch(&key, 3);
        let sessions = good.verify(key.public()).unwrap();
        assert_eq!(sessions.len(), 3);
        assert_eq!(sessions[2].public_key, [2; 65]);
        // The message: label, then each id as text and key as bytes, in order.
        let mut expected = b"wasm-hypervisor v1 sessions ".to_vec();
        for n in 0..3u8 {
            expected.extend_from_slice(
                Uuid::from_bytes([n; 16])
                    .hyphenated()
                    .to_string()
                    .as_bytes(),
            );
            expected.extend_from_slice(&[n; 65]);
        }
        key.public().verify(&expected, &good.signature.0).unwrap();
        // Reordered, shortened or from another key: refused.
        let mut swapped = batch(&key, 3);
        swapped.sessions.swap(0, 1);
        assert_eq!(swapped.verify(key.public()), Err(BatchError::Signature));
        let mut shorter = batch(&key, 3);
        shorter.sessions.pop();
        assert_eq!(shorter.verify(key.public()), Err(BatchError::Signature));
        let other = crate::signing::SigningKey::generate(provider).unwrap();
        assert_eq!(good.verify(other.public()), Err(BatchError::Signature));
        let mut upper = batch(&key, 1);
        upper.sessions[0].session_id = "1B4E28BA-2FA1-41D2-883F-0016D3CCA427".into();
        assert_eq!(upper.verify(key.public()), Err(BatchError::SessionId));
    }

    crate::tests_for_every_provider!(a_batch_verifies_over_the_exact_message);

    #[test]
    fn a_sessions_request_is_count_and_nothing_else() {
        let parsed: SessionsRequest = serde_json::from_str(r#"{"count": 5}"#).unwrap();
        assert_eq!(parsed.count, 5);
        for bad in [
            r#"{"count":"x"}"#,
            "[1]",
            r#"{"count":1,"x":2}"#,
            "{}",
            r#"{"count":1.5}"#,
            r#"{"count":1,"count":2}"#,
        ] {
            assert!(
                serde_json::from_str::<SessionsRequest>(bad).is_err(),
                "{bad}"
            );
        }
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
