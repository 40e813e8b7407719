//! Pending sessions in PostgreSQL: issued by any replica, used exactly once on
//! any replica.
//!
//! A session is a row `(id, epoch, wrapped_seed, expires_ms, client)`. Its key
//! pair is RFC 9180 `DeriveKeyPair(seed)` of a random 32-byte seed: the replica
//! that issues it makes the seed, derives the public key for the client, and
//! stores only the seed wrapped under the epoch key (`wrap`), with the session id
//! as associated data. A batch is one multi-row `INSERT` (from arrays). Using a
//! session is `DELETE ... RETURNING`: of two replicas taking one id, exactly one
//! gets the row; it unwraps the seed, derives the key pair, and the seed and key
//! are zeroized after the open attempt, as in embedded mode.
//!
//! # Bounds
//! `sessions.max_pending` and `sessions.max_pending_per_client` bound the live
//! rows of the whole cluster (one statement counts them and inserts only if the
//! batch fits; replicas issuing at the very same moment may overshoot by their
//! concurrent batches). A full pool refuses (503 `too_many_sessions`); unlike
//! embedded mode it evicts no one. Key pairs are generated before the count, so
//! a refusal costs them.
//!
//! # Expiry
//! A session past `expires_ms` is unknown (`take` and `is_live` check it); each
//! replica's sweeper deletes expired rows and epoch keys no session needs, every
//! [`SWEEP_INTERVAL`]; several replicas sweeping is harmless.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;
use zeroize::Zeroizing;

use super::wrap::{CLOCK_MARGIN, WrapKeys};
use super::{Cluster, DbError, unix_millis};
use crate::access::ClientKey;
use crate::envelope::{self, Provider, SessionSecret};
use crate::keys::ServerKey;
use crate::session::{IssuedSession, SessionError, SessionStore};

/// How often a replica deletes expired sessions and epoch keys.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The bounds of the cluster's pending sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub ttl: Duration,
    pub max_pending: usize,
    /// 0: no share per client.
    pub max_pending_per_client: usize,
}

/// The cluster's pending sessions, seen from one replica.
pub struct PgSessionStore {
    cluster: Cluster,
    provider: Provider,
    limits: SessionLimits,
    keys: WrapKeys,
    /// Live sessions in the whole cluster, as of this replica's last issue or
    /// sweep (the gauge).
    pending: AtomicUsize,
}

impl PgSessionStore {
    pub fn new(cluster: Cluster, key: &ServerKey, limits: SessionLimits) -> PgSessionStore {
        PgSessionStore {
            keys: WrapKeys::new(cluster.clone(), key, limits.ttl),
            cluster,
            provider: key.provider(),
            limits,
            pending: AtomicUsize::new(0),
        }
    }

    /// Over an `Arc`, with its sweeper running until the returned task is
    /// aborted.
    pub fn start(
        cluster: Cluster,
        key: &ServerKey,
        limits: SessionLimits,
    ) -> (Arc<PgSessionStore>, tokio::task::JoinHandle<()>) {
        let store = Arc::new(PgSessionStore::new(cluster, key, limits));
        let sweeping = store.clone();
        let sweeper = tokio::spawn(async move {
            loop {
                if let Err(error) = sweeping.sweep_database().await {
                    tracing::debug!(%error, "sweeping expired sessions failed; retrying");
                }
                tokio::time::sleep(SWEEP_INTERVAL).await;
            }
        });
        (store, sweeper)
    }

    /// Deletes expired rows and unneeded epoch keys; refreshes the gauge.
    async fn sweep_database(&self) -> Result<(), DbError> {
        let now_ms = unix_millis(SystemTime::now());
        // Rows stay a little past their expiry, so that a replica whose clock is
        // behind still finds them expired rather than unknown (both answer
        // `session_not_found`; the margin only keeps the sweep from racing use).
        let before = now_ms - CLOCK_MARGIN.as_millis() as i64;
        let live: i64 = self
            .cluster
            .run(|client| async move {
                client
                    .execute("DELETE FROM sessions WHERE expires_ms < $1", &[&before])
                    .await?;
                let row = client
                    .query_one(
                        "SELECT count(*) FROM sessions WHERE expires_ms > $1",
                        &[&now_ms],
                    )
                    .await?;
                Ok(row.get(0))
            })
            .await?;
        self.pending
            .store(usize::try_from(live).unwrap_or(0), Ordering::Relaxed);
        self.keys.sweep(now_ms).await?;
        Ok(())
    }

