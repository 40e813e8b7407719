//! Pending sessions in PostgreSQL: issued by any replica, used exactly once on
//! any replica.
//!
//! A session is a row `(id, epoch, wrapped_seed, expires_ms, client)`. Its key
//! pair is RFC 9180 `DeriveKeyPair(seed)` of a random 32-byte seed: the replica
//! that issues it makes the seed, derives the public key for the client, and
//! stores only the seed wrapped under the epoch key (`wrap`), with the session id
//! as associated data. A batch is one multi-row `INSERT` (from arrays). Using a
//! session is `DELETE ... RETURNING`, for the sessions of every execution that
//! took one while the previous group was on its way (`takes`): of two replicas
//! taking one id, exactly one gets the row; it unwraps the seed, derives the key pair, and the seed and key
//! are zeroized after the open attempt, as in embedded mode.
//!
//! # Bounds
//! `sessions.max_pending` and `sessions.max_pending_per_client` bound the live
//! rows of the whole cluster, with embedded mode's rules (`session`'s module
//! doc): a client's share first, then the pool; a full pool makes room for a
//! batch as that many single requests would, each place taken from the oldest
//! session of the largest holder if it holds more than the asker would by then
//! (among equals, the one whose oldest session is the oldest), all or nothing.
//!
//! Why it is race-free: issuing is one transaction that first takes
//! [`ISSUE_LOCK`], a transaction-scoped advisory lock, so issues from every
//! replica and connection run one at a time; the statements after it (READ
//! COMMITTED: each takes its snapshot when it starts, after the lock was
//! granted) see every earlier issue's commit. Only an issue adds rows, so the
//! count it reads can only fall (a use, a sweep) before it commits: what it
//! inserts fits. One statement alone cannot do it: its snapshot would be taken
//! before the lock is granted. The common case (the batch fits, or is over the
//! client's share) is one round trip (`fast_issue`: the lock, the statement and
//! the commit sent together); a batch that needs room made runs the whole
//! transaction (`issue_transaction`), its lock held for two or three statements
//! and the commit. Uses and sweeps do not take the lock. Key pairs are generated before
//! the lock, so a refusal by the database's count costs them; they are made by a
//! `session::issuer::Issuer`, off the async workers and in the client's turn,
//! which also refuses at once, before deriving, a client whose batches in flight
//! on this replica would pass its share, and bounds the work queued.
//!
//! A replica runs one issue transaction at a time, the smallest request first
//! (`session::issuer::Turns`): the lock grants waiters first come first served,
//! so a burst of batches sent as they were made would hold a connection each
//! while queued (starving executions' `take` of connections) and put a fresh
//! client's one session behind all of them (issue 25, row 9). Now at most one
//! transaction per replica is ahead of it at the lock.
//!
//! # Expiry
//! A session past `expires_ms` is unknown (`take` and `is_live` check it); each
//! replica's sweeper deletes expired rows and epoch keys no session needs, every
//! [`SWEEP_INTERVAL`]; several replicas sweeping is harmless.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::types::ToSql;
use uuid::Uuid;
use zeroize::Zeroizing;

use self::takes::{GroupFailed, Row, Takes};
use super::wrap::{CLOCK_MARGIN, WrapKeys};
use super::{Cluster, DbError, OPERATION_TIMEOUT, unix_millis};
use crate::access::ClientKey;
use crate::envelope::{self, Provider, SessionSecret};
use crate::keys::ServerKey;
use crate::session::issuer::{Issuer, Turns};
use crate::session::{IssuedSession, SessionError, SessionStore};

mod takes;

/// How often a replica deletes expired sessions and epoch keys.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The advisory lock every issue takes, for its transaction: "wasmhses" as a
/// big-endian integer.
const ISSUE_LOCK: i64 = 0x7761_736d_6873_6573;

