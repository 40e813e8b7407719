//! Long jobs' answers shared through PostgreSQL: an execution accepted on one
//! replica can be fetched from any.
//!
//! [`PgAsyncResults`] keeps embedded mode's in-memory store for the executions
//! of its own process (the bounds of `execution.max_async_pending`,
//! `execution.async_results_bytes` and its per-client share are therefore per
//! replica, and its own executions are answered without the database), and
//! mirrors every change to the `async_results` table in order, through one
//! writer task: registration (queued), running, each change of phase (the
//! `phase` column, NULL in rows older replicas wrote: read as the state's own
//! phase), finished (the sealed receipt's fields, or why it is withheld). Only what the in-memory store keeps is written: the receipt is
//! sealed to its client; no plaintext reaches the database. `get` for an id this
//! process does not hold reads the row's fixed fields, with the same scope check
//! and retention, and the sealed result is then read in pieces of
//! [`PIECE_BYTES`] as its body is sent (`substring` per piece), so that a reader
//! on a replica holds one piece, not the answer, and the database reads no
//! more than that per query. A sealed result is incompressible, so PostgreSQL
//! keeps it uncompressed out of line, where `substring` fetches only the
//! chunks it needs.
//!
//! A `202` is sent only once the registration row is committed
//! (`AsyncResultStore::published`), so the client may ask any replica at once.
//! A write that fails (the database is down) is retried every
//! [`RETRY_INTERVAL`] until the entry's retention has passed; meanwhile the other
//! replicas see the entry as it was last written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Cluster, DbError, unix_millis};
use crate::access::{ClientKey, Scope};
use crate::answer::ExecutionReceipt;
use crate::async_results::{
    Answer, AnswerPieces, AsyncCounts, AsyncFull, AsyncResultStore, MemoryStore, Phase,
    SharedAnswer, Unavailable, View, Withheld,
};
use wasm_hypervisor_protocol::payload::Status;

/// The bytes of a sealed result one query reads for a reader on another
/// replica: 192 KiB, a multiple of 3 (see [`AnswerPieces::piece_bytes`]), so
/// that a 64 MiB answer is some 350 queries and a reader holds no more.
pub(crate) const PIECE_BYTES: usize = 192 << 10;

/// How often a failed write is tried again, and expired rows deleted.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How long a registered, unfinished entry is kept (its replica may have died
/// without finishing it).
const UNFINISHED_KEEP: Duration = Duration::from_secs(24 * 3600);

/// How long a `202` waits for its registration to be committed before it is
/// sent anyway (the accepting replica answers its own executions regardless).
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

// The `state` column.
const QUEUED: i16 = 0;
const RUNNING: i16 = 1;
const DONE: i16 = 2;
const WITHHELD_LOG: i16 = 3;
const WITHHELD_INTERNAL: i16 = 4;

// The `phase` column (migration 0003_async_phase).
const PHASE_QUEUED: i16 = 0;
const PHASE_COMPILING: i16 = 1;
const PHASE_RUNNING: i16 = 2;

fn phase_column(phase: Phase) -> i16 {
    match phase {
        Phase::Queued => PHASE_QUEUED,
        Phase::Compiling => PHASE_COMPILING,
        Phase::Running => PHASE_RUNNING,
    }
}

/// A running row's phase; NULL (written by a replica that knows no phases)
/// or a value this version does not know reads as running, the state's own.
fn phase_of_row(column: Option<i16>) -> Phase {
    match column {
        Some(PHASE_QUEUED) => Phase::Queued,
        Some(PHASE_COMPILING) => Phase::Compiling,
        _ => Phase::Running,
    }
}

/// One change to mirror, in the order it happened.
enum Write {
    Register {
        id: Uuid,
        scope: Scope,
        committed: oneshot::Sender<()>,
    },
    Running {
        id: Uuid,
    },
    Phase {
        id: Uuid,
        phase: Phase,
    },
    Finish {
        id: Uuid,
        scope: Scope,
        outcome: Result<ExecutionReceipt, Withheld>,
    },
}

