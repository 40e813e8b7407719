//! C2SP tiled transparency logs (c2sp.org/tlog-tiles, "Merkle Tree" and "Log
//! entries"; protocol v1.2 §T3): tile coordinates and their paths, hash tiles made
//! from a [`MerkleTree`], entry bundles, and RFC 9162 proofs computed from tiles
//! alone.
//!
//! ```text
//! tile (L, N, W)  = MTH(D[(N*256 + i) * 256^L : (N*256 + i + 1) * 256^L]) for i < W
//! path            = tile/<L>/<N>[.p/<W>]          entries: tile/entries/<N>[.p/<W>]
//! N in the path   = 3-digit groups, all but the last prefixed with x: 1234067 = x001/x234/067
//! entry bundle    = (u16 big-endian length || entry)*
//! ```
//!
//! A full tile has 256 hashes (8,192 bytes); the partial tile of level `L` in a tree
//! of `s` leaves has `floor(s / 256^L) mod 256`. Every height here is 8.
//!
//! The proofs ([`inclusion_proof`], [`consistency_proof`], [`root`]) follow RFC 9162's
//! recursive definitions (`PATH`, `SUBPROOF`, `MTH`) over a *tile reader*: a
//! closure that gives a tile's bytes, from disk, a cache or a mirror over HTTP.
//! Each perfect subtree the recursion needs is read from the highest tile that
//! holds it, as the tiles of the tree of that size (the right-most tile of a level
//! partial). Tiles are not trusted: a proof made from wrong tiles fails its
//! verification against the signed checkpoint (`merkle::verify_inclusion`,
//! `merkle::verify_consistency`), and [`root`] recomputes the root a checkpoint
//! signs. The functions that say which tiles a proof needs
//! ([`tiles_for_inclusion`], [`tiles_for_consistency`], [`tiles_for_root`]) run the
//! same recursion over a reader that only records what it is asked for.
//!
//! This is an implementation of RFC 9162's recursion independent of
//! [`MerkleTree`]'s iterative one, and the tests check each against the other for
//! every index and size pair up to a few hundred leaves. Pure.

use std::collections::BTreeMap;
use std::fmt;

use crate::merkle::{self, Hash, MerkleError, MerkleTree};

/// Hashes in a full tile: tiles are of height 8.
pub const TILE_WIDTH: u16 = 256;
/// Bytes in a hash.
pub const HASH_SIZE: usize = 32;
/// The highest level a tile path may name (tlog-tiles: 0 to 63).
pub const MAX_LEVEL: u8 = 63;
/// The longest entry an entry bundle can hold (its length is a u16).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// Merkle levels a tile level spans.
const TILE_HEIGHT: u32 = 8;

/// Why a tile, a path or a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// The text is not a tile path of the canonical C2SP form.
    #[error("not a tile path: tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]")]
    Path,
    /// A tile level above [`MAX_LEVEL`].
    #[error("a tile level is at most {MAX_LEVEL}")]
    Level,
    /// A tile width of 0 or above 256.
    #[error("a tile is 1 to 256 wide")]
    Width,
    /// The tile is not part of the tree of this size.
    #[error("tile {path} is not part of a tree of {size} leaves")]
    BeyondTree { path: String, size: u64 },
    /// A hash tile's bytes are not its width's 32-byte hashes.
    #[error("tile {path} is {len} bytes, not {expected}")]
    TileLength {
        path: String,
        len: usize,
        expected: usize,
    },
    /// An entry is longer than a bundle's u16 length can say.
    #[error("an entry of {0} bytes is longer than {MAX_ENTRY_LEN}")]
    EntryTooLong(usize),
    /// An entry bundle is truncated, has trailing bytes, or has another number of
    /// entries than its width.
    #[error("the entry bundle does not hold exactly {width} length-prefixed entries")]
    Bundle { width: usize },
    /// The leaf index or the tree sizes asked about are out of range.
    #[error(transparent)]
    Range(#[from] MerkleError),
    /// The tiles do not hash to the root they are checked against.
    #[error("the tiles do not hash to the checkpoint's root")]
    RootMismatch,
    /// A full tile does not hash to its entry in the tile above it.
    #[error("tile {path} does not hash to its entry in the tile above it")]
    TileHashMismatch { path: String },
}

/// Why a proof from tiles could not be computed: a tile could not be read, or was
/// not a tile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileProofError<E> {
    /// The tile reader failed.
    #[error("reading tile {path}: {error}")]
    Read { path: String, error: E },
    /// A tile read, or a range asked for, is not valid.
    #[error(transparent)]
    Tile(#[from] TileError),
}

/// Which kind of tile: hashes at a level, or the log's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TileLevel {
    /// A hash tile at level `L` (0 to 63): Merkle hashes at tree level `8 * L`.
    Hashes(u8),
    /// An entry bundle: the entries whose leaf hashes level 0 lists.
    Entries,
}

/// A tile's coordinates: its kind or level, its index within the level, and its
/// width (256 for a full tile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tile {
    level: TileLevel,
    index: u64,
    width: u16,
}

impl Tile {
    /// The hash tile `index` of level `level`, `width` hashes wide.
    pub fn hashes(level: u8, index: u64, width: u16) -> Result<Tile, TileError> {
        if level > MAX_LEVEL {
            return Err(TileError::Level);
        }
        Tile::new(TileLevel::Hashes(level), index, width)
    }

