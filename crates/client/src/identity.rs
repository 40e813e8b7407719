//! Whom a client talks to: the server's identity (`GET /keys`, its key id
//! checked and optionally pinned) and sessions (`POST /sessions`, one or a signed
//! batch), each session key's signature checked under the server's key.

use uuid::Uuid;
use wasm_hypervisor_protocol::encoding::Hex;
use wasm_hypervisor_protocol::envelope::{self, POINT_LEN};
use wasm_hypervisor_protocol::note::{TYPE_ED25519, VerifierKey};
use wasm_hypervisor_protocol::signing::PublicKey;
use wasm_hypervisor_protocol::wire::{
    BatchError, KeysResponse, SessionBatchResponse, SessionResponse, SessionsRequest, Suite,
    VerifiedSession,
};

use crate::http::parse;
use crate::{Client, ClientError, Violation, pool, retry};

/// The server's identity, from `GET /keys`.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub origin: String,
    pub public_key: PublicKey,
    pub key_id: Hex,
    /// The log's note key (protocol v1.2 §T1), which signs its checkpoint notes:
    /// `None` from a server older than v1.2, which has no tlog-proofs.
    pub note_verifier_key: Option<VerifierKey>,
}

/// An open session whose key the server vouched for.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub public_key: [u8; POINT_LEN],
}

impl Client {
    /// `GET /keys`; with `pinned_key_id`, the server's key must be that one.
    /// Like every idempotent call, made again after a 429 or 503 as [`Retries`](crate::Retries)
    /// allow.
    pub async fn identity(
        &self,
        pinned_key_id: Option<&str>,
    ) -> Result<ServerIdentity, ClientError> {
        let keys: KeysResponse = retry::idempotent(
            self.retries,
            || async { parse(self.http.get(format!("{}/keys", self.base)).send().await?).await },
            |_| true,
        )
        .await?;
        let public_key = PublicKey::from_spki_der(self.provider, &keys.public_key.0)
            .map_err(|_| Violation::PublicKey)?;
        let key_id = Hex(public_key.key_id());
        if key_id != keys.key_id {
            return Err(Violation::KeyId.into());
        }
        if let Some(expected) = pinned_key_id
            && !expected.eq_ignore_ascii_case(&key_id.to_string())
        {
            return Err(ClientError::KeyMismatch {
                expected: expected.to_owned(),
                actual: key_id.to_string(),
            });
        }
        let note_verifier_key = keys
            .note_verifier_key
            .map(|text| {
                VerifierKey::parse(self.provider, &text)
                    .ok()
                    .filter(|key| key.signature_type() == TYPE_ED25519 && key.name() == keys.origin)
                    .ok_or(Violation::NoteVerifierKey)
            })
            .transpose()?;
        Ok(ServerIdentity {
            origin: keys.origin,
            public_key,
            key_id,
            note_verifier_key,
        })
    }

    /// `POST /sessions`, checking the session key's signature under `server_key`.
    pub async fn open_session(&self, server_key: &PublicKey) -> Result<Session, ClientError> {
        self.open_session_until(server_key)
            .await
            .map(|(session, _)| session)
    }

    /// [`Client::open_session`], with the session's `expires_at` as the server
    /// wrote it.
    pub async fn open_session_until(
        &self,
        server_key: &PublicKey,
    ) -> Result<(Session, String), ClientError> {
        let session: SessionResponse = retry::idempotent(
            self.retries,
            || async { parse(self.post("/sessions").send().await?).await },
            |_| true,
        )
        .await?;
        if session.suite != Suite::v1() {
            return Err(Violation::Suite(session.suite).into());
        }
        let id = Uuid::try_parse(&session.session_id).map_err(|_| Violation::SessionId)?;
        let public_key: [u8; POINT_LEN] = session.public_key.0;
        let message = envelope::session_signature_message(&id, &public_key);
        server_key
            .verify(&message, &session.signature.0)
            .map_err(|_| ClientError::BadSessionSignature)?;
        Ok((Session { id, public_key }, session.expires_at))
    }

    /// `POST /sessions {"count": N}` (protocol v1.1 §A): N sessions, their one
    /// signature checked under `server_key` over the whole batch.
    pub async fn open_sessions(
        &self,
        server_key: &PublicKey,
        count: usize,
    ) -> Result<Vec<VerifiedSession>, ClientError> {
        let request = SessionsRequest {
            count: i64::try_from(count).unwrap_or(i64::MAX),
        };
        let batch: SessionBatchResponse = retry::idempotent(
            self.retries,
            || async { parse(self.post("/sessions").json(&request).send().await?).await },
            // Over a pending bound, a smaller batch now (the pool's choice)
            // beats the same batch later.
            |error| count == 1 || !pool::over_pending_bound(error),
        )
        .await?;
        let sessions = batch.verify(server_key).map_err(|error| match error {
            BatchError::Signature => ClientError::BadSessionSignature,
            other => Violation::Batch(other).into(),
        })?;
        if sessions.len() != count {
            return Err(Violation::Batch(BatchError::Empty).into());
        }
        Ok(sessions)
    }
}
