//! Long jobs (protocol v1.1 §F): the executions accepted with `Prefer:
//! respond-async`, where each one is (queued, running, finished), and the answers
//! kept for their client to fetch. Domain only: `api` turns these into HTTP.
//!
//! An entry's life: [`AsyncExecutions::reserve`] takes one of
//! `execution.max_async_pending` places before the request's session is used (a
//! full store is an overload, and an overload never uses the session); once the
//! plaintext opens and its limits are known, [`AsyncTicket::register`] names the
//! place with the execution id and reserves the largest sealed answer the
//! request can produce (`answer::answer_bound`) against
//! `execution.async_results_bytes` and against the client's share,
//! `execution.async_results_bytes_per_client`, and returns an [`AsyncEntry`],
//! which the execution's task owns until it calls [`AsyncEntry::finish`]. At
//! finish the reservation is trued down to the answer's real size
//! ([`stored_bytes`]); it is given back when the answer is swept. An entry
//! dropped unfinished (the task panicked or was aborted) records
//! [`Withheld::Internal`], so a client polling it gets an answer rather than
//! `queued` for ever. While the task runs, the executor reports the execution's
//! [`Phase`] ([`report_phase`], from wherever it waits, compiles or runs inside
//! [`AsyncEntry::reporting_phases`]). A finished answer is kept for
//! `execution.async_retention_secs` after it finished, then swept, oldest first.
//!
//! What is kept is the [`ExecutionReceipt`], the value `/execute` answers from:
//! its result is already sealed to the request's sender, and `api` streams it in
//! whichever encoding the client asks for, from the one shared buffer. At most
//! [`MAX_READERS_PER_CLIENT`] answers per client and [`MAX_READERS`] in all are
//! being sent at once ([`AsyncExecutions::begin_read`]).
//!
//! Architecture invariant: an answer is kept sealed, only for its scope (the
//! client's token; with authentication off, anyone who knows the id), for the
//! retention period, in memory only in embedded mode. The bytes kept and
//! reserved never pass `execution.async_results_bytes`, nor one client's
//! `execution.async_results_bytes_per_client` (unless an answer is larger than
//! its bound, a bug that is logged). Storage is behind [`AsyncResultStore`];
//! cluster mode's store (`cluster::async_results`) keeps this in-memory one for
//! the executions of its own process and shares every entry, sealed receipt and
//! scope included, through PostgreSQL with the other replicas.
//!
//! # Layout
//! - This file: the types callers see, the [`AsyncResultStore`] trait (its
//!   contract on the trait), the [`AsyncExecutions`] handle over a store, and
//!   how an answer is counted ([`stored_bytes`], [`reservation`]).
//! - `entry`: an execution's [`AsyncTicket`] then [`AsyncEntry`], and the phases
//!   its task reports ([`report_phase`]).
//! - `memory`: the in-memory store, [`MemoryStore`].
//! - `readers`: the answers being sent at once ([`ReadSlot`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::access::{ClientKey, Scope};
use crate::answer::ExecutionReceipt;

mod entry;
mod memory;
mod readers;

pub use entry::{AsyncEntry, AsyncTicket, report_phase};
pub use memory::MemoryStore;
pub use readers::ReadSlot;

use readers::Readers;

/// Answers being sent at once to one client (its token, else its address):
/// enough for a client that fetches several answers in parallel; a client that
/// opens reads and never reads them holds no more than these.
pub const MAX_READERS_PER_CLIENT: usize = 4;

/// Answers being sent at once by this process. A reader that does not read
/// costs about one piece of the answer (see `api`) plus the connection's write
/// buffer, about 0.5 MiB, until `http.response_write_timeout_ms` ends it: this
/// bounds that to about 64 MiB.
pub const MAX_READERS: usize = 128;

/// Why a finished execution's answer is not released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// The record could not be made durable in the audit log.
    LogUnavailable,
    /// The execution's task ended without an answer (a server bug).
    Internal,
}

/// What an unfinished execution is doing: the `phase` of `GET
/// /executions/{id}`'s `202`, finer than its state (queued until it first has
/// a guest slot, running after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a guest slot (again, after a compilation).
    Queued,
    /// Its module is being compiled, or waits for a compiler.
    Compiling,
    /// It holds a guest slot: running, or being sealed and logged.
    Running,
}