    /// The entry bundle `index`, `width` entries wide.
    pub fn entries(index: u64, width: u16) -> Result<Tile, TileError> {
        Tile::new(TileLevel::Entries, index, width)
    }

    fn new(level: TileLevel, index: u64, width: u16) -> Result<Tile, TileError> {
        if width == 0 || width > TILE_WIDTH {
            return Err(TileError::Width);
        }
        Ok(Tile {
            level,
            index,
            width,
        })
    }

    pub fn level(&self) -> TileLevel {
        self.level
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile is full (256 wide): immutable once it exists.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The path of the tile under the log's prefix: `tile/<L>/<N>[.p/<W>]` or
    /// `tile/entries/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        let level = match self.level {
            TileLevel::Hashes(level) => level.to_string(),
            TileLevel::Entries => "entries".to_owned(),
        };
        let mut path = format!("tile/{level}/{}", index_path(self.index));
        if !self.is_full() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Reads a tile path, strictly: the canonical form [`Tile::path`] writes, and
    /// nothing else (no leading zeros, no superfluous `x000` group, no `.p/256`).
    pub fn parse_path(path: &str) -> Result<Tile, TileError> {
        let rest = path.strip_prefix("tile/").ok_or(TileError::Path)?;
        let (level, rest) = rest.split_once('/').ok_or(TileError::Path)?;
        let level = match level {
            "entries" => TileLevel::Entries,
            digits => TileLevel::Hashes(
                canonical_decimal(digits)
                    .and_then(|level| u8::try_from(level).ok())
                    .filter(|level| *level <= MAX_LEVEL)
                    .ok_or(TileError::Path)?,
            ),
        };
        let (groups, width) = match rest.split_once(".p/") {
            Some((groups, width)) => {
                let width = canonical_decimal(width)
                    .and_then(|width| u16::try_from(width).ok())
                    .filter(|width| (1..TILE_WIDTH).contains(width))
                    .ok_or(TileError::Path)?;
                (groups, width)
            }
            None => (rest, TILE_WIDTH),
        };
        let mut index: u64 = 0;
        let mut elements = groups.split('/').peekable();
        while let Some(element) = elements.next() {
            let digits = if elements.peek().is_some() {
                element.strip_prefix('x').ok_or(TileError::Path)?
            } else {
                element
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TileError::Path);
            }
            let group: u64 = digits.parse().map_err(|_| TileError::Path)?;
            index = index
                .checked_mul(1000)
                .and_then(|index| index.checked_add(group))
                .ok_or(TileError::Path)?;
        }
        let tile = Tile::new(level, index, width)?;
        // One path per tile: `x000/001` and `001` would otherwise both be tile 1.
        if tile.path() != path {
            return Err(TileError::Path);
        }
        Ok(tile)
    }

    /// How many of this tile's level's items (hashes at tree level `8 L`, or
    /// entries) a tree of `size` leaves has.
    fn items_in_tree(&self, size: u64) -> u64 {
        match self.level {
            TileLevel::Hashes(level) => size
                .checked_shr(TILE_HEIGHT * u32::from(level))
                .unwrap_or(0),
            TileLevel::Entries => size,
        }
    }

    /// Whether the tree of `size` leaves has every hash (or entry) of this tile: a
    /// full tile once the tree has grown past it, a partial one of any width whose
    /// leaves exist.
    pub fn is_within(&self, size: u64) -> bool {
        self.index
            .checked_mul(u64::from(TILE_WIDTH))
            .and_then(|start| start.checked_add(u64::from(self.width)))
            .is_some_and(|end| end <= self.items_in_tree(size))
    }

    fn beyond(&self, size: u64) -> TileError {
        TileError::BeyondTree {
            path: self.path(),
            size,
        }
    }
}

impl fmt::Display for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// `N` as 3-digit path elements, all but the last prefixed with `x`.
fn index_path(mut index: u64) -> String {
    let mut path = format!("{:03}", index % 1000);
    while index >= 1000 {
        index /= 1000;
        path = format!("x{:03}/{path}", index % 1000);
    }
    path
}

/// A decimal number without leading zeros (`0` itself allowed).
fn canonical_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    text.parse().ok().filter(|_| canonical)
}

/// Every hash tile of the tree of `size` leaves, level by level: the full tiles,
/// then the level's partial tile if it has one (tlog-tiles, "Partial Tiles").
pub fn hash_tiles(size: u64) -> Vec<Tile> {
    let mut tiles = Vec::new();
    for level in 0..=MAX_LEVEL {
        let items = size
            .checked_shr(TILE_HEIGHT * u32::from(level))
            .unwrap_or(0);
        if items == 0 {
            break;
        }
        tiles.extend(level_tiles(TileLevel::Hashes(level), items));
    }
    tiles
}

/// Every entry bundle of the tree of `size` leaves: the full ones, then the
/// partial one if there is one.
pub fn entry_bundles(size: u64) -> Vec<Tile> {
    level_tiles(TileLevel::Entries, size).collect()
}

fn level_tiles(level: TileLevel, items: u64) -> impl Iterator<Item = Tile> {
    let full = items / u64::from(TILE_WIDTH);
    let partial = (items % u64::from(TILE_WIDTH)) as u16;
    let full_tiles = (0..full).map(move |index| Tile {
        level,
        index,
        width: TILE_WIDTH,
    });
    let partial_tile = (partial != 0).then_some(Tile {
        level,
        index: full,
        width: partial,
    });
    full_tiles.chain(partial_tile)
}

