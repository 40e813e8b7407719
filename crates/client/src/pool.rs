//! A pool of pre-opened sessions, so that an execution costs one round trip.
//!
//! With protocol v1.1 the pool opens sessions in batches (`POST /sessions
//! {"count": N}`, §A) and checks each batch's one signature under the server's
//! pinned key before it keeps any of them; with v1 it opens them one at a time,
//! exactly as v1. A session that expires within [`SessionPool::DEFAULT_MARGIN`] is
//! dropped rather than used. An `/execute` answered `session_not_found` (or
//! `session_expired`), which guarantees that nothing ran, is sent once more on a
//! freshly opened session without the caller noticing: a server that restarted or
//! evicted sessions costs one extra round trip, not an error.
//!
//! With v1.1, tasks that find the pool empty at once open **one** batch between
//! them: the first opens it, the others wait for it and take its sessions.
//!
//! Batch sizes grow on demand, by the same rule as the Python and JS clients: the
//! first batch asks for [`SessionPool::INITIAL_BATCH`] sessions (or the ceiling,
//! if smaller); each later one doubles, up to the ceiling
//! ([`SessionPool::DEFAULT_BATCH`], or [`SessionPool::with_batch`]), when the pool's
//! sessions were all used, and halves when some expired unused. A batch the server
//! refuses for the client's share of pending sessions (`too_many_client_sessions`)
//! or for the pool's (`too_many_sessions`) is asked again at half the size, down
//! to one session. So several programs behind one client identity (CI jobs on one
//! runner) share `sessions.max_pending_per_client` instead of locking each other
//! out, and one that runs little holds little. A refusal of a single session is
//! retried after its `Retry-After` as the client's [`crate::Retries`] allow, then
//! is the caller's error.
//!
//! An `/execute` refused before its session was used (`rate_limited`,
//! `too_many_executions`, `overloaded`, `database_unavailable`: PROTOCOL.md says
//! none of them uses the session) gives the session back to the pool and returns
//! the error: a client held back by the server's limits does not leak a pending
//! session per refusal until its share is full.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use wasm_hypervisor_protocol::signing::PublicKey;

use crate::run::Observer;
use crate::{Client, ClientError, Execution, PendingExecution, Session, Violation, Wire};

/// A session in the pool, with when it expires (the server's `expires_at`).
struct Pooled {
    session: Session,
    expires_at: SystemTime,
}

/// The pooled sessions and what decides the next batch's size.
struct PoolState {
    sessions: VecDeque<Pooled>,
    /// Sessions the next batch asks for.
    batch: usize,
    /// The most a batch asks for.
    ceiling: usize,
    /// Whether a batch was opened yet: the first keeps the initial size.
    opened_before: bool,
    /// Whether a session expired unused since the last batch was opened.
    expired_unused: bool,
}

impl PoolState {
    fn with_ceiling(ceiling: usize) -> PoolState {
        let ceiling = ceiling.max(1);
        PoolState {
            sessions: VecDeque::new(),
            batch: SessionPool::INITIAL_BATCH.min(ceiling),
            ceiling,
            opened_before: false,
            expired_unused: false,
        }
    }

    /// The pool ran dry: the next batch doubles if every session was used, and
    /// halves if some expired unused.
    fn resize_for_refill(&mut self) {
        if self.opened_before {
            self.batch = if self.expired_unused {
                (self.batch / 2).max(1)
            } else {
                (self.batch * 2).min(self.ceiling)
            };
        }
        self.expired_unused = false;
    }
}

/// Sessions opened ahead of use, shared by every task that executes through it
/// (a `std::sync::Mutex`, held only to push, pop or size a batch, never across an
/// `.await`).
pub struct SessionPool {
    client: Client,
    server_key: PublicKey,
    margin: Duration,
    state: Mutex<PoolState>,
    /// Held by the task opening a batch for an empty pool (v1.1), so that tasks
    /// arriving meanwhile take that batch's sessions instead of opening their own.
    refill: tokio::sync::Mutex<()>,
}

/// Whether an `/execute` error says the session was not there, so nothing ran and
/// the same request may go again on another session.
fn session_gone(error: &ClientError) -> bool {
    matches!(error, ClientError::Server { code, .. }
        if code == "session_not_found" || code == "session_expired")
}

