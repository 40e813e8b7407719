//! The RFC 9162 Merkle tree over the log's leaf hashes (protocol §4): the hashes,
//! an in-memory tree that answers roots and proofs for any past tree size, and the
//! verifiers a client runs on those proofs.
//!
//! ```text
//! leaf_hash = SHA-256(0x00 || leaf)                                   (RFC 9162 §2.1.1)
//! node_hash = SHA-256(0x01 || left || right)
//! MTH({})   = SHA-256()
//! ```
//!
//! [`MerkleTree`] stores, for every level `k`, the hash of every perfect subtree of
//! `2^k` leaves that starts at a multiple of `2^k` (level 0 holds the leaf hashes):
//!
//! ```text
//! level 2   [0,4)
//! level 1   [0,2)  [2,4)
//! level 0   0  1   2  3   4
//! ```
//! With five leaves those are the stored nodes. `MTH(D[0:5])` is not stored: it is
//! folded from `[0,4)` and leaf 4 when asked for.
//!
//! Appending never changes a stored node, so the nodes of every past tree are still
//! there: any subtree hash a proof needs is either one stored node or the right-edge
//! node of a smaller tree, folded from at most one stored node per level. A proof
//! therefore costs O(log n) hashes, at any past size, without rebuilding anything.
//! The price is about two hashes (64 bytes) of memory per leaf.
//!
//! Architecture Invariant: this module is pure. No I/O, no clock, no async and no
//! locks; whoever owns a [`MerkleTree`] decides how it is shared and persisted.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A SHA-256 hash: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// What can go wrong asking for or checking a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index is not below the size of the tree it is asked about.
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A tree size is larger than the number of leaves the tree holds.
    #[error("tree size {size} is larger than the {available} leaves the tree holds")]
    SizeOutOfRange { size: u64, available: u64 },
    /// Two tree sizes do not satisfy 0 < first <= second.
    #[error("tree sizes {first} and {second} do not satisfy 0 < first <= second")]
    BadRange { first: u64, second: u64 },
    /// A proof has more or fewer hashes than its tree sizes call for.
    #[error("a proof of {len} hashes has the wrong length for these tree sizes")]
    ProofLength { len: usize },
    /// A proof's hashes do not lead to the expected root hash.
    #[error("the proof does not lead to the expected root hash")]
    RootMismatch,
}

/// `SHA-256(0x00 || leaf)`, RFC 9162 §2.1.1.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`, RFC 9162 §2.1.1.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// `MTH({}) = SHA-256()`, the root of the empty tree, RFC 9162 §2.1.1.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// An append-only RFC 9162 Merkle tree that answers for any size it has had.
///
/// `levels[k][i]` is `MTH(D[i * 2^k : (i + 1) * 2^k])`, so `levels[k].len()` is
/// `size >> k`; `levels[0]` is the leaf hashes and is always present.
#[derive(Clone, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl Default for MerkleTree {
    fn default() -> MerkleTree {
        MerkleTree::new()
    }
}

