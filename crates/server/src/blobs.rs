//! The blob stores of protocol v1.1 §D: every module and archive a request
//! plaintext carried, kept in memory by SHA-256 so that a later request may name it
//! (`module_sha256`, `tar_sha256`) instead of sending it again.
//!
//! One store per scope, the scope being the client's bearer token when
//! authentication is on and one shared scope when it is off. Each store has its own
//! budget (`blobs.store_bytes`) and evicts least recently used blobs first within
//! it. There is no eviction across scopes: a client could otherwise learn of
//! another scope's activity from its own blobs disappearing. Scopes are the
//! configured tokens plus the open one (only a token that matched becomes a scope),
//! so the memory held is at most `(tokens + 1) × store_bytes`.
//!
//! The budget counts what a blob costs, not only its bytes: each is charged its
//! length plus [`ENTRY_OVERHEAD_BYTES`] (the store's own bookkeeping), and an
//! archive, once a mount has read it, also the tree its mounts share (see
//! [`image_charge`]). Otherwise a flood of tiny blobs would hold many times the
//! budget.
//!
//! Every operation is O(1) per blob it touches (an LRU list over a hash map), under
//! a lock of this store alone that is held for map operations only. What an
//! insertion evicts is dropped after the lock is released, and not on the calling
//! thread when that is a runtime's worker (the guest runtime's, for executions):
//! dropping a blob zeroizes its bytes, which for a large one takes long enough to
//! delay every guest sharing that thread.
//!
//! Blob bytes are plaintext: they live in a buffer that is zeroized when the last
//! reference goes (the store's, and any execution's or file's still reading it), and
//! never reach the disk.
//!
//! Architecture invariant: a lookup is always within one [`Scope`]; no function
//! here takes a hash without a scope.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::Bytes;
use lru::LruCache;
use zeroize::Zeroize;

use crate::access::Scope;
use crate::sandbox::cache::dispose;
use crate::sandbox::fs::{ArchiveError, MountImage, read_image};

/// Bytes charged for each blob on top of its own length: what keeping it costs the
/// server besides its bytes. A one-byte blob takes about 385 bytes (measured by
/// the unit test `the_entry_overhead_covers_what_a_tiny_blob_allocates`: 288
/// bytes in 4 allocations, plus up to 24 bytes of allocator rounding and header
/// each); the test holds this constant above it. Where they go:
/// - the LRU node: the key (32), the entry (the `Arc` and the charge, 16), two
///   links (16);
/// - the hash map's slot for it: a pointer pair and a control byte, in a table at
///   most 7/8 full that doubles when it grows, so up to about 40 bytes a blob;
/// - the `Arc<Blob>`: two counts (16) and the `Blob` (its hash, its `Bytes`, the
///   store's handle and the empty archive view, about 120);
/// - the owner `Bytes` allocates for the buffer (its count, its vtable and the
///   buffer's `Vec`, about 48);
/// - the buffer itself, rounded up by the allocator, and a decoded base64
///   buffer's spare capacity (at most 2 bytes).
///
/// Rounded up to 512, so that a client filling its store with one-byte blobs holds
/// at most `store_bytes / 513` of them.
pub const ENTRY_OVERHEAD_BYTES: usize = 512;

/// Bytes charged for each entry (file or directory, the root included) of an
/// archive's tree ([`MountImage`]) once a mount has built it, on top of twice its
/// names' bytes. An entry is 40 bytes; the entries and the names are each one
/// vector that grew by doubling, so up to twice what they hold; and the
/// allocator's rounding comes on top. `the_image_charge_covers_what_an_archive_tree_allocates`
/// measured 66.7 KB for 301 entries with 27 KB of names (charged 83.0 KB) and
/// 2.8 KB for 38 entries on a deep path (charged 3.9 KB).
pub const IMAGE_ENTRY_BYTES: usize = 96;

/// The blob stores of every scope; cheap to share behind an `Arc`.
pub struct BlobStores {
    /// Bytes each scope's store may hold (`blobs.store_bytes`).
    budget: usize,
    scopes: Mutex<HashMap<Scope, Arc<BlobStore>>>,
}

