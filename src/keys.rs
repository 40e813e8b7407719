//! The server's long-term ECDSA P-256 signing key, and signature verification.
//!
//! The key signs session public keys, audit-log leaves and checkpoints (protocol §1,
//! §4). It is created on first start as `signing_key.pem` (PKCS#8) in the data
//! directory with mode 0600, and reused on every restart. Signatures are DER-encoded
//! ECDSA P-256 over SHA-256, made by AWS-LC (randomized nonces, as OpenSSL's).
//!
//! Architecture invariant: nothing outside this module and [`crate::envelope`] names
//! a crypto crate, so the backend can change in one place.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a
/// 66-byte BIT STRING); the 65-byte uncompressed point follows.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const POINT_LEN: usize = 65;
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

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
    signing: EcdsaKeyPair,
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
                let pem = Zeroizing::new(fs::read_to_string(&path).map_err(io)?);
                pkcs8_from_pem(&pem)
                    .and_then(|der| {
                        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der).ok()
                    })
                    .and_then(ServerKey::from_key_pair)
                    .ok_or_else(|| KeyError::Malformed { path: path.clone() })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let malformed = || KeyError::Malformed { path: path.clone() };
                let signing = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
                    .map_err(|_| malformed())?;
                let der = signing.to_pkcs8v1().map_err(|_| malformed())?;
                let pem = pkcs8_to_pem(der.as_ref());
                let key = ServerKey::from_key_pair(signing).ok_or_else(malformed)?;
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
                Ok(key)
            }
            Err(error) => Err(io(error)),
        }
    }

    /// A key from a raw 32-byte scalar; for tests and known-answer vectors.
    pub fn from_scalar(scalar: &[u8; 32]) -> Option<ServerKey> {
        use aws_lc_rs::agreement::{ECDH_P256, PrivateKey};
        let public = PrivateKey::from_private_key(&ECDH_P256, scalar)
            .ok()?
            .compute_public_key()
            .ok()?;
        EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            scalar,
            public.as_ref(),
        )
        .ok()
        .and_then(ServerKey::from_key_pair)
    }

    fn from_key_pair(signing: EcdsaKeyPair) -> Option<ServerKey> {
        let point = signing.public_key().as_ref().try_into().ok()?;
        Some(ServerKey {
            signing,
            public: PublicKey(point),
        })
    }

    /// DER-encoded ECDSA P-256 SHA-256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.signing
            .sign(&SystemRandom::new(), message)
            .expect("signing with a valid key and a working RNG cannot fail")
            .as_ref()
            .to_vec()
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

/// A P-256 public key: the server's, as a client sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; POINT_LEN]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id_hex())
    }
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo (what `GET /keys` serves).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let point: [u8; POINT_LEN] = der
            .strip_prefix(&SPKI_P256_PREFIX[..])
            .and_then(|point| point.try_into().ok())
            .ok_or(KeyError::BadPublicKey)?;
        // Uncompressed form only, and on the curve.
        if point[0] != 0x04 {
            return Err(KeyError::BadPublicKey);
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &point)
            .parse()
            .map_err(|_| KeyError::BadPublicKey)?;
        Ok(PublicKey(point))
    }

    /// The DER SubjectPublicKeyInfo encoding.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut der = SPKI_P256_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        der
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
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.0)
            .verify(message, signature_der)
            .map_err(|_| KeyError::BadSignature)
    }
}

/// The DER inside a `PRIVATE KEY` PEM block (RFC 7468), or `None`.
fn pkcs8_from_pem(pem: &str) -> Option<Zeroizing<Vec<u8>>> {
    let body = pem.trim().strip_prefix(PEM_BEGIN)?.strip_suffix(PEM_END)?;
    let base64: Zeroizing<String> = Zeroizing::new(body.split_whitespace().collect());
    STANDARD.decode(base64.as_bytes()).ok().map(Zeroizing::new)
}

/// A PKCS#8 DER key as a `PRIVATE KEY` PEM block with 64-character lines.
fn pkcs8_to_pem(der: &[u8]) -> Zeroizing<String> {
    let base64 = Zeroizing::new(STANDARD.encode(der));
    let mut pem = Zeroizing::new(String::with_capacity(base64.len() + 100));
    pem.push_str(PEM_BEGIN);
    pem.push('\n');
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    pem
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

    /// A key file written by `openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256` loads, and its key id is the SHA-256 of the SPKI
    /// OpenSSL prints (`openssl pkey -pubout -outform DER | sha256sum`).
    #[test]
    fn key_file_written_by_openssl_loads_with_openssls_key_id() {
        const OPENSSL_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJ0HG23/oyeF2VHtH
uX6OZAEp6XJBnRBWUWxZN3n8aKKhRANCAARuaTsnwQN9E2CcznyLepmhe+pIUzhN
Zv0kxh8XmxrUD2KrAjcpmf4w1TA5J1cdak3rb6vPZolaftHiQhhAMUQ5
-----END PRIVATE KEY-----
";
        let dir = tempfile::tempdir().unwrap();
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.path().join(SIGNING_KEY_FILE))
            .unwrap()
            .write_all(OPENSSL_PEM.as_bytes())
            .unwrap();
        let key = ServerKey::load_or_create(dir.path()).unwrap();
        assert_eq!(
            key.public().key_id_hex(),
            "ca92aafea3dd6dcae1fc023b2a122b22847e5e173fa4c78294c68a20c8574e7b"
        );
        key.public().verify(b"m", &key.sign(b"m")).unwrap();
    }

    #[test]
    fn created_key_file_is_a_pkcs8_pem_block() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load_or_create(dir.path()).unwrap();
        let pem = fs::read_to_string(dir.path().join(SIGNING_KEY_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
        let der = pkcs8_from_pem(&pem).unwrap();
        let again = ServerKey::from_key_pair(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der).unwrap(),
        )
        .unwrap();
        assert_eq!(again.public(), key.public());
    }

    #[test]
    fn public_key_must_be_a_p256_spki_with_a_point_on_the_curve() {
        let key = ServerKey::from_scalar(&[7; 32]).unwrap();
        let der = key.public().spki_der();
        assert_eq!(PublicKey::from_spki_der(&der).unwrap(), *key.public());
        let mut off_curve = der.clone();
        off_curve[90] ^= 1;
        assert!(PublicKey::from_spki_der(&off_curve).is_err());
        assert!(PublicKey::from_spki_der(&der[..90]).is_err());
        let mut wrong_curve = der.clone();
        wrong_curve[21] ^= 1;
        assert!(PublicKey::from_spki_der(&wrong_curve).is_err());
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
