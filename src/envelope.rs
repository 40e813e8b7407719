//! HPKE sealing of requests, AES-256-GCM sealing of results, and the commitment
//! (protocol §2, §3).
//!
//! Suite: RFC 9180 mode_base with DHKEM(P-256, HKDF-SHA256) `0x0010`, HKDF-SHA256
//! `0x0001`, AES-256-GCM `0x0002`, from the `hpke` crate. Everything derived from the
//! HPKE context is exported once, at open time, into [`ResponseKeys`]; the context
//! itself never leaves this module.
//!
//! Architecture invariant: this module never sees Wasmtime, HTTP or JSON, and no
//! error it returns says *why* decryption failed (no oracle).

use aes_gcm::aead::{Aead as _, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::DhP256HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

type Kem = DhP256HkdfSha256;
type Kdf = HkdfSha256;
type Aead = AesGcm256;

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
}

/// A session's private key. Zeroized when dropped; `Debug` shows nothing.
pub struct SessionSecret(<Kem as hpke::Kem>::PrivateKey);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret(..)")
    }
}

/// A fresh key pair for one session.
pub fn generate_session_key() -> (SessionSecret, [u8; POINT_LEN]) {
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    let (secret, public) = Kem::gen_keypair(&mut rng);
    (SessionSecret(secret), point_bytes(&public.to_bytes()))
}

/// The key pair RFC 9180 `DeriveKeyPair(ikm)` gives; for known-answer tests.
pub fn derive_session_key(ikm: &[u8]) -> (SessionSecret, [u8; POINT_LEN]) {
    let (secret, public) = Kem::derive_keypair(ikm);
    (SessionSecret(secret), point_bytes(&public.to_bytes()))
}

fn point_bytes(bytes: &[u8]) -> [u8; POINT_LEN] {
    bytes.try_into().expect("P-256 public keys are 65 bytes")
}

/// An HPKE encapsulated key, checked to be a point on the curve.
#[derive(Clone)]
pub struct Enc(<Kem as hpke::Kem>::EncappedKey);

impl Enc {
    pub fn parse(bytes: &[u8]) -> Result<Enc, EnvelopeError> {
        if bytes.len() != POINT_LEN {
            return Err(EnvelopeError::InvalidPoint);
        }
        <Kem as hpke::Kem>::EncappedKey::from_bytes(bytes)
            .map(Enc)
            .map_err(|_| EnvelopeError::InvalidPoint)
    }

