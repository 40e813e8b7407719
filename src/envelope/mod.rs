//! HPKE sealing of requests, AES-256-GCM sealing of results, and the commitment
//! (protocol §2, §3).
//!
//! Suite: RFC 9180 mode_base with DHKEM(P-256, HKDF-SHA256) `0x0010`, HKDF-SHA256
//! `0x0001`, AES-256-GCM `0x0002`, in [`hpke`] over AWS-LC's primitives. Everything
//! derived from the
//! HPKE context is exported once, at open time, into [`ResponseKeys`]; the context
//! itself never leaves this module.
//!
//! Architecture invariant: this module never sees Wasmtime, HTTP or JSON, and no
//! error it returns says *why* decryption failed (no oracle).

mod hpke;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Length of a SEC1 uncompressed P-256 point: `enc` and session public keys.
pub const POINT_LEN: usize = 65;

/// `info` prefix of the request's HPKE context; the session id's text follows.
pub const REQUEST_INFO_LABEL: &[u8] = b"wasm-hypervisor v1 request ";
/// Exporter context of the result key.
pub const RESPONSE_KEY_LABEL: &[u8] = b"wasm-hypervisor v1 response key";
/// Exporter context of the result nonce.
pub const RESPONSE_NONCE_LABEL: &[u8] = b"wasm-hypervisor v1 response nonce";
/// Exporter context of the commitment salt.
pub const COMMITMENT_SALT_LABEL: &[u8] = b"wasm-hypervisor v1 commitment salt";
/// Domain-separation prefix of the commitment hash.
pub const COMMITMENT_LABEL: &[u8] = b"wasm-hypervisor v1 commitment";
/// Prefix of the message the server signs to vouch for a session key.
pub const SESSION_SIGNATURE_LABEL: &[u8] = b"wasm-hypervisor v1 session ";

/// What can go wrong opening or sealing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// `enc` or a public key is not a 65-byte uncompressed point on P-256.
    #[error("not a valid 65-byte uncompressed P-256 point")]
    InvalidPoint,
    /// The ciphertext does not open under this session (wrong key, wrong session id,
    /// tampered bytes): one error, whatever the cause.
    #[error("decryption failed")]
    DecryptionFailed,
    /// The system's random number generator failed.
    #[error("the system's random number generator is unavailable")]
    RandomUnavailable,
}

/// A session's private key. AWS-LC clears it when dropped; `Debug` shows nothing.
pub struct SessionSecret(hpke::PrivateKey);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret(..)")
    }
}

/// A fresh key pair for one session.
pub fn generate_session_key() -> (SessionSecret, [u8; POINT_LEN]) {
    let secret = hpke::PrivateKey::generate().expect("the system RNG works");
    let public = *secret.public_key();
    (SessionSecret(secret), public)
}

/// The key pair RFC 9180 `DeriveKeyPair(ikm)` gives; for known-answer tests.
pub fn derive_session_key(ikm: &[u8]) -> (SessionSecret, [u8; POINT_LEN]) {
    let secret = hpke::PrivateKey::derive(ikm).expect("some candidate is a valid scalar");
    let public = *secret.public_key();
    (SessionSecret(secret), public)
}

/// An HPKE encapsulated key, checked to be an uncompressed point on the curve.
#[derive(Clone, Copy)]
pub struct Enc([u8; POINT_LEN]);

impl Enc {
    pub fn parse(bytes: &[u8]) -> Result<Enc, EnvelopeError> {
        let point: [u8; POINT_LEN] = bytes.try_into().map_err(|_| EnvelopeError::InvalidPoint)?;
        hpke::parse_point(&point).map_err(|_| EnvelopeError::InvalidPoint)?;
        Ok(Enc(point))
    }

    pub fn to_bytes(&self) -> [u8; POINT_LEN] {
        self.0
    }
}

/// `info = "wasm-hypervisor v1 request " || session_id` (the 36-char text form).
pub fn request_info(session_id: &Uuid) -> Vec<u8> {
    let mut info = REQUEST_INFO_LABEL.to_vec();
    info.extend_from_slice(session_id.hyphenated().to_string().as_bytes());
    info
}