/// The sessions that make room for a batch, in the order single requests would
/// evict them: each live session of a client other than the asker (`$2`) that
/// holds more than the asker (`$3`), with `held_then`, what its client holds when
/// it is its turn to give that session up (its oldest then). Ordered as embedded
/// mode picks its victims: the largest holder first, among equals the one whose
/// oldest session is the oldest (then by client), and within a client oldest
/// first (the sessions of one batch expire together and are equally old: by
/// id). Taking these in order is exactly repeating "evict the largest holder's
/// oldest": each client's `held_then` falls by one per session.
///
/// Only the first `$4` (the places lacking) are wanted, and they come from the
/// first `$4` holders in that order: each of those holders' first session comes
/// before any session of a holder after them. So only those holders' `$4`
/// oldest sessions are ranked (read in order from the `(client, expires_ms)`
/// index), not every live session: with the pool full of 10,000, the statement
/// that ranked them all took 30-45 ms under the issue lock (issue 25, row 9).
const VICTIMS: &str = "\
    WITH holders AS (\
        SELECT client, count(*) AS held, min(expires_ms) AS oldest FROM sessions \
        WHERE expires_ms > $1 AND client <> $2 \
        GROUP BY client HAVING count(*) > $3::bigint \
        ORDER BY held DESC, oldest, client DESC LIMIT $4::bigint), \
    ranked AS (\
        SELECT s.id, h.client, s.expires_ms, \
               h.held + 1 - row_number() OVER (\
                   PARTITION BY h.client ORDER BY s.expires_ms, s.id) AS held_then \
        FROM holders h CROSS JOIN LATERAL (\
            SELECT id, expires_ms FROM sessions \
            WHERE client = h.client AND expires_ms > $1 \
            ORDER BY expires_ms, id LIMIT $4::bigint) AS s) \
    SELECT id, held_then FROM ranked \
    ORDER BY held_then DESC, expires_ms, client DESC \
    LIMIT $4::bigint";

/// The common case of an issue, in one statement: counts the live sessions
/// (all, and the client's `$5`, with the oldest expiry of each) at `$6`, and
/// inserts the batch (`$1`..`$4`, `$7` rows) if it fits under the pool (`$8`)
/// and the share (`$9`, 0 for none). Returns the rows inserted (0 or all), then
/// the counts.
const INSERT_IF_IT_FITS: &str = "\
    WITH live AS (\
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
    SELECT (SELECT count(*) FROM inserted), total, mine, oldest, my_oldest FROM live";

/// Deletes the victims (`$1`) and inserts the batch, in one statement.
const EVICT_AND_INSERT: &str = "\
    WITH evicted AS (DELETE FROM sessions WHERE id = ANY($1::uuid[])) \
    INSERT INTO sessions (id, epoch, wrapped_seed, expires_ms, client) \
    SELECT batch.id, batch.epoch, batch.wrapped, batch.expires, $6 \
    FROM unnest($2::uuid[], $3::bigint[], $4::bytea[], $5::bigint[]) \
         AS batch(id, epoch, wrapped, expires)";

/// What an issue's transaction decided.
enum Issue {
    /// Inserted; the cluster's live sessions now.
    Issued { pending: i64 },
    /// The client's share cannot take the batch; its oldest session's expiry.
    ShareReached { my_oldest: Option<i64> },
    /// The pool cannot make room; the pool's oldest session's expiry.
    PoolFull { oldest: Option<i64> },
}

/// One session of a batch, made before its transaction.
struct Made {
    id: Uuid,
    wrapped_seed: Vec<u8>,
    public_key: [u8; envelope::POINT_LEN],
}

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
    keys: Arc<WrapKeys>,
    /// Makes the batches' key pairs and sealed seeds (`session::issuer`).
    issuer: Issuer<Made>,
    /// One issue transaction at a time, the smallest first (module doc).
    turns: Turns,
    /// Takes grouped while one is on its way to the database (`takes`).
    takes: Arc<Takes>,
    /// Live sessions in the whole cluster, as of this replica's last issue or
    /// sweep (the gauge).
    pending: AtomicUsize,
}

