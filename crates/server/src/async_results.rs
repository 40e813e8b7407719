//! Long jobs (protocol v1.1 §F): the executions accepted with `Prefer:
//! respond-async`, where each one is (queued, running, finished), and the answers
//! kept for their client to fetch. Domain only: `api` turns these into HTTP.
//!
//! An entry's life: [`AsyncExecutions::reserve`] takes one of
//! `execution.max_async_pending` places before the request's session is used (a
//! full store is an overload, and an overload never uses the session); once the
//! plaintext opens, [`AsyncTicket::register`] names the place with the execution
//! id and returns an [`AsyncEntry`], which the execution's task owns until it calls
//! [`AsyncEntry::finish`]. An entry dropped unfinished (the task panicked or was
//! aborted) records [`Withheld::Internal`], so a client polling it gets an answer
//! rather than `queued` for ever. A finished answer is kept for
//! `execution.async_retention_secs` after it finished, then swept, oldest first.
//!
//! What is kept is the [`ExecutionReceipt`], the value `/execute` answers from:
//! its result is already sealed to the request's sender, and `api` renders it in
//! whichever encoding the client asks for.
//!
//! Architecture invariant: an answer is kept sealed, only for its scope (the
//! client's token; with authentication off, anyone who knows the id), for the
//! retention period, in memory only in embedded mode. Storage is behind
//! [`AsyncResultStore`]; cluster mode's store (`cluster::async_results`) keeps
//! this in-memory one for the executions of its own process and shares every
//! entry, sealed receipt and scope included, through PostgreSQL with the other
//! replicas.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::access::Scope;
use crate::execution::ExecutionReceipt;

/// Why a finished execution's answer is not released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// The record could not be made durable in the audit log.
    LogUnavailable,
    /// The execution's task ended without an answer (a server bug).
    Internal,
}

/// What a client may learn of one of its async executions.
#[derive(Debug, Clone)]
pub enum View {
    /// Accepted, waiting for a guest slot.
    Queued,
    /// Had its first guest slot: compiling, running, or being sealed and logged.
    Running,
    /// Finished and logged: the answer `/execute` would have given.
    Done(Arc<ExecutionReceipt>),
    /// Finished without a releasable answer.
    Withheld(Withheld),
}

/// The store is full: `execution.max_async_pending` executions are accepted and
/// unfinished, or the answers kept are over `execution.async_results_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AsyncFull {
    /// `execution.max_async_pending` executions are accepted and unfinished.
    #[error("execution.max_async_pending async executions are pending")]
    Pending,
    /// The answers kept are over `execution.async_results_bytes`.
    #[error("the async answers kept are over execution.async_results_bytes")]
    Bytes,
}

/// Counts for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsyncCounts {
    /// Accepted (or being accepted) and not finished.
    pub pending: usize,
    /// Finished answers kept.
    pub stored: usize,
    /// Bytes of the finished answers kept (see [`stored_bytes`]).
    pub bytes: usize,
}

/// Storage of async executions. The contract every implementation keeps:
/// - `try_reserve` fails, and changes nothing, when `pending` has reached its
///   bound or the stored bytes are over theirs; otherwise `pending` grows by one.
///   Finished answers are never dropped to make room.
/// - Each successful `try_reserve` is followed by exactly one `release` (the
///   plaintext never opened) or one `register`, and each `register` by exactly
///   one `finish` (which ends the pending place).
/// - `get` answers only for the scope that registered the id; an unknown id, one
///   of another scope and one finished more than the retention ago are all
///   `None`, indistinguishably.
/// - `sweep(now)` forgets answers finished more than the retention before `now`
///   and says when the next one is due.
/// - A store shared by replicas (cluster mode) also answers `get_shared` for
///   ids registered on other replicas, with the same scope check, and
///   `published` returns once a registration is visible to the other replicas.
#[async_trait::async_trait]
pub trait AsyncResultStore: Send + Sync {
    fn try_reserve(&self) -> Result<(), AsyncFull>;
    fn release(&self);
    fn register(&self, id: Uuid, scope: Scope);
    fn mark_running(&self, id: Uuid);
    fn finish(&self, id: Uuid, outcome: Result<ExecutionReceipt, Withheld>);
    fn get(&self, id: &Uuid, scope: Scope) -> Option<View>;
    fn sweep(&self, now: Instant) -> Option<Instant>;
    fn counts(&self) -> AsyncCounts;
    fn retention(&self) -> Duration;
    /// Whether it takes async executions at all.
    fn enabled(&self) -> bool;

