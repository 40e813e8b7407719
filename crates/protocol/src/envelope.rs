//! HPKE sealing of requests, AES-256-GCM sealing of results, the commitment and the
//! session-signature message (protocol §1, §2, §3).
//!
//! Suite: RFC 9180 mode_base with DHKEM(P-256, HKDF-SHA256) `0x0010`, HKDF-SHA256
//! `0x0001`, AES-256-GCM `0x0002`, in [`crate::hpke`] over a [`Provider`].
//! Everything derived from the HPKE context is exported once, at open (or seal)
//! time, into [`ResponseKeys`]; the context itself never leaves this module.
//!
//! Keys remember their provider: [`SessionSecret`] and [`ResponseKeys`] use the one
//! that made them, so only the functions that make something from nothing take a
//! provider.
//!
//! No error here says *why* decryption failed (no oracle).

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::hpke;
use crate::provider::Provider;

/// Length of a SEC1 uncompressed P-256 point: `enc` and session public keys.
pub const POINT_LEN: usize = hpke::NPK;

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
/// Prefix of the message the server signs to vouch for a batch of session keys
/// (protocol v1.1 §A).
pub const SESSIONS_SIGNATURE_LABEL: &[u8] = b"wasm-hypervisor v1 sessions ";

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

/// A session's private key. The provider clears it when dropped; `Debug` shows
/// nothing.
pub struct SessionSecret(pub(crate) hpke::PrivateKey);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret(..)")
    }
}

impl SessionSecret {
    /// The provider that made this key, and that opens requests sealed to it.
    pub fn provider(&self) -> Provider {
        self.0.provider()
    }
}

/// A fresh key pair for one session.
pub fn generate_session_key(
    provider: Provider,
) -> Result<(SessionSecret, [u8; POINT_LEN]), EnvelopeError> {
    let secret =
        hpke::PrivateKey::generate(provider).map_err(|_| EnvelopeError::RandomUnavailable)?;
    let public = *secret.public_key();
    Ok((SessionSecret(secret), public))
}

/// The key pair RFC 9180 `DeriveKeyPair(ikm)` gives; for known-answer tests. Fails
/// only if no candidate is a valid scalar (about 2^-8192).
pub fn derive_session_key(
    provider: Provider,
    ikm: &[u8],
) -> Result<(SessionSecret, [u8; POINT_LEN]), EnvelopeError> {
    let secret =
        hpke::PrivateKey::derive(provider, ikm).map_err(|_| EnvelopeError::InvalidPoint)?;
    let public = *secret.public_key();
    Ok((SessionSecret(secret), public))
}

/// An HPKE encapsulated key, checked to be an uncompressed point on the curve.
#[derive(Clone, Copy)]
pub struct Enc([u8; POINT_LEN]);