impl BlobStores {
    pub fn new(budget: usize) -> BlobStores {
        BlobStores {
            budget,
            scopes: Mutex::new(HashMap::new()),
        }
    }

    /// The store of `scope`, created empty on first use.
    pub fn scope(&self, scope: Scope) -> Arc<BlobStore> {
        // Held only to find or insert one entry; never across an await, and never
        // across a store's own work, so one scope never waits for another.
        let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        scopes
            .entry(scope)
            .or_insert_with(|| Arc::new(BlobStore::new(self.budget)))
            .clone()
    }

    /// Bytes charged to every store together.
    pub fn total_bytes(&self) -> usize {
        // The stores are read after the map's lock is released: a store busy
        // evicting delays only this sum, never a request of another scope.
        let stores: Vec<Arc<BlobStore>> = {
            let scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
            scopes.values().cloned().collect()
        };
        stores.iter().map(|store| store.bytes()).sum()
    }
}

/// One scope's blobs, least recently used out first within a budget.
pub struct BlobStore {
    shared: Arc<Shared>,
}

/// A store's state, which its blobs refer to (weakly) to charge their archive view.
struct Shared {
    budget: usize,
    state: Mutex<State>,
    /// Told of every blob of this store that is dropped (tests only).
    #[cfg(test)]
    drops: OnceLock<std::sync::mpsc::Sender<tests::Dropped>>,
}

struct State {
    /// Most recently used first; `get` and `push` move an entry to the front.
    entries: LruCache<[u8; 32], Entry>,
    /// Sum of the entries' charges.
    total: usize,
    /// Entries looked at to evict (tests only): one per blob evicted.
    #[cfg(test)]
    visited: usize,
}

struct Entry {
    blob: Arc<Blob>,
    /// What the blob costs the budget: [`charge_of`] its length, plus its
    /// archive view's [`image_charge`] once that is built.
    charge: usize,
}

/// A module or archive as a client sent it, with its SHA-256.
#[derive(Debug)]
pub struct Blob {
    pub sha256: [u8; 32],
    /// The bytes, zeroized when the last slice of them is dropped.
    pub bytes: Bytes,
    /// The bytes read as a mount's archive, once, the first time a mount needs
    /// them (a refusal is kept too: the same bytes are refused the same way).
    image: OnceLock<Result<Arc<MountImage>, ArchiveError>>,
    /// The store that keeps this blob, charged for `image` when it is built.
    store: Weak<Shared>,
}

impl Blob {
    /// This blob as a mount's archive: parsed and checked on first use, at the
    /// server's maxima (`limits.files_bytes`, `limits.max_mount_entries`, which
    /// do not change while it runs), and shared by every execution that mounts it.
    /// Its file contents are slices of the blob's bytes, not copies. The store
    /// that keeps the blob is charged for the tree (or the refusal) it keeps.
    pub fn image(
        &self,
        max_files_bytes: u64,
        max_entries: u32,
    ) -> Result<Arc<MountImage>, ArchiveError> {
        self.image
            .get_or_init(|| {
                let image =
                    read_image(self.bytes.clone(), max_files_bytes, max_entries).map(Arc::new);
                if let Some(store) = self.store.upgrade() {
                    store.charge_more(self, image_charge(&image));
                }
                image
            })
            .clone()
    }
}

/// What keeping a blob of `len` bytes costs a store.
pub fn charge_of(len: usize) -> usize {
    len.saturating_add(ENTRY_OVERHEAD_BYTES)
}

/// What a blob's archive view costs the store that keeps it, beyond the blob's
/// bytes (which its files share): the tree's entries and names, or the refusal's
/// text.
pub fn image_charge(image: &Result<Arc<MountImage>, ArchiveError>) -> usize {
    match image {
        Ok(image) => {
            let entries = image.entry_count() as usize + 1;
            let names: usize = (0..entries as u32).map(|at| image.name(at).len()).sum();
            // The `Arc`'s counts, the struct, every entry, the names (twice:
            // the vector grew by doubling).
            16 + size_of::<MountImage>() + entries * IMAGE_ENTRY_BYTES + 2 * names
        }
        // The message names what was refused (a member's path, say): its text
        // stands for the heap the error holds.
        Err(error) => size_of::<ArchiveError>() + error.to_string().len(),
    }
}

