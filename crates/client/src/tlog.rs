//! The log in the C2SP transparency formats, from the client's side (protocol
//! v1.2 §T2, §T4): `GET /tlog/checkpoint` (the checkpoint as a signed note) and
//! `GET /tlog/proof/{id}` (an execution's `c2sp.org/tlog-proof@v1`), both as the
//! text the server served; and [`Client::prove_receipt`], which puts an
//! execution's tlog-proof in its receipt, checked, so that the receipt verifies
//! later with no network (`receipt::check_receipt_offline`).
//!
//! Getting the proof is best effort, checking it is not: the execution is done
//! and logged whatever happens here, and a receipt without a proof still
//! verifies online, so a proof the server has not published (after the retries)
//! or could not serve leaves the receipt without one, and says so; a proof that
//! does not prove the execution under the server's note key is a protocol
//! violation, and is never written.

use wasm_hypervisor_protocol::policy::Policy;
use wasm_hypervisor_protocol::receipt::{self, Receipt};

use crate::http::success_body;
use crate::{Client, ClientError, ServerIdentity, Violation, retry};

/// A receipt as [`Client::prove_receipt`] makes it, and whether it carries its
/// tlog-proof.
pub struct ProvedReceipt {
    /// The receipt to write; its `tlog_proof` is set only if
    /// [`ProvedReceipt::tlog_proof`] is [`TlogProofOutcome::Included`].
    pub receipt: Receipt,
    pub tlog_proof: TlogProofOutcome,
}

/// Whether a receipt got its tlog-proof.
#[derive(Debug)]
pub enum TlogProofOutcome {
    /// The receipt carries the proof, checked under the server's note key.
    Included,
    /// The server is older than v1.2 (`/keys` names no note key): it serves no
    /// proofs, and the receipt is as before.
    NotOffered,
    /// The proof could not be had: not yet published after the retries the
    /// client allows, or any other failure to get it. The receipt verifies
    /// online only; a caller should say so.
    Unavailable(ClientError),
}

impl Client {
    /// `GET /tlog/checkpoint`: the latest published checkpoint as a C2SP signed
    /// note (protocol v1.2 §T2), as served. Nothing is verified
    /// (`policy::Policy::verify_checkpoint` does that).
    pub async fn tlog_checkpoint(&self) -> Result<String, ClientError> {
        self.get_text(format!("{}/tlog/checkpoint", self.base))
            .await
    }

    /// `GET /tlog/proof/{execution_id}`: the execution's tlog-proof (protocol
    /// v1.2 §T4), as served. A `404 not_yet_published` with `Retry-After` is
    /// asked again, like a 429 or 503, as [`crate::Retries`] allow. Nothing is
    /// verified (`tlog_proof::TlogProof::verify` does that).
    pub async fn tlog_proof(&self, execution_id: &str) -> Result<String, ClientError> {
        self.get_text(format!("{}/tlog/proof/{execution_id}", self.base))
            .await
    }

    /// `receipt` with its tlog-proof (protocol v1.2 §T4), fetched from this
    /// client's server right after the execution and checked as an offline
    /// `verify` would, under `identity`'s note key as the policy `log <vkey>` /
    /// `quorum none`. A server without a note key leaves the receipt as it is
    /// ([`TlogProofOutcome::NotOffered`]); a proof that could not be had leaves it
    /// without one ([`TlogProofOutcome::Unavailable`]). A proof that fails a check
    /// is an error ([`Violation::TlogProof`]), and no receipt is given.
    pub async fn prove_receipt(
        &self,
        receipt: Receipt,
        identity: &ServerIdentity,
    ) -> Result<ProvedReceipt, ClientError> {
        let Some(note_key) = &identity.note_verifier_key else {
            return Ok(ProvedReceipt {
                receipt,
                tlog_proof: TlogProofOutcome::NotOffered,
            });
        };
        let text = match self.tlog_proof(&receipt.execution_id).await {
            Ok(text) => text,
            Err(error) => {
                return Ok(ProvedReceipt {
                    receipt,
                    tlog_proof: TlogProofOutcome::Unavailable(error),
                });
            }
        };
        // `identity` made sure the key is an Ed25519 vkey, which a policy takes
        // as a log's.
        let policy =
            Policy::single_log(note_key.clone()).map_err(|_| Violation::NoteVerifierKey)?;
        let receipt = Receipt {
            tlog_proof: Some(text),
            ..receipt
        };
        let checks = receipt::check_receipt_offline(&receipt, &policy, self.provider);
        if let Some((check, Err(failure))) = checks
            .into_iter()
            .map(|check| (check.name, check.outcome))
            .find(|(_, outcome)| outcome.is_err())
        {
            return Err(Violation::TlogProof { check, failure }.into());
        }
        Ok(ProvedReceipt {
            receipt,
            tlog_proof: TlogProofOutcome::Included,
        })
    }

    /// An idempotent `GET` of a UTF-8 text document.
    async fn get_text(&self, url: String) -> Result<String, ClientError> {
        retry::idempotent(
            self.retries,
            || async {
                let bytes = success_body(self.http.get(&url).send().await?).await?;
                String::from_utf8(bytes.to_vec()).map_err(|_| Violation::NotText.into())
            },
            |_| true,
        )
        .await
    }
}
