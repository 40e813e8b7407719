//! The `rustcrypto` provider: the RustCrypto crates (`p256` and its `ecdsa`,
//! `aes-gcm`, `sha2`, `hmac`) and dalek's `ed25519-dalek`, pure Rust. Slower than AWS-LC's assembly, but it needs
//! no C compiler and builds for `wasm32-unknown-unknown`, where the OS RNG is the
//! browser's `crypto.getRandomValues` (getrandom's `js` backend).

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::{RandomizedSigner, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use p256::{FieldBytes, PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::{
    CryptoError, CryptoProvider, ED25519_KEY_LEN, ED25519_SIGNATURE_LEN, EcdhKey, EcdsaKey,
    Ed25519Key, POINT_LEN, SCALAR_LEN,
};

pub(super) struct RustCrypto;

/// Random scalars are drawn until one is in `[1, n)`: about one draw in 2^32 is not.
/// A generator that fails this many times in a row is broken.
const MAX_SCALAR_DRAWS: usize = 64;

impl CryptoProvider for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn generate_ecdh_key(&self) -> Result<Box<dyn EcdhKey>, CryptoError> {
        Ok(Box::new(RustCryptoEcdhKey::new(random_secret_key()?)))
    }

    fn ecdh_key_from_scalar(
        &self,
        scalar: &[u8; SCALAR_LEN],
    ) -> Result<Box<dyn EcdhKey>, CryptoError> {
        Ok(Box::new(RustCryptoEcdhKey::new(secret_key(scalar)?)))
    }

    fn check_point(&self, point: &[u8; POINT_LEN]) -> Result<(), CryptoError> {
        parse_point(point).map(|_| ())
    }

    fn hmac_sha256(&self, key: &[u8], message: &[&[u8]]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
        for part in message {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn sha256(&self, message: &[&[u8]]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in message {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    fn aes_256_gcm_seal(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        Aes256Gcm::new(key.into())
            .encrypt_in_place(Nonce::from_slice(nonce), aad, in_out)
            .map_err(|_| CryptoError)
    }

    fn aes_256_gcm_open(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        Aes256Gcm::new(key.into())
            .decrypt_in_place(Nonce::from_slice(nonce), aad, in_out)
            .map_err(|_| CryptoError)
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), CryptoError> {
        OsRng.try_fill_bytes(out).map_err(|_| CryptoError)
    }

    fn generate_signing_key(&self) -> Result<Box<dyn EcdsaKey>, CryptoError> {
        Ok(Box::new(RustCryptoEcdsaKey::new(random_secret_key()?)))
    }

    fn signing_key_from_pkcs8(&self, der: &[u8]) -> Result<Box<dyn EcdsaKey>, CryptoError> {
        // Checks the algorithm and curve, that the scalar is in range and that an
        // embedded public key is the scalar's.
        let secret = SecretKey::from_pkcs8_der(der).map_err(|_| CryptoError)?;
        Ok(Box::new(RustCryptoEcdsaKey::new(secret)))
    }

    fn signing_key_from_scalar(
        &self,
        scalar: &[u8; SCALAR_LEN],
    ) -> Result<Box<dyn EcdsaKey>, CryptoError> {
        Ok(Box::new(RustCryptoEcdsaKey::new(secret_key(scalar)?)))
    }

    fn verify_ecdsa_p256_sha256(
        &self,
        public_key: &[u8; POINT_LEN],
        message: &[u8],
        signature_der: &[u8],
    ) -> Result<(), CryptoError> {
        let key = VerifyingKey::from(parse_point(public_key)?);
        let signature = Signature::from_der(signature_der).map_err(|_| CryptoError)?;
        key.verify(message, &signature).map_err(|_| CryptoError)
    }

    fn generate_ed25519_key(&self) -> Result<Box<dyn Ed25519Key>, CryptoError> {
        let mut seed = Zeroizing::new([0u8; ED25519_KEY_LEN]);
        OsRng
            .try_fill_bytes(&mut seed[..])
            .map_err(|_| CryptoError)?;
        Ok(RustCryptoEd25519Key::boxed(&seed))
    }

    fn ed25519_key_from_seed(
        &self,
        seed: &[u8; ED25519_KEY_LEN],
    ) -> Result<Box<dyn Ed25519Key>, CryptoError> {
        Ok(RustCryptoEd25519Key::boxed(seed))
    }

    /// `verify`, not `verify_strict`: RFC 8032's cofactorless check with `S` below
    /// the order, as AWS-LC and Go's `crypto/ed25519` do, so that both providers
    /// (and Go's note verifier) accept the same signatures.
    fn verify_ed25519(
        &self,
        public_key: &[u8; ED25519_KEY_LEN],
        message: &[u8],
        signature: &[u8; ED25519_SIGNATURE_LEN],
    ) -> Result<(), CryptoError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(public_key).map_err(|_| CryptoError)?;
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify(message, &signature).map_err(|_| CryptoError)
    }
}

/// `1 <= scalar < n`, or an error.
fn secret_key(scalar: &[u8; SCALAR_LEN]) -> Result<SecretKey, CryptoError> {
    SecretKey::from_bytes(FieldBytes::from_slice(scalar)).map_err(|_| CryptoError)
}

/// A uniformly random scalar, by rejection, from the fallible OS generator (p256's
/// own `SecretKey::random` panics when the generator fails).
fn random_secret_key() -> Result<SecretKey, CryptoError> {
    for _ in 0..MAX_SCALAR_DRAWS {
        let mut scalar = Zeroizing::new([0u8; SCALAR_LEN]);
        OsRng
            .try_fill_bytes(&mut scalar[..])
            .map_err(|_| CryptoError)?;
        if let Ok(secret) = secret_key(&scalar) {
            return Ok(secret);
        }
    }
    Err(CryptoError)
}

/// An uncompressed point on the curve (`from_sec1_bytes` checks the equation and
/// that both coordinates are below p; it also takes compressed points, which the
/// protocol does not).
fn parse_point(point: &[u8; POINT_LEN]) -> Result<PublicKey, CryptoError> {
    if point[0] != 0x04 {
        return Err(CryptoError);
    }
    PublicKey::from_sec1_bytes(point).map_err(|_| CryptoError)
}

fn encode_point(public: &PublicKey) -> [u8; POINT_LEN] {
    public
        .to_encoded_point(false)
        .as_bytes()
        .try_into()
        .expect("an uncompressed P-256 point is 65 bytes")
}

/// `SecretKey` clears its scalar when dropped.
struct RustCryptoEcdhKey {
    secret: SecretKey,
    public: [u8; POINT_LEN],
}

impl RustCryptoEcdhKey {
    fn new(secret: SecretKey) -> RustCryptoEcdhKey {
        let public = encode_point(&secret.public_key());
        RustCryptoEcdhKey { secret, public }
    }
}

impl EcdhKey for RustCryptoEcdhKey {
    fn public_key(&self) -> &[u8; POINT_LEN] {
        &self.public
    }

    fn diffie_hellman(&self, peer: &[u8; POINT_LEN]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let peer = parse_point(peer)?;
        // `SharedSecret` clears itself when dropped.
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        Ok(Zeroizing::new((*shared.raw_secret_bytes()).into()))
    }

    fn scalar(&self) -> Result<Zeroizing<[u8; SCALAR_LEN]>, CryptoError> {
        let mut bytes = self.secret.to_bytes();
        let scalar = Zeroizing::new(bytes.into());
        bytes.as_mut_slice().zeroize();
        Ok(scalar)
    }
}

/// `SigningKey` clears its scalar when dropped.
struct RustCryptoEcdsaKey {
    key: SigningKey,
    public: [u8; POINT_LEN],
}

impl RustCryptoEcdsaKey {
    fn new(secret: SecretKey) -> RustCryptoEcdsaKey {
        let public = encode_point(&secret.public_key());
        RustCryptoEcdsaKey {
            key: SigningKey::from(secret),
            public,
        }
    }
}

impl EcdsaKey for RustCryptoEcdsaKey {
    fn public_key(&self) -> &[u8; POINT_LEN] {
        &self.public
    }

    /// RFC 6979 nonces hedged with fresh randomness (`try_sign_with_rng`): random
    /// like AWS-LC's and OpenSSL's, and safe even if the generator were weak.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let signature: Signature = self
            .key
            .try_sign_with_rng(&mut OsRng, message)
            .map_err(|_| CryptoError)?;
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let secret = SecretKey::from(self.key.as_nonzero_scalar());
        let document = secret.to_pkcs8_der().map_err(|_| CryptoError)?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }
}

/// `ed25519_dalek::SigningKey` clears its seed when dropped (its `zeroize` feature).
struct RustCryptoEd25519Key {
    key: ed25519_dalek::SigningKey,
    public: [u8; ED25519_KEY_LEN],
}

impl RustCryptoEd25519Key {
    fn boxed(seed: &[u8; ED25519_KEY_LEN]) -> Box<dyn Ed25519Key> {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = key.verifying_key().to_bytes();
        Box::new(RustCryptoEd25519Key { key, public })
    }
}

impl Ed25519Key for RustCryptoEd25519Key {
    fn public_key(&self) -> &[u8; ED25519_KEY_LEN] {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; ED25519_SIGNATURE_LEN], CryptoError> {
        use ed25519_dalek::Signer as _;
        Ok(self.key.sign(message).to_bytes())
    }

    fn seed(&self) -> Result<Zeroizing<[u8; ED25519_KEY_LEN]>, CryptoError> {
        Ok(Zeroizing::new(self.key.to_bytes()))
    }
}
