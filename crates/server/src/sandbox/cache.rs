//! The compiled-module cache: modules keyed by the SHA-256 of their bytes, bounded
//! by total size with least-recently-used eviction, and compiled once however many
//! requests ask for the same uncached module at the same time.
//!
//! Refusals are cached too (a module that does not compile, fails the shape check,
//! or exceeds the compiler's bounds, is charged its byte size): otherwise one bad
//! module, sent over and over, would make the server compile it every time. Only a
//! refusal that says nothing about the module (the compiler was busy) is not kept.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::compiler::CompileError;

/// The cache key: SHA-256 of the module bytes.
pub type ModuleHash = [u8; 32];

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
    entries: HashMap<ModuleHash, Entry<T>>,
    /// Compilations under way; waiters share the one cell.
    pending: HashMap<ModuleHash, Arc<OnceCell<Compiled<T>>>>,
    total: usize,
    clock: u64,
}

struct Entry<T> {
    value: Result<Arc<T>, CompileError>,
    size: usize,
    last_used: u64,
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
                entries: HashMap::new(),
                pending: HashMap::new(),
                total: 0,
                clock: 0,
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
            state.clock += 1;
            let now = state.clock;
            if let Some(entry) = state.entries.get_mut(&key) {
                entry.last_used = now;
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
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.get_mut(key)?;
        entry.last_used = now;
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
        if !keep || compiled.size > self.budget {
            return;
        }
        state.clock += 1;
        let now = state.clock;
        state.total += compiled.size;
        if let Some(replaced) = state.entries.insert(
            key,
            Entry {
                value: compiled.value,
                size: compiled.size,
                last_used: now,
            },
        ) {
            state.total -= replaced.size;
        }
        // Evict least recently used entries until the budget holds. A scan per
        // eviction is O(entries); with entries measured in megabytes there are at
        // most a few thousand, and evictions are rare next to hits.
        while state.total > self.budget {
            let Some((&oldest, _)) = state
                .entries
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, entry)| entry.last_used)
            else {
                break;
            };
            let evicted = state.entries.remove(&oldest).expect("just found");
            state.total -= evicted.size;
        }
    }

    /// Lookups answered from the cache (or by another request's compilation).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that compiled.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Bytes charged by the cached entries.
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
        // Every critical section is a few map operations; a panic cannot leave the
        // state half-updated in a way later callers could not cope with.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn key(n: u8) -> ModuleHash {
        [n; 32]
    }

    #[tokio::test]
    async fn a_second_lookup_is_a_hit() {
        let cache = ModuleCache::<String>::new(100);
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
        let cache = Arc::new(ModuleCache::<usize>::new(1000));
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
        let cache = ModuleCache::<u8>::new(30);
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
        assert_eq!(cache.size(), 30);
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
        let cache = ModuleCache::<u8>::new(30);
        let busy = cache
            .get_or_compile(key(1), || async {
                (Err(CompileError::Unavailable("busy".to_owned())), 5)
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
        let cache = ModuleCache::<u8>::new(30);
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
}