    /// The execution `id` of `scope` as the replicas share it, for an id `get`
    /// does not know (registered on another replica); `None` in a store of one
    /// process.
    async fn get_shared(&self, _id: &Uuid, _scope: Scope) -> Result<Option<View>, Unavailable> {
        Ok(None)
    }

    /// Returns once the registration of `id` is visible to every replica (at
    /// once in a store of one process).
    async fn published(&self, _id: Uuid) {}
}

/// A shared store could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared store of async answers is unreachable")]
pub struct Unavailable;

/// The async executions of this server; cheap to clone.
#[derive(Clone)]
pub struct AsyncExecutions(Arc<dyn AsyncResultStore>);

impl AsyncExecutions {
    /// Over an in-memory store with the real clock.
    pub fn in_memory(settings: AsyncSettings) -> AsyncExecutions {
        AsyncExecutions::over(MemoryStore::new(settings, Arc::new(Instant::now)))
    }

    pub fn over(store: impl AsyncResultStore + 'static) -> AsyncExecutions {
        AsyncExecutions(Arc::new(store))
    }

    /// Whether `Prefer: respond-async` is honoured at all
    /// (`execution.max_async_pending` > 0).
    pub fn enabled(&self) -> bool {
        self.0.enabled()
    }

    /// Takes a place for an execution of `scope`, or says why there is none.
    pub fn reserve(&self, scope: Scope) -> Result<AsyncTicket, AsyncFull> {
        self.0.try_reserve()?;
        Ok(AsyncTicket {
            store: Some(self.clone()),
            scope,
        })
    }

    pub fn get(&self, id: &Uuid, scope: Scope) -> Option<View> {
        self.0.get(id, scope)
    }

    /// As [`AsyncExecutions::get`], then, for an id this process does not hold,
    /// the store the replicas share (cluster mode).
    pub async fn find(&self, id: &Uuid, scope: Scope) -> Result<Option<View>, Unavailable> {
        match self.0.get(id, scope) {
            Some(view) => Ok(Some(view)),
            None => self.0.get_shared(id, scope).await,
        }
    }

    /// Returns once execution `id`'s registration is visible to every replica,
    /// so that its `202` can send the client to any of them.
    pub async fn published(&self, id: Uuid) {
        self.0.published(id).await
    }

    pub fn sweep(&self, now: Instant) -> Option<Instant> {
        self.0.sweep(now)
    }

    pub fn counts(&self) -> AsyncCounts {
        self.0.counts()
    }

    pub fn retention(&self) -> Duration {
        self.0.retention()
    }
}

/// A place taken in the store before the session is used; given back when
/// dropped unless the plaintext opened and it was registered.
pub struct AsyncTicket {
    store: Option<AsyncExecutions>,
    scope: Scope,
}

impl AsyncTicket {
    /// The plaintext opened as execution `id`: from now on it must finish.
    pub fn register(mut self, id: Uuid) -> AsyncEntry {
        let store = self.store.take().expect("a ticket registers once");
        store.0.register(id, self.scope);
        AsyncEntry {
            store: Some(store),
            id,
        }
    }
}

impl Drop for AsyncTicket {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            store.0.release();
        }
    }
}

/// An accepted execution, owned by its task. Dropped without
/// [`AsyncEntry::finish`] (a panic, an aborted task), it records
/// [`Withheld::Internal`].
pub struct AsyncEntry {
    store: Option<AsyncExecutions>,
    id: Uuid,
}

impl AsyncEntry {
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// It has a guest slot.
    pub fn mark_running(&self) {
        if let Some(store) = &self.store {
            store.0.mark_running(self.id);
        }
    }

