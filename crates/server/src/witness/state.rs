//! The witnesses' durable state, `witnesses.json` beside the file log: the
//! published checkpoint note with its cosignatures, and the size each witness
//! last cosigned (so that a restart submits from where each witness is, and
//! serves what was published before it).
//!
//! Written whole to a temporary file, synced, renamed over the old one and the
//! directory synced: a crash leaves the old state or the new one. JSON because
//! an operator reads it when a witness complains.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name in the data directory.
pub const STATE_FILE: &str = "witnesses.json";

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or syncing failed.
    #[error("witness state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not the JSON this module writes.
    #[error("witness state {path} is not readable: {source}")]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kept {
    /// The published checkpoint note, cosignatures included.
    pub published: Option<String>,
    /// By witness name (the policy's).
    pub witnesses: BTreeMap<String, KeptWitness>,
}

/// What is kept of one witness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptWitness {
    /// The largest tree size it cosigned (or said it had) for this log.
    pub size: u64,
    /// When it last cosigned, POSIX seconds.
    pub cosigned_at: Option<u64>,
}

/// Reads the state at `path`; none there is the empty state.
pub fn load(path: &Path) -> Result<Kept, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Kept::default()),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|source| StateError::Format {
        path: path.to_owned(),
        source,
    })
}

/// Replaces the state at `path` with `kept`, durably.
pub fn store(path: &Path, kept: &Kept) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(kept).map_err(|source| StateError::Format {
        path: path.to_owned(),
        source,
    })?;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_stored_is_loaded_and_nothing_is_the_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        assert_eq!(load(&path).unwrap(), Kept::default());
        let mut kept = Kept {
            published: Some("a note\n".to_owned()),
            ..Kept::default()
        };
        kept.witnesses.insert(
            "w1".to_owned(),
            KeptWitness {
                size: 7,
                cosigned_at: Some(1_800_000_000),
            },
        );
        store(&path, &kept).unwrap();
        assert_eq!(load(&path).unwrap(), kept);
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(load(&path), Err(StateError::Format { .. })));
    }
}