impl Enc {
    /// Checks `bytes` with `provider` (any provider gives the same answer).
    pub fn parse(provider: Provider, bytes: &[u8]) -> Result<Enc, EnvelopeError> {
        let point: [u8; POINT_LEN] = bytes.try_into().map_err(|_| EnvelopeError::InvalidPoint)?;
        hpke::check_point(provider, &point).map_err(|_| EnvelopeError::InvalidPoint)?;
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

/// Protocol v1.1 §A: `"wasm-hypervisor v1 sessions " || session_id_1 ||
/// public_key_1 || … || session_id_N || public_key_N`, ids as 36-character text,
/// keys as 65 bytes, in the order of the batch: what the server signs once for
/// `POST /sessions {"count": N}`.
pub fn sessions_signature_message<'a>(
    sessions: impl IntoIterator<Item = (&'a Uuid, &'a [u8; POINT_LEN])>,
) -> Vec<u8> {
    let mut message = SESSIONS_SIGNATURE_LABEL.to_vec();
    for (session_id, public_key) in sessions {
        message.extend_from_slice(
            session_id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        message.extend_from_slice(public_key);
    }
    message
}

/// Everything the result side needs from the request's HPKE context, on the
/// provider that opened (or sealed) the request.
pub struct ResponseKeys {
    provider: Provider,
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
/// three exports of §3, on the secret's provider. Consumes the secret: a session
/// key opens one request. The ciphertext is decrypted in place: its buffer becomes
/// the plaintext.
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
    provider: Provider,
    public_key: &[u8],
    session_id: &Uuid,
    plaintext: &[u8],
) -> Result<SealedRequest, EnvelopeError> {
    let ephemeral =
        hpke::PrivateKey::generate(provider).map_err(|_| EnvelopeError::RandomUnavailable)?;
    seal_request_with(&ephemeral, public_key, session_id, plaintext)
}

/// [`seal_request`] with the ephemeral key `DeriveKeyPair(ikm_e)`: how known-answer
/// vectors fix it.
pub fn seal_request_with_ikm(
    provider: Provider,
    ikm_e: &[u8],
    public_key: &[u8],
    session_id: &Uuid,
    plaintext: &[u8],
) -> Result<SealedRequest, EnvelopeError> {
    let ephemeral =
        hpke::PrivateKey::derive(provider, ikm_e).map_err(|_| EnvelopeError::InvalidPoint)?;
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
            provider: context.provider(),
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

    /// `AES-256-GCM(key, nonce, aad = execution_id (36-char text), result_plaintext)`.
    /// The key and nonce are used for exactly one message: each HPKE context seals one
    /// result.
    pub fn seal_result(&self, execution_id: &Uuid, plaintext: &[u8]) -> Vec<u8> {
        let mut in_out = Vec::with_capacity(plaintext.len() + hpke::NT);
        in_out.extend_from_slice(plaintext);
        self.seal_result_in_place(execution_id, &mut in_out);
        in_out
    }

    /// [`ResponseKeys::seal_result`] in place: `in_out` holds the result
    /// plaintext and becomes its ciphertext, the tag appended. With
    /// [`hpke::NT`] bytes of spare capacity (as
    /// [`write_result`](crate::plaintext::write_result) leaves) the buffer is
    /// never reallocated, so no copy of the plaintext is left behind.
    pub fn seal_result_in_place(&self, execution_id: &Uuid, in_out: &mut Vec<u8>) {
        let aad = execution_id.hyphenated().to_string();
        self.provider
            .aes_256_gcm_seal(&self.key, &self.nonce, aad.as_bytes(), in_out)
            .expect("AES-GCM encryption of an in-memory buffer under 64 GiB cannot fail");
    }

    /// The client's inverse of [`ResponseKeys::seal_result`].
    pub fn open_result(
        &self,
        execution_id: &Uuid,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let aad = execution_id.hyphenated().to_string();
        let mut in_out = ciphertext.to_vec();
        self.provider
            .aes_256_gcm_open(&self.key, &self.nonce, aad.as_bytes(), &mut in_out)
            .map_err(|_| EnvelopeError::DecryptionFailed)?;
        Ok(in_out)
    }

    /// The commitment over the exact request and result plaintexts.
    pub fn commitment(&self, request_plaintext: &[u8], result_plaintext: &[u8]) -> [u8; 32] {
        let provider = self.provider;
        commitment(
            provider,
            &self.salt,
            &provider.sha256(&[request_plaintext]),
            &provider.sha256(&[result_plaintext]),
        )
    }

    /// The salt, which a client keeps in its receipt to open the commitment later.
    pub fn salt(&self) -> [u8; 32] {
        *self.salt
    }

    #[cfg(test)]
    pub(crate) fn key_and_nonce(&self) -> ([u8; 32], [u8; 12]) {
        (*self.key, self.nonce)
    }
}

/// ```text
/// commitment = SHA-256("wasm-hypervisor v1 commitment" || salt
///                      || SHA-256(request_plaintext) || SHA-256(result_plaintext))
/// ```
pub fn commitment(
    provider: Provider,
    salt: &[u8; 32],
    request_sha256: &[u8; 32],
    result_sha256: &[u8; 32],
) -> [u8; 32] {
    provider.sha256(&[COMMITMENT_LABEL, salt, request_sha256, result_sha256])
}

/// `N` bytes from the provider's cryptographic RNG (seeded by the OS).
pub fn random_bytes<const N: usize>(provider: Provider) -> Result<[u8; N], EnvelopeError> {
    let mut bytes = [0u8; N];
    provider
        .fill_random(&mut bytes)
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

    fn request_round_trip_and_result_round_trip(provider: Provider) {
        let session_id = Uuid::from_u128(1);
        let (secret, public) = generate_session_key(provider).unwrap();
        let sealed = seal_request(provider, &public, &session_id, b"request").unwrap();
        let enc = Enc::parse(provider, &sealed.enc).unwrap();
        let opened = open_request(secret, &session_id, &enc, sealed.ciphertext.clone()).unwrap();
        assert_eq!(&opened.plaintext[..], b"request");

        let execution_id = Uuid::from_u128(2);
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
            sealed.keys.open_result(&Uuid::from_u128(3), &ct),
            Err(EnvelopeError::DecryptionFailed)
        );
    }

    fn request_sealed_for_another_session_id_does_not_open(provider: Provider) {
        let (secret, public) = generate_session_key(provider).unwrap();
        let sealed = seal_request(provider, &public, &Uuid::from_u128(1), b"request").unwrap();
        let enc = Enc::parse(provider, &sealed.enc).unwrap();
        let result = open_request(secret, &Uuid::from_u128(2), &enc, sealed.ciphertext);
        assert_eq!(result.err(), Some(EnvelopeError::DecryptionFailed));
    }

    fn tampered_ciphertext_does_not_open(provider: Provider) {
        let session_id = Uuid::from_u128(1);
        let (secret, public) = generate_session_key(provider).unwrap();
        let mut sealed = seal_request(provider, &public, &session_id, b"request").unwrap();
        sealed.ciphertext[0] ^= 1;
        let enc = Enc::parse(provider, &sealed.enc).unwrap();
        let result = open_request(secret, &session_id, &enc, sealed.ciphertext.clone());
        assert_eq!(result.err(), Some(EnvelopeError::DecryptionFailed));
    }

    fn ciphertext_shorter_than_a_tag_does_not_open(provider: Provider) {
        let session_id = Uuid::from_u128(1);
        let (secret, public) = generate_session_key(provider).unwrap();
        let sealed = seal_request(provider, &public, &session_id, b"").unwrap();
        assert_eq!(sealed.ciphertext.len(), hpke::NT);
        let enc = Enc::parse(provider, &sealed.enc).unwrap();
        let result = open_request(secret, &session_id, &enc, sealed.ciphertext[1..].to_vec());
        assert_eq!(result.err(), Some(EnvelopeError::DecryptionFailed));
        assert_eq!(
            sealed.keys.open_result(&session_id, &[0; 15]),
            Err(EnvelopeError::DecryptionFailed)
        );
    }

    fn enc_must_be_an_uncompressed_point_on_the_curve(provider: Provider) {
        assert!(Enc::parse(provider, &[4; 65]).is_err());
        assert!(Enc::parse(provider, &[0; 65]).is_err());
        assert!(Enc::parse(provider, &[4; 33]).is_err());
        let (_, public) = generate_session_key(provider).unwrap();
        assert!(Enc::parse(provider, &public).is_ok());
    }

    fn commitment_depends_on_every_input(provider: Provider) {
        let base = commitment(provider, &[1; 32], &[2; 32], &[3; 32]);
        assert_ne!(base, commitment(provider, &[9; 32], &[2; 32], &[3; 32]));
        assert_ne!(base, commitment(provider, &[1; 32], &[9; 32], &[3; 32]));
        assert_ne!(base, commitment(provider, &[1; 32], &[2; 32], &[9; 32]));
    }

    fn random_bytes_differ_between_calls(provider: Provider) {
        let a: [u8; 32] = random_bytes(provider).unwrap();
        let b: [u8; 32] = random_bytes(provider).unwrap();
        assert_ne!(a, b);
    }

    crate::tests_for_every_provider!(
        request_round_trip_and_result_round_trip,
        request_sealed_for_another_session_id_does_not_open,
        tampered_ciphertext_does_not_open,
        ciphertext_shorter_than_a_tag_does_not_open,
        enc_must_be_an_uncompressed_point_on_the_curve,
        commitment_depends_on_every_input,
        random_bytes_differ_between_calls,
    );

    /// A request sealed on one provider opens on the other, and the result back.
    #[test]
    #[cfg(all(feature = "aws-lc", feature = "rustcrypto"))]
    fn a_request_sealed_on_one_provider_opens_on_the_other() {
        for (client, server) in [
            (Provider::aws_lc(), Provider::rustcrypto()),
            (Provider::rustcrypto(), Provider::aws_lc()),
        ] {
            let session_id = Uuid::from_u128(7);
            let (secret, public) = generate_session_key(server).unwrap();
            let sealed = seal_request(client, &public, &session_id, b"request").unwrap();
            let enc = Enc::parse(server, &sealed.enc).unwrap();
            let opened = open_request(secret, &session_id, &enc, sealed.ciphertext).unwrap();
            assert_eq!(&opened.plaintext[..], b"request", "{client} -> {server}");
            let ct = opened.keys.seal_result(&session_id, b"result");
            assert_eq!(
                sealed.keys.open_result(&session_id, &ct).unwrap(),
                b"result"
            );
            assert_eq!(
                sealed.keys.commitment(b"request", b"result"),
                opened.keys.commitment(b"request", b"result")
            );
        }
    }
}
