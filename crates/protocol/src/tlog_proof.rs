//! Proofs of logging as C2SP tlog-proofs (c2sp.org/tlog-proof@v1; protocol v1.2
//! §T4): an entry's index, its RFC 6962 inclusion proof and the checkpoint note it
//! leads to, as one text file anyone checks offline with the log's key or a
//! policy.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the 57-byte v1 leaf>
//! index <log index>
//! <base64 hash>                  (the inclusion proof, leaf side first; zero or more)
//!
//! <the checkpoint note, verbatim>
//! ```
//!
//! Parsing is strict: the exact header, an `extra` line that is present with
//! non-empty canonical base64 or absent, the index in decimal without leading
//! zeros, each proof line the canonical base64 of 32 bytes (at most
//! [`MAX_PROOF_HASHES`]), an empty line, then a signed note (`note`).
//!
//! Verification (tlog-proof "Verifying a tlog proof", in its order): (1) the leaf
//! hash, application-specific, is ours: `SHA-256(0x00 || extra)` where `extra`
//! must be a v1 leaf (`leaf`), so a verifier learns which execution the proof is
//! of; (2, 3) the checkpoint passes the policy: a log's signature, every known
//! signature valid, the quorum of cosignatures (`policy`); (4) the inclusion proof
//! binds the leaf hash at the index to the checkpoint's root (`merkle`). Pure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::VerifiedCheckpoint;
use crate::leaf::Leaf;
use crate::merkle::{self, Hash, MerkleError};
use crate::note::{self, Note, NoteError};
use crate::policy::{Policy, PolicyError};

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// The most hashes an inclusion proof has: a tree of at most 2^64 - 1 leaves is at
/// most 64 levels high.
pub const MAX_PROOF_HASHES: usize = 64;
/// The largest proof read, in bytes: a note of the largest size, and room for the
/// lines before it.
pub const MAX_TLOG_PROOF_BYTES: usize = note::MAX_NOTE_BYTES + 64 * 1024;

/// Why a tlog-proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    /// The proof is longer than [`MAX_TLOG_PROOF_BYTES`].
    #[error("a tlog-proof is at most {MAX_TLOG_PROOF_BYTES} bytes")]
    TooLarge,
    /// The proof is not UTF-8.
    #[error("a tlog-proof is UTF-8")]
    NotUtf8,
    /// The first line is not `c2sp.org/tlog-proof@v1`.
    #[error("a tlog-proof starts with the line {HEADER}")]
    Header,
    /// The `extra` line is not `extra ` and non-empty canonical base64.
    #[error("the extra line is `extra` and the canonical base64 of at least one byte")]
    Extra,
    /// The `index` line is missing or not a decimal number without leading zeros.
    #[error("the index line is `index` and a decimal number without leading zeros")]
    Index,
    /// A proof line is not the canonical base64 of 32 bytes, or no empty line ends
    /// the proof.
    #[error("each proof line is the base64 of a 32-byte hash, and an empty line ends them")]
    ProofLine,
    /// The inclusion proof has more than [`MAX_PROOF_HASHES`] hashes.
    #[error("an inclusion proof has at most {MAX_PROOF_HASHES} hashes")]
    TooManyHashes,
    /// The checkpoint after the empty line is not a signed note.
    #[error("the checkpoint is not a signed note: {0}")]
    Note(#[from] NoteError),
    /// There is no `extra` line, so no leaf to compute the leaf hash from.
    #[error("the proof has no extra line: its leaf is unknown")]
    MissingExtra,
    /// The `extra` data is not a v1 leaf (57 bytes starting with 0x01).
    #[error("the extra data is not a 57-byte v1 log leaf")]
    Leaf,
    /// The checkpoint does not pass the policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The index is not below the checkpoint's tree size.
    #[error("index {index} is not in the checkpoint's tree of {size} leaves")]
    IndexBeyondTree { index: u64, size: u64 },
    /// The inclusion proof does not lead from the leaf to the checkpoint's root.
    #[error("the inclusion proof does not verify: {0}")]
    Inclusion(MerkleError),
}

/// A tlog-proof: optional extra data, the entry's index, its inclusion proof and
/// the checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    extra: Option<Vec<u8>>,
    index: u64,
    inclusion_proof: Vec<Hash>,
    checkpoint: Note,
}

/// What a verified proof proves: the leaf, at its index, in the tree of the
/// checkpoint that passed the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTlogProof {
    pub leaf: Leaf,
    pub index: u64,
    pub checkpoint: VerifiedCheckpoint,
}

