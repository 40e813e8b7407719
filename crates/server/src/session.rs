//! Pending sessions: the per-session HPKE key pairs between `POST /sessions` and the
//! one `POST /execute` that may use each (protocol §1).
//!
//! Storage is behind the [`SessionStore`] trait. This module's
//! [`MemorySessionStore`] is embedded mode's (the default): a session's private
//! key lives only here, in memory. It leaves the store exactly once, when an
//! execution takes it (and is dropped, zeroized, right after the open attempt),
//! or is destroyed when it expires or is evicted. Cluster mode's store, shared by
//! replicas through PostgreSQL, is `cluster::sessions`; the rest of this doc is
//! the in-memory store's.
//!
//! # Shares
//! The pool holds at most `max_pending` sessions, and each client (an
//! [`ClientKey`]: its token's digest, else its address) at most
//! `max_pending_per_client` of them, counting the ones whose keys are being made.
//! A client's share is checked, and its place in the pool reserved, *before* its
//! key pair is generated: a refusal costs no key generation, and the lock is never
//! held while one is made. The key pairs are then made by the store's
//! [`issuer::Issuer`], off the async workers and in the client's turn (least work
//! outstanding first), so a burst of batches does not delay other requests or a
//! client asking for one session (issue 25, row 9). Cluster mode issues through
//! an issuer of its own.
//!
//! When the pool is full, a client asking for a session takes the place of the
//! oldest pending session of the client that holds the most, if that client holds
//! more than the asker (among clients that hold as many, the one whose oldest
//! session is the oldest). The pool therefore tends to an even split between the
//! clients that want sessions: a client is refused only when every client holding
//! sessions holds at least as many as it does, so a client holding fewer than
//! `max_pending` divided by the number of such clients is never refused, and a
//! client holding none is always served. Many addresses can push each other's
//! sessions out, but not take the pool from anyone else. An evicted session is
//! gone like an expired one: `/execute` answers it `session_not_found`.
//!
//! # Expiry
//! Every session lives the same TTL, so expiry order is creation order: sessions
//! are indexed by a creation sequence number, and expiring is popping the front of
//! that index. Nothing scans the pool. Every operation under the lock is a handful
//! of map operations, O(log n); the sweep pops at most [`SWEEP_BATCH`] sessions per
//! lock and drops (zeroizes) their keys after releasing it.

pub(crate) mod issuer;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use crate::access::ClientKey;
use crate::envelope::{self, POINT_LEN, Provider, SessionSecret};
use issuer::Issuer;

/// Most expired sessions destroyed per hold of the lock, by the sweep and by a
/// creation (which expires the front of the queue first, so that a late sweep
/// never makes a full pool of dead sessions refuse anyone). Bounds how long
/// `/execute`'s `take` can wait behind either.
pub(crate) const SWEEP_BATCH: usize = 256;

/// The `Retry-After` of a refusal when nothing in the pool is due to expire (every
/// place is a key being generated, which takes microseconds).
const RETRY_SOON: Duration = Duration::from_secs(1);

/// Why a session could not be created or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// The client already holds its share (`max_pending_per_client`); its oldest
    /// session expires within `retry_after`.
    #[error("the client holds as many pending sessions as it may")]
    ClientShareReached { retry_after: Duration },
    /// The pool is full and no client holds more sessions than this one; one
    /// expires within `retry_after`.
    #[error("too many pending sessions")]
    TooManyPending { retry_after: Duration },
    /// No such session: never issued, expired, evicted, or already used.
    #[error("unknown, expired or already used session")]
    Unknown,
    /// The shared store (cluster mode's database) cannot be reached: nothing
    /// was created, and a session named is neither used nor known to be unknown.
    #[error("the session store is unavailable")]
    Unavailable,
}