/// The bytes of a hash tile of `tree`: its `width` hashes, concatenated. The tile
/// must be within the tree.
pub fn hash_tile(tree: &MerkleTree, tile: &Tile) -> Result<Vec<u8>, TileError> {
    let TileLevel::Hashes(level) = tile.level else {
        return Err(TileError::Path);
    };
    if !tile.is_within(tree.size()) {
        return Err(tile.beyond(tree.size()));
    }
    let first = tile.index * u64::from(TILE_WIDTH);
    let mut bytes = Vec::with_capacity(usize::from(tile.width) * HASH_SIZE);
    for i in 0..u64::from(tile.width) {
        let hash = tree
            .perfect_subtree(TILE_HEIGHT * u32::from(level), first + i)
            .ok_or_else(|| tile.beyond(tree.size()))?;
        bytes.extend_from_slice(&hash);
    }
    Ok(bytes)
}

/// An entry bundle: each entry as a u16 big-endian length, then its bytes.
pub fn encode_entry_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, TileError> {
    let mut bundle = Vec::new();
    for entry in entries {
        let len = u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLong(entry.len()))?;
        bundle.extend_from_slice(&len.to_be_bytes());
        bundle.extend_from_slice(entry);
    }
    Ok(bundle)
}

/// Reads an entry bundle of `width` entries: exactly that many, nothing after.
pub fn parse_entry_bundle(bundle: &[u8], width: usize) -> Result<Vec<&[u8]>, TileError> {
    let malformed = TileError::Bundle { width };
    let mut entries = Vec::with_capacity(width.min(usize::from(TILE_WIDTH)));
    let mut rest = bundle;
    while !rest.is_empty() {
        let (len, after) = rest.split_first_chunk::<2>().ok_or(malformed.clone())?;
        let len = usize::from(u16::from_be_bytes(*len));
        if after.len() < len || entries.len() == width {
            return Err(malformed);
        }
        let (entry, after) = after.split_at(len);
        entries.push(entry);
        rest = after;
    }
    if entries.len() != width {
        return Err(malformed);
    }
    Ok(entries)
}

/// `PATH(index, D[0:size])` (RFC 9162 §2.1.3.1), leaf side first, computed from the
/// hash tiles of the tree of `size` leaves that `read` gives.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    read: impl FnMut(&Tile) -> Result<Vec<u8>, E>,
) -> Result<Vec<Hash>, TileProofError<E>> {
    if index >= size {
        return Err(TileError::Range(MerkleError::IndexOutOfRange { index, size }).into());
    }
    let mut tiles = TileHashes::new(size, read);
    let mut proof = Vec::new();
    tiles.path(index, 0, size, &mut proof)?;
    Ok(proof)
}

/// `PROOF(first, D[0:second])` (RFC 9162 §2.1.4.1) for `0 < first <= second`
/// (empty when they are equal), computed from the hash tiles of the tree of
/// `second` leaves that `read` gives.
pub fn consistency_proof<E>(
    first: u64,
    second: u64,
    read: impl FnMut(&Tile) -> Result<Vec<u8>, E>,
) -> Result<Vec<Hash>, TileProofError<E>> {
    if first == 0 || first > second {
        return Err(TileError::Range(MerkleError::BadRange { first, second }).into());
    }
    let mut tiles = TileHashes::new(second, read);
    let mut proof = Vec::new();
    if first < second {
        tiles.subproof(first, 0, second, true, &mut proof)?;
    }
    Ok(proof)
}

/// `MTH(D[0:size])` computed from the hash tiles of the tree of `size` leaves that
/// `read` gives: what a monitor compares with a checkpoint's root to authenticate
/// the tiles.
pub fn root<E>(
    size: u64,
    read: impl FnMut(&Tile) -> Result<Vec<u8>, E>,
) -> Result<Hash, TileProofError<E>> {
    if size == 0 {
        return Ok(merkle::empty_root());
    }
    TileHashes::new(size, read).mth(0, size)
}

/// The leaf hashes `start..size` of the tree of `size` leaves whose root is `root`,
/// read from its level-0 tiles once every tile read is authenticated: the tiles
/// must hash to `root` (which authenticates the partial tiles: every hash of a
/// partial tile enters the root), and each full tile must hash to its entry in the
/// tile above it, itself authenticated, up to a partial one (Go's
/// `tlog.TileHashReader` does the same). What a monitor runs before it reads the
/// entry bundles: each entry must then hash to its leaf hash.
pub fn verified_leaf_hashes<E>(
    start: u64,
    size: u64,
    root_hash: &Hash,
    read: impl FnMut(&Tile) -> Result<Vec<u8>, E>,
) -> Result<Vec<Hash>, TileProofError<E>> {
    if start > size {
        return Err(TileError::Range(MerkleError::BadRange {
            first: start,
            second: size,
        })
        .into());
    }
    if size == 0 {
        return if *root_hash == merkle::empty_root() {
            Ok(Vec::new())
        } else {
            Err(TileError::RootMismatch.into())
        };
    }
    let mut tiles = TileHashes::new(size, read);
    if tiles.mth(0, size)? != *root_hash {
        return Err(TileError::RootMismatch.into());
    }
    let mut authenticated = std::collections::BTreeSet::new();
    let mut hashes = Vec::with_capacity(usize::try_from(size - start).unwrap_or(0));
    let width = u64::from(TILE_WIDTH);
    let mut index = start / width;
    while index * width < size {
        let tile = tiles.tile_in_tree(0, index)?;
        tiles.authenticate(tile, &mut authenticated)?;
        let bytes = tiles.tile(tile)?;
        let first = index * width;
        for (i, hash) in bytes.chunks_exact(HASH_SIZE).enumerate() {
            if first + i as u64 >= start {
                hashes.push(hash.try_into().expect("chunks of 32 bytes"));
            }
        }
        index += 1;
    }
    Ok(hashes)
}

