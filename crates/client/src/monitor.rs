//! A monitor of the log (protocol v1.2 §T6, `log monitor`): it follows the log
//! from its checkpoint note and its tiles alone (c2sp.org/tlog-tiles), as any
//! third party can, and refuses, naming it, a log that is not the one it saw
//! before.
//!
//! One run ([`Client::monitor`]):
//! 1. `GET /tlog/checkpoint`, checked against a C2SP tlog-policy: a log key of the
//!    policy signed it, every known signature verifies, the witnesses' cosignatures
//!    make the quorum ([`check_checkpoint`]);
//! 2. compared with the checkpoint of the last run, kept in the state directory
//!    ([`StateDir`]): the same origin, no fewer entries (else a *rollback*), the
//!    same root at the same size (else a *fork*);
//! 3. the tiles the next step needs ([`tiles_needed`]) read from the log, then
//!    checked ([`verify_tiles`]): they hash to the new checkpoint's root, every
//!    full tile hashes to its entry in the tile above it (so every hash read is one
//!    the root vouches for, as Go's `tlog.TileHashReader` makes sure), the RFC 9162
//!    consistency proof from the old size computed from them verifies (else a
//!    *fork*: the authenticated tree of the new checkpoint does not extend the old
//!    one), and every new entry of the entry bundles is a 57-byte v1 leaf (version
//!    byte `0x01`) that hashes to its leaf hash;
//! 4. the new checkpoint note saved, atomically and owner-only, for the next run.
//!
//! Steps 1 to 3 are pure functions over bytes, tested without HTTP; only
//! [`Client::monitor`] and [`Client::tlog_tile`] talk to the server. The first run
//! (an empty state) trusts the log's first checkpoint it sees, as every monitor
//! must, and reads every entry. A refused checkpoint never replaces the state: a
//! rollback's or a fork's note is kept beside it ([`REFUSED_FILE`]) as evidence,
//! since two checkpoints signed by one key that no consistency proof links prove
//! that the log misbehaved.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use wasm_hypervisor_protocol::checkpoint::Checkpoint;
use wasm_hypervisor_protocol::encoding::encode_base64;
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::merkle::{self, Hash};
use wasm_hypervisor_protocol::note::Note;
use wasm_hypervisor_protocol::policy::{Policy, PolicyError};
use wasm_hypervisor_protocol::tiles::{
    self, HASH_SIZE, MAX_ENTRY_LEN, TILE_WIDTH, Tile, TileError, TileLevel, TileProofError,
};

use crate::http::success_body;
use crate::{Client, ClientError, retry};

/// The state directory's file holding the last checkpoint note the monitor
/// accepted, verbatim.
pub const STATE_FILE: &str = "checkpoint";
/// The state directory's file holding the last checkpoint note refused as a
/// rollback or a fork, verbatim: the evidence.
pub const REFUSED_FILE: &str = "refused-checkpoint";

