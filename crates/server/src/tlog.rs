//! The log as C2SP tlog-tiles (protocol v1.2 §T3): hash tiles and entry bundles
//! made from the log backend's stored nodes and entries, the same bytes from every
//! backend and every replica (they are functions of the log alone).
//!
//! A hash tile is 32-byte nodes the tree keeps anyway (`LogBackend::perfect_subtree`,
//! one lookup each); an entry bundle reads its entries back from the backend's
//! storage (the file, or PostgreSQL). Full tiles never change, so the last
//! [`CACHED_TILES`] full tiles asked for are kept, and a mirror reading the whole
//! log reads each entry from storage once; partial tiles are made on each request
//! (the right-most tile of each level: few, and small).
//!
//! A tile is served only once the tree holds its leaves; a replica behind the
//! cluster's log catches up first (`LogBackend::size_for`), so a mirror reading
//! replicas in turn finds every tile a checkpoint it got covers.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;
use wasm_hypervisor_protocol::tiles::{self, HASH_SIZE, TILE_WIDTH, Tile, TileLevel};

use crate::audit::{AuditError, AuditLog};

/// Full tiles kept: at most about 15 KB each (an entry bundle of 256 entries of
/// 57 bytes and their lengths; a hash tile is 8 KiB), so about 15 MB.
pub(crate) const CACHED_TILES: usize = 1024;

/// Why a tile is not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TileServeError {
    /// The path is not a tile's canonical path.
    #[error("not a tile path")]
    NotATile,
    /// The tree does not (yet) hold the tile's leaves.
    #[error("the tile is beyond the tree")]
    BeyondTree,
    /// The backend could not read the entries (cluster mode: the database).
    #[error(transparent)]
    Log(#[from] AuditError),
}

/// The tiles of one log, with its cache of full tiles.
pub(crate) struct Tiles {
    log: AuditLog,
    cache: Mutex<LruCache<Tile, Bytes>>,
}

impl Tiles {
    pub(crate) fn new(log: AuditLog) -> Tiles {
        Tiles {
            log,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHED_TILES).expect("a positive capacity"),
            )),
        }
    }

    /// The tile at `path` (`tile/…`, under the log's prefix), and whether it is
    /// full.
    pub(crate) async fn get(&self, path: &str) -> Result<(Bytes, bool), TileServeError> {
        let tile = Tile::parse_path(path).map_err(|_| TileServeError::NotATile)?;
        if let Some(bytes) = self.cached(&tile) {
            return Ok((bytes, true));
        }
        let leaves = leaves_needed(&tile).ok_or(TileServeError::BeyondTree)?;
        let size = self.log.size_for(leaves).await;
        if !tile.is_within(size) {
            return Err(TileServeError::BeyondTree);
        }
        let bytes = match tile.level() {
            TileLevel::Hashes(level) => self.hash_tile(level, &tile)?,
            TileLevel::Entries => self.entry_bundle(&tile).await?,
        };
        if tile.is_full() {
            self.lock().put(tile, bytes.clone());
        }
        Ok((bytes, tile.is_full()))
    }

    fn cached(&self, tile: &Tile) -> Option<Bytes> {
        if !tile.is_full() {
            return None;
        }
        self.lock().get(tile).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Tile, Bytes>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The tile's nodes: at tree level `8 × level`, indices `index × 256` on.
    fn hash_tile(&self, level: u8, tile: &Tile) -> Result<Bytes, TileServeError> {
        let first = tile.index() * u64::from(TILE_WIDTH);
        let mut bytes = Vec::with_capacity(usize::from(tile.width()) * HASH_SIZE);
        for node in first..first + u64::from(tile.width()) {
            let hash = self
                .log
                .perfect_subtree(8 * u32::from(level), node)
                .ok_or(TileServeError::BeyondTree)?;
            bytes.extend_from_slice(&hash);
        }
        Ok(bytes.into())
    }

    async fn entry_bundle(&self, tile: &Tile) -> Result<Bytes, TileServeError> {
        let first = tile.index() * u64::from(TILE_WIDTH);
        let entries = self
            .log
            .entries(first..first + u64::from(tile.width()))
            .await?;
        let leaves: Vec<[u8; 57]> = entries.iter().map(|leaf| leaf.to_bytes()).collect();
        let bundle = tiles::encode_entry_bundle(leaves.iter().map(|leaf| leaf.as_slice()))
            .map_err(|_| TileServeError::NotATile)?;
        Ok(bundle.into())
    }
}

/// How many leaves the tree must hold for `tile` to exist, or `None` past any
/// tree this log can have.
fn leaves_needed(tile: &Tile) -> Option<u64> {
    let items = tile
        .index()
        .checked_mul(u64::from(TILE_WIDTH))?
        .checked_add(u64::from(tile.width()))?;
    match tile.level() {
        TileLevel::Entries => Some(items),
        TileLevel::Hashes(level) => {
            let shift = 8 * u32::from(level);
            if shift >= 64 {
                return (items == 0).then_some(0);
            }
            let leaves = items.checked_shl(shift)?;
            (leaves >> shift == items).then_some(leaves)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_needs_every_leaf_under_its_last_node() {
        let tile = |path: &str| Tile::parse_path(path).unwrap();
        assert_eq!(leaves_needed(&tile("tile/0/000")), Some(256));
        assert_eq!(leaves_needed(&tile("tile/0/001.p/3")), Some(259));
        assert_eq!(leaves_needed(&tile("tile/entries/000.p/1")), Some(1));
        assert_eq!(leaves_needed(&tile("tile/1/000.p/2")), Some(512));
        assert_eq!(leaves_needed(&tile("tile/2/000.p/1")), Some(65_536));
        // Past 2^64 leaves: no tree has it.
        assert_eq!(leaves_needed(&tile("tile/8/000.p/1")), None);
    }
}
