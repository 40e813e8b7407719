//! C2SP signed notes (c2sp.org/signed-note, v1.0.0): a text signed by one or more
//! keys, the verifier keys (*vkeys*) that check it, and the three signature types
//! protocol v1.2 uses:
//!
//! | type | what | key id | signature | used for |
//! | --- | --- | --- | --- | --- |
//! | `0x01` | Ed25519 (signed-note "Ed25519 signatures") | `SHA-256(name \n 0x01 pk)[:4]` | Ed25519 over the text | the log's note key (v1.2 §T1) |
//! | `0x02` | ECDSA P-256 (signed-note "Signature types"; as transparency-dev/witness) | `SHA-256(DER SPKI)[:4]` | DER ECDSA over SHA-256 of the text | the v1 P-256 key's line (v1.2 §T2) |
//! | `0x04` | cosignature/v1 (c2sp.org/tlog-cosignature, "Ed25519 signed message") | `SHA-256(name \n 0x04 pk)[:4]` | `timestamp (u64 BE) ‖ Ed25519` over `cosignature/v1\ntime <t>\n ‖ text` | witnesses (v1.2 §T5) |
//!
//! ```text
//! note      = text blank-line signature-line+
//! text      = any UTF-8 ending in "\n", no ASCII control character but "\n"
//! signature = "— " key-name " " base64(key id (u32 BE) || signature bytes) "\n"
//! vkey      = key-name "+" hex(key id) "+" base64(type || public key)
//! ```
//!
//! Parsing is strict and follows the spec's every rule (signed-note "Format"): valid
//! UTF-8, no control characters but newline, the text ends in a newline and is
//! separated from the signatures by the last blank line, every signature line is
//! `— <name> <base64>` with a valid key name and at least five bytes of signature.
//! Where the spec leaves a choice, this module takes the strict one (PROTOCOL.md,
//! "Protocol v1.2: transparency formats"): at most [`MAX_SIGNATURES`] signatures and
//! [`MAX_NOTE_BYTES`] bytes, base64 in its canonical form only, key ids in
//! lowercase hex, and a note with two signature lines of one key (same name, same
//! key id) is malformed.
//!
//! Verification ([`Note::verify`], signed-note "Signatures"): a signature whose
//! name and key id match no known key is ignored; one that matches is verified, and
//! if it fails the whole note is refused; at least one must verify.
//!
//! Ed25519 goes through the crypto provider, like every primitive; the key ids and
//! the cosignature message are SHA-256 the protocol fixes (`digest`). Pure.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::digest::{sha256, sha256_parts};
use crate::provider::{ED25519_KEY_LEN, ED25519_SIGNATURE_LEN, Ed25519Key, Provider};
use crate::signing::{PublicKey, SigningKey};

/// The most signature lines a note may carry. The spec asks verifiers to accept at
/// least 16; 100 is Go's `note.Open` limit.
pub const MAX_SIGNATURES: usize = 100;
/// The largest note read, in bytes: room for [`MAX_SIGNATURES`] post-quantum
/// signatures (about 5 kB each) and a long text.
pub const MAX_NOTE_BYTES: usize = 1_000_000;

/// Signature type `0x01`: Ed25519 over the note text.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type `0x02`: DER ECDSA (here P-256 only) over SHA-256 of the note text.
pub const TYPE_ECDSA: u8 = 0x02;
/// Signature type `0x04`: timestamped Ed25519 checkpoint cosignatures (cosignature/v1).
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;

/// What starts every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// What starts Go's encoding of an Ed25519 signer key (`note.NewSigner`).
const SIGNER_KEY_PREFIX: &str = "PRIVATE+KEY+";
/// Bytes in a cosignature/v1 signature: the timestamp, then the Ed25519 signature.
const COSIGNATURE_LEN: usize = 8 + ED25519_SIGNATURE_LEN;

/// Why a note, a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note is longer than [`MAX_NOTE_BYTES`].
    #[error("a note is at most {MAX_NOTE_BYTES} bytes")]
    TooLarge,
    /// The note is not valid UTF-8.
    #[error("a note is UTF-8")]
    NotUtf8,
    /// The note holds an ASCII control character other than newline.
    #[error("a note holds no control character but newline")]
    ControlCharacter,
    /// The text does not end in a newline, or no blank line separates it from a
    /// newline-terminated block of signature lines.
    #[error("a note is a text ending in a newline, a blank line, then signature lines")]
    Shape,
    /// A signature line is not `— <key name> <base64>`.
    #[error("a signature line is an em dash, a space, a key name, a space and base64")]
    SignatureLine,
    /// A key name is empty or holds a space, a plus or a control character.
    #[error("a key name is not empty and holds no space, plus or control character")]
    KeyName,
    /// A signature is not the canonical base64 of a key id and at least one byte.
    #[error("a signature is the canonical base64 of a key id and at least one byte")]
    SignatureEncoding,
    /// The note has more than [`MAX_SIGNATURES`] signature lines.
    #[error("a note carries at most {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// Two signature lines name the same key (same name, same key id).
    #[error("two signatures of the key {name}+{key_id:08x}")]
    DuplicateSignature { name: String, key_id: u32 },
    /// A signature of a known key does not verify.
    #[error("the signature of the key {name}+{key_id:08x} does not verify")]
    BadSignature { name: String, key_id: u32 },
    /// No signature of a known key is on the note.
    #[error("the note carries no signature of a known key")]
    NoKnownSignature,
    /// Two of the verifier keys given share a name and a key id.
    #[error("two verifier keys are named {name}+{key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },
    /// A verifier key is not `<name>+<8 lowercase hex digits>+<base64>`.
    #[error("a verifier key is <name>+<8 lowercase hex digits>+<base64 of type and key>")]
    VerifierKeyShape,
    /// A key's id is not the one its name, type and public key give.
    #[error("the key id does not match the key")]
    KeyIdMismatch,
    /// A key's type byte is one this implementation does not support.
    #[error("signature type 0x{0:02x} is not supported")]
    UnsupportedKeyType(u8),
    /// A key's material is not a public key of its type.
    #[error("the key material is not a public key of its type")]
    BadPublicKey,
    /// A signer key is not Go's `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`.
    #[error("a signer key is PRIVATE+KEY+<name>+<key id>+<base64 of 0x01 and a 32-byte seed>")]
    SignerKeyShape,
    /// A cosignature's timestamp is above 2^63 - 1.
    #[error("a cosignature timestamp is at most 2^63 - 1")]
    Timestamp,
    /// The crypto provider failed to make a key or a signature.
    #[error("the crypto provider failed to make a key or a signature")]
    Crypto,
}