    pub fn to_bytes(&self) -> [u8; POINT_LEN] {
        point_bytes(&self.0.to_bytes())
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
/// three exports of §3. Consumes the secret: a session key opens one request.
pub fn open_request(
    secret: SessionSecret,
    session_id: &Uuid,
    enc: &Enc,
    ciphertext: &[u8],
) -> Result<OpenedRequest, EnvelopeError> {
    let info = request_info(session_id);
    let mut context =
        hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &secret.0, &enc.0, &info)
            .map_err(|_| EnvelopeError::DecryptionFailed)?;
    drop(secret);
    let plaintext = context
        .open(ciphertext, b"")
        .map_err(|_| EnvelopeError::DecryptionFailed)?;
    let keys = ResponseKeys::export(|label, out| context.export(label, out))?;
    Ok(OpenedRequest {
        plaintext: Zeroizing::new(plaintext),
        keys,
    })
}

/// Client side of §2: `SetupBaseS(pkR, info)`, `Seal(aad = "", pt)`.
pub fn seal_request(
    public_key: &[u8],
    session_id: &Uuid,
    plaintext: &[u8],
) -> Result<SealedRequest, EnvelopeError> {
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    seal_request_with_rng(public_key, session_id, plaintext, &mut rng)
}

/// [`seal_request`] with a chosen RNG: the ephemeral key is `DeriveKeyPair` of the
/// first 32 bytes it yields, which is how known-answer vectors fix `ikmE`.
pub fn seal_request_with_rng<R: hpke::rand_core::CryptoRng + hpke::rand_core::RngCore>(
    public_key: &[u8],
    session_id: &Uuid,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<SealedRequest, EnvelopeError> {
    let recipient = <Kem as hpke::Kem>::PublicKey::from_bytes(public_key)
        .map_err(|_| EnvelopeError::InvalidPoint)?;
    let info = request_info(session_id);
    let (enc, mut context) =
        hpke::setup_sender::<Aead, Kdf, Kem, R>(&OpModeS::Base, &recipient, &info, rng)
            .map_err(|_| EnvelopeError::InvalidPoint)?;
    let ciphertext = context
        .seal(plaintext, b"")
        .map_err(|_| EnvelopeError::DecryptionFailed)?;
    let keys = ResponseKeys::export(|label, out| context.export(label, out))?;
    Ok(SealedRequest {
        enc: point_bytes(&enc.to_bytes()),
        ciphertext,
        keys,
    })
}

impl ResponseKeys {
    /// §3: `key`, `nonce` and `salt` exported from the request context.
    fn export(
        mut export: impl FnMut(&[u8], &mut [u8]) -> Result<(), hpke::HpkeError>,
    ) -> Result<ResponseKeys, EnvelopeError> {
        let mut keys = ResponseKeys {
            key: Zeroizing::new([0; 32]),
            nonce: [0; 12],
            salt: Zeroizing::new([0; 32]),
        };
        let failed = |_| EnvelopeError::DecryptionFailed;
        export(RESPONSE_KEY_LABEL, &mut keys.key[..]).map_err(failed)?;
        export(RESPONSE_NONCE_LABEL, &mut keys.nonce).map_err(failed)?;
        export(COMMITMENT_SALT_LABEL, &mut keys.salt[..]).map_err(failed)?;
        Ok(keys)
    }

    /// `AES-256-GCM(key, nonce, aad = execution_id (36-char text), result_plaintext)`.
    /// The key and nonce are used for exactly one message: each HPKE context seals one
    /// result.
    pub fn seal_result(&self, execution_id: &Uuid, plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new_from_slice(&self.key[..]).expect("32-byte key");
        let aad = execution_id.hyphenated().to_string();
        cipher
            .encrypt(
                Nonce::from_slice(&self.nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail")
    }

    /// The client's inverse of [`ResponseKeys::seal_result`].
    pub fn open_result(
        &self,
        execution_id: &Uuid,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let cipher = Aes256Gcm::new_from_slice(&self.key[..]).expect("32-byte key");
        let aad = execution_id.hyphenated().to_string();
        cipher
            .decrypt(
                Nonce::from_slice(&self.nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| EnvelopeError::DecryptionFailed)
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
        let opened = open_request(secret, &session_id, &enc, &sealed.ciphertext).unwrap();
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
        let result = open_request(secret, &Uuid::new_v4(), &enc, &sealed.ciphertext);
        assert_eq!(result.err(), Some(EnvelopeError::DecryptionFailed));
    }

    #[test]
    fn tampered_ciphertext_does_not_open() {
        let session_id = Uuid::new_v4();
        let (secret, public) = generate_session_key();
        let mut sealed = seal_request(&public, &session_id, b"request").unwrap();
        sealed.ciphertext[0] ^= 1;
        let enc = Enc::parse(&sealed.enc).unwrap();
        let result = open_request(secret, &session_id, &enc, &sealed.ciphertext);
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
    use hpke::rand_core::{CryptoRng, RngCore};
    use serde_json::Value;

    const RFC9180: &str = include_str!("../tests/vectors/rfc9180_base_p256_sha256_aes256gcm.json");
    const PROTOCOL_V1: &str = include_str!("../tests/vectors/protocol_v1.json");

    fn hex_field(value: &Value, name: &str) -> Vec<u8> {
        hex::decode(
            value[name]
                .as_str()
                .unwrap_or_else(|| panic!("field {name}")),
        )
        .unwrap()
    }

    /// Yields fixed bytes: makes `gen_keypair` use a vector's `ikmE`.
    struct FixedRng(Vec<u8>);

    impl RngCore for FixedRng {
        fn next_u32(&mut self) -> u32 {
            unimplemented!("only fill_bytes is used for key generation")
        }
        fn next_u64(&mut self) -> u64 {
            unimplemented!("only fill_bytes is used for key generation")
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            assert!(dest.len() <= self.0.len(), "vector ran out of fixed bytes");
            let rest = self.0.split_off(dest.len());
            dest.copy_from_slice(&self.0);
            self.0 = rest;
        }
    }
    impl CryptoRng for FixedRng {}

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
        let (secret, public) = Kem::derive_keypair(&hex_field(vector, "ikmR"));
        assert_eq!(public.to_bytes().to_vec(), hex_field(vector, "pkRm"));
        assert_eq!(secret.to_bytes().to_vec(), hex_field(vector, "skRm"));
        let enc = Enc::parse(&hex_field(vector, "enc")).unwrap();

        // Receiver: every ciphertext opens, in sequence, to its plaintext.
        let mut receiver =
            hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &secret, &enc.0, &info).unwrap();
        // Sender: the ephemeral key from ikmE gives the vector's enc and ciphertexts.
        let mut rng = FixedRng(hex_field(vector, "ikmE"));
        let (sender_enc, mut sender) =
            hpke::setup_sender::<Aead, Kdf, Kem, _>(&OpModeS::Base, &public, &info, &mut rng)
                .unwrap();
        assert_eq!(sender_enc.to_bytes().to_vec(), hex_field(vector, "enc"));

        let encryptions = vector["encryptions"].as_array().unwrap();
        assert_eq!(encryptions.len(), 257);
        for (n, encryption) in encryptions.iter().enumerate() {
            let (aad, ct, pt) = (
                hex_field(encryption, "aad"),
                hex_field(encryption, "ct"),
                hex_field(encryption, "pt"),
            );
            assert_eq!(sender.seal(&pt, &aad).unwrap(), ct, "seal {n}");
            assert_eq!(receiver.open(&ct, &aad).unwrap(), pt, "open {n}");
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
        let mut rng = FixedRng(hex_field(hpke_fields, "ikmE"));
        let sealed =
            seal_request_with_rng(&public, &session_id, &request_plaintext, &mut rng).unwrap();
        assert_eq!(sealed.enc.to_vec(), hex_field(hpke_fields, "enc"));
        assert_eq!(sealed.ciphertext, hex_field(&v, "ciphertext"));

        // Server side.
        let (secret, _) = derive_session_key(&hex_field(hpke_fields, "ikmR"));
        let enc = Enc::parse(&sealed.enc).unwrap();
        let opened = open_request(secret, &session_id, &enc, &sealed.ciphertext).unwrap();
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