/// `"wasm-hypervisor v1 session " || session_id || public_key`: what the server
/// signs for `POST /sessions`.
pub fn session_signature_message(session_id: &Uuid, public_key: &[u8]) -> Vec<u8> {
    let mut message = SESSION_SIGNATURE_LABEL.to_vec();
    message.extend_from_slice(session_id.hyphenated().to_string().as_bytes());
    message.extend_from_slice(public_key);
    message
}

/// Everything the result side needs from the request's HPKE context.
pub struct ResponseKeys {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 12],
    salt: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ResponseKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseKeys(..)")
    }
}

/// A request opened by the server.
pub struct OpenedRequest {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub keys: ResponseKeys,
}

/// A request sealed by a client.
pub struct SealedRequest {
    pub enc: [u8; POINT_LEN],
    pub ciphertext: Vec<u8>,
    pub keys: ResponseKeys,
}

/// Server side of §2: `SetupBaseR(enc, skR, info)`, `Open(aad = "", ct)`, then the
/// three exports of §3. Consumes the secret: a session key opens one request. The
/// ciphertext is decrypted in place: its buffer becomes the plaintext.
pub fn open_request(
    secret: SessionSecret,
    session_id: &Uuid,
    enc: &Enc,
    ciphertext: Vec<u8>,
) -> Result<OpenedRequest, EnvelopeError> {
    let info = request_info(session_id);
    let context = hpke::setup_base_r(&enc.0, &secret.0, &info);
    drop(secret);
    let mut context = context.map_err(|_| EnvelopeError::DecryptionFailed)?;
    let mut plaintext = Zeroizing::new(ciphertext);
    context
        .open_in_place(b"", &mut plaintext)
        .map_err(|_| EnvelopeError::DecryptionFailed)?;
    let keys = ResponseKeys::export(&context)?;
    Ok(OpenedRequest { plaintext, keys })
}

/// Client side of §2: `SetupBaseS(pkR, info)` with a fresh ephemeral key,
/// `Seal(aad = "", pt)`.
pub fn seal_request(
    public_key: &[u8],
    session_id: &Uuid,
    plaintext: &[u8],
) -> Result<SealedRequest, EnvelopeError> {
    let ephemeral = hpke::PrivateKey::generate().map_err(|_| EnvelopeError::InvalidPoint)?;
    seal_request_with(&ephemeral, public_key, session_id, plaintext)
}

/// [`seal_request`] with the ephemeral key `DeriveKeyPair(ikm_e)`: how known-answer
/// vectors fix it.
pub fn seal_request_with_ikm(
    ikm_e: &[u8],
    public_key: &[u8],
    session_id: &Uuid,
    plaintext: &[u8],
) -> Result<SealedRequest, EnvelopeError> {
    let ephemeral = hpke::PrivateKey::derive(ikm_e).map_err(|_| EnvelopeError::InvalidPoint)?;
    seal_request_with(&ephemeral, public_key, session_id, plaintext)
}

fn seal_request_with(
    ephemeral: &hpke::PrivateKey,
    public_key: &[u8],
    session_id: &Uuid,
    plaintext: &[u8],
) -> Result<SealedRequest, EnvelopeError> {
    let recipient: [u8; POINT_LEN] = public_key
        .try_into()
        .map_err(|_| EnvelopeError::InvalidPoint)?;
    let info = request_info(session_id);
    let (enc, mut context) = hpke::setup_base_s(ephemeral, &recipient, &info)
        .map_err(|_| EnvelopeError::InvalidPoint)?;
    let ciphertext = context
        .seal(b"", plaintext)
        .map_err(|_| EnvelopeError::DecryptionFailed)?;
    let keys = ResponseKeys::export(&context)?;
    Ok(SealedRequest {
        enc,
        ciphertext,
        keys,
    })
}

impl ResponseKeys {
    /// §3: `key`, `nonce` and `salt` exported from the request context.
    fn export(context: &hpke::Context) -> Result<ResponseKeys, EnvelopeError> {
        let mut keys = ResponseKeys {
            key: Zeroizing::new([0; 32]),
            nonce: [0; 12],
            salt: Zeroizing::new([0; 32]),
        };
        let failed = |_| EnvelopeError::DecryptionFailed;
        context
            .export(RESPONSE_KEY_LABEL, &mut keys.key[..])
            .map_err(failed)?;
        context
            .export(RESPONSE_NONCE_LABEL, &mut keys.nonce)
            .map_err(failed)?;
        context
            .export(COMMITMENT_SALT_LABEL, &mut keys.salt[..])
            .map_err(failed)?;
        Ok(keys)
    }

