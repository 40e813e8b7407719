//! The crypto provider interface: exactly the primitives the protocol needs, and the
//! providers compiled into this build.
//!
//! As rustls's `CryptoProvider`: a provider is a `'static` value behind one small
//! trait, [`CryptoProvider`], held through [`Provider`], a `Copy` handle. Nothing
//! installs a process-wide provider: whatever makes keys is handed one explicitly
//! (the server's state, a client), and every key remembers the provider that made
//! it, so one process can hold both (the cross-provider tests do).
//!
//! | provider | feature | built on |
//! | --- | --- | --- |
//! | `aws-lc` | `aws-lc` | AWS-LC through `aws-lc-rs` (assembly P-256 and AES-GCM; needs a C compiler) |
//! | `rustcrypto` | `rustcrypto` | `p256`, `ecdsa`, `aes-gcm`, `sha2`, `hmac`, `ed25519-dalek` (pure Rust; builds for `wasm32-unknown-unknown`) |
//!
//! Architecture invariant: the modules under `provider` are the only code in the
//! workspace that names `aws-lc-rs`, `p256`, `ecdsa`, `aes-gcm`, `hmac` or
//! `ed25519-dalek`. The
//! protocol above them (HPKE's key schedule, the envelope, SPKI encoding) is written
//! once, against this trait, and pinned by the same vectors for every provider.
//!
//! Every operation that can fail returns [`CryptoError`], which says nothing about
//! why: callers know which operation failed, and a caller that decrypts must not be
//! able to tell one cause from another.

#[cfg(feature = "aws-lc")]
mod aws_lc;
#[cfg(feature = "rustcrypto")]
mod rustcrypto;

#[cfg(not(any(feature = "aws-lc", feature = "rustcrypto")))]
compile_error!("enable at least one crypto provider feature: `aws-lc` or `rustcrypto`");

use zeroize::Zeroizing;

/// Length of a SEC1 uncompressed P-256 point (`0x04 || x || y`).
pub const POINT_LEN: usize = 65;
/// Length of a P-256 scalar, big-endian.
pub const SCALAR_LEN: usize = 32;
/// Length of an Ed25519 public key, and of the private seed it is derived from
/// (RFC 8032 §5.1.5).
pub const ED25519_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature (RFC 8032 §5.1.6).
pub const ED25519_SIGNATURE_LEN: usize = 64;

/// A provider operation failed. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cryptographic operation failed")]
pub struct CryptoError;

/// The primitives of the protocol's one cipher suite and its signature schemes: P-256
/// (ECDH and ECDSA with SHA-256), HMAC-SHA256, SHA-256, AES-256-GCM, a secure
/// random number generator, and (protocol v1.2's signed notes) Ed25519.
///
/// Contract, checked for every provider by the RFC 9180 and protocol vectors and the
/// key tests: points are SEC1 uncompressed only, and a point not on the curve is
/// refused wherever one is read; scalars are big-endian and `1 <= d < n`;
/// signatures are DER `ECDSA-Sig-Value`s over SHA-256 of the message, made with a
/// fresh random (or hedged) nonce; private keys travel as PKCS#8 v1 DER whose
/// `ECPrivateKey` carries the public key, as OpenSSL writes them. Ed25519 is pure
/// Ed25519 (no prehash, no context) with 32-byte seeds, pinned by RFC 8032's
/// vectors on every provider.
pub trait CryptoProvider: Send + Sync {
    /// The name configuration uses: `aws-lc` or `rustcrypto`.
    fn name(&self) -> &'static str;

    /// A fresh random P-256 key pair for ECDH (RFC 9180 `GenerateKeyPair`).
    fn generate_ecdh_key(&self) -> Result<Box<dyn EcdhKey>, CryptoError>;

    /// The ECDH key pair with private scalar `scalar`; fails unless `1 <= scalar < n`
    /// (the test `DeriveKeyPair`'s rejection sampling relies on).
    fn ecdh_key_from_scalar(
        &self,
        scalar: &[u8; SCALAR_LEN],
    ) -> Result<Box<dyn EcdhKey>, CryptoError>;

    /// Succeeds when `point` is an uncompressed P-256 point on the curve.
    fn check_point(&self, point: &[u8; POINT_LEN]) -> Result<(), CryptoError>;