/// The hash tiles [`inclusion_proof`] reads, in the order it first reads them.
pub fn tiles_for_inclusion(index: u64, size: u64) -> Result<Vec<Tile>, TileError> {
    recorded(|read| inclusion_proof(index, size, read).map(drop))
}

/// The hash tiles [`consistency_proof`] reads, in the order it first reads them.
pub fn tiles_for_consistency(first: u64, second: u64) -> Result<Vec<Tile>, TileError> {
    recorded(|read| consistency_proof(first, second, read).map(drop))
}

/// The hash tiles [`root`] reads, in the order it first reads them.
pub fn tiles_for_root(size: u64) -> Result<Vec<Tile>, TileError> {
    recorded(|read| root(size, read).map(drop))
}

type NeverFails = std::convert::Infallible;

/// Runs a computation over a reader that gives zeros and records each tile asked
/// for: the computation reads each tile once (`TileHashes` caches them).
fn recorded(
    run: impl FnOnce(
        &mut dyn FnMut(&Tile) -> Result<Vec<u8>, NeverFails>,
    ) -> Result<(), TileProofError<NeverFails>>,
) -> Result<Vec<Tile>, TileError> {
    let mut tiles = Vec::new();
    let mut read = |tile: &Tile| {
        tiles.push(*tile);
        Ok(vec![0u8; usize::from(tile.width) * HASH_SIZE])
    };
    match run(&mut read) {
        Ok(()) => Ok(tiles),
        Err(TileProofError::Tile(error)) => Err(error),
        Err(TileProofError::Read { error, .. }) => match error {},
    }
}

/// The hashes of the tree of `size` leaves, read from its hash tiles (each read
/// once, then kept).
struct TileHashes<R> {
    size: u64,
    read: R,
    tiles: BTreeMap<Tile, Vec<u8>>,
}