impl PgSessionStore {
    pub fn new(cluster: Cluster, key: &ServerKey, limits: SessionLimits) -> PgSessionStore {
        PgSessionStore {
            keys: Arc::new(WrapKeys::new(cluster.clone(), key, limits.ttl)),
            // More than the pool's bound could never be pending at once.
            issuer: Issuer::new(limits.max_pending),
            turns: Turns::new(),
            takes: Arc::new(Takes::default()),
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

    /// What makes one session of a batch sealed under `epoch_key`: a fresh id
    /// and seed, the seed's public key, the seed wrapped with the id as
    /// associated data. The private key is dropped (zeroized) at once: `take`
    /// derives it again.
    fn maker(
        &self,
        epoch_key: Zeroizing<[u8; 32]>,
    ) -> impl FnMut() -> Result<Made, SessionError> + Send + 'static {
        let (provider, keys) = (self.provider, self.keys.clone());
        move || {
            let id = Uuid::new_v4();
            let mut seed = Zeroizing::new([0u8; 32]);
            provider
                .fill_random(seed.as_mut_slice())
                .map_err(|_| SessionError::Unavailable)?;
            let (secret, public_key) = envelope::derive_session_key(provider, seed.as_slice());
            drop(secret);
            let wrapped_seed = keys
                .seal(&epoch_key, id.as_bytes(), seed.as_slice())
                .ok_or(SessionError::Unavailable)?;
            Ok(Made {
                id,
                wrapped_seed,
                public_key,
            })
        }
    }

    /// Issues `count` sessions for `client`, or says why not: the key pairs and
    /// sealed seeds made in the client's turn (`maker`), then one transaction
    /// (`issue_transaction`) in the request's turn (`turns`).
    async fn issue(
        &self,
        client: ClientKey,
        count: usize,
    ) -> Result<Vec<IssuedSession>, SessionError> {
        let now = SystemTime::now();
        let now_ms = unix_millis(now);
        let expires_at = now + self.limits.ttl;
        let epoch = self.keys.epoch_at(now_ms);
        let epoch_key = self
            .keys
            .for_issuing(epoch)
            .await
            .map_err(unavailable)?
            .ok_or(SessionError::Unavailable)?;
        let share = self.limits.max_pending_per_client;
        let made = self
            .issuer
            .issue(client, count, share, self.maker(epoch_key))
            .await?;
        let (rows, public_keys) = Rows::new(made, epoch, unix_millis(expires_at), client);
        let bounds = Bounds {
            now_ms,
            max_pending: self.limits.max_pending as i64,
            share: share as i64,
        };
        let issue = self.store(&rows, bounds).await?;
        let retry_after = |expiry: Option<i64>| {
            expiry.map_or(Duration::from_secs(1), |expiry| {
                Duration::from_millis(u64::try_from(expiry - now_ms).unwrap_or(0))
            })
        };
        match issue {
            Issue::Issued { pending } => self
                .pending
                .store(usize::try_from(pending).unwrap_or(0), Ordering::Relaxed),
            Issue::ShareReached { my_oldest } => {
                return Err(SessionError::ClientShareReached {
                    retry_after: retry_after(my_oldest),
                });
            }
            Issue::PoolFull { oldest } => {
                return Err(SessionError::TooManyPending {
                    retry_after: retry_after(oldest),
                });
            }
        }
        Ok(rows
            .ids
            .iter()
            .zip(public_keys)
            .map(|(&id, public_key)| IssuedSession {
                id,
                public_key,
                expires_at,
            })
            .collect())
    }

    /// Runs the transaction of `rows` (`issue_transaction`) in its turn
    /// (`turns`). The wait is bounded as the lock's was when every request
    /// queued there: a database that stalls fails the requests behind, rather
    /// than queueing them for as long as those ahead take.
    async fn store(&self, rows: &Rows, bounds: Bounds) -> Result<Issue, SessionError> {
        let _turn = tokio::time::timeout(OPERATION_TIMEOUT, self.turns.take(rows.ids.len()))
            .await
            .map_err(|_| unavailable(DbError::Timeout))?;
        self.cluster
            .run(|mut db| async move {
                match fast_issue(&db, rows, bounds).await? {
                    Some(issue) => Ok(issue),
                    None => issue_transaction(&mut db, rows, bounds).await,
                }
            })
            .await
            .map_err(unavailable)
    }
}

/// A batch as the statements take it: one array per column, and the client.
struct Rows {
    ids: Vec<Uuid>,
    epochs: Vec<i64>,
    wrapped: Vec<Vec<u8>>,
    expiries: Vec<i64>,
    client: Vec<u8>,
}

impl Rows {
    /// The rows of `made`, and the public keys in the same order.
    fn new(
        made: Vec<Made>,
        epoch: i64,
        expires_ms: i64,
        client: ClientKey,
    ) -> (Rows, Vec<[u8; envelope::POINT_LEN]>) {
        let count = made.len();
        let mut rows = Rows {
            ids: Vec::with_capacity(count),
            epochs: vec![epoch; count],
            wrapped: Vec::with_capacity(count),
            expiries: vec![expires_ms; count],
            client: client_bytes(client),
        };
        let mut public_keys = Vec::with_capacity(count);
        for session in made {
            rows.ids.push(session.id);
            rows.wrapped.push(session.wrapped_seed);
            public_keys.push(session.public_key);
        }
        (rows, public_keys)
    }