/// Why a run of the monitor failed. The first word of each message names the
/// kind of failure (the CLI's exit code follows it).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The checkpoint note is malformed, no log of the policy signed it, or the
    /// signature of a key the policy knows does not verify.
    #[error("bad signature: {0}")]
    BadSignature(PolicyError),
    /// The checkpoint's verified cosignatures do not make the policy's quorum.
    #[error(
        "missing quorum: the checkpoint's witness cosignatures do not make the policy's quorum"
    )]
    MissingQuorum,
    /// The log is smaller than the checkpoint seen before.
    #[error(
        "rollback: the log has {size} entries, fewer than the {state_size} of the checkpoint seen before"
    )]
    Rollback { state_size: u64, size: u64 },
    /// Two checkpoints of one size with different roots.
    #[error(
        "fork: the log has {size} entries with root {root}, but the checkpoint seen before has root {state_root} at that size"
    )]
    ForkSameSize {
        size: u64,
        root: String,
        state_root: String,
    },
    /// The log's tree, authenticated by its checkpoint, does not extend the tree of
    /// the checkpoint seen before: no consistency proof holds.
    #[error(
        "fork: the log at {size} entries does not extend the checkpoint seen before at {state_size} (no consistency proof holds)"
    )]
    ForkInconsistent { state_size: u64, size: u64 },
    /// A tile is malformed or does not hash to what the checkpoint's root vouches
    /// for.
    #[error("bad tile: {0}")]
    Tile(TileError),
    /// An entry is not a v1 leaf, or does not hash to its leaf hash in the tiles.
    #[error("bad entry: entry {index} {why}")]
    Entry { index: u64, why: &'static str },
    /// A tile the check needs was not read (a bug of [`tiles_needed`]).
    #[error("tile {path} was needed but not read")]
    TileNotRead { path: String },
    /// The state holds a checkpoint of another log.
    #[error("the state holds a checkpoint of the log `{state_origin}`, not of `{origin}`")]
    OtherLog {
        state_origin: String,
        origin: String,
    },
    /// The state directory or a file in it could not be read or written.
    #[error("state {}: {source}", path.display())]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state file is not a checkpoint note.
    #[error("state {}: not a checkpoint note", path.display())]
    StateCorrupt { path: PathBuf },
    /// The log could not be read: the server unreachable, an HTTP error, a tile the
    /// checkpoint covers not served.
    #[error("unreachable: {0}")]
    Fetch(#[from] ClientError),
}

/// What a run that succeeded did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub origin: String,
    /// The size of the checkpoint seen before (0 on the first run).
    pub old_size: u64,
    pub new_size: u64,
    /// Entries read from the entry bundles and checked.
    pub entries_read: u64,
    /// Tiles read from the log: hash tiles and entry bundles.
    pub tiles_read: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "consistent: {} {} → {} entries ({} entries read, {} tiles read)",
            self.origin, self.old_size, self.new_size, self.entries_read, self.tiles_read
        )
    }
}

/// Checks a checkpoint note against `policy` and against the checkpoint seen
/// before (`state`), if any: same origin, no rollback, no other root at the same
/// size. Returns the new checkpoint; whether it extends the old one at a larger
/// size is for [`verify_tiles`] to prove.
pub fn check_checkpoint(
    policy: &Policy,
    state: Option<&Checkpoint>,
    note: &[u8],
) -> Result<Checkpoint, MonitorError> {
    // `verify_checkpoint` refuses a note for its quorum, or for the note itself
    // (`PolicyError::Checkpoint`: its shape, a signature, its log).
    let verified = policy
        .verify_checkpoint(note)
        .map_err(|error| match error {
            PolicyError::QuorumNotMet => MonitorError::MissingQuorum,
            other => MonitorError::BadSignature(other),
        })?;
    let new = verified.checkpoint;
    let Some(old) = state else {
        return Ok(new);
    };
    if old.origin != new.origin {
        return Err(MonitorError::OtherLog {
            state_origin: old.origin.clone(),
            origin: new.origin,
        });
    }
    if new.tree_size < old.tree_size {
        return Err(MonitorError::Rollback {
            state_size: old.tree_size,
            size: new.tree_size,
        });
    }
    if new.tree_size == old.tree_size && new.root_hash != old.root_hash {
        return Err(MonitorError::ForkSameSize {
            size: new.tree_size,
            root: encode_base64(&new.root_hash),
            state_root: encode_base64(&old.root_hash),
        });
    }
    Ok(new)
}

