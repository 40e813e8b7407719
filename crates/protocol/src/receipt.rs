//! Receipts, and the checks that prove an execution from one: what a client keeps
//! after `run --receipt`, and how anyone later verifies it against the log's
//! `/verify` answer (protocol §4) or a saved copy of it.
//!
//! The checks are pure: they take the receipt, the server's answer and the server's
//! key, and say which held. Fetching is the caller's business (the client crate,
//! the CLI). Each check has a fixed name (what the CLI prints, and what other
//! clients name their failures after) and fails with a [`CheckFailure`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::encoding::{Base64, Hex};
use crate::envelope;
use crate::leaf::Leaf;
use crate::merkle::{self, MerkleError};
use crate::payload::Status;
use crate::signing::PublicKey;
use crate::wire::{CheckpointResponse, VerifyResponse};

/// The receipt format's version, the only one there is.
pub const RECEIPT_VERSION: u32 = 1;

/// What `run --receipt` writes: everything needed to prove the execution later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub version: u32,
    pub server: String,
    pub origin: String,
    /// SHA-256 of the server's SPKI: the key that signed the leaf.
    pub key_id: Hex,
    /// SPKI DER of that key, so the receipt verifies without asking anyone.
    pub public_key: Base64,
    pub execution_id: String,
    pub log_index: u64,
    pub status: Status,
    pub commitment: Hex,
    /// With the two hashes it opens the commitment. Keep it private: with it,
    /// anyone can test guesses of the plaintexts against the public commitment.
    pub salt: Hex,
    /// SHA-256 of the exact request plaintext that was sealed.
    pub request_sha256: Hex,
    /// SHA-256 of the exact result plaintext that was opened.
    pub result_sha256: Hex,
    /// SHA-256 of the module.
    pub module_sha256: Option<Hex>,
    /// DER ECDSA over the 57-byte leaf.
    pub leaf_signature: Base64,
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    /// The receipt names another signing key than the one checked against.
    #[error("the receipt was signed by key {receipt}, the server's key is {server}")]
    OtherKey { receipt: Hex, server: Hex },
    /// The receipt's leaf signature is not the server's over the logged leaf.
    #[error("the receipt's leaf signature does not verify over the logged leaf")]
    LeafSignature,
    /// The log answered with bytes that are not a v1 leaf.
    #[error("the logged leaf is not a 57-byte v1 leaf")]
    NotALeaf,
    /// The receipt's execution id does not parse.
    #[error("the receipt's execution id is not a UUID")]
    ExecutionId,
    /// The logged leaf names another execution.
    #[error("the logged leaf is for another execution")]
    OtherExecution,
    /// The logged leaf commits to something else.
    #[error("the logged leaf carries another commitment")]
    OtherCommitment,
    /// The log holds the execution at another index than the receipt says.
    #[error("the execution is at index {logged}, the receipt says {receipt}")]
    OtherIndex { logged: u64, receipt: u64 },
    /// Salt and plaintext hashes do not give the commitment.
    #[error("salt and plaintext hashes do not open the commitment")]
    CommitmentNotOpened,
    /// A checkpoint's signature is not the server's over its body.
    #[error("the checkpoint signature does not verify under the server's key")]
    CheckpointSignature,
    /// A signed checkpoint body does not parse.
    #[error(transparent)]
    CheckpointBody(#[from] CheckpointError),
    /// A checkpoint's JSON fields say something else than its signed body.
    #[error("the checkpoint's fields differ from its signed body")]
    CheckpointFields,
    /// A proof cannot be checked because its checkpoint did not verify.
    #[error("no valid checkpoint")]
    NoCheckpoint,
    /// An RFC 9162 proof does not verify.
    #[error(transparent)]
    Proof(#[from] MerkleError),
    /// Two checkpoints are of different logs.
    #[error("`{saved}` is not `{current}`")]
    OtherLog { saved: String, current: String },
    /// The newer checkpoint has fewer entries than the older one.
    #[error("the log shrank from {saved} to {current} entries")]
    Shrank { saved: u64, current: u64 },
    /// A consistency proof from the empty tree has hashes.
    #[error("a proof from the empty tree must be empty")]
    ProofFromEmptyTree,
}

/// One named check and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Result<(), CheckFailure>,
}

impl Check {
    fn new(name: &'static str, outcome: Result<(), CheckFailure>) -> Check {
        Check { name, outcome }
    }
}

/// Whether every check held.
pub fn all_hold(checks: &[Check]) -> bool {
    checks.iter().all(|check| check.outcome.is_ok())
}

