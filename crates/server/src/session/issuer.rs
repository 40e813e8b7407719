//! Where sessions' key pairs are made: off the async workers, fairly between
//! clients, in bounded memory. Both session stores issue through an [`Issuer`]
//! (embedded mode's after reserving the places, cluster mode's before its
//! transaction).
//!
//! Making a key pair is CPU work (a P-256 scalar multiplication, and in cluster
//! mode a seal of its seed). Done inline in the handler, a burst of batches from
//! many clients kept the async workers busy for every derivation of every batch
//! before any later request, even one asking for a single session, was served
//! (issue 25, row 9). Here a request is a *job* queued under its client, and one
//! *lane* (a blocking task, while there is work) runs the jobs [`SLICE`]
//! derivations at a time, each slice from the client with the least work outstanding (ties: the
//! one queued first). A client with nothing queued therefore waits for at most
//! the slice running when it asks, then is served before every client with more
//! work outstanding than its own request. One lane per store: the rest of the
//! machine stays free for executions, one core makes thousands of key pairs a
//! second, and a client's jobs are only ever held by that lane.
//!
//! # Bounds
//! Checked when a job is queued, before anything is derived, and refused at once:
//! - a client's work outstanding in this process at most `per_client` (the
//!   store's share, when the store cannot reserve it before deriving):
//!   [`SessionError::ClientShareReached`];
//! - the work queued in all at most `max_queued`: [`SessionError::TooManyPending`],
//!   except for a client with nothing queued asking for at most one slice, so a
//!   flood of large batches cannot keep a fresh client out. What that admits is
//!   bounded by the requests in flight (one job each), themselves bounded by the
//!   connection limits.
//!
//! Both refusals say [`RETRY_SOON`]: the queue drains in well under a second.
//! A job whose requester went away (its receiver dropped) is dropped at its next
//! slice; a derivation that panics fails its job with
//! [`SessionError::Unavailable`] and the lane goes on.
//!
//! # Turns
//! What is made must then be stored, in cluster mode by a transaction behind a
//! lock every replica takes, granted first come first served. Sent as soon as
//! it was made, each request's transaction held a pooled connection while it
//! waited, and a fresh client's one session queued behind every batch made
//! before it (issue 25, row 9: the order chosen here was lost at the lock, and
//! executions waited for connections). [`Turns`] lets one request at a time
//! store what it was given, the request asking for the fewest items first (ties:
//! the one that came first), so at most one request per replica is ahead of a
//! fresh client at the lock, and the store's other connections stay free. A
//! request that goes away while waiting gives up its place, and one that goes
//! away holding the turn passes it on.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::SessionError;
use crate::access::ClientKey;

/// Derivations run for one client before the lane picks again.
pub(crate) const SLICE: usize = 8;

/// The `Retry-After` of a refusal for a full queue.
pub(crate) const RETRY_SOON: Duration = Duration::from_secs(1);

/// Makes one item of a job (a key pair, in cluster mode with its sealed seed).
type Make<T> = Box<dyn FnMut() -> Result<T, SessionError> + Send>;

/// One request's derivations.
struct Job<T> {
    wanted: usize,
    made: Vec<T>,
    make: Make<T>,
    reply: oneshot::Sender<Result<Vec<T>, SessionError>>,
}

impl<T> Job<T> {
    fn remaining(&self) -> usize {
        self.wanted - self.made.len()
    }
}

/// A client's queued jobs, oldest first.
struct Queue<T> {
    jobs: VecDeque<Job<T>>,
    /// Derivations not yet made of its jobs, including one a lane holds.
    outstanding: usize,
    /// When it last became non-empty: the tie-break.
    since: u64,
}

/// The scheduler's state. Invariants: `order` has one entry per queue, equal to
/// `(outstanding, since, client)`; `queued` is the sum of the `outstanding`.
struct State<T> {
    queues: HashMap<ClientKey, Queue<T>>,
    /// Whom to serve next: `first()`.
    order: BTreeSet<(usize, u64, ClientKey)>,
    queued: usize,
    next_since: u64,
    /// Whether the lane is running.
    running: bool,
}

