//! The log's sequencer side: the task that takes this replica's queued appends,
//! commits them as one batch in one transaction, and answers each append once
//! the batch is committed and this replica's tree holds it (the parent module's
//! doc, "Appending").
//!
//! The transaction is one round trip: `BEGIN` with the lock, the insert and
//! `COMMIT` are sent together (tokio-postgres pipelines requests polled
//! together) and PostgreSQL runs them in order, so the sequencer's lock is held
//! for the statements' own time and the commit's flush, never across a round
//! trip. The insert is prepared once per connection.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::super::{DbError, OPERATION_TIMEOUT};
use super::{CHANNEL, Inner, LOG_LOCK, LogError, MAX_BATCH, Pending, encode};
use crate::audit::AuditError;

/// The batch's rows at the head, the head moved and the new size notified, in
/// one statement after the lock (its own snapshot, taken once the lock is held,
/// sees every earlier sequencer's commit); returns the head before.
const APPEND: &str = "WITH head AS (SELECT size FROM log_head), \
     inserted AS ( \
        INSERT INTO log_leaves (idx, execution_id, record) \
        SELECT head.size + batch.ord - 1, batch.id, batch.record \
        FROM head, unnest($1::uuid[], $2::bytea[]) \
             WITH ORDINALITY AS batch(id, record, ord)), \
     moved AS ( \
        UPDATE log_head SET size = size + $3::bigint RETURNING size) \
     SELECT (SELECT size FROM head), \
            pg_notify($4, (SELECT size FROM moved)::text)";

/// Takes what is queued, at most [`MAX_BATCH`] at a time, and commits it; ends
/// when the log is dropped.
pub(super) async fn sequencer(log: Weak<Inner>, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(inner) = log.upgrade() else {
            return;
        };
        inner.commit(&mut batch).await;
    }
}

impl Inner {
    /// Commits one batch and answers each of its appends.
    async fn commit(&self, batch: &mut Vec<Pending>) {
        let _committing = self.committing.lock().await;
        let start = match self.insert(batch).await {
            Ok(start) => start,
            Err(error) => {
                self.writable.store(false, Ordering::Release);
                tracing::error!(%error, records = batch.len(), "cluster audit log append failed; the batch was not acknowledged");
                answer_failed(batch, &error.to_string());
                return;
            }
        };
        self.writable.store(true, Ordering::Release);
        match self.hold(start, batch).await {
            Ok(()) => {
                for (offset, (_, done)) in batch.drain(..).enumerate() {
                    let _ = done.send(Ok(start + offset as u64));
                }
            }
            Err(error) => {
                tracing::error!(%error, "committed a batch but cannot read the log back up to it; its appends are answered as failed");
                answer_failed(batch, &error.to_string());
            }
        }
    }

    /// The batch's transaction, in one round trip (module doc); returns the
    /// index of its first leaf.
    async fn insert(&self, batch: &[Pending]) -> Result<u64, DbError> {
        let count = batch.len() as i64;
        let ids: Vec<Uuid> = batch
            .iter()
            .map(|(record, _)| record.leaf.execution_id)
            .collect();
        let bytes: Vec<Vec<u8>> = batch.iter().map(|(record, _)| encode(record)).collect();
        let begin = format!(
            "BEGIN; SET LOCAL lock_timeout = {}; SELECT pg_advisory_xact_lock({LOG_LOCK})",
            (OPERATION_TIMEOUT - Duration::from_millis(500)).as_millis()
        );
        self.cluster
            .run(|client| async move {
                let append = client.prepare_cached(APPEND).await?;
                // Polled together, so sent together; each answer is awaited,
                // so that the connection goes back to the pool idle. A failed
                // lock or insert aborts the transaction and its `COMMIT` rolls
                // back: the first error is the answer.
                let parameters: [&(dyn ToSql + Sync); 4] = [&ids, &bytes, &count, &CHANNEL];
                let (begun, inserted, committed) = tokio::join!(
                    client.batch_execute(&begin),
                    client.query_one(&append, &parameters),
                    client.batch_execute("COMMIT"),
                );
                begun?;
                let start: i64 = inserted?.get(0);
                committed?;
                Ok(start as u64)
            })
            .await
    }

    /// Makes this replica's tree hold the committed batch at `start` before
    /// anyone is answered: pushes its leaves without a read when the tree is
    /// exactly at `start`, else reads the log up to the batch's end.
    async fn hold(&self, start: u64, batch: &[Pending]) -> Result<(), LogError> {
        let end = start + batch.len() as u64;
        let _tail = self.tail.lock().await;
        let size = self.size();
        if size == start {
            let mut index = self.lock();
            for (record, _) in batch {
                index.push(&record.leaf);
            }
            Ok(())
        } else if size < end {
            self.catch_up_until(end).await
        } else {
            Ok(())
        }
    }

    /// For a holder of `tail`: catches up until the tree holds `end` leaves,
    /// trying again for at most [`OPERATION_TIMEOUT`].
    async fn catch_up_until(&self, end: u64) -> Result<(), LogError> {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        loop {
            let result = self.catch_up_locked(false).await;
            if self.size() >= end {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return result.and(Err(LogError::Database(DbError::Timeout)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Answers every append of `batch` with [`AuditError::Unavailable`].
fn answer_failed(batch: &mut Vec<Pending>, error: &str) {
    for (_, done) in batch.drain(..) {
        let _ = done.send(Err(AuditError::Unavailable(error.to_owned())));
    }
}