    fn len(&self) -> i64 {
        self.ids.len() as i64
    }
}

/// The bounds an issue checks, at `now_ms`.
#[derive(Clone, Copy)]
struct Bounds {
    now_ms: i64,
    max_pending: i64,
    /// 0: no share per client.
    share: i64,
}

/// The sessions whose places a batch takes when the pool has only `free` of the
/// places it wants, found as single requests would (module doc): the k-th
/// place lacking only from a client holding more than the asker (holding
/// `mine`) would by then, `mine + free + k`. `None` if some place cannot be
/// found.
async fn victims(
    transaction: &deadpool_postgres::Transaction<'_>,
    rows: &Rows,
    bounds: Bounds,
    mine: i64,
    free: i64,
) -> Result<Option<Vec<Uuid>>, tokio_postgres::Error> {
    let lacking = rows.len() - free;
    let candidates = transaction
        .query(VICTIMS, &[&bounds.now_ms, &rows.client, &mine, &lacking])
        .await?;
    let victims: Vec<Uuid> = candidates
        .iter()
        .zip(0..)
        .take_while(|(row, place)| row.get::<_, i64>(1) > mine + free + place)
        .map(|(row, _)| row.get(0))
        .collect();
    Ok((victims.len() as i64 == lacking).then_some(victims))
}

/// Takes [`ISSUE_LOCK`] for the transaction, waiting for it at most half a second
/// less than an operation may take.
fn take_the_issue_lock() -> String {
    format!(
        "SET LOCAL lock_timeout = {}; SELECT pg_advisory_xact_lock({ISSUE_LOCK})",
        (OPERATION_TIMEOUT - Duration::from_millis(500)).as_millis()
    )
}

/// [`INSERT_IF_IT_FITS`]'s parameters, in its order.
fn insert_parameters<'a>(
    rows: &'a Rows,
    bounds: &'a Bounds,
    wanted: &'a i64,
) -> [&'a (dyn ToSql + Sync); 9] {
    [
        &rows.ids,
        &rows.epochs,
        &rows.wrapped,
        &rows.expiries,
        &rows.client,
        &bounds.now_ms,
        wanted,
        &bounds.max_pending,
        &bounds.share,
    ]
}

/// The common case of an issue in one round trip: `BEGIN` with the lock,
/// [`INSERT_IF_IT_FITS`] (prepared once per connection) and `COMMIT` sent
/// together and run in order, as the log's append is (`cluster::log::append`),
/// so that the lock is held for the statement and the commit's flush, not
/// across round trips. A batch that fits is committed; one over the client's
/// share is refused from the same counts; one that needs room made inserted
/// nothing (its `COMMIT` ends a transaction that changed nothing) and `None`
/// sends it to [`issue_transaction`], which counts again under the lock.
async fn fast_issue(
    db: &deadpool_postgres::Object,
    rows: &Rows,
    bounds: Bounds,
) -> Result<Option<Issue>, tokio_postgres::Error> {
    let begin = format!("BEGIN; {}", take_the_issue_lock());
    let insert = db.prepare_cached(INSERT_IF_IT_FITS).await?;
    let wanted = rows.len();
    let parameters = insert_parameters(rows, &bounds, &wanted);
    // Polled together, so sent together; each answer is awaited, so that the
    // connection goes back to the pool idle. A failed lock or insert aborts the
    // transaction and its `COMMIT` rolls back: the first error is the answer.
    let (begun, inserted, committed) = tokio::join!(
        db.batch_execute(&begin),
        db.query_one(&insert, &parameters),
        db.batch_execute("COMMIT"),
    );
    begun?;
    let row = inserted?;
    committed?;
    let (inserted, total, mine, my_oldest): (i64, i64, i64, Option<i64>) =
        (row.get(0), row.get(1), row.get(2), row.get(4));
    Ok(if inserted == wanted {
        Some(Issue::Issued {
            pending: total + wanted,
        })
    } else if bounds.share > 0 && mine + wanted > bounds.share {
        Some(Issue::ShareReached { my_oldest })
    } else {
        None
    })
}