/// What a client may learn of one of its async executions.
#[derive(Clone)]
pub enum View {
    /// Accepted, waiting for its first guest slot (its phase is queued).
    Queued,
    /// Had its first guest slot; now in this phase.
    Running(Phase),
    /// Finished and logged: the answer `/execute` would have given.
    Done(Answer),
    /// Finished without a releasable answer.
    Withheld(Withheld),
}

/// A finished execution's answer, as `GET /executions/{id}` sends it.
#[derive(Clone)]
pub enum Answer {
    /// Kept by this process: every reader shares the one receipt.
    Kept(Arc<ExecutionReceipt>),
    /// Kept in the store the replicas share (cluster mode): the fixed fields,
    /// and the sealed result read in pieces as it is sent.
    Shared(SharedAnswer),
}

/// An answer another replica kept, without its sealed result.
#[derive(Clone)]
pub struct SharedAnswer {
    pub execution_id: Uuid,
    pub commitment: [u8; 32],
    pub log_index: u64,
    pub leaf_signature: Vec<u8>,
    /// Bytes of the sealed result.
    pub ciphertext_bytes: u64,
    /// Where the sealed result is read from.
    pub pieces: Arc<dyn AnswerPieces>,
}

/// A sealed result read in pieces, so that a reader holds one piece at a time.
#[async_trait::async_trait]
pub trait AnswerPieces: Send + Sync {
    /// Bytes `offset..offset + len` of the sealed result, all of them, or why not.
    async fn read(&self, offset: u64, len: usize) -> Result<bytes::Bytes, Unavailable>;

    /// The length of the pieces to ask for: a multiple of 3, so that the base64
    /// of each piece but the last has no padding.
    fn piece_bytes(&self) -> usize;
}

/// The store is full, for everyone or for this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AsyncFull {
    /// `execution.max_async_pending` executions are accepted and unfinished.
    #[error("execution.max_async_pending async executions are pending")]
    Pending,
    /// The answers kept and reserved would be over `execution.async_results_bytes`.
    #[error("the async answers kept and reserved would be over execution.async_results_bytes")]
    Bytes,
    /// This client's answers kept and reserved would be over
    /// `execution.async_results_bytes_per_client`.
    #[error(
        "this client's async answers kept and reserved would be over \
         execution.async_results_bytes_per_client"
    )]
    ClientShare {
        /// When the client's share may have room: 1 s while it has executions
        /// pending (each is trued down when it finishes), else when its oldest
        /// kept answer expires.
        retry_after: Duration,
    },
}

/// Counts for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsyncCounts {
    /// Accepted (or being accepted) and not finished.
    pub pending: usize,
    /// Finished answers kept.
    pub stored: usize,
    /// Bytes reserved for the pending answers plus those of the finished answers
    /// kept (see [`stored_bytes`]).
    pub bytes: usize,
}

/// Storage of async executions. The contract every implementation keeps:
/// - `try_reserve` fails, and changes nothing, when `pending` has reached its
///   bound or no answer at all would fit in the bytes left, for everyone or for
///   `client`; otherwise `pending` grows by one.
///   Finished answers are never dropped to make room.
/// - Each successful `try_reserve` is followed by exactly one `release` (the
///   plaintext never opened, or `register` refused it) or one successful
///   `register`, and each of those by exactly one `finish` (which ends the
///   pending place).
/// - `register` reserves [`reservation`]`(answer_bound)` bytes, or fails and
///   changes nothing when that would pass the total or `client`'s share.
///   `finish` replaces the reservation by the answer's [`stored_bytes`] (none
///   for a withheld answer); `sweep` gives those back.
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
    fn try_reserve(&self, client: ClientKey) -> Result<(), AsyncFull>;
    fn release(&self, client: ClientKey);
    fn register(&self, id: Uuid, client: ClientKey, answer_bound: u64) -> Result<(), AsyncFull>;
    fn mark_running(&self, id: Uuid);
    /// Records that the pending execution `id` is now in `phase`; whether that
    /// changed anything (an unknown or finished id, or the phase it was already
    /// in, changes nothing).
    fn set_phase(&self, id: Uuid, phase: Phase) -> bool;
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

/// As many answers as [`MAX_READERS_PER_CLIENT`] or [`MAX_READERS`] allow are
/// being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadersFull {
    /// This client is being sent [`MAX_READERS_PER_CLIENT`] answers.
    #[error("this client is being sent as many async answers as it may at once")]
    Client,
    /// This process is sending [`MAX_READERS`] answers.
    #[error("as many async answers as this server sends at once are being sent")]
    Server,
}

