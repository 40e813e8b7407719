//! The blob stores of protocol v1.1 §D: every module and archive a request
//! plaintext carried, kept in memory by SHA-256 so that a later request may name it
//! (`module_sha256`, `tar_sha256`) instead of sending it again.
//!
//! One store per scope, the scope being the client's bearer token when
//! authentication is on and one shared scope when it is off. Each store has its own
//! byte budget (`blobs.store_bytes`) and evicts least recently used blobs first
//! within it. There is no eviction across scopes: a client could otherwise learn of
//! another scope's activity from its own blobs disappearing. Scopes are the
//! configured tokens plus the open one, so the memory held is at most
//! `(tokens + 1) × store_bytes`.
//!
//! Blob bytes are plaintext: they live in a buffer that is zeroized when the last
//! reference goes (the store's, and any execution's or file's still reading it), and
//! never reach the disk.
//!
//! Architecture invariant: a lookup is always within one [`Scope`]; no function
//! here takes a hash without a scope.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use zeroize::Zeroize;

use crate::access::Scope;
use crate::sandbox::fs::{ArchiveError, MountImage, read_image};

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
        // Held only to find or insert one entry; never across an await.
        let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        scopes
            .entry(scope)
            .or_insert_with(|| Arc::new(BlobStore::new(self.budget)))
            .clone()
    }

    /// Bytes held by every store together.
    pub fn total_bytes(&self) -> usize {
        let scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        scopes.values().map(|store| store.bytes()).sum()
    }
}

/// One scope's blobs, least recently used out first within a byte budget.
pub struct BlobStore {
    budget: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<[u8; 32], Entry>,
    total: usize,
    /// A logical clock: each use takes the next tick.
    clock: u64,
}

struct Entry {
    blob: Arc<Blob>,
    last_used: u64,
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
}

impl Blob {
    fn new(sha256: [u8; 32], bytes: Bytes) -> Blob {
        Blob {
            sha256,
            bytes,
            image: OnceLock::new(),
        }
    }

    /// This blob as a mount's archive: parsed and checked on first use, at the
    /// server's maxima (`limits.files_bytes`, `limits.max_mount_entries`, which
    /// do not change while it runs), and shared by every execution that mounts it.
    /// Its file contents are slices of the blob's bytes, not copies.
    pub fn image(
        &self,
        max_files_bytes: u64,
        max_entries: u32,
    ) -> Result<Arc<MountImage>, ArchiveError> {
        self.image
            .get_or_init(|| {
                read_image(self.bytes.clone(), max_files_bytes, max_entries).map(Arc::new)
            })
            .clone()
    }
}

impl BlobStore {
    fn new(budget: usize) -> BlobStore {
        BlobStore {
            budget,
            state: Mutex::new(State::default()),
        }
    }

    /// The blob named `sha256`, if this store holds it; a use, for eviction.
    pub fn get(&self, sha256: &[u8; 32]) -> Option<Arc<Blob>> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        state.entries.get_mut(sha256).map(|entry| {
            entry.last_used = now;
            entry.blob.clone()
        })
    }

    /// Keeps `bytes`, whose SHA-256 the caller computed, and returns the blob. A
    /// blob already held is returned as it is (and counts as a use); one larger
    /// than the whole budget is returned without being kept. Least recently used
    /// blobs go until the new one fits.
    pub fn insert(&self, sha256: [u8; 32], bytes: Vec<u8>) -> Arc<Blob> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(entry) = state.entries.get_mut(&sha256) {
            entry.last_used = now;
            // The copy just received is dropped (and zeroized) by `ZeroizingBuf`.
            drop(ZeroizingBuf(bytes));
            return entry.blob.clone();
        }
        let size = bytes.len();
        let blob = Arc::new(Blob::new(sha256, Bytes::from_owner(ZeroizingBuf(bytes))));
        if size > self.budget {
            return blob;
        }
        while state.total + size > self.budget {
            let Some(oldest) = state
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(hash, _)| *hash)
            else {
                break;
            };
            if let Some(evicted) = state.entries.remove(&oldest) {
                state.total -= evicted.blob.bytes.len();
            }
        }
        state.total += size;
        state.entries.insert(
            sha256,
            Entry {
                blob: blob.clone(),
                last_used: now,
            },
        );
        blob
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().total
    }

    /// Blobs held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Held for a map operation; never across an await. A panic while holding
        // it leaves a consistent map (no operation panics half-way), so poisoning
        // is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn each_scope_sees_only_its_own_blobs() {
        let stores = BlobStores::new(1000);
        let alice = Scope::Token([1; 32]);
        let bob = Scope::Token([2; 32]);
        stores.scope(alice).insert(hash(9), vec![1, 2, 3]);
        assert!(stores.scope(alice).get(&hash(9)).is_some());
        assert!(stores.scope(bob).get(&hash(9)).is_none());
        assert!(stores.scope(Scope::Open).get(&hash(9)).is_none());
        assert_eq!(stores.total_bytes(), 3);
    }

    #[test]
    fn the_least_recently_used_blob_goes_first_within_the_budget() {
        let store = BlobStore::new(30);
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
        assert_eq!(store.bytes(), 30);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn a_blob_larger_than_the_budget_is_returned_but_not_kept() {
        let store = BlobStore::new(10);
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
        let store = BlobStore::new(20);
        let first = store.insert(hash(1), vec![1; 10]);
        store.insert(hash(2), vec![2; 10]);
        let again = store.insert(hash(1), vec![1; 10]);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(store.bytes(), 20);
        store.insert(hash(3), vec![3; 10]);
        assert!(
            store.get(&hash(2)).is_none(),
            "2 was the least recently used"
        );
        assert!(store.get(&hash(1)).is_some());
    }

    #[test]
    fn an_evicted_blob_stays_readable_while_an_execution_holds_it() {
        let store = BlobStore::new(10);
        let held = store.insert(hash(1), vec![5; 10]);
        store.insert(hash(2), vec![6; 10]);
        assert!(store.get(&hash(1)).is_none());
        assert_eq!(&held.bytes[..], &[5; 10]);
    }
}