    /// Issues `count` sessions for `client`, or says why not.
    async fn issue(
        &self,
        client: ClientKey,
        count: usize,
    ) -> Result<Vec<IssuedSession>, SessionError> {
        let now = SystemTime::now();
        let now_ms = unix_millis(now);
        let expires_at = now + self.limits.ttl;
        let expires_ms = unix_millis(expires_at);
        let epoch = self.keys.epoch_at(now_ms);
        let epoch_key = self
            .keys
            .for_issuing(epoch)
            .await
            .map_err(unavailable)?
            .ok_or(SessionError::Unavailable)?;
        let mut ids = Vec::with_capacity(count);
        let mut wrapped = Vec::with_capacity(count);
        let mut public_keys = Vec::with_capacity(count);
        for _ in 0..count {
            let id = Uuid::new_v4();
            let mut seed = Zeroizing::new([0u8; 32]);
            self.provider
                .fill_random(seed.as_mut_slice())
                .map_err(|_| SessionError::Unavailable)?;
            let (secret, public_key) = envelope::derive_session_key(self.provider, seed.as_slice());
            drop(secret);
            let sealed = self
                .keys
                .seal(&epoch_key, id.as_bytes(), seed.as_slice())
                .ok_or(SessionError::Unavailable)?;
            ids.push(id);
            wrapped.push(sealed);
            public_keys.push(public_key);
        }
        let epochs = vec![epoch; count];
        let expiries = vec![expires_ms; count];
        let client_bytes = client_bytes(client);
        let wanted = count as i64;
        let max_pending = self.limits.max_pending as i64;
        let share = self.limits.max_pending_per_client as i64;
        let statement_ids = ids.clone();
        // One statement: count the live sessions (all, and the client's), and
        // insert the batch only if it fits under both bounds.
        let row = self
            .cluster
            .run(|db| async move {
                db.query_one(
                    "WITH live AS (\
                        SELECT count(*) AS total, \
                               count(*) FILTER (WHERE client = $5) AS mine, \
                               min(expires_ms) AS oldest, \
                               min(expires_ms) FILTER (WHERE client = $5) AS my_oldest \
                        FROM sessions WHERE expires_ms > $6), \
                     inserted AS (\
                        INSERT INTO sessions (id, epoch, wrapped_seed, expires_ms, client) \
                        SELECT batch.id, batch.epoch, batch.wrapped, batch.expires, $5 \
                        FROM unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::bigint[]) \
                             AS batch(id, epoch, wrapped, expires), live \
                        WHERE live.total + $7::bigint <= $8::bigint \
                              AND ($9::bigint = 0 OR live.mine + $7::bigint <= $9::bigint) \
                        RETURNING 1) \
                     SELECT (SELECT count(*) FROM inserted), total, mine, oldest, my_oldest \
                     FROM live",
                    &[
                        &statement_ids,
                        &epochs,
                        &wrapped,
                        &expiries,
                        &client_bytes,
                        &now_ms,
                        &wanted,
                        &max_pending,
                        &share,
                    ],
                )
                .await
            })
            .await
            .map_err(unavailable)?;
        let (inserted, total, mine, oldest, my_oldest): (i64, i64, i64, Option<i64>, Option<i64>) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if inserted != wanted {
            let retry_after = |expiry: Option<i64>| {
                expiry.map_or(Duration::from_secs(1), |expiry| {
                    Duration::from_millis(u64::try_from(expiry - now_ms).unwrap_or(0))
                })
            };
            return Err(if share > 0 && mine + wanted > share {
                SessionError::ClientShareReached {
                    retry_after: retry_after(my_oldest),
                }
            } else {
                SessionError::TooManyPending {
                    retry_after: retry_after(oldest),
                }
            });
        }
        self.pending.store(
            usize::try_from(total + wanted).unwrap_or(0),
            Ordering::Relaxed,
        );
        Ok(ids
            .into_iter()
            .zip(public_keys)
            .map(|(id, public_key)| IssuedSession {
                id,
                public_key,
                expires_at,
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl SessionStore for PgSessionStore {
    fn provider(&self) -> Provider {
        self.provider
    }

    fn ttl(&self) -> Duration {
        self.limits.ttl
    }

    fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    async fn create_batch_for(
        &self,
        client: ClientKey,
        count: usize,
    ) -> Result<Vec<IssuedSession>, SessionError> {
        self.issue(client, count).await
    }

    async fn is_live(&self, id: &Uuid) -> Result<bool, SessionError> {
        let id = *id;
        let expires: Option<i64> = self
            .cluster
            .run(|client| async move {
                let row = client
                    .query_opt("SELECT expires_ms FROM sessions WHERE id = $1", &[&id])
                    .await?;
                Ok(row.map(|row| row.get(0)))
            })
            .await
            .map_err(unavailable)?;
        Ok(expires.is_some_and(|expires| expires > unix_millis(SystemTime::now())))
    }

    async fn take(&self, id: &Uuid) -> Result<SessionSecret, SessionError> {
        let id = *id;
        let row: Option<(i64, Vec<u8>, i64)> = self
            .cluster
            .run(|client| async move {
                let row = client
                    .query_opt(
                        "DELETE FROM sessions WHERE id = $1 \
                         RETURNING epoch, wrapped_seed, expires_ms",
                        &[&id],
                    )
                    .await?;
                Ok(row.map(|row| (row.get(0), row.get(1), row.get(2))))
            })
            .await
            .map_err(unavailable)?;
        let (epoch, wrapped, expires_ms) = row.ok_or(SessionError::Unknown)?;
        if expires_ms <= unix_millis(SystemTime::now()) {
            return Err(SessionError::Unknown);
        }
        let epoch_key = self
            .keys
            .for_opening(epoch)
            .await
            .map_err(unavailable)?
            .ok_or(SessionError::Unknown)?;
        let seed = self
            .keys
            .open(&epoch_key, id.as_bytes(), &wrapped)
            .ok_or_else(|| {
                tracing::error!(session_id = %id, "a stored session seed does not open");
                SessionError::Unknown
            })?;
        let (secret, _) = envelope::derive_session_key(self.provider, &seed);
        Ok(secret)
    }

    async fn sweep(&self, _now: Instant) -> Option<Instant> {
        // The database is swept by the task `start` spawned; nothing is kept here.
        None
    }
}

fn unavailable(error: DbError) -> SessionError {
    tracing::warn!(%error, "the session store's database failed");
    SessionError::Unavailable
}

/// A client as the `client` column holds it: a tag, then its token digest or
/// address.
fn client_bytes(client: ClientKey) -> Vec<u8> {
    match client {
        ClientKey::Token(digest) => [&[1u8][..], &digest].concat(),
        ClientKey::Address(IpAddr::V4(address)) => [&[4u8][..], &address.octets()].concat(),
        ClientKey::Address(IpAddr::V6(address)) => [&[6u8][..], &address.octets()].concat(),
    }
}
