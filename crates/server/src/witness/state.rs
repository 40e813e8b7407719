//! The witnesses' durable state, `witnesses.json` beside the file log: the
//! published checkpoint note with its cosignatures, and the size each witness
//! last cosigned (so that a restart submits from where each witness is, and
//! serves what was published before it).
//!
//! Written whole to a temporary file, synced, renamed over the old one and the
//! directory synced: a crash leaves the old state or the new one. JSON because
//! an operator reads it when a witness complains.
//!
//! In cluster mode the state is the replicas' [`Shared`] instead, kept by a
//! [`SharedStore`] (`cluster::witness`, one row in PostgreSQL): one replica at a
//! time submits and writes it (the one [`SharedStore::lead`] says leads), every
//! replica reads it when a write notifies it ([`SharedStore::listen`]) and
//! serves the published checkpoint it names.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The state file's name in the data directory.
pub(crate) const STATE_FILE: &str = "witnesses.json";

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
pub(crate) struct Kept {
    /// The published checkpoint note, cosignatures included.
    pub published: Option<String>,
    /// By witness name (the policy's).
    pub witnesses: BTreeMap<String, KeptWitness>,
}

/// What is kept of one witness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeptWitness {
    /// The largest tree size it cosigned (or said it had) for this log.
    pub size: u64,
    /// When it last cosigned, POSIX seconds.
    pub cosigned_at: Option<u64>,
}

/// What the replicas of a cluster share: the published checkpoint and, for every
/// replica's `/health`, what the submitting replica knows of each witness.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    /// The published checkpoint note, cosignatures included.
    pub published: Option<String>,
    /// The submitting replica's reason to publish nothing, if any.
    pub problem: Option<String>,
    /// By witness name (the policy's).
    pub witnesses: BTreeMap<String, SharedWitness>,
}

/// What the replicas share of one witness.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SharedWitness {
    /// The largest tree size it cosigned (or said it had) for this origin.
    pub size: Option<u64>,
    /// The size of the last checkpoint of this log it cosigned.
    pub cosigned: Option<u64>,
    /// Its last valid cosignature line (`— <name> <base64>`), of `cosigned`.
    pub cosignature: Option<String>,
    /// When it last cosigned, POSIX seconds.
    pub cosigned_at: Option<u64>,
    /// Failures by kind since the submitting replica took over.
    pub failures: BTreeMap<String, u64>,
    /// The last failure, in words.
    pub last_error: Option<String>,
}

/// What [`SharedStore::lead`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// This replica has just become the one that submits: it reads the shared
    /// state afresh (another replica may have written it since).
    Acquired,
    /// This replica still submits.
    Held,
    /// Another replica submits (or the database cannot be reached).
    Follower,
}

/// Where a cluster's replicas keep [`Shared`] (PostgreSQL, `cluster::witness`).
#[async_trait::async_trait]
pub trait SharedStore: Send + Sync + 'static {
    /// Takes the submitters' lease if it is free, or checks this replica still
    /// holds it. A replica that dies or loses its database connection loses it.
    async fn lead(&self) -> Lead;
    /// The shared state as the submitting replica last wrote it (the default
    /// state if none was ever written).
    async fn load(&self) -> Result<Shared, String>;
    /// Replaces the shared state, and notifies every replica's
    /// [`SharedStore::listen`]; refused unless this replica holds the lease.
    async fn store(&self, shared: &Shared) -> Result<(), String>;
    /// Makes sure `changed` hears of every later [`SharedStore::store`], by any
    /// replica (a `LISTEN` connection of this replica's own): reconnects one
    /// that was lost, and does nothing while it lives. The follower calls it at
    /// each fallback poll; a write it missed meanwhile waits for that poll.
    /// Whether it listens now.
    async fn listen(&self, changed: Arc<Notify>) -> bool;
}

/// Reads the state at `path`; none there is the empty state.
pub(crate) fn load(path: &Path) -> Result<Kept, StateError> {
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
pub(crate) fn store(path: &Path, kept: &Kept) -> Result<(), StateError> {
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