/// One issue's transaction: the lock, then the common case in one statement
/// ([`INSERT_IF_IT_FITS`]); if the batch did not fit, the client's share, then
/// room made from larger holders ([`VICTIMS`], [`EVICT_AND_INSERT`]), all or
/// nothing.
async fn issue_transaction(
    db: &mut deadpool_postgres::Object,
    rows: &Rows,
    bounds: Bounds,
) -> Result<Issue, tokio_postgres::Error> {
    let transaction = db.transaction().await?;
    transaction.batch_execute(&take_the_issue_lock()).await?;
    // Statements of their own, after the lock: their snapshots see every
    // earlier issue's commit (module doc).
    let wanted = rows.len();
    let row = transaction
        .query_one(
            INSERT_IF_IT_FITS,
            &insert_parameters(rows, &bounds, &wanted),
        )
        .await?;
    let (inserted, total, mine, oldest, my_oldest): (i64, i64, i64, Option<i64>, Option<i64>) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if inserted == wanted {
        transaction.commit().await?;
        return Ok(Issue::Issued {
            pending: total + wanted,
        });
    }
    if bounds.share > 0 && mine + wanted > bounds.share {
        transaction.rollback().await?;
        return Ok(Issue::ShareReached { my_oldest });
    }
    let free = (bounds.max_pending - total).clamp(0, wanted);
    let Some(victims) = victims(&transaction, rows, bounds, mine, free).await? else {
        // All or nothing: no one is evicted for a batch refused.
        transaction.rollback().await?;
        return Ok(Issue::PoolFull { oldest });
    };
    evict_and_insert(transaction, rows, &victims).await?;
    Ok(Issue::Issued {
        pending: total - victims.len() as i64 + wanted,
    })
}

/// The end of an issue that made room: `victims` evicted, the batch inserted
/// in their places, committed.
async fn evict_and_insert(
    transaction: deadpool_postgres::Transaction<'_>,
    rows: &Rows,
    victims: &Vec<Uuid>,
) -> Result<(), tokio_postgres::Error> {
    transaction
        .execute(
            EVICT_AND_INSERT,
            &[
                victims,
                &rows.ids,
                &rows.epochs,
                &rows.wrapped,
                &rows.expiries,
                &rows.client,
            ],
        )
        .await?;
    transaction.commit().await
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
                let live = client.prepare_cached(LIVE).await?;
                let row = client.query_opt(&live, &[&id]).await?;
                Ok(row.map(|row| row.get(0)))
            })
            .await
            .map_err(unavailable)?;
        Ok(expires.is_some_and(|expires| expires > unix_millis(SystemTime::now())))
    }

    async fn take(&self, id: &Uuid) -> Result<SessionSecret, SessionError> {
        let id = *id;
        let cluster = self.cluster.clone();
        let row = self
            .takes
            .take(id, move |ids| take_group(cluster.clone(), ids))
            .await
            .map_err(|GroupFailed| SessionError::Unavailable)?;
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

/// Whether a session is live: its expiry, if its row is there.
const LIVE: &str = "SELECT expires_ms FROM sessions WHERE id = $1";

/// Uses a group of sessions (`takes`): of two replicas taking one id, exactly
/// one gets the row.
const TAKE: &str =
    "DELETE FROM sessions WHERE id = ANY($1) RETURNING id, epoch, wrapped_seed, expires_ms";

/// One group of takes (`takes`) on a pooled connection: the rows it deleted,
/// by id. A failure is logged here, once for the group.
async fn take_group(cluster: Cluster, ids: Vec<Uuid>) -> Result<HashMap<Uuid, Row>, GroupFailed> {
    cluster
        .run(|client| async move {
            let take = client.prepare_cached(TAKE).await?;
            let rows = client.query(&take, &[&ids]).await?;
            Ok(rows
                .into_iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
                .collect())
        })
        .await
        .map_err(|error| {
            unavailable(error);
            GroupFailed
        })
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