/// The async executions of this server; cheap to clone.
#[derive(Clone)]
pub struct AsyncExecutions {
    store: Arc<dyn AsyncResultStore>,
    readers: Arc<Readers>,
}

impl AsyncExecutions {
    /// Over an in-memory store with the real clock.
    pub fn in_memory(settings: AsyncSettings) -> AsyncExecutions {
        AsyncExecutions::over(MemoryStore::new(settings, Arc::new(Instant::now)))
    }

    pub fn over(store: impl AsyncResultStore + 'static) -> AsyncExecutions {
        AsyncExecutions {
            store: Arc::new(store),
            readers: Arc::new(Readers::default()),
        }
    }

    /// Whether `Prefer: respond-async` is honoured at all
    /// (`execution.max_async_pending` > 0).
    pub fn enabled(&self) -> bool {
        self.store.enabled()
    }

    /// Takes a place for an execution of `client`, or says why there is none.
    pub fn reserve(&self, client: ClientKey) -> Result<AsyncTicket, AsyncFull> {
        self.store.try_reserve(client)?;
        Ok(AsyncTicket::new(self.clone(), client))
    }

    pub fn get(&self, id: &Uuid, scope: Scope) -> Option<View> {
        self.store.get(id, scope)
    }

    /// As [`AsyncExecutions::get`], then, for an id this process does not hold,
    /// the store the replicas share (cluster mode).
    pub async fn find(&self, id: &Uuid, scope: Scope) -> Result<Option<View>, Unavailable> {
        match self.store.get(id, scope) {
            Some(view) => Ok(Some(view)),
            None => self.store.get_shared(id, scope).await,
        }
    }

    /// Returns once execution `id`'s registration is visible to every replica,
    /// so that its `202` can send the client to any of them.
    pub async fn published(&self, id: Uuid) {
        self.store.published(id).await
    }

    /// One more answer being sent to `client`, until the returned slot is
    /// dropped (its body fully sent, or dropped with its connection).
    pub fn begin_read(&self, client: ClientKey) -> Result<ReadSlot, ReadersFull> {
        self.readers.begin(client)
    }

    /// Answers being sent now.
    pub fn readers(&self) -> usize {
        self.readers.total()
    }

    pub fn sweep(&self, now: Instant) -> Option<Instant> {
        self.store.sweep(now)
    }

    pub fn counts(&self) -> AsyncCounts {
        self.store.counts()
    }

    pub fn retention(&self) -> Duration {
        self.store.retention()
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
    /// `execution.async_results_bytes_per_client`.
    pub max_bytes_per_client: usize,
}

/// An answer's fixed fields and the map's bookkeeping, roughly.
const FIXED_BYTES: usize = 128;

/// The longest leaf signature: a DER ECDSA P-256 signature.
const MAX_SIGNATURE_BYTES: usize = 72;

/// The bytes an answer is counted as: its sealed result and signature, plus the
/// fixed fields (id, commitment, index) and the map's bookkeeping, roughly.
pub fn stored_bytes(receipt: &ExecutionReceipt) -> usize {
    receipt.ciphertext.len() + receipt.leaf_signature.len() + FIXED_BYTES
}

/// The bytes reserved for an answer whose sealed result is at most
/// `answer_bound` bytes: its largest [`stored_bytes`].
pub fn reservation(answer_bound: u64) -> usize {
    usize::try_from(answer_bound)
        .unwrap_or(usize::MAX)
        .saturating_add(MAX_SIGNATURE_BYTES + FIXED_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::SMALLEST_ANSWER_BOUND;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicU64, Ordering};
    use wasm_hypervisor_protocol::payload::Status;

    const RETENTION: Duration = Duration::from_secs(600);

    /// What each test execution reserves beyond its answer bound.
    const OVERHEAD: usize = MAX_SIGNATURE_BYTES + FIXED_BYTES;

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
        store_shared(max_pending, max_bytes, max_bytes)
    }

    fn store_shared(
        max_pending: usize,
        max_bytes: usize,
        max_bytes_per_client: usize,
    ) -> (AsyncExecutions, Arc<Clock>) {
        let clock = Arc::new(Clock {
            start: Instant::now(),
            elapsed_ms: AtomicU64::new(0),
        });
        let read = clock.clone();
        let settings = AsyncSettings {
            retention: RETENTION,
            max_pending,
            max_bytes,
            max_bytes_per_client,
        };
        let store = MemoryStore::new(settings, Arc::new(move || read.now()));
        (AsyncExecutions::over(store), clock)
    }