impl<T> State<T> {
    /// Counts `made` derivations of `client` done (or dropped), and drops its
    /// queue once it holds nothing.
    fn settle(&mut self, client: ClientKey, made: usize) {
        let Some(queue) = self.queues.get_mut(&client) else {
            return;
        };
        self.order.remove(&(queue.outstanding, queue.since, client));
        queue.outstanding -= made;
        self.queued -= made;
        if queue.outstanding == 0 && queue.jobs.is_empty() {
            self.queues.remove(&client);
        } else {
            self.order.insert((queue.outstanding, queue.since, client));
        }
    }

    fn outstanding(&self, client: &ClientKey) -> usize {
        self.queues.get(client).map_or(0, |queue| queue.outstanding)
    }
}

/// The issuance scheduler of one store (module doc). Cheap to clone: clones
/// share the queue and the lane.
pub(crate) struct Issuer<T> {
    state: Arc<Mutex<State<T>>>,
    max_queued: usize,
}

impl<T> Clone for Issuer<T> {
    fn clone(&self) -> Self {
        Issuer {
            state: self.state.clone(),
            max_queued: self.max_queued,
        }
    }
}

impl<T: Send + 'static> Issuer<T> {
    /// A scheduler that queues at most `max_queued` derivations (but for a
    /// fresh client's first slice).
    pub(crate) fn new(max_queued: usize) -> Issuer<T> {
        Issuer {
            state: Arc::new(Mutex::new(State {
                queues: HashMap::new(),
                order: BTreeSet::new(),
                queued: 0,
                next_since: 0,
                running: false,
            })),
            max_queued,
        }
    }

    /// Makes `count` items for `client` with `make`, in its turn; refused at
    /// once if the queue cannot take them (module doc). `per_client`: the most
    /// a client may have outstanding, 0 for no bound of its own. Must be called
    /// within a Tokio runtime (the lane is a blocking task).
    pub(crate) async fn issue(
        &self,
        client: ClientKey,
        count: usize,
        per_client: usize,
        make: impl FnMut() -> Result<T, SessionError> + Send + 'static,
    ) -> Result<Vec<T>, SessionError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            wanted: count,
            made: Vec::with_capacity(count),
            make: Box::new(make),
            reply,
        };
        if self.enqueue(client, job, per_client)? {
            let issuer = self.clone();
            tokio::task::spawn_blocking(move || issuer.run_lane());
        }
        // A lane always answers or drops the job; dropped only by a panic.
        answer.await.unwrap_or(Err(SessionError::Unavailable))
    }

    /// Queues `job` if the bounds take it; says whether a lane must start.
    fn enqueue(
        &self,
        client: ClientKey,
        job: Job<T>,
        per_client: usize,
    ) -> Result<bool, SessionError> {
        let mut state = self.lock();
        let count = job.wanted;
        let outstanding = state.outstanding(&client);
        if per_client > 0 && outstanding + count > per_client {
            return Err(SessionError::ClientShareReached {
                retry_after: RETRY_SOON,
            });
        }
        let fresh = outstanding == 0 && count <= SLICE;
        if state.queued + count > self.max_queued && !fresh {
            return Err(SessionError::TooManyPending {
                retry_after: RETRY_SOON,
            });
        }
        let state = &mut *state;
        let queue = state.queues.entry(client).or_insert_with(|| {
            state.next_since += 1;
            Queue {
                jobs: VecDeque::new(),
                outstanding: 0,
                since: state.next_since,
            }
        });
        state
            .order
            .remove(&(queue.outstanding, queue.since, client));
        queue.jobs.push_back(job);
        queue.outstanding += count;
        state.order.insert((queue.outstanding, queue.since, client));
        state.queued += count;
        let start = !state.running;
        state.running = true;
        Ok(start)
    }

    /// The lane: serves slices until the queue is empty.
    fn run_lane(&self) {
        loop {
            let next = {
                let mut state = self.lock();
                let picked = state.order.first().map(|&(_, _, client)| client);
                let job = picked.and_then(|client| {
                    let queue = state.queues.get_mut(&client)?;
                    queue.jobs.pop_front().map(|job| (client, job))
                });
                if job.is_none() {
                    state.running = false;
                }
                job
            };
            let Some((client, job)) = next else {
                return;
            };
            self.serve_slice(client, job);
        }
    }

    /// Runs one slice of `job`, then answers it or puts it back first in its
    /// client's queue.
    fn serve_slice(&self, client: ClientKey, mut job: Job<T>) {
        if job.reply.is_closed() {
            // Nobody waits for it any more.
            let remaining = job.remaining();
            self.lock().settle(client, remaining);
            return;
        }
        let before = job.remaining();
        let slice = before.min(SLICE);
        let made = catch_unwind(AssertUnwindSafe(|| {
            (0..slice).try_for_each(|_| {
                let item = (job.make)()?;
                job.made.push(item);
                Ok(())
            })
        }))
        .unwrap_or(Err(SessionError::Unavailable));
        let remaining = job.remaining();
        let mut state = self.lock();
        match made {
            Err(error) => {
                // The job is over: all it had outstanding goes.
                state.settle(client, before);
                drop(state);
                let _ = job.reply.send(Err(error));
            }
            Ok(()) if remaining == 0 => {
                state.settle(client, slice);
                drop(state);
                let _ = job.reply.send(Ok(job.made));
            }
            Ok(()) => {
                state.settle(client, slice);
                if let Some(queue) = state.queues.get_mut(&client) {
                    queue.jobs.push_front(job);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section updates the counts together and does not
        // panic midway, so a poisoned lock is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One request at a time stores what it was made, the smallest first (module
/// doc, "Turns").
pub(crate) struct Turns {
    state: Mutex<TurnState>,
}

struct TurnState {
    /// Whether a [`Turn`] is held (or granted to a waiter not yet woken).
    taken: bool,
    /// Who waits, by (items asked for, arrival): the first is served next.
    waiting: BTreeMap<(usize, u64), oneshot::Sender<()>>,
    arrivals: u64,
}

/// The turn to store; passed on when dropped.
pub(crate) struct Turn<'a> {
    turns: &'a Turns,
}

/// A place in the queue of [`Turns`]: given up when dropped before the turn
/// came, and the turn passed on if it came but was not taken.
struct Waiting<'a> {
    turns: &'a Turns,
    place: (usize, u64),
    granted: Option<oneshot::Receiver<()>>,
}

impl Turns {
    pub(crate) fn new() -> Turns {
        Turns {
            state: Mutex::new(TurnState {
                taken: false,
                waiting: BTreeMap::new(),
                arrivals: 0,
            }),
        }
    }

    /// Waits for the turn of a request for `items`.
    pub(crate) async fn take(&self, items: usize) -> Turn<'_> {
        let mut waiting = {
            let mut state = self.lock();
            if !state.taken {
                state.taken = true;
                return Turn { turns: self };
            }
            state.arrivals += 1;
            let place = (items, state.arrivals);
            let (grant, granted) = oneshot::channel();
            state.waiting.insert(place, grant);
            tracing::debug!(
                items,
                "a request waits for its turn to store what it was made"
            );
            Waiting {
                turns: self,
                place,
                granted: Some(granted),
            }
        };
        if let Some(granted) = waiting.granted.as_mut() {
            // Its sender is only ever dropped by `pass`, after sending: an
            // error cannot happen, and would mean the turn is ours anyway.
            let _ = granted.await;
        }
        waiting.granted = None;
        Turn { turns: self }
    }

    /// Gives the turn to the first who still waits, or frees it.
    fn pass(&self) {
        let mut state = self.lock();
        while let Some((_, grant)) = state.waiting.pop_first() {
            if grant.send(()).is_ok() {
                return;
            }
        }
        state.taken = false;
    }

    fn lock(&self) -> MutexGuard<'_, TurnState> {
        // No critical section panics midway (as `Issuer::lock`).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.pass();
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.granted.is_none() {
            return;
        }
        // Still in the queue: leave it. Out of it: `pass` gave us the turn
        // (under the lock, while our receiver lived), which goes on.
        let left = self.turns.lock().waiting.remove(&self.place).is_some();
        if !left {
            self.turns.pass();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::mpsc;

    use super::*;

    fn address(n: u8) -> ClientKey {
        ClientKey::address(IpAddr::from([192, 0, 2, n]))
    }

    /// Waits until `queued` derivations are queued (the tasks that queue them
    /// run on this runtime).
    async fn until_queued(issuer: &Issuer<u8>, queued: usize) {
        while issuer.lock().queued != queued {
            tokio::task::yield_now().await;
        }
    }

    /// A job whose first derivation waits for `go`, holding the lane, after
    /// saying so on `started`.
    fn gated(
        log: Arc<Mutex<Vec<u8>>>,
        who: u8,
        started: mpsc::Sender<()>,
        go: mpsc::Receiver<()>,
    ) -> impl FnMut() -> Result<u8, SessionError> + Send + 'static {
        let mut gate = Some((started, go));
        move || {
            if let Some((started, go)) = gate.take() {
                started.send(()).unwrap();
                go.recv().unwrap();
            }
            log.lock().unwrap().push(who);
            Ok(who)
        }
    }

    fn logging(
        log: Arc<Mutex<Vec<u8>>>,
        who: u8,
    ) -> impl FnMut() -> Result<u8, SessionError> + Send + 'static {
        move || {
            log.lock().unwrap().push(who);
            Ok(who)
        }
    }

    #[tokio::test]
    async fn a_client_with_nothing_queued_is_served_after_the_running_slice() {
        let issuer = Issuer::<u8>::new(10_000);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (started, started_rx) = mpsc::channel();
        let (go_tx, go) = mpsc::channel();
        let mut jobs = Vec::new();
        {
            let issuer = issuer.clone();
            let make = gated(log.clone(), 0, started, go);
            jobs.push(tokio::spawn(async move {
                issuer.issue(address(0), 64, 0, make).await
            }));
        }
        // The lane holds client 0's first slice; 9 more clients flood, then a
        // fresh one asks for one.
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        for who in 1..=9 {
            let (issuer, make) = (issuer.clone(), logging(log.clone(), who));
            jobs.push(tokio::spawn(async move {
                issuer.issue(address(who), 64, 0, make).await
            }));
        }
        until_queued(&issuer, 640).await;
        let fresh = {
            let (issuer, make) = (issuer.clone(), logging(log.clone(), 100));
            tokio::spawn(async move { issuer.issue(address(100), 1, 0, make).await })
        };
        until_queued(&issuer, 641).await;
        go_tx.send(()).unwrap();
        assert_eq!(fresh.await.unwrap().unwrap(), vec![100]);
        for (who, job) in jobs.into_iter().enumerate() {
            assert_eq!(job.await.unwrap().unwrap(), vec![who as u8; 64]);
        }
        let log = log.lock().unwrap();
        // Client 0's running slice, then the fresh client, then the rest, one
        // client at a time (the least outstanding first).
        assert_eq!(log[..SLICE], [0; SLICE]);
        assert_eq!(log[SLICE], 100);
        assert_eq!(log[SLICE + 1..64 + 1], [0; 64 - SLICE]);
        assert_eq!(log.len(), 641);
        assert_eq!(issuer.lock().queued, 0);
        assert!(issuer.lock().queues.is_empty() && issuer.lock().order.is_empty());
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_all_and_per_client_but_a_fresh_client_gets_a_slice() {
        let issuer = Issuer::<u8>::new(100);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (started, started_rx) = mpsc::channel();
        let (go_tx, go) = mpsc::channel();
        let held = {
            let (issuer, make) = (issuer.clone(), gated(log.clone(), 0, started, go));
            tokio::spawn(async move { issuer.issue(address(0), 64, 64, make).await })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        // Client 0 has 64 outstanding, its share.
        assert_eq!(
            issuer
                .issue(address(0), 1, 64, logging(log.clone(), 0))
                .await,
            Err(SessionError::ClientShareReached {
                retry_after: RETRY_SOON
            })
        );
        let second = {
            let (issuer, make) = (issuer.clone(), logging(log.clone(), 1));
            tokio::spawn(async move { issuer.issue(address(1), 30, 64, make).await })
        };
        until_queued(&issuer, 94).await;
        // 94 + 7 > 100: refused, but a fresh client's one slice is taken.
        assert_eq!(
            issuer
                .issue(address(1), 7, 64, logging(log.clone(), 1))
                .await,
            Err(SessionError::TooManyPending {
                retry_after: RETRY_SOON
            })
        );
        let fresh = {
            let (issuer, make) = (issuer.clone(), logging(log.clone(), 2));
            tokio::spawn(async move { issuer.issue(address(2), SLICE, 64, make).await })
        };
        until_queued(&issuer, 94 + SLICE).await;
        go_tx.send(()).unwrap();
        assert_eq!(fresh.await.unwrap().unwrap(), vec![2; SLICE]);
        assert_eq!(second.await.unwrap().unwrap(), vec![1; 30]);
        assert_eq!(held.await.unwrap().unwrap(), vec![0; 64]);
        assert_eq!(issuer.lock().queued, 0);
    }

    /// Waits until `count` requests wait for a turn.
    async fn until_waiting(turns: &Turns, count: usize) {
        while turns.lock().waiting.len() != count {
            tokio::task::yield_now().await;
        }
    }

    /// A task that takes the turn of a request for `items`, says so in `log`,
    /// and gives the turn up.
    fn taker(
        turns: &Arc<Turns>,
        log: &Arc<Mutex<Vec<usize>>>,
        items: usize,
    ) -> tokio::task::JoinHandle<()> {
        let (turns, log) = (turns.clone(), log.clone());
        tokio::spawn(async move {
            let _turn = turns.take(items).await;
            log.lock().unwrap().push(items);
        })
    }

    #[tokio::test]
    async fn turns_go_one_at_a_time_to_the_smallest_request_then_the_first_come() {
        let turns = Arc::new(Turns::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let held = turns.take(64).await;
        let mut takers = Vec::new();
        for (queued, items) in [64, 32, 64, 1, 32].into_iter().enumerate() {
            takers.push(taker(&turns, &log, items));
            until_waiting(&turns, queued + 1).await;
        }
        assert!(log.lock().unwrap().is_empty(), "the turn is held");
        drop(held);
        for taker in takers {
            taker.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), [1, 32, 32, 64, 64]);
        let state = turns.lock();
        assert!(!state.taken && state.waiting.is_empty());
    }

    #[tokio::test]
    async fn a_request_that_leaves_gives_up_its_place_or_passes_the_turn_on() {
        let turns = Arc::new(Turns::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let held = turns.take(8).await;
        let left_waiting = taker(&turns, &log, 1);
        until_waiting(&turns, 1).await;
        let left_granted = taker(&turns, &log, 2);
        until_waiting(&turns, 2).await;
        let last = taker(&turns, &log, 3);
        until_waiting(&turns, 3).await;
        // One leaves while waiting; then the turn goes to the next (2), which
        // leaves before it could take it (this runtime has one thread: it has
        // not run since): the turn goes on to 3.
        left_waiting.abort();
        assert!(left_waiting.await.unwrap_err().is_cancelled());
        assert_eq!(turns.lock().waiting.len(), 2);
        drop(held);
        left_granted.abort();
        assert!(left_granted.await.unwrap_err().is_cancelled());
        last.await.unwrap();
        assert_eq!(*log.lock().unwrap(), [3]);
        let state = turns.lock();
        assert!(!state.taken && state.waiting.is_empty());
    }

    #[tokio::test]
    async fn a_job_whose_requester_left_or_whose_derivation_failed_is_dropped() {
        let issuer = Issuer::<u8>::new(1_000);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (started, started_rx) = mpsc::channel();
        let (go_tx, go) = mpsc::channel();
        let held = {
            let (issuer, make) = (issuer.clone(), gated(log.clone(), 0, started, go));
            tokio::spawn(async move { issuer.issue(address(0), 16, 0, make).await })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        let left = {
            let (issuer, make) = (issuer.clone(), logging(log.clone(), 1));
            tokio::spawn(async move { issuer.issue(address(1), 64, 0, make).await })
        };
        let mut calls = 0;
        let failing = {
            let issuer = issuer.clone();
            tokio::spawn(async move {
                issuer
                    .issue(address(2), 64, 0, move || {
                        calls += 1;
                        if calls == 3 {
                            panic!("a derivation that panics");
                        }
                        Ok(2)
                    })
                    .await
            })
        };
        until_queued(&issuer, 16 + 64 + 64).await;
        left.abort();
        assert!(left.await.unwrap_err().is_cancelled());
        go_tx.send(()).unwrap();
        assert_eq!(held.await.unwrap().unwrap(), vec![0; 16]);
        assert_eq!(failing.await.unwrap(), Err(SessionError::Unavailable));
        // The lane goes on: the queue is empty, and a new job is served.
        assert_eq!(issuer.lock().queued, 0);
        assert!(!log.lock().unwrap().contains(&1), "client 1 left before");
        assert_eq!(
            issuer.issue(address(3), 2, 0, || Ok(3)).await.unwrap(),
            vec![3, 3]
        );
    }
}