    fn result_key(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.key[..]).expect("32-byte key"))
    }

    /// `AES-256-GCM(key, nonce, aad = execution_id (36-char text), result_plaintext)`.
    /// The key and nonce are used for exactly one message: each HPKE context seals one
    /// result.
    pub fn seal_result(&self, execution_id: &Uuid, plaintext: &[u8]) -> Vec<u8> {
        let aad = execution_id.hyphenated().to_string();
        let mut in_out = Vec::with_capacity(plaintext.len() + hpke::NT);
        in_out.extend_from_slice(plaintext);
        self.result_key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(aad.as_bytes()),
                &mut in_out,
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        in_out
    }

    /// The client's inverse of [`ResponseKeys::seal_result`].
    pub fn open_result(
        &self,
        execution_id: &Uuid,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let aad = execution_id.hyphenated().to_string();
        let mut in_out = ciphertext.to_vec();
        let len = self
            .result_key()
            .open_in_place(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(aad.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| EnvelopeError::DecryptionFailed)?
            .len();
        in_out.truncate(len);
        Ok(in_out)
    }

    /// The commitment over the exact request and result plaintexts.
    pub fn commitment(&self, request_plaintext: &[u8], result_plaintext: &[u8]) -> [u8; 32] {
        commitment(
            &self.salt,
            &sha256(request_plaintext),
            &sha256(result_plaintext),
        )
    }

    /// The salt, which a client keeps in its receipt to open the commitment later.
    pub fn salt(&self) -> [u8; 32] {
        *self.salt
    }
}

/// ```text
/// commitment = SHA-256("wasm-hypervisor v1 commitment" || salt
///                      || SHA-256(request_plaintext) || SHA-256(result_plaintext))
/// ```
pub fn commitment(
    salt: &[u8; 32],
    request_sha256: &[u8; 32],
    result_sha256: &[u8; 32],
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(COMMITMENT_LABEL);
    hasher.update(salt);
    hasher.update(request_sha256);
    hasher.update(result_sha256);
    hasher.finalize().into()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `N` bytes from the system's cryptographic RNG (AWS-LC's, seeded by the OS).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], EnvelopeError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| EnvelopeError::RandomUnavailable)?;
    Ok(bytes)
}

/// Constant-time equality of two digests.
pub fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_result_round_trip() {
        let session_id = Uuid::new_v4();
        let (secret, public) = generate_session_key();
        let sealed = seal_request(&public, &session_id, b"request").unwrap();
        let enc = Enc::parse(&sealed.enc).unwrap();
        let opened = open_request(secret, &session_id, &enc, sealed.ciphertext.clone()).unwrap();
        assert_eq!(&opened.plaintext[..], b"request");

        let execution_id = Uuid::new_v4();
        let ct = opened.keys.seal_result(&execution_id, b"result");
        assert_eq!(
            sealed.keys.open_result(&execution_id, &ct).unwrap(),
            b"result"
        );
        assert_eq!(
            sealed.keys.commitment(b"request", b"result"),
            opened.keys.commitment(b"request", b"result")
        );
        // The result is bound to its execution id.
        assert_eq!(
            sealed.keys.open_result(&Uuid::new_v4(), &ct),
            Err(EnvelopeError::DecryptionFailed)
        );
    }

    #[test]
    fn request_sealed_for_another_session_id_does_not_open() {
        let (secret, public) = generate_session_key();
        let sealed = seal_request(&public, &Uuid::new_v4(), b"request").unwrap();
        let enc = Enc::parse(&sealed.enc).unwrap();
        let result = open_request(secret, &Uuid::new_v4(), &enc, sealed.ciphertext);
        assert_eq!(result.err(), Some(EnvelopeError::DecryptionFailed));
    }

    #[test]
    fn tampered_ciphertext_does_not_open() {
        let session_id = Uuid::new_v4();
        let (secret, public) = generate_session_key();
        let mut sealed = seal_request(&public, &session_id, b"request").unwrap();
        sealed.ciphertext[0] ^= 1;
        let enc = Enc::parse(&sealed.enc).unwrap();
        let result = open_request(secret, &session_id, &enc, sealed.ciphertext.clone());
        assert_eq!(result.err(), Some(EnvelopeError::DecryptionFailed));
    }

    #[test]
    fn enc_must_be_an_uncompressed_point_on_the_curve() {
        assert!(Enc::parse(&[4; 65]).is_err());
        assert!(Enc::parse(&[0; 65]).is_err());
        assert!(Enc::parse(&[4; 33]).is_err());
        let (_, public) = generate_session_key();
        assert!(Enc::parse(&public).is_ok());
    }

    #[test]
    fn commitment_depends_on_every_input() {
        let base = commitment(&[1; 32], &[2; 32], &[3; 32]);
        assert_ne!(base, commitment(&[9; 32], &[2; 32], &[3; 32]));
        assert_ne!(base, commitment(&[1; 32], &[9; 32], &[3; 32]));
        assert_ne!(base, commitment(&[1; 32], &[2; 32], &[9; 32]));
    }
}

