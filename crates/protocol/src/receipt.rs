//! Receipts, and the checks that prove an execution from one: what a client keeps
//! after `run --receipt`, and how anyone later verifies it: online, against the
//! log's `/verify` answer (protocol §4) or a saved copy of it
//! ([`check_receipt`]); or offline, against the `c2sp.org/tlog-proof@v1` the
//! receipt carries and a C2SP tlog-policy (protocol v1.2 §T4, §T6;
//! [`check_receipt_offline`]).
//!
//! The checks are pure: they take the receipt, the server's answer and the server's
//! key (or the policy), and say which held. Fetching is the caller's business (the
//! client crate, the CLI). Both paths make the same six checks under the same
//! names, in the same order (what the CLI prints, and what other clients name
//! their failures after); each fails with a [`CheckFailure`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checkpoint::{
    self, Checkpoint, CheckpointError, CheckpointNoteError, VerifiedCheckpoint,
};
use crate::encoding::{Base64, Hex};
use crate::envelope;
use crate::leaf::Leaf;
use crate::merkle::{self, MerkleError};
use crate::note::VerifierKey;
use crate::payload::Status;
use crate::policy::{Policy, PolicyError};
use crate::provider::Provider;
use crate::signing::PublicKey;
use crate::tlog_proof::{TlogProof, TlogProofError};
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
    /// Protocol v1.2 §T4: the execution's `c2sp.org/tlog-proof@v1`, exactly as the
    /// server served it, for [`check_receipt_offline`]. Absent from receipts
    /// written before v1.2, from servers that have no note key, and when the
    /// proof could not be fetched: such a receipt verifies online only. Left out
    /// of the JSON when absent, so those receipts keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog_proof: Option<String>,
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
    /// Offline verification needs the receipt's `tlog_proof`, and it has none.
    #[error("the receipt carries no tlog_proof; verify it online")]
    NoTlogProof,
    /// The receipt's `tlog_proof` is not a tlog-proof, or lacks its leaf.
    #[error("the receipt's tlog_proof: {0}")]
    TlogProof(TlogProofError),
    /// The receipt's `public_key` is not a P-256 SPKI.
    #[error("the receipt's public_key is not a P-256 public key")]
    PublicKey,
    /// The receipt's `key_id` is not the SHA-256 of its `public_key`.
    #[error("the receipt's key_id {key_id} is not the SHA-256 of its public_key ({computed})")]
    KeyIdNotOfKey { key_id: Hex, computed: Hex },
    /// The tlog-proof's checkpoint carries no valid signature of the receipt's
    /// key under the log's origin: that key is not the log's.
    #[error("the receipt's key did not sign the tlog_proof's checkpoint: {0}")]
    KeyNotTheLogs(CheckpointNoteError),
    /// The tlog-proof's checkpoint does not pass the policy.
    #[error("the checkpoint does not pass the policy: {0}")]
    Policy(PolicyError),
    /// The checkpoint is of another log than the receipt names.
    #[error("the checkpoint is of the log `{checkpoint}`, the receipt's is `{receipt}`")]
    OtherOrigin { receipt: String, checkpoint: String },
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
    checks.push(Check::new(
        "leaf signature",
        key.verify(leaf_bytes, &receipt.leaf_signature.0)
            .map_err(|_| CheckFailure::LeafSignature),
    ));
    checks.push(Check::new(
        "leaf contents",
        leaf_contents(receipt, leaf_bytes, answer.log_index),
    ));
    // On the provider the verifier read the server's key with.
    checks.push(Check::new(
        "commitment opening",
        commitment_opening(receipt, key.provider()),
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

/// The `leaf contents` check: the logged leaf is the receipt's execution and
/// commitment, at the receipt's index.
fn leaf_contents(
    receipt: &Receipt,
    leaf_bytes: &[u8],
    logged_index: u64,
) -> Result<(), CheckFailure> {
    let leaf = Leaf::parse(leaf_bytes).ok_or(CheckFailure::NotALeaf)?;
    let id = Uuid::try_parse(&receipt.execution_id).map_err(|_| CheckFailure::ExecutionId)?;
    if leaf.execution_id != id {
        return Err(CheckFailure::OtherExecution);
    }
    if leaf.commitment != receipt.commitment.0 {
        return Err(CheckFailure::OtherCommitment);
    }
    if logged_index != receipt.log_index {
        return Err(CheckFailure::OtherIndex {
            logged: logged_index,
            receipt: receipt.log_index,
        });
    }
    Ok(())
}

/// The `commitment opening` check: protocol §"Commitment" over the receipt's salt
/// and plaintext hashes gives its commitment.
fn commitment_opening(receipt: &Receipt, provider: Provider) -> Result<(), CheckFailure> {
    let opened = envelope::commitment(
        provider,
        &receipt.salt.0,
        &receipt.request_sha256.0,
        &receipt.result_sha256.0,
    );
    if envelope::digest_eq(&opened, &receipt.commitment.0) {
        Ok(())
    } else {
        Err(CheckFailure::CommitmentNotOpened)
    }
}

/// Every check of a receipt offline, against the `tlog_proof` it carries and a
/// policy (protocol v1.2 §T4, §T6): the six checks of [`check_receipt`], under the
/// same names and in the same order, with nothing fetched. `provider` verifies
/// under the receipt's key (the policy's keys carry their own).
///
/// 1. `receipt key`: `key_id` is the SHA-256 of `public_key`, and the proof's
///    checkpoint note carries a valid type `0x02` line of that key named after the
///    checkpoint's origin: the P-256 key that signed the leaf is the log's.
/// 2. `leaf signature`: the leaf (the proof's `extra`) verifies under that key.
/// 3. `leaf contents`: the leaf is the receipt's execution and commitment, and the
///    proof's index is `log_index`.
/// 4. `commitment opening`: as online.
/// 5. `checkpoint signature`: the note passes the policy (a log key of the policy
///    named after the origin signed it, every known signature verifies, the
///    cosignatures make the quorum), and its origin is the receipt's.
/// 6. `inclusion proof`: the proof leads from the leaf's hash at its index to the
///    root of the checkpoint that passed the policy.
///
/// A receipt without `tlog_proof` fails every check but the commitment opening
/// with [`CheckFailure::NoTlogProof`].
pub fn check_receipt_offline(receipt: &Receipt, policy: &Policy, provider: Provider) -> Vec<Check> {
    let proof = match receipt.tlog_proof.as_deref() {
        None => Err(CheckFailure::NoTlogProof),
        Some(text) => TlogProof::parse(text.as_bytes()).map_err(CheckFailure::TlogProof),
    };
    let leaf_bytes = proof.clone().and_then(|proof| {
        proof
            .extra()
            .map(<[u8]>::to_vec)
            .ok_or(CheckFailure::TlogProof(TlogProofError::MissingExtra))
    });
    let key = PublicKey::from_spki_der(provider, &receipt.public_key.0)
        .map_err(|_| CheckFailure::PublicKey);
    let checkpoint = proof.as_ref().map_err(Clone::clone).and_then(|proof| {
        policy
            .verify_checkpoint_note(proof.checkpoint().clone())
            .map_err(CheckFailure::Policy)
    });
    let leaf_index = proof.as_ref().map(TlogProof::index).map_err(Clone::clone);
    vec![
        Check::new("receipt key", receipt_key(receipt, &key, &proof)),
        Check::new("leaf signature", leaf_signature(receipt, &key, &leaf_bytes)),
        Check::new(
            "leaf contents",
            leaf_index.and_then(|index| {
                leaf_contents(receipt, leaf_bytes.as_ref().map_err(Clone::clone)?, index)
            }),
        ),
        Check::new("commitment opening", commitment_opening(receipt, provider)),
        Check::new(
            "checkpoint signature",
            checkpoint_of_origin(receipt, &checkpoint),
        ),
        Check::new(
            "inclusion proof",
            included_offline(&proof, &leaf_bytes, &checkpoint),
        ),
    ]
}

/// [`check_receipt_offline`]'s `receipt key`: `key_id` is the key's digest, and
/// the key signed the proof's checkpoint note as the log.
fn receipt_key(
    receipt: &Receipt,
    key: &Result<PublicKey, CheckFailure>,
    proof: &Result<TlogProof, CheckFailure>,
) -> Result<(), CheckFailure> {
    let key = key.as_ref().map_err(Clone::clone)?;
    let computed = Hex(key.key_id());
    if computed != receipt.key_id {
        return Err(CheckFailure::KeyIdNotOfKey {
            key_id: receipt.key_id,
            computed,
        });
    }
    signed_by_key(proof.as_ref().map_err(Clone::clone)?, key)
}

/// [`check_receipt_offline`]'s `leaf signature`: the leaf verifies under the
/// receipt's key.
fn leaf_signature(
    receipt: &Receipt,
    key: &Result<PublicKey, CheckFailure>,
    leaf_bytes: &Result<Vec<u8>, CheckFailure>,
) -> Result<(), CheckFailure> {
    let key = key.as_ref().map_err(Clone::clone)?;
    let leaf_bytes = leaf_bytes.as_ref().map_err(Clone::clone)?;
    key.verify(leaf_bytes, &receipt.leaf_signature.0)
        .map_err(|_| CheckFailure::LeafSignature)
}

/// [`check_receipt_offline`]'s `checkpoint signature`: the checkpoint passed the
/// policy and is of the receipt's origin.
fn checkpoint_of_origin(
    receipt: &Receipt,
    checkpoint: &Result<VerifiedCheckpoint, CheckFailure>,
) -> Result<(), CheckFailure> {
    let verified = checkpoint.as_ref().map_err(Clone::clone)?;
    if verified.checkpoint.origin == receipt.origin {
        Ok(())
    } else {
        Err(CheckFailure::OtherOrigin {
            receipt: receipt.origin.clone(),
            checkpoint: verified.checkpoint.origin.clone(),
        })
    }
}

/// [`check_receipt_offline`]'s `inclusion proof`: the proof leads from the leaf
/// to the root of the checkpoint that passed the policy.
fn included_offline(
    proof: &Result<TlogProof, CheckFailure>,
    leaf_bytes: &Result<Vec<u8>, CheckFailure>,
    checkpoint: &Result<VerifiedCheckpoint, CheckFailure>,
) -> Result<(), CheckFailure> {
    let proof = proof.as_ref().map_err(Clone::clone)?;
    let leaf_bytes = leaf_bytes.as_ref().map_err(Clone::clone)?;
    let VerifiedCheckpoint { checkpoint, .. } = checkpoint
        .as_ref()
        .map_err(|_| CheckFailure::NoCheckpoint)?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(leaf_bytes),
        proof.index(),
        checkpoint.tree_size,
        proof.inclusion_proof(),
        &checkpoint.root_hash,
    )?;
    Ok(())
}

/// Whether the P-256 key `key` signed the proof's checkpoint note as the log
/// (protocol v1.2 §T2's type `0x02` line, named after the origin).
fn signed_by_key(proof: &TlogProof, key: &PublicKey) -> Result<(), CheckFailure> {
    let note = proof.checkpoint();
    // The text is read before any signature on it is checked only to learn the
    // name the line must carry; `verify_note` then trusts it only if that key,
    // under that name, signed it, and insists the name is the origin.
    let origin = Checkpoint::parse(note.text())?.origin;
    let vkey = VerifierKey::ecdsa_p256(&origin, key)
        .map_err(|error| CheckFailure::KeyNotTheLogs(error.into()))?;
    checkpoint::verify_note(note.clone(), &[vkey], &[]).map_err(CheckFailure::KeyNotTheLogs)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    use super::*;
    use crate::merkle::MerkleTree;
    use crate::note::NoteSigningKey;
    use crate::signing::SigningKey;

    const ORIGIN: &str = "log.example/v1";
    const CHECK_NAMES: [&str; 6] = [
        "receipt key",
        "leaf signature",
        "leaf contents",
        "commitment opening",
        "checkpoint signature",
        "inclusion proof",
    ];

    /// A log of five executions, and the receipt of its fourth with its proof.
    struct World {
        provider: Provider,
        signing_key: SigningKey,
        note_key: NoteSigningKey,
        receipt: Receipt,
    }

    fn leaf(i: u64, commitment: [u8; 32]) -> Leaf {
        Leaf {
            execution_id: Uuid::from_u64_pair(i, !i),
            timestamp_ms: 1_795_000_000_000 + i,
            commitment,
        }
    }

    fn world(provider: Provider) -> World {
        let signing_key = SigningKey::generate(provider).unwrap();
        let note_key = NoteSigningKey::generate(provider, ORIGIN).unwrap();
        let (salt, request, result) = ([1; 32], [2; 32], [3; 32]);
        let commitment = envelope::commitment(provider, &salt, &request, &result);
        let index = 3;
        let leaves: Vec<Leaf> = (0..5)
            .map(|i| leaf(i, if i == index { commitment } else { [9; 32] }))
            .collect();
        let tree = MerkleTree::from_leaf_hashes(leaves.iter().map(Leaf::hash));
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            tree_size: 5,
            root_hash: tree.root(5).unwrap(),
        };
        let note = checkpoint.to_note(&note_key, &signing_key).unwrap();
        let ours = &leaves[index as usize];
        let proof = TlogProof::for_leaf(ours, index, tree.inclusion_proof(index, 5).unwrap(), note)
            .unwrap();
        let public = signing_key.public();
        let receipt = Receipt {
            version: RECEIPT_VERSION,
            server: "http://log.example".to_owned(),
            origin: ORIGIN.to_owned(),
            key_id: Hex(public.key_id()),
            public_key: Base64(public.spki_der()),
            execution_id: ours.execution_id.to_string(),
            log_index: index,
            status: Status::Completed,
            commitment: Hex(commitment),
            salt: Hex(salt),
            request_sha256: Hex(request),
            result_sha256: Hex(result),
            module_sha256: None,
            leaf_signature: Base64(signing_key.sign(&ours.to_bytes()).unwrap()),
            tlog_proof: Some(proof.to_text()),
        };
        World {
            provider,
            signing_key,
            note_key,
            receipt,
        }
    }

    impl World {
        fn policy(&self) -> Policy {
            Policy::single_log(self.note_key.verifier_key()).unwrap()
        }

        fn check(&self, receipt: &Receipt) -> Vec<Check> {
            check_receipt_offline(receipt, &self.policy(), self.provider)
        }

        /// The receipt's proof, parsed.
        fn proof(&self) -> TlogProof {
            TlogProof::parse(self.receipt.tlog_proof.as_ref().unwrap().as_bytes()).unwrap()
        }

        /// The receipt carrying `proof` instead.
        fn with_proof(&self, proof: &TlogProof) -> Receipt {
            Receipt {
                tlog_proof: Some(proof.to_text()),
                ..self.receipt.clone()
            }
        }
    }

    /// The names of the checks that failed, and the failure of the first one.
    fn failures(checks: &[Check]) -> (Vec<&'static str>, CheckFailure) {
        let names: Vec<&'static str> = checks.iter().map(|check| check.name).collect();
        assert_eq!(
            names, CHECK_NAMES,
            "six checks, named and ordered as online"
        );
        let failed: Vec<&Check> = checks.iter().filter(|c| c.outcome.is_err()).collect();
        let first = failed.first().expect("a check failed").outcome.clone();
        (
            failed.iter().map(|check| check.name).collect(),
            first.unwrap_err(),
        )
    }

    /// `signature` (base64 of key id || bytes) with one bit of its bytes flipped.
    fn flip_signature(note: &str, line: usize) -> String {
        let lines: Vec<&str> = note.split('\n').collect();
        let signature_lines: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with('\u{2014}'))
            .collect();
        let at = signature_lines[line];
        let (head, encoded) = lines[at].rsplit_once(' ').unwrap();
        let mut bytes = B64.decode(encoded).unwrap();
        bytes[10] ^= 1;
        let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        out[at] = format!("{head} {}", B64.encode(bytes));
        out.join("\n")
    }

    fn a_receipt_with_a_real_proof_verifies_offline(provider: Provider) {
        let world = world(provider);
        let checks = world.check(&world.receipt);
        assert!(all_hold(&checks), "{checks:?}");
        assert_eq!(
            checks.iter().map(|c| c.name).collect::<Vec<_>>(),
            CHECK_NAMES
        );
        // The policy file's way of saying the same.
        let policy = Policy::parse(
            provider,
            format!("log {}\nquorum none\n", world.note_key.verifier_key()).as_bytes(),
        )
        .unwrap();
        assert!(all_hold(&check_receipt_offline(
            &world.receipt,
            &policy,
            provider
        )));
        // A policy naming the log by its P-256 key alone accepts it too.
        let p256 = VerifierKey::ecdsa_p256(ORIGIN, world.signing_key.public()).unwrap();
        let policy = Policy::single_log(p256).unwrap();
        assert!(all_hold(&check_receipt_offline(
            &world.receipt,
            &policy,
            provider
        )));
    }

    fn a_tampered_leaf_fails_its_signature(provider: Provider) {
        let world = world(provider);
        let proof = world.proof();
        let mut other = Leaf::parse(proof.extra().unwrap()).unwrap();
        other.timestamp_ms += 1;
        let tampered = TlogProof::for_leaf(
            &other,
            proof.index(),
            proof.inclusion_proof().to_vec(),
            proof.checkpoint().clone(),
        )
        .unwrap();
        let (failed, first) = failures(&world.check(&world.with_proof(&tampered)));
        assert_eq!(failed, ["leaf signature", "inclusion proof"]);
        assert_eq!(first, CheckFailure::LeafSignature);
    }

    fn a_tampered_index_fails_the_leaf_contents(provider: Provider) {
        let world = world(provider);
        // The receipt's index.
        let receipt = Receipt {
            log_index: 2,
            ..world.receipt.clone()
        };
        let (failed, first) = failures(&world.check(&receipt));
        assert_eq!(failed, ["leaf contents"]);
        assert_eq!(
            first,
            CheckFailure::OtherIndex {
                logged: 3,
                receipt: 2
            }
        );
        // The proof's index.
        let proof = world.proof();
        let tampered = TlogProof::new(
            proof.extra().map(<[u8]>::to_vec),
            2,
            proof.inclusion_proof().to_vec(),
            proof.checkpoint().clone(),
        )
        .unwrap();
        let (failed, _) = failures(&world.check(&world.with_proof(&tampered)));
        assert_eq!(failed, ["leaf contents", "inclusion proof"]);
    }

    fn a_tampered_proof_hash_fails_the_inclusion_proof(provider: Provider) {
        let world = world(provider);
        let proof = world.proof();
        let mut hashes = proof.inclusion_proof().to_vec();
        hashes[1][0] ^= 1;
        let tampered = TlogProof::new(
            proof.extra().map(<[u8]>::to_vec),
            proof.index(),
            hashes,
            proof.checkpoint().clone(),
        )
        .unwrap();
        let (failed, first) = failures(&world.check(&world.with_proof(&tampered)));
        assert_eq!(failed, ["inclusion proof"]);
        assert_eq!(first, CheckFailure::Proof(MerkleError::RootMismatch));
    }

    fn a_tampered_note_signature_fails_its_check(provider: Provider) {
        let world = world(provider);
        let text = world.receipt.tlog_proof.clone().unwrap();
        // The note key's Ed25519 line: the policy's log did not sign.
        let receipt = Receipt {
            tlog_proof: Some(flip_signature(&text, 0)),
            ..world.receipt.clone()
        };
        let (failed, first) = failures(&world.check(&receipt));
        assert_eq!(failed, ["checkpoint signature", "inclusion proof"]);
        assert!(matches!(first, CheckFailure::Policy(_)), "{first:?}");
        // The P-256 line: the receipt's key is not shown to be the log's.
        let receipt = Receipt {
            tlog_proof: Some(flip_signature(&text, 1)),
            ..world.receipt.clone()
        };
        let (failed, first) = failures(&world.check(&receipt));
        assert_eq!(failed, ["receipt key"]);
        assert!(matches!(first, CheckFailure::KeyNotTheLogs(_)), "{first:?}");
    }

    fn another_logs_key_fails_the_checkpoint_signature(provider: Provider) {
        let world = world(provider);
        let other = NoteSigningKey::generate(provider, ORIGIN).unwrap();
        let policy = Policy::single_log(other.verifier_key()).unwrap();
        let (failed, first) = failures(&check_receipt_offline(&world.receipt, &policy, provider));
        assert_eq!(failed, ["checkpoint signature", "inclusion proof"]);
        assert!(matches!(first, CheckFailure::Policy(_)), "{first:?}");
    }

    fn another_origin_fails_the_checkpoint_signature(provider: Provider) {
        let world = world(provider);
        let receipt = Receipt {
            origin: "other.example/v1".to_owned(),
            ..world.receipt.clone()
        };
        let (failed, first) = failures(&world.check(&receipt));
        assert_eq!(failed, ["checkpoint signature"]);
        assert_eq!(
            first,
            CheckFailure::OtherOrigin {
                receipt: "other.example/v1".to_owned(),
                checkpoint: ORIGIN.to_owned()
            }
        );
    }

    fn a_p256_key_that_did_not_sign_the_note_fails_the_receipt_key(provider: Provider) {
        let world = world(provider);
        // A forger's own key, with its own key id, signing the very leaf.
        let forger = SigningKey::generate(provider).unwrap();
        let leaf = world.proof().extra().unwrap().to_vec();
        let receipt = Receipt {
            key_id: Hex(forger.public().key_id()),
            public_key: Base64(forger.public().spki_der()),
            leaf_signature: Base64(forger.sign(&leaf).unwrap()),
            ..world.receipt.clone()
        };
        let (failed, first) = failures(&world.check(&receipt));
        assert_eq!(failed, ["receipt key"]);
        assert!(matches!(first, CheckFailure::KeyNotTheLogs(_)), "{first:?}");
        // A key id that is not the key's.
        let receipt = Receipt {
            key_id: Hex([7; 32]),
            ..world.receipt.clone()
        };
        let (failed, first) = failures(&world.check(&receipt));
        assert_eq!(failed, ["receipt key"]);
        assert!(
            matches!(first, CheckFailure::KeyIdNotOfKey { .. }),
            "{first:?}"
        );
    }

    fn a_receipt_without_a_tlog_proof_says_to_verify_online(provider: Provider) {
        let world = world(provider);
        let receipt = Receipt {
            tlog_proof: None,
            ..world.receipt.clone()
        };
        let checks = world.check(&receipt);
        let (failed, first) = failures(&checks);
        assert_eq!(
            failed,
            [
                "receipt key",
                "leaf signature",
                "leaf contents",
                "checkpoint signature",
                "inclusion proof"
            ]
        );
        assert_eq!(first, CheckFailure::NoTlogProof);
        let inclusion = checks.last().unwrap().outcome.clone().unwrap_err();
        assert_eq!(
            inclusion.to_string(),
            "the receipt carries no tlog_proof; verify it online"
        );
        // One that is not a tlog-proof fails the same checks, saying why.
        let receipt = Receipt {
            tlog_proof: Some("not a proof".to_owned()),
            ..world.receipt.clone()
        };
        let (_, first) = failures(&world.check(&receipt));
        assert_eq!(first, CheckFailure::TlogProof(TlogProofError::Header));
    }

    fn the_tlog_proof_is_the_last_field_and_absent_when_none(provider: Provider) {
        let world = world(provider);
        let json = serde_json::to_string(&world.receipt).unwrap();
        let (_, after) = json.split_once("\"leaf_signature\":").unwrap();
        assert!(after.contains(",\"tlog_proof\":\"c2sp.org/tlog-proof@v1\\n"));
        assert!(json.ends_with("\"}"));
        let read: Receipt = serde_json::from_str(&json).unwrap();
        assert_eq!(read.tlog_proof, world.receipt.tlog_proof);
        // A receipt of before v1.2 reads, and writes back without the field.
        let old = Receipt {
            tlog_proof: None,
            ..world.receipt.clone()
        };
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("tlog_proof"), "{json}");
        let read: Receipt = serde_json::from_str(&json).unwrap();
        assert_eq!(read.tlog_proof, None);
    }

    crate::tests_for_every_provider!(
        a_receipt_with_a_real_proof_verifies_offline,
        a_tampered_leaf_fails_its_signature,
        a_tampered_index_fails_the_leaf_contents,
        a_tampered_proof_hash_fails_the_inclusion_proof,
        a_tampered_note_signature_fails_its_check,
        another_logs_key_fails_the_checkpoint_signature,
        another_origin_fails_the_checkpoint_signature,
        a_p256_key_that_did_not_sign_the_note_fails_the_receipt_key,
        a_receipt_without_a_tlog_proof_says_to_verify_online,
        the_tlog_proof_is_the_last_field_and_absent_when_none,
    );
}