    /// `HMAC-SHA256(key, message[0] || message[1] || ...)`.
    fn hmac_sha256(&self, key: &[u8], message: &[&[u8]]) -> [u8; 32];

    /// `SHA-256(message[0] || message[1] || ...)`.
    fn sha256(&self, message: &[&[u8]]) -> [u8; 32];

    /// AES-256-GCM encryption in place: `in_out` holds the plaintext and becomes the
    /// ciphertext followed by the 16-byte tag.
    fn aes_256_gcm_seal(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut Vec<u8>,
    ) -> Result<(), CryptoError>;

    /// AES-256-GCM decryption in place: `in_out` holds ciphertext and tag and, on
    /// success, becomes the plaintext. On failure its content is unspecified.
    fn aes_256_gcm_open(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut Vec<u8>,
    ) -> Result<(), CryptoError>;

    /// Fills `out` from a cryptographically secure generator seeded by the OS.
    fn fill_random(&self, out: &mut [u8]) -> Result<(), CryptoError>;

    /// A fresh random ECDSA P-256 signing key.
    fn generate_signing_key(&self) -> Result<Box<dyn EcdsaKey>, CryptoError>;

    /// An ECDSA P-256 signing key from PKCS#8 DER (`PrivateKeyInfo` holding an
    /// `ECPrivateKey`, as `openssl genpkey` writes it).
    fn signing_key_from_pkcs8(&self, der: &[u8]) -> Result<Box<dyn EcdsaKey>, CryptoError>;

    /// An ECDSA P-256 signing key from its private scalar (`1 <= scalar < n`).
    fn signing_key_from_scalar(
        &self,
        scalar: &[u8; SCALAR_LEN],
    ) -> Result<Box<dyn EcdsaKey>, CryptoError>;

    /// Checks a DER ECDSA P-256 signature over SHA-256 of `message` under the
    /// uncompressed point `public_key`.
    fn verify_ecdsa_p256_sha256(
        &self,
        public_key: &[u8; POINT_LEN],
        message: &[u8],
        signature_der: &[u8],
    ) -> Result<(), CryptoError>;

    // Ed25519 (RFC 8032, pure Ed25519): the log's note key and witness cosignatures
    // of protocol v1.2 (§T1, §T5). Kept in a block of their own.

    /// A fresh random Ed25519 key: a seed of 32 random bytes.
    fn generate_ed25519_key(&self) -> Result<Box<dyn Ed25519Key>, CryptoError>;

    /// The Ed25519 key whose private seed is `seed` (RFC 8032 §5.1.5: any 32 bytes are
    /// a seed).
    fn ed25519_key_from_seed(
        &self,
        seed: &[u8; ED25519_KEY_LEN],
    ) -> Result<Box<dyn Ed25519Key>, CryptoError>;

    /// Checks an Ed25519 signature over `message` under `public_key` (RFC 8032
    /// §5.1.7: `S` below the group order, the cofactorless equation `[S]B = R + [k]A`).
    fn verify_ed25519(
        &self,
        public_key: &[u8; ED25519_KEY_LEN],
        message: &[u8],
        signature: &[u8; ED25519_SIGNATURE_LEN],
    ) -> Result<(), CryptoError>;
}

/// A P-256 private key for ECDH. Implementations clear the scalar when dropped.
pub trait EcdhKey: Send + Sync {
    /// The public key, uncompressed (RFC 9180 `SerializePublicKey`).
    fn public_key(&self) -> &[u8; POINT_LEN];

    /// The x-coordinate of `d * peer`; fails when `peer` is not an uncompressed point
    /// on the curve.
    fn diffie_hellman(&self, peer: &[u8; POINT_LEN]) -> Result<Zeroizing<[u8; 32]>, CryptoError>;

    /// The private scalar, big-endian (RFC 9180 `SerializePrivateKey`).
    fn scalar(&self) -> Result<Zeroizing<[u8; SCALAR_LEN]>, CryptoError>;
}

/// An ECDSA P-256 SHA-256 signing key. Implementations clear the scalar when dropped.
pub trait EcdsaKey: Send + Sync {
    /// The public key, uncompressed.
    fn public_key(&self) -> &[u8; POINT_LEN];

    /// A DER signature over SHA-256 of `message`, with a random (or hedged) nonce.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError>;