// Deriving `Debug` would print every stored hash: two million of them for a log of
// a million executions.
impl std::fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerkleTree")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl MerkleTree {
    /// The empty tree.
    pub fn new() -> MerkleTree {
        MerkleTree {
            levels: vec![Vec::new()],
        }
    }

    /// The tree of these leaf hashes, in log order.
    ///
    /// Builds level by level rather than by repeated [`push`](Self::push): the same
    /// hashes in about the same time, but every level above the leaves is allocated
    /// once at its exact length (at a million leaves, 64.0 MB against the 67.1 MB
    /// that `push`'s doubling vectors hold).
    pub fn from_leaf_hashes(leaf_hashes: impl IntoIterator<Item = Hash>) -> MerkleTree {
        let mut levels = vec![leaf_hashes.into_iter().collect::<Vec<Hash>>()];
        loop {
            let below = levels.last().expect("level 0 is always present");
            if below.len() < 2 {
                break;
            }
            let above: Vec<Hash> = below
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(above);
        }
        MerkleTree { levels }
    }

    /// Appends the next leaf hash: O(1) hashes amortized, at most log2(size) when the
    /// new leaf completes a large perfect subtree.
    pub fn push(&mut self, leaf_hash: Hash) {
        self.levels[0].push(leaf_hash);
        // A level whose length became even has completed a pair: its parent is a new
        // perfect subtree one level up, which may in turn complete a pair.
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let row = &self.levels[level];
            let parent = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Approximate heap use in bytes: every stored hash, counted by allocated capacity.
    pub fn memory_bytes(&self) -> usize {
        let rows = self.levels.capacity() * std::mem::size_of::<Vec<Hash>>();
        let hashes: usize = self
            .levels
            .iter()
            .map(|row| row.capacity() * std::mem::size_of::<Hash>())
            .sum();
        rows + hashes
    }

    /// `MTH(D[index * 2^level : (index + 1) * 2^level])`, the perfect subtree of
    /// `2^level` leaves that starts at leaf `index * 2^level`, when the tree holds
    /// all of its leaves: one stored node. The hashes of c2sp.org/tlog-tiles' hash
    /// tiles are these nodes at the levels that are multiples of 8 (`tiles`).
    pub fn perfect_subtree(&self, level: u32, index: u64) -> Option<Hash> {
        let row = self.levels.get(usize::try_from(level).ok()?)?;
        row.get(usize::try_from(index).ok()?).copied()
    }

    /// The root of the tree of the first `size` leaves, `MTH(D[0:size])`
    /// (RFC 9162 §2.1.1); size 0 is the empty tree.
    pub fn root(&self, size: u64) -> Result<Hash, MerkleError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(self.subtree_hash(0, size))
    }

    /// `PATH(index, D[0:size])`, RFC 9162 §2.1.3.1: the inclusion proof of leaf
    /// `index` in the tree of the first `size` leaves.
    ///
    /// ```text
    /// PATH(0, {d(0)}) = {}
    /// for n > 1, k the largest power of two smaller than n:
    ///   PATH(m, D_n) = PATH(m, D[0:k]) : MTH(D[k:n])      for m < k
    ///   PATH(m, D_n) = PATH(m - k, D[k:n]) : MTH(D[0:k])  for m >= k
    /// ```
    /// The recursion lists, leaf first, the sibling of every node on the way from
    /// leaf `index` to the root; that is how it is computed here.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(size)?;
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::with_capacity(proof_capacity(size));
        self.push_path(0, index, size, &mut proof);
        Ok(proof)
    }

    /// `PROOF(first, D[0:second])`, RFC 9162 §2.1.4.1: the consistency proof between
    /// the trees of the first `first` and the first `second` leaves.
    ///
    /// ```text
    /// PROOF(m, D_n) = SUBPROOF(m, D_n, true)
    /// SUBPROOF(m, D_m, true)  = {}
    /// SUBPROOF(m, D_m, false) = {MTH(D_m)}
    /// for m < n, k the largest power of two smaller than n:
    ///   SUBPROOF(m, D_n, b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])          for m <= k
    ///   SUBPROOF(m, D_n, b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  for m > k
    /// ```
    /// The recursion bottoms out at the largest perfect subtree whose last leaf is the
    /// first tree's last leaf: the node `(level, index)` below. The proof is that
    /// node (left out when it is the whole first tree, whose root the verifier has
    /// already: the `b = true` case) followed by that node's inclusion path in the
    /// second tree.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        if first == 0 || first > second {
            return Err(MerkleError::BadRange { first, second });
        }
        self.check_size(second)?;
        let mut proof = Vec::with_capacity(proof_capacity(second) + 1);
        if first == second {
            return Ok(proof);
        }
        let level = first.trailing_zeros();
        let index = (first - 1) >> level;
        if index != 0 {
            proof.push(self.levels[level as usize][index as usize]);
        }
        self.push_path(level, index, second, &mut proof);
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), MerkleError> {
        let available = self.size();
        if size > available {
            return Err(MerkleError::SizeOutOfRange { size, available });
        }
        Ok(())
    }

    /// Appends to `proof` the siblings of the node `(level, index)` and of each of its
    /// ancestors in the tree of `size` leaves, lowest first, skipping the levels at
    /// which the node has no sibling: those nodes are the last of their level and
    /// RFC 9162 does not split them there (they have no right half).
    ///
    /// At most one of the siblings is a right-edge node that is not stored, so the
    /// whole path costs O(log size) hashes.
    fn push_path(&self, mut level: u32, mut index: u64, size: u64, proof: &mut Vec<Hash>) {
        let last_leaf = size - 1;
        // The node is the root once it is the only node of its level.
        while last_leaf.checked_shr(level).unwrap_or(0) != 0 {
            let sibling = index ^ 1;
            // `sibling <= last_leaf >> level` says the sibling starts before `size`
            // without computing `sibling << level`, which could overflow.
            if sibling <= last_leaf >> level {
                let start = sibling << level;
                let end = start + (1u64 << level).min(size - start);
                proof.push(self.subtree_hash(start, end));
            }
            index >>= 1;
            level += 1;
        }
    }

    /// `MTH(D[start:end])` for a non-empty range that is a node of some tree: `start`
    /// must be a multiple of the largest power of two not above `end - start`.
    ///
    /// Such a range splits, from the left, into perfect subtrees of decreasing size,
    /// one per set bit of its length, each aligned and so stored. RFC 9162 splits a
    /// range at its largest power of two and recurses on the right part, so its hash
    /// is the right fold `node_hash(p1, node_hash(p2, ... pn))` of those pieces; this
    /// walks them from the right, lowest bit first.
    fn subtree_hash(&self, start: u64, end: u64) -> Hash {
        debug_assert!(start < end && end <= self.size());
        debug_assert!(start.trailing_zeros() >= (end - start).ilog2());
        let mut remaining = end - start;
        let mut piece_end = end;
        let mut folded: Option<Hash> = None;
        while remaining != 0 {
            let piece_len = remaining & remaining.wrapping_neg();
            let level = piece_len.trailing_zeros();
            let piece_start = piece_end - piece_len;
            let piece = self.levels[level as usize][(piece_start >> level) as usize];
            folded = Some(match folded {
                None => piece,
                Some(right) => node_hash(&piece, &right),
            });
            piece_end = piece_start;
            remaining -= piece_len;
        }
        folded.expect("the range is not empty")
    }
}

