//! Cluster mode's witness state (protocol v1.2 §T5, `crate::witness`): one row,
//! `witness_state` (`migrations/0005_witness.sql`), holding the published
//! checkpoint note with its cosignatures and what is known of each witness, so
//! that every replica serves the same published checkpoint.
//!
//! One replica at a time submits to the witnesses: the one holding
//! [`WITNESS_LOCK`], a *session* advisory lock taken on a connection of its own
//! (outside the pool, so that nothing else runs on it). The lock lives as long
//! as that connection: a replica that dies or loses the database loses it, and
//! the next replica to ask (every tick of `witness::run`) takes over. The row is
//! written only through the lease connection, so a replica that lost the lease
//! cannot overwrite its successor's state.
//!
//! Each write notifies [`CHANNEL`] in its own transaction (so the notification
//! is delivered only if the row committed). Every replica `LISTEN`s on a
//! connection of its own and reads the row on a pooled connection when
//! notified, and at least every `witnesses.follow_poll_ms` regardless, when it
//! also reconnects a lost listener: a missed notification only delays.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_postgres::NoTls;

use super::{Cluster, OPERATION_TIMEOUT, unix_millis};
use crate::witness::state::{Lead, Shared, SharedStore};

/// The channel each write of `witness_state` notifies, with the published size
/// (empty when nothing is published).
pub(crate) const CHANNEL: &str = "wasm_hypervisor_witness";

/// The advisory lock key of the witness submitters' lease: "wasmhwit" as a
/// big-endian integer.
pub(crate) const WITNESS_LOCK: i64 = 0x7761_736d_6877_6974;

/// The lease connection and whether it holds [`WITNESS_LOCK`].
#[derive(Default)]
struct Lease {
    client: Option<tokio_postgres::Client>,
    held: bool,
}

/// The witnesses' shared state in the cluster's database.
pub(crate) struct PgWitnessState {
    cluster: Cluster,
    lease: tokio::sync::Mutex<Lease>,
    /// The `LISTEN` connection, while it lives.
    listener: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl PgWitnessState {
    pub(crate) fn new(cluster: Cluster) -> Arc<PgWitnessState> {
        Arc::new(PgWitnessState {
            cluster,
            lease: tokio::sync::Mutex::new(Lease::default()),
            listener: tokio::sync::Mutex::new(None),
        })
    }
}

/// A connection of its own, driven by a task that ends when it closes.
async fn connect(cluster: &Cluster) -> Option<tokio_postgres::Client> {
    let attempt = async {
        let (client, connection) = cluster.config().connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok::<_, tokio_postgres::Error>(client)
    };
    match tokio::time::timeout(OPERATION_TIMEOUT, attempt).await {
        Ok(Ok(client)) => Some(client),
        _ => None,
    }
}

#[async_trait::async_trait]
impl SharedStore for PgWitnessState {
    async fn lead(&self) -> Lead {
        let mut lease = self.lease.lock().await;
        if lease
            .client
            .as_ref()
            .is_none_or(|client| client.is_closed())
        {
            // A closed connection released the lock with it.
            lease.held = false;
            lease.client = connect(&self.cluster).await;
        }
        if lease.held {
            return Lead::Held;
        }
        let Some(client) = &lease.client else {
            return Lead::Follower;
        };
        let attempt = client.query_one("SELECT pg_try_advisory_lock($1)", &[&WITNESS_LOCK]);
        match tokio::time::timeout(OPERATION_TIMEOUT, attempt).await {
            Ok(Ok(row)) if row.get::<_, bool>(0) => {
                lease.held = true;
                Lead::Acquired
            }
            Ok(Ok(_)) => Lead::Follower,
            _ => {
                // Unknown whether the lock was taken: a new connection decides.
                lease.client = None;
                Lead::Follower
            }
        }
    }

    async fn load(&self) -> Result<Shared, String> {
        let row = self
            .cluster
            .run(|client| async move {
                client
                    .query_opt(
                        "SELECT published_note, problem, witnesses FROM witness_state",
                        &[],
                    )
                    .await
            })
            .await
            .map_err(|error| error.to_string())?;
        let Some(row) = row else {
            return Ok(Shared::default());
        };
        let witnesses: String = row.get(2);
        Ok(Shared {
            published: row.get(0),
            problem: row.get(1),
            witnesses: serde_json::from_str(&witnesses)
                .map_err(|error| format!("witness_state.witnesses: {error}"))?,
        })
    }

    async fn store(&self, shared: &Shared) -> Result<(), String> {
        let published_size = shared
            .published
            .as_deref()
            .and_then(published_size)
            .map(|size| i64::try_from(size).unwrap_or(i64::MAX));
        let note = published_size.and(shared.published.clone());
        let witnesses = serde_json::to_string(&shared.witnesses).map_err(|e| e.to_string())?;
        let now = unix_millis(std::time::SystemTime::now());
        let mut lease = self.lease.lock().await;
        let Some(client) = lease.client.as_ref().filter(|_| lease.held) else {
            return Err("this replica no longer holds the witness submitters' lease".to_owned());
        };
        let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &published_size,
            &note,
            &shared.problem,
            &witnesses,
            &now,
            &CHANNEL,
        ];
        // One statement, so one transaction: the notification goes out with
        // the commit of the row, never without it.
        let statement = client.execute(
            "WITH written AS (\
             INSERT INTO witness_state (singleton, published_size, published_note, problem, witnesses, updated_ms) \
             VALUES (true, $1, $2, $3, $4, $5) \
             ON CONFLICT (singleton) DO UPDATE SET published_size = $1, published_note = $2, \
             problem = $3, witnesses = $4, updated_ms = $5 RETURNING published_size) \
             SELECT pg_notify($6, coalesce((SELECT published_size FROM written)::text, ''))",
            &parameters,
        );
        match tokio::time::timeout(OPERATION_TIMEOUT, statement).await {
            Ok(Ok(_)) => Ok(()),
            outcome => {
                // The lease is in doubt: give it up with the connection.
                lease.client = None;
                lease.held = false;
                Err(match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {OPERATION_TIMEOUT:?}"),
                })
            }
        }
    }

    async fn listen(&self, changed: Arc<Notify>) -> bool {
        let mut listener = self.listener.lock().await;
        if listener.as_ref().is_none_or(|client| client.is_closed()) {
            *listener = self
                .cluster
                .listen(CHANNEL, move |_| changed.notify_one())
                .await;
            if listener.is_none() {
                tracing::warn!(
                    "cannot listen for the witnesses' shared state; reading it at each poll"
                );
            }
        }
        listener.is_some()
    }
}

/// The size of the checkpoint a published note names.
fn published_size(text: &str) -> Option<u64> {
    let note = wasm_hypervisor_protocol::note::Note::parse(text.as_bytes()).ok()?;
    wasm_hypervisor_protocol::checkpoint::Checkpoint::parse(note.text())
        .ok()
        .map(|checkpoint| checkpoint.tree_size)
}
