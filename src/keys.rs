//! The server's long-term ECDSA P-256 signing key, and signature verification.
//!
//! The key signs session public keys, audit-log leaves and checkpoints (protocol §1,
//! §4). It is created on first start as `signing_key.pem` (PKCS#8) in the data
//! directory with mode 0600, and reused on every restart. Signatures are DER-encoded
//! ECDSA P-256 over SHA-256, deterministic per RFC 6979.
//!
//! Architecture invariant: nothing outside this module and [`crate::envelope`] names
//! a crypto crate, so the backend can change in one place.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::{Digest, Sha256};

/// File name of the signing key inside the data directory.
pub const SIGNING_KEY_FILE: &str = "signing_key.pem";

/// What can go wrong with keys and signatures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read, created or written.
    #[error("signing key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file exists but does not hold a P-256 PKCS#8 private key.
    #[error("signing key file {path} is not a PKCS#8 P-256 private key")]
    Malformed { path: PathBuf },
    /// The key file is readable or writable by users other than its owner.
    #[error(
        "signing key file {path} has mode {mode:o}; it must be accessible by its owner only (chmod 600)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    /// A public key is not a P-256 SubjectPublicKeyInfo.
    #[error("public key is not a P-256 SubjectPublicKeyInfo")]
    BadPublicKey,
    /// A signature is not valid DER or does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// The long-term signing key. Its `Debug` never shows the secret.
pub struct ServerKey {
    signing: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("key_id", &self.public.key_id_hex())
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// Loads `dir/signing_key.pem`, or creates it (mode 0600, written to a temporary
    /// file, synced and renamed into place) when it does not exist yet. Refuses a key
    /// file that others can read.
    pub fn load_or_create(dir: &Path) -> Result<ServerKey, KeyError> {
        let path = dir.join(SIGNING_KEY_FILE);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        match fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyError::Permissions { path, mode });
                }
                let pem = zeroize::Zeroizing::new(fs::read_to_string(&path).map_err(io)?);
                let signing = SigningKey::from_pkcs8_pem(&pem)
                    .map_err(|_| KeyError::Malformed { path: path.clone() })?;
                Ok(ServerKey::from_signing_key(signing))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let signing = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
                let pem = signing
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|_| KeyError::Malformed { path: path.clone() })?;
                let tmp = dir.join(format!("{SIGNING_KEY_FILE}.tmp"));
                let _ = fs::remove_file(&tmp);
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io)?;
                file.write_all(pem.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                fs::rename(&tmp, &path).map_err(io)?;
                fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
                Ok(ServerKey::from_signing_key(signing))
            }
            Err(error) => Err(io(error)),
        }
    }

    /// A key from a raw 32-byte scalar; for tests and known-answer vectors.
    pub fn from_scalar(scalar: &[u8; 32]) -> Option<ServerKey> {
        SigningKey::from_slice(scalar)
            .ok()
            .map(ServerKey::from_signing_key)
    }

    fn from_signing_key(signing: SigningKey) -> ServerKey {
        let public = PublicKey(*signing.verifying_key());
        ServerKey { signing, public }
    }

    /// DER-encoded ECDSA P-256 SHA-256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.signing.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

/// A P-256 public key: the server's, as a client sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id_hex())
    }
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo (what `GET /keys` serves).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_public_key_der(der)
            .map(PublicKey)
            .map_err(|_| KeyError::BadPublicKey)
    }

    /// The DER SubjectPublicKeyInfo encoding.
    pub fn spki_der(&self) -> Vec<u8> {
        self.0
            .to_public_key_der()
            .expect("a valid P-256 point always encodes")
            .into_vec()
    }

    /// SHA-256 of the SPKI DER: the key id clients pin.
    pub fn key_id(&self) -> [u8; 32] {
        Sha256::digest(self.spki_der()).into()
    }

    pub fn key_id_hex(&self) -> String {
        hex::encode(self.key_id())
    }

    /// Checks a DER ECDSA P-256 SHA-256 signature over `message`.
    pub fn verify(&self, message: &[u8], signature_der: &[u8]) -> Result<(), KeyError> {
        let signature = Signature::from_der(signature_der).map_err(|_| KeyError::BadSignature)?;
        self.0
            .verify(message, &signature)
            .map_err(|_| KeyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_is_owner_only_and_reused_on_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerKey::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(SIGNING_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = ServerKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public().key_id(), second.public().key_id());
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        ServerKey::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = ServerKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::Permissions { .. }), "{error}");
    }

    #[test]
    fn garbage_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(b"not a key")
            .unwrap();
        let error = ServerKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::Malformed { .. }), "{error}");
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let key = ServerKey::from_scalar(&[7; 32]).unwrap();
        let other = ServerKey::from_scalar(&[8; 32]).unwrap();
        let signature = key.sign(b"message");
        let public = PublicKey::from_spki_der(&key.public().spki_der()).unwrap();
        public.verify(b"message", &signature).unwrap();
        assert!(public.verify(b"messagf", &signature).is_err());
        assert!(other.public().verify(b"message", &signature).is_err());
        assert!(public.verify(b"message", b"\x30\x00").is_err());
    }

    #[test]
    fn debug_output_does_not_contain_the_secret() {
        let key = ServerKey::from_scalar(&[7; 32]).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("key_id"));
        assert!(!shown.contains("0707"));
    }
}
