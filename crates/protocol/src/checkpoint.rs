//! Checkpoints: the signed tree head of protocol §4, in the C2SP tlog-checkpoint
//! body format (`origin\ntree_size\nbase64(root_hash)\n`), signed with ECDSA P-256
//! over the body bytes; and, protocol v1.2 §T2, the same body as a C2SP signed note
//! (c2sp.org/tlog-checkpoint, "Signatures"): the note key's Ed25519 line, then the
//! P-256 key's line (signed-note type `0x02`), then any witness cosignatures.
//! Pure: building, formatting, parsing and verifying only.
//!
//! A checkpoint note is read only once a log key's signature on it verified (the
//! note's text "MUST be ignored" until then, signed-note), and only if that key's
//! name is the origin. The body is this log's: exactly three lines, no extension
//! lines (v1.2 §T2), which [`Checkpoint::parse`] already insists on.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::note::{
    self, Note, NoteError, NoteSignature, NoteSigningKey, TYPE_COSIGNATURE_V1, TYPE_ECDSA,
    TYPE_ED25519, VerifierKey,
};
use crate::signing::{PublicKey, SigningKey};

/// Why a checkpoint body could not be read.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// The body is not three newline-terminated lines.
    #[error("a checkpoint body is exactly three lines, each ending in a newline")]
    Shape,
    /// The origin line is empty or has characters a note may not carry.
    #[error("the origin line is empty or not printable")]
    Origin,
    /// The size line is not a decimal number without leading zeros.
    #[error("the tree size is not a canonical decimal number")]
    Size,
    /// The root line is not the base64 of 32 bytes.
    #[error("the root hash is not the base64 of 32 bytes")]
    Root,
}

/// A tree head: which log, how many leaves, and the root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
}

impl Checkpoint {
    /// The C2SP tlog-checkpoint body: `origin\ntree_size\nbase64(root_hash)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            B64.encode(self.root_hash)
        )
    }

    /// Parses a body (strictly: the exact bytes [`Checkpoint::body`] produces). Extension
    /// lines are not accepted: this log never writes them.
    pub fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, ""] = lines.as_slice() else {
            return Err(CheckpointError::Shape);
        };
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(CheckpointError::Origin);
        }
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (*size == "0" || !size.starts_with('0'));
        let tree_size = size
            .parse::<u64>()
            .ok()
            .filter(|_| canonical)
            .ok_or(CheckpointError::Size)?;
        let root_hash = B64
            .decode(root)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or(CheckpointError::Root)?;
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            tree_size,
            root_hash,
        })
    }
}

/// A checkpoint and the server's DER signature over its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signature: Vec<u8>,
}

/// Why a checkpoint note could not be made or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointNoteError {
    /// The note is malformed, or the signature of a known key on it does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The note's text is not a checkpoint body of this log's format.
    #[error("the note's text is not a checkpoint body: {0}")]
    Body(#[from] CheckpointError),
    /// The origin is not the name of the log key that signs or signed it.
    #[error("the checkpoint's origin is not the name of the log's key")]
    Origin,
    /// A log key is not of type 0x01 or 0x02, or a witness key not of type 0x04.
    #[error("a log key is of type 0x01 or 0x02 and a witness key of type 0x04")]
    KeyType,
    /// No log key whose name is the origin signed the note.
    #[error("the checkpoint carries no signature of the log's key")]
    NotSignedByLog,
}

impl Checkpoint {
    /// The checkpoint as protocol v1.2 §T2's signed note: the body, then the note
    /// key's Ed25519 line and the P-256 key's type `0x02` line, both under the
    /// origin as key name (so `note_key` must be named after the origin).
    pub fn to_note(
        &self,
        note_key: &NoteSigningKey,
        signing_key: &SigningKey,
    ) -> Result<Note, CheckpointNoteError> {
        if note_key.name() != self.origin {
            return Err(CheckpointNoteError::Origin);
        }
        let mut note = Note::new(&self.body())?;
        note.add_signature(note_key.sign(&note)?)?;
        note.add_signature(note::sign_ecdsa_p256(&self.origin, signing_key, &note)?)?;
        Ok(note)
    }
}

impl SignedCheckpoint {
    /// [`Checkpoint::to_note`] for a checkpoint the P-256 key signed already: v1's
    /// signature is over the body, which is the note's text, so it is the type
    /// `0x02` line as it is (`public` is the key that made it, for the key id).
    /// Nothing random is signed anew (Ed25519 is deterministic): one checkpoint
    /// makes one note, byte for byte, however often it is asked for.
    pub fn to_note(
        &self,
        note_key: &NoteSigningKey,
        public: &PublicKey,
    ) -> Result<Note, CheckpointNoteError> {
        let origin = &self.checkpoint.origin;
        if note_key.name() != origin {
            return Err(CheckpointNoteError::Origin);
        }
        let mut note = Note::new(&self.checkpoint.body())?;
        note.add_signature(note_key.sign(&note)?)?;
        note.add_signature(NoteSignature::new(
            origin,
            note::ecdsa_key_id(&public.spki_der()),
            self.signature.clone(),
        )?)?;
        Ok(note)
    }
}