/// The longest proof in a tree of `size` leaves: its height.
fn proof_capacity(size: u64) -> usize {
    (u64::BITS - size.leading_zeros()) as usize
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is
/// `root`, given its inclusion proof: RFC 9162 §2.1.3.2, step by step.
///
/// The proof binds the leaf to `root`, not to `size`: for some leaves one proof also
/// passes with another size of the same height (index 0 of 4 leaves passes as index
/// 0 of 3). `size` and `root` must therefore come from the same signed checkpoint.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    let proof_length = MerkleError::ProofLength { len: proof.len() };
    // 1. Compare leaf_index from the inclusion_proof_v2 structure against tree_size.
    //    If leaf_index is greater than or equal to tree_size, then fail the proof
    //    verification.
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // 2. Set fn to leaf_index and sn to tree_size - 1.
    let mut f_n = index;
    let mut s_n = size - 1;
    // 3. Set r to hash.
    let mut r = *leaf_hash;
    // 4. For each value p in the inclusion_path array:
    for p in proof {
        // a. If sn is 0, then stop the iteration and fail the proof verification.
        if s_n == 0 {
            return Err(proof_length);
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if f_n & 1 == 1 || f_n == s_n {
            // i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, &r);
            // ii. If LSB(fn) is not set, then right-shift both fn and sn equally
            //     until either LSB(fn) is set or fn is 0.
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            // Otherwise:
            // i. Set r to HASH(0x01 || r || p).
            r = node_hash(&r, p);
        }
        // c. Finally, right-shift both fn and sn one time.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. Compare sn to 0. Compare r against the root_hash. If sn is equal to 0 and r
    //    and the root_hash are equal, then the log has proven the inclusion of hash.
    //    Otherwise, fail the proof verification.
    if s_n != 0 {
        return Err(proof_length);
    }
    if !bool::from(r.ct_eq(root)) {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `second` leaves with root `second_root` extends the tree
/// of `first` leaves with root `first_root`, given their consistency proof:
/// RFC 9162 §2.1.4.2, step by step.
///
/// The RFC defines the algorithm for 0 < first < second. Equal sizes are accepted
/// with an empty proof and equal roots, the proof [`MerkleTree::consistency_proof`]
/// gives for them; `first == 0` is refused like the generator refuses it (every tree
/// extends the empty one, so there is nothing to prove).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    let proof_length = MerkleError::ProofLength { len: proof.len() };
    if first == 0 || first > second {
        return Err(MerkleError::BadRange { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(proof_length);
        }
        if !bool::from(first_root.ct_eq(second_root)) {
            return Err(MerkleError::RootMismatch);
        }
        return Ok(());
    }
    // 1. If consistency_path is an empty array, stop and fail the proof verification.
    if proof.is_empty() {
        return Err(proof_length);
    }
    // 2. If first is an exact power of 2, then prepend first_hash to the
    //    consistency_path array.
    //    (Without copying: `seed` is the array's first value and `rest` the others.)
    let (seed, rest) = if first.is_power_of_two() {
        (first_root, proof)
    } else {
        (&proof[0], &proof[1..])
    };
    let (fr, sr) = consistency_roots(first, second, seed, rest).ok_or(proof_length)?;
    // Both roots are compared before deciding, and in constant time.
    if !bool::from(fr.ct_eq(first_root) & sr.ct_eq(second_root)) {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Steps 3 to 7 of RFC 9162 §2.1.4.2 but the final comparison: the roots of the
/// trees of `first` and `second` leaves that the consistency path (`seed`, then
/// `rest`) leads to, or `None` if the path's length does not fit the sizes.
fn consistency_roots(first: u64, second: u64, seed: &Hash, rest: &[Hash]) -> Option<(Hash, Hash)> {
    // 3. Set fn to first - 1 and sn to second - 1.
    let mut f_n = first - 1;
    let mut s_n = second - 1;
    // 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is
    //    not set.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. Set both fr and sr to the first value in the consistency_path array.
    let mut fr = *seed;
    let mut sr = *seed;
    // 6. For each subsequent value c in the consistency_path array:
    for c in rest {
        // a. If sn is 0, then stop the iteration and fail the proof verification.
        if s_n == 0 {
            return None;
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if f_n & 1 == 1 || f_n == s_n {
            // i. Set fr to HASH(0x01 || c || fr).
            //    Set sr to HASH(0x01 || c || sr).
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            // ii. If LSB(fn) is not set, then right-shift both fn and sn equally
            //     until either LSB(fn) is set or fn is 0.
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            // Otherwise:
            // i. Set sr to HASH(0x01 || sr || c).
            sr = node_hash(&sr, c);
        }
        // c. Finally, right-shift both fn and sn one time.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 7. After completing iterating through the consistency_path array as described
    //    above, verify that the fr calculated is equal to the first_hash supplied,
    //    that the sr calculated is equal to the second_hash supplied, and that sn
    //    is 0. (The caller compares the roots.)
    (s_n == 0).then_some((fr, sr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Vectors from github.com/transparency-dev/merkle; the file's `source` field
    /// names the files and commits.
    const TRANSPARENCY_DEV: &str =
        include_str!("../../../tests/vectors/merkle/transparency_dev.json");

    /// The sweep covers every tree size up to this many leaves: the size of the
    /// subtree vectors, and enough to cross 2^7 with a ragged right edge.
    const SWEEP_SIZE: u64 = 130;

    /// The arbitrary hash proof/verify_test.go uses as a wrong leaf, root or node.
    const SOME_HASH: &str = "abacaba000000000000000000000000000000000000000000060061e00123456";

    #[derive(Deserialize)]
    struct Vectors {
        leaf_inputs: Vec<String>,
        node_hashes: Vec<Vec<String>>,
        roots: Vec<String>,
        inclusion_proofs: Vec<InclusionVector>,
        consistency_proofs: Vec<ConsistencyVector>,
        inclusion_proof_shapes: Shapes<InclusionRequest>,
        consistency_proof_shapes: Shapes<ConsistencyRequest>,
        subtree_digests: SubtreeDigests,
    }

    #[derive(Deserialize)]
    struct InclusionVector {
        index: u64,
        size: u64,
        proof: Vec<String>,
    }

    #[derive(Deserialize)]
    struct ConsistencyVector {
        first: u64,
        second: u64,
        proof: Vec<String>,
    }

    #[derive(Deserialize)]
    struct Shapes<Request> {
        cases: Vec<Shape<Request>>,
        invalid: Vec<Request>,
    }

    #[derive(Deserialize)]
    struct Shape<Request> {
        #[serde(flatten)]
        request: Request,
        /// `[level, index]` of perfect subtrees.
        nodes: Vec<[u64; 2]>,
        /// `nodes[begin..end]` fold into one right-edge node.
        rehash: Option<[usize; 2]>,
    }

    #[derive(Deserialize, Clone, Copy, Debug)]
    struct InclusionRequest {
        index: u64,
        size: u64,
    }

    #[derive(Deserialize, Clone, Copy, Debug)]
    struct ConsistencyRequest {
        first: u64,
        second: u64,
    }

    #[derive(Deserialize)]
    struct SubtreeDigests {
        max_size: u64,
        subtree_hash: String,
        subtree_inclusion_proof: String,
        subtree_consistency_proof: String,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(TRANSPARENCY_DEV).expect("the vector file parses")
    }

    fn hash_from_hex(text: &str) -> Hash {
        hex::decode(text)
            .expect("hex")
            .try_into()
            .expect("32 bytes")
    }

    fn hashes_from_hex(texts: &[String]) -> Vec<Hash> {
        texts.iter().map(|text| hash_from_hex(text)).collect()
    }

    /// The leaf hashes of the subtree vectors: leaf `i` is the single byte `i`.
    fn byte_leaves(count: u64) -> Vec<Hash> {
        (0..count).map(|i| leaf_hash(&[i as u8])).collect()
    }

    /// The reference: RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 as written, recursing
    /// on ranges `D[start:end]` of `leaves` where the RFC recurses on lists. Obviously
    /// right, which is what it is for; the memo only spares debug builds from hashing
    /// every range again at every level of every recursion.
    struct Reference {
        leaves: Vec<Hash>,
        mth_memo: RefCell<HashMap<(usize, usize), Hash>>,
    }

    impl Reference {
        fn new(leaves: &[Hash]) -> Reference {
            Reference {
                leaves: leaves.to_vec(),
                mth_memo: RefCell::new(HashMap::new()),
            }
        }

        /// MTH(D[start:end]), RFC 9162 §2.1.1:
        /// `MTH({}) = HASH()`, `MTH({d(0)}) = HASH(0x00 || d(0))` (a leaf hash here),
        /// `MTH(D_n) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`.
        fn mth(&self, start: usize, end: usize) -> Hash {
            if let Some(hash) = self.mth_memo.borrow().get(&(start, end)) {
                return *hash;
            }
            let hash = match end - start {
                0 => empty_root(),
                1 => self.leaves[start],
                n => {
                    let k = largest_power_of_two_below(n);
                    node_hash(&self.mth(start, start + k), &self.mth(start + k, end))
                }
            };
            self.mth_memo.borrow_mut().insert((start, end), hash);
            hash
        }

        /// PATH(m, D[start:end]), RFC 9162 §2.1.3.1, `m` counted from `start`.
        fn path(&self, m: usize, start: usize, end: usize) -> Vec<Hash> {
            let n = end - start;
            if n == 1 {
                return Vec::new();
            }
            let k = largest_power_of_two_below(n);
            if m < k {
                let mut path = self.path(m, start, start + k);
                path.push(self.mth(start + k, end));
                path
            } else {
                let mut path = self.path(m - k, start + k, end);
                path.push(self.mth(start, start + k));
                path
            }
        }

        /// PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true), RFC 9162 §2.1.4.1.
        fn proof(&self, m: usize, n: usize) -> Vec<Hash> {
            self.subproof(m, 0, n, true)
        }

        /// SUBPROOF(m, D[start:end], b), RFC 9162 §2.1.4.1, `m` counted from `start`.
        fn subproof(&self, m: usize, start: usize, end: usize, known: bool) -> Vec<Hash> {
            let n = end - start;
            if m == n {
                return if known {
                    Vec::new()
                } else {
                    vec![self.mth(start, end)]
                };
            }
            let k = largest_power_of_two_below(n);
            if m <= k {
                let mut proof = self.subproof(m, start, start + k, known);
                proof.push(self.mth(start + k, end));
                proof
            } else {
                let mut proof = self.subproof(m - k, start + k, end, false);
                proof.push(self.mth(start, start + k));
                proof
            }
        }

        /// SUBPROOF generalised from the prefix `D[0:m]` to a subtree
        /// `D[sub_start:sub_end]` of `D[start:end]` (both counted from `start`), as
        /// the subtree consistency vectors need. With `sub_start == 0` it is
        /// `subproof`; a valid subtree that straddles the split point k starts at 0.
        fn subtree_subproof(
            &self,
            sub_start: usize,
            sub_end: usize,
            start: usize,
            end: usize,
            known: bool,
        ) -> Vec<Hash> {
            let n = end - start;
            if sub_start == 0 {
                return self.subproof(sub_end, start, end, known);
            }
            let k = largest_power_of_two_below(n);
            if sub_end <= k {
                let mut proof = self.subtree_subproof(sub_start, sub_end, start, start + k, known);
                proof.push(self.mth(start + k, end));
                proof
            } else {
                assert!(sub_start >= k, "a subtree that straddles k starts at 0");
                let mut proof =
                    self.subtree_subproof(sub_start - k, sub_end - k, start + k, end, known);
                proof.push(self.mth(start, start + k));
                proof
            }
        }
    }

    fn largest_power_of_two_below(n: usize) -> usize {
        assert!(n > 1);
        1 << (n - 1).ilog2()
    }

    /// Whether [start, end) is a subtree in the sense of the subtree vectors.
    fn is_valid_subtree(start: u64, end: u64) -> bool {
        start == 0 || start.is_multiple_of((end - start).next_power_of_two())
    }

    fn write_proof_line(digest: &mut Sha256, prefix: &str, proof: &[Hash]) {
        digest.update(prefix.as_bytes());
        for hash in proof {
            digest.update(format!(" {}", hex::encode(hash)).as_bytes());
        }
        digest.update(b"\n");
    }

    /// One set of arguments to `verify_inclusion`, named for the corruption it holds.
    #[derive(Clone)]
    struct InclusionProbe {
        what: String,
        leaf: Hash,
        index: u64,
        size: u64,
        proof: Vec<Hash>,
        root: Hash,
    }

    impl InclusionProbe {
        fn changed(&self, what: &str, change: impl FnOnce(&mut InclusionProbe)) -> InclusionProbe {
            let mut probe = InclusionProbe {
                what: what.to_owned(),
                ..self.clone()
            };
            change(&mut probe);
            probe
        }

        fn verify(&self) -> Result<(), MerkleError> {
            verify_inclusion(&self.leaf, self.index, self.size, &self.proof, &self.root)
        }

        /// The proof with each of `bits` flipped in each of its hashes, one at a time
        /// (each must fail with `RootMismatch`), cut by one hash, extended by one, and
        /// presented for a neighbouring index and for a tree of another height.
        fn corruptions(&self, bits: &[usize]) -> Vec<(InclusionProbe, Option<MerkleError>)> {
            let mut probes = Vec::new();
            for position in 0..self.proof.len() {
                for &bit in bits {
                    let what = format!("bit {bit} of hash {position} flipped");
                    let flipped =
                        self.changed(&what, |p| p.proof[position][bit / 8] ^= 1 << (bit % 8));
                    probes.push((flipped, Some(MerkleError::RootMismatch)));
                }
            }
            if !self.proof.is_empty() {
                probes.push((
                    self.changed("truncated", |p| p.proof.truncate(p.proof.len() - 1)),
                    None,
                ));
            }
            for probe in [
                self.changed("trailing zeros", |p| p.proof.push([0; 32])),
                self.changed("preceding zeros", |p| p.proof.insert(0, [0; 32])),
                self.changed("index - 1", |p| p.index = p.index.wrapping_sub(1)),
                self.changed("index + 1", |p| p.index += 1),
                self.changed("size * 2", |p| p.size *= 2),
                self.changed("size / 2", |p| p.size /= 2),
            ] {
                probes.push((probe, None));
            }
            probes
        }

        /// The rest of what proof/verify_test.go's corruptInclusionProof tries.
        fn more_corruptions_from_go(&self) -> Vec<(InclusionProbe, Option<MerkleError>)> {
            let some_hash = hash_from_hex(SOME_HASH);
            let mut probes = vec![
                self.changed("index ^ 2", |p| p.index ^= 2),
                self.changed("wrong leaf", |p| p.leaf = some_hash),
                self.changed("empty root", |p| p.root = empty_root()),
                self.changed("random root", |p| p.root = some_hash),
                self.changed("trailing root", |p| p.proof.push(p.root)),
                self.changed("preceding root", |p| p.proof.insert(0, p.root)),
            ];
            if self.proof.len() > 1 {
                probes.push(self.changed("inserted", |p| p.proof.insert(1, some_hash)));
            }
            probes.into_iter().map(|probe| (probe, None)).collect()
        }
    }

    /// One set of arguments to `verify_consistency`, named for the corruption it holds.
    #[derive(Clone)]
    struct ConsistencyProbe {
        what: String,
        first: u64,
        second: u64,
        first_root: Hash,
        second_root: Hash,
        proof: Vec<Hash>,
    }

    impl ConsistencyProbe {
        fn changed(
            &self,
            what: &str,
            change: impl FnOnce(&mut ConsistencyProbe),
        ) -> ConsistencyProbe {
            let mut probe = ConsistencyProbe {
                what: what.to_owned(),
                ..self.clone()
            };
            change(&mut probe);
            probe
        }

        fn verify(&self) -> Result<(), MerkleError> {
            verify_consistency(
                self.first,
                self.second,
                &self.first_root,
                &self.second_root,
                &self.proof,
            )
        }

        /// The proof with each of `bits` flipped in each of its hashes, one at a time
        /// (each must fail with `RootMismatch`), cut by one hash, extended by one, and
        /// presented for neighbouring first sizes and a second tree of another height.
        fn corruptions(&self, bits: &[usize]) -> Vec<(ConsistencyProbe, Option<MerkleError>)> {
            let mut probes = Vec::new();
            for position in 0..self.proof.len() {
                for &bit in bits {
                    let what = format!("bit {bit} of hash {position} flipped");
                    let flipped =
                        self.changed(&what, |p| p.proof[position][bit / 8] ^= 1 << (bit % 8));
                    probes.push((flipped, Some(MerkleError::RootMismatch)));
                }
            }
            // With equal sizes the proof is empty: there is nothing to cut.
            if !self.proof.is_empty() {
                probes.push((
                    self.changed("truncated", |p| p.proof.truncate(p.proof.len() - 1)),
                    None,
                ));
            }
            for probe in [
                self.changed("trailing zeros", |p| p.proof.push([0; 32])),
                self.changed("preceding zeros", |p| p.proof.insert(0, [0; 32])),
                self.changed("first - 1", |p| p.first -= 1),
                self.changed("first + 1", |p| p.first += 1),
                self.changed("second * 2", |p| p.second *= 2),
                self.changed("second / 2", |p| p.second /= 2),
            ] {
                probes.push((probe, None));
            }
            probes
        }

        /// The rest of what proof/verify_test.go's corruptConsistencyProof tries.
        fn more_corruptions_from_go(&self) -> Vec<(ConsistencyProbe, Option<MerkleError>)> {
            let wrong_root = leaf_hash(b"WrongRoot");
            let mut probes = vec![
                self.changed("first ^ 2", |p| p.first ^= 2),
                self.changed("wrong first root", |p| p.first_root = wrong_root),
                self.changed("wrong second root", |p| p.second_root = wrong_root),
                self.changed("trailing first root", |p| p.proof.push(p.first_root)),
                self.changed("trailing second root", |p| p.proof.push(p.second_root)),
                self.changed("preceding first root", |p| p.proof.insert(0, p.first_root)),
                self.changed("preceding second root", |p| {
                    p.proof.insert(0, p.second_root)
                }),
            ];
            // With equal sizes the roots are equal and the proof is empty: swapping the
            // roots or emptying the proof changes nothing.
            if self.first != self.second {
                probes.push(self.changed("swapped roots", |p| {
                    std::mem::swap(&mut p.first_root, &mut p.second_root)
                }));
                probes.push(self.changed("empty proof", |p| p.proof.clear()));
                probes.push(self.changed("preceding proof[0]", |p| p.proof.insert(0, p.proof[0])));
            }
            probes.into_iter().map(|probe| (probe, None)).collect()
        }
    }

    /// A set of arguments to one of the verifiers.
    trait Probe {
        fn what(&self) -> &str;
        fn verify(&self) -> Result<(), MerkleError>;
    }

    impl Probe for InclusionProbe {
        fn what(&self) -> &str {
            &self.what
        }
        fn verify(&self) -> Result<(), MerkleError> {
            InclusionProbe::verify(self)
        }
    }

    impl Probe for ConsistencyProbe {
        fn what(&self) -> &str {
            &self.what
        }
        fn verify(&self) -> Result<(), MerkleError> {
            ConsistencyProbe::verify(self)
        }
    }

    /// Asserts that `good` verifies and that none of `corruptions` does, failing with
    /// the error given alongside where there is one.
    fn assert_only_the_original_verifies<P: Probe>(
        good: &P,
        corruptions: impl IntoIterator<Item = (P, Option<MerkleError>)>,
    ) {
        assert_eq!(good.verify(), Ok(()), "{}", good.what());
        for (probe, error) in corruptions {
            let outcome = probe.verify();
            match error {
                Some(error) => assert_eq!(outcome, Err(error), "{}: {}", good.what(), probe.what()),
                None => assert!(
                    outcome.is_err(),
                    "{}: {} verified",
                    good.what(),
                    probe.what()
                ),
            }
        }
    }

    #[test]
    fn transparency_dev_roots_and_stored_nodes_are_reproduced() {
        let vectors = vectors();
        let leaves: Vec<Hash> = vectors
            .leaf_inputs
            .iter()
            .map(|input| leaf_hash(&hex::decode(input).expect("hex")))
            .collect();
        let roots = hashes_from_hex(&vectors.roots);
        assert_eq!(roots.len(), leaves.len() + 1);
        assert_eq!(roots[0], empty_root());

        let built = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        let mut pushed = MerkleTree::new();
        assert_eq!(pushed.root(0), Ok(roots[0]));
        for (size, leaf) in (1u64..).zip(&leaves) {
            pushed.push(*leaf);
            assert_eq!(
                pushed.root(size),
                Ok(roots[size as usize]),
                "pushed, size {size}"
            );
        }
        for (size, root) in (0u64..).zip(&roots) {
            assert_eq!(built.root(size), Ok(*root), "built, size {size}");
        }
        // The stored levels are exactly the Go package's table of complete subtrees.
        let node_hashes: Vec<Vec<Hash>> = vectors
            .node_hashes
            .iter()
            .map(|row| hashes_from_hex(row))
            .collect();
        assert_eq!(built.levels, node_hashes);
        assert_eq!(pushed.levels, node_hashes);
    }

    #[test]
    fn transparency_dev_proofs_are_reproduced_and_verify() {
        let vectors = vectors();
        let leaves: Vec<Hash> = vectors
            .leaf_inputs
            .iter()
            .map(|input| leaf_hash(&hex::decode(input).expect("hex")))
            .collect();
        let roots = hashes_from_hex(&vectors.roots);
        let tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        let every_bit: Vec<usize> = (0..256).collect();

        for case in &vectors.inclusion_proofs {
            let expected = hashes_from_hex(&case.proof);
            let leaf = &leaves[case.index as usize];
            let root = &roots[case.size as usize];
            assert_eq!(
                tree.inclusion_proof(case.index, case.size),
                Ok(expected.clone())
            );
            let good = InclusionProbe {
                what: format!("inclusion of {} in {}", case.index, case.size),
                leaf: *leaf,
                index: case.index,
                size: case.size,
                proof: expected,
                root: *root,
            };
            assert_only_the_original_verifies(&good, good.corruptions(&every_bit));
            assert_only_the_original_verifies(&good, good.more_corruptions_from_go());
        }
        for case in &vectors.consistency_proofs {
            let expected = hashes_from_hex(&case.proof);
            let first_root = &roots[case.first as usize];
            let second_root = &roots[case.second as usize];
            assert_eq!(
                tree.consistency_proof(case.first, case.second),
                Ok(expected.clone())
            );
            let good = ConsistencyProbe {
                what: format!("consistency of {} and {}", case.first, case.second),
                first: case.first,
                second: case.second,
                first_root: *first_root,
                second_root: *second_root,
                proof: expected,
            };
            assert_only_the_original_verifies(&good, good.corruptions(&every_bit));
            assert_only_the_original_verifies(&good, good.more_corruptions_from_go());
        }
    }

    #[test]
    fn transparency_dev_proof_shapes_are_reproduced() {
        let vectors = vectors();
        // Any leaves do: the shapes name nodes, and the reference hashes them.
        let leaves = byte_leaves(95);
        let tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        let reference = Reference::new(&leaves);
        let resolve = |nodes: &[[u64; 2]], rehash: Option<[usize; 2]>| -> Vec<Hash> {
            let mut hashes: Vec<Hash> = nodes
                .iter()
                .map(|&[level, index]| {
                    reference.mth((index << level) as usize, ((index + 1) << level) as usize)
                })
                .collect();
            if let Some([begin, end]) = rehash {
                let folded = hashes[begin + 1..end]
                    .iter()
                    .fold(hashes[begin], |right, left| node_hash(left, &right));
                hashes.splice(begin..end, [folded]);
            }
            hashes
        };

        for shape in &vectors.inclusion_proof_shapes.cases {
            let InclusionRequest { index, size } = shape.request;
            assert_eq!(
                tree.inclusion_proof(index, size),
                Ok(resolve(&shape.nodes, shape.rehash)),
                "{:?}",
                shape.request
            );
        }
        for request in &vectors.inclusion_proof_shapes.invalid {
            assert_eq!(
                tree.inclusion_proof(request.index, request.size),
                Err(MerkleError::IndexOutOfRange {
                    index: request.index,
                    size: request.size
                })
            );
        }
        for shape in &vectors.consistency_proof_shapes.cases {
            let ConsistencyRequest { first, second } = shape.request;
            assert_eq!(
                tree.consistency_proof(first, second),
                Ok(resolve(&shape.nodes, shape.rehash)),
                "{:?}",
                shape.request
            );
        }
        for request in &vectors.consistency_proof_shapes.invalid {
            assert_eq!(
                tree.consistency_proof(request.first, request.second),
                Err(MerkleError::BadRange {
                    first: request.first,
                    second: request.second
                })
            );
        }
    }

    /// The rolling digests of draft-ietf-plants-merkle-tree-certs' subtree vectors,
    /// as transparency-dev/merkle testonly/vectors_test.go computes them. Their
    /// `start == 0` lines are every root, every inclusion proof and every consistency
    /// proof of every tree up to 130 leaves, and those come from `MerkleTree` here.
    /// Lines with `start > 0` are about a subtree inside a larger tree: subtree hashes
    /// and inclusion proofs come from `MerkleTree` too (a subtree's inclusion proof is
    /// the proof in the tree of its own leaves); subtree consistency proofs are not
    /// RFC 9162 and come from the reference.
    #[test]
    fn subtree_vector_digests_are_reproduced() {
        let digests = vectors().subtree_digests;
        let max = digests.max_size;
        assert_eq!(max, SWEEP_SIZE);
        let leaves = byte_leaves(max);
        let tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        let reference = Reference::new(&leaves);
        // The tree of the leaves from `start` on, for the subtrees' inclusion proofs.
        let trees_from: Vec<MerkleTree> = (0..max as usize)
            .map(|start| MerkleTree::from_leaf_hashes(leaves[start..].iter().copied()))
            .collect();

        let mut hashes = Sha256::new();
        let mut inclusion = Sha256::new();
        for end in 1..=max {
            for start in (0..end).filter(|&start| is_valid_subtree(start, end)) {
                let subtree_root = if start == 0 {
                    tree.root(end).unwrap()
                } else {
                    tree.subtree_hash(start, end)
                };
                hashes.update(format!("[{start}, {end}) {}\n", hex::encode(subtree_root)));
                for index in start..end {
                    let proof = trees_from[start as usize]
                        .inclusion_proof(index - start, end - start)
                        .unwrap();
                    write_proof_line(&mut inclusion, &format!("{index} [{start}, {end})"), &proof);
                }
            }
        }
        assert_eq!(hex::encode(hashes.finalize()), digests.subtree_hash);
        assert_eq!(
            hex::encode(inclusion.finalize()),
            digests.subtree_inclusion_proof
        );

        let mut consistency = Sha256::new();
        for size in 0..=max {
            for end in 1..=size {
                for start in (0..end).filter(|&start| is_valid_subtree(start, end)) {
                    let proof = if start == 0 {
                        tree.consistency_proof(end, size).unwrap()
                    } else {
                        reference.subtree_subproof(
                            start as usize,
                            end as usize,
                            0,
                            size as usize,
                            true,
                        )
                    };
                    write_proof_line(
                        &mut consistency,
                        &format!("[{start}, {end}) {size}"),
                        &proof,
                    );
                }
            }
        }
        assert_eq!(
            hex::encode(consistency.finalize()),
            digests.subtree_consistency_proof
        );
    }

    /// Every root and every proof of every tree up to 130 leaves equals the RFC's
    /// recursive definition, both while the tree grows (the asked size is the tree's
    /// size) and afterwards (the asked size is a past one), and every proof verifies.
    #[test]
    fn tree_matches_the_rfc_definitions_at_every_size_up_to_130() {
        let leaves = byte_leaves(SWEEP_SIZE);
        let reference = Reference::new(&leaves);
        let mut growing = MerkleTree::new();
        let mut expected = Vec::new();
        for size in 1..=SWEEP_SIZE {
            growing.push(leaves[size as usize - 1]);
            let n = size as usize;
            let root = reference.mth(0, n);
            let inclusion: Vec<Vec<Hash>> = (0..n).map(|m| reference.path(m, 0, n)).collect();
            let consistency: Vec<Vec<Hash>> = (1..=n).map(|m| reference.proof(m, n)).collect();
            assert_eq!(growing.root(size), Ok(root), "size {size}");
            for index in 0..size {
                assert_eq!(
                    growing.inclusion_proof(index, size).as_ref(),
                    Ok(&inclusion[index as usize]),
                    "inclusion of {index} in {size}"
                );
            }
            for first in 1..=size {
                assert_eq!(
                    growing.consistency_proof(first, size).as_ref(),
                    Ok(&consistency[first as usize - 1]),
                    "consistency of {first} and {size}"
                );
            }
            expected.push((root, inclusion, consistency));
        }

        let whole = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        assert_eq!(whole, growing);
        for size in 1..=SWEEP_SIZE {
            let (root, inclusion, consistency) = &expected[size as usize - 1];
            assert_eq!(whole.root(size), Ok(*root), "size {size}");
            for index in 0..size {
                let proof = whole.inclusion_proof(index, size).unwrap();
                assert_eq!(
                    &proof, &inclusion[index as usize],
                    "inclusion of {index} in {size}"
                );
                assert_eq!(
                    verify_inclusion(&leaves[index as usize], index, size, &proof, root),
                    Ok(()),
                    "inclusion of {index} in {size}"
                );
            }
            for first in 1..=size {
                let proof = whole.consistency_proof(first, size).unwrap();
                assert_eq!(
                    &proof,
                    &consistency[first as usize - 1],
                    "consistency of {first} and {size}"
                );
                let first_root = &expected[first as usize - 1].0;
                assert_eq!(
                    verify_consistency(first, size, first_root, root, &proof),
                    Ok(()),
                    "consistency of {first} and {size}"
                );
            }
        }
    }

    #[test]
    fn corrupted_proofs_never_verify_at_any_size_up_to_130() {
        let leaves = byte_leaves(SWEEP_SIZE);
        let tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        let roots: Vec<Hash> = (0..=SWEEP_SIZE)
            .map(|size| tree.root(size).unwrap())
            .collect();
        for size in 1..=SWEEP_SIZE {
            let root = &roots[size as usize];
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                // A different bit for each case, so that over the sweep every bit
                // position of a hash gets flipped.
                let bit = ((size * 31 + index * 7) % 256) as usize;
                let good = InclusionProbe {
                    what: format!("inclusion of {index} in {size}"),
                    leaf: leaves[index as usize],
                    index,
                    size,
                    proof,
                    root: *root,
                };
                assert_only_the_original_verifies(&good, good.corruptions(&[bit]));
            }
            for first in 1..=size {
                let proof = tree.consistency_proof(first, size).unwrap();
                let bit = ((size * 31 + first * 7) % 256) as usize;
                let good = ConsistencyProbe {
                    what: format!("consistency of {first} and {size}"),
                    first,
                    second: size,
                    first_root: roots[first as usize],
                    second_root: *root,
                    proof,
                };
                assert_only_the_original_verifies(&good, good.corruptions(&[bit]));
            }
        }
    }

    #[test]
    fn requests_outside_the_tree_are_refused() {
        let tree = MerkleTree::from_leaf_hashes(byte_leaves(5));
        let too_big = MerkleError::SizeOutOfRange {
            size: 6,
            available: 5,
        };
        assert_eq!(tree.root(6), Err(too_big));
        assert_eq!(tree.inclusion_proof(0, 6), Err(too_big));
        assert_eq!(
            tree.inclusion_proof(5, 5),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            tree.inclusion_proof(3, 3),
            Err(MerkleError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            tree.inclusion_proof(0, 0),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(tree.consistency_proof(1, 6), Err(too_big));
        assert_eq!(
            tree.consistency_proof(0, 3),
            Err(MerkleError::BadRange {
                first: 0,
                second: 3
            })
        );
        assert_eq!(
            tree.consistency_proof(4, 3),
            Err(MerkleError::BadRange {
                first: 4,
                second: 3
            })
        );
        assert_eq!(tree.consistency_proof(5, 5), Ok(Vec::new()));
        assert_eq!(MerkleTree::new().root(0), Ok(empty_root()));
        assert_eq!(
            MerkleTree::new().root(1),
            Err(MerkleError::SizeOutOfRange {
                size: 1,
                available: 0
            })
        );
    }

    /// The parameter probes of proof/verify_test.go (TestVerifyInclusion,
    /// TestVerifyConsistency), with 32-byte stand-ins for its odd-length hashes. One
    /// deliberate difference: a first size of 0 is refused here, where Go accepts it.
    #[test]
    fn verifiers_refuse_impossible_parameters() {
        let some_hash = hash_from_hex(SOME_HASH);
        let empty = empty_root();
        for (index, size) in [(0, 0), (0, 1), (1, 0), (2, 1)] {
            for (leaf, root) in [(some_hash, [0; 32]), ([0; 32], empty), (some_hash, empty)] {
                assert!(
                    verify_inclusion(&leaf, index, size, &[], &root).is_err(),
                    "{index} in {size}"
                );
            }
        }
        // A one-leaf tree's root is its leaf hash, with an empty proof.
        let data = leaf_hash(b"data");
        assert_eq!(verify_inclusion(&data, 0, 1, &[], &data), Ok(()));
        assert_eq!(
            verify_inclusion(&data, 0, 1, &[], &some_hash),
            Err(MerkleError::RootMismatch)
        );
        assert_eq!(
            verify_inclusion(&data, 0, 1, &[data], &data),
            Err(MerkleError::ProofLength { len: 1 })
        );
        assert_eq!(
            verify_inclusion(&data, u64::MAX - 1, u64::MAX, &[], &data),
            Err(MerkleError::ProofLength { len: 0 })
        );

        let root1 = leaf_hash(b"don't care 1");
        let root2 = leaf_hash(b"don't care 2");
        let bad_range = |first, second| Err(MerkleError::BadRange { first, second });
        // Sizes that are always consistent.
        assert_eq!(verify_consistency(1, 1, &root2, &root2, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 0, &root1, &root1, &[]),
            bad_range(0, 0)
        );
        assert_eq!(
            verify_consistency(0, 1, &root1, &root2, &[]),
            bad_range(0, 1)
        );
        // Equal sizes with different roots.
        assert_eq!(
            verify_consistency(1, 1, &root1, &root2, &[]),
            Err(MerkleError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(1, 1, &empty, &root2, &[]),
            Err(MerkleError::RootMismatch)
        );
        // Time travel to the past.
        assert_eq!(
            verify_consistency(1, 0, &root1, &root2, &[]),
            bad_range(1, 0)
        );
        assert_eq!(
            verify_consistency(2, 1, &root1, &root2, &[]),
            bad_range(2, 1)
        );
        // An empty proof between different sizes.
        assert_eq!(
            verify_consistency(1, 2, &root1, &root2, &[]),
            Err(MerkleError::ProofLength { len: 0 })
        );
        // Roots that match, but a proof that is not empty.
        assert_eq!(
            verify_consistency(0, 0, &empty, &empty, &[empty]),
            bad_range(0, 0)
        );
        assert_eq!(
            verify_consistency(0, 1, &empty, &empty, &[empty]),
            bad_range(0, 1)
        );
        assert_eq!(
            verify_consistency(1, 1, &empty, &empty, &[empty]),
            Err(MerkleError::ProofLength { len: 1 })
        );
        assert_eq!(
            verify_consistency(u64::MAX, u64::MAX, &root1, &root1, &[]),
            Ok(())
        );
        // Huge sizes must not overflow or loop: a short proof just fails.
        assert!(verify_consistency(u64::MAX - 1, u64::MAX, &root1, &root2, &[root1]).is_err());
        assert!(verify_inclusion(&root1, u64::MAX - 1, u64::MAX, &[root2], &root1).is_err());
    }

    /// Documents the limit on `verify_inclusion`'s doc comment: what the proof pins
    /// down is the root, and the size must come with the root.
    #[test]
    fn an_inclusion_proof_binds_the_root_not_the_size() {
        let tree = MerkleTree::from_leaf_hashes(byte_leaves(4));
        let proof = tree.inclusion_proof(0, 4).unwrap();
        let root = tree.root(4).unwrap();
        let leaf = leaf_hash(&[0]);
        assert_eq!(verify_inclusion(&leaf, 0, 4, &proof, &root), Ok(()));
        assert_eq!(verify_inclusion(&leaf, 0, 3, &proof, &root), Ok(()));
        // Against the root of 3 leaves, which is what a checkpoint of size 3 holds,
        // the same proof fails.
        let root_of_three = tree.root(3).unwrap();
        assert_eq!(
            verify_inclusion(&leaf, 0, 3, &proof, &root_of_three),
            Err(MerkleError::RootMismatch)
        );
    }

    #[test]
    fn memory_bytes_counts_every_stored_hash() {
        assert!(MerkleTree::new().memory_bytes() >= std::mem::size_of::<Vec<Hash>>());
        for size in [1u64, 2, 3, 7, 8, 100, 1000] {
            let tree = MerkleTree::from_leaf_hashes(byte_leaves(size));
            // size >> k hashes at each level k: 2 * size minus the set bits of size.
            let stored = 2 * size - u64::from(size.count_ones());
            let counted: u64 = tree.levels.iter().map(|row| row.len() as u64).sum();
            assert_eq!(counted, stored, "size {size}");
            assert!(tree.memory_bytes() >= stored as usize * 32, "size {size}");
            assert!(
                tree.memory_bytes() <= (stored as usize + 64) * 32 + 64 * 24,
                "size {size}"
            );
        }
    }

    #[test]
    fn debug_prints_the_size_not_the_hashes() {
        let tree = MerkleTree::from_leaf_hashes(byte_leaves(3));
        assert_eq!(format!("{tree:?}"), "MerkleTree { size: 3, .. }");
    }
}
