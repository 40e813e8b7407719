//! The server's long-term ECDSA P-256 signing key: its file, and signing.
//!
//! The key signs session public keys, audit-log leaves and checkpoints (protocol §1,
//! §4). It is created on first start as `signing_key.pem` (PKCS#8) in the data
//! directory with mode 0600, and reused on every restart, whichever provider reads
//! it: both read and write the same PKCS#8 (and a key `openssl genpkey` wrote).
//! Signatures are DER-encoded ECDSA P-256 over SHA-256 with random (or hedged)
//! nonces, made by [`wasm_hypervisor_protocol::signing`] on the configured provider.
//!
//! This module owns the file: PEM, permissions, atomic creation; and
//! [`ServerKey::derive`], the secrets derived from the key (cluster mode). The
//! crypto is the protocol crate's. `signing_key_file` may put the file elsewhere
//! than the data directory (a mounted secret shared by the replicas of a cluster);
//! [`ServerKey::create_new_at`] writes such a file ahead of time
//! (`wasm-hypervisor key new FILE`).
//!
//! The log's note key (protocol v1.2 §T1), the Ed25519 key of its signed-note
//! checkpoints, is kept beside it: [`load_or_create_note_key`]. Made on first
//! start from [`ServerKey::derive`], so that replicas sharing the P-256 key make
//! the same note key without sharing another file; kept as Go's signer key text
//! (`PRIVATE+KEY+<origin>+<id>+<base64>`, mode 0600), which `note.NewSigner`
//! reads; a note key file put there by the operator is used as it is.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use wasm_hypervisor_protocol::note::NoteSigningKey;
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::signing::SigningKey;
use zeroize::Zeroizing;

pub use wasm_hypervisor_protocol::signing::{PublicKey, SignatureError};

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// File name of the signing key inside the data directory.
pub const SIGNING_KEY_FILE: &str = "signing_key.pem";

/// File name of the note key in the data directory (`note_key_file`).
pub const NOTE_KEY_FILE: &str = "note_key";

/// The purpose [`ServerKey::derive`] is asked for to make the note key's seed.
const NOTE_KEY_PURPOSE: &[u8] = b"wasm-hypervisor note key v1";

/// What can go wrong with the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The note key file could not be read, created or written.
    #[error("note key file {path}: {source}")]
    NoteIo {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The note key file does not hold a signed-note Ed25519 signer key.
    #[error(
        "note key file {path} is not a signed-note Ed25519 signer key (PRIVATE+KEY+<name>+<id>+<key>)"
    )]
    NoteMalformed { path: PathBuf },
    /// The crypto provider could not make the note key from its seed.
    #[error("cannot make the note key: the crypto provider failed")]
    NoteGenerate,
    /// The note key file names another key than the log's origin: it would sign
    /// checkpoints nobody could match to this log.
    #[error("note key file {path} is the key of {name:?}, not of this log's origin {origin:?}")]
    NoteOrigin {
        path: PathBuf,
        name: String,
        origin: String,
    },
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
    /// [`ServerKey::create_new_at`] found a file already there (it never replaces
    /// a key).
    #[error("signing key file {path} already exists; a key is never overwritten")]
    Exists { path: PathBuf },
    /// A new key could not be generated (the system's RNG failed).
    #[error("cannot generate a signing key: {0}")]
    Generate(SignatureError),
}

/// The long-term signing key. Its `Debug` never shows the secret.
pub struct ServerKey {
    signing: SigningKey,
    /// HMAC-SHA256 of the key's PKCS#8 DER as stored in the file, the root of
    /// [`ServerKey::derive`]: the same on every replica that reads the same file,
    /// whatever its provider.
    derivation_root: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("key_id", &self.public().key_id_hex())
            .field("provider", &self.provider().name())
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// Loads `dir/signing_key.pem` on `provider`, or creates it (mode 0600, written
    /// to a temporary file, synced and renamed into place) when it does not exist
    /// yet. Refuses a key file that others can read.
    pub fn load_or_create(provider: Provider, dir: &Path) -> Result<ServerKey, KeyError> {
        ServerKey::load_or_create_at(provider, &dir.join(SIGNING_KEY_FILE))
    }