/// A checkpoint read from a signed note that a log key signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The note as read: every signature line, verified or ignored.
    pub note: Note,
    /// The log keys (indexes into the `logs` given) whose signature verified.
    pub logs: Vec<usize>,
    /// The witnesses (indexes into the `witnesses` given) whose cosignature
    /// verified, each with its timestamp (POSIX seconds).
    pub cosignatures: Vec<(usize, u64)>,
}

/// Opens a checkpoint note: it must be a signed note that at least one of `logs`
/// (vkeys of type `0x01` or `0x02`) whose name is the origin signed, whose every
/// signature by a key of `logs` or `witnesses` (type `0x04`) verifies, and whose
/// text is a checkpoint body of this log's format. Signatures of other keys are
/// ignored; whether the cosignatures make a quorum is the policy's business
/// (`policy`).
pub fn open_note(
    note: &[u8],
    logs: &[VerifierKey],
    witnesses: &[VerifierKey],
) -> Result<VerifiedCheckpoint, CheckpointNoteError> {
    verify_note(Note::parse(note)?, logs, witnesses)
}

/// [`open_note`] for a note already read (a tlog-proof's, say).
pub fn verify_note(
    note: Note,
    logs: &[VerifierKey],
    witnesses: &[VerifierKey],
) -> Result<VerifiedCheckpoint, CheckpointNoteError> {
    let wrong_role = logs
        .iter()
        .any(|key| ![TYPE_ED25519, TYPE_ECDSA].contains(&key.signature_type()))
        || witnesses
            .iter()
            .any(|key| key.signature_type() != TYPE_COSIGNATURE_V1);
    if wrong_role {
        return Err(CheckpointNoteError::KeyType);
    }
    let keys: Vec<VerifierKey> = logs.iter().chain(witnesses).cloned().collect();
    let verified = note.verify(&keys)?;
    // Only now that a known key vouched for it is the text read.
    let checkpoint = Checkpoint::parse(note.text())?;
    let mut signed_by = Vec::new();
    let mut cosignatures = Vec::new();
    for signature in verified {
        match signature.verifier.checked_sub(logs.len()) {
            None => signed_by.push(signature.verifier),
            Some(witness) => {
                // Every key of `witnesses` is of type 0x04, which carries a timestamp.
                if let Some(timestamp) = signature.timestamp {
                    cosignatures.push((witness, timestamp));
                }
            }
        }
    }
    if signed_by.is_empty() {
        return Err(CheckpointNoteError::NotSignedByLog);
    }
    if !signed_by
        .iter()
        .any(|&log| logs[log].name() == checkpoint.origin)
    {
        return Err(CheckpointNoteError::Origin);
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        note,
        logs: signed_by,
        cosignatures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{CosignerKey, NoteSignature};
    use crate::provider::Provider;

    /// tlog-checkpoint.md's example checkpoint (its key is not published).
    const SPEC_CHECKPOINT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    struct Log {
        checkpoint: Checkpoint,
        note_key: NoteSigningKey,
        signing_key: SigningKey,
    }

    fn log(provider: Provider) -> Log {
        Log {
            checkpoint: Checkpoint {
                origin: "log.example/v1".to_owned(),
                tree_size: 300,
                root_hash: [0x5a; 32],
            },
            note_key: NoteSigningKey::generate(provider, "log.example/v1").unwrap(),
            signing_key: SigningKey::generate(provider).unwrap(),
        }
    }

    impl Log {
        fn keys(&self) -> [VerifierKey; 2] {
            [
                self.note_key.verifier_key(),
                VerifierKey::ecdsa_p256(&self.checkpoint.origin, self.signing_key.public())
                    .unwrap(),
            ]
        }

        fn note(&self) -> String {
            self.checkpoint
                .to_note(&self.note_key, &self.signing_key)
                .unwrap()
                .to_text()
        }
    }

    fn the_spec_checkpoint_reads_as_a_note_and_a_body(provider: Provider) {
        let note = Note::parse(SPEC_CHECKPOINT.as_bytes()).unwrap();
        let checkpoint = Checkpoint::parse(note.text()).unwrap();
        assert_eq!(
            (checkpoint.origin.as_str(), checkpoint.tree_size),
            ("example.com/behind-the-sofa", 20_852_163)
        );
        assert_eq!(checkpoint.body(), note.text());
        // Its key is unknown to us: the note is refused, unread.
        let other = NoteSigningKey::generate(provider, "example.com/behind-the-sofa").unwrap();
        assert_eq!(
            open_note(SPEC_CHECKPOINT.as_bytes(), &[other.verifier_key()], &[]),
            Err(CheckpointNoteError::Note(NoteError::NoKnownSignature))
        );
    }

    fn a_checkpoint_note_is_the_body_then_the_ed25519_then_the_p256_line(provider: Provider) {
        let log = log(provider);
        let text = log.note();
        let [note_vkey, p256_vkey] = log.keys();
        let (body, lines) = text.split_once("\n\n").unwrap();
        assert_eq!(format!("{body}\n"), log.checkpoint.body());
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 2);
        let first = B64.decode(lines[0].rsplit_once(' ').unwrap().1).unwrap();
        let second = B64.decode(lines[1].rsplit_once(' ').unwrap().1).unwrap();
        assert_eq!(first[..4], note_vkey.key_id().to_be_bytes());
        assert_eq!(first.len(), 4 + 64);
        assert_eq!(second[..4], log.signing_key.public().key_id()[..4]);
        for line in &lines {
            assert!(line.starts_with("\u{2014} log.example/v1 "), "{line}");
        }
        // Either key alone opens it; both together are both reported.
        for (keys, signed) in [
            (vec![note_vkey.clone()], vec![0]),
            (vec![p256_vkey.clone()], vec![0]),
            (vec![note_vkey, p256_vkey], vec![0, 1]),
        ] {
            let opened = open_note(text.as_bytes(), &keys, &[]).unwrap();
            assert_eq!(opened.checkpoint, log.checkpoint);
            assert_eq!(opened.logs, signed);
            assert_eq!(opened.note.to_text(), text);
        }
    }

    fn a_signed_checkpoint_makes_the_same_note_from_its_own_signature(provider: Provider) {
        let log = log(provider);
        let signed = SignedCheckpoint {
            checkpoint: log.checkpoint.clone(),
            signature: log
                .signing_key
                .sign(log.checkpoint.body().as_bytes())
                .unwrap(),
        };
        let public = log.signing_key.public();
        let text = signed.to_note(&log.note_key, public).unwrap().to_text();
        assert_eq!(
            signed.to_note(&log.note_key, public).unwrap().to_text(),
            text,
            "one checkpoint, one note"
        );
        let opened = open_note(text.as_bytes(), &log.keys(), &[]).unwrap();
        assert_eq!(opened.checkpoint, log.checkpoint);
        assert_eq!(opened.logs, vec![0, 1]);
        // The P-256 line carries the v1 signature, byte for byte.
        let p256 = &opened.note.signatures()[1];
        assert_eq!(p256.signature(), signed.signature.as_slice());
        let other = NoteSigningKey::generate(provider, "another.example/log").unwrap();
        assert_eq!(
            signed.to_note(&other, public).map(|note| note.to_text()),
            Err(CheckpointNoteError::Origin)
        );
    }

    fn cosignatures_are_verified_and_reported_with_their_timestamps(provider: Provider) {
        let log = log(provider);
        let witness = CosignerKey::generate(provider, "witness.example").unwrap();
        let stranger = CosignerKey::generate(provider, "stranger.example").unwrap();
        let mut note = Note::parse(log.note().as_bytes()).unwrap();
        note.add_signature(witness.cosign(&note, 1_700_000_123).unwrap())
            .unwrap();
        note.add_signature(stranger.cosign(&note, 5).unwrap())
            .unwrap();
        let opened = open_note(
            note.to_text().as_bytes(),
            &log.keys()[..1],
            &[witness.verifier_key()],
        )
        .unwrap();
        assert_eq!(opened.cosignatures, vec![(0, 1_700_000_123)]);
        // A witness key only: the log's signature is what makes a checkpoint.
        assert_eq!(
            open_note(note.to_text().as_bytes(), &[], &[witness.verifier_key()]),
            Err(CheckpointNoteError::NotSignedByLog)
        );
    }

    fn tampered_checkpoint_notes_are_refused(provider: Provider) {
        let log = log(provider);
        let text = log.note();
        let keys = log.keys();
        let open = |text: &str| open_note(text.as_bytes(), &keys, &[]);
        assert!(open(&text).is_ok());
        // A flipped size or root, under both signatures.
        let bad = |key: &VerifierKey| {
            Err(CheckpointNoteError::Note(NoteError::BadSignature {
                name: key.name().to_owned(),
                key_id: key.key_id(),
            }))
        };
        assert_eq!(open(&text.replacen("\n300\n", "\n301\n", 1)), bad(&keys[0]));
        let root = B64.encode([0x5a; 32]);
        let other_root = B64.encode([0x5b; 32]);
        assert_eq!(open(&text.replacen(&root, &other_root, 1)), bad(&keys[0]));
        // A note key line missing still leaves the P-256 one: that is enough, as
        // for any C2SP verifier; with the note key alone it is not.
        let (body, lines) = text.split_once("\n\n").unwrap();
        let p256_only = format!("{body}\n\n{}\n", lines.lines().nth(1).unwrap());
        assert!(open(&p256_only).is_ok());
        assert_eq!(
            open_note(p256_only.as_bytes(), &keys[..1], &[]),
            Err(CheckpointNoteError::Note(NoteError::NoKnownSignature))
        );
        // Signed, but with an extension line, or a body that is not a checkpoint.
        for body in [
            format!("{}extension\n", log.checkpoint.body()),
            "log.example/v1\n0300\nAAAA\n".to_owned(),
        ] {
            let mut note = Note::new(&body).unwrap();
            note.add_signature(log.note_key.sign(&note).unwrap())
                .unwrap();
            assert!(
                matches!(open(&note.to_text()), Err(CheckpointNoteError::Body(_))),
                "{body}"
            );
        }
        // Signed by the log's key, for another origin.
        let mut elsewhere = log.checkpoint.clone();
        elsewhere.origin = "other.example".to_owned();
        let mut note = Note::new(&elsewhere.body()).unwrap();
        note.add_signature(log.note_key.sign(&note).unwrap())
            .unwrap();
        assert_eq!(open(&note.to_text()), Err(CheckpointNoteError::Origin));
        assert_eq!(
            elsewhere.to_note(&log.note_key, &log.signing_key),
            Err(CheckpointNoteError::Origin)
        );
        // An extra line of the same key, a wrong key id for the note key.
        let again = text.lines().nth(4).unwrap();
        assert!(matches!(
            open(&format!("{text}{again}\n")),
            Err(CheckpointNoteError::Note(
                NoteError::DuplicateSignature { .. }
            ))
        ));
        let mut relabelled = Note::new(&log.checkpoint.body()).unwrap();
        let signature = log.note_key.sign(&relabelled).unwrap();
        relabelled
            .add_signature(
                NoteSignature::new(
                    signature.name(),
                    signature.key_id() ^ 1,
                    signature.signature().to_vec(),
                )
                .unwrap(),
            )
            .unwrap();
        assert_eq!(
            open(&relabelled.to_text()),
            Err(CheckpointNoteError::Note(NoteError::NoKnownSignature))
        );
    }

    fn keys_of_the_wrong_role_are_refused(provider: Provider) {
        let log = log(provider);
        let witness = CosignerKey::generate(provider, "witness.example").unwrap();
        let text = log.note();
        assert_eq!(
            open_note(text.as_bytes(), &[witness.verifier_key()], &[]),
            Err(CheckpointNoteError::KeyType)
        );
        assert_eq!(
            open_note(text.as_bytes(), &log.keys(), &log.keys()[..1]),
            Err(CheckpointNoteError::KeyType)
        );
    }

    crate::tests_for_every_provider!(
        the_spec_checkpoint_reads_as_a_note_and_a_body,
        a_checkpoint_note_is_the_body_then_the_ed25519_then_the_p256_line,
        a_signed_checkpoint_makes_the_same_note_from_its_own_signature,
        cosignatures_are_verified_and_reported_with_their_timestamps,
        tampered_checkpoint_notes_are_refused,
        keys_of_the_wrong_role_are_refused,
    );

    #[test]
    fn body_is_the_c2sp_format_and_parses_back() {
        let checkpoint = Checkpoint {
            origin: "wasm-hypervisor.test".to_owned(),
            tree_size: 1,
            root_hash: hex::decode(
                "525375ac6c3c1035426f2a9a383a335fef2f3239b0d293faf3ba7cee3608748f",
            )
            .unwrap()
            .try_into()
            .unwrap(),
        };
        // The body of tests/vectors/protocol_v1.json, computed in Python.
        let body = "wasm-hypervisor.test\n1\nUlN1rGw8EDVCbyqaODozX+8vMjmw0pP687p87jYIdI8=\n";
        assert_eq!(checkpoint.body(), body);
        assert_eq!(Checkpoint::parse(body), Ok(checkpoint));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let root = B64.encode([0u8; 32]);
        for (body, error) in [
            (format!("o\n1\n{root}"), CheckpointError::Shape),
            (format!("o\n1\n{root}\nextra\n"), CheckpointError::Shape),
            (format!("\n1\n{root}\n"), CheckpointError::Origin),
            (format!("o\n01\n{root}\n"), CheckpointError::Size),
            (format!("o\n-1\n{root}\n"), CheckpointError::Size),
            (
                format!("o\n1\n{}\n", B64.encode([0u8; 31])),
                CheckpointError::Root,
            ),
        ] {
            assert_eq!(Checkpoint::parse(&body), Err(error), "{body:?}");
        }
    }
}