impl BlobStore {
    fn new(budget: usize) -> BlobStore {
        BlobStore {
            shared: Arc::new(Shared {
                budget,
                state: Mutex::new(State {
                    entries: LruCache::unbounded(),
                    total: 0,
                    #[cfg(test)]
                    visited: 0,
                }),
                #[cfg(test)]
                drops: OnceLock::new(),
            }),
        }
    }

    /// The blob named `sha256`, if this store holds it; a use, for eviction.
    pub fn get(&self, sha256: &[u8; 32]) -> Option<Arc<Blob>> {
        let mut state = self.shared.lock();
        state.entries.get(sha256).map(|entry| entry.blob.clone())
    }

    /// Keeps `bytes`, whose SHA-256 the caller computed, and returns the blob. A
    /// blob already held is returned as it is (and counts as a use); one whose
    /// charge is more than the whole budget is returned without being kept. Least
    /// recently used blobs go until the new one fits.
    pub fn insert(&self, sha256: [u8; 32], bytes: Vec<u8>) -> Arc<Blob> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if let Some(entry) = state.entries.get(&sha256) {
            let blob = entry.blob.clone();
            drop(state);
            // The copy just received goes (zeroized by `ZeroizingBuf`) where
            // zeroizing it delays no one.
            dispose(vec![ZeroizingBuf(bytes)]);
            return blob;
        }
        let charge = charge_of(bytes.len());
        let blob = Arc::new(Blob {
            sha256,
            bytes: Bytes::from_owner(ZeroizingBuf(bytes)),
            image: OnceLock::new(),
            store: Arc::downgrade(shared),
        });
        if charge > shared.budget {
            return blob;
        }
        let evicted = state.evict_to(shared.budget - charge);
        state.total += charge;
        state.entries.push(
            sha256,
            Entry {
                blob: blob.clone(),
                charge,
            },
        );
        drop(state);
        dispose(evicted);
        blob
    }

    /// Bytes charged to this store.
    pub fn bytes(&self) -> usize {
        self.shared.lock().total
    }

    /// Blobs held.
    pub fn len(&self) -> usize {
        self.shared.lock().entries.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Held for map operations only; never across an await, never while a
        // blob is dropped. A panic while holding it leaves a consistent map (no
        // operation panics half-way), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Charges `extra` more bytes to `blob`, if this store still keeps that very
    /// blob (not an earlier one of the same hash, evicted since), evicting least
    /// recently used blobs, `blob` too if need be, to stay within the budget.
    fn charge_more(&self, blob: &Blob, extra: usize) {
        let mut state = self.lock();
        let Some(entry) = state.entries.peek_mut(&blob.sha256) else {
            return;
        };
        if !std::ptr::eq(Arc::as_ptr(&entry.blob), blob) {
            return;
        }
        entry.charge = entry.charge.saturating_add(extra);
        let too_large = entry.charge > self.budget;
        state.total = state.total.saturating_add(extra);
        let mut evicted = Vec::new();
        if too_large && let Some(entry) = state.entries.pop(&blob.sha256) {
            state.total -= entry.charge;
            evicted.push(entry.blob);
        }
        evicted.extend(state.evict_to(self.budget));
        drop(state);
        dispose(evicted);
    }
}

impl State {
    /// Takes least recently used entries out until at most `limit` bytes are
    /// charged; O(1) for each. The blobs are returned for the caller to drop once
    /// it has released the lock.
    fn evict_to(&mut self, limit: usize) -> Vec<Arc<Blob>> {
        let mut evicted = Vec::new();
        while self.total > limit {
            let Some((_, entry)) = self.entries.pop_lru() else {
                break;
            };
            #[cfg(test)]
            {
                self.visited += 1;
            }
            self.total -= entry.charge;
            evicted.push(entry.blob);
        }
        evicted
    }
}