/// Whether an `/execute` was refused before its session was used, so the
/// session may serve another request.
fn session_unused(error: &ClientError) -> bool {
    matches!(error, ClientError::Server { code, .. }
        if code == "rate_limited" || code == "too_many_executions"
            || code == "overloaded" || code == "database_unavailable")
}

/// Whether a `POST /sessions` was refused for a pending bound, which a smaller
/// batch may fit under.
pub(crate) fn over_pending_bound(error: &ClientError) -> bool {
    matches!(error, ClientError::Server { code, .. }
        if code == "too_many_client_sessions" || code == "too_many_sessions")
}

impl SessionPool {
    /// The most sessions one `POST /sessions {"count": N}` asks for by default.
    /// The server's default share per client is 64 pending sessions: four
    /// programs behind one address (or token) whose pools are all at their
    /// largest still fit.
    pub const DEFAULT_BATCH: usize = 16;
    /// The first batch of a pool (or the ceiling, if smaller): a program that runs
    /// a few executions holds few sessions.
    pub const INITIAL_BATCH: usize = 4;
    /// A session expiring within this is not used: the request might arrive after
    /// it has gone.
    pub const DEFAULT_MARGIN: Duration = Duration::from_secs(5);

    /// A pool over `client` (its wire version decides batches or single
    /// sessions), trusting sessions signed by `server_key`.
    pub fn new(client: Client, server_key: PublicKey) -> SessionPool {
        SessionPool {
            client,
            server_key,
            margin: SessionPool::DEFAULT_MARGIN,
            state: Mutex::new(PoolState::with_ceiling(SessionPool::DEFAULT_BATCH)),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// Opens at most `batch` sessions at a time (at least 1; v1.1 only): the
    /// ceiling the batch size grows to.
    pub fn with_batch(self, batch: usize) -> SessionPool {
        SessionPool {
            state: Mutex::new(PoolState::with_ceiling(batch)),
            ..self
        }
    }

    /// Sessions the next batch asks for.
    pub fn batch(&self) -> usize {
        self.lock().batch
    }

    /// Drops sessions expiring within `margin`.
    pub fn with_margin(self, margin: Duration) -> SessionPool {
        SessionPool { margin, ..self }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sessions held now (some may have expired since).
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A panic while holding it leaves a queue of valid sessions and a size.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A session that is not about to expire: the oldest pooled one, or one of a
    /// batch opened now.
    pub async fn take(&self) -> Result<Session, ClientError> {
        Ok(self.take_pooled().await?.session)
    }

    /// [`SessionPool::take`], with the session's expiry.
    async fn take_pooled(&self) -> Result<Pooled, ClientError> {
        if let Some(pooled) = self.pop_live() {
            return Ok(pooled);
        }
        if self.client.wire() == Wire::V1 {
            // One session per request: nothing to share, so no reason to wait.
            return self.fresh().await;
        }
        let _refilling = self.refill.lock().await;
        // Whoever held the lock before may have filled the pool.
        if let Some(pooled) = self.pop_live() {
            return Ok(pooled);
        }
        self.lock().resize_for_refill();
        self.fresh().await
    }

    /// The oldest pooled session not about to expire; those about to are dropped.
    fn pop_live(&self) -> Option<Pooled> {
        let now = SystemTime::now();
        let mut state = self.lock();
        while let Some(pooled) = state.sessions.pop_front() {
            if pooled.expires_at > now + self.margin {
                return Some(pooled);
            }
            state.expired_unused = true;
        }
        None
    }

    /// Puts back, first in line, a session a refused request did not use.
    fn give_back(&self, pooled: Pooled) {
        self.lock().sessions.push_front(pooled);
    }

    /// Opens sessions now (a batch with v1.1, one with v1), keeps all but the
    /// first and returns it. A server whose sessions live less than the margin
    /// still gets them used, fresh.
    async fn fresh(&self) -> Result<Pooled, ClientError> {
        let mut opened = self.open().await?.into_iter();
        let first = opened.next().ok_or(Violation::Batch(
            wasm_hypervisor_protocol::wire::BatchError::Empty,
        ))?;
        let mut state = self.lock();
        state.opened_before = true;
        state.sessions.extend(opened);
        Ok(first)
    }

    async fn open(&self) -> Result<Vec<Pooled>, ClientError> {
        let expiry = |text: &str| {
            humantime::parse_rfc3339(text).map_err(|_| ClientError::from(Violation::ExpiresAt))
        };
        match self.client.wire() {
            Wire::V1 => {
                let (session, expires_at) =
                    self.client.open_session_until(&self.server_key).await?;
                Ok(vec![Pooled {
                    session,
                    expires_at: expiry(&expires_at)?,
                }])
            }
            Wire::V1_1 => self
                .open_batch()
                .await?
                .into_iter()
                .map(|verified| {
                    Ok(Pooled {
                        expires_at: expiry(&verified.expires_at)?,
                        session: Session {
                            id: verified.session_id,
                            public_key: verified.public_key,
                        },
                    })
                })
                .collect(),
        }
    }

    /// `POST /sessions {"count": N}` at the current batch size, halving it while
    /// the server refuses the batch for its pending bounds.
    async fn open_batch(
        &self,
    ) -> Result<Vec<wasm_hypervisor_protocol::wire::VerifiedSession>, ClientError> {
        loop {
            let count = self.batch();
            match self.client.open_sessions(&self.server_key, count).await {
                Err(error) if count > 1 && over_pending_bound(&error) => {
                    self.lock().batch = (count / 2).max(1);
                }
                outcome => return outcome,
            }
        }
    }

    /// Forgets every pooled session: after a `session_not_found` the others may
    /// be gone too (a restarted server).
    fn clear(&self) {
        self.lock().sessions.clear();
    }

    /// [`Client::execute`] on a pooled session; a `session_not_found` is retried
    /// once on a fresh session, and a session a refusal did not use goes back.
    pub async fn execute(&self, request_plaintext: &[u8]) -> Result<Execution, ClientError> {
        self.execute_observed(request_plaintext, None).await
    }

    /// [`SessionPool::execute`], reporting the upload of a large body to `observer`.
    pub(crate) async fn execute_observed(
        &self,
        request_plaintext: &[u8],
        observer: Option<&Observer>,
    ) -> Result<Execution, ClientError> {
        let pooled = self.take_pooled().await?;
        match self
            .client
            .execute_observed(&pooled.session, request_plaintext, observer)
            .await
        {
            Err(error) if session_gone(&error) => {
                self.clear();
                let pooled = self.fresh().await?;
                let outcome = self
                    .client
                    .execute_observed(&pooled.session, request_plaintext, observer)
                    .await;
                self.keep_if_unused(pooled, outcome)
            }
            outcome => self.keep_if_unused(pooled, outcome),
        }
    }

    /// [`Client::execute_async`] on a pooled session; a `session_not_found` is
    /// retried once on a fresh session, and a session a refusal did not use goes
    /// back.
    pub async fn execute_async(
        &self,
        request_plaintext: &[u8],
    ) -> Result<PendingExecution, ClientError> {
        self.execute_async_observed(request_plaintext, None).await
    }

    /// [`SessionPool::execute_async`], reporting the upload of a large body to
    /// `observer`.
    pub(crate) async fn execute_async_observed(
        &self,
        request_plaintext: &[u8],
        observer: Option<&Observer>,
    ) -> Result<PendingExecution, ClientError> {
        let pooled = self.take_pooled().await?;
        match self
            .client
            .execute_async_observed(&pooled.session, request_plaintext, observer)
            .await
        {
            Err(error) if session_gone(&error) => {
                self.clear();
                let pooled = self.fresh().await?;
                let outcome = self
                    .client
                    .execute_async_observed(&pooled.session, request_plaintext, observer)
                    .await;
                self.keep_if_unused(pooled, outcome)
            }
            outcome => self.keep_if_unused(pooled, outcome),
        }
    }

    /// Gives `pooled` back when `outcome` is a refusal that did not use it.
    fn keep_if_unused<T>(
        &self,
        pooled: Pooled,
        outcome: Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        if let Err(error) = &outcome
            && session_unused(error)
        {
            self.give_back(pooled);
        }
        outcome
    }
}