/// Where pending sessions live: in this process ([`MemorySessionStore`],
/// embedded mode) or in PostgreSQL, shared by the replicas of a cluster
/// (`cluster::PgSessionStore`). The contract every implementation keeps:
/// - a session issued by `create_batch_for` can be taken by `take` exactly once,
///   until it expires (`ttl` after it was issued); after that, or once taken, or
///   if never issued, `take` is [`SessionError::Unknown`] and `is_live` false;
/// - a batch is issued all or nothing, its sessions in the order returned;
/// - `take` hands the key over only if it also removed the session (atomically:
///   two takes of one id, on any replica, never both succeed);
/// - a private key is never kept in the clear anywhere but this process's
///   memory, and is zeroized when dropped;
/// - [`SessionError::Unavailable`] when the store cannot answer, never a guess.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// The provider session keys are made on; it also checks `enc` points.
    fn provider(&self) -> Provider;

    /// How long a session lives.
    fn ttl(&self) -> Duration;

    /// Sessions this process issued and that are still pending, as far as it
    /// knows (the gauge and `/health`'s `sessions_pending`).
    fn pending(&self) -> usize;

    /// Issues `count` sessions for `client` (protocol v1.1 §A), all or nothing,
    /// within the bounds (the pool, the client's share).
    async fn create_batch_for(
        &self,
        client: ClientKey,
        count: usize,
    ) -> Result<Vec<IssuedSession>, SessionError>;

    /// Whether `id` names a live session, without using it.
    async fn is_live(&self, id: &Uuid) -> Result<bool, SessionError>;

    /// Removes the session and hands over its key: after this, `id` is unknown
    /// everywhere whatever the caller does with the key.
    async fn take(&self, id: &Uuid) -> Result<SessionSecret, SessionError>;

    /// Destroys what expired by `now`; says when to sweep next (`None`: when
    /// the store likes, at least once a TTL).
    async fn sweep(&self, now: Instant) -> Option<Instant>;

    /// One session for `client`.
    async fn create_for(&self, client: ClientKey) -> Result<IssuedSession, SessionError> {
        let mut sessions = self.create_batch_for(client, 1).await?;
        sessions.pop().ok_or(SessionError::Unknown)
    }
}

#[async_trait::async_trait]
impl SessionStore for MemorySessionStore {
    fn provider(&self) -> Provider {
        MemorySessionStore::provider(self)
    }

    fn ttl(&self) -> Duration {
        MemorySessionStore::ttl(self)
    }

    fn pending(&self) -> usize {
        MemorySessionStore::pending(self)
    }

    async fn create_batch_for(
        &self,
        client: ClientKey,
        count: usize,
    ) -> Result<Vec<IssuedSession>, SessionError> {
        MemorySessionStore::create_batch_for(self, client, count).await
    }

    async fn is_live(&self, id: &Uuid) -> Result<bool, SessionError> {
        Ok(MemorySessionStore::is_live(self, id))
    }

    async fn take(&self, id: &Uuid) -> Result<SessionSecret, SessionError> {
        MemorySessionStore::take(self, id)
    }

    async fn sweep(&self, now: Instant) -> Option<Instant> {
        MemorySessionStore::sweep(self, now)
    }
}

/// A session as issued to a client.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub id: Uuid,
    pub public_key: [u8; POINT_LEN],
    pub expires_at: SystemTime,
}

struct Pending {
    secret: SessionSecret,
    expires: Instant,
    client: ClientKey,
    /// Its place in the creation order (`Pool::by_age`, `Holder::sessions`).
    sequence: u64,
}

/// What one client holds.
#[derive(Default)]
struct Holder {
    /// Its pending sessions by creation sequence, oldest first.
    sessions: BTreeMap<u64, Uuid>,
    /// Places reserved for its sessions whose keys are being generated now.
    reserved: usize,
}

impl Holder {
    /// What counts against its share, and what it is compared by for eviction.
    fn holding(&self) -> usize {
        self.sessions.len() + self.reserved
    }
}

/// A client's place in the eviction order: most pending sessions last, and among
/// equals the one whose oldest session is the oldest last (`Reverse` of its
/// sequence), so `BTreeSet::last` is the victim. The key makes it unique.
type Rank = (usize, Reverse<u64>, ClientKey);

fn rank_of(client: ClientKey, holder: &Holder) -> Option<Rank> {
    let (&oldest, _) = holder.sessions.first_key_value()?;
    Some((holder.sessions.len(), Reverse(oldest), client))
}

