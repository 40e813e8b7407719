//! Receipts, and the checks that prove an execution from one: what a client keeps
//! after `run --receipt`, and how anyone later verifies it against the log's
//! `/verify` answer (protocol §4) or a saved copy of it.
//!
//! The checks are pure: they take the receipt, the server's answer and the server's
//! key, and say which held. Fetching is the caller's business (`client`, `cli`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::{CheckpointResponse, VerifyResponse};
use crate::audit::merkle::{self, Hash};
use crate::audit::{Checkpoint, Leaf};
use crate::envelope;
use crate::keys::PublicKey;
use crate::payload::{Status, decode_base64};

/// What `run --receipt` writes: everything needed to prove the execution later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub version: u32,
    pub server: String,
    pub origin: String,
    /// Hex SHA-256 of the server's SPKI: the key that signed the leaf.
    pub key_id: String,
    /// Base64 SPKI DER of that key, so the receipt verifies without asking anyone.
    pub public_key: String,
    pub execution_id: String,
    pub log_index: u64,
    pub status: Status,
    /// Hex.
    pub commitment: String,
    /// Hex; with the two hashes it opens the commitment. Keep it private: with it,
    /// anyone can test guesses of the plaintexts against the public commitment.
    pub salt: String,
    /// Hex SHA-256 of the exact request plaintext that was sealed.
    pub request_sha256: String,
    /// Hex SHA-256 of the exact result plaintext that was opened.
    pub result_sha256: String,
    /// Hex SHA-256 of the module.
    pub module_sha256: Option<String>,
    /// Base64 DER ECDSA over the 57-byte leaf.
    pub leaf_signature: String,
}

/// One named check and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Result<(), String>,
}

impl Check {
    fn new(name: &'static str, outcome: Result<(), String>) -> Check {
        Check { name, outcome }
    }
}

/// Whether every check held.
pub fn all_hold(checks: &[Check]) -> bool {
    checks.iter().all(|check| check.outcome.is_ok())
}

fn hex32(text: &str, what: &str) -> Result<Hash, String> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("{what} is not 32 bytes of hex"))
}

/// Proof hashes from their base64.
fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, String> {
    hashes
        .iter()
        .map(|hash| {
            decode_base64(hash)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| "a proof hash is not 32 bytes of base64".to_owned())
        })
        .collect()
}

/// Checks a signed checkpoint: its signature over `body`, and that the JSON fields
/// say what the body says. Returns the parsed checkpoint.
pub fn check_checkpoint(
    response: &CheckpointResponse,
    key: &PublicKey,
) -> Result<Checkpoint, String> {
    let signature =
        decode_base64(&response.signature).map_err(|_| "the signature is not base64")?;
    key.verify(response.body.as_bytes(), &signature)
        .map_err(|_| "the checkpoint signature does not verify under the server's key")?;
    let checkpoint = Checkpoint::parse(&response.body).map_err(|e| e.to_string())?;
    let root = decode_base64(&response.root_hash).map_err(|_| "root_hash is not base64")?;
    if checkpoint.origin != response.origin
        || checkpoint.tree_size != response.tree_size
        || checkpoint.root_hash[..] != root[..]
    {
        return Err("the checkpoint's fields differ from its signed body".to_owned());
    }
    Ok(checkpoint)
}

