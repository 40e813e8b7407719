//! Cluster mode: replicas of one service sharing one PostgreSQL
//! (`cluster.database_url`). This module tree is the only place that knows SQL,
//! `tokio_postgres` or `deadpool_postgres` (tests/architecture.rs checks it).
//!
//! What it owns:
//! - [`Cluster::connect`]: the pool, the migrations (`migrations`), and the
//!   service's identity (`cluster_meta`: the origin and signing key the database
//!   was set up under; a replica with another refuses to start);
//! - the database's reachability for `/health` (a probe every
//!   [`PROBE_INTERVAL`]);
//! - `sessions`: the pending sessions any replica can use, exactly once;
//! - `wrap`: the epoch keys that wrap session seeds;
//! - `async_results`: long jobs' answers, fetchable from any replica;
//! - `log`: the audit log, one for every replica (`PgLog`), and `log import`;
//! - `usage`: each client's usage counts, shared by the replicas;
//! - `witness`: the witnesses' state (what is published), shared by the
//!   replicas, and the lease of the one replica that submits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::keys::ServerKey;

pub(crate) mod async_results;
pub(crate) mod log;
mod migrations;
pub(crate) mod sessions;
pub(crate) mod usage;
pub(crate) mod witness;
mod wrap;

pub use async_results::PgAsyncResults;
pub use log::{LogError, PgLog};
pub use sessions::PgSessionStore;

/// How often each replica checks that the database answers (`/health`).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The longest one database operation may take before it counts as the
/// database being unavailable: a connection from the pool, then the query.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting may take (the pool's connect and wait timeouts).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `cluster.database_url` is not a PostgreSQL URL tokio-postgres reads.
    #[error("cluster.database_url is not a valid PostgreSQL URL: {0}")]
    Url(tokio_postgres::Error),
    /// The pool could not be built.
    #[error("cannot build the database pool: {0}")]
    Pool(String),
    /// The database could not be reached, or a statement failed.
    #[error("database: {0}")]
    Database(#[from] DbError),
    /// The database was set up under another signing key.
    #[error(
        "the database was set up under signing key {database}, and this replica's key \
         (signing_key_file) is {ours}: every replica of a cluster must use the same key file"
    )]
    KeyMismatch { database: String, ours: String },
    /// The audit log in the database, or what the data directory holds of it.
    #[error("audit log: {0}")]
    Log(#[from] LogError),
    /// The database was set up under another origin.
    #[error(
        "the database was set up for origin `{database}`, and this replica's origin is \
         `{ours}`: every replica of a cluster must have the same origin"
    )]
    OriginMismatch { database: String, ours: String },
}

/// A failed database operation: no connection, a statement error, or no answer
/// within [`OPERATION_TIMEOUT`].
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no connection: {0}")]
    Pool(String),
    #[error("{0}")]
    Statement(#[from] tokio_postgres::Error),
    #[error("no answer within {OPERATION_TIMEOUT:?}")]
    Timeout,
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(error: deadpool_postgres::PoolError) -> DbError {
        DbError::Pool(error.to_string())
    }
}