/// The store's state, all behind one lock. Invariants (checked by the tests'
/// `check_invariants`): `by_id`, `by_age` and the holders' `sessions` index the
/// same sessions; `ranks` has exactly one entry per holder with a session, equal
/// to `rank_of`; `holders` has no empty holder; `reserved` is the sum of the
/// holders' `reserved`.
#[derive(Default)]
struct Pool {
    by_id: HashMap<Uuid, Pending>,
    /// Every pending session by creation sequence: the expiry queue.
    by_age: BTreeMap<u64, Uuid>,
    holders: HashMap<ClientKey, Holder>,
    ranks: BTreeSet<Rank>,
    /// Places reserved, in all.
    reserved: usize,
    next_sequence: u64,
    /// The latest expiry given; a later session never expires before it, which
    /// keeps expiry order equal to creation order even if two creations read the
    /// clock in one order and take the lock in the other.
    last_expiry: Option<Instant>,
}

impl Pool {
    /// Runs `change` on `client`'s holder (created if missing) and keeps `ranks`
    /// and `holders` true to it: the only way a holder is changed.
    fn change_holder<R>(&mut self, client: ClientKey, change: impl FnOnce(&mut Holder) -> R) -> R {
        let holder = self.holders.entry(client).or_default();
        if let Some(rank) = rank_of(client, holder) {
            self.ranks.remove(&rank);
        }
        let result = change(holder);
        if let Some(rank) = rank_of(client, holder) {
            self.ranks.insert(rank);
        }
        if holder.holding() == 0 {
            self.holders.remove(&client);
        }
        result
    }

    fn holding(&self, client: &ClientKey) -> usize {
        self.holders.get(client).map_or(0, Holder::holding)
    }

    /// Takes `id` out of every index.
    fn remove(&mut self, id: &Uuid) -> Option<Pending> {
        let pending = self.by_id.remove(id)?;
        self.by_age.remove(&pending.sequence);
        self.change_holder(pending.client, |holder| {
            holder.sessions.remove(&pending.sequence);
        });
        Some(pending)
    }

    /// Puts back a session [`Pool::remove`] took out (a refused batch's eviction).
    fn restore(&mut self, id: Uuid, pending: Pending) {
        let (sequence, client) = (pending.sequence, pending.client);
        self.by_age.insert(sequence, id);
        self.change_holder(client, |holder| {
            holder.sessions.insert(sequence, id);
        });
        self.by_id.insert(id, pending);
    }

    /// Removes up to `at_most` sessions expired at `now`, oldest first, into
    /// `expired` (for the caller to drop after releasing the lock).
    fn expire(&mut self, now: Instant, at_most: usize, expired: &mut Vec<Pending>) {
        for _ in 0..at_most {
            let Some((_, &id)) = self.by_age.first_key_value() else {
                return;
            };
            if self.by_id[&id].expires > now {
                return;
            }
            expired.extend(self.remove(&id));
        }
    }

    /// When the oldest session expires.
    fn next_expiry(&self) -> Option<Instant> {
        let (_, id) = self.by_age.first_key_value()?;
        Some(self.by_id[id].expires)
    }
}

/// The limits of a [`MemorySessionStore`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    ttl: Duration,
    max_pending: usize,
    /// 0: no share of its own, a client may hold the whole pool.
    max_pending_per_client: usize,
}

/// The pending sessions of embedded mode, in this process. Shared behind an `Arc`; every method holds the lock only
/// for a few map operations (never across an `.await`, never while doing crypto,
/// never to drop a key), so a `std::sync::Mutex` is the right lock.
pub(crate) struct MemorySessionStore {
    /// Makes every session key (`crypto.provider`); the keys open requests on it.
    provider: Provider,
    pool: Mutex<Pool>,
    limits: Limits,
    /// Makes the key pairs of the places reserved (`issuer`'s module doc).
    issuer: Issuer<(SessionSecret, [u8; POINT_LEN])>,
}

/// Places in the pool, held for one client while its key pairs are generated
/// outside the lock. Dropped before every place is fulfilled (a panic), it gives
/// the rest back.
struct Reservation<'a> {
    store: &'a MemorySessionStore,
    client: ClientKey,
    /// Places not yet fulfilled.
    remaining: usize,
}