    /// It ended: the answer to keep, or why there is none.
    pub fn finish(mut self, outcome: Result<ExecutionReceipt, Withheld>) {
        if let Some(store) = self.store.take() {
            store.0.finish(self.id, outcome);
        }
    }
}

impl Drop for AsyncEntry {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            tracing::error!(execution_id = %self.id, "an async execution ended without an answer");
            store.0.finish(self.id, Err(Withheld::Internal));
        }
    }
}

/// The in-memory store's bounds, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct AsyncSettings {
    /// `execution.async_retention_secs`.
    pub retention: Duration,
    /// `execution.max_async_pending`; 0 refuses every reservation.
    pub max_pending: usize,
    /// `execution.async_results_bytes`.
    pub max_bytes: usize,
}

/// The bytes an answer is counted as: its sealed result and signature, plus the
/// fixed fields (id, commitment, index) and the map's bookkeeping, roughly.
pub fn stored_bytes(receipt: &ExecutionReceipt) -> usize {
    const FIXED: usize = 128;
    receipt.ciphertext.len() + receipt.leaf_signature.len() + FIXED
}

/// The store of one process: lost on restart (the log entries stay provable).
pub struct MemoryStore {
    settings: AsyncSettings,
    clock: Arc<dyn Fn() -> Instant + Send + Sync>,
    /// Held briefly, never across an `.await` (there is none in this module).
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Uuid, Entry>,
    /// Finished entries in the order they finished, so expiry is the front.
    finished: VecDeque<(Instant, Uuid)>,
    pending: usize,
    bytes: usize,
}

enum Entry {
    Pending {
        scope: Scope,
        running: bool,
    },
    Finished {
        scope: Scope,
        at: Instant,
        outcome: Result<Arc<ExecutionReceipt>, Withheld>,
    },
}