/// Every check of a receipt against a `/verify` answer, in order. All must hold for
/// the receipt to prove its execution.
pub fn check_receipt(receipt: &Receipt, answer: &VerifyResponse, key: &PublicKey) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(Check::new(
        "receipt key",
        if key.key_id_hex() == receipt.key_id {
            Ok(())
        } else {
            Err(format!(
                "the receipt was signed by key {}, the server's key is {}",
                receipt.key_id,
                key.key_id_hex()
            ))
        },
    ));

    let leaf_bytes = decode_base64(&answer.leaf).unwrap_or_default();
    let leaf = Leaf::parse(&leaf_bytes);
    checks.push(Check::new(
        "leaf signature",
        decode_base64(&receipt.leaf_signature)
            .map_err(|_| "the receipt's leaf signature is not base64".to_owned())
            .and_then(|signature| {
                key.verify(&leaf_bytes, &signature).map_err(|_| {
                    "the receipt's leaf signature does not verify over the logged leaf".to_owned()
                })
            }),
    ));
    checks.push(Check::new(
        "leaf contents",
        (|| {
            let leaf = leaf.ok_or("the logged leaf is not a 57-byte v1 leaf")?;
            let id = Uuid::try_parse(&receipt.execution_id)
                .map_err(|_| "the receipt's execution id is not a UUID")?;
            if leaf.execution_id != id {
                return Err("the logged leaf is for another execution".to_owned());
            }
            if hex::encode(leaf.commitment) != receipt.commitment {
                return Err("the logged leaf carries another commitment".to_owned());
            }
            if answer.log_index != receipt.log_index {
                return Err(format!(
                    "the execution is at index {}, the receipt says {}",
                    answer.log_index, receipt.log_index
                ));
            }
            Ok(())
        })(),
    ));
    checks.push(Check::new(
        "commitment opening",
        (|| {
            let salt = hex32(&receipt.salt, "the salt")?;
            let request = hex32(&receipt.request_sha256, "request_sha256")?;
            let result = hex32(&receipt.result_sha256, "result_sha256")?;
            let commitment = hex32(&receipt.commitment, "the commitment")?;
            // On the provider the verifier read the server's key with.
            let opened = envelope::commitment(key.provider(), &salt, &request, &result);
            if envelope::digest_eq(&opened, &commitment) {
                Ok(())
            } else {
                Err("salt and plaintext hashes do not open the commitment".to_owned())
            }
        })(),
    ));
    let checkpoint = check_checkpoint(&answer.checkpoint, key);
    checks.push(Check::new(
        "checkpoint signature",
        checkpoint.as_ref().map(|_| ()).map_err(Clone::clone),
    ));
    checks.push(Check::new(
        "inclusion proof",
        (|| {
            let checkpoint = checkpoint.as_ref().map_err(|_| "no valid checkpoint")?;
            let proof = decode_hashes(&answer.inclusion_proof)?;
            merkle::verify_inclusion(
                &merkle::leaf_hash(&leaf_bytes),
                answer.log_index,
                checkpoint.tree_size,
                &proof,
                &checkpoint.root_hash,
            )
            .map_err(|e| e.to_string())
        })(),
    ));
    checks
}

/// Checks that `new` extends `old` (both signed by `key`) with the RFC 9162 §2.1.4
/// consistency `proof` between them.
pub fn check_consistency(
    old: &CheckpointResponse,
    new: &CheckpointResponse,
    proof: &[String],
    key: &PublicKey,
) -> Vec<Check> {
    let old_checkpoint = check_checkpoint(old, key);
    let new_checkpoint = check_checkpoint(new, key);
    let mut checks = vec![
        Check::new(
            "saved checkpoint signature",
            old_checkpoint.as_ref().map(|_| ()).map_err(Clone::clone),
        ),
        Check::new(
            "current checkpoint signature",
            new_checkpoint.as_ref().map(|_| ()).map_err(Clone::clone),
        ),
    ];
    let (Ok(old), Ok(new)) = (old_checkpoint, new_checkpoint) else {
        return checks;
    };
    checks.push(Check::new(
        "same log",
        if old.origin == new.origin {
            Ok(())
        } else {
            Err(format!("`{}` is not `{}`", old.origin, new.origin))
        },
    ));
    checks.push(Check::new(
        "consistency proof",
        (|| {
            if new.tree_size < old.tree_size {
                return Err(format!(
                    "the log shrank from {} to {} entries",
                    old.tree_size, new.tree_size
                ));
            }
            let proof = decode_hashes(proof)?;
            if old.tree_size == 0 {
                return if proof.is_empty() {
                    Ok(())
                } else {
                    Err("a proof from the empty tree must be empty".to_owned())
                };
            }
            merkle::verify_consistency(
                old.tree_size,
                new.tree_size,
                &old.root_hash,
                &new.root_hash,
                &proof,
            )
            .map_err(|e| e.to_string())
        })(),
    ));
    checks
}