/// The async answers of a cluster, seen from one replica.
pub struct PgAsyncResults {
    local: MemoryStore,
    cluster: Cluster,
    retention: Duration,
    writes: mpsc::UnboundedSender<Write>,
    /// Each registered, unfinished execution's scope (the finish row repeats it,
    /// in case the registration never reached the database).
    scopes: Mutex<HashMap<Uuid, Scope>>,
    /// Registrations whose `202` has not yet waited for them.
    commits: Mutex<HashMap<Uuid, oneshot::Receiver<()>>>,
}

impl PgAsyncResults {
    /// Over `local` (this process's entries), with the writer and the expired
    /// rows' sweeper running until the returned tasks are aborted.
    pub fn start(
        cluster: Cluster,
        local: MemoryStore,
    ) -> (PgAsyncResults, Vec<tokio::task::JoinHandle<()>>) {
        let (writes, queue) = mpsc::unbounded_channel();
        let retention = local.retention();
        let writer = tokio::spawn(write_in_order(cluster.clone(), queue, retention));
        let sweeping = cluster.clone();
        let sweeper = tokio::spawn(async move {
            loop {
                let now_ms = unix_millis(SystemTime::now());
                let swept = sweeping
                    .run(|client| async move {
                        client
                            .execute(
                                "DELETE FROM async_results WHERE expires_ms < $1",
                                &[&now_ms],
                            )
                            .await
                    })
                    .await;
                if let Err(error) = swept {
                    tracing::debug!(%error, "sweeping async answers failed; retrying");
                }
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
        });
        let store = PgAsyncResults {
            local,
            cluster,
            retention,
            writes,
            scopes: Mutex::new(HashMap::new()),
            commits: Mutex::new(HashMap::new()),
        };
        (store, vec![writer, sweeper])
    }

    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        // One map operation per hold: a poisoned map is whole.
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn send(&self, write: Write) {
        if self.writes.send(write).is_err() {
            tracing::error!(
                "the async answers' writer has stopped; other replicas will not see this"
            );
        }
    }
}

#[async_trait::async_trait]
impl AsyncResultStore for PgAsyncResults {
    fn try_reserve(&self, client: ClientKey) -> Result<(), AsyncFull> {
        self.local.try_reserve(client)
    }

    fn release(&self, client: ClientKey) {
        self.local.release(client)
    }

    fn register(&self, id: Uuid, client: ClientKey, answer_bound: u64) -> Result<(), AsyncFull> {
        self.local.register(id, client, answer_bound)?;
        let scope = Scope::of(client);
        let (committed, commit) = oneshot::channel();
        PgAsyncResults::lock(&self.scopes).insert(id, scope);
        PgAsyncResults::lock(&self.commits).insert(id, commit);
        self.send(Write::Register {
            id,
            scope,
            committed,
        });
        Ok(())
    }

    fn mark_running(&self, id: Uuid) {
        self.local.mark_running(id);
        self.send(Write::Running { id });
    }

    fn set_phase(&self, id: Uuid, phase: Phase) -> bool {
        let changed = self.local.set_phase(id, phase);
        if changed {
            self.send(Write::Phase { id, phase });
        }
        changed
    }

    fn finish(&self, id: Uuid, outcome: Result<ExecutionReceipt, Withheld>) {
        let scope = PgAsyncResults::lock(&self.scopes).remove(&id);
        PgAsyncResults::lock(&self.commits).remove(&id);
        if let Some(scope) = scope {
            self.send(Write::Finish {
                id,
                scope,
                outcome: outcome.clone(),
            });
        }
        self.local.finish(id, outcome);
    }

    fn get(&self, id: &Uuid, scope: Scope) -> Option<View> {
        self.local.get(id, scope)
    }

    fn sweep(&self, now: Instant) -> Option<Instant> {
        self.local.sweep(now)
    }

    fn counts(&self) -> AsyncCounts {
        self.local.counts()
    }

    fn retention(&self) -> Duration {
        self.retention
    }

    fn enabled(&self) -> bool {
        self.local.enabled()
    }