/// Known-answer tests from vectors computed outside this project: the official RFC
/// 9180 vector for this exact suite, and a protocol-v1 vector made with Python's
/// pyhpke and cryptography (`tools/protocol_vector.py`).
#[cfg(test)]
mod known_answer_tests {
    use super::*;
    use serde_json::Value;

    const RFC9180: &str =
        include_str!("../../tests/vectors/rfc9180_base_p256_sha256_aes256gcm.json");
    const PROTOCOL_V1: &str = include_str!("../../tests/vectors/protocol_v1.json");

    fn hex_field(value: &Value, name: &str) -> Vec<u8> {
        hex::decode(
            value[name]
                .as_str()
                .unwrap_or_else(|| panic!("field {name}")),
        )
        .unwrap()
    }

    #[test]
    fn rfc9180_vector_for_this_suite_receiver_and_sender() {
        let file: Value = serde_json::from_str(RFC9180).unwrap();
        let vector = &file["vectors"][0];
        assert_eq!(
            (
                vector["mode"].as_u64(),
                vector["kem_id"].as_u64(),
                vector["kdf_id"].as_u64(),
                vector["aead_id"].as_u64()
            ),
            (Some(0), Some(16), Some(1), Some(2))
        );
        let info = hex_field(vector, "info");
        let recipient = hpke::PrivateKey::derive(&hex_field(vector, "ikmR")).unwrap();
        assert_eq!(recipient.public_key().to_vec(), hex_field(vector, "pkRm"));
        assert_eq!(recipient.scalar(), hex_field(vector, "skRm"));
        let ephemeral = hpke::PrivateKey::derive(&hex_field(vector, "ikmE")).unwrap();
        assert_eq!(ephemeral.public_key().to_vec(), hex_field(vector, "pkEm"));
        assert_eq!(ephemeral.scalar(), hex_field(vector, "skEm"));
        let enc = Enc::parse(&hex_field(vector, "enc")).unwrap();

        // Receiver: every ciphertext opens, in sequence, to its plaintext.
        let mut receiver = hpke::setup_base_r(&enc.0, &recipient, &info).unwrap();
        // Sender: the ephemeral key from ikmE gives the vector's enc and ciphertexts.
        let (sender_enc, mut sender) =
            hpke::setup_base_s(&ephemeral, recipient.public_key(), &info).unwrap();
        assert_eq!(sender_enc.to_vec(), hex_field(vector, "enc"));

        let encryptions = vector["encryptions"].as_array().unwrap();
        assert_eq!(encryptions.len(), 257);
        for (n, encryption) in encryptions.iter().enumerate() {
            let (aad, ct, pt) = (
                hex_field(encryption, "aad"),
                hex_field(encryption, "ct"),
                hex_field(encryption, "pt"),
            );
            assert_eq!(sender.seal(&aad, &pt).unwrap(), ct, "seal {n}");
            let mut in_out = ct.clone();
            receiver.open_in_place(&aad, &mut in_out).unwrap();
            assert_eq!(in_out, pt, "open {n}");
        }
        for export in vector["exports"].as_array().unwrap() {
            let context = hex_field(export, "exporter_context");
            let mut out = vec![0u8; export["L"].as_u64().unwrap() as usize];
            receiver.export(&context, &mut out).unwrap();
            assert_eq!(out, hex_field(export, "exported_value"));
            sender.export(&context, &mut out).unwrap();
            assert_eq!(out, hex_field(export, "exported_value"));
        }
    }