/// Whether `name` may name a key: non-empty, without Unicode spaces or plus
/// (signed-note "Format"), nor control characters (which no note may carry).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian: the key id
/// signed-note recommends, and the one types `0x01` and `0x04` require.
pub fn key_id(name: &str, signature_type: u8, public_key: &[u8]) -> u32 {
    first_four(&sha256_parts(&[
        name.as_bytes(),
        b"\n",
        &[signature_type],
        public_key,
    ]))
}

/// `SHA-256(DER SPKI)[:4]`: the key id of an ECDSA key (type `0x02`).
pub fn ecdsa_key_id(spki_der: &[u8]) -> u32 {
    first_four(&sha256(spki_der))
}

fn first_four(hash: &[u8; 32]) -> u32 {
    u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])
}

/// The message a cosignature/v1 signs (tlog-cosignature, "Ed25519 signed message"):
/// `cosignature/v1\ntime <timestamp>\n` then the whole note text.
pub fn cosignature_message(timestamp: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// One signature line: the key's name and id, and the signature bytes after the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    name: String,
    key_id: u32,
    signature: Vec<u8>,
}

impl NoteSignature {
    /// A signature by the key `name`+`key_id`; `signature` is at least one byte.
    pub fn new(name: &str, key_id: u32, signature: Vec<u8>) -> Result<NoteSignature, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::KeyName);
        }
        if signature.is_empty() {
            return Err(NoteError::SignatureEncoding);
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id,
            signature,
        })
    }

    /// Reads `— <name> <base64>` (without its newline).
    fn parse_line(line: &str) -> Result<NoteSignature, NoteError> {
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(NoteError::SignatureLine)?;
        let (name, encoded) = rest.split_once(' ').ok_or(NoteError::SignatureLine)?;
        if !is_valid_key_name(name) {
            return Err(NoteError::KeyName);
        }
        let bytes = B64
            .decode(encoded)
            .map_err(|_| NoteError::SignatureEncoding)?;
        if bytes.len() < 5 {
            return Err(NoteError::SignatureEncoding);
        }
        let key_id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        NoteSignature::new(name, key_id, bytes[4..].to_vec())
    }

    /// The line, newline included.
    fn line(&self) -> String {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, B64.encode(bytes))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature bytes, after the key id.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// A signature that verified: which of the verifier keys made it and, for a
/// cosignature, its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// Index of the key in the slice given to [`Note::verify`].
    pub verifier: usize,
    /// The cosignature/v1 timestamp (POSIX seconds); `None` for other types.
    pub timestamp: Option<u64>,
}

/// A signed note: its text and its signature lines, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// A note of `text`, not signed yet. The text must end in a newline and hold no
    /// control character but newline.
    pub fn new(text: &str) -> Result<Note, NoteError> {
        check_characters(text)?;
        if !text.ends_with('\n') {
            return Err(NoteError::Shape);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        })
    }

    /// Reads a signed note, strictly (the module doc says what that means). Its
    /// signatures are read, not verified: [`Note::verify`] does that.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge);
        }
        let note = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        check_characters(note)?;
        // The text ends at the last blank line; it keeps its final newline.
        let split = note.rfind("\n\n").ok_or(NoteError::Shape)?;
        let (text, block) = (&note[..=split], &note[split + 2..]);
        let lines = block.strip_suffix('\n').ok_or(NoteError::Shape)?;
        let mut parsed = Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        };
        for line in lines.split('\n') {
            parsed.add_signature(NoteSignature::parse_line(line)?)?;
        }
        Ok(parsed)
    }

    /// Appends a signature line, refusing a second one of the same key and more than
    /// [`MAX_SIGNATURES`].
    pub fn add_signature(&mut self, signature: NoteSignature) -> Result<(), NoteError> {
        if self.signatures.len() == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        if self
            .signatures
            .iter()
            .any(|s| s.name == signature.name && s.key_id == signature.key_id)
        {
            return Err(NoteError::DuplicateSignature {
                name: signature.name,
                key_id: signature.key_id,
            });
        }
        self.signatures.push(signature);
        Ok(())
    }

    /// The text the signatures sign, final newline included.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The note's bytes: the text, a blank line, one line per signature.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + 128 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for signature in &self.signatures {
            out.push_str(&signature.line());
        }
        out
    }

    /// Checks the note's signatures against `verifiers` (signed-note "Signatures"):
    /// signatures of unknown keys are ignored, every one of a known key must verify,
    /// and at least one must. Gives the signatures that verified, in note order.
    pub fn verify(&self, verifiers: &[VerifierKey]) -> Result<Vec<VerifiedSignature>, NoteError> {
        let mut seen = HashSet::with_capacity(verifiers.len());
        for key in verifiers {
            if !seen.insert((key.name.as_str(), key.key_id)) {
                return Err(NoteError::AmbiguousKey {
                    name: key.name.clone(),
                    key_id: key.key_id,
                });
            }
        }
        let mut verified = Vec::new();
        for signature in &self.signatures {
            let Some(verifier) = verifiers
                .iter()
                .position(|key| key.name == signature.name && key.key_id == signature.key_id)
            else {
                continue;
            };
            let timestamp = verifiers[verifier]
                .check(&self.text, &signature.signature)
                .map_err(|()| NoteError::BadSignature {
                    name: signature.name.clone(),
                    key_id: signature.key_id,
                })?;
            verified.push(VerifiedSignature {
                verifier,
                timestamp,
            });
        }
        if verified.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(verified)
    }
}

