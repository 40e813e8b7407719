//! The in-memory store ([`MemoryStore`]): embedded mode's, and the part of
//! cluster mode's that holds this process's own executions. Bounded in count and
//! in bytes, in all and per client; answers swept oldest first after the
//! retention.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{
    Answer, AsyncCounts, AsyncFull, AsyncResultStore, AsyncSettings, Phase, View, Withheld,
    reservation, stored_bytes,
};
use crate::access::{ClientKey, Scope};
use crate::answer::{ExecutionReceipt, SMALLEST_ANSWER_BOUND};

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
    /// Reserved for pending answers, plus those of finished answers kept.
    bytes: usize,
    /// Each client's part of `pending` and `bytes`, for the clients with a
    /// place, a reservation or an answer kept.
    clients: HashMap<ClientKey, Share>,
}

/// One client's part of the store.
#[derive(Default)]
struct Share {
    pending: usize,
    bytes: usize,
    /// When each of its kept entries finished, oldest first (as `finished`).
    finished: VecDeque<Instant>,
}

impl Share {
    fn is_empty(&self) -> bool {
        self.pending == 0 && self.bytes == 0 && self.finished.is_empty()
    }
}

enum Entry {
    Pending {
        scope: Scope,
        client: ClientKey,
        running: bool,
        phase: Phase,
        /// Bytes reserved for its answer.
        reserved: usize,
    },
    Finished {
        scope: Scope,
        client: ClientKey,
        at: Instant,
        outcome: Result<Arc<ExecutionReceipt>, Withheld>,
        /// Bytes it is counted as.
        bytes: usize,
    },
}

impl State {
    fn share(&mut self, client: ClientKey) -> &mut Share {
        self.clients.entry(client).or_default()
    }

    /// Forgets `client`'s share once nothing is left in it, so that the map
    /// holds only clients with something in the store.
    fn tidy(&mut self, client: ClientKey) {
        if self.clients.get(&client).is_some_and(Share::is_empty) {
            self.clients.remove(&client);
        }
    }
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
        // (each update is whole before the lock is let go), so a poisoned lock
        // is used as is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Why `client` may not add `bytes` to the store, if it may not; `own` is
    /// the number of pending places the asking request itself holds (0 or 1).
    fn refuse(
        &self,
        state: &State,
        client: ClientKey,
        bytes: usize,
        own: usize,
    ) -> Option<AsyncFull> {
        let share = state.clients.get(&client);
        let of_client = share.map_or(0, |share| share.bytes);
        // A share at or above the total is no share: only the total binds.
        let shared = self.settings.max_bytes_per_client < self.settings.max_bytes;
        if shared && of_client.saturating_add(bytes) > self.settings.max_bytes_per_client {
            let retry_after = match share {
                Some(share) if share.pending <= own => share.finished.front().map(|at| {
                    (*at + self.settings.retention).saturating_duration_since((self.clock)())
                }),
                _ => None,
            };
            return Some(AsyncFull::ClientShare {
                retry_after: retry_after
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_secs(1)),
            });
        }
        if state.bytes.saturating_add(bytes) > self.settings.max_bytes {
            return Some(AsyncFull::Bytes);
        }
        None
    }
}

#[async_trait::async_trait]
impl AsyncResultStore for MemoryStore {
    fn try_reserve(&self, client: ClientKey) -> Result<(), AsyncFull> {
        let mut state = self.state();
        if state.pending >= self.settings.max_pending {
            return Err(AsyncFull::Pending);
        }
        // Refused before the session is used only when not even the smallest
        // answer would fit; a request whose own bound does not fit is refused
        // by `register`, once its limits are known.
        let smallest = reservation(SMALLEST_ANSWER_BOUND);
        if let Some(full) = self.refuse(&state, client, smallest, 0) {
            return Err(full);
        }
        state.pending += 1;
        state.share(client).pending += 1;
        Ok(())
    }

    fn release(&self, client: ClientKey) {
        let mut state = self.state();
        state.pending = state.pending.saturating_sub(1);
        let share = state.share(client);
        share.pending = share.pending.saturating_sub(1);
        state.tidy(client);
    }

    fn register(&self, id: Uuid, client: ClientKey, answer_bound: u64) -> Result<(), AsyncFull> {
        let reserved = reservation(answer_bound);
        let mut state = self.state();
        if let Some(full) = self.refuse(&state, client, reserved, 1) {
            return Err(full);
        }
        state.bytes += reserved;
        state.share(client).bytes += reserved;
        state.entries.insert(
            id,
            Entry::Pending {
                scope: Scope::of(client),
                client,
                running: false,
                phase: Phase::Queued,
                reserved,
            },
        );
        Ok(())
    }

    fn mark_running(&self, id: Uuid) {
        if let Some(Entry::Pending { running, phase, .. }) = self.state().entries.get_mut(&id) {
            *running = true;
            *phase = Phase::Running;
        }
    }

    fn set_phase(&self, id: Uuid, phase: Phase) -> bool {
        match self.state().entries.get_mut(&id) {
            Some(Entry::Pending { phase: now, .. }) if *now != phase => {
                *now = phase;
                true
            }
            _ => false,
        }
    }

    fn finish(&self, id: Uuid, outcome: Result<ExecutionReceipt, Withheld>) {
        let at = (self.clock)();
        let mut state = self.state();
        let Some(&Entry::Pending {
            scope,
            client,
            reserved,
            ..
        }) = state.entries.get(&id)
        else {
            return;
        };
        let outcome = outcome.map(Arc::new);
        let bytes = outcome.as_ref().map_or(0, |receipt| stored_bytes(receipt));
        if bytes > reserved {
            // A bound that is wrong is a bug; the answer is logged, so it is
            // kept all the same, and counted as it is.
            tracing::error!(execution_id = %id, bytes, reserved, "an async answer is larger than its bound");
        }
        // The reservation trued to the answer's real size.
        state.pending = state.pending.saturating_sub(1);
        state.bytes = state.bytes.saturating_sub(reserved) + bytes;
        state.finished.push_back((at, id));
        let share = state.share(client);
        share.pending = share.pending.saturating_sub(1);
        share.bytes = share.bytes.saturating_sub(reserved) + bytes;
        share.finished.push_back(at);
        state.entries.insert(
            id,
            Entry::Finished {
                scope,
                client,
                at,
                outcome,
                bytes,
            },
        );
    }

    fn get(&self, id: &Uuid, scope: Scope) -> Option<View> {
        let now = (self.clock)();
        let state = self.state();
        match state.entries.get(id)? {
            Entry::Pending {
                scope: owner,
                running,
                phase,
                ..
            } if *owner == scope => Some(if *running {
                View::Running(*phase)
            } else {
                View::Queued
            }),
            Entry::Finished {
                scope: owner,
                at,
                outcome,
                ..
            } if *owner == scope && now < *at + self.settings.retention => Some(match outcome {
                Ok(receipt) => View::Done(Answer::Kept(receipt.clone())),
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
            if let Some(Entry::Finished { client, bytes, .. }) = state.entries.remove(&id) {
                state.bytes = state.bytes.saturating_sub(bytes);
                let share = state.share(client);
                share.bytes = share.bytes.saturating_sub(bytes);
                // Its entries finish, and so expire, in this order too.
                share.finished.pop_front();
                state.tidy(client);
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