    #[test]
    fn protocol_v1_vector_matches_byte_for_byte() {
        let v: Value = serde_json::from_str(PROTOCOL_V1).unwrap();
        let hpke_fields = &v["hpke"];
        let session_id = Uuid::parse_str(v["session_id"].as_str().unwrap()).unwrap();
        let request_plaintext = hex_field(&v, "request_plaintext");
        let result_plaintext = hex_field(&v, "result_plaintext");
        assert_eq!(request_info(&session_id), hex_field(hpke_fields, "info"));

        let (_, public) = derive_session_key(&hex_field(hpke_fields, "ikmR"));
        assert_eq!(public.to_vec(), hex_field(hpke_fields, "pkR"));
        assert_eq!(
            session_signature_message(&session_id, &public),
            hex_field(&v, "session_signature_message")
        );

        // Client side, with the vector's ephemeral key.
        let sealed = seal_request_with_ikm(
            &hex_field(hpke_fields, "ikmE"),
            &public,
            &session_id,
            &request_plaintext,
        )
        .unwrap();
        assert_eq!(sealed.enc.to_vec(), hex_field(hpke_fields, "enc"));
        assert_eq!(sealed.ciphertext, hex_field(&v, "ciphertext"));

        // Server side.
        let (secret, _) = derive_session_key(&hex_field(hpke_fields, "ikmR"));
        let enc = Enc::parse(&sealed.enc).unwrap();
        let opened = open_request(secret, &session_id, &enc, sealed.ciphertext.clone()).unwrap();
        assert_eq!(&opened.plaintext[..], &request_plaintext[..]);
        let exports = &v["exports"];
        assert_eq!(opened.keys.key.to_vec(), hex_field(exports, "response_key"));
        assert_eq!(
            opened.keys.nonce.to_vec(),
            hex_field(exports, "response_nonce")
        );
        assert_eq!(
            opened.keys.salt().to_vec(),
            hex_field(exports, "commitment_salt")
        );

        let execution_id = Uuid::parse_str(v["execution_id"].as_str().unwrap()).unwrap();
        let result_ciphertext = opened.keys.seal_result(&execution_id, &result_plaintext);
        assert_eq!(result_ciphertext, hex_field(&v, "result_ciphertext"));
        assert_eq!(
            sealed
                .keys
                .open_result(&execution_id, &result_ciphertext)
                .unwrap(),
            result_plaintext
        );
        let commitment = opened
            .keys
            .commitment(&request_plaintext, &result_plaintext);
        assert_eq!(commitment.to_vec(), hex_field(&v, "commitment"));

        // The leaf and its hash (protocol §4).
        let leaf = crate::audit::Leaf {
            execution_id,
            timestamp_ms: v["timestamp_ms"].as_u64().unwrap(),
            commitment,
        };
        assert_eq!(leaf.to_bytes().to_vec(), hex_field(&v, "leaf"));
        assert_eq!(leaf.hash().to_vec(), hex_field(&v, "leaf_hash"));

        // The signing key: SPKI, key id, and signatures made by another library.
        let signing = &v["signing_key"];
        let scalar: [u8; 32] = hex_field(signing, "d").try_into().unwrap();
        let key = crate::keys::ServerKey::from_scalar(&scalar).unwrap();
        assert_eq!(key.public().spki_der(), hex_field(signing, "spki_der"));
        assert_eq!(
            key.public().key_id_hex(),
            signing["key_id"].as_str().unwrap()
        );
        let public_key = key.public();
        public_key
            .verify(
                &hex_field(&v, "session_signature_message"),
                &hex_field(&v, "session_signature_der"),
            )
            .unwrap();
        public_key
            .verify(&leaf.to_bytes(), &hex_field(&v, "leaf_signature_der"))
            .unwrap();
        let checkpoint = &v["checkpoint"];
        public_key
            .verify(
                checkpoint["body"].as_str().unwrap().as_bytes(),
                &hex_field(checkpoint, "signature_der"),
            )
            .unwrap();
        // And ours verify under the key the other library derived.
        let python_key =
            crate::keys::PublicKey::from_spki_der(&hex_field(signing, "spki_der")).unwrap();
        python_key
            .verify(b"message", &key.sign(b"message"))
            .unwrap();
    }
}
