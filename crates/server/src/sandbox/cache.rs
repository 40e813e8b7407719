//! The compiled-module cache: modules keyed by the SHA-256 of their bytes, bounded
//! by total size with least-recently-used eviction, and compiled once however many
//! requests ask for the same uncached module at the same time.
//!
//! Refusals are cached too (a module that does not compile, fails the shape check,
//! or exceeds the compiler's bounds, is charged its byte size): otherwise one bad
//! module, sent over and over, would make the server compile it every time. Only a
//! refusal that says nothing about the module (the compiler was busy) is not kept.
//!
//! Every entry is charged [`ENTRY_OVERHEAD_BYTES`] on top of what the compile
//! function charges, so that many tiny entries (refusals of one-byte "modules",
//! say) cannot hold many times the budget. Lookups, insertions and evictions are
//! O(1) per entry (an LRU list over a hash map), under a lock held for map
//! operations only; evicted entries are dropped after it is released, off the
//! runtime's worker threads (dropping compiled code unmaps it).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::OnceCell;

use super::compiler::CompileError;

/// The cache key: SHA-256 of the module bytes.
pub type ModuleHash = [u8; 32];

/// Bytes charged for each entry on top of what the compile function charges: the
/// LRU node (the key, the entry, two links), its hash map slot (up to about 40
/// bytes in a table at most 7/8 full that doubles when it grows), the value's
/// `Arc` counts, and the allocator's rounding: about 200 bytes, measured by
/// `the_entry_overhead_covers_what_an_entry_allocates`. Rounded up to 1 KiB to
/// also cover what that charge does not count: a refusal's message (the
/// compiler's text, a few hundred bytes) or a target's fixed handles.
pub const ENTRY_OVERHEAD_BYTES: usize = 1024;

/// What a lookup found.
pub struct Lookup<T> {
    pub value: Result<Arc<T>, CompileError>,
    /// Whether the value was already cached (or being compiled by another request).
    pub hit: bool,
    /// How long this request spent compiling, if it was the one that compiled.
    pub compile_time: Option<Duration>,
}

