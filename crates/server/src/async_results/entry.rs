//! An execution's place in the store, from before its session is used to its
//! answer: the [`AsyncTicket`] taken first, the [`AsyncEntry`] its task owns once
//! registered (recording a withheld answer if dropped unfinished), and the
//! phases it reports meanwhile ([`report_phase`], a task-local).

use uuid::Uuid;

use super::{AsyncExecutions, AsyncFull, Phase, Withheld};
use crate::access::ClientKey;
use crate::answer::ExecutionReceipt;

/// A place taken in the store before the session is used; given back when
/// dropped unless the plaintext opened and it was registered.
pub struct AsyncTicket {
    store: Option<AsyncExecutions>,
    client: ClientKey,
}

impl AsyncTicket {
    /// The place just taken in `store` for `client`.
    pub(super) fn new(store: AsyncExecutions, client: ClientKey) -> AsyncTicket {
        AsyncTicket {
            store: Some(store),
            client,
        }
    }

    /// The plaintext opened as execution `id`, whose answer is at most
    /// `answer_bound` bytes: from now on it must finish. Refused, and the place
    /// given back, when that bound does not fit the bytes left for everyone or
    /// for this client.
    pub fn register(mut self, id: Uuid, answer_bound: u64) -> Result<AsyncEntry, AsyncFull> {
        // Always `Some`: only `register`, which consumes the ticket, takes it.
        let Some(store) = self.store.take() else {
            return Err(AsyncFull::Pending);
        };
        if let Err(full) = store.store.register(id, self.client, answer_bound) {
            store.store.release(self.client);
            return Err(full);
        }
        Ok(AsyncEntry {
            store: Some(store),
            id,
        })
    }
}

impl Drop for AsyncTicket {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            store.store.release(self.client);
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
            store.store.mark_running(self.id);
        }
    }

    /// Runs `work`, recording as this execution's the phases that code inside
    /// it reports with [`report_phase`]. A task-local rather than a parameter:
    /// the points that know the phase (waiting for a slot, compiling, running
    /// the guest) are deep in the executor, shared with synchronous executions,
    /// which have no phase to report.
    pub async fn reporting_phases<F: std::future::Future>(&self, work: F) -> F::Output {
        match &self.store {
            Some(store) => {
                let reporter = PhaseReporter {
                    store: store.clone(),
                    id: self.id,
                };
                PHASE_REPORTER.scope(reporter, work).await
            }
            None => work.await,
        }
    }

    /// It ended: the answer to keep, or why there is none.
    pub fn finish(mut self, outcome: Result<ExecutionReceipt, Withheld>) {
        if let Some(store) = self.store.take() {
            store.store.finish(self.id, outcome);
        }
    }
}

impl Drop for AsyncEntry {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            tracing::error!(execution_id = %self.id, "an async execution ended without an answer");
            store.store.finish(self.id, Err(Withheld::Internal));
        }
    }
}

/// Where the phases of the execution a task carries out go.
#[derive(Clone)]
struct PhaseReporter {
    store: AsyncExecutions,
    id: Uuid,
}

tokio::task_local! {
    /// Set by [`AsyncEntry::reporting_phases`] for the task that carries out a
    /// long job.
    static PHASE_REPORTER: PhaseReporter;
}

/// Records `phase` for the long job this task carries out, if it carries one
/// out (inside [`AsyncEntry::reporting_phases`]); nothing otherwise.
pub fn report_phase(phase: Phase) {
    let _ = PHASE_REPORTER.try_with(|reporter| reporter.store.store.set_phase(reporter.id, phase));
}