    async fn get_shared(&self, id: &Uuid, scope: Scope) -> Result<Option<View>, Unavailable> {
        let id = *id;
        let now_ms = unix_millis(SystemTime::now());
        let row = self
            .cluster
            .run(|client| async move {
                client
                    .query_opt(
                        "SELECT scope, state, log_index, commitment, leaf_signature, \
                                octet_length(ciphertext), status, phase \
                         FROM async_results WHERE id = $1 AND expires_ms > $2",
                        &[&id, &now_ms],
                    )
                    .await
            })
            .await
            .map_err(|error| {
                tracing::warn!(%error, "looking up an async answer failed");
                Unavailable
            })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let owner: Vec<u8> = row.get(0);
        if owner != scope_bytes(scope) {
            return Ok(None);
        }
        let view = match row.get::<_, i16>(1) {
            QUEUED => View::Queued,
            RUNNING => View::Running(phase_of_row(row.get(7))),
            WITHHELD_LOG => View::Withheld(Withheld::LogUnavailable),
            DONE => match answer_from_row(id, &row, &self.cluster) {
                Some(answer) => View::Done(Answer::Shared(answer)),
                None => {
                    tracing::error!(execution_id = %id, "a stored async answer is malformed");
                    View::Withheld(Withheld::Internal)
                }
            },
            _ => View::Withheld(Withheld::Internal),
        };
        Ok(Some(view))
    }

    async fn published(&self, id: Uuid) {
        let commit = PgAsyncResults::lock(&self.commits).remove(&id);
        if let Some(commit) = commit
            && tokio::time::timeout(PUBLISH_WAIT, commit).await.is_err()
        {
            tracing::warn!(execution_id = %id, "an async execution was accepted before other replicas could see it");
        }
    }
}

/// The writer task: each change in order, each retried until it is written or
/// its entry's time is over.
async fn write_in_order(
    cluster: Cluster,
    mut queue: mpsc::UnboundedReceiver<Write>,
    retention: Duration,
) {
    while let Some(write) = queue.recv().await {
        let give_up = Instant::now()
            + match &write {
                Write::Finish { .. } => retention,
                _ => UNFINISHED_KEEP.min(retention),
            };
        loop {
            match apply(&cluster, &write, retention).await {
                Ok(()) => break,
                Err(error) if Instant::now() < give_up => {
                    tracing::debug!(%error, "mirroring an async answer failed; retrying");
                    tokio::time::sleep(RETRY_INTERVAL).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "gave up mirroring an async answer");
                    break;
                }
            }
        }
        if let Write::Register { committed, .. } = write {
            let _ = committed.send(());
        }
    }
}

/// Writes one change.
async fn apply(cluster: &Cluster, write: &Write, retention: Duration) -> Result<(), DbError> {
    let now = SystemTime::now();
    match write {
        Write::Register { id, scope, .. } => {
            let (id, scope) = (*id, scope_bytes(*scope));
            let expires_ms = unix_millis(now + UNFINISHED_KEEP);
            cluster
                .run(|client| async move {
                    client
                        .execute(
                            "INSERT INTO async_results (id, scope, state, expires_ms) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                            &[&id, &scope, &QUEUED, &expires_ms],
                        )
                        .await
                })
                .await?;
        }
        Write::Running { id } => {
            let id = *id;
            cluster
                .run(|client| async move {
                    client
                        .execute(
                            "UPDATE async_results SET state = $2, phase = $4 \
                             WHERE id = $1 AND state = $3",
                            &[&id, &RUNNING, &QUEUED, &PHASE_RUNNING],
                        )
                        .await
                })
                .await?;
        }
        Write::Phase { id, phase } => {
            let (id, phase) = (*id, phase_column(*phase));
            cluster
                .run(|client| async move {
                    client
                        .execute(
                            "UPDATE async_results SET phase = $2 WHERE id = $1 AND state = $3",
                            &[&id, &phase, &RUNNING],
                        )
                        .await
                })
                .await?;
        }
        Write::Finish { id, scope, outcome } => {
            write_finish(cluster, *id, *scope, outcome, retention).await?;
        }
    }
    Ok(())
}