/// A buffer that clears its bytes when dropped: the owner behind a blob's `Bytes`.
struct ZeroizingBuf(Vec<u8>);

impl AsRef<[u8]> for ZeroizingBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for ZeroizingBuf {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Tells a test's store of each of its blobs dropped: whether the store's lock was
/// free, and on which thread.
#[cfg(test)]
impl Drop for Blob {
    fn drop(&mut self) {
        if let Some(store) = self.store.upgrade()
            && let Some(drops) = store.drops.get()
        {
            let _ = drops.send(tests::Dropped {
                sha256: self.sha256,
                lock_free: store.state.try_lock().is_ok(),
                thread: std::thread::current().id(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::fs::archive::forge::{archive, dir, file};

    fn hash(n: u8) -> [u8; 32] {
        [n; 32]
    }

    /// A distinct hash for each `n`.
    fn hash_of(n: usize) -> [u8; 32] {
        let mut hash = [0; 32];
        hash[..8].copy_from_slice(&(n as u64).to_le_bytes());
        hash
    }

    /// A blob of this store that was dropped.
    pub(super) struct Dropped {
        pub sha256: [u8; 32],
        /// Whether the store's lock was free when it was dropped.
        pub lock_free: bool,
        pub thread: std::thread::ThreadId,
    }

    impl BlobStore {
        fn watch_drops(&self) -> std::sync::mpsc::Receiver<Dropped> {
            let (sender, receiver) = std::sync::mpsc::channel();
            assert!(self.shared.drops.set(sender).is_ok(), "watched once");
            receiver
        }

        fn visited(&self) -> usize {
            self.shared.lock().visited
        }
    }

    /// A store that holds `count` blobs of `len` bytes.
    fn room_for(count: usize, len: usize) -> BlobStore {
        BlobStore::new(count * charge_of(len))
    }

    #[test]
    fn each_scope_sees_only_its_own_blobs() {
        let stores = BlobStores::new(10_000);
        let alice = Scope::Token([1; 32]);
        let bob = Scope::Token([2; 32]);
        stores.scope(alice).insert(hash(9), vec![1, 2, 3]);
        assert!(stores.scope(alice).get(&hash(9)).is_some());
        assert!(stores.scope(bob).get(&hash(9)).is_none());
        assert!(stores.scope(Scope::Open).get(&hash(9)).is_none());
        assert_eq!(stores.total_bytes(), charge_of(3));
    }

    #[test]
    fn the_least_recently_used_blob_goes_first_within_the_budget() {
        let store = room_for(3, 10);
        store.insert(hash(1), vec![0; 10]);
        store.insert(hash(2), vec![0; 10]);
        store.insert(hash(3), vec![0; 10]);
        // 1 is used again, so 2 is now the least recently used.
        assert!(store.get(&hash(1)).is_some());
        store.insert(hash(4), vec![0; 10]);
        assert!(store.get(&hash(2)).is_none());
        for kept in [1, 3, 4] {
            assert!(store.get(&hash(kept)).is_some(), "{kept}");
        }
        assert_eq!(store.bytes(), 3 * charge_of(10));
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn a_blob_larger_than_the_budget_is_returned_but_not_kept() {
        let store = BlobStore::new(charge_of(10));
        store.insert(hash(1), vec![0; 5]);
        let big = store.insert(hash(2), vec![7; 11]);
        assert_eq!(&big.bytes[..], &[7; 11]);
        assert!(store.get(&hash(2)).is_none());
        assert!(store.get(&hash(1)).is_some(), "nothing was evicted for it");
        let nothing = BlobStore::new(0);
        nothing.insert(hash(1), vec![1]);
        assert!(nothing.is_empty());
    }

    #[test]
    fn inserting_a_held_blob_keeps_one_copy_and_counts_as_a_use() {
        let store = room_for(2, 10);
        let first = store.insert(hash(1), vec![1; 10]);
        store.insert(hash(2), vec![2; 10]);
        let again = store.insert(hash(1), vec![1; 10]);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(store.bytes(), 2 * charge_of(10));
        store.insert(hash(3), vec![3; 10]);
        assert!(
            store.get(&hash(2)).is_none(),
            "2 was the least recently used"
        );
        assert!(store.get(&hash(1)).is_some());
    }

    #[test]
    fn an_evicted_blob_stays_readable_while_an_execution_holds_it() {
        let store = room_for(1, 10);
        let held = store.insert(hash(1), vec![5; 10]);
        store.insert(hash(2), vec![6; 10]);
        assert!(store.get(&hash(1)).is_none());
        assert_eq!(&held.bytes[..], &[5; 10]);
    }

    #[test]
    fn tiny_blobs_are_charged_their_overhead_so_a_budget_bounds_their_count() {
        // Issue 25, row 6: 312,000 one-to-ten-byte blobs held about 395 bytes of
        // memory each while charged their length only.
        let budget = 1 << 20;
        let store = BlobStore::new(budget);
        for n in 0..20_000 {
            store.insert(hash_of(n), vec![n as u8]);
        }
        let most = budget / (ENTRY_OVERHEAD_BYTES + 1);
        assert!(
            store.len() <= most,
            "{} one-byte blobs kept in {budget} bytes; at most {most} fit",
            store.len()
        );
        assert!(store.bytes() <= budget);
    }

    #[test]
    fn the_entry_overhead_covers_what_a_tiny_blob_allocates() {
        // Allocator rounding and headers: up to 24 bytes for each allocation
        // (glibc's 8-byte header, rounded to 16); what the counter cannot see.
        const PER_ALLOCATION: i64 = 24;
        // 28,673 is one past 7/8 of 32,768: the hash table has just doubled to
        // 65,536 slots, the most it ever has per entry.
        let count = 28_673;
        let store = BlobStore::new(usize::MAX);
        let held = allocation_counter::measure(|| {
            for n in 0..count {
                store.insert(hash_of(n), vec![n as u8]);
            }
        });
        let real = held.bytes_current + PER_ALLOCATION * held.count_current;
        let per_blob = real as f64 / count as f64;
        assert!(
            real <= (count * charge_of(1)) as i64,
            "a one-byte blob takes {per_blob:.0} bytes; it is charged {}",
            charge_of(1)
        );
        // And the constant is not wildly more than the cost (a margin, not a
        // guess): within twice what was measured.
        assert!(
            per_blob * 2.0 >= charge_of(1) as f64,
            "a one-byte blob takes {per_blob:.0} bytes; {} is too much",
            charge_of(1)
        );
    }

    #[test]
    fn the_image_charge_covers_what_an_archive_tree_allocates() {
        // Deep paths (many implicit directories, short names) and wide ones (many
        // files, long names): the two ways an archive's tree grows.
        let deep: String = (0..40).map(|n| format!("{n}/")).collect();
        let archives = [
            archive(&[file(&format!("{deep}f"), b"x")]),
            archive(
                &(0..300)
                    .map(|n| file(&format!("{n:0>90}"), b"y"))
                    .collect::<Vec<_>>(),
            ),
            archive(&[dir("d"), file("d/a", b""), file("d/b", b"zz")]),
        ];
        for bytes in archives {
            let mut image = None;
            let held = allocation_counter::measure(|| {
                image = Some(read_image(bytes.clone(), 1 << 20, 10_000).map(Arc::new));
            });
            let image = image.expect("measured");
            let real = held.bytes_current + 24 * held.count_current;
            let charged = image_charge(&image) as i64;
            assert!(
                real <= charged,
                "a tree takes {real} bytes; charged {charged}"
            );
        }
    }

    #[test]
    fn a_mounted_archive_is_charged_its_tree_and_evicts_to_stay_within_budget() {
        let tar = archive(&[dir("d"), file("d/a", b"hello")]);
        let tree = image_charge(&read_image(tar.clone(), 1 << 20, 100).map(Arc::new));
        let store = BlobStore::new(charge_of(tar.len()) + charge_of(10) + tree - 1);
        store.insert(hash(1), vec![0; 10]);
        let blob = store.insert(hash(2), tar.to_vec());
        assert_eq!(store.bytes(), charge_of(10) + charge_of(tar.len()));
        let image = blob.image(1 << 20, 100).expect("a valid archive");
        assert_eq!(image.entry_count(), 2);
        assert!(
            store.get(&hash(1)).is_none(),
            "evicted to make room for the tree"
        );
        assert_eq!(store.bytes(), charge_of(tar.len()) + tree);
        // Built once, charged once.
        blob.image(1 << 20, 100).expect("kept");
        assert_eq!(store.bytes(), charge_of(tar.len()) + tree);
    }

    #[test]
    fn a_refused_archive_is_charged_its_error_and_a_tree_over_budget_is_not_kept() {
        let store = BlobStore::new(charge_of(1024) + 8);
        let not_a_tar = store.insert(hash(1), vec![0xff; 1024]);
        assert!(not_a_tar.image(1 << 20, 100).is_err());
        assert!(store.get(&hash(1)).is_none(), "its error does not fit");
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn an_eviction_visits_only_the_blobs_it_evicts() {
        // Issue 25, row 7: a store full of small blobs, then one large one. The
        // eviction scanned the whole map for each blob it evicted.
        let count = 5_000;
        let store = room_for(count, 1024);
        // Twice what fits: full, however blobs are charged.
        for n in 0..2 * count {
            store.insert(hash_of(n), vec![0; 1024]);
        }
        let held = store.len();
        let visited_before = store.visited();
        store.insert(hash_of(2 * count), vec![0; 100 * 1024]);
        let evicted = held + 1 - store.len();
        assert!(evicted >= 60, "{evicted} evicted");
        assert_eq!(
            store.visited() - visited_before,
            evicted,
            "one entry looked at per blob evicted"
        );
    }

    /// A store of room for one blob of 600 bytes, after two were inserted: the
    /// first was evicted (however the charge counts the overhead, two never fit).
    fn evicting(store_drops: impl FnOnce(&BlobStore)) -> BlobStore {
        let store = BlobStore::new(charge_of(600));
        store_drops(&store);
        store.insert(hash(1), vec![1; 600]);
        store.insert(hash(2), vec![2; 600]);
        assert_eq!(store.len(), 1);
        store
    }

    #[test]
    fn evicted_blobs_are_dropped_after_the_lock_is_released() {
        let mut drops = None;
        let _store = evicting(|store| drops = Some(store.watch_drops()));
        let dropped = drops
            .unwrap()
            .try_recv()
            .expect("dropped by the insertion, here");
        assert_eq!(dropped.sha256, hash(1));
        assert!(dropped.lock_free, "dropped with the store's lock held");
    }

    #[tokio::test]
    async fn on_a_runtime_evicted_blobs_are_dropped_off_the_callers_thread() {
        let mut drops = None;
        let _store = evicting(|store| drops = Some(store.watch_drops()));
        let drops = drops.unwrap();
        // A deadline for a failure only: the drop is under way once `insert`
        // returned.
        let dropped = tokio::task::spawn_blocking(move || {
            drops.recv_timeout(std::time::Duration::from_secs(60))
        })
        .await
        .unwrap()
        .expect("dropped");
        assert_eq!(dropped.sha256, hash(1));
        assert!(dropped.lock_free, "dropped with the store's lock held");
        assert_ne!(
            dropped.thread,
            std::thread::current().id(),
            "zeroized on the inserting task's thread"
        );
    }

    #[test]
    fn two_scopes_do_not_share_a_lock() {
        let stores = BlobStores::new(10_000);
        let alice = stores.scope(Scope::Token([1; 32]));
        let bob = stores.scope(Scope::Token([2; 32]));
        let _alice_busy = alice.shared.lock();
        assert!(bob.shared.state.try_lock().is_ok(), "bob waits for alice");
        assert!(
            stores.scopes.try_lock().is_ok(),
            "the scope map waits for alice"
        );
        bob.insert(hash(1), vec![1]);
        assert!(stores.scope(Scope::Open).get(&hash(1)).is_none());
    }
}