/// Every tile [`verify_tiles`] reads to go from a checkpoint of `old_size`
/// entries (0: none seen) to one of `new_size > old_size`: the hash tiles the new
/// root and the consistency proof are computed from, the level-0 tiles of the new
/// entries, the tile above every full tile read (to authenticate it), and the
/// entry bundles of the new entries.
pub fn tiles_needed(old_size: u64, new_size: u64) -> Result<Vec<Tile>, TileError> {
    let mut hashes: BTreeSet<Tile> = tiles::tiles_for_root(new_size)?.into_iter().collect();
    if old_size > 0 && old_size < new_size {
        hashes.extend(tiles::tiles_for_consistency(old_size, new_size)?);
    }
    let width = u64::from(TILE_WIDTH);
    let mut bundles = Vec::new();
    for index in old_size / width..new_size.div_ceil(width) {
        let tile_width = (new_size - index * width).min(width) as u16;
        hashes.insert(Tile::hashes(0, index, tile_width)?);
        bundles.push(Tile::entries(index, tile_width)?);
    }
    // Every full tile's parent, up to the partial ones (which the root reads).
    let mut pending: Vec<Tile> = hashes.iter().copied().collect();
    while let Some(tile) = pending.pop() {
        if let Some(parent) = parent(&tile, new_size)?
            && hashes.insert(parent)
        {
            pending.push(parent);
        }
    }
    let mut needed: Vec<Tile> = hashes.into_iter().collect();
    needed.extend(bundles);
    Ok(needed)
}

/// The tile above a full hash tile, in the tree of `size` entries; `None` for a
/// partial tile (the root vouches for it) or an entry bundle.
fn parent(tile: &Tile, size: u64) -> Result<Option<Tile>, TileError> {
    let TileLevel::Hashes(level) = tile.level() else {
        return Ok(None);
    };
    if !tile.is_full() {
        return Ok(None);
    }
    let above = level.checked_add(1).ok_or(TileError::Level)?;
    let width = u64::from(TILE_WIDTH);
    let index = tile.index() / width;
    let items = size.checked_shr(8 * u32::from(above)).unwrap_or(0);
    let tile_width = items.saturating_sub(index * width).min(width) as u16;
    Tile::hashes(above, index, tile_width).map(Some)
}

/// Checks the tiles read (`read`, by tile; [`tiles_needed`] says which) for the
/// step from `old` (none on a first run) to `new`, larger: they hash to the new
/// root, each full tile to its entry in the tile above, the tree they make
/// extends `old`'s, and every entry of the bundles read is a v1 leaf that hashes to
/// its leaf. Returns the count of new entries.
pub fn verify_tiles(
    old: Option<&Checkpoint>,
    new: &Checkpoint,
    read: &BTreeMap<Tile, Vec<u8>>,
) -> Result<u64, MonitorError> {
    let old_size = old.map_or(0, |old| old.tree_size);
    let size = new.tree_size;
    let reader = |tile: &Tile| read.get(tile).cloned().ok_or(());
    let root = tiles::root(size, reader).map_err(proof_error)?;
    if root != new.root_hash {
        return Err(MonitorError::Tile(TileError::RootMismatch));
    }
    authenticate(size, read)?;
    if let Some(old) = old.filter(|old| old.tree_size > 0) {
        let proof = tiles::consistency_proof(old_size, size, reader).map_err(proof_error)?;
        // Every hash the proof holds comes from an authenticated tile: a proof that
        // fails is the log's own tree not extending the old one.
        if merkle::verify_consistency(old_size, size, &old.root_hash, &root, &proof).is_err() {
            return Err(MonitorError::ForkInconsistent {
                state_size: old_size,
                size,
            });
        }
    }
    // From the start of the first bundle read: every entry read is checked, the
    // ones before `old_size` again (a partial bundle of the last run grew).
    let start = old_size - old_size % u64::from(TILE_WIDTH);
    let leaf_hashes =
        tiles::verified_leaf_hashes(start, size, &root, reader).map_err(proof_error)?;
    check_entries(start, size, &leaf_hashes, read)?;
    Ok(size - old_size)
}