    /// A client without a token, at 10.0.0.`n`.
    fn open(n: u8) -> ClientKey {
        ClientKey::address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
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

    /// Accepts one execution of `client` whose answer is at most `bound` bytes.
    fn accept(store: &AsyncExecutions, client: ClientKey, bound: u64) -> AsyncEntry {
        store
            .reserve(client)
            .unwrap()
            .register(Uuid::new_v4(), bound)
            .unwrap()
    }

    /// Accepts and finishes one execution of `client` with a result of `bytes`.
    fn finished(store: &AsyncExecutions, client: ClientKey, bytes: usize) -> Uuid {
        let entry = accept(store, client, bytes as u64);
        let id = entry.id();
        entry.finish(Ok(receipt(id, bytes)));
        id
    }

    #[test]
    fn an_entry_goes_from_queued_to_running_to_done() {
        let (store, _clock) = store(10, 1 << 20);
        let entry = accept(&store, open(1), 1000);
        let id = entry.id();
        assert!(matches!(store.get(&id, Scope::Open), Some(View::Queued)));
        entry.mark_running();
        assert!(matches!(
            store.get(&id, Scope::Open),
            Some(View::Running(Phase::Running))
        ));
        assert_eq!(store.counts().pending, 1);
        entry.finish(Ok(receipt(id, 100)));
        match store.get(&id, Scope::Open) {
            Some(View::Done(Answer::Kept(kept))) => assert_eq!(kept.execution_id, id),
            _ => panic!("not done"),
        }
        let counts = store.counts();
        assert_eq!((counts.pending, counts.stored), (0, 1));
        assert_eq!(counts.bytes, 100 + 72 + 128);
    }

    #[tokio::test]
    async fn the_phases_a_task_reports_are_its_entrys_and_only_while_it_reports_them() {
        let (store, _clock) = store(10, 1 << 20);
        let entry = accept(&store, open(1), 1000);
        let id = entry.id();
        let phase = |store: &AsyncExecutions| match store.get(&id, Scope::Open) {
            Some(View::Running(phase)) => Some(phase),
            _ => None,
        };
        // Outside `reporting_phases` a report goes nowhere.
        report_phase(Phase::Compiling);
        assert!(matches!(store.get(&id, Scope::Open), Some(View::Queued)));
        entry.mark_running();
        let seen = entry
            .reporting_phases(async {
                let mut seen = Vec::new();
                for next in [Phase::Compiling, Phase::Queued, Phase::Running] {
                    report_phase(next);
                    seen.push(phase(&store));
                }
                seen
            })
            .await;
        assert_eq!(
            seen,
            [
                Some(Phase::Compiling),
                Some(Phase::Queued),
                Some(Phase::Running)
            ]
        );
        let other = accept(&store, open(2), 1000);
        other.mark_running();
        other
            .reporting_phases(async { report_phase(Phase::Compiling) })
            .await;
        assert_eq!(
            phase(&store),
            Some(Phase::Running),
            "another entry's report"
        );
        entry.finish(Ok(receipt(id, 10)));
        assert!(
            !store.store.set_phase(id, Phase::Compiling),
            "a finished entry has no phase"
        );
    }

    #[test]
    fn another_scope_sees_nothing() {
        let (store, _clock) = store(10, 1 << 20);
        let id = finished(&store, ClientKey::Token([1; 32]), 10);
        assert!(store.get(&id, Scope::Token([2; 32])).is_none());
        assert!(store.get(&id, Scope::Open).is_none());
        assert!(store.get(&id, Scope::Token([1; 32])).is_some());
        assert!(store.get(&Uuid::new_v4(), Scope::Token([1; 32])).is_none());
    }

    #[test]
    fn finished_answers_are_dropped_after_retention_oldest_first() {
        let (store, clock) = store(10, 1 << 20);
        let first = finished(&store, open(1), 10);
        clock.advance(Duration::from_secs(100));
        let second = finished(&store, open(2), 20);
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
    fn a_pending_execution_reserves_its_bound_and_finishing_trues_it_down_to_the_answer() {
        let (store, _clock) = store(10, 1 << 20);
        let entry = accept(&store, open(1), 50_000);
        assert_eq!(
            store.counts().bytes,
            50_000 + OVERHEAD,
            "reserved while pending"
        );
        let id = entry.id();
        entry.finish(Ok(receipt(id, 1_000)));
        assert_eq!(
            store.counts().bytes,
            1_000 + 72 + 128,
            "trued down at finish"
        );
        // A withheld answer keeps nothing.
        let entry = accept(&store, open(1), 50_000);
        entry.finish(Err(Withheld::LogUnavailable));
        assert_eq!(store.counts().bytes, 1_000 + 72 + 128);
    }

    #[test]
    fn pending_reservations_count_against_the_total_before_anything_finished() {
        let (store, _clock) = store(10, 1_000_000);
        let first = accept(&store, open(1), 400_000);
        let _second = accept(&store, open(2), 400_000);
        // Nothing has finished, yet a third bound does not fit.
        let third = store.reserve(open(3)).unwrap();
        assert_eq!(
            third.register(Uuid::new_v4(), 400_000).err(),
            Some(AsyncFull::Bytes)
        );
        assert_eq!(
            store.counts().pending,
            2,
            "a refused registration gives its place back"
        );
        // Once the first finished small, there is room.
        let id = first.id();
        first.finish(Ok(receipt(id, 100)));
        assert!(accept_ok(&store, open(3), 400_000));
    }

    fn accept_ok(store: &AsyncExecutions, client: ClientKey, bound: u64) -> bool {
        store
            .reserve(client)
            .and_then(|ticket| ticket.register(Uuid::new_v4(), bound))
            .is_ok()
    }

    #[test]
    fn a_client_past_its_share_is_refused_while_another_client_is_accepted() {
        let (store, clock) = store_shared(10, 10_000_000, 1_000_000);
        let greedy = open(1);
        let pending = accept(&store, greedy, 600_000);
        let refused = store
            .reserve(greedy)
            .unwrap()
            .register(Uuid::new_v4(), 600_000)
            .err();
        // It has a pending execution, which may finish small at any time.
        assert_eq!(
            refused,
            Some(AsyncFull::ClientShare {
                retry_after: Duration::from_secs(1)
            })
        );
        assert!(
            accept_ok(&store, open(2), 600_000),
            "another client has room"
        );

        // With only kept answers, it may retry when its oldest expires.
        let id = pending.id();
        pending.finish(Ok(receipt(id, 900_000)));
        clock.advance(Duration::from_secs(100));
        let refused = store
            .reserve(greedy)
            .unwrap()
            .register(Uuid::new_v4(), 600_000);
        assert_eq!(
            refused.err(),
            Some(AsyncFull::ClientShare {
                retry_after: RETENTION - Duration::from_secs(100)
            })
        );
        clock.advance(RETENTION);
        store.sweep(clock.now());
        assert!(
            accept_ok(&store, greedy, 600_000),
            "its share is back once swept"
        );
    }

    #[test]
    fn a_share_at_or_above_the_total_leaves_only_the_total() {
        let (store, _clock) = store_shared(10, 1_000_000, 2_000_000);
        let _most = accept(&store, open(1), 900_000);
        let refused = store
            .reserve(open(1))
            .unwrap()
            .register(Uuid::new_v4(), 200_000);
        assert_eq!(refused.err(), Some(AsyncFull::Bytes));
    }

    #[test]
    fn a_share_with_no_room_for_any_answer_is_refused_before_the_session_is_used() {
        let smallest = reservation(SMALLEST_ANSWER_BOUND);
        let (store, _clock) = store_shared(10, 10 * smallest, 2 * smallest);
        let _first = accept(&store, open(1), SMALLEST_ANSWER_BOUND);
        let _second = accept(&store, open(1), SMALLEST_ANSWER_BOUND);
        assert!(matches!(
            store.reserve(open(1)).err(),
            Some(AsyncFull::ClientShare { .. })
        ));
        assert_eq!(store.counts().pending, 2, "a refusal takes no place");
    }

    #[test]
    fn results_over_the_byte_budget_stop_new_admissions_not_old_answers() {
        let (store, clock) = store(10, 1 << 20);
        let kept = finished(&store, open(1), (1 << 20) - OVERHEAD - 10);
        assert_eq!(store.reserve(open(2)).err(), Some(AsyncFull::Bytes));
        assert!(
            matches!(store.get(&kept, Scope::Open), Some(View::Done(_))),
            "the kept answer is still there"
        );
        assert_eq!(store.counts().pending, 0, "a refusal takes no place");
        // Once it expires, admissions resume.
        clock.advance(RETENTION);
        store.sweep(clock.now());
        assert!(store.reserve(open(2)).is_ok());
    }

    #[test]
    fn pending_executions_are_bounded_and_a_dropped_ticket_gives_its_place_back() {
        let (store, _clock) = store(2, 1 << 20);
        let first = store.reserve(open(1)).unwrap();
        let _second = store.reserve(open(1)).unwrap();
        assert_eq!(store.reserve(open(1)).err(), Some(AsyncFull::Pending));
        // The plaintext did not open: the place is given back.
        drop(first);
        assert_eq!(store.counts().pending, 1);
        assert!(store.reserve(open(1)).is_ok());
    }

    #[test]
    fn no_pending_places_means_long_jobs_are_off() {
        let (off, _clock) = store(0, 1 << 20);
        assert!(!off.enabled());
        assert_eq!(off.reserve(open(1)).err(), Some(AsyncFull::Pending));
        let (on, _clock) = store(1, 1 << 20);
        assert!(on.enabled());
    }

    #[test]
    fn a_panicking_task_leaves_a_withheld_entry() {
        let (store, _clock) = store(10, 1 << 20);
        let entry = accept(&store, open(1), 1000);
        let id = entry.id();
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
        assert_eq!(store.counts().bytes, 0, "its reservation is given back");
    }

    #[test]
    fn an_unavailable_log_is_kept_as_withheld() {
        let (store, _clock) = store(10, 1 << 20);
        let entry = accept(&store, open(1), 1000);
        let id = entry.id();
        entry.finish(Err(Withheld::LogUnavailable));
        assert!(matches!(
            store.get(&id, Scope::Open),
            Some(View::Withheld(Withheld::LogUnavailable))
        ));
        assert_eq!(store.counts().bytes, 0);
    }

    #[test]
    fn readers_are_bounded_per_client_and_in_all_until_their_slots_drop() {
        let (store, _clock) = store(10, 1 << 20);
        let mut slots: Vec<ReadSlot> = (0..MAX_READERS_PER_CLIENT)
            .map(|_| store.begin_read(open(1)).unwrap())
            .collect();
        assert_eq!(store.begin_read(open(1)).err(), Some(ReadersFull::Client));
        assert!(store.begin_read(open(2)).is_ok(), "another client may read");
        slots.pop();
        assert!(
            store.begin_read(open(1)).is_ok(),
            "a dropped slot is given back"
        );
        drop(slots);
        assert_eq!(store.readers(), 0);

        let all: Vec<ReadSlot> = (0..MAX_READERS)
            .map(|n| {
                store
                    .begin_read(ClientKey::Token([(n % 256) as u8; 32]))
                    .ok()
            })
            .map(|slot| slot.expect("under both bounds"))
            .collect();
        assert_eq!(store.begin_read(open(3)).err(), Some(ReadersFull::Server));
        drop(all);
        assert!(store.begin_read(open(3)).is_ok());
    }

    #[test]
    fn at_the_default_limits_one_client_may_keep_any_answer_but_not_the_whole_store() {
        let defaults = crate::config::LimitsConfig::default();
        let execution = crate::config::ExecutionConfig::default();
        let limits = wasm_hypervisor_protocol::payload::EffectiveLimits {
            fuel: defaults.fuel.get(),
            memory_bytes: defaults.memory_bytes.get(),
            timeout_ms: 1,
            max_output_bytes: defaults.max_output_bytes.get(),
            files_bytes: Some(defaults.files_bytes.get()),
        };
        let entries = defaults.max_mount_entries.get_u32();
        // The figures `execution.async_results_bytes_per_client` documents.
        assert_eq!(
            crate::answer::answer_bound(
                &limits,
                entries,
                false,
                wasm_hypervisor_protocol::plaintext::Format::Json
            ),
            8_436_424
        );
        assert_eq!(
            crate::answer::answer_bound(
                &limits,
                entries,
                false,
                wasm_hypervisor_protocol::plaintext::Format::Cbor
            ),
            4_263_988
        );
        assert_eq!(
            crate::answer::answer_bound(
                &limits,
                entries,
                true,
                wasm_hypervisor_protocol::plaintext::Format::Json
            ),
            503_299_370
        );
        let share = execution.async_results_bytes_per_client.get() as usize;
        let total = execution.async_results_bytes.get() as usize;
        // A request with writable mounts, alone in the store.
        let one_mount = reservation(crate::answer::answer_bound(
            &limits,
            entries,
            true,
            wasm_hypervisor_protocol::plaintext::Format::Json,
        ));
        assert!(one_mount <= share);
        assert!(share < total, "one client never takes the whole store");
    }
}