    /// As [`ServerKey::load_or_create`], for the key file at `path`
    /// (`signing_key_file`); its directory must exist.
    pub fn load_or_create_at(provider: Provider, path: &Path) -> Result<ServerKey, KeyError> {
        let path = path.to_owned();
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
                        let signing = SigningKey::from_pkcs8_der(provider, &der).ok()?;
                        Some(ServerKey::with_root(provider, signing, &der))
                    })
                    .ok_or_else(|| KeyError::Malformed { path: path.clone() })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let (key, der) = ServerKey::generate(provider)?;
                write_pem_file(&path, &der, Placement::Replace)?;
                Ok(key)
            }
            Err(error) => Err(io(error)),
        }
    }

    /// Generates a new key and writes it to `path` (PKCS#8 PEM, mode 0600, written
    /// to a temporary file, synced and linked into place), refusing with
    /// [`KeyError::Exists`] when `path` exists: the shared key file of a cluster's
    /// replicas, made once before they first start. Its directory must exist.
    pub fn create_new_at(provider: Provider, path: &Path) -> Result<ServerKey, KeyError> {
        let (key, der) = ServerKey::generate(provider)?;
        write_pem_file(path, &der, Placement::New)?;
        Ok(key)
    }

    /// A fresh key and its PKCS#8 DER.
    fn generate(provider: Provider) -> Result<(ServerKey, Zeroizing<Vec<u8>>), KeyError> {
        let signing = SigningKey::generate(provider).map_err(KeyError::Generate)?;
        let der = signing.to_pkcs8_der().map_err(KeyError::Generate)?;
        let key = ServerKey::with_root(provider, signing, &der);
        Ok((key, der))
    }

    /// A key from a raw 32-byte scalar; for tests and known-answer vectors.
    pub fn from_scalar(provider: Provider, scalar: &[u8; 32]) -> Option<ServerKey> {
        let signing = SigningKey::from_scalar(provider, scalar).ok()?;
        let der = signing.to_pkcs8_der().ok()?;
        Some(ServerKey::with_root(provider, signing, &der))
    }

    fn with_root(provider: Provider, signing: SigningKey, pkcs8_der: &[u8]) -> ServerKey {
        let derivation_root = Zeroizing::new(
            provider.hmac_sha256(b"wasm-hypervisor key derivation v1", &[pkcs8_der]),
        );
        ServerKey {
            signing,
            derivation_root,
        }
    }

    /// A 32-byte secret for `purpose`, derived from the private key (HMAC-SHA256
    /// of `purpose` under a root that is HMAC-SHA256 of the key file's PKCS#8
    /// DER): every process that reads the same key file derives the same secret,
    /// and nobody without the private key can. Cluster mode wraps its session
    /// wrap keys under one (`cluster::wrap`).
    pub fn derive(&self, purpose: &[u8]) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(
            self.provider()
                .hmac_sha256(self.derivation_root.as_slice(), &[purpose]),
        )
    }

    /// DER-encoded ECDSA P-256 SHA-256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.signing
            .sign(message)
            .expect("signing with a valid key and a working RNG cannot fail")
    }

    pub fn public(&self) -> &PublicKey {
        self.signing.public()
    }

    /// The provider that signs (and that verifies under [`ServerKey::public`]).
    pub fn provider(&self) -> Provider {
        self.signing.provider()
    }
}

/// Loads the note key from `path` (`note_key_file`), or makes it when the file
/// does not exist yet: the Ed25519 key whose seed is `key`'s derived secret for
/// the note key, named `origin`, written as signer key text (mode 0600, into a
/// temporary file, synced, renamed into place). Refuses a file others can read,
/// one that is not a signer key, and one whose key is named otherwise than
/// `origin` (a valid key name: the configuration checked it).
pub fn load_or_create_note_key(
    key: &ServerKey,
    origin: &str,
    path: &Path,
) -> Result<NoteSigningKey, KeyError> {
    let io = |source| KeyError::NoteIo {
        path: path.to_owned(),
        source,
    };
    let provider = key.provider();
    let note_key = match fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_owned(),
                    mode,
                });
            }
            let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
            NoteSigningKey::parse_signer_key(provider, text.trim_end_matches('\n')).map_err(
                |_| KeyError::NoteMalformed {
                    path: path.to_owned(),
                },
            )?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let seed = key.derive(NOTE_KEY_PURPOSE);
            let note_key = NoteSigningKey::from_seed(provider, origin, &seed)
                .map_err(|_| KeyError::NoteGenerate)?;
            let mut text = note_key
                .to_signer_key()
                .map_err(|_| KeyError::NoteGenerate)?;
            text.push('\n');
            write_owner_only(path, text.as_bytes(), Placement::Replace).map_err(
                |error| match error {
                    KeyError::Io { source, .. } => io(source),
                    other => other,
                },
            )?;
            note_key
        }
        Err(error) => return Err(io(error)),
    };
    if note_key.name() != origin {
        return Err(KeyError::NoteOrigin {
            path: path.to_owned(),
            name: note_key.name().to_owned(),
            origin: origin.to_owned(),
        });
    }
    Ok(note_key)
}

/// How [`write_pem_file`] puts the finished file in place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Renamed over whatever is there (a missing file found a moment earlier).
    Replace,
    /// Hard-linked, which fails if anything is there: never overwrites.
    New,
}

/// Writes `der` as PEM to `path`, as [`write_owner_only`] does.
fn write_pem_file(path: &Path, der: &[u8], placement: Placement) -> Result<(), KeyError> {
    write_owner_only(path, pkcs8_to_pem(der).as_bytes(), placement)
}