impl<R, E> TileHashes<R>
where
    R: FnMut(&Tile) -> Result<Vec<u8>, E>,
{
    fn new(size: u64, read: R) -> TileHashes<R> {
        TileHashes {
            size,
            read,
            tiles: BTreeMap::new(),
        }
    }

    /// `MTH(D[index * 2^level : (index + 1) * 2^level])`, a perfect subtree within
    /// the tree: the hash of `2^(level mod 8)` consecutive hashes of the tile of
    /// level `level / 8` that holds them, as that tile is in the tree of this size.
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, TileProofError<E>> {
        let tile_level = level / TILE_HEIGHT;
        let within = level % TILE_HEIGHT;
        // Positions among the hashes of tree level 8 * tile_level.
        let first = index << within;
        let tile_index = first / u64::from(TILE_WIDTH);
        let offset = (first % u64::from(TILE_WIDTH)) as usize;
        let items = self.size >> (TILE_HEIGHT * tile_level);
        let width = (items - tile_index * u64::from(TILE_WIDTH)).min(u64::from(TILE_WIDTH));
        let tile = Tile::hashes(tile_level as u8, tile_index, width as u16)?;
        let size = self.size;
        let bytes = self.tile(tile)?;
        let count = 1usize << within;
        let hashes = bytes
            .get(offset * HASH_SIZE..(offset + count) * HASH_SIZE)
            .ok_or_else(|| TileError::BeyondTree {
                path: tile.path(),
                size,
            })?;
        Ok(perfect_root(hashes))
    }

    fn tile(&mut self, tile: Tile) -> Result<&[u8], TileProofError<E>> {
        if !self.tiles.contains_key(&tile) {
            let bytes = (self.read)(&tile).map_err(|error| TileProofError::Read {
                path: tile.path(),
                error,
            })?;
            let expected = usize::from(tile.width) * HASH_SIZE;
            if bytes.len() != expected {
                return Err(TileError::TileLength {
                    path: tile.path(),
                    len: bytes.len(),
                    expected,
                }
                .into());
            }
            self.tiles.insert(tile, bytes);
        }
        Ok(&self.tiles[&tile])
    }

    /// Tile `index` of tile level `level` as it is in the tree of this size: full,
    /// or the level's partial tile.
    fn tile_in_tree(&self, level: u32, index: u64) -> Result<Tile, TileError> {
        let items = self.size.checked_shr(TILE_HEIGHT * level).unwrap_or(0);
        let start = index.saturating_mul(u64::from(TILE_WIDTH));
        let width = items.saturating_sub(start).min(u64::from(TILE_WIDTH));
        Tile::hashes(
            u8::try_from(level).map_err(|_| TileError::Level)?,
            index,
            width as u16,
        )
    }

    /// Checks that `tile` (read or not yet) is one the root vouches for: a partial
    /// tile entered the root whole; a full one must hash to its entry in its parent,
    /// which is checked the same way. `authenticated` remembers the tiles checked.
    fn authenticate(
        &mut self,
        tile: Tile,
        authenticated: &mut std::collections::BTreeSet<Tile>,
    ) -> Result<(), TileProofError<E>> {
        let mut child = tile;
        // Climb until a tile already checked, or a partial one (the root's).
        while child.is_full() && !authenticated.contains(&child) {
            let TileLevel::Hashes(level) = child.level else {
                return Err(TileError::Path.into());
            };
            let parent =
                self.tile_in_tree(u32::from(level) + 1, child.index / u64::from(TILE_WIDTH))?;
            let hash = full_tile_hash(self.tile(child)?)?;
            let at = (child.index % u64::from(TILE_WIDTH)) as usize * HASH_SIZE;
            if self.tile(parent)?.get(at..at + HASH_SIZE) != Some(&hash[..]) {
                return Err(TileError::TileHashMismatch { path: child.path() }.into());
            }
            authenticated.insert(child);
            child = parent;
        }
        Ok(())
    }

    /// `MTH(D[start:end])`, RFC 9162 §2.1.1:
    ///
    /// ```text
    /// MTH({d(0)}) = SHA-256(0x00 || d(0))
    /// MTH(D_n)    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two < n
    /// ```
    /// A range that is a perfect subtree is one node of a tile.
    fn mth(&mut self, start: u64, end: u64) -> Result<Hash, TileProofError<E>> {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            return self.node(n.trailing_zeros(), start >> n.trailing_zeros());
        }
        let k = largest_power_of_two_below(n);
        let left = self.mth(start, start + k)?;
        let right = self.mth(start + k, end)?;
        Ok(merkle::node_hash(&left, &right))
    }

    /// `PATH(m, D[start:end])`, RFC 9162 §2.1.3.1, appended to `proof`:
    ///
    /// ```text
    /// PATH(0, {d(0)}) = {}
    /// PATH(m, D_n) = PATH(m, D[0:k]) : MTH(D[k:n])      for m < k
    /// PATH(m, D_n) = PATH(m - k, D[k:n]) : MTH(D[0:k])  for m >= k
    /// ```
    fn path(
        &mut self,
        m: u64,
        start: u64,
        end: u64,
        proof: &mut Vec<Hash>,
    ) -> Result<(), TileProofError<E>> {
        let n = end - start;
        if n == 1 {
            return Ok(());
        }
        let k = largest_power_of_two_below(n);
        if m < k {
            self.path(m, start, start + k, proof)?;
            proof.push(self.mth(start + k, end)?);
        } else {
            self.path(m - k, start + k, end, proof)?;
            proof.push(self.mth(start, start + k)?);
        }
        Ok(())
    }

    /// `SUBPROOF(m, D[start:end], b)`, RFC 9162 §2.1.4.1, appended to `proof`:
    ///
    /// ```text
    /// SUBPROOF(m, D_m, true)  = {}
    /// SUBPROOF(m, D_m, false) = {MTH(D_m)}
    /// SUBPROOF(m, D_n, b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])          for m <= k
    /// SUBPROOF(m, D_n, b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  for m > k
    /// ```
    fn subproof(
        &mut self,
        m: u64,
        start: u64,
        end: u64,
        whole: bool,
        proof: &mut Vec<Hash>,
    ) -> Result<(), TileProofError<E>> {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(self.mth(start, end)?);
            }
            return Ok(());
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, proof)?;
            proof.push(self.mth(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, proof)?;
            proof.push(self.mth(start, start + k)?);
        }
        Ok(())
    }
}