/// Signed-note "Format": no ASCII control character but newline (UTF-8 is the
/// `&str`'s).
fn check_characters(text: &str) -> Result<(), NoteError> {
    if text.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter);
    }
    Ok(())
}

/// A verifier key: a key name, a key id and a public key of one signature type.
/// Equal when all three are.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: KeyMaterial,
}

#[derive(Clone, PartialEq, Eq)]
enum KeyMaterial {
    Ed25519(Ed25519Public),
    EcdsaP256(PublicKey),
    CosignatureV1(Ed25519Public),
}

/// An Ed25519 public key and the provider that verifies under it.
#[derive(Clone, Copy)]
struct Ed25519Public {
    key: [u8; ED25519_KEY_LEN],
    provider: Provider,
}

impl PartialEq for Ed25519Public {
    fn eq(&self, other: &Ed25519Public) -> bool {
        self.key == other.key
    }
}

impl Eq for Ed25519Public {}

impl Ed25519Public {
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), ()> {
        let signature: &[u8; ED25519_SIGNATURE_LEN] = signature.try_into().map_err(|_| ())?;
        self.provider
            .verify_ed25519(&self.key, message, signature)
            .map_err(|_| ())
    }
}

impl VerifierKey {
    /// Reads a vkey, `<name>+<key id>+<base64(type || public key)>`, of type `0x01`,
    /// `0x02` (a P-256 SPKI) or `0x04`, whose key id must be its key's; `provider`
    /// verifies signatures under it.
    pub fn parse(provider: Provider, vkey: &str) -> Result<VerifierKey, NoteError> {
        // The name and the id hold no `+`; base64 may.
        let (name, rest) = vkey.split_once('+').ok_or(NoteError::VerifierKeyShape)?;
        let (id_hex, encoded) = rest.split_once('+').ok_or(NoteError::VerifierKeyShape)?;
        if !is_valid_key_name(name) {
            return Err(NoteError::KeyName);
        }
        let key_id = parse_key_id(id_hex)?;
        let bytes = B64
            .decode(encoded)
            .map_err(|_| NoteError::VerifierKeyShape)?;
        let (&signature_type, material) = bytes.split_first().ok_or(NoteError::VerifierKeyShape)?;
        let key = match signature_type {
            TYPE_ED25519 | TYPE_COSIGNATURE_V1 => {
                let key: [u8; ED25519_KEY_LEN] =
                    material.try_into().map_err(|_| NoteError::BadPublicKey)?;
                let public = Ed25519Public { key, provider };
                if signature_type == TYPE_ED25519 {
                    KeyMaterial::Ed25519(public)
                } else {
                    KeyMaterial::CosignatureV1(public)
                }
            }
            TYPE_ECDSA => KeyMaterial::EcdsaP256(
                PublicKey::from_spki_der(provider, material)
                    .map_err(|_| NoteError::BadPublicKey)?,
            ),
            other => return Err(NoteError::UnsupportedKeyType(other)),
        };
        let parsed = VerifierKey::with_computed_id(name, key)?;
        if parsed.key_id != key_id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(parsed)
    }

    /// The vkey of the Ed25519 (type `0x01`) key `public` named `name`.
    pub fn ed25519(
        provider: Provider,
        name: &str,
        public: &[u8; ED25519_KEY_LEN],
    ) -> Result<VerifierKey, NoteError> {
        let key = Ed25519Public {
            key: *public,
            provider,
        };
        VerifierKey::with_computed_id(name, KeyMaterial::Ed25519(key))
    }

    /// The vkey (type `0x02`) of the P-256 key `public` named `name`.
    pub fn ecdsa_p256(name: &str, public: &PublicKey) -> Result<VerifierKey, NoteError> {
        VerifierKey::with_computed_id(name, KeyMaterial::EcdsaP256(*public))
    }

    /// The vkey of the cosignature/v1 (type `0x04`) key `public` named `name`.
    pub fn cosignature_v1(
        provider: Provider,
        name: &str,
        public: &[u8; ED25519_KEY_LEN],
    ) -> Result<VerifierKey, NoteError> {
        let key = Ed25519Public {
            key: *public,
            provider,
        };
        VerifierKey::with_computed_id(name, KeyMaterial::CosignatureV1(key))
    }

    fn with_computed_id(name: &str, key: KeyMaterial) -> Result<VerifierKey, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::KeyName);
        }
        let key_id = match &key {
            KeyMaterial::Ed25519(public) => key_id(name, TYPE_ED25519, &public.key),
            KeyMaterial::CosignatureV1(public) => key_id(name, TYPE_COSIGNATURE_V1, &public.key),
            KeyMaterial::EcdsaP256(public) => ecdsa_key_id(&public.spki_der()),
        };
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// The key name: the name its signature lines carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// `0x01`, `0x02` or `0x04`.
    pub fn signature_type(&self) -> u8 {
        match self.key {
            KeyMaterial::Ed25519(_) => TYPE_ED25519,
            KeyMaterial::EcdsaP256(_) => TYPE_ECDSA,
            KeyMaterial::CosignatureV1(_) => TYPE_COSIGNATURE_V1,
        }
    }

    /// The public key material after the type byte: 32 bytes of Ed25519, or a DER
    /// SPKI. Two vkeys wrapping the same key under other names share it.
    pub fn public_key(&self) -> Vec<u8> {
        match &self.key {
            KeyMaterial::Ed25519(public) | KeyMaterial::CosignatureV1(public) => {
                public.key.to_vec()
            }
            KeyMaterial::EcdsaP256(public) => public.spki_der(),
        }
    }

    /// Checks one signature (the bytes after the key id) over `text`; a
    /// cosignature gives its timestamp.
    fn check(&self, text: &str, signature: &[u8]) -> Result<Option<u64>, ()> {
        match &self.key {
            KeyMaterial::Ed25519(public) => {
                public.verify(text.as_bytes(), signature).map(|()| None)
            }
            KeyMaterial::EcdsaP256(public) => public
                .verify(text.as_bytes(), signature)
                .map(|()| None)
                .map_err(|_| ()),
            KeyMaterial::CosignatureV1(public) => {
                if signature.len() != COSIGNATURE_LEN {
                    return Err(());
                }
                let (timestamp, signature) = signature.split_at(8);
                let timestamp = u64::from_be_bytes(timestamp.try_into().map_err(|_| ())?);
                if timestamp > i64::MAX as u64 {
                    return Err(());
                }
                public.verify(&cosignature_message(timestamp, text), signature)?;
                Ok(Some(timestamp))
            }
        }
    }
}