/// Writes a finished job's row: its receipt and sealed result, or why it was
/// withheld, kept for `retention`.
async fn write_finish(
    cluster: &Cluster,
    id: Uuid,
    scope: Scope,
    outcome: &Result<ExecutionReceipt, Withheld>,
    retention: Duration,
) -> Result<(), DbError> {
    let scope = scope_bytes(scope);
    let expires_ms = unix_millis(SystemTime::now() + retention);
    let (state, log_index, commitment, signature, ciphertext, status) = match outcome {
        Ok(receipt) => (
            DONE,
            i64::try_from(receipt.log_index).ok(),
            Some(receipt.commitment.to_vec()),
            Some(receipt.leaf_signature.clone()),
            Some(receipt.ciphertext.as_ref()),
            Some(receipt.status.as_str().to_owned()),
        ),
        Err(Withheld::LogUnavailable) => (WITHHELD_LOG, None, None, None, None, None),
        Err(Withheld::Internal) => (WITHHELD_INTERNAL, None, None, None, None, None),
    };
    cluster
        .run(|client| async move {
            client
                .execute(
                    "INSERT INTO async_results (id, scope, state, log_index, commitment, \
                         leaf_signature, ciphertext, status, expires_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (id) DO UPDATE SET state = $3, log_index = $4, \
                         commitment = $5, leaf_signature = $6, ciphertext = $7, \
                         status = $8, expires_ms = $9",
                    &[
                        &id,
                        &scope,
                        &state,
                        &log_index,
                        &commitment,
                        &signature,
                        &ciphertext,
                        &status,
                        &expires_ms,
                    ],
                )
                .await
        })
        .await?;
    Ok(())
}

/// A scope as the `scope` column holds it: empty for the open scope, else the
/// token's digest.
fn scope_bytes(scope: Scope) -> Vec<u8> {
    match scope {
        Scope::Open => Vec::new(),
        Scope::Token(digest) => digest.to_vec(),
    }
}

/// A finished row's answer, its sealed result left in the database; `None` for
/// a row that lacks a field or holds one out of range.
fn answer_from_row(id: Uuid, row: &tokio_postgres::Row, cluster: &Cluster) -> Option<SharedAnswer> {
    let log_index: Option<i64> = row.get(2);
    let commitment: Option<Vec<u8>> = row.get(3);
    let leaf_signature: Option<Vec<u8>> = row.get(4);
    let ciphertext_bytes: Option<i32> = row.get(5);
    let status: Option<String> = row.get(6);
    // Written with the answer; checked so that a row another version wrote
    // wrongly is refused here rather than sent.
    let status = status?;
    Status::ALL
        .iter()
        .find(|candidate| candidate.as_str() == status)?;
    Some(SharedAnswer {
        execution_id: id,
        commitment: commitment?.try_into().ok()?,
        log_index: u64::try_from(log_index?).ok()?,
        leaf_signature: leaf_signature?,
        ciphertext_bytes: u64::try_from(ciphertext_bytes?).ok()?,
        pieces: Arc::new(PgPieces {
            cluster: cluster.clone(),
            id,
        }),
    })
}

/// The sealed result of the finished row `id`, read piece by piece.
struct PgPieces {
    cluster: Cluster,
    id: Uuid,
}

#[async_trait::async_trait]
impl AnswerPieces for PgPieces {
    async fn read(&self, offset: u64, len: usize) -> Result<bytes::Bytes, Unavailable> {
        let id = self.id;
        // `substring` counts from 1; a bytea is at most 1 GB, so both fit.
        let (Ok(from), Ok(count)) = (i32::try_from(offset + 1), i32::try_from(len)) else {
            return Err(Unavailable);
        };
        let row = self
            .cluster
            .run(|client| async move {
                client
                    .query_opt(
                        "SELECT substring(ciphertext FROM $2 FOR $3) \
                         FROM async_results WHERE id = $1 AND state = $4",
                        &[&id, &from, &count, &DONE],
                    )
                    .await
            })
            .await
            .map_err(|error| {
                tracing::warn!(%error, "reading an async answer failed");
                Unavailable
            })?;
        let piece: Option<Vec<u8>> = row.and_then(|row| row.get(0));
        match piece {
            Some(piece) if piece.len() == len => Ok(piece.into()),
            // Swept (or rewritten) while it was being sent.
            _ => {
                tracing::warn!(execution_id = %id, "an async answer went away while it was sent");
                Err(Unavailable)
            }
        }
    }

    fn piece_bytes(&self) -> usize {
        PIECE_BYTES
    }
}
