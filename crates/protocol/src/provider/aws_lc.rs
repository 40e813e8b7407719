//! The `aws-lc` provider: AWS-LC through `aws-lc-rs`. Its P-256 (ECDH, ECDSA) and
//! AES-GCM are assembly, several times faster than portable code (BENCHMARKS.md);
//! building it needs a C compiler and CMake.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, ParsedPublicKey, ParsedPublicKeyFormat};
use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsBigEndian, Curve25519SeedBin, EcPrivateKeyBin};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, UnparsedPublicKey,
};
use zeroize::Zeroizing;

use super::{
    CryptoError, CryptoProvider, ED25519_KEY_LEN, ED25519_SIGNATURE_LEN, EcdhKey, EcdsaKey,
    Ed25519Key, POINT_LEN, SCALAR_LEN,
};

pub(super) struct AwsLc;

impl CryptoProvider for AwsLc {
    fn name(&self) -> &'static str {
        "aws-lc"
    }

    fn generate_ecdh_key(&self) -> Result<Box<dyn EcdhKey>, CryptoError> {
        let key = agreement::PrivateKey::generate(&ECDH_P256).map_err(|_| CryptoError)?;
        AwsLcEcdhKey::boxed(key)
    }

    fn ecdh_key_from_scalar(
        &self,
        scalar: &[u8; SCALAR_LEN],
    ) -> Result<Box<dyn EcdhKey>, CryptoError> {
        // AWS-LC refuses zero and scalars not below the group order.
        let key =
            agreement::PrivateKey::from_private_key(&ECDH_P256, scalar).map_err(|_| CryptoError)?;
        AwsLcEcdhKey::boxed(key)
    }

    fn check_point(&self, point: &[u8; POINT_LEN]) -> Result<(), CryptoError> {
        parse_point(point).map(|_| ())
    }

    fn hmac_sha256(&self, key: &[u8], message: &[&[u8]]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let mut context = hmac::Context::with_key(&key);
        for part in message {
            context.update(part);
        }
        context
            .sign()
            .as_ref()
            .try_into()
            .expect("HMAC-SHA256 is 32 bytes")
    }

    fn sha256(&self, message: &[&[u8]]) -> [u8; 32] {
        let mut context = digest::Context::new(&digest::SHA256);
        for part in message {
            context.update(part);
        }
        context
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }

    fn aes_256_gcm_seal(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        aes_256_gcm(key)?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), in_out)
            .map_err(|_| CryptoError)
    }

    fn aes_256_gcm_open(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let len = aes_256_gcm(key)?
            .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), in_out)
            .map_err(|_| CryptoError)?
            .len();
        in_out.truncate(len);
        Ok(())
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), CryptoError> {
        SystemRandom::new().fill(out).map_err(|_| CryptoError)
    }

    fn generate_signing_key(&self) -> Result<Box<dyn EcdsaKey>, CryptoError> {
        let key =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(|_| CryptoError)?;
        AwsLcEcdsaKey::boxed(key)
    }

    fn signing_key_from_pkcs8(&self, der: &[u8]) -> Result<Box<dyn EcdsaKey>, CryptoError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .map_err(|_| CryptoError)?;
        AwsLcEcdsaKey::boxed(key)
    }

    fn signing_key_from_scalar(
        &self,
        scalar: &[u8; SCALAR_LEN],
    ) -> Result<Box<dyn EcdsaKey>, CryptoError> {
        let public = agreement::PrivateKey::from_private_key(&ECDH_P256, scalar)
            .map_err(|_| CryptoError)?
            .compute_public_key()
            .map_err(|_| CryptoError)?;
        let key = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            scalar,
            public.as_ref(),
        )
        .map_err(|_| CryptoError)?;
        AwsLcEcdsaKey::boxed(key)
    }

    fn verify_ecdsa_p256_sha256(
        &self,
        public_key: &[u8; POINT_LEN],
        message: &[u8],
        signature_der: &[u8],
    ) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
            .verify(message, signature_der)
            .map_err(|_| CryptoError)
    }

    fn generate_ed25519_key(&self) -> Result<Box<dyn Ed25519Key>, CryptoError> {
        AwsLcEd25519Key::boxed(Ed25519KeyPair::generate().map_err(|_| CryptoError)?)
    }

    fn ed25519_key_from_seed(
        &self,
        seed: &[u8; ED25519_KEY_LEN],
    ) -> Result<Box<dyn Ed25519Key>, CryptoError> {
        // "Unchecked" only means there is no public key to compare the seed's with.
        AwsLcEd25519Key::boxed(Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| CryptoError)?)
    }

    fn verify_ed25519(
        &self,
        public_key: &[u8; ED25519_KEY_LEN],
        message: &[u8],
        signature: &[u8; ED25519_SIGNATURE_LEN],
    ) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(message, signature)
            .map_err(|_| CryptoError)
    }
}