impl Reservation<'_> {
    /// Puts one session in the pool, in a place reserved, expiring `ttl` after
    /// `now`.
    #[cfg(test)]
    fn fulfil(mut self, secret: SessionSecret, now: Instant) -> (Uuid, Instant) {
        let mut placed = self.fulfil_all(vec![secret], now);
        placed.remove(0)
    }

    /// Puts every session of `secrets` in the pool under one hold of the lock, in
    /// the order given (so in creation and expiry order), each in a place
    /// reserved. At most as many as were reserved.
    fn fulfil_all(&mut self, secrets: Vec<SessionSecret>, now: Instant) -> Vec<(Uuid, Instant)> {
        debug_assert!(secrets.len() <= self.remaining, "more sessions than places");
        let mut placed = Vec::with_capacity(secrets.len());
        let mut pool = self.store.lock();
        for secret in secrets {
            let id = Uuid::new_v4();
            let expires = pool
                .last_expiry
                .map_or(now + self.store.limits.ttl, |last| {
                    last.max(now + self.store.limits.ttl)
                });
            pool.last_expiry = Some(expires);
            let sequence = pool.next_sequence;
            pool.next_sequence += 1;
            pool.reserved -= 1;
            pool.change_holder(self.client, |holder| {
                holder.reserved -= 1;
                holder.sessions.insert(sequence, id);
            });
            pool.by_age.insert(sequence, id);
            pool.by_id.insert(
                id,
                Pending {
                    secret,
                    expires,
                    client: self.client,
                    sequence,
                },
            );
            self.remaining -= 1;
            placed.push((id, expires));
        }
        placed
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.remaining > 0 {
            let mut pool = self.store.lock();
            let remaining = self.remaining;
            pool.reserved -= remaining;
            pool.change_holder(self.client, |holder| holder.reserved -= remaining);
        }
    }
}

impl MemorySessionStore {
    /// A store of at most `max_pending` sessions living `ttl` each, with no share
    /// per client (see [`MemorySessionStore::with_client_share`]).
    pub(crate) fn new(provider: Provider, ttl: Duration, max_pending: usize) -> MemorySessionStore {
        MemorySessionStore {
            provider,
            pool: Mutex::new(Pool::default()),
            // Every queued derivation has a place reserved in the pool, so the
            // pool's bound is the queue's.
            issuer: Issuer::new(max_pending),
            limits: Limits {
                ttl,
                max_pending,
                max_pending_per_client: 0,
            },
        }
    }

    /// The provider session keys are made on; it also checks `enc` points.
    pub(crate) fn provider(&self) -> Provider {
        self.provider
    }

    /// Limits each client to `share` pending sessions; 0 for no limit.
    pub(crate) fn with_client_share(mut self, share: usize) -> MemorySessionStore {
        self.limits.max_pending_per_client = share;
        self
    }

    /// Makes a fresh key pair for `client` and keeps its private half until use,
    /// expiry or eviction, as [`MemorySessionStore::create_batch_for`] does but
    /// making the key on the caller's thread (for tests without a runtime).
    #[cfg(test)]
    pub(crate) fn create_for(&self, client: ClientKey) -> Result<IssuedSession, SessionError> {
        let mut reservation = self.reserve_many(client, 1, Instant::now())?;
        let (secret, public_key) = envelope::generate_session_key(self.provider);
        let placed = reservation.fulfil_all(vec![secret], Instant::now());
        Ok(self.issued(placed, vec![public_key]).remove(0))
    }

    /// Makes `count` sessions for `client` (protocol v1.1 §A), all or nothing:
    /// `count` places are reserved at once, as if the client asked for them one
    /// by one (its share, then the pool, evicting larger holders' oldest sessions
    /// as `count` single requests would), and a refusal reserves and evicts
    /// nothing. The keys are made by the store's [`Issuer`], off the async
    /// workers and in the client's turn, then inserted under one hold of the
    /// lock, in the order returned. Dropped while waiting (the client went
    /// away), it gives the places back.
    pub(crate) async fn create_batch_for(
        &self,
        client: ClientKey,
        count: usize,
    ) -> Result<Vec<IssuedSession>, SessionError> {
        let mut reservation = self.reserve_many(client, count, Instant::now())?;
        let provider = self.provider;
        let made = self
            .issuer
            .issue(client, count, 0, move || {
                Ok(envelope::generate_session_key(provider))
            })
            .await?;
        let (secrets, public_keys): (Vec<_>, Vec<_>) = made.into_iter().unzip();
        let placed = reservation.fulfil_all(secrets, Instant::now());
        Ok(self.issued(placed, public_keys))
    }

