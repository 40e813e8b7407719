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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, CheckpointNoteError};
    use crate::merkle::MerkleTree;
    use crate::note::{CosignerKey, NoteSigningKey, VerifierKey};
    use crate::provider::Provider;
    use crate::signing::SigningKey;
    use uuid::Uuid;

    /// tlog-proof.md's example, verbatim: its signatures are elided (`[...]`).
    const SPEC_EXAMPLE: &str = "c2sp.org/tlog-proof@v1\nextra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\nindex 73894\ngSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\nB95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\nEKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\nRoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\nAHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\nexample.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\u{2014} example.com/fancylog hI2DJw[...]1roloI=\n\u{2014} witness1.example mJirIklj[...]qY9v2B/5bg==\n\u{2014} witness2.example TnKKVHLX[...]xwYwrSjgow==\n\u{2014} witness3.example S4X82uH5[...]3oEcROGLFQ==\n";

    fn leaf(i: u64) -> Leaf {
        Leaf {
            execution_id: Uuid::from_u64_pair(i, !i),
            timestamp_ms: 1_795_000_000_000 + i,
            commitment: [i as u8; 32],
        }
    }

    struct Log {
        tree: MerkleTree,
        note_key: NoteSigningKey,
        signing_key: SigningKey,
        witness: CosignerKey,
    }

    fn log(provider: Provider, size: u64) -> Log {
        Log {
            tree: MerkleTree::from_leaf_hashes((0..size).map(|i| leaf(i).hash())),
            note_key: NoteSigningKey::generate(provider, "log.example/v1").unwrap(),
            signing_key: SigningKey::generate(provider).unwrap(),
            witness: CosignerKey::generate(provider, "witness.example").unwrap(),
        }
    }

    impl Log {
        fn note(&self, size: u64, cosigned: bool) -> Note {
            let checkpoint = Checkpoint {
                origin: "log.example/v1".to_owned(),
                tree_size: size,
                root_hash: self.tree.root(size).unwrap(),
            };
            let mut note = checkpoint
                .to_note(&self.note_key, &self.signing_key)
                .unwrap();
            if cosigned {
                note.add_signature(self.witness.cosign(&note, 1_800_000_000).unwrap())
                    .unwrap();
            }
            note
        }

        fn proof(&self, index: u64, size: u64) -> TlogProof {
            TlogProof::for_leaf(
                &leaf(index),
                index,
                self.tree.inclusion_proof(index, size).unwrap(),
                self.note(size, false),
            )
            .unwrap()
        }

        fn policy(&self) -> Policy {
            Policy::single_log(self.note_key.verifier_key()).unwrap()
        }
    }

    #[test]
    fn the_spec_example_reads_up_to_its_elided_signatures() {
        assert_eq!(
            TlogProof::parse(SPEC_EXAMPLE.as_bytes()),
            Err(TlogProofError::Note(NoteError::SignatureEncoding))
        );
        // With one whole signature line in place of the elided ones, it reads, and
        // writes back byte for byte.
        let (proof_part, note_part) = SPEC_EXAMPLE.split_once("\n\n").unwrap();
        let body = note_part.split_once("\n\n").unwrap().0;
        let line = format!("\u{2014} example.com/fancylog {}\n", B64.encode([7u8; 68]));
        let whole = format!("{proof_part}\n\n{body}\n\n{line}");
        let proof = TlogProof::parse(whole.as_bytes()).unwrap();
        assert_eq!(proof.index(), 73_894);
        assert!(
            proof
                .extra()
                .unwrap()
                .starts_with(b"age-v1.2.1-darwin-arm64.tar.gz")
        );
        assert_eq!(proof.inclusion_proof().len(), 5);
        assert_eq!(
            B64.encode(proof.inclusion_proof()[4]),
            "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk="
        );
        assert_eq!(proof.checkpoint().text(), format!("{body}\n"));
        assert_eq!(proof.to_text(), whole);
        // Its extra data is not one of our leaves.
        let key = NoteSigningKey::generate(Provider::default(), "example.com/fancylog").unwrap();
        assert_eq!(
            proof.verify(&Policy::single_log(key.verifier_key()).unwrap()),
            Err(TlogProofError::Leaf)
        );
    }

    fn a_proof_of_every_leaf_verifies_and_says_which_leaf(provider: Provider) {
        let log = log(provider, 300);
        let policy = log.policy();
        for (index, size) in [
            (0, 1),
            (0, 300),
            (5, 300),
            (255, 256),
            (256, 257),
            (299, 300),
        ] {
            let proof = log.proof(index, size);
            let text = proof.to_text();
            assert!(text.starts_with(&format!(
                "c2sp.org/tlog-proof@v1\nextra {}\nindex {index}\n",
                B64.encode(leaf(index).to_bytes())
            )));
            let parsed = TlogProof::parse(text.as_bytes()).unwrap();
            assert_eq!(parsed, proof);
            let verified = parsed.verify(&policy).unwrap();
            assert_eq!(verified.leaf, leaf(index));
            assert_eq!(verified.index, index);
            assert_eq!(verified.checkpoint.checkpoint.tree_size, size);
        }
        // The P-256 key alone verifies it too, as a policy's log.
        let p256 = VerifierKey::ecdsa_p256("log.example/v1", log.signing_key.public()).unwrap();
        log.proof(7, 300)
            .verify(&Policy::single_log(p256).unwrap())
            .unwrap();
    }

    fn a_witnessed_proof_verifies_under_a_policy_and_fails_without_its_quorum(provider: Provider) {
        let log = log(provider, 20);
        let policy = Policy::parse(
            provider,
            format!(
                "log {}\nwitness W {}\nquorum W\n",
                log.note_key.verifier_key(),
                log.witness.verifier_key()
            )
            .as_bytes(),
        )
        .unwrap();
        let inclusion = log.tree.inclusion_proof(3, 20).unwrap();
        let witnessed =
            TlogProof::for_leaf(&leaf(3), 3, inclusion.clone(), log.note(20, true)).unwrap();
        let verified = TlogProof::parse(witnessed.to_text().as_bytes())
            .unwrap()
            .verify(&policy)
            .unwrap();
        assert_eq!(verified.checkpoint.cosignatures, vec![(0, 1_800_000_000)]);
        let unwitnessed = TlogProof::for_leaf(&leaf(3), 3, inclusion, log.note(20, false)).unwrap();
        assert_eq!(
            unwitnessed.verify(&policy),
            Err(TlogProofError::Policy(PolicyError::QuorumNotMet))
        );
    }

    fn tampered_proofs_are_refused(provider: Provider) {
        let log = log(provider, 300);
        let policy = log.policy();
        let good = log.proof(5, 300).to_text();
        let verify = |text: &str| TlogProof::parse(text.as_bytes()).and_then(|p| p.verify(&policy));
        assert!(verify(&good).is_ok());
        let lines: Vec<&str> = good.split('\n').collect();
        let replace_line = |at: usize, with: &str| {
            let mut changed = lines.clone();
            changed[at] = with;
            changed.join("\n")
        };
        let remove_line = |at: usize| {
            let mut changed = lines.clone();
            changed.remove(at);
            changed.join("\n")
        };
        let mismatch = Err(TlogProofError::Inclusion(MerkleError::RootMismatch));
        // Another leaf in the extra line: a flipped commitment byte.
        let mut other_leaf = leaf(5).to_bytes();
        other_leaf[56] ^= 1;
        let other_extra = format!("extra {}", B64.encode(other_leaf));
        assert_eq!(verify(&replace_line(1, &other_extra)), mismatch);
        // Another index, in the tree and past it.
        assert_eq!(verify(&replace_line(2, "index 4")), mismatch);
        assert_eq!(
            verify(&replace_line(2, "index 300")),
            Err(TlogProofError::IndexBeyondTree {
                index: 300,
                size: 300
            })
        );
        // A flipped proof hash, a missing one, an extra one.
        let mut hash = B64.decode(lines[3]).unwrap();
        hash[0] ^= 0x80;
        assert_eq!(verify(&replace_line(3, &B64.encode(&hash))), mismatch);
        assert!(matches!(
            verify(&remove_line(3)),
            Err(TlogProofError::Inclusion(MerkleError::ProofLength { .. }))
        ));
        let mut longer = lines.clone();
        longer.insert(3, lines[3]);
        assert!(matches!(
            verify(&longer.join("\n")),
            Err(TlogProofError::Inclusion(MerkleError::ProofLength { .. }))
        ));
        // The checkpoint of another size, correctly signed.
        let other_checkpoint = format!(
            "{}\n\n{}",
            good.split_once("\n\n").unwrap().0,
            log.note(299, false).to_text()
        );
        assert!(verify(&other_checkpoint).is_err());
        // A tampered checkpoint, and one signed by another log key.
        let tampered = good.replacen("\n300\n", "\n301\n", 1);
        assert!(matches!(
            verify(&tampered),
            Err(TlogProofError::Policy(PolicyError::Checkpoint(
                CheckpointNoteError::Note(NoteError::BadSignature { .. })
            )))
        ));
        let stranger = self::log(provider, 300);
        assert_eq!(
            TlogProof::parse(stranger.proof(5, 300).to_text().as_bytes())
                .unwrap()
                .verify(&policy),
            Err(TlogProofError::Policy(PolicyError::Checkpoint(
                CheckpointNoteError::Note(NoteError::NoKnownSignature)
            )))
        );
        // No extra line; extra data that is not a leaf.
        assert_eq!(verify(&remove_line(1)), Err(TlogProofError::MissingExtra));
        assert_eq!(
            verify(&replace_line(1, "extra AQID")),
            Err(TlogProofError::Leaf)
        );
        // Malformed lines.
        for (text, error) in [
            (
                replace_line(0, "c2sp.org/tlog-proof@v2"),
                TlogProofError::Header,
            ),
            (format!("\n{good}"), TlogProofError::Header),
            (replace_line(1, "extra "), TlogProofError::Extra),
            (replace_line(1, "extra AQID="), TlogProofError::Extra),
            (replace_line(1, "extra  AQID"), TlogProofError::Extra),
            (replace_line(2, "index 05"), TlogProofError::Index),
            (replace_line(2, "index -5"), TlogProofError::Index),
            (replace_line(2, "index"), TlogProofError::Index),
            (remove_line(2), TlogProofError::Index),
            (replace_line(3, "AAAA"), TlogProofError::ProofLine),
            (
                replace_line(3, &format!("{} ", lines[3])),
                TlogProofError::ProofLine,
            ),
            (good.replacen("\n\n", "\n", 1), TlogProofError::ProofLine),
        ] {
            assert_eq!(
                TlogProof::parse(text.as_bytes()),
                Err(error.clone()),
                "{text}"
            );
        }
        assert_eq!(TlogProof::parse(&[0xff]), Err(TlogProofError::NotUtf8));
        let many = format!(
            "c2sp.org/tlog-proof@v1\nindex 0\n{}\n{}",
            format!("{}\n", B64.encode([0u8; 32])).repeat(MAX_PROOF_HASHES + 1),
            log.note(1, false).to_text()
        );
        assert_eq!(
            TlogProof::parse(many.as_bytes()),
            Err(TlogProofError::TooManyHashes)
        );
    }

    crate::tests_for_every_provider!(
        a_proof_of_every_leaf_verifies_and_says_which_leaf,
        a_witnessed_proof_verifies_under_a_policy_and_fails_without_its_quorum,
        tampered_proofs_are_refused,
    );
}