fn parse_key_id(id_hex: &str) -> Result<u32, NoteError> {
    if id_hex.len() != 8
        || !id_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(NoteError::VerifierKeyShape);
    }
    u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::VerifierKeyShape)
}

impl fmt::Display for VerifierKey {
    /// The vkey text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![self.signature_type()];
        bytes.extend_from_slice(&self.public_key());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(bytes))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// An Ed25519 private key with its name and type, on the provider that made it.
struct Ed25519Signer {
    name: String,
    key_id: u32,
    key: Box<dyn Ed25519Key>,
    provider: Provider,
}

impl Ed25519Signer {
    fn new(
        provider: Provider,
        name: &str,
        signature_type: u8,
        key: Box<dyn Ed25519Key>,
    ) -> Result<Ed25519Signer, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::KeyName);
        }
        Ok(Ed25519Signer {
            name: name.to_owned(),
            key_id: key_id(name, signature_type, key.public_key()),
            key,
            provider,
        })
    }

    fn generate(provider: Provider, name: &str, signature_type: u8) -> Result<Self, NoteError> {
        let key = provider
            .generate_ed25519_key()
            .map_err(|_| NoteError::Crypto)?;
        Ed25519Signer::new(provider, name, signature_type, key)
    }

    fn from_seed(
        provider: Provider,
        name: &str,
        signature_type: u8,
        seed: &[u8; ED25519_KEY_LEN],
    ) -> Result<Self, NoteError> {
        let key = provider
            .ed25519_key_from_seed(seed)
            .map_err(|_| NoteError::Crypto)?;
        Ed25519Signer::new(provider, name, signature_type, key)
    }

    /// The vkey of this key, its public key wrapped as `material` (the type).
    fn verifier_key(&self, material: fn(Ed25519Public) -> KeyMaterial) -> VerifierKey {
        let public = Ed25519Public {
            key: *self.key.public_key(),
            provider: self.provider,
        };
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: material(public),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; ED25519_SIGNATURE_LEN], NoteError> {
        self.key.sign(message).map_err(|_| NoteError::Crypto)
    }

    fn seed(&self) -> Result<Zeroizing<[u8; ED25519_KEY_LEN]>, NoteError> {
        self.key.seed().map_err(|_| NoteError::Crypto)
    }
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:08x}", self.name, self.key_id)
    }
}

/// A note key: an Ed25519 (type `0x01`) signing key with its name, the log's key
/// of protocol v1.2 §T1. Its `Debug` shows the name and key id only.
#[derive(Debug)]
pub struct NoteSigningKey(Ed25519Signer);

impl NoteSigningKey {
    /// A fresh random key named `name`.
    pub fn generate(provider: Provider, name: &str) -> Result<NoteSigningKey, NoteError> {
        Ed25519Signer::generate(provider, name, TYPE_ED25519).map(NoteSigningKey)
    }

    /// The key of the 32-byte Ed25519 seed `seed`, named `name`.
    pub fn from_seed(
        provider: Provider,
        name: &str,
        seed: &[u8; ED25519_KEY_LEN],
    ) -> Result<NoteSigningKey, NoteError> {
        Ed25519Signer::from_seed(provider, name, TYPE_ED25519, seed).map(NoteSigningKey)
    }

    /// Reads Go's signer key encoding (`note.NewSigner`):
    /// `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>`, whose key id
    /// must be the one of the public key the seed gives.
    pub fn parse_signer_key(provider: Provider, skey: &str) -> Result<NoteSigningKey, NoteError> {
        let rest = skey
            .strip_prefix(SIGNER_KEY_PREFIX)
            .ok_or(NoteError::SignerKeyShape)?;
        let (name, rest) = rest.split_once('+').ok_or(NoteError::SignerKeyShape)?;
        let (id_hex, encoded) = rest.split_once('+').ok_or(NoteError::SignerKeyShape)?;
        let key_id = parse_key_id(id_hex).map_err(|_| NoteError::SignerKeyShape)?;
        let bytes = Zeroizing::new(B64.decode(encoded).map_err(|_| NoteError::SignerKeyShape)?);
        let seed: Zeroizing<[u8; ED25519_KEY_LEN]> = match bytes.split_first() {
            Some((&TYPE_ED25519, seed)) => {
                Zeroizing::new(seed.try_into().map_err(|_| NoteError::SignerKeyShape)?)
            }
            Some((&other, _)) => return Err(NoteError::UnsupportedKeyType(other)),
            None => return Err(NoteError::SignerKeyShape),
        };
        let key = NoteSigningKey::from_seed(provider, name, &seed)?;
        if key.key_id() != key_id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(key)
    }

    /// Go's signer key encoding of this key (a secret).
    pub fn to_signer_key(&self) -> Result<Zeroizing<String>, NoteError> {
        let seed = self.0.seed()?;
        let mut bytes = Zeroizing::new(vec![TYPE_ED25519]);
        bytes.extend_from_slice(&seed[..]);
        let encoded = Zeroizing::new(B64.encode(&bytes[..]));
        Ok(Zeroizing::new(format!(
            "{SIGNER_KEY_PREFIX}{}+{:08x}+{}",
            self.0.name,
            self.0.key_id,
            encoded.as_str()
        )))
    }