    /// The answer for sessions placed, with their public keys in order.
    fn issued(
        &self,
        placed: Vec<(Uuid, Instant)>,
        public_keys: Vec<[u8; POINT_LEN]>,
    ) -> Vec<IssuedSession> {
        let expires_at = SystemTime::now() + self.limits.ttl;
        placed
            .into_iter()
            .zip(public_keys)
            .map(|((id, _), public_key)| IssuedSession {
                id,
                public_key,
                expires_at,
            })
            .collect()
    }

    /// [`MemorySessionStore::create_for`] the one client of a caller that has no
    /// others: the unspecified address, the client `api` gives a request served
    /// without a socket.
    #[cfg(test)]
    pub(crate) fn create(&self) -> Result<IssuedSession, SessionError> {
        use std::net::{IpAddr, Ipv4Addr};
        self.create_for(ClientKey::address(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }

    /// Reserves a place for one more session of `client` at `now`, evicting the
    /// largest holder's oldest session if the pool is full (module doc).
    #[cfg(test)]
    fn reserve(&self, client: ClientKey, now: Instant) -> Result<Reservation<'_>, SessionError> {
        self.reserve_many(client, 1, now)
    }

    /// Reserves `count` places for `client` at `now`: refused if its share cannot
    /// take them all; then, for each place the pool lacks, the session that a
    /// request for one more would evict (the largest holder's oldest, if that
    /// holder holds more than the asker would by then), or, if there is none, a
    /// refusal that puts back every session evicted so far.
    fn reserve_many(
        &self,
        client: ClientKey,
        count: usize,
        now: Instant,
    ) -> Result<Reservation<'_>, SessionError> {
        let limits = self.limits;
        // Keys to destroy, after the lock is released.
        let mut dropped = Vec::new();
        let reserved = {
            let mut pool = self.lock();
            pool.expire(now, SWEEP_BATCH, &mut dropped);
            let holding = pool.holding(&client);
            if limits.max_pending_per_client > 0 && holding + count > limits.max_pending_per_client
            {
                let own_oldest = pool
                    .holders
                    .get(&client)
                    .and_then(|holder| holder.sessions.first_key_value())
                    .map(|(_, id)| pool.by_id[id].expires);
                return Err(SessionError::ClientShareReached {
                    retry_after: retry_after(own_oldest, now),
                });
            }
            let occupied = pool.by_id.len() + pool.reserved;
            let free = limits.max_pending.saturating_sub(occupied).min(count);
            let mut evicted = Vec::new();
            for place in free..count {
                // The asker would hold `holding + place` when asking for this one.
                let victim = pool
                    .ranks
                    .last()
                    .filter(|(held, _, _)| *held > holding + place)
                    .map(|&(_, Reverse(sequence), _)| pool.by_age[&sequence]);
                match victim {
                    Some(id) => evicted.extend(pool.remove(&id).map(|pending| (id, pending))),
                    None => {
                        let refusal = SessionError::TooManyPending {
                            retry_after: retry_after(pool.next_expiry(), now),
                        };
                        // All or nothing: the batch evicts no one it does not replace.
                        for (id, pending) in evicted.into_iter().rev() {
                            pool.restore(id, pending);
                        }
                        return Err(refusal);
                    }
                }
            }
            dropped.extend(evicted.into_iter().map(|(_, pending)| pending));
            pool.reserved += count;
            pool.change_holder(client, |holder| holder.reserved += count);
            Reservation {
                store: self,
                client,
                remaining: count,
            }
        };
        drop(dropped);
        Ok(reserved)
    }

    /// Whether `id` names a live session, without using it.
    pub(crate) fn is_live(&self, id: &Uuid) -> bool {
        let now = Instant::now();
        self.lock()
            .by_id
            .get(id)
            .is_some_and(|session| session.expires > now)
    }

    /// Removes the session and hands over its key: after this, `id` is unknown
    /// whatever the caller does with the key.
    pub(crate) fn take(&self, id: &Uuid) -> Result<SessionSecret, SessionError> {
        let session = self.lock().remove(id).ok_or(SessionError::Unknown)?;
        if session.expires <= Instant::now() {
            return Err(SessionError::Unknown);
        }
        Ok(session.secret)
    }