/// Checks that every hash tile read is one the root vouches for: a full tile
/// hashes to its entry in the tile above it; a partial tile is one the root was
/// computed from (each of its hashes enters the root). The root was checked
/// first, so the induction starts from the partial tiles at the top.
fn authenticate(size: u64, read: &BTreeMap<Tile, Vec<u8>>) -> Result<(), MonitorError> {
    let partial: BTreeSet<Tile> = tiles::tiles_for_root(size)
        .map_err(MonitorError::Tile)?
        .into_iter()
        .collect();
    for (tile, bytes) in read {
        let TileLevel::Hashes(_) = tile.level() else {
            continue;
        };
        match parent(tile, size).map_err(MonitorError::Tile)? {
            Some(parent) => {
                let above = read.get(&parent).ok_or_else(|| MonitorError::TileNotRead {
                    path: parent.path(),
                })?;
                let hash = tiles::full_tile_hash(bytes).map_err(MonitorError::Tile)?;
                let at = (tile.index() % u64::from(TILE_WIDTH)) as usize * HASH_SIZE;
                if above.get(at..at + HASH_SIZE) != Some(&hash[..]) {
                    return Err(MonitorError::Tile(TileError::TileHashMismatch {
                        path: tile.path(),
                    }));
                }
            }
            None if partial.contains(tile) => {}
            None => {
                return Err(MonitorError::Tile(TileError::BeyondTree {
                    path: tile.path(),
                    size,
                }));
            }
        }
    }
    Ok(())
}

/// Checks the entries `start..size` of the entry bundles read against their
/// authenticated leaf hashes (`leaf_hashes[i]` is entry `start + i`'s); `start`
/// is the first entry of a bundle.
fn check_entries(
    start: u64,
    size: u64,
    leaf_hashes: &[Hash],
    read: &BTreeMap<Tile, Vec<u8>>,
) -> Result<(), MonitorError> {
    let width = u64::from(TILE_WIDTH);
    for index in start / width..size.div_ceil(width) {
        let bundle_width = (size - index * width).min(width) as u16;
        let bundle = Tile::entries(index, bundle_width).map_err(MonitorError::Tile)?;
        let bytes = read.get(&bundle).ok_or_else(|| MonitorError::TileNotRead {
            path: bundle.path(),
        })?;
        let entries = tiles::parse_entry_bundle(bytes, usize::from(bundle_width))
            .map_err(MonitorError::Tile)?;
        for (at, entry) in entries.into_iter().enumerate() {
            let entry_index = index * width + at as u64;
            let position = entry_index - start;
            if Leaf::parse(entry).is_none() {
                return Err(MonitorError::Entry {
                    index: entry_index,
                    why: "is not a 57-byte v1 leaf (version byte 0x01)",
                });
            }
            if leaf_hashes.get(position as usize) != Some(&merkle::leaf_hash(entry)) {
                return Err(MonitorError::Entry {
                    index: entry_index,
                    why: "does not hash to its leaf hash in the tiles",
                });
            }
        }
    }
    Ok(())
}

fn proof_error(error: TileProofError<()>) -> MonitorError {
    match error {
        TileProofError::Read { path, .. } => MonitorError::TileNotRead { path },
        TileProofError::Tile(error) => MonitorError::Tile(error),
    }
}

/// The monitor's state directory: the last checkpoint note accepted
/// ([`STATE_FILE`]), written atomically (a temporary file, synced, renamed, the
/// directory synced), owner-only (the directory 0700, the files 0600).
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

/// The checkpoint a state directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCheckpoint {
    /// The note, verbatim.
    pub note: String,
    pub checkpoint: Checkpoint,
}