    /// The 32-byte seed (a secret).
    pub fn seed(&self) -> Result<Zeroizing<[u8; ED25519_KEY_LEN]>, NoteError> {
        self.0.seed()
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn key_id(&self) -> u32 {
        self.0.key_id
    }

    /// The vkey that verifies this key's signatures.
    pub fn verifier_key(&self) -> VerifierKey {
        self.0.verifier_key(KeyMaterial::Ed25519)
    }

    /// The signature line of this key on `note`'s text.
    pub fn sign(&self, note: &Note) -> Result<NoteSignature, NoteError> {
        let signature = self.0.sign(note.text.as_bytes())?;
        NoteSignature::new(&self.0.name, self.0.key_id, signature.to_vec())
    }
}

/// A cosigner's key: an Ed25519 key making cosignature/v1 (type `0x04`)
/// signatures, as a witness does (tlog-cosignature). Its `Debug` shows the name and
/// key id only.
#[derive(Debug)]
pub struct CosignerKey(Ed25519Signer);

impl CosignerKey {
    /// A fresh random key named `name`.
    pub fn generate(provider: Provider, name: &str) -> Result<CosignerKey, NoteError> {
        Ed25519Signer::generate(provider, name, TYPE_COSIGNATURE_V1).map(CosignerKey)
    }

    /// The key of the 32-byte Ed25519 seed `seed`, named `name`.
    pub fn from_seed(
        provider: Provider,
        name: &str,
        seed: &[u8; ED25519_KEY_LEN],
    ) -> Result<CosignerKey, NoteError> {
        Ed25519Signer::from_seed(provider, name, TYPE_COSIGNATURE_V1, seed).map(CosignerKey)
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn key_id(&self) -> u32 {
        self.0.key_id
    }

    /// The vkey that verifies this key's cosignatures.
    pub fn verifier_key(&self) -> VerifierKey {
        self.0.verifier_key(KeyMaterial::CosignatureV1)
    }

    /// The cosignature line, at `timestamp` (POSIX seconds, at most 2^63 - 1), of
    /// `note`'s text: `timestamp (u64 BE) || Ed25519(cosignature/v1\ntime <t>\n ||
    /// text)`.
    pub fn cosign(&self, note: &Note, timestamp: u64) -> Result<NoteSignature, NoteError> {
        if timestamp > i64::MAX as u64 {
            return Err(NoteError::Timestamp);
        }
        let signature = self.0.sign(&cosignature_message(timestamp, &note.text))?;
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&signature);
        NoteSignature::new(&self.0.name, self.0.key_id, bytes)
    }
}

/// The signature line (type `0x02`) of the P-256 key `key`, under the key name
/// `name`, on `note`'s text: a DER ECDSA signature over SHA-256 of the text.
pub fn sign_ecdsa_p256(
    name: &str,
    key: &SigningKey,
    note: &Note,
) -> Result<NoteSignature, NoteError> {
    let key_id = ecdsa_key_id(&key.public().spki_der());
    let signature = key
        .sign(note.text.as_bytes())
        .map_err(|_| NoteError::Crypto)?;
    NoteSignature::new(name, key_id, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// signed-note.md, "Verifier keys", "Example": the spec's own vkey and note.
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    /// Go's `golang.org/x/mod/sumdb/note` (note.go's package doc and note_test.go's
    /// `TestSign`): a signer key, its vkey, a text and the note `note.Sign` makes.
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    /// The same note re-signed by a second key, EnochRoot, whose vkey Go's doc
    /// does not give (note.go's package doc).
    const GO_NOTE_TWO_SIGNATURES: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    /// tlog-cosignature.md's example: a checkpoint with the log's signature and a
    /// witness's cosignature (neither key is published).
    const SPEC_COSIGNED: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

    fn vkey(provider: Provider, text: &str) -> VerifierKey {
        VerifierKey::parse(provider, text).unwrap()
    }

    fn the_spec_example_note_verifies_under_the_spec_vkey(provider: Provider) {
        let key = vkey(provider, SPEC_VKEY);
        assert_eq!(key.to_string(), SPEC_VKEY);
        assert_eq!(
            (key.name(), key.key_id(), key.signature_type()),
            ("example.com/foo", 0x530d903a, TYPE_ED25519)
        );
        let note = Note::parse(SPEC_NOTE.as_bytes()).unwrap();
        assert_eq!(note.text(), "This is an example message.\n");
        assert_eq!(note.to_text(), SPEC_NOTE);
        assert_eq!(
            note.verify(&[key]).unwrap(),
            vec![VerifiedSignature {
                verifier: 0,
                timestamp: None
            }]
        );
    }

    fn gos_signer_key_signs_gos_note_byte_for_byte(provider: Provider) {
        let key = NoteSigningKey::parse_signer_key(provider, GO_SKEY).unwrap();
        assert_eq!(key.verifier_key().to_string(), GO_VKEY);
        assert_eq!(key.to_signer_key().unwrap().as_str(), GO_SKEY);
        let mut note = Note::new(GO_TEXT).unwrap();
        note.add_signature(key.sign(&note).unwrap()).unwrap();
        assert_eq!(note.to_text(), GO_NOTE);
        let parsed = Note::parse(GO_NOTE.as_bytes()).unwrap();
        assert_eq!(parsed, note);
        parsed.verify(&[vkey(provider, GO_VKEY)]).unwrap();
    }

    fn a_signature_of_an_unknown_key_is_ignored_and_one_known_is_enough(provider: Provider) {
        let note = Note::parse(GO_NOTE_TWO_SIGNATURES.as_bytes()).unwrap();
        assert_eq!(note.to_text(), GO_NOTE_TWO_SIGNATURES);
        assert_eq!(note.signatures()[1].name(), "EnochRoot");
        let verified = note.verify(&[vkey(provider, GO_VKEY)]).unwrap();
        assert_eq!(verified.len(), 1);
        // Known name, other key id; known key id, other name: both unknown keys.
        let other = NoteSigningKey::generate(provider, "PeterNeumann").unwrap();
        assert_eq!(
            note.verify(&[other.verifier_key()]),
            Err(NoteError::NoKnownSignature)
        );
        let renamed = VerifierKey::parse(provider, &GO_VKEY.replace("PeterNeumann", "PeterNeuman"));
        assert_eq!(renamed.unwrap_err(), NoteError::KeyIdMismatch);
    }

    fn tampered_notes_are_refused(provider: Provider) {
        let key = vkey(provider, GO_VKEY);
        let bad_signature = Err(NoteError::BadSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3,
        });
        let open = |text: &str| {
            Note::parse(text.as_bytes()).and_then(|n| n.verify(std::slice::from_ref(&key)))
        };
        assert!(open(GO_NOTE).is_ok());
        // A flipped byte in the text, and in the signature.
        assert_eq!(
            open(&GO_NOTE.replacen("problem,", "problem;", 1)),
            bad_signature
        );
        assert_eq!(
            open(&GO_NOTE.replace("ZJkuBS9UG", "ZJkuBS9UH")),
            bad_signature
        );
        // A missing blank line, signature block, final newline; an empty text.
        assert_eq!(
            open(&GO_NOTE.replacen(".\n\n", ".\n", 1)),
            Err(NoteError::Shape)
        );
        assert_eq!(open(GO_TEXT), Err(NoteError::Shape));
        assert_eq!(open(GO_NOTE.trim_end_matches('\n')), Err(NoteError::Shape));
        assert_eq!(open(&format!("{GO_TEXT}\n")), Err(NoteError::Shape));
        // The signature of another key id (the name is known), or of another name.
        let other_id = GO_NOTE.replace("x08go/", "AAAAAA");
        assert_eq!(open(&other_id), Err(NoteError::NoKnownSignature));
        assert_eq!(
            open(&GO_NOTE.replace("\u{2014} PeterNeumann", "\u{2014} PeterNewman")),
            Err(NoteError::NoKnownSignature)
        );
        // The same signature twice; the same key with another signature.
        let twice = format!("{GO_NOTE}{}", GO_NOTE.rsplit_once("\n\n").unwrap().1);
        let duplicate = Err(NoteError::DuplicateSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3,
        });
        assert_eq!(open(&twice), duplicate);
        let signer = NoteSigningKey::parse_signer_key(provider, GO_SKEY).unwrap();
        let mut other_text = Note::new("another text\n").unwrap();
        other_text
            .add_signature(signer.sign(&other_text).unwrap())
            .unwrap();
        let other_line = other_text
            .to_text()
            .split_once("\n\n")
            .unwrap()
            .1
            .to_owned();
        assert_eq!(open(&format!("{GO_NOTE}{other_line}")), duplicate);
        // An extra signature of an unknown key is fine; a bad one of a known key is not.
        let extra = format!(
            "{GO_NOTE}\u{2014} witness.example {}\n",
            B64.encode([7u8; 40])
        );
        assert!(open(&extra).is_ok());
        // Malformed signature lines.
        for line in [
            "- PeterNeumann x08go/ZJ\n",              // a hyphen, not an em dash
            "\u{2014}PeterNeumann x08go/ZJ\n",        // no space after the dash
            "\u{2014} PeterNeumann\n",                // no signature
            "\u{2014}  x08go/ZJ\n",                   // an empty name
            "\u{2014} Peter+Neumann x08go/ZJ\n",      // a plus in the name
            "\u{2014} Peter\u{a0}Neumann x08go/ZJ\n", // a no-break space in it
            "\u{2014} PeterNeumann x08go/ZJ=\n",      // bad base64
            "\u{2014} PeterNeumann x08go/ZJ \n",      // a trailing space
            "\u{2014} PeterNeumann x08go/Y=\n",       // four bytes: a key id only
            "\u{2014} PeterNeumann x08go/ZK\n",       // non-canonical base64
            "\n",                                     // an empty line
        ] {
            let text = format!("{GO_TEXT}\n{line}");
            assert!(open(&text).is_err(), "{line:?} was accepted");
            assert_ne!(open(&text), Err(NoteError::NoKnownSignature), "{line:?}");
        }
        // Control characters, invalid UTF-8.
        assert_eq!(
            open(&GO_NOTE.replace("If", "I\tf")),
            Err(NoteError::ControlCharacter)
        );
        assert_eq!(
            open(&GO_NOTE.replace("If", "I\rf")),
            Err(NoteError::ControlCharacter)
        );
        let mut latin1 = GO_NOTE.as_bytes().to_vec();
        latin1[0] = 0xc9;
        assert_eq!(
            Note::parse(&latin1).and_then(|n| n.verify(std::slice::from_ref(&key))),
            Err(NoteError::NotUtf8)
        );
    }

