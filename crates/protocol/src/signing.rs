//! ECDSA P-256 over SHA-256: the server's signing key and the public key clients
//! check its signatures with (protocol §1, §4).
//!
//! Signatures are DER `ECDSA-Sig-Value`s with random (or hedged) nonces, so two
//! signatures of one message differ; verify them, never compare them. A public key
//! travels as a DER SubjectPublicKeyInfo (what `GET /keys` serves), its key id is
//! the SHA-256 of that DER, and a private key as PKCS#8 DER.

use zeroize::Zeroizing;

use crate::provider::{EcdsaKey, POINT_LEN, Provider, SCALAR_LEN};

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a
/// 66-byte BIT STRING); the 65-byte uncompressed point follows.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// What can go wrong with keys and signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A public key is not a P-256 SubjectPublicKeyInfo with a point on the curve.
    #[error("public key is not a P-256 SubjectPublicKeyInfo")]
    BadPublicKey,
    /// A private key is not PKCS#8 P-256, or its scalar is out of range.
    #[error("private key is not a PKCS#8 P-256 private key")]
    BadPrivateKey,
    /// A signature is not valid DER or does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The system's random number generator failed.
    #[error("the system's random number generator is unavailable")]
    RandomUnavailable,
}

/// An ECDSA P-256 signing key on the provider that made or read it. Its `Debug`
/// shows the key id only.
pub struct SigningKey {
    key: Box<dyn EcdsaKey>,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.key_id_hex())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate(provider: Provider) -> Result<SigningKey, SignatureError> {
        let key = provider
            .generate_signing_key()
            .map_err(|_| SignatureError::RandomUnavailable)?;
        Ok(SigningKey::new(provider, key))
    }

    /// A key from PKCS#8 DER, as `openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256` writes it (PEM-decoded).
    pub fn from_pkcs8_der(provider: Provider, der: &[u8]) -> Result<SigningKey, SignatureError> {
        let key = provider
            .signing_key_from_pkcs8(der)
            .map_err(|_| SignatureError::BadPrivateKey)?;
        Ok(SigningKey::new(provider, key))
    }

    /// A key from its 32-byte big-endian scalar; for tests and known-answer vectors.
    pub fn from_scalar(
        provider: Provider,
        scalar: &[u8; SCALAR_LEN],
    ) -> Result<SigningKey, SignatureError> {
        let key = provider
            .signing_key_from_scalar(scalar)
            .map_err(|_| SignatureError::BadPrivateKey)?;
        Ok(SigningKey::new(provider, key))
    }

    fn new(provider: Provider, key: Box<dyn EcdsaKey>) -> SigningKey {
        let public = PublicKey {
            point: *key.public_key(),
            provider,
        };
        SigningKey { key, public }
    }

    /// The key as PKCS#8 v1 DER, public key included (as OpenSSL writes it).
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, SignatureError> {
        self.key
            .to_pkcs8_der()
            .map_err(|_| SignatureError::BadPrivateKey)
    }

    /// A DER ECDSA P-256 SHA-256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        self.key
            .sign(message)
            .map_err(|_| SignatureError::RandomUnavailable)
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn provider(&self) -> Provider {
        self.public.provider
    }
}

/// A P-256 public key, checked to be on the curve, with the provider that verifies
/// signatures under it. Equal when the points are.
#[derive(Clone, Copy)]
pub struct PublicKey {
    point: [u8; POINT_LEN],
    provider: Provider,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.point == other.point
    }
}

