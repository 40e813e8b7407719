//! A pool of pre-opened sessions, so that an execution costs one round trip.
//!
//! With protocol v1.1 the pool opens sessions in batches (`POST /sessions
//! {"count": N}`, §A, default [`SessionPool::DEFAULT_BATCH`]) and checks each
//! batch's one signature under the server's pinned key before it keeps any of
//! them; with v1 it opens them one at a time, exactly as v1. A session that
//! expires within [`SessionPool::DEFAULT_MARGIN`] is dropped rather than used.
//! An `/execute` answered `session_not_found` (or `session_expired`), which
//! guarantees that nothing ran, is sent once more on a freshly opened session
//! without the caller noticing: a server that restarted or evicted sessions costs
//! one extra round trip, not an error.
//!
//! With v1.1, tasks that find the pool empty at once open **one** batch between
//! them: the first opens it, the others wait for it and take its sessions. A batch
//! the server refuses for the client's share of pending sessions
//! (`too_many_client_sessions`) or for the pool's (`too_many_sessions`) is asked
//! again at half the size, down to one session; the size the server granted is
//! kept for later batches ([`SessionPool::batch`]), so several processes behind one
//! client identity share `sessions.max_pending_per_client` instead of locking each
//! other out. A refusal of a single session is the caller's error, with its
//! `Retry-After`.
//!
//! An `/execute` refused before its session was used (`rate_limited`,
//! `too_many_executions`, `overloaded`, `database_unavailable`: PROTOCOL.md says
//! none of them uses the session) gives the session back to the pool and returns
//! the error: a client held back by the server's limits does not leak a pending
//! session per refusal until its share is full.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use wasm_hypervisor_protocol::signing::PublicKey;

use crate::{Client, ClientError, Execution, PendingExecution, Session, Violation, Wire};

/// A session in the pool, with when it expires (the server's `expires_at`).
struct Pooled {
    session: Session,
    expires_at: SystemTime,
}

/// Sessions opened ahead of use, shared by every task that executes through it
/// (a `std::sync::Mutex`, held only to push or pop, never across an `.await`).
pub struct SessionPool {
    client: Client,
    server_key: PublicKey,
    /// Sessions asked for per batch: the configured size, halved for each batch
    /// the server refused for its pending bounds.
    batch: AtomicUsize,
    margin: Duration,
    sessions: Mutex<VecDeque<Pooled>>,
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
fn over_pending_bound(error: &ClientError) -> bool {
    matches!(error, ClientError::Server { code, .. }
        if code == "too_many_client_sessions" || code == "too_many_sessions")
}

impl SessionPool {
    /// Sessions per `POST /sessions {"count": N}`.
    pub const DEFAULT_BATCH: usize = 32;
    /// A session expiring within this is not used: the request might arrive after
    /// it has gone.
    pub const DEFAULT_MARGIN: Duration = Duration::from_secs(5);

    /// A pool over `client` (its wire version decides batches or single
    /// sessions), trusting sessions signed by `server_key`.
    pub fn new(client: Client, server_key: PublicKey) -> SessionPool {
        SessionPool {
            client,
            server_key,
            batch: AtomicUsize::new(SessionPool::DEFAULT_BATCH),
            margin: SessionPool::DEFAULT_MARGIN,
            sessions: Mutex::new(VecDeque::new()),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// Opens `batch` sessions at a time (at least 1; v1.1 only).
    pub fn with_batch(self, batch: usize) -> SessionPool {
        SessionPool {
            batch: AtomicUsize::new(batch.max(1)),
            ..self
        }
    }

    /// Sessions the next batch asks for: the configured size, or less once the
    /// server refused a batch for its pending bounds.
    pub fn batch(&self) -> usize {
        self.batch.load(Ordering::Relaxed)
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
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pooled>> {
        // A panic while holding it leaves a queue of valid sessions.
        self.sessions
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
        self.fresh().await
    }

    /// The oldest pooled session not about to expire; those about to are dropped.
    fn pop_live(&self) -> Option<Pooled> {
        let now = SystemTime::now();
        let mut sessions = self.lock();
        while let Some(pooled) = sessions.pop_front() {
            if pooled.expires_at > now + self.margin {
                return Some(pooled);
            }
        }
        None
    }

    /// Puts back, first in line, a session a refused request did not use.
    fn give_back(&self, pooled: Pooled) {
        self.lock().push_front(pooled);
    }

    /// Opens sessions now (a batch with v1.1, one with v1), keeps all but the
    /// first and returns it. A server whose sessions live less than the margin
    /// still gets them used, fresh.
    async fn fresh(&self) -> Result<Pooled, ClientError> {
        let mut opened = self.open().await?.into_iter();
        let first = opened.next().ok_or(Violation::Batch(
            wasm_hypervisor_protocol::wire::BatchError::Empty,
        ))?;
        self.lock().extend(opened);
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
                    self.batch.store((count / 2).max(1), Ordering::Relaxed);
                }
                outcome => return outcome,
            }
        }
    }

    /// Forgets every pooled session: after a `session_not_found` the others may
    /// be gone too (a restarted server).
    fn clear(&self) {
        self.lock().clear();
    }

    /// [`Client::execute`] on a pooled session; a `session_not_found` is retried
    /// once on a fresh session, and a session a refusal did not use goes back.
    pub async fn execute(&self, request_plaintext: &[u8]) -> Result<Execution, ClientError> {
        let pooled = self.take_pooled().await?;
        match self
            .client
            .execute(&pooled.session, request_plaintext)
            .await
        {
            Err(error) if session_gone(&error) => {
                self.clear();
                let pooled = self.fresh().await?;
                let outcome = self
                    .client
                    .execute(&pooled.session, request_plaintext)
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
        let pooled = self.take_pooled().await?;
        match self
            .client
            .execute_async(&pooled.session, request_plaintext)
            .await
        {
            Err(error) if session_gone(&error) => {
                self.clear();
                let pooled = self.fresh().await?;
                let outcome = self
                    .client
                    .execute_async(&pooled.session, request_plaintext)
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
