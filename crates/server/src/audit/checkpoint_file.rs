//! The last signed checkpoint a backend persisted beside the log, in its data
//! directory: what every open checks the log against, so that a log that lost
//! records, or was rolled back, is refused rather than served.
//!
//! Both backends use it: the file log as `checkpoint`, cluster mode as
//! `cluster_checkpoint` (one per replica). The format is the C2SP checkpoint
//! body (three lines), then the base64 DER signature on a fourth line. Written
//! atomically (temporary file, sync, rename, sync the directory), mode 0600.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::AuditError;
use crate::keys::PublicKey;
use wasm_hypervisor_protocol::checkpoint::{Checkpoint, SignedCheckpoint};
use wasm_hypervisor_protocol::merkle::MerkleTree;

/// How far the persisted checkpoint may lag behind the log while appends go on.
/// Persisting costs a signature, a write and two syncs; once a second bounds that
/// cost under load, and a clean close always persists the exact tree.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the persisted checkpoint at `path` and checks its signature under `key`,
/// if the file exists.
pub(crate) fn read(path: &Path, key: &PublicKey) -> Result<Option<SignedCheckpoint>, AuditError> {
    let path = path.to_owned();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AuditError::Io { path, source }),
    };
    let corrupt = |problem: &str| AuditError::Corrupt {
        path: path.clone(),
        offset: 0,
        problem: problem.to_owned(),
    };
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.len() != 4 {
        return Err(corrupt("expected three body lines and a signature line"));
    }
    let signature_line = lines.pop().expect("four lines");
    let body: String = lines.concat();
    let checkpoint = Checkpoint::parse(&body).map_err(|error| corrupt(&error.to_string()))?;
    let signature = B64
        .decode(signature_line.trim_end_matches('\n'))
        .map_err(|_| corrupt("the signature line is not base64"))?;
    key.verify(body.as_bytes(), &signature)
        .map_err(|_| corrupt("the signature does not verify under this server's key"))?;
    Ok(Some(SignedCheckpoint {
        checkpoint,
        signature,
    }))
}

/// Writes `dir/name` in this format, atomically.
pub(crate) fn write(dir: &Path, name: &str, signed: &SignedCheckpoint) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut text = signed.checkpoint.body();
    text.push_str(&B64.encode(&signed.signature));
    text.push('\n');
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// How a tree fails to contain a persisted checkpoint's tree. Each backend words
/// it for its own error (a damaged file, a rolled-back database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotContained {
    /// The checkpoint names another log.
    Origin { checkpoint: String },
    /// The tree is smaller than the checkpoint's.
    Smaller { size: u64, covered: u64 },
    /// The tree's first `covered` leaves hash to another root.
    OtherRoot { covered: u64 },
}

/// Whether `tree` contains the tree `stored` signed, under the log name `origin`:
/// at least as many leaves, and the same root at the checkpoint's size. History
/// is never rewritten, so any other tree is a lost or a foreign history.
pub(crate) fn check_contained(
    tree: &MerkleTree,
    stored: &SignedCheckpoint,
    origin: &str,
) -> Result<(), NotContained> {
    let checkpoint = &stored.checkpoint;
    if checkpoint.origin != origin {
        return Err(NotContained::Origin {
            checkpoint: checkpoint.origin.clone(),
        });
    }
    let covered = checkpoint.tree_size;
    if tree.size() < covered {
        return Err(NotContained::Smaller {
            size: tree.size(),
            covered,
        });
    }
    let root = tree.root(covered).expect("size checked against the tree");
    if !crate::envelope::digest_eq(&root, &checkpoint.root_hash) {
        return Err(NotContained::OtherRoot { covered });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keys::ServerKey;

    fn key(scalar: u8) -> Arc<ServerKey> {
        Arc::new(
            ServerKey::from_scalar(crate::envelope::Provider::default(), &[scalar; 32]).unwrap(),
        )
    }

    fn signed(key: &ServerKey, tree: &MerkleTree, origin: &str) -> SignedCheckpoint {
        let checkpoint = Checkpoint {
            origin: origin.to_owned(),
            tree_size: tree.size(),
            root_hash: tree.root(tree.size()).unwrap(),
        };
        let signature = key.sign(checkpoint.body().as_bytes());
        SignedCheckpoint {
            checkpoint,
            signature,
        }
    }

    fn tree_of(leaves: u8) -> MerkleTree {
        MerkleTree::from_leaf_hashes((0..leaves).map(|n| [n; 32]))
    }

    #[test]
    fn a_written_checkpoint_reads_back_only_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let stored = signed(&key(7), &tree_of(3), "test.example/log");
        write(dir.path(), "checkpoint", &stored).unwrap();
        let path = dir.path().join("checkpoint");
        let read_back = read(&path, key(7).public()).unwrap().unwrap();
        assert_eq!(read_back.checkpoint, stored.checkpoint);
        assert!(matches!(
            read(&path, key(8).public()),
            Err(AuditError::Corrupt { problem, .. }) if problem.contains("signature")
        ));
        assert!(
            read(&dir.path().join("none"), key(7).public())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_tree_contains_the_checkpoints_of_its_prefixes_only() {
        let stored = signed(&key(7), &tree_of(3), "test.example/log");
        assert_eq!(
            check_contained(&tree_of(5), &stored, "test.example/log"),
            Ok(())
        );
        assert_eq!(
            check_contained(&tree_of(2), &stored, "test.example/log"),
            Err(NotContained::Smaller {
                size: 2,
                covered: 3
            })
        );
        let other = MerkleTree::from_leaf_hashes((0..5).map(|n| [n + 1; 32]));
        assert_eq!(
            check_contained(&other, &stored, "test.example/log"),
            Err(NotContained::OtherRoot { covered: 3 })
        );
        assert!(matches!(
            check_contained(&tree_of(5), &stored, "other/log"),
            Err(NotContained::Origin { .. })
        ));
    }
}