/// Writes `contents` to `path`, mode 0600: into `path.tmp` first (created anew),
/// synced, then put in place as `placement` says, and the directory synced.
fn write_owner_only(path: &Path, contents: &[u8], placement: Placement) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| SIGNING_KEY_FILE.to_owned());
    if placement == Placement::New && fs::symlink_metadata(path).is_ok() {
        return Err(KeyError::Exists {
            path: path.to_owned(),
        });
    }
    let tmp = dir.join(format!("{file_name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    let placed = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| match placement {
            Placement::Replace => fs::rename(&tmp, path),
            Placement::New => fs::hard_link(&tmp, path).and_then(|()| fs::remove_file(&tmp)),
        });
    if let Err(error) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(match error.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_owned(),
            },
            _ => io(error),
        });
    }
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
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

    fn created_key_is_owner_only_and_reused_on_restart(provider: Provider) {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerKey::load_or_create(provider, dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(SIGNING_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = ServerKey::load_or_create(provider, dir.path()).unwrap();
        assert_eq!(first.public().key_id(), second.public().key_id());
    }

    fn key_file_readable_by_others_is_refused(provider: Provider) {
        let dir = tempfile::tempdir().unwrap();
        ServerKey::load_or_create(provider, dir.path()).unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = ServerKey::load_or_create(provider, dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::Permissions { .. }), "{error}");
    }

    /// A key file written by `openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256` loads, and its key id is the SHA-256 of the SPKI
    /// OpenSSL prints (`openssl pkey -pubout -outform DER | sha256sum`).
    fn key_file_written_by_openssl_loads_with_openssls_key_id(provider: Provider) {
        const OPENSSL_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJ0HG23/oyeF2VHtH
uX6OZAEp6XJBnRBWUWxZN3n8aKKhRANCAARuaTsnwQN9E2CcznyLepmhe+pIUzhN
Zv0kxh8XmxrUD2KrAjcpmf4w1TA5J1cdak3rb6vPZolaftHiQhhAMUQ5
-----END PRIVATE KEY-----
";
        let dir = tempfile::tempdir().unwrap();
        write_key_file(dir.path(), OPENSSL_PEM.as_bytes());
        let key = ServerKey::load_or_create(provider, dir.path()).unwrap();
        assert_eq!(
            key.public().key_id_hex(),
            "ca92aafea3dd6dcae1fc023b2a122b22847e5e173fa4c78294c68a20c8574e7b"
        );
        key.public().verify(b"m", &key.sign(b"m")).unwrap();
    }

    fn created_key_file_is_a_pkcs8_pem_block(provider: Provider) {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load_or_create(provider, dir.path()).unwrap();
        let pem = fs::read_to_string(dir.path().join(SIGNING_KEY_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
        let der = pkcs8_from_pem(&pem).unwrap();
        let again = SigningKey::from_pkcs8_der(provider, &der).unwrap();
        assert_eq!(again.public(), key.public());
    }

    fn garbage_key_file_is_refused(provider: Provider) {
        let dir = tempfile::tempdir().unwrap();
        write_key_file(dir.path(), b"not a key");
        let error = ServerKey::load_or_create(provider, dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::Malformed { .. }), "{error}");
        let dir = tempfile::tempdir().unwrap();
        write_key_file(
            dir.path(),
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let error = ServerKey::load_or_create(provider, dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::Malformed { .. }), "{error}");
    }

    fn a_new_key_file_is_owner_only_loads_and_is_never_overwritten(provider: Provider) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.pem");
        let made = ServerKey::create_new_at(provider, &path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = ServerKey::load_or_create_at(provider, &path).unwrap();
        assert_eq!(loaded.public(), made.public());
        let before = fs::read(&path).unwrap();
        let error = ServerKey::create_new_at(provider, &path).unwrap_err();
        assert!(matches!(error, KeyError::Exists { .. }), "{error}");
        assert_eq!(fs::read(&path).unwrap(), before, "the first key is kept");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["shared.pem"], "no temporary file is left");
    }

    fn debug_output_does_not_contain_the_secret(provider: Provider) {
        let key = ServerKey::from_scalar(provider, &[7; 32]).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("key_id"));
        assert!(!shown.contains("0707"));
    }

    fn write_key_file(dir: &Path, contents: &[u8]) {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(SIGNING_KEY_FILE))
            .unwrap()
            .write_all(contents)
            .unwrap();
    }

    crate::tests_for_every_provider!(
        created_key_is_owner_only_and_reused_on_restart,
        key_file_readable_by_others_is_refused,
        key_file_written_by_openssl_loads_with_openssls_key_id,
        created_key_file_is_a_pkcs8_pem_block,
        garbage_key_file_is_refused,
        a_new_key_file_is_owner_only_loads_and_is_never_overwritten,
        debug_output_does_not_contain_the_secret,
    );

    /// A server that switches `crypto.provider` keeps its key: the file one provider
    /// wrote loads on the other, with the same key id.
    #[test]
    #[cfg(all(feature = "aws-lc", feature = "rustcrypto"))]
    fn key_file_created_on_one_provider_loads_on_the_other() {
        for (writer, reader) in [
            (Provider::aws_lc(), Provider::rustcrypto()),
            (Provider::rustcrypto(), Provider::aws_lc()),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let written = ServerKey::load_or_create(writer, dir.path()).unwrap();
            let read = ServerKey::load_or_create(reader, dir.path()).unwrap();
            assert_eq!(read.public(), written.public(), "{writer} -> {reader}");
            assert_eq!(read.provider(), reader);
            written.public().verify(b"m", &read.sign(b"m")).unwrap();
        }
    }
}