/// A bounded, deduplicating cache of compiled values.
pub struct ModuleCache<T> {
    state: Mutex<State<T>>,
    budget: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct State<T> {
    /// Most recently used first; `get` and `push` move an entry to the front.
    entries: LruCache<ModuleHash, Entry<T>>,
    /// Compilations under way; waiters share the one cell.
    pending: HashMap<ModuleHash, Arc<OnceCell<Compiled<T>>>>,
    /// Sum of the entries' charges.
    total: usize,
    /// Entries looked at to evict (tests only): one per entry evicted.
    #[cfg(test)]
    visited: usize,
}

struct Entry<T> {
    value: Result<Arc<T>, CompileError>,
    /// The compile function's charge plus [`ENTRY_OVERHEAD_BYTES`].
    charge: usize,
}

struct Compiled<T> {
    value: Result<Arc<T>, CompileError>,
    size: usize,
}

// Not derived: that would demand `T: Clone`, and only the `Arc` is cloned.
impl<T> Clone for Compiled<T> {
    fn clone(&self) -> Self {
        Compiled {
            value: self.value.clone(),
            size: self.size,
        }
    }
}

impl<T: Send + Sync + 'static> ModuleCache<T> {
    /// A cache holding at most `budget` bytes (as charged by the compile function).
    pub fn new(budget: usize) -> ModuleCache<T> {
        ModuleCache {
            state: Mutex::new(State {
                entries: LruCache::unbounded(),
                pending: HashMap::new(),
                total: 0,
                #[cfg(test)]
                visited: 0,
            }),
            budget,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The value for `key`, compiling it with `compile` (which returns the value and
    /// the bytes to charge for it) if no one has.
    pub async fn get_or_compile<F, Fut>(&self, key: ModuleHash, compile: F) -> Lookup<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = (Result<T, CompileError>, usize)>,
    {
        let cell = {
            let mut state = self.lock();
            if let Some(entry) = state.entries.get(&key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Lookup {
                    value: entry.value.clone(),
                    hit: true,
                    compile_time: None,
                };
            }
            state
                .pending
                .entry(key)
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let mut compile_time = None;
        let compiled = cell
            .get_or_init(|| async {
                let started = Instant::now();
                let (value, size) = compile().await;
                compile_time = Some(started.elapsed());
                Compiled {
                    value: value.map(Arc::new),
                    size,
                }
            })
            .await
            .clone();
        let compiled_here = compile_time.is_some();
        if compiled_here {
            self.misses.fetch_add(1, Ordering::Relaxed);
            self.insert(key, compiled.clone());
        } else {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        Lookup {
            value: compiled.value,
            hit: !compiled_here,
            compile_time,
        }
    }

    /// The cached value for `key`, if any, counted as a hit; `None` (not counted)
    /// if it must be compiled.
    pub fn get(&self, key: &ModuleHash) -> Option<Result<Arc<T>, CompileError>> {
        let mut state = self.lock();
        let entry = state.entries.get(key)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.value.clone())
    }

    fn insert(&self, key: ModuleHash, compiled: Compiled<T>) {
        let mut state = self.lock();
        state.pending.remove(&key);
        let keep = match &compiled.value {
            Ok(_) => true,
            Err(error) => error.is_cacheable(),
        };
        let charge = compiled.size.saturating_add(ENTRY_OVERHEAD_BYTES);
        if !keep || charge > self.budget {
            return;
        }
        // Least recently used entries go until this one fits: O(1) each.
        let mut evicted = Vec::new();
        while state.total + charge > self.budget {
            let Some((_, entry)) = state.entries.pop_lru() else {
                break;
            };
            #[cfg(test)]
            {
                state.visited += 1;
            }
            state.total -= entry.charge;
            evicted.push(entry.value);
        }
        state.total += charge;
        let entry = Entry {
            value: compiled.value,
            charge,
        };
        // A key is inserted once per compilation, and compiled only when it is
        // not cached; should it be there anyway, the older entry goes.
        if let Some((_, replaced)) = state.entries.push(key, entry) {
            state.total -= replaced.charge;
            evicted.push(replaced.value);
        }
        drop(state);
        dispose(evicted);
    }

    /// Lookups answered from the cache (or by another request's compilation).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that compiled.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Bytes charged by the cached entries (each with its overhead).
    pub fn size(&self) -> usize {
        self.lock().total
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // Every critical section is a few map operations, never a drop of an
        // entry's value; a panic cannot leave the state half-updated in a way
        // later callers could not cope with.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Drops evicted values (compiled modules here, blobs in `blobs`) where their
/// cost delays no one: on the runtime's blocking pool when called on a runtime
/// (compilations finish, and blobs arrive, on the guest runtime, whose workers
/// run guests; zeroizing a 100 MiB blob there would hold them up), and here
/// otherwise. Never called with a store's lock held.
pub(crate) fn dispose<T: Send + 'static>(garbage: Vec<T>) {
    if garbage.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        // A runtime shutting down drops the task, and so `garbage`, at once.
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(garbage))),
        Err(_) => drop(garbage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn key(n: u8) -> ModuleHash {
        [n; 32]
    }

    /// A budget of `count` entries each charged `size` by the compile function.
    fn room(count: usize, size: usize) -> usize {
        count * (size + ENTRY_OVERHEAD_BYTES)
    }

    #[tokio::test]
    async fn a_second_lookup_is_a_hit() {
        let cache = ModuleCache::<String>::new(room(1, 10));
        let first = cache
            .get_or_compile(key(1), || async { (Ok("one".to_owned()), 10) })
            .await;
        assert!(!first.hit && first.compile_time.is_some());
        let second = cache
            .get_or_compile(key(1), || async { panic!("must not compile again") })
            .await;
        assert!(second.hit && second.compile_time.is_none());
        assert_eq!(second.value.unwrap().as_str(), "one");
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_module_compile_once() {
        let cache = Arc::new(ModuleCache::<usize>::new(room(1, 10)));
        let compiles = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut lookups = Vec::new();
        for _ in 0..20 {
            let (cache, compiles, gate) = (cache.clone(), compiles.clone(), gate.clone());
            lookups.push(tokio::spawn(async move {
                cache
                    .get_or_compile(key(7), || async move {
                        compiles.fetch_add(1, Ordering::SeqCst);
                        // Hold the compilation open until every lookup has started.
                        gate.notified().await;
                        (Ok(42), 10)
                    })
                    .await
                    .value
            }));
        }
        // Every lookup but the compiling one is waiting on the shared cell once
        // the compile has started and 19 tasks have registered.
        while compiles.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for lookup in lookups {
            assert_eq!(*lookup.await.unwrap().unwrap(), 42);
        }
        assert_eq!(compiles.load(Ordering::SeqCst), 1);
        assert_eq!(cache.misses(), 1);
    }

    #[tokio::test]
    async fn the_least_recently_used_entry_is_evicted_past_the_budget() {
        let cache = ModuleCache::<u8>::new(room(3, 10));
        for n in 1..=3 {
            cache
                .get_or_compile(key(n), || async move { (Ok(n), 10) })
                .await;
        }
        // Touch 1, so 2 is the least recently used.
        assert!(
            cache
                .get_or_compile(key(1), || async { (Ok(0), 10) })
                .await
                .hit
        );
        cache.get_or_compile(key(4), || async { (Ok(4), 10) }).await;
        assert_eq!(cache.size(), room(3, 10));
        assert_eq!(cache.len(), 3);
        assert!(
            cache
                .get_or_compile(key(1), || async { (Ok(0), 10) })
                .await
                .hit
        );
        assert!(
            !cache
                .get_or_compile(key(2), || async { (Ok(2), 10) })
                .await
                .hit
        );
    }

    #[tokio::test]
    async fn a_busy_compiler_is_not_remembered_as_the_modules_fault() {
        let cache = ModuleCache::<u8>::new(room(1, 5));
        let busy = cache
            .get_or_compile(key(1), || async {
                (Err(CompileError::WallClock { wall_secs: 8 }), 5)
            })
            .await;
        assert!(busy.value.is_err());
        assert!(cache.get(&key(1)).is_none(), "not cached");
        let compiled = cache.get_or_compile(key(1), || async { (Ok(1), 5) }).await;
        assert_eq!(*compiled.value.unwrap(), 1);
        assert!(cache.get(&key(1)).is_some());
    }

    #[tokio::test]
    async fn failures_are_cached_and_oversized_values_are_not() {
        let cache = ModuleCache::<u8>::new(room(1, 30));
        let failed = cache
            .get_or_compile(key(1), || async {
                (Err(CompileError::Refused("bad".to_owned())), 5)
            })
            .await;
        assert_eq!(failed.value.unwrap_err().to_string(), "bad");
        assert!(
            cache
                .get_or_compile(key(1), || async { (Ok(1), 5) })
                .await
                .hit
        );
        let huge = cache.get_or_compile(key(2), || async { (Ok(2), 31) }).await;
        assert_eq!(*huge.value.unwrap(), 2);
        assert!(
            !cache
                .get_or_compile(key(2), || async { (Ok(2), 31) })
                .await
                .hit
        );
    }

    impl<T> ModuleCache<T> {
        fn visited(&self) -> usize {
            self.state.lock().unwrap().visited
        }
    }

    /// A distinct key for each `n`.
    fn key_of(n: usize) -> ModuleHash {
        let mut key = [0; 32];
        key[..8].copy_from_slice(&(n as u64).to_le_bytes());
        key
    }

    fn compiled<T>(value: T, size: usize) -> Compiled<T> {
        Compiled {
            value: Ok(Arc::new(value)),
            size,
        }
    }

    #[test]
    fn tiny_entries_are_charged_their_overhead_so_a_budget_bounds_their_count() {
        let budget = 1 << 20;
        let cache = ModuleCache::<u8>::new(budget);
        for n in 0..5_000 {
            cache.insert(
                key_of(n),
                Compiled {
                    value: Err(CompileError::NotWasm),
                    size: 1,
                },
            );
        }
        let most = budget / (ENTRY_OVERHEAD_BYTES + 1);
        assert!(
            cache.len() <= most,
            "{} entries; at most {most} fit",
            cache.len()
        );
        assert!(cache.size() <= budget);
    }

    #[test]
    fn the_entry_overhead_covers_what_an_entry_allocates() {
        // As in `blobs`: allocator rounding and headers, up to 24 bytes for each
        // allocation; and a table that has just doubled (one past 7/8 of 32,768).
        let count = 28_673;
        let cache = ModuleCache::<u8>::new(usize::MAX);
        let held = allocation_counter::measure(|| {
            for n in 0..count {
                cache.insert(key_of(n), compiled(n as u8, 1));
            }
        });
        let real = held.bytes_current + 24 * held.count_current;
        let per_entry = real as f64 / count as f64;
        assert!(
            per_entry <= ENTRY_OVERHEAD_BYTES as f64,
            "an entry takes {per_entry:.0} bytes; it is charged {ENTRY_OVERHEAD_BYTES} more"
        );
    }

    #[test]
    fn an_eviction_visits_only_the_entries_it_evicts() {
        // Issue 25, row 7: the cache scanned every entry for each one it evicted.
        let count = 2_000;
        let size = 10 * ENTRY_OVERHEAD_BYTES;
        let cache = ModuleCache::<u8>::new(room(count, size));
        // Twice what fits: full, however entries are charged.
        for n in 0..2 * count {
            cache.insert(key_of(n), compiled(0, size));
        }
        let held = cache.len();
        let before = cache.visited();
        cache.insert(
            key_of(2 * count),
            compiled(0, 100 * (size + ENTRY_OVERHEAD_BYTES)),
        );
        let evicted = held + 1 - cache.len();
        assert!(evicted >= 90, "{evicted} evicted");
        assert_eq!(
            cache.visited() - before,
            evicted,
            "one entry looked at per entry evicted"
        );
    }

    /// A cached value that tells, when dropped, whether its cache's lock was free
    /// and on which thread it was dropped.
    struct Probe {
        cache: std::sync::Weak<ModuleCache<Probe>>,
        dropped: std::sync::mpsc::Sender<(bool, std::thread::ThreadId)>,
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            if let Some(cache) = self.cache.upgrade() {
                let lock_free = cache.state.try_lock().is_ok();
                let _ = self.dropped.send((lock_free, std::thread::current().id()));
            }
        }
    }

    /// A cache of room for one probe, after two were inserted: the first was
    /// evicted (however the charge counts the overhead, two never fit).
    fn probed() -> (
        Arc<ModuleCache<Probe>>,
        std::sync::mpsc::Receiver<(bool, std::thread::ThreadId)>,
    ) {
        let size = ENTRY_OVERHEAD_BYTES + 60;
        let cache = Arc::new(ModuleCache::new(2 * ENTRY_OVERHEAD_BYTES + 100));
        let (sender, receiver) = std::sync::mpsc::channel();
        for n in 0..2 {
            let probe = Probe {
                cache: Arc::downgrade(&cache),
                dropped: sender.clone(),
            };
            cache.insert(key_of(n), compiled(probe, size));
        }
        assert_eq!(cache.len(), 1);
        (cache, receiver)
    }

    #[test]
    fn evicted_entries_are_dropped_after_the_lock_is_released() {
        let (_cache, dropped) = probed();
        let (lock_free, _) = dropped.try_recv().expect("dropped by the insertion, here");
        assert!(lock_free, "dropped with the cache's lock held");
    }

    #[tokio::test]
    async fn on_a_runtime_evicted_entries_are_dropped_off_the_callers_thread() {
        let (_cache, dropped) = probed();
        // A deadline for a failure only: the drop is under way once `insert`
        // returned.
        let (lock_free, thread) = tokio::task::spawn_blocking(move || {
            dropped.recv_timeout(std::time::Duration::from_secs(60))
        })
        .await
        .unwrap()
        .expect("dropped");
        assert!(lock_free, "dropped with the cache's lock held");
        assert_ne!(
            thread,
            std::thread::current().id(),
            "dropped on the inserting task's thread"
        );
    }
}