    /// Destroys every session expired at `now`, [`SWEEP_BATCH`] at a time; returns
    /// when the next one expires, if any is pending.
    pub(crate) fn sweep(&self, now: Instant) -> Option<Instant> {
        loop {
            let mut expired = Vec::new();
            let next = {
                let mut pool = self.lock();
                pool.expire(now, SWEEP_BATCH, &mut expired);
                pool.next_expiry()
            };
            let more = expired.len() == SWEEP_BATCH;
            drop(expired);
            if !more {
                return next;
            }
        }
    }

    /// Sessions issued and neither used, expired (and swept) nor evicted.
    pub(crate) fn pending(&self) -> usize {
        self.lock().by_id.len()
    }

    /// How long a session lives.
    pub(crate) fn ttl(&self) -> Duration {
        self.limits.ttl
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // Every critical section either completes its updates or panics before
        // the first (the indexes are updated together, by code that does not
        // panic on a consistent pool), so a poisoned lock is safe to keep using.
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Until `expiry`, at least [`RETRY_SOON`] if none is due.
fn retry_after(expiry: Option<Instant>, now: Instant) -> Duration {
    expiry.map_or(RETRY_SOON, |expiry| expiry.saturating_duration_since(now))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn address(n: u16) -> ClientKey {
        let [high, low] = n.to_be_bytes();
        ClientKey::address(IpAddr::from([192, 0, high, low]))
    }

    /// Creates a session for `client` at `now`, as `create_for` does.
    fn create_at(
        store: &MemorySessionStore,
        client: ClientKey,
        now: Instant,
    ) -> Result<Uuid, SessionError> {
        let reservation = store.reserve(client, now)?;
        let (secret, _) = envelope::generate_session_key(store.provider);
        Ok(reservation.fulfil(secret, now).0)
    }

    fn check_invariants(store: &MemorySessionStore) {
        let pool = store.lock();
        assert_eq!(pool.by_id.len(), pool.by_age.len());
        for (sequence, id) in &pool.by_age {
            let pending = &pool.by_id[id];
            assert_eq!(pending.sequence, *sequence);
            assert_eq!(pool.holders[&pending.client].sessions[sequence], *id);
        }
        let mut expiries = pool.by_age.values().map(|id| pool.by_id[id].expires);
        if let Some(mut previous) = expiries.next() {
            for expiry in expiries {
                assert!(previous <= expiry, "expiry order is creation order");
                previous = expiry;
            }
        }
        let held: usize = pool.holders.values().map(|h| h.sessions.len()).sum();
        assert_eq!(held, pool.by_id.len());
        let reserved: usize = pool.holders.values().map(|h| h.reserved).sum();
        assert_eq!(reserved, pool.reserved);
        assert!(pool.holders.values().all(|holder| holder.holding() > 0));
        let ranks: BTreeSet<Rank> = pool
            .holders
            .iter()
            .filter_map(|(client, holder)| rank_of(*client, holder))
            .collect();
        assert_eq!(ranks, pool.ranks);
        let limits = store.limits;
        assert!(pool.by_id.len() + pool.reserved <= limits.max_pending);
        if limits.max_pending_per_client > 0 {
            assert!(
                pool.holders
                    .values()
                    .all(|holder| holder.holding() <= limits.max_pending_per_client)
            );
        }
    }

    #[tokio::test]
    async fn a_batch_is_single_use_sessions_in_creation_order() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 100).with_client_share(10);
        let batch = store.create_batch_for(address(1), 10).await.unwrap();
        assert_eq!(batch.len(), 10);
        assert_eq!(store.pending(), 10);
        for session in &batch {
            assert!(store.take(&session.id).is_ok());
            assert_eq!(store.take(&session.id).err(), Some(SessionError::Unknown));
        }
        check_invariants(&store);
    }