impl Eq for PublicKey {}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id_hex())
    }
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo (what `GET /keys` serves): a P-256 key, its
    /// point uncompressed and on the curve.
    pub fn from_spki_der(provider: Provider, der: &[u8]) -> Result<PublicKey, SignatureError> {
        let point: [u8; POINT_LEN] = der
            .strip_prefix(&SPKI_P256_PREFIX[..])
            .and_then(|point| point.try_into().ok())
            .ok_or(SignatureError::BadPublicKey)?;
        provider
            .check_point(&point)
            .map_err(|_| SignatureError::BadPublicKey)?;
        Ok(PublicKey { point, provider })
    }

    /// The same key, verifying on `provider`.
    pub fn with_provider(self, provider: Provider) -> PublicKey {
        PublicKey { provider, ..self }
    }

    /// The DER SubjectPublicKeyInfo encoding.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut der = SPKI_P256_PREFIX.to_vec();
        der.extend_from_slice(&self.point);
        der
    }

    /// SHA-256 of the SPKI DER: the key id clients pin.
    pub fn key_id(&self) -> [u8; 32] {
        self.provider.sha256(&[&SPKI_P256_PREFIX, &self.point])
    }

    pub fn key_id_hex(&self) -> String {
        hex::encode(self.key_id())
    }

    /// Checks a DER ECDSA P-256 SHA-256 signature over `message`.
    pub fn verify(&self, message: &[u8], signature_der: &[u8]) -> Result<(), SignatureError> {
        self.provider
            .verify_ecdsa_p256_sha256(&self.point, message, signature_der)
            .map_err(|_| SignatureError::BadSignature)
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -outform DER`;
    /// its key id is `openssl pkey -pubout -outform DER | sha256sum`.
    const OPENSSL_PKCS8_BASE64: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJ0HG23/oyeF2VHtHuX6OZAEp6XJBnRBWUWxZN3n8aKKhRANCAARuaTsnwQN9E2CcznyLepmhe+pIUzhNZv0kxh8XmxrUD2KrAjcpmf4w1TA5J1cdak3rb6vPZolaftHiQhhAMUQ5";
    const OPENSSL_KEY_ID: &str = "ca92aafea3dd6dcae1fc023b2a122b22847e5e173fa4c78294c68a20c8574e7b";

    fn base64_decode(text: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    }

    fn a_key_written_by_openssl_loads_with_openssls_key_id(provider: Provider) {
        let der = base64_decode(OPENSSL_PKCS8_BASE64);
        let key = SigningKey::from_pkcs8_der(provider, &der).unwrap();
        assert_eq!(key.public().key_id_hex(), OPENSSL_KEY_ID);
        key.public().verify(b"m", &key.sign(b"m").unwrap()).unwrap();
    }

    fn a_key_survives_pkcs8_and_spki_round_trips(provider: Provider) {
        let key = SigningKey::generate(provider).unwrap();
        let again = SigningKey::from_pkcs8_der(provider, &key.to_pkcs8_der().unwrap()).unwrap();
        assert_eq!(again.public(), key.public());
        let public = PublicKey::from_spki_der(provider, &key.public().spki_der()).unwrap();
        public.verify(b"m", &again.sign(b"m").unwrap()).unwrap();
    }

    fn malformed_private_keys_are_refused(provider: Provider) {
        let der = base64_decode(OPENSSL_PKCS8_BASE64);
        assert!(SigningKey::from_pkcs8_der(provider, b"not a key").is_err());
        assert!(SigningKey::from_pkcs8_der(provider, &der[..der.len() - 1]).is_err());
        assert!(SigningKey::from_scalar(provider, &[0; 32]).is_err());
        assert!(SigningKey::from_scalar(provider, &[0xff; 32]).is_err());
    }

    fn public_key_must_be_a_p256_spki_with_a_point_on_the_curve(provider: Provider) {
        let key = SigningKey::from_scalar(provider, &[7; 32]).unwrap();
        let der = key.public().spki_der();
        assert_eq!(
            PublicKey::from_spki_der(provider, &der).unwrap(),
            *key.public()
        );
        let mut off_curve = der.clone();
        off_curve[90] ^= 1;
        assert!(PublicKey::from_spki_der(provider, &off_curve).is_err());
        assert!(PublicKey::from_spki_der(provider, &der[..90]).is_err());
        let mut wrong_curve = der.clone();
        wrong_curve[21] ^= 1;
        assert!(PublicKey::from_spki_der(provider, &wrong_curve).is_err());
        let mut compressed = der.clone();
        compressed[26] = 0x02;
        assert!(PublicKey::from_spki_der(provider, &compressed).is_err());
    }

    fn signatures_verify_only_for_their_message_and_key(provider: Provider) {
        let key = SigningKey::from_scalar(provider, &[7; 32]).unwrap();
        let other = SigningKey::from_scalar(provider, &[8; 32]).unwrap();
        let signature = key.sign(b"message").unwrap();
        let public = PublicKey::from_spki_der(provider, &key.public().spki_der()).unwrap();
        public.verify(b"message", &signature).unwrap();
        assert!(public.verify(b"messagf", &signature).is_err());
        assert!(other.public().verify(b"message", &signature).is_err());
        assert!(public.verify(b"message", b"\x30\x00").is_err());
        assert!(public.verify(b"message", b"").is_err());
    }

    fn debug_output_does_not_contain_the_secret(provider: Provider) {
        let key = SigningKey::from_scalar(provider, &[7; 32]).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("key_id"));
        assert!(!shown.contains("0707"));
    }

    crate::tests_for_every_provider!(
        a_key_written_by_openssl_loads_with_openssls_key_id,
        a_key_survives_pkcs8_and_spki_round_trips,
        malformed_private_keys_are_refused,
        public_key_must_be_a_p256_spki_with_a_point_on_the_curve,
        signatures_verify_only_for_their_message_and_key,
        debug_output_does_not_contain_the_secret,
    );

    /// Keys and signatures made on one provider are read and verified by the other.
    #[test]
    #[cfg(all(feature = "aws-lc", feature = "rustcrypto"))]
    fn keys_and_signatures_cross_between_providers() {
        for (maker, reader) in [
            (Provider::aws_lc(), Provider::rustcrypto()),
            (Provider::rustcrypto(), Provider::aws_lc()),
        ] {
            let key = SigningKey::generate(maker).unwrap();
            let read = SigningKey::from_pkcs8_der(reader, &key.to_pkcs8_der().unwrap()).unwrap();
            assert_eq!(read.public(), key.public(), "{maker} -> {reader}");
            assert_eq!(read.public().key_id(), key.public().key_id());
            let signature = key.sign(b"message").unwrap();
            key.public()
                .with_provider(reader)
                .verify(b"message", &signature)
                .unwrap();
            read.public()
                .with_provider(maker)
                .verify(b"message", &read.sign(b"message").unwrap())
                .unwrap();
        }
    }
}