/// Checks a signed checkpoint: its signature over `body`, and that the JSON fields
/// say what the body says. Returns the parsed checkpoint.
pub fn check_checkpoint(
    response: &CheckpointResponse,
    key: &PublicKey,
) -> Result<Checkpoint, CheckFailure> {
    key.verify(response.body.as_bytes(), &response.signature.0)
        .map_err(|_| CheckFailure::CheckpointSignature)?;
    let checkpoint = Checkpoint::parse(&response.body)?;
    if checkpoint.origin != response.origin
        || checkpoint.tree_size != response.tree_size
        || checkpoint.root_hash != response.root_hash.0
    {
        return Err(CheckFailure::CheckpointFields);
    }
    Ok(checkpoint)
}

/// The hashes of a proof.
fn hashes(proof: &[Base64<merkle::Hash>]) -> Vec<merkle::Hash> {
    proof.iter().map(|hash| hash.0).collect()
}

/// Every check of a receipt against a `/verify` answer, in order. All must hold for
/// the receipt to prove its execution.
pub fn check_receipt(receipt: &Receipt, answer: &VerifyResponse, key: &PublicKey) -> Vec<Check> {
    let mut checks = Vec::new();
    let server_key = Hex(key.key_id());
    checks.push(Check::new(
        "receipt key",
        if server_key == receipt.key_id {
            Ok(())
        } else {
            Err(CheckFailure::OtherKey {
                receipt: receipt.key_id,
                server: server_key,
            })
        },
    ));

    let leaf_bytes = &answer.leaf.0;
    let leaf = Leaf::parse(leaf_bytes);
    checks.push(Check::new(
        "leaf signature",
        key.verify(leaf_bytes, &receipt.leaf_signature.0)
            .map_err(|_| CheckFailure::LeafSignature),
    ));
    checks.push(Check::new(
        "leaf contents",
        (|| {
            let leaf = leaf.ok_or(CheckFailure::NotALeaf)?;
            let id =
                Uuid::try_parse(&receipt.execution_id).map_err(|_| CheckFailure::ExecutionId)?;
            if leaf.execution_id != id {
                return Err(CheckFailure::OtherExecution);
            }
            if leaf.commitment != receipt.commitment.0 {
                return Err(CheckFailure::OtherCommitment);
            }
            if answer.log_index != receipt.log_index {
                return Err(CheckFailure::OtherIndex {
                    logged: answer.log_index,
                    receipt: receipt.log_index,
                });
            }
            Ok(())
        })(),
    ));
    // On the provider the verifier read the server's key with.
    let opened = envelope::commitment(
        key.provider(),
        &receipt.salt.0,
        &receipt.request_sha256.0,
        &receipt.result_sha256.0,
    );
    checks.push(Check::new(
        "commitment opening",
        if envelope::digest_eq(&opened, &receipt.commitment.0) {
            Ok(())
        } else {
            Err(CheckFailure::CommitmentNotOpened)
        },
    ));
    let checkpoint = check_checkpoint(&answer.checkpoint, key);
    checks.push(Check::new(
        "checkpoint signature",
        checkpoint.as_ref().map(|_| ()).map_err(Clone::clone),
    ));
    checks.push(Check::new(
        "inclusion proof",
        (|| {
            let checkpoint = checkpoint
                .as_ref()
                .map_err(|_| CheckFailure::NoCheckpoint)?;
            merkle::verify_inclusion(
                &merkle::leaf_hash(leaf_bytes),
                answer.log_index,
                checkpoint.tree_size,
                &hashes(&answer.inclusion_proof),
                &checkpoint.root_hash,
            )?;
            Ok(())
        })(),
    ));
    checks
}

/// Checks that `new` extends `old` (both signed by `key`) with the RFC 9162 §2.1.4
/// consistency `proof` between them.
pub fn check_consistency(
    old: &CheckpointResponse,
    new: &CheckpointResponse,
    proof: &[Base64<merkle::Hash>],
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
            Err(CheckFailure::OtherLog {
                saved: old.origin.clone(),
                current: new.origin.clone(),
            })
        },
    ));
    checks.push(Check::new(
        "consistency proof",
        (|| {
            if new.tree_size < old.tree_size {
                return Err(CheckFailure::Shrank {
                    saved: old.tree_size,
                    current: new.tree_size,
                });
            }
            if old.tree_size == 0 {
                return if proof.is_empty() {
                    Ok(())
                } else {
                    Err(CheckFailure::ProofFromEmptyTree)
                };
            }
            merkle::verify_consistency(
                old.tree_size,
                new.tree_size,
                &old.root_hash,
                &new.root_hash,
                &hashes(proof),
            )?;
            Ok(())
        })(),
    ));
    checks
}