impl StateDir {
    /// The state directory at `path`, made (mode 0700) if it does not exist.
    pub fn open(path: &Path) -> Result<StateDir, MonitorError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| MonitorError::State {
                path: path.to_owned(),
                source,
            })?;
        Ok(StateDir {
            path: path.to_owned(),
        })
    }

    /// The checkpoint saved by the last run that succeeded, if any. It was checked
    /// against the policy when it was saved, so it is only read here.
    pub fn load(&self) -> Result<Option<SavedCheckpoint>, MonitorError> {
        let path = self.path.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(MonitorError::State { path, source }),
        };
        let corrupt = || MonitorError::StateCorrupt { path: path.clone() };
        let note = Note::parse(&bytes).map_err(|_| corrupt())?;
        let checkpoint = Checkpoint::parse(note.text()).map_err(|_| corrupt())?;
        let note = String::from_utf8(bytes).map_err(|_| corrupt())?;
        Ok(Some(SavedCheckpoint { note, checkpoint }))
    }

    /// Saves `note` as the checkpoint seen.
    pub fn save(&self, note: &str) -> Result<(), MonitorError> {
        self.write(STATE_FILE, note)
    }

    /// Keeps a refused checkpoint note as evidence, beside the state.
    pub fn save_refused(&self, note: &str) -> Result<(), MonitorError> {
        self.write(REFUSED_FILE, note)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` atomically: a crash leaves the old file or the new one.
    fn write(&self, name: &str, text: &str) -> Result<(), MonitorError> {
        let path = self.path.join(name);
        let temporary = self.path.join(format!(".{name}.tmp"));
        let error = |source| MonitorError::State {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(error)?;
        file.write_all(text.as_bytes()).map_err(error)?;
        file.sync_all().map_err(error)?;
        std::fs::rename(&temporary, &path).map_err(error)?;
        // The rename is durable once the directory is.
        std::fs::File::open(&self.path)
            .and_then(|directory| directory.sync_all())
            .map_err(error)
    }
}

impl Client {
    /// `GET /tlog/tile/…` (protocol v1.2 §T3): the bytes of a hash tile or an entry
    /// bundle, as served, but never more than such a tile can hold plus one byte
    /// (so that a longer answer is refused by its length, not read whole). Nothing
    /// is verified here ([`verify_tiles`] does that).
    pub async fn tlog_tile(&self, tile: &Tile) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/tlog/{}", self.base, tile.path());
        let most = match tile.level() {
            TileLevel::Hashes(_) => usize::from(tile.width()) * HASH_SIZE,
            TileLevel::Entries => usize::from(tile.width()) * (2 + MAX_ENTRY_LEN),
        } + 1;
        retry::idempotent(
            self.retries,
            || async {
                let mut response = self.http.get(&url).send().await?;
                let status = response.status();
                if !status.is_success() {
                    return Err(match success_body(response).await {
                        Err(error) => error,
                        // Not reached: `success_body` refuses every status but 2xx.
                        Ok(_) => ClientError::Server {
                            status: status.as_u16(),
                            code: "unknown".to_owned(),
                            message: String::new(),
                            retry_after: None,
                        },
                    });
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = response.chunk().await? {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() >= most {
                        bytes.truncate(most);
                        break;
                    }
                }
                Ok(bytes)
            },
            |_| true,
        )
        .await
    }

    /// One run of the monitor (the module doc has the steps): the log's latest
    /// checkpoint checked against `policy` and against the one `state` holds, proved
    /// to extend it from the tiles, its new entries read and checked, and saved in
    /// `state`. A rollback's or a fork's note is saved as evidence
    /// ([`REFUSED_FILE`]); the state itself changes only when the run succeeds.
    pub async fn monitor(
        &self,
        policy: &Policy,
        state: &StateDir,
    ) -> Result<Summary, MonitorError> {
        let saved = state.load()?;
        let old = saved.as_ref().map(|saved| &saved.checkpoint);
        let note = self.tlog_checkpoint().await?;
        let new = match check_checkpoint(policy, old, note.as_bytes()) {
            Ok(new) => new,
            Err(error) => return Err(keep_evidence(state, &note, error)),
        };
        let old_size = old.map_or(0, |old| old.tree_size);
        let mut summary = Summary {
            origin: new.origin.clone(),
            old_size,
            new_size: new.tree_size,
            entries_read: 0,
            tiles_read: 0,
        };
        if new.tree_size > old_size {
            let needed = tiles_needed(old_size, new.tree_size).map_err(MonitorError::Tile)?;
            let mut read = BTreeMap::new();
            for tile in needed {
                read.insert(tile, self.tlog_tile(&tile).await?);
            }
            summary.tiles_read = read.len();
            summary.entries_read = match verify_tiles(old, &new, &read) {
                Ok(entries) => entries,
                Err(error) => return Err(keep_evidence(state, &note, error)),
            };
        }
        // Saved even at the same size: the note may carry new cosignatures.
        state.save(&note)?;
        Ok(summary)
    }
}

/// Saves the note of a rollback or a fork as evidence; other failures keep none.
/// A failure to save it is said in the error kept, which matters more.
fn keep_evidence(state: &StateDir, note: &str, error: MonitorError) -> MonitorError {
    if matches!(
        error,
        MonitorError::Rollback { .. }
            | MonitorError::ForkSameSize { .. }
            | MonitorError::ForkInconsistent { .. }
    ) {
        // The refusal is the news; a failure to keep the evidence must not hide it.
        let _ = state.save_refused(note);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;
    use wasm_hypervisor_protocol::merkle::MerkleTree;
    use wasm_hypervisor_protocol::note::{CosignerKey, NoteSigningKey};
    use wasm_hypervisor_protocol::provider::Provider;

    const ORIGIN: &str = "monitor.test/log";

    /// The `n`-th v1 leaf of a test log; `branch` makes another log's leaves.
    fn leaf(n: u64, branch: u8) -> Vec<u8> {
        Leaf {
            execution_id: Uuid::from_u128(u128::from(n)),
            timestamp_ms: n,
            commitment: [branch; 32],
        }
        .to_bytes()
        .to_vec()
    }

    struct Log {
        entries: Vec<Vec<u8>>,
        tree: MerkleTree,
    }

    impl Log {
        fn new(entries: Vec<Vec<u8>>) -> Log {
            let tree =
                MerkleTree::from_leaf_hashes(entries.iter().map(|entry| merkle::leaf_hash(entry)));
            Log { entries, tree }
        }

        /// `size` leaves of branch 0, then the rest of branch `branch`.
        fn forked(size: u64, common: u64, branch: u8) -> Log {
            Log::new(
                (0..size)
                    .map(|n| leaf(n, if n < common { 0 } else { branch }))
                    .collect(),
            )
        }

        fn checkpoint(&self) -> Checkpoint {
            Checkpoint {
                origin: ORIGIN.to_owned(),
                tree_size: self.tree.size(),
                root_hash: self.tree.root(self.tree.size()).unwrap(),
            }
        }

        /// What a server serves for `tiles`.
        fn serve(&self, tiles: &[Tile]) -> BTreeMap<Tile, Vec<u8>> {
            tiles
                .iter()
                .map(|tile| {
                    let bytes = match tile.level() {
                        TileLevel::Hashes(_) => tiles::hash_tile(&self.tree, tile).unwrap(),
                        TileLevel::Entries => {
                            let first = (tile.index() * u64::from(TILE_WIDTH)) as usize;
                            let entries = &self.entries[first..first + usize::from(tile.width())];
                            tiles::encode_entry_bundle(entries.iter().map(Vec::as_slice)).unwrap()
                        }
                    };
                    (*tile, bytes)
                })
                .collect()
        }

        /// Checks the step from `old` to this log as the monitor does.
        fn step(&self, old: Option<&Checkpoint>) -> Result<u64, MonitorError> {
            let needed =
                tiles_needed(old.map_or(0, |old| old.tree_size), self.tree.size()).unwrap();
            verify_tiles(old, &self.checkpoint(), &self.serve(&needed))
        }
    }

    #[test]
    fn an_honest_log_is_followed_across_tile_boundaries_and_levels() {
        let big = Log::forked(65_536 + 300, 0, 0);
        for (old, new) in [
            (0, 1),
            (0, 300),
            (1, 2),
            (255, 256),
            (256, 257),
            (300, 600),
            (511, 513),
            (1_000, 65_536),
            (65_536, 65_537),
            (300, 65_536 + 300),
        ] {
            let log = Log::new(big.entries[..new as usize].to_vec());
            let before = Log::new(big.entries[..old as usize].to_vec());
            let old_checkpoint = (old > 0).then(|| before.checkpoint());
            assert_eq!(
                log.step(old_checkpoint.as_ref()).unwrap(),
                new - old,
                "{old} → {new}"
            );
        }
    }

    #[test]
    fn a_log_that_does_not_extend_the_old_checkpoint_is_a_fork() {
        for (common, old, new) in [
            (0, 1, 2),
            (10, 300, 600),
            (299, 300, 301),
            (256, 600, 70_000),
        ] {
            let old_log = Log::forked(old, common, 1);
            let new_log = Log::forked(new, common, 2);
            let error = new_log.step(Some(&old_log.checkpoint())).unwrap_err();
            assert!(
                matches!(error, MonitorError::ForkInconsistent { state_size, size }
                    if state_size == old && size == new),
                "{common} {old} {new}: {error}"
            );
            assert!(error.to_string().starts_with("fork: "), "{error}");
        }
    }

    #[test]
    fn a_tampered_tile_or_entry_is_refused_by_name() {
        let log = Log::forked(600, 0, 0);
        let old = Log::forked(100, 0, 0).checkpoint();
        let needed = tiles_needed(100, 600).unwrap();
        let mut flips = 0;
        for tile in &needed {
            let mut served = log.serve(&needed);
            served.get_mut(tile).unwrap()[5] ^= 1;
            let error = verify_tiles(Some(&old), &log.checkpoint(), &served).unwrap_err();
            match tile.level() {
                TileLevel::Entries => assert!(
                    matches!(error, MonitorError::Entry { .. }),
                    "{}: {error}",
                    tile.path()
                ),
                TileLevel::Hashes(_) => assert!(
                    matches!(error, MonitorError::Tile(_)),
                    "{}: {error}",
                    tile.path()
                ),
            }
            flips += 1;
        }
        assert!(flips >= 6, "{needed:?}");
        // A tile one hash short, and a bundle with a trailing byte.
        let mut served = log.serve(&needed);
        served.get_mut(&needed[0]).unwrap().truncate(32);
        assert!(matches!(
            verify_tiles(Some(&old), &log.checkpoint(), &served),
            Err(MonitorError::Tile(_))
        ));
        let mut served = log.serve(&needed);
        served.last_entry().unwrap().get_mut().push(0);
        assert!(matches!(
            verify_tiles(Some(&old), &log.checkpoint(), &served),
            Err(MonitorError::Tile(TileError::Bundle { .. }))
        ));
    }

    #[test]
    fn an_entry_that_is_not_a_v1_leaf_is_refused_even_when_it_hashes() {
        let mut entries: Vec<Vec<u8>> = (0..5).map(|n| leaf(n, 0)).collect();
        entries[3][0] = 0x02;
        let log = Log::new(entries.clone());
        let error = log.step(None).unwrap_err();
        assert!(
            matches!(error, MonitorError::Entry { index: 3, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("version byte 0x01"), "{error}");
        entries[3] = vec![0x01; 56];
        let error = Log::new(entries).step(None).unwrap_err();
        assert!(
            matches!(error, MonitorError::Entry { index: 3, .. }),
            "{error}"
        );
    }

    fn signed(key: &NoteSigningKey, checkpoint: &Checkpoint) -> Note {
        let mut note = Note::new(&checkpoint.body()).unwrap();
        note.add_signature(key.sign(&note).unwrap()).unwrap();
        note
    }

    #[test]
    fn checkpoints_are_checked_against_the_policy_and_the_state() {
        let provider = Provider::default();
        let key = NoteSigningKey::generate(provider, ORIGIN).unwrap();
        let policy = Policy::single_log(key.verifier_key()).unwrap();
        let log = Log::forked(10, 0, 0);
        let note = signed(&key, &log.checkpoint()).to_text();
        assert_eq!(
            check_checkpoint(&policy, None, note.as_bytes()).unwrap(),
            log.checkpoint()
        );

        let other = NoteSigningKey::generate(provider, ORIGIN).unwrap();
        let other_policy = Policy::single_log(other.verifier_key()).unwrap();
        let error = check_checkpoint(&other_policy, None, note.as_bytes()).unwrap_err();
        assert!(error.to_string().starts_with("bad signature: "), "{error}");
        let mut forged = note.clone().into_bytes();
        let at = forged.len() - 5;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let error = check_checkpoint(&policy, None, &forged).unwrap_err();
        assert!(matches!(error, MonitorError::BadSignature(_)), "{error}");

        let witness = CosignerKey::generate(provider, "witness.test").unwrap();
        let witnessed = Policy::parse(
            provider,
            format!(
                "log {}\nwitness w {}\nquorum w\n",
                key.verifier_key(),
                witness.verifier_key()
            )
            .as_bytes(),
        )
        .unwrap();
        let error = check_checkpoint(&witnessed, None, note.as_bytes()).unwrap_err();
        assert!(matches!(error, MonitorError::MissingQuorum), "{error}");
        let mut cosigned = signed(&key, &log.checkpoint());
        cosigned
            .add_signature(witness.cosign(&cosigned, 1_800_000_000).unwrap())
            .unwrap();
        check_checkpoint(&witnessed, None, cosigned.to_text().as_bytes()).unwrap();

        let bigger = Log::forked(12, 0, 0).checkpoint();
        let error = check_checkpoint(&policy, Some(&bigger), note.as_bytes()).unwrap_err();
        assert!(
            matches!(
                error,
                MonitorError::Rollback {
                    state_size: 12,
                    size: 10
                }
            ),
            "{error}"
        );
        let same_size_other_root = Log::forked(10, 5, 1).checkpoint();
        let error =
            check_checkpoint(&policy, Some(&same_size_other_root), note.as_bytes()).unwrap_err();
        assert!(
            matches!(error, MonitorError::ForkSameSize { size: 10, .. }),
            "{error}"
        );
        let another_log = Checkpoint {
            origin: "another.test/log".to_owned(),
            ..log.checkpoint()
        };
        let error = check_checkpoint(&policy, Some(&another_log), note.as_bytes()).unwrap_err();
        assert!(matches!(error, MonitorError::OtherLog { .. }), "{error}");
        assert_eq!(
            check_checkpoint(&policy, Some(&log.checkpoint()), note.as_bytes()).unwrap(),
            log.checkpoint(),
            "the same checkpoint again"
        );
    }

    #[test]
    fn the_state_is_written_atomically_and_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let temporary = tempfile::tempdir().unwrap();
        let path = temporary.path().join("state");
        let state = StateDir::open(&path).unwrap();
        assert_eq!(state.load().unwrap(), None);
        let key = NoteSigningKey::generate(Provider::default(), ORIGIN).unwrap();
        let log = Log::forked(3, 0, 0);
        let note = signed(&key, &log.checkpoint()).to_text();
        state.save(&note).unwrap();
        let saved = state.load().unwrap().unwrap();
        assert_eq!(saved.note, note);
        assert_eq!(saved.checkpoint, log.checkpoint());
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(STATE_FILE)), 0o600);
        let names: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE], "no temporary file left");
        std::fs::write(path.join(STATE_FILE), "not a note\n").unwrap();
        assert!(matches!(
            state.load(),
            Err(MonitorError::StateCorrupt { .. })
        ));
    }
}