impl MemoryStore {
    /// With `clock` as the time (tests move it).
    pub fn new(settings: AsyncSettings, clock: Arc<dyn Fn() -> Instant + Send + Sync>) -> Self {
        MemoryStore {
            settings,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts that are still consistent
        // (each update is one statement), so a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl AsyncResultStore for MemoryStore {
    fn try_reserve(&self) -> Result<(), AsyncFull> {
        let mut state = self.state();
        if state.pending >= self.settings.max_pending {
            return Err(AsyncFull::Pending);
        }
        if state.bytes > self.settings.max_bytes {
            return Err(AsyncFull::Bytes);
        }
        state.pending += 1;
        Ok(())
    }

    fn release(&self) {
        let mut state = self.state();
        state.pending = state.pending.saturating_sub(1);
    }

    fn register(&self, id: Uuid, scope: Scope) {
        self.state().entries.insert(
            id,
            Entry::Pending {
                scope,
                running: false,
            },
        );
    }

    fn mark_running(&self, id: Uuid) {
        if let Some(Entry::Pending { running, .. }) = self.state().entries.get_mut(&id) {
            *running = true;
        }
    }

    fn finish(&self, id: Uuid, outcome: Result<ExecutionReceipt, Withheld>) {
        let at = (self.clock)();
        let mut state = self.state();
        let Some(Entry::Pending { scope, .. }) = state.entries.get(&id) else {
            return;
        };
        let scope = *scope;
        let outcome = outcome.map(Arc::new);
        let bytes = outcome.as_ref().map_or(0, |receipt| stored_bytes(receipt));
        state.pending = state.pending.saturating_sub(1);
        state.bytes += bytes;
        state.finished.push_back((at, id));
        state
            .entries
            .insert(id, Entry::Finished { scope, at, outcome });
    }

    fn get(&self, id: &Uuid, scope: Scope) -> Option<View> {
        let now = (self.clock)();
        let state = self.state();
        match state.entries.get(id)? {
            Entry::Pending {
                scope: owner,
                running,
            } if *owner == scope => Some(if *running {
                View::Running
            } else {
                View::Queued
            }),
            Entry::Finished {
                scope: owner,
                at,
                outcome,
            } if *owner == scope && now < *at + self.settings.retention => Some(match outcome {
                Ok(receipt) => View::Done(receipt.clone()),
                Err(withheld) => View::Withheld(*withheld),
            }),
            _ => None,
        }
    }

    fn sweep(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state();
        while let Some(&(at, id)) = state.finished.front() {
            let due = at + self.settings.retention;
            if due > now {
                return Some(due);
            }
            state.finished.pop_front();
            if let Some(Entry::Finished { outcome, .. }) = state.entries.remove(&id) {
                let bytes = outcome.as_ref().map_or(0, |receipt| stored_bytes(receipt));
                state.bytes = state.bytes.saturating_sub(bytes);
            }
        }
        None
    }

    fn counts(&self) -> AsyncCounts {
        let state = self.state();
        AsyncCounts {
            pending: state.pending,
            stored: state.finished.len(),
            bytes: state.bytes,
        }
    }

    fn retention(&self) -> Duration {
        self.settings.retention
    }

    fn enabled(&self) -> bool {
        self.settings.max_pending > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use wasm_hypervisor_protocol::payload::Status;

    const RETENTION: Duration = Duration::from_secs(600);

    /// A clock that tests move by hand.
    struct Clock {
        start: Instant,
        elapsed_ms: AtomicU64,
    }

    impl Clock {
        fn now(&self) -> Instant {
            self.start + Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
        }

        fn advance(&self, by: Duration) {
            self.elapsed_ms
                .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        }
    }

    fn store(max_pending: usize, max_bytes: usize) -> (AsyncExecutions, Arc<Clock>) {
        let clock = Arc::new(Clock {
            start: Instant::now(),
            elapsed_ms: AtomicU64::new(0),
        });
        let read = clock.clone();
        let settings = AsyncSettings {
            retention: RETENTION,
            max_pending,
            max_bytes,
        };
        let store = MemoryStore::new(settings, Arc::new(move || read.now()));
        (AsyncExecutions::over(store), clock)
    }

    fn receipt(id: Uuid, ciphertext_bytes: usize) -> ExecutionReceipt {
        ExecutionReceipt {
            execution_id: id,
            ciphertext: vec![7; ciphertext_bytes].into(),
            commitment: [1; 32],
            log_index: 0,
            leaf_signature: vec![2; 72],
            status: Status::Completed,
        }
    }

    /// Accepts and finishes one execution of `scope` with a result of `bytes`.
    fn finished(store: &AsyncExecutions, scope: Scope, bytes: usize) -> Uuid {
        let id = Uuid::new_v4();
        let entry = store.reserve(scope).unwrap().register(id);
        entry.finish(Ok(receipt(id, bytes)));
        id
    }

    #[test]
    fn an_entry_goes_from_queued_to_running_to_done() {
        let (store, _clock) = store(10, 1 << 20);
        let id = Uuid::new_v4();
        let entry = store.reserve(Scope::Open).unwrap().register(id);
        assert!(matches!(store.get(&id, Scope::Open), Some(View::Queued)));
        entry.mark_running();
        assert!(matches!(store.get(&id, Scope::Open), Some(View::Running)));
        assert_eq!(store.counts().pending, 1);
        entry.finish(Ok(receipt(id, 100)));
        match store.get(&id, Scope::Open) {
            Some(View::Done(kept)) => assert_eq!(kept.execution_id, id),
            _ => panic!("not done"),
        }
        let counts = store.counts();
        assert_eq!((counts.pending, counts.stored), (0, 1));
        assert_eq!(counts.bytes, 100 + 72 + 128);
    }

    #[test]
    fn another_scope_sees_nothing() {
        let (store, _clock) = store(10, 1 << 20);
        let id = finished(&store, Scope::Token([1; 32]), 10);
        assert!(store.get(&id, Scope::Token([2; 32])).is_none());
        assert!(store.get(&id, Scope::Open).is_none());
        assert!(store.get(&id, Scope::Token([1; 32])).is_some());
        assert!(store.get(&Uuid::new_v4(), Scope::Token([1; 32])).is_none());
    }

    #[test]
    fn finished_answers_are_dropped_after_retention_oldest_first() {
        let (store, clock) = store(10, 1 << 20);
        let first = finished(&store, Scope::Open, 10);
        clock.advance(Duration::from_secs(100));
        let second = finished(&store, Scope::Open, 20);
        assert_eq!(
            store.sweep(clock.now()),
            Some(clock.now() + RETENTION - Duration::from_secs(100)),
            "the next due is the oldest's"
        );

        clock.advance(RETENTION - Duration::from_secs(100));
        // Due now: `get` refuses it even before a sweep.
        assert!(store.get(&first, Scope::Open).is_none());
        assert!(store.get(&second, Scope::Open).is_some());
        let next = store.sweep(clock.now());
        assert_eq!(next, Some(clock.now() + Duration::from_secs(100)));
        assert_eq!(store.counts().stored, 1);
        assert_eq!(store.counts().bytes, 20 + 72 + 128);

        clock.advance(Duration::from_secs(100));
        assert_eq!(store.sweep(clock.now()), None);
        assert!(store.get(&second, Scope::Open).is_none());
        assert_eq!(store.counts(), AsyncCounts::default());
    }

    #[test]
    fn results_over_the_byte_budget_stop_new_admissions_not_old_answers() {
        let (store, clock) = store(10, 1000);
        let kept = finished(&store, Scope::Open, 900);
        assert!(store.counts().bytes > 1000);
        assert_eq!(store.reserve(Scope::Open).err(), Some(AsyncFull::Bytes));
        assert!(
            matches!(store.get(&kept, Scope::Open), Some(View::Done(_))),
            "the kept answer is still there"
        );
        assert_eq!(store.counts().pending, 0, "a refusal takes no place");
        // Once it expires, admissions resume.
        clock.advance(RETENTION);
        store.sweep(clock.now());
        assert!(store.reserve(Scope::Open).is_ok());
    }

    #[test]
    fn pending_executions_are_bounded_and_a_dropped_ticket_gives_its_place_back() {
        let (store, _clock) = store(2, 1 << 20);
        let first = store.reserve(Scope::Open).unwrap();
        let _second = store.reserve(Scope::Open).unwrap();
        assert_eq!(store.reserve(Scope::Open).err(), Some(AsyncFull::Pending));
        // The plaintext did not open: the place is given back.
        drop(first);
        assert_eq!(store.counts().pending, 1);
        assert!(store.reserve(Scope::Open).is_ok());
    }

    #[test]
    fn no_pending_places_means_long_jobs_are_off() {
        let (off, _clock) = store(0, 1 << 20);
        assert!(!off.enabled());
        assert_eq!(off.reserve(Scope::Open).err(), Some(AsyncFull::Pending));
        let (on, _clock) = store(1, 1 << 20);
        assert!(on.enabled());
    }

    #[test]
    fn a_panicking_task_leaves_a_withheld_entry() {
        let (store, _clock) = store(10, 1 << 20);
        let id = Uuid::new_v4();
        let entry = store.reserve(Scope::Open).unwrap().register(id);
        let panicked = std::thread::spawn(move || {
            entry.mark_running();
            panic!("a panic while the entry is owned");
        })
        .join();
        assert!(panicked.is_err());
        assert!(matches!(
            store.get(&id, Scope::Open),
            Some(View::Withheld(Withheld::Internal))
        ));
        assert_eq!(store.counts().pending, 0);
        assert_eq!(store.counts().stored, 1);
    }

    #[test]
    fn an_unavailable_log_is_kept_as_withheld() {
        let (store, _clock) = store(10, 1 << 20);
        let id = Uuid::new_v4();
        let entry = store.reserve(Scope::Open).unwrap().register(id);
        entry.finish(Err(Withheld::LogUnavailable));
        assert!(matches!(
            store.get(&id, Scope::Open),
            Some(View::Withheld(Withheld::LogUnavailable))
        ));
        assert_eq!(store.counts().bytes, 0);
    }
}