    #[tokio::test]
    async fn a_batch_past_the_share_or_the_pool_is_refused_whole() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 6).with_client_share(4);
        store.create_batch_for(address(1), 3).await.unwrap();
        assert!(matches!(
            store.create_batch_for(address(1), 2).await,
            Err(SessionError::ClientShareReached { .. })
        ));
        assert_eq!(store.pending(), 3);
        // Two places are free; a batch of 4 from a new client takes them, then
        // evicts client 1's oldest for the third (3 > 0 + 2) but finds no one for
        // the fourth (2 > 0 + 3 does not hold): refused, and the eviction undone.
        store.create_batch_for(address(2), 1).await.unwrap();
        assert!(matches!(
            store.create_batch_for(address(3), 4).await,
            Err(SessionError::TooManyPending { .. })
        ));
        assert_eq!(store.pending(), 4);
        check_invariants(&store);
        // Two fit, and a third evicts client 1's oldest (3 > 0 + 2).
        let batch = store.create_batch_for(address(3), 3).await.unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(store.pending(), 6);
        check_invariants(&store);
    }

    #[test]
    fn a_session_can_be_taken_once() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 10);
        let session = store.create().unwrap();
        assert!(store.is_live(&session.id));
        assert!(store.take(&session.id).is_ok());
        assert!(!store.is_live(&session.id));
        assert_eq!(store.take(&session.id).err(), Some(SessionError::Unknown));
        assert_eq!(store.pending(), 0);
        check_invariants(&store);
    }

    #[test]
    fn expired_sessions_cannot_be_taken() {
        let store = MemorySessionStore::new(Provider::default(), Duration::ZERO, 10);
        let session = store.create().unwrap();
        assert!(!store.is_live(&session.id));
        assert_eq!(store.take(&session.id).err(), Some(SessionError::Unknown));
    }

    #[test]
    fn unknown_ids_are_unknown() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 10);
        assert_eq!(
            store.take(&Uuid::new_v4()).err(),
            Some(SessionError::Unknown)
        );
    }

    #[test]
    fn sessions_expire_in_creation_order_and_the_sweep_says_when_the_next_does() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 10);
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let ids: Vec<Uuid> = (0..3)
            .map(|n| create_at(&store, address(1), start + n * second).unwrap())
            .collect();
        assert_eq!(store.sweep(start), Some(start + MINUTE));
        // A minute and a second later, the first two have gone; the third is due
        // a second after.
        assert_eq!(
            store.sweep(start + MINUTE + second),
            Some(start + MINUTE + 2 * second)
        );
        assert_eq!(store.pending(), 1);
        assert!(!store.is_live(&ids[0]) && !store.is_live(&ids[1]));
        assert!(store.is_live(&ids[2]));
        assert_eq!(store.sweep(start + 2 * MINUTE), None);
        assert_eq!(store.pending(), 0);
        check_invariants(&store);
    }

    #[test]
    fn a_sweep_destroys_more_than_a_batch_of_expired_sessions() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 3 * SWEEP_BATCH);
        let start = Instant::now();
        for n in 0..(2 * SWEEP_BATCH + 5) {
            create_at(&store, address(n as u16), start).unwrap();
        }
        assert_eq!(store.sweep(start + MINUTE), None);
        assert_eq!(store.pending(), 0);
        check_invariants(&store);
    }

    #[test]
    fn a_client_past_its_share_is_refused_until_its_oldest_session_expires() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 100).with_client_share(2);
        let start = Instant::now();
        create_at(&store, address(1), start).unwrap();
        create_at(&store, address(1), start + Duration::from_secs(10)).unwrap();
        let later = start + Duration::from_secs(20);
        assert_eq!(
            create_at(&store, address(1), later).err(),
            Some(SessionError::ClientShareReached {
                retry_after: Duration::from_secs(40)
            })
        );
        // Another client is not affected.
        create_at(&store, address(2), later).unwrap();
        // Once the first has expired, the client may have another.
        create_at(&store, address(1), start + MINUTE).unwrap();
        assert_eq!(store.pending(), 3);
        check_invariants(&store);
    }

    #[test]
    fn a_reservation_counts_against_the_share_and_is_given_back_if_never_fulfilled() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 100).with_client_share(1);
        let now = Instant::now();
        let reservation = store.reserve(address(1), now).unwrap();
        assert!(matches!(
            store.reserve(address(1), now).err(),
            Some(SessionError::ClientShareReached { .. })
        ));
        check_invariants(&store);
        // As if key generation had panicked.
        drop(reservation);
        check_invariants(&store);
        assert!(store.lock().holders.is_empty());
        create_at(&store, address(1), now).unwrap();
    }

    #[test]
    fn a_full_pool_evicts_the_oldest_session_of_the_client_that_holds_the_most() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 4);
        let now = Instant::now();
        let big: Vec<Uuid> = (0..3)
            .map(|_| create_at(&store, address(1), now).unwrap())
            .collect();
        let small = create_at(&store, address(2), now).unwrap();
        // Full. A newcomer takes the place of the big holder's oldest session,
        // which is then unknown, like an expired one.
        let newcomer = create_at(&store, address(3), now).unwrap();
        assert_eq!(store.pending(), 4);
        assert!(!store.is_live(&big[0]));
        assert_eq!(store.take(&big[0]).err(), Some(SessionError::Unknown));
        assert!(store.is_live(&big[1]) && store.is_live(&small) && store.is_live(&newcomer));
        // Holdings 2, 1, 1: client 1 may not grow at anyone's expense, client 2
        // may grow to 2 at client 1's.
        assert!(matches!(
            create_at(&store, address(1), now),
            Err(SessionError::TooManyPending { .. })
        ));
        create_at(&store, address(2), now).unwrap();
        assert!(!store.is_live(&big[1]) && store.is_live(&big[2]));
        check_invariants(&store);
    }

    #[test]
    fn among_equal_holders_the_one_with_the_oldest_session_is_evicted() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 4);
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let late_a = create_at(&store, address(1), at(2)).unwrap();
        let early_b = create_at(&store, address(2), at(3)).unwrap();
        let late_b = create_at(&store, address(2), at(4)).unwrap();
        let later_a = create_at(&store, address(1), at(5)).unwrap();
        // Both hold 2; client 1's oldest is older.
        create_at(&store, address(3), at(6)).unwrap();
        assert!(!store.is_live(&late_a));
        assert!(store.is_live(&early_b) && store.is_live(&late_b) && store.is_live(&later_a));
        check_invariants(&store);
    }

    #[test]
    fn a_full_pool_refuses_a_client_that_holds_as_much_as_anyone() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 4);
        let start = Instant::now();
        for n in 0..4 {
            create_at(&store, address(n), start).unwrap();
        }
        let later = start + Duration::from_secs(15);
        assert_eq!(
            create_at(&store, address(0), later).err(),
            Some(SessionError::TooManyPending {
                retry_after: Duration::from_secs(45)
            })
        );
        // A client holding none is still served.
        create_at(&store, address(9), later).unwrap();
        assert_eq!(store.pending(), 4);
        check_invariants(&store);
    }

    #[test]
    fn more_clients_than_places_keep_the_pool_bounded_and_one_holding_none_is_served() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 64).with_client_share(8);
        let now = Instant::now();
        let first = create_at(&store, address(0), now).unwrap();
        for round in 0..10 {
            for client in 1..=500 {
                match create_at(&store, address(client), now) {
                    Ok(_) | Err(SessionError::TooManyPending { .. }) => {}
                    Err(other) => panic!("{other:?}"),
                }
                assert!(store.pending() <= 64);
            }
            // Some sessions are used meanwhile.
            let some: Vec<Uuid> = store.lock().by_id.keys().copied().take(round).collect();
            for id in &some {
                store.take(id).unwrap();
            }
            check_invariants(&store);
            create_at(&store, address(1000 + round as u16), now).unwrap();
        }
        // 500 clients over 64 places all hold one at most, so they push out each
        // other's sessions, oldest first: client 0's went as soon as the pool
        // was full, but client 0, holding none, is served again.
        assert!(!store.is_live(&first));
        create_at(&store, address(0), now).unwrap();
        check_invariants(&store);
    }

    #[test]
    fn a_client_holding_one_session_keeps_it_while_fewer_clients_than_places_compete() {
        let store = MemorySessionStore::new(Provider::default(), MINUTE, 64).with_client_share(8);
        let now = Instant::now();
        let patient = create_at(&store, address(0), now).unwrap();
        // 32 other clients each want 8: the pool is full and they push each other
        // out, but someone always holds 2 or more, so a holder of one is never the
        // victim.
        for _ in 0..8 {
            for client in 1..=32 {
                let _ = create_at(&store, address(client), now);
            }
        }
        assert_eq!(store.pending(), 64);
        assert!(store.is_live(&patient));
        check_invariants(&store);
    }
}