    fn a_note_with_more_than_the_maximum_of_signatures_is_refused(provider: Provider) {
        let key = NoteSigningKey::generate(provider, "log.example").unwrap();
        let mut note = Note::new("text\n").unwrap();
        note.add_signature(key.sign(&note).unwrap()).unwrap();
        let mut text = note.to_text();
        for i in 0..MAX_SIGNATURES - 1 {
            text.push_str(&format!(
                "\u{2014} w{i}.example {}\n",
                B64.encode([1u8; 68])
            ));
        }
        let parsed = Note::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.signatures().len(), MAX_SIGNATURES);
        parsed.verify(&[key.verifier_key()]).unwrap();
        text.push_str(&format!("\u{2014} one.more {}\n", B64.encode([1u8; 68])));
        assert_eq!(
            Note::parse(text.as_bytes()),
            Err(NoteError::TooManySignatures)
        );
        let huge = format!("{}\n\n{}", "a".repeat(MAX_NOTE_BYTES), text);
        assert_eq!(Note::parse(huge.as_bytes()), Err(NoteError::TooLarge));
    }

    fn texts_that_are_not_note_texts_are_refused(provider: Provider) {
        assert_eq!(Note::new("no newline"), Err(NoteError::Shape));
        assert_eq!(Note::new("a\tb\n"), Err(NoteError::ControlCharacter));
        // Blank lines inside the text are allowed: the last one separates.
        let key = NoteSigningKey::generate(provider, "log.example").unwrap();
        for text in ["\n", "a\n\nb\n", "a\n\n"] {
            let mut note = Note::new(text).unwrap();
            note.add_signature(key.sign(&note).unwrap()).unwrap();
            let parsed = Note::parse(note.to_text().as_bytes()).unwrap();
            assert_eq!(parsed.text(), text);
            parsed.verify(&[key.verifier_key()]).unwrap();
        }
    }

    /// Go's `TestNewVerifier`: every proper substring of the vkey and every
    /// one-byte change of it is refused; so are its two crafted keys (a key of the
    /// wrong length, an unknown type, each with a matching key id).
    fn every_mangling_of_a_vkey_is_refused(provider: Provider) {
        let bytes = GO_VKEY.as_bytes();
        for i in 0..=bytes.len() {
            for j in i + 1..=bytes.len() {
                if (i, j) != (0, bytes.len()) {
                    let part = std::str::from_utf8(&bytes[i..j]).unwrap();
                    assert!(VerifierKey::parse(provider, part).is_err(), "{part}");
                }
            }
        }
        let mut changed = bytes.to_vec();
        for i in 0..changed.len() {
            changed[i] += 1;
            let text = std::str::from_utf8(&changed).unwrap();
            assert!(VerifierKey::parse(provider, text).is_err(), "{text}");
            changed[i] -= 1;
        }
        // Go's crafted key ends in non-canonical base64, which this parser refuses
        // before it looks at the length; a canonical one of 33 bytes is refused too.
        assert_eq!(
            VerifierKey::parse(
                provider,
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            ),
            Err(NoteError::VerifierKeyShape)
        );
        let mut longer = B64
            .decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .unwrap();
        longer.push(0);
        let id = key_id("PeterNeumann", TYPE_ED25519, &longer[1..]);
        assert_eq!(
            VerifierKey::parse(
                provider,
                &format!("PeterNeumann+{id:08x}+{}", B64.encode(&longer))
            ),
            Err(NoteError::BadPublicKey)
        );
        assert_eq!(
            VerifierKey::parse(
                provider,
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::UnsupportedKeyType(0x65))
        );
        // Key ids are written in lowercase.
        assert_eq!(
            VerifierKey::parse(provider, &GO_VKEY.replace("c74f20a3", "C74F20A3")),
            Err(NoteError::VerifierKeyShape)
        );
    }

    /// Go's `TestNewSigner`: every proper substring of the signer key and every
    /// one-byte change of it is refused.
    fn every_mangling_of_a_signer_key_is_refused(provider: Provider) {
        let bytes = GO_SKEY.as_bytes();
        for i in 0..=bytes.len() {
            for j in i + 1..=bytes.len() {
                if (i, j) != (0, bytes.len()) {
                    let part = std::str::from_utf8(&bytes[i..j]).unwrap();
                    assert!(
                        NoteSigningKey::parse_signer_key(provider, part).is_err(),
                        "{part}"
                    );
                }
            }
        }
        let mut changed = bytes.to_vec();
        for i in 0..changed.len() {
            changed[i] += 1;
            let text = std::str::from_utf8(&changed).unwrap();
            assert!(
                NoteSigningKey::parse_signer_key(provider, text).is_err(),
                "{text}"
            );
            changed[i] -= 1;
        }
    }

    fn a_note_key_survives_its_seed_and_signer_key(provider: Provider) {
        let key = NoteSigningKey::generate(provider, "log.example/a").unwrap();
        let again =
            NoteSigningKey::from_seed(provider, "log.example/a", &key.seed().unwrap()).unwrap();
        assert_eq!(again.verifier_key(), key.verifier_key());
        let read =
            NoteSigningKey::parse_signer_key(provider, &key.to_signer_key().unwrap()).unwrap();
        assert_eq!(read.verifier_key(), key.verifier_key());
        let vkey = key.verifier_key();
        assert_eq!(
            VerifierKey::parse(provider, &vkey.to_string()).unwrap(),
            vkey
        );
        assert_eq!(
            vkey.key_id(),
            key_id("log.example/a", TYPE_ED25519, &vkey.public_key())
        );
        assert_eq!(
            NoteSigningKey::generate(provider, "a+b").unwrap_err(),
            NoteError::KeyName
        );
        assert_eq!(
            NoteSigningKey::generate(provider, "a b").unwrap_err(),
            NoteError::KeyName
        );
        let shown = format!("{key:?}");
        let seed_hex = hex::encode(&key.seed().unwrap()[..]);
        assert!(shown.contains("log.example/a"), "{shown}");
        assert!(!shown.contains(&seed_hex[..8]), "{shown}");
    }

    /// tlog-cosignature.md's example cosignature line: key id, then the timestamp
    /// its signed message shows (`time 1679315147`), then 64 bytes.
    fn the_spec_cosignature_reads_as_key_id_timestamp_signature(_provider: Provider) {
        let note = Note::parse(SPEC_COSIGNED.as_bytes()).unwrap();
        assert_eq!(note.to_text(), SPEC_COSIGNED);
        let witness = &note.signatures()[1];
        assert_eq!(
            (witness.name(), witness.key_id()),
            ("witness.example.com/w1", 0x8d66cf3f)
        );
        assert_eq!(witness.signature().len(), COSIGNATURE_LEN);
        assert_eq!(witness.signature()[..8], 1_679_315_147u64.to_be_bytes());
        assert_eq!(
            String::from_utf8(cosignature_message(1_679_315_147, note.text())).unwrap(),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    fn a_cosignature_verifies_with_its_timestamp_and_tampering_is_refused(provider: Provider) {
        let log = NoteSigningKey::generate(provider, "log.example").unwrap();
        let witness = CosignerKey::generate(provider, "witness.example").unwrap();
        let mut note =
            Note::new("log.example\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n").unwrap();
        note.add_signature(log.sign(&note).unwrap()).unwrap();
        note.add_signature(witness.cosign(&note, 1_700_000_000).unwrap())
            .unwrap();
        let keys = [log.verifier_key(), witness.verifier_key()];
        assert_eq!(keys[1].signature_type(), TYPE_COSIGNATURE_V1);
        assert_eq!(
            VerifierKey::parse(provider, &keys[1].to_string()).unwrap(),
            keys[1]
        );
        let verified = Note::parse(note.to_text().as_bytes())
            .unwrap()
            .verify(&keys)
            .unwrap();
        assert_eq!(
            verified,
            vec![
                VerifiedSignature {
                    verifier: 0,
                    timestamp: None
                },
                VerifiedSignature {
                    verifier: 1,
                    timestamp: Some(1_700_000_000)
                }
            ]
        );
        // Another timestamp, a truncated signature, the key under type 0x01.
        let bad = Err(NoteError::BadSignature {
            name: "witness.example".into(),
            key_id: witness.key_id(),
        });
        let line = &note.signatures()[1];
        let mut later = line.signature().to_vec();
        later[7] ^= 1;
        let mut short = line.signature().to_vec();
        short.pop();
        for signature in [later, short] {
            let mut tampered = Note::new(note.text()).unwrap();
            tampered
                .add_signature(NoteSignature::new(line.name(), line.key_id(), signature).unwrap())
                .unwrap();
            assert_eq!(tampered.verify(&keys), bad);
        }
        assert_eq!(
            witness.cosign(&note, 1 << 63).unwrap_err(),
            NoteError::Timestamp
        );
        // A plain Ed25519 signature is not a cosignature, nor the reverse: the key ids
        // differ with the type, so each is an unknown key to the other's vkey.
        let seed = [9u8; 32];
        let as_log = NoteSigningKey::from_seed(provider, "w.example", &seed).unwrap();
        let as_witness = CosignerKey::from_seed(provider, "w.example", &seed).unwrap();
        assert_ne!(as_log.key_id(), as_witness.key_id());
        let mut plain = Note::new(note.text()).unwrap();
        plain.add_signature(as_log.sign(&plain).unwrap()).unwrap();
        assert_eq!(
            plain.verify(&[as_witness.verifier_key()]),
            Err(NoteError::NoKnownSignature)
        );
    }

    fn an_ecdsa_line_verifies_under_its_spki_vkey(provider: Provider) {
        let key = SigningKey::from_scalar(provider, &[7; 32]).unwrap();
        let vkey = VerifierKey::ecdsa_p256("log.example", key.public()).unwrap();
        assert_eq!(vkey.signature_type(), TYPE_ECDSA);
        assert_eq!(vkey.key_id().to_be_bytes(), key.public().key_id()[..4]);
        assert_eq!(vkey.public_key(), key.public().spki_der());
        assert_eq!(
            VerifierKey::parse(provider, &vkey.to_string()).unwrap(),
            vkey
        );
        let mut note =
            Note::new("log.example\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n").unwrap();
        note.add_signature(sign_ecdsa_p256("log.example", &key, &note).unwrap())
            .unwrap();
        let parsed = Note::parse(note.to_text().as_bytes()).unwrap();
        parsed.verify(std::slice::from_ref(&vkey)).unwrap();
        let tampered = note.to_text().replacen("\n0\n", "\n1\n", 1);
        assert_eq!(
            Note::parse(tampered.as_bytes()).unwrap().verify(&[vkey]),
            Err(NoteError::BadSignature {
                name: "log.example".into(),
                key_id: u32::from_be_bytes(key.public().key_id()[..4].try_into().unwrap())
            })
        );
    }

    fn two_verifier_keys_with_one_name_and_id_are_refused(provider: Provider) {
        let key = vkey(provider, GO_VKEY);
        let note = Note::parse(GO_NOTE.as_bytes()).unwrap();
        assert_eq!(
            note.verify(&[key.clone(), key]),
            Err(NoteError::AmbiguousKey {
                name: "PeterNeumann".into(),
                key_id: 0xc74f20a3
            })
        );
    }

    crate::tests_for_every_provider!(
        the_spec_example_note_verifies_under_the_spec_vkey,
        gos_signer_key_signs_gos_note_byte_for_byte,
        a_signature_of_an_unknown_key_is_ignored_and_one_known_is_enough,
        tampered_notes_are_refused,
        a_note_with_more_than_the_maximum_of_signatures_is_refused,
        texts_that_are_not_note_texts_are_refused,
        every_mangling_of_a_vkey_is_refused,
        every_mangling_of_a_signer_key_is_refused,
        a_note_key_survives_its_seed_and_signer_key,
        the_spec_cosignature_reads_as_key_id_timestamp_signature,
        a_cosignature_verifies_with_its_timestamp_and_tampering_is_refused,
        an_ecdsa_line_verifies_under_its_spki_vkey,
        two_verifier_keys_with_one_name_and_id_are_refused,
    );

    /// Notes signed on one provider verify on the other.
    #[test]
    #[cfg(all(feature = "aws-lc", feature = "rustcrypto"))]
    fn notes_and_cosignatures_cross_between_providers() {
        for (maker, reader) in [
            (Provider::aws_lc(), Provider::rustcrypto()),
            (Provider::rustcrypto(), Provider::aws_lc()),
        ] {
            let log = NoteSigningKey::generate(maker, "log.example").unwrap();
            let witness = CosignerKey::generate(maker, "witness.example").unwrap();
            let mut note = Note::new("text\n").unwrap();
            note.add_signature(log.sign(&note).unwrap()).unwrap();
            note.add_signature(witness.cosign(&note, 1).unwrap())
                .unwrap();
            let keys = [
                VerifierKey::parse(reader, &log.verifier_key().to_string()).unwrap(),
                VerifierKey::parse(reader, &witness.verifier_key().to_string()).unwrap(),
            ];
            assert_eq!(note.verify(&keys).unwrap().len(), 2, "{maker} -> {reader}");
            let again =
                NoteSigningKey::from_seed(reader, "log.example", &log.seed().unwrap()).unwrap();
            assert_eq!(again.sign(&note).unwrap(), log.sign(&note).unwrap());
        }
    }
}