    /// The key as PKCS#8 v1 DER, public key included.
    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

/// An Ed25519 private key. Implementations clear the seed when dropped.
pub trait Ed25519Key: Send + Sync {
    /// The public key (RFC 8032 §5.1.5).
    fn public_key(&self) -> &[u8; ED25519_KEY_LEN];

    /// The signature of `message` (RFC 8032 §5.1.6; deterministic: one message, one
    /// signature).
    fn sign(&self, message: &[u8]) -> Result<[u8; ED25519_SIGNATURE_LEN], CryptoError>;

    /// The private seed the key was derived from.
    fn seed(&self) -> Result<Zeroizing<[u8; ED25519_KEY_LEN]>, CryptoError>;
}

/// A crypto provider as the protocol holds it: a `Copy` handle to a `'static`
/// provider. Two handles are equal when they name the same provider.
#[derive(Clone, Copy)]
pub struct Provider(&'static dyn CryptoProvider);

/// Every provider name, compiled in or not, in order of preference (fastest first).
pub const PROVIDER_NAMES: [&str; 2] = ["aws-lc", "rustcrypto"];

static COMPILED_IN: &[Provider] = &[
    #[cfg(feature = "aws-lc")]
    Provider(&aws_lc::AwsLc),
    #[cfg(feature = "rustcrypto")]
    Provider(&rustcrypto::RustCrypto),
];

/// Why [`Provider::by_name`] found no provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderNameError {
    /// No provider has this name.
    #[error("there is no crypto provider `{0}`; the providers are `aws-lc` and `rustcrypto`")]
    Unknown(String),
    /// The provider exists but this build was made without its cargo feature.
    #[error("this build does not include the `{0}` provider (its cargo feature `{0}` was off)")]
    NotCompiledIn(&'static str),
}

impl Provider {
    /// AWS-LC: the fastest (assembly P-256 and AES-GCM).
    #[cfg(feature = "aws-lc")]
    pub fn aws_lc() -> Provider {
        Provider(&aws_lc::AwsLc)
    }

    /// RustCrypto: pure Rust, portable (builds for wasm32-unknown-unknown).
    #[cfg(feature = "rustcrypto")]
    pub fn rustcrypto() -> Provider {
        Provider(&rustcrypto::RustCrypto)
    }

    /// Every provider compiled into this build, fastest first.
    pub fn compiled_in() -> &'static [Provider] {
        COMPILED_IN
    }

    /// The provider configuration calls `name`, if this build has it.
    pub fn by_name(name: &str) -> Result<Provider, ProviderNameError> {
        if let Some(provider) = COMPILED_IN.iter().find(|p| p.name() == name) {
            return Ok(*provider);
        }
        match PROVIDER_NAMES.iter().find(|known| **known == name) {
            Some(known) => Err(ProviderNameError::NotCompiledIn(known)),
            None => Err(ProviderNameError::Unknown(name.to_owned())),
        }
    }

    /// The provider's name: `aws-lc` or `rustcrypto`.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

/// The fastest provider compiled in: `aws-lc` when the build has it, else
/// `rustcrypto`. A compile-time choice, not a setting: code that has a configured
/// provider passes that one.
impl Default for Provider {
    fn default() -> Provider {
        COMPILED_IN[0]
    }
}

impl std::ops::Deref for Provider {
    type Target = dyn CryptoProvider;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for Provider {
    fn eq(&self, other: &Provider) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Provider {}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Provider({})", self.name())
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_found_by_their_configuration_names() {
        for provider in Provider::compiled_in() {
            assert_eq!(Provider::by_name(provider.name()), Ok(*provider));
        }
        assert_eq!(
            Provider::by_name("openssl"),
            Err(ProviderNameError::Unknown("openssl".into()))
        );
        assert_eq!(Provider::default(), Provider::compiled_in()[0]);
    }

    #[test]
    #[cfg(all(feature = "aws-lc", feature = "rustcrypto"))]
    fn aws_lc_is_preferred_when_both_are_compiled_in() {
        assert_eq!(Provider::default(), Provider::aws_lc());
        assert_ne!(Provider::aws_lc(), Provider::rustcrypto());
    }

    #[test]
    #[cfg(not(feature = "aws-lc"))]
    fn a_provider_left_out_of_the_build_is_named_as_such() {
        assert_eq!(
            Provider::by_name("aws-lc"),
            Err(ProviderNameError::NotCompiledIn("aws-lc"))
        );
    }
}