fn aes_256_gcm(key: &[u8; 32]) -> Result<LessSafeKey, CryptoError> {
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError)?,
    ))
}

/// An uncompressed point on the curve; AWS-LC also accepts compressed points, which
/// the protocol does not.
fn parse_point(point: &[u8; POINT_LEN]) -> Result<ParsedPublicKey, CryptoError> {
    if point[0] != 0x04 {
        return Err(CryptoError);
    }
    let parsed = ParsedPublicKey::try_from(agreement::UnparsedPublicKey::new(&ECDH_P256, point))
        .map_err(|_| CryptoError)?;
    if parsed.format() != ParsedPublicKeyFormat::Uncompressed {
        return Err(CryptoError);
    }
    Ok(parsed)
}

/// AWS-LC clears the key's memory when it is dropped.
struct AwsLcEcdhKey {
    key: agreement::PrivateKey,
    public: [u8; POINT_LEN],
}

impl AwsLcEcdhKey {
    fn boxed(key: agreement::PrivateKey) -> Result<Box<dyn EcdhKey>, CryptoError> {
        let public = key.compute_public_key().map_err(|_| CryptoError)?;
        let public = public.as_ref().try_into().map_err(|_| CryptoError)?;
        Ok(Box::new(AwsLcEcdhKey { key, public }))
    }
}

impl EcdhKey for AwsLcEcdhKey {
    fn public_key(&self) -> &[u8; POINT_LEN] {
        &self.public
    }

    fn diffie_hellman(&self, peer: &[u8; POINT_LEN]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let peer = parse_point(peer)?;
        agreement::agree(&self.key, peer, CryptoError, |x| {
            let x: [u8; 32] = x.try_into().map_err(|_| CryptoError)?;
            Ok(Zeroizing::new(x))
        })
    }

    fn scalar(&self) -> Result<Zeroizing<[u8; SCALAR_LEN]>, CryptoError> {
        let bin: EcPrivateKeyBin = self.key.as_be_bytes().map_err(|_| CryptoError)?;
        let scalar = bin.as_ref().try_into().map_err(|_| CryptoError)?;
        Ok(Zeroizing::new(scalar))
    }
}

struct AwsLcEcdsaKey {
    key: EcdsaKeyPair,
    public: [u8; POINT_LEN],
}

impl AwsLcEcdsaKey {
    fn boxed(key: EcdsaKeyPair) -> Result<Box<dyn EcdsaKey>, CryptoError> {
        let public = key
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError)?;
        Ok(Box::new(AwsLcEcdsaKey { key, public }))
    }
}

impl EcdsaKey for AwsLcEcdsaKey {
    fn public_key(&self) -> &[u8; POINT_LEN] {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let signature = self
            .key
            .sign(&SystemRandom::new(), message)
            .map_err(|_| CryptoError)?;
        Ok(signature.as_ref().to_vec())
    }

    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let document = self.key.to_pkcs8v1().map_err(|_| CryptoError)?;
        Ok(Zeroizing::new(document.as_ref().to_vec()))
    }
}

/// AWS-LC clears the key's memory when it is dropped.
struct AwsLcEd25519Key {
    key: Ed25519KeyPair,
    public: [u8; ED25519_KEY_LEN],
}

impl AwsLcEd25519Key {
    fn boxed(key: Ed25519KeyPair) -> Result<Box<dyn Ed25519Key>, CryptoError> {
        let public = key
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError)?;
        Ok(Box::new(AwsLcEd25519Key { key, public }))
    }
}

impl Ed25519Key for AwsLcEd25519Key {
    fn public_key(&self) -> &[u8; ED25519_KEY_LEN] {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; ED25519_SIGNATURE_LEN], CryptoError> {
        let signature = self.key.try_sign(message).map_err(|_| CryptoError)?;
        signature.as_ref().try_into().map_err(|_| CryptoError)
    }

    fn seed(&self) -> Result<Zeroizing<[u8; ED25519_KEY_LEN]>, CryptoError> {
        let seed: Curve25519SeedBin = self
            .key
            .seed()
            .and_then(|seed| seed.as_be_bytes())
            .map_err(|_| CryptoError)?;
        let seed = seed.as_ref().try_into().map_err(|_| CryptoError)?;
        Ok(Zeroizing::new(seed))
    }
}