impl TlogProof {
    /// The proof of logging of `leaf` (its bytes as `extra`, protocol v1.2 §T4) at
    /// `index`, with its inclusion proof in the tree the checkpoint note signs.
    pub fn for_leaf(
        leaf: &Leaf,
        index: u64,
        inclusion_proof: Vec<Hash>,
        checkpoint: Note,
    ) -> Result<TlogProof, TlogProofError> {
        TlogProof::new(
            Some(leaf.to_bytes().to_vec()),
            index,
            inclusion_proof,
            checkpoint,
        )
    }

    /// A proof with any extra data (`None`: no extra line).
    pub fn new(
        extra: Option<Vec<u8>>,
        index: u64,
        inclusion_proof: Vec<Hash>,
        checkpoint: Note,
    ) -> Result<TlogProof, TlogProofError> {
        if extra.as_ref().is_some_and(Vec::is_empty) {
            return Err(TlogProofError::Extra);
        }
        if inclusion_proof.len() > MAX_PROOF_HASHES {
            return Err(TlogProofError::TooManyHashes);
        }
        Ok(TlogProof {
            extra,
            index,
            inclusion_proof,
            checkpoint,
        })
    }

    pub fn extra(&self) -> Option<&[u8]> {
        self.extra.as_deref()
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn inclusion_proof(&self) -> &[Hash] {
        &self.inclusion_proof
    }

    pub fn checkpoint(&self) -> &Note {
        &self.checkpoint
    }

    /// The proof's text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.inclusion_proof {
            out.push_str(&B64.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint.to_text());
        out
    }

    /// Reads a proof, strictly (the module doc says what that means). Nothing is
    /// verified: [`TlogProof::verify`] does that.
    pub fn parse(text: &[u8]) -> Result<TlogProof, TlogProofError> {
        if text.len() > MAX_TLOG_PROOF_BYTES {
            return Err(TlogProofError::TooLarge);
        }
        let text = std::str::from_utf8(text).map_err(|_| TlogProofError::NotUtf8)?;
        let rest = text
            .strip_prefix(HEADER)
            .and_then(|rest| rest.strip_prefix('\n'))
            .ok_or(TlogProofError::Header)?;
        let (extra, rest) = match rest.strip_prefix("extra ") {
            Some(rest) => {
                let (encoded, rest) = rest.split_once('\n').ok_or(TlogProofError::Extra)?;
                let extra = B64.decode(encoded).map_err(|_| TlogProofError::Extra)?;
                if extra.is_empty() {
                    return Err(TlogProofError::Extra);
                }
                (Some(extra), rest)
            }
            None => (None, rest),
        };
        let (index, mut rest) = rest
            .strip_prefix("index ")
            .and_then(|rest| rest.split_once('\n'))
            .ok_or(TlogProofError::Index)?;
        let canonical = !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && (index == "0" || !index.starts_with('0'));
        let index: u64 = index
            .parse()
            .ok()
            .filter(|_| canonical)
            .ok_or(TlogProofError::Index)?;
        let mut inclusion_proof = Vec::new();
        loop {
            let (line, after) = rest.split_once('\n').ok_or(TlogProofError::ProofLine)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if inclusion_proof.len() == MAX_PROOF_HASHES {
                return Err(TlogProofError::TooManyHashes);
            }
            let hash: Hash = B64
                .decode(line)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or(TlogProofError::ProofLine)?;
            inclusion_proof.push(hash);
        }
        let checkpoint = Note::parse(rest.as_bytes())?;
        Ok(TlogProof {
            extra,
            index,
            inclusion_proof,
            checkpoint,
        })
    }

    /// Verifies the proof under `policy` (tlog-proof "Verifying a tlog proof"): the
    /// leaf from `extra`, the checkpoint against the policy, the index within its
    /// tree, the inclusion proof to its root. Gives the leaf and the checkpoint; a
    /// caller compares the leaf with what it expects (a receipt's execution id and
    /// commitment).
    pub fn verify(&self, policy: &Policy) -> Result<VerifiedTlogProof, TlogProofError> {
        let extra = self.extra.as_ref().ok_or(TlogProofError::MissingExtra)?;
        let leaf = Leaf::parse(extra).ok_or(TlogProofError::Leaf)?;
        let checkpoint = policy.verify_checkpoint_note(self.checkpoint.clone())?;
        let size = checkpoint.checkpoint.tree_size;
        if self.index >= size {
            return Err(TlogProofError::IndexBeyondTree {
                index: self.index,
                size,
            });
        }
        merkle::verify_inclusion(
            &leaf.hash(),
            self.index,
            size,
            &self.inclusion_proof,
            &checkpoint.checkpoint.root_hash,
        )
        .map_err(TlogProofError::Inclusion)?;
        Ok(VerifiedTlogProof {
            leaf,
            index: self.index,
            checkpoint,
        })
    }
}
