//! What can go wrong talking to a server: [`ClientError`], and the
//! [`Violation`]s of the protocol a client refuses.

use wasm_hypervisor_protocol::binary::BinaryError;
use wasm_hypervisor_protocol::cbor::CborError;
use wasm_hypervisor_protocol::envelope::EnvelopeError;
use wasm_hypervisor_protocol::wire::Suite;

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
    Protocol(#[from] Violation),
    /// The request could not be sealed to the session's key.
    #[error("cannot seal the request: {0}")]
    Seal(EnvelopeError),
}

/// How a server's answer breaks the protocol.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    /// A body is not the document the protocol says.
    #[error("unexpected answer: {0}")]
    Body(serde_json::Error),
    /// `/keys` gave a public key that is not a P-256 SPKI.
    #[error("`public_key` is not a P-256 SPKI")]
    PublicKey,
    /// `/keys` gave a key id that is not the key's SHA-256.
    #[error("`key_id` is not the SHA-256 of the public key")]
    KeyId,
    /// `/keys` gave a `note_verifier_key` that is not an Ed25519 vkey named after
    /// the origin (protocol v1.2 §T1).
    #[error("`note_verifier_key` is not an Ed25519 verifier key named after the origin")]
    NoteVerifierKey,
    /// A text answer (a tlog-proof, a checkpoint note) that is not UTF-8.
    #[error("the answer is not UTF-8 text")]
    NotText,
    /// The tlog-proof the server gave for an execution does not prove it under
    /// the server's note key: the named receipt check failed.
    #[error("the tlog-proof fails the check `{check}`: {failure}")]
    TlogProof {
        check: &'static str,
        failure: wasm_hypervisor_protocol::receipt::CheckFailure,
    },
    /// A session of another suite than v1's.
    #[error("unexpected cipher suite {0:?}")]
    Suite(Suite),
    /// A session id that is not a UUID.
    #[error("`session_id` is not a UUID")]
    SessionId,
    /// An execution id that is not a UUID.
    #[error("`execution_id` is not a UUID")]
    ExecutionId,
    /// The sealed result does not open with the request's keys.
    #[error("the result does not decrypt with this request's keys")]
    ResultDoesNotOpen,
    /// The opened result is not a result plaintext.
    #[error("the result is not valid: {0}")]
    Result(serde_json::Error),
    /// The opened result of a CBOR request is not a CBOR result plaintext.
    #[error("the result is not valid CBOR: {0}")]
    CborResult(CborError),
    /// A binary answer whose framing does not hold (protocol v1.1 §B).
    #[error("the binary answer is not valid: {0}")]
    Binary(BinaryError),
    /// A batch of sessions that is not what was asked, or not signed by the
    /// server's key over the batch (protocol v1.1 §A).
    #[error("the session batch is refused: {0}")]
    Batch(wasm_hypervisor_protocol::wire::BatchError),
    /// The opened result names another execution than the answer.
    #[error("the sealed result names another execution")]
    OtherExecution,
    /// The commitment is not the one request and result give.
    #[error("the commitment does not match the request and result")]
    Commitment,
    /// A `202` to `Prefer: respond-async` without `Preference-Applied:
    /// respond-async`, or whose `location` is not the execution's.
    #[error("the server's 202 is not an accepted async execution")]
    Accepted,
    /// A session's `expires_at` that is not RFC 3339.
    #[error("`expires_at` is not an RFC 3339 time")]
    ExpiresAt,
    /// An answer of a status the endpoint does not give.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
}