/// The hash of a full tile: the root of the perfect tree of its 256 hashes, which
/// is the tile's entry in the tile of the level above. A monitor checks each full
/// tile it reads against its parent with it, as Go's `tlog.TileHashReader` does.
pub fn full_tile_hash(tile: &[u8]) -> Result<Hash, TileError> {
    let expected = usize::from(TILE_WIDTH) * HASH_SIZE;
    if tile.len() != expected {
        return Err(TileError::TileLength {
            path: "a full tile".to_owned(),
            len: tile.len(),
            expected,
        });
    }
    Ok(perfect_root(tile))
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn largest_power_of_two_below(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The root of a perfect tree whose leaves' hashes (already hashed) are `hashes`,
/// a power-of-two count of them.
fn perfect_root(hashes: &[u8]) -> Hash {
    let mut level: Vec<Hash> = hashes
        .chunks_exact(HASH_SIZE)
        .map(|hash| hash.try_into().expect("chunks of 32 bytes"))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        merkle::leaf_hash(&i.to_be_bytes())
    }

    fn tree(size: u64) -> MerkleTree {
        MerkleTree::from_leaf_hashes((0..size).map(leaf))
    }

    fn reader(tree: &MerkleTree) -> impl FnMut(&Tile) -> Result<Vec<u8>, TileError> + '_ {
        |tile| hash_tile(tree, tile)
    }

    fn paths(tiles: &[Tile]) -> Vec<String> {
        tiles.iter().map(Tile::path).collect()
    }

    /// tlog-tiles, "Merkle Tree": "index 1234067 will be encoded as x001/x234/067";
    /// Go's `tlog.Tile.Path` writes the same with the height in front
    /// (`tile/3/4/x001/x234/067.p/1`, tile.go's doc).
    #[test]
    fn tile_paths_are_the_c2sp_ones_and_parse_back() {
        for (tile, path) in [
            (Tile::hashes(4, 1_234_067, 1), "tile/4/x001/x234/067.p/1"),
            (Tile::hashes(4, 1_234_067, 256), "tile/4/x001/x234/067"),
            (Tile::hashes(0, 0, 256), "tile/0/000"),
            (Tile::hashes(1, 999, 17), "tile/1/999.p/17"),
            (Tile::hashes(63, 1000, 255), "tile/63/x001/000.p/255"),
            (Tile::entries(0, 112), "tile/entries/000.p/112"),
            (Tile::entries(273, 256), "tile/entries/273"),
            (
                Tile::hashes(0, u64::MAX, 256),
                "tile/0/x018/x446/x744/x073/x709/x551/615",
            ),
        ] {
            let tile = tile.unwrap();
            assert_eq!(tile.path(), path);
            assert_eq!(Tile::parse_path(path), Ok(tile));
        }
    }

    #[test]
    fn paths_not_in_canonical_form_are_refused() {
        for path in [
            "tile/0/1",
            "tile/0/0001",
            "tile/0/x000/001",
            "tile/0/x1/001",
            "tile/0/001/x002",
            "tile/0/001.p/256",
            "tile/0/001.p/0",
            "tile/0/001.p/01",
            "tile/0/001.p/",
            "tile/0/001.p/5/7",
            "tile/00/001",
            "tile/64/000",
            "tile/-1/000",
            "tile/data/000",
            "tile/entries/x000",
            "tile//000",
            "tile/0/000/",
            "tile/0/",
            "tile/0",
            "/tile/0/000",
            "tile/8/0/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/0a0",
            "tile/0/+01",
        ] {
            assert_eq!(Tile::parse_path(path), Err(TileError::Path), "{path}");
        }
        assert_eq!(Tile::hashes(64, 0, 1), Err(TileError::Level));
        assert_eq!(Tile::hashes(0, 0, 0), Err(TileError::Width));
        assert_eq!(Tile::entries(0, 257), Err(TileError::Width));
    }

    /// tlog-tiles, "Partial Tiles": "a tree of size 70,000 will be represented by 273
    /// full level 0 tiles, one partial level 0 tile of width 112, one full level 1
    /// tile, one partial level 1 tile of width 17, and one partial level 2 tile of
    /// width 1", and "a tree of size 256 will be represented by a full level 0 tile
    /// and a partial level 1 tile of width 1".
    #[test]
    fn a_tree_has_the_tiles_the_spec_lists() {
        let tiles = hash_tiles(70_000);
        assert_eq!(tiles.len(), 273 + 1 + 1 + 1 + 1);
        assert!(
            tiles[..273]
                .iter()
                .all(|t| t.level() == TileLevel::Hashes(0) && t.is_full())
        );
        assert_eq!(
            paths(&tiles[273..]),
            [
                "tile/0/273.p/112",
                "tile/1/000",
                "tile/1/001.p/17",
                "tile/2/000.p/1"
            ]
        );
        assert_eq!(paths(&hash_tiles(256)), ["tile/0/000", "tile/1/000.p/1"]);
        assert_eq!(paths(&hash_tiles(1)), ["tile/0/000.p/1"]);
        assert!(hash_tiles(0).is_empty());
        assert_eq!(entry_bundles(70_000).len(), 274);
        assert_eq!(entry_bundles(70_000)[273].path(), "tile/entries/273.p/112");
        assert!(entry_bundles(0).is_empty());
    }

    /// A level-0 tile lists leaf hashes; each hash of a level-1 tile is the root of
    /// the full level-0 tile below it; a partial tile is the prefix of the full
    /// tile it becomes; a tile beyond the tree is refused.
    #[test]
    fn hash_tiles_hold_the_trees_hashes() {
        let tree = tree(70_000);
        let level0 = hash_tile(&tree, &Tile::hashes(0, 3, 256).unwrap()).unwrap();
        assert_eq!(level0.len(), 8192);
        assert_eq!(level0[..32], leaf(768));
        assert_eq!(level0[8160..], leaf(1023));
        let level1 = hash_tile(&tree, &Tile::hashes(1, 0, 256).unwrap()).unwrap();
        assert_eq!(level1[3 * 32..4 * 32], full_tile_hash(&level0).unwrap());
        assert!(full_tile_hash(&level0[32..]).is_err());
        assert_eq!(level1[..32], tree.root(256).unwrap());
        let partial = hash_tile(&tree, &Tile::hashes(1, 1, 17).unwrap()).unwrap();
        assert_eq!(partial.len(), 17 * 32);
        let smaller = hash_tile(&tree, &Tile::hashes(1, 1, 5).unwrap()).unwrap();
        assert_eq!(smaller, partial[..5 * 32]);
        let level2 = hash_tile(&tree, &Tile::hashes(2, 0, 1).unwrap()).unwrap();
        assert_eq!(level2, tree.root(65_536).unwrap());
        for beyond in [
            Tile::hashes(1, 1, 18).unwrap(),
            Tile::hashes(0, 273, 113).unwrap(),
            Tile::hashes(0, 274, 1).unwrap(),
            Tile::hashes(3, 0, 1).unwrap(),
            Tile::hashes(63, u64::MAX, 256).unwrap(),
        ] {
            assert!(
                matches!(hash_tile(&tree, &beyond), Err(TileError::BeyondTree { .. })),
                "{beyond}"
            );
            assert!(!beyond.is_within(70_000));
        }
        assert_eq!(
            hash_tile(&tree, &Tile::entries(0, 1).unwrap()),
            Err(TileError::Path)
        );
    }

    #[test]
    fn entry_bundles_are_length_prefixed_entries_and_parse_back() {
        let entries: [&[u8]; 3] = [b"abc", b"", &[0x01; 57]];
        let bundle = encode_entry_bundle(entries).unwrap();
        assert_eq!(bundle[..7], [0x00, 0x03, b'a', b'b', b'c', 0x00, 0x00]);
        assert_eq!(bundle[7..9], [0x00, 57]);
        assert_eq!(bundle.len(), 2 + 3 + 2 + 2 + 57);
        assert_eq!(parse_entry_bundle(&bundle, 3).unwrap(), entries);
        let malformed = Err(TileError::Bundle { width: 3 });
        assert_eq!(
            parse_entry_bundle(&bundle[..bundle.len() - 1], 3),
            malformed
        );
        assert_eq!(parse_entry_bundle(&bundle[..1], 3), malformed);
        let mut longer = bundle.clone();
        longer.push(0);
        assert_eq!(parse_entry_bundle(&longer, 3), malformed);
        longer.push(0);
        assert_eq!(parse_entry_bundle(&longer, 3), malformed);
        assert_eq!(
            parse_entry_bundle(&bundle, 2),
            Err(TileError::Bundle { width: 2 })
        );
        assert_eq!(
            parse_entry_bundle(&bundle, 4),
            Err(TileError::Bundle { width: 4 })
        );
        let long = vec![0u8; MAX_ENTRY_LEN + 1];
        assert_eq!(
            encode_entry_bundle([&long[..]]),
            Err(TileError::EntryTooLong(MAX_ENTRY_LEN + 1))
        );
        let longest = vec![7u8; MAX_ENTRY_LEN];
        let bundle = encode_entry_bundle([&longest[..]]).unwrap();
        assert_eq!(parse_entry_bundle(&bundle, 1).unwrap(), [&longest[..]]);
    }

    /// The leaf indexes (or first sizes) checked in a tree of `size` leaves: all of
    /// them in the small trees and around the first tile's end, a sample elsewhere.
    fn checked_below(size: u64) -> Vec<u64> {
        if size <= 64 || (255..=258).contains(&size) || size == 300 {
            return (0..size).collect();
        }
        let mut sample = vec![
            0,
            1,
            2,
            63,
            64,
            127,
            128,
            255,
            256,
            size / 2,
            size - 2,
            size - 1,
        ];
        sample.retain(|index| *index < size);
        sample
    }

    /// Every root, and the inclusion and consistency proofs of trees of 1 to 300
    /// leaves (every index in many of them: full and partial tiles at two levels),
    /// and of a sample of trees past 65,536 leaves (three levels), are
    /// `MerkleTree`'s byte for byte.
    #[test]
    fn proofs_from_tiles_are_the_trees_proofs() {
        let tree = tree(70_000);
        for size in 1..=300 {
            assert_eq!(root(size, reader(&tree)).unwrap(), tree.root(size).unwrap());
            for index in checked_below(size) {
                assert_eq!(
                    inclusion_proof(index, size, reader(&tree)).unwrap(),
                    tree.inclusion_proof(index, size).unwrap(),
                    "PATH({index}, {size})"
                );
            }
            for first in checked_below(size).into_iter().map(|index| index + 1) {
                assert_eq!(
                    consistency_proof(first, size, reader(&tree)).unwrap(),
                    tree.consistency_proof(first, size).unwrap(),
                    "PROOF({first}, {size})"
                );
            }
        }
        let sizes = [511, 512, 513, 65_535, 65_536, 65_537, 69_999, 70_000];
        for size in sizes {
            assert_eq!(root(size, reader(&tree)).unwrap(), tree.root(size).unwrap());
            for index in [0, 1, 255, 256, 257, size / 3, size / 2, size - 2, size - 1] {
                assert_eq!(
                    inclusion_proof(index, size, reader(&tree)).unwrap(),
                    tree.inclusion_proof(index, size).unwrap(),
                    "PATH({index}, {size})"
                );
            }
            for first in sizes
                .iter()
                .copied()
                .chain([1, 2, 255, 256, 257, 300, 65_535])
            {
                if first <= size {
                    assert_eq!(
                        consistency_proof(first, size, reader(&tree)).unwrap(),
                        tree.consistency_proof(first, size).unwrap(),
                        "PROOF({first}, {size})"
                    );
                }
            }
        }
        assert_eq!(root(0, reader(&tree)).unwrap(), merkle::empty_root());
    }

    /// The tiles a proof needs, as a client fetches them: the tree of 300 leaves is
    /// a full level-0 tile, a partial one of 44, and a level-1 tile of width 1.
    #[test]
    fn the_tiles_a_proof_needs_are_the_ones_it_reads() {
        assert_eq!(
            paths(&tiles_for_root(300).unwrap()),
            ["tile/1/000.p/1", "tile/0/001.p/44"]
        );
        assert_eq!(
            paths(&tiles_for_inclusion(5, 300).unwrap()),
            ["tile/0/000", "tile/0/001.p/44"]
        );
        assert_eq!(
            paths(&tiles_for_inclusion(299, 300).unwrap()),
            ["tile/0/001.p/44", "tile/1/000.p/1"]
        );
        assert_eq!(
            paths(&tiles_for_consistency(256, 300).unwrap()),
            ["tile/0/001.p/44"]
        );
        assert_eq!(
            paths(&tiles_for_consistency(257, 70_000).unwrap()),
            [
                "tile/0/001",
                "tile/1/000",
                "tile/1/001.p/17",
                "tile/0/273.p/112"
            ]
        );
        assert!(tiles_for_inclusion(0, 1).unwrap().is_empty());
        assert!(tiles_for_consistency(7, 7).unwrap().is_empty());
        // A reader that has only those tiles suffices.
        let tree = tree(70_000);
        let needed = tiles_for_inclusion(70, 70_000).unwrap();
        let proof = inclusion_proof(70, 70_000, |tile: &Tile| {
            assert!(needed.contains(tile), "{tile} was not planned");
            hash_tile(&tree, tile)
        })
        .unwrap();
        assert_eq!(proof, tree.inclusion_proof(70, 70_000).unwrap());
        assert_eq!(
            tiles_for_inclusion(300, 300),
            Err(TileError::Range(MerkleError::IndexOutOfRange {
                index: 300,
                size: 300
            }))
        );
        assert_eq!(
            tiles_for_consistency(0, 300),
            Err(TileError::Range(MerkleError::BadRange {
                first: 0,
                second: 300
            }))
        );
    }

    /// Every leaf hash comes back from tiles that hash to the root; a changed hash
    /// in any tile, read for the root or only through its parent, is caught.
    #[test]
    fn leaf_hashes_come_only_from_tiles_the_root_vouches_for() {
        let tree = tree(70_000);
        for (start, size) in [
            (0, 1),
            (0, 256),
            (0, 300),
            (100, 300),
            (65_000, 70_000),
            (70_000, 70_000),
        ] {
            let root = tree.root(size).unwrap();
            let hashes = verified_leaf_hashes(start, size, &root, reader(&tree)).unwrap();
            let expected: Vec<Hash> = (start..size).map(leaf).collect();
            assert_eq!(hashes, expected, "{start}..{size}");
        }
        assert!(
            verified_leaf_hashes(0, 0, &merkle::empty_root(), reader(&tree))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            verified_leaf_hashes(0, 300, &[0; 32], reader(&tree)),
            Err(TileProofError::Tile(TileError::RootMismatch))
        );
        for (size, path, expected) in [
            // Read only through its parent, level 1's partial tile.
            (
                300,
                "tile/0/000",
                TileError::TileHashMismatch {
                    path: "tile/0/000".into(),
                },
            ),
            // Read for the root.
            (300, "tile/0/001.p/44", TileError::RootMismatch),
            // Two levels below the partial tile of level 2.
            (
                70_000,
                "tile/0/005",
                TileError::TileHashMismatch {
                    path: "tile/0/005".into(),
                },
            ),
            (
                70_000,
                "tile/1/000",
                TileError::TileHashMismatch {
                    path: "tile/1/000".into(),
                },
            ),
        ] {
            let flipped = |tile: &Tile| {
                let mut bytes = hash_tile(&tree, tile)?;
                if tile.path() == path {
                    bytes[100] ^= 1;
                }
                Ok::<_, TileError>(bytes)
            };
            assert_eq!(
                verified_leaf_hashes(0, size, &tree.root(size).unwrap(), flipped),
                Err(TileProofError::Tile(expected)),
                "{path}"
            );
        }
    }

    /// Tiles from an untrusted mirror: a changed hash gives a proof that fails its
    /// verification and a root that is not the checkpoint's; a tile of the wrong
    /// length, or a reader's failure, is an error naming the tile.
    #[test]
    fn tampered_or_missing_tiles_are_caught() {
        let tree = tree(300);
        let root_300 = tree.root(300).unwrap();
        let flipped = |tile: &Tile| {
            let mut bytes = hash_tile(&tree, tile)?;
            if tile.path() == "tile/0/000" || tile.path() == "tile/0/001.p/44" {
                bytes[4 * 32] ^= 1;
            }
            Ok::<_, TileError>(bytes)
        };
        let proof = inclusion_proof(5, 300, flipped).unwrap();
        assert_eq!(
            merkle::verify_inclusion(&leaf(5), 5, 300, &proof, &root_300),
            Err(MerkleError::RootMismatch)
        );
        assert_ne!(root(300, flipped).unwrap(), root_300);
        let short = |tile: &Tile| {
            let mut bytes = hash_tile(&tree, tile)?;
            bytes.pop();
            Ok::<_, TileError>(bytes)
        };
        assert_eq!(
            root(300, short),
            Err(TileProofError::Tile(TileError::TileLength {
                path: "tile/1/000.p/1".into(),
                len: 31,
                expected: 32
            }))
        );
        let down = |_: &Tile| Err::<Vec<u8>, _>("mirror down");
        assert_eq!(
            inclusion_proof(5, 300, down),
            Err(TileProofError::Read {
                path: "tile/0/000".into(),
                error: "mirror down"
            })
        );
    }
}