/// The database this replica shares with the others; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pool: Pool,
    /// The connection settings, for the log's dedicated `LISTEN` connection.
    config: Arc<tokio_postgres::Config>,
    reachable: Arc<AtomicBool>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("Cluster")
            .field("reachable", &self.is_reachable())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to `url` with a pool of `pool_size`, applies the migrations and
    /// checks (or, on a fresh database, records) the service's origin and key.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        key: &ServerKey,
        origin: &str,
    ) -> Result<Cluster, ClusterError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(ClusterError::Url)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        // Names this replica in `pg_stat_activity` (who holds the log's lock).
        config.application_name(application_name());
        let cluster = Cluster {
            pool: pool(&config, pool_size)?,
            config: Arc::new(config),
            reachable: Arc::new(AtomicBool::new(true)),
        };
        let mut client = cluster.pool.get().await.map_err(DbError::from)?;
        let transaction = client.transaction().await.map_err(DbError::from)?;
        migrations::apply(&transaction).await?;
        let ours_key = key.public().key_id_hex();
        transaction
            .execute(
                "INSERT INTO cluster_meta (singleton, origin, key_id, created_ms) \
                 VALUES (true, $1, $2, $3) ON CONFLICT (singleton) DO NOTHING",
                &[&origin, &ours_key, &unix_millis(SystemTime::now())],
            )
            .await
            .map_err(DbError::from)?;
        let row = transaction
            .query_one("SELECT origin, key_id FROM cluster_meta", &[])
            .await
            .map_err(DbError::from)?;
        transaction.commit().await.map_err(DbError::from)?;
        let (database_origin, database_key): (String, String) = (row.get(0), row.get(1));
        if database_key != ours_key {
            return Err(ClusterError::KeyMismatch {
                database: database_key,
                ours: ours_key,
            });
        }
        if database_origin != origin {
            return Err(ClusterError::OriginMismatch {
                database: database_origin,
                ours: origin.to_owned(),
            });
        }
        Ok(cluster)
    }

    /// A cluster whose pool has never connected, for unit tests of what needs
    /// one only to exist (building a pool connects nothing).
    #[cfg(test)]
    pub(crate) fn unconnected() -> Cluster {
        let config: tokio_postgres::Config = "postgresql://nobody@/none?host=/nonexistent"
            .parse()
            .expect("a valid URL");
        let manager = Manager::from_config(config.clone(), NoTls, ManagerConfig::default());
        Cluster {
            config: Arc::new(config),
            pool: Pool::builder(manager)
                .build()
                .expect("a pool without a runtime"),
            reachable: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the last probe reached the database.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// The flag `/health` reads.
    pub fn reachability(&self) -> Arc<AtomicBool> {
        self.reachable.clone()
    }

    /// Probes the database every [`PROBE_INTERVAL`] until the task is aborted,
    /// logging when it goes away and when it comes back.
    pub fn spawn_probe(&self) -> tokio::task::JoinHandle<()> {
        let cluster = self.clone();
        tokio::spawn(async move {
            loop {
                let result = cluster
                    .run(|client| async move { client.simple_query("SELECT 1").await })
                    .await;
                let was = cluster.reachable.swap(result.is_ok(), Ordering::AcqRel);
                match (&result, was) {
                    (Err(error), true) => {
                        tracing::error!(%error, "the cluster's database is unreachable")
                    }
                    (Ok(_), false) => tracing::info!("the cluster's database is reachable again"),
                    _ => {}
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        })
    }

    /// The connection settings (for a connection outside the pool).
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A pooled connection, unbounded in time once taken (for `log import`).
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// Runs `operation` on a pooled connection within [`OPERATION_TIMEOUT`].
    pub(crate) async fn run<T, F, Fut>(&self, operation: F) -> Result<T, DbError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let attempt = async {
            let client = self.pool.get().await?;
            Ok::<T, DbError>(operation(client).await?)
        };
        tokio::time::timeout(OPERATION_TIMEOUT, attempt)
            .await
            .map_err(|_| DbError::Timeout)?
    }

    /// A connection of its own that `LISTEN`s on `channel`, calling
    /// `on_notification` with each notification's payload until the connection
    /// closes (`Client::is_closed` then tells the caller to listen again);
    /// `None` if the database cannot be reached within [`OPERATION_TIMEOUT`].
    pub(crate) async fn listen(
        &self,
        channel: &str,
        mut on_notification: impl FnMut(&str) + Send + 'static,
    ) -> Option<tokio_postgres::Client> {
        use futures_util::StreamExt as _;
        let attempt = async {
            let (client, mut connection) = self.config().connect(NoTls).await?;
            tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |context| connection.poll_message(context));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(notification)) => {
                            on_notification(notification.payload());
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
            client.batch_execute(&format!("LISTEN {channel}")).await?;
            Ok::<_, tokio_postgres::Error>(client)
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, attempt).await {
            Ok(Ok(client)) => Some(client),
            _ => None,
        }
    }
}

/// The pool of `size` connections to `config` (none made yet).
fn pool(config: &tokio_postgres::Config, size: usize) -> Result<Pool, ClusterError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            // A connection broken by a database restart is found closed and
            // replaced; a live one is reused without a round trip.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(OPERATION_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|error| ClusterError::Pool(error.to_string()))
}

/// `wasm-hypervisor <host>/<pid>`: each replica's connections are told apart in
/// `pg_stat_activity.application_name`.
fn application_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("wasm-hypervisor {}/{}", host.trim(), std::process::id())
}

/// `time` in Unix milliseconds, as the tables keep times.
pub(crate) fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}
