//! Who may call the service, and how much: bearer tokens (kept only as SHA-256
//! digests, compared in constant time) and per-client quotas (a request rate and a
//! number of executions in flight) in a table whose size is bounded.
//!
//! No HTTP here: `api` reads the `Authorization` header and the client's address
//! and asks this module; this module says yes, or no and for how long.
//!
//! Architecture invariant: a token is hashed as soon as it is read and never kept,
//! logged or compared other than as a digest. Only a token that matched becomes a
//! client key, so made-up tokens cannot create entries in the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::envelope;

/// Why a client may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The client is over its request rate; it may retry after `retry_after`.
    #[error("the client's request rate is over its limit")]
    RateLimited { retry_after: Duration },
    /// The client already has as many executions in flight as it may.
    #[error("the client has as many executions in flight as it may")]
    TooManyExecutions,
    /// Every tracked client is busy, so a new one cannot be tracked now.
    #[error("too many clients are busy to track another")]
    TableFull,
}

/// A set of accepted bearer tokens, as their SHA-256 digests.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    digests: Arc<[[u8; 32]]>,
}

impl TokenSet {
    /// The tokens whose SHA-256 digests these are.
    pub fn from_digests(digests: impl IntoIterator<Item = [u8; 32]>) -> TokenSet {
        TokenSet {
            digests: digests.into_iter().collect(),
        }
    }

    /// No token is configured: the endpoints it guards are open.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The digest of `token` if it is one of the set. Every stored digest is
    /// compared, in constant time, without stopping at a match, so the time taken
    /// says nothing about which digest (or how much of one) matched.
    pub fn accept(&self, token: &str) -> Option<[u8; 32]> {
        let digest = envelope::sha256(token.as_bytes());
        let found = self.digests.iter().fold(false, |found, known| {
            found | envelope::digest_eq(known, &digest)
        });
        found.then_some(digest)
    }
}

/// A fresh bearer token: 32 random bytes from `provider`'s RNG, base64url without
/// padding (43 characters), and its lowercase hex SHA-256 digest for
/// `auth.tokens_sha256`.
pub fn new_token(
    provider: envelope::Provider,
) -> Result<(String, String), envelope::EnvelopeError> {
    let bytes: [u8; 32] = envelope::random_bytes(provider)?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let digest = hex::encode(envelope::sha256(token.as_bytes()));
    Ok((token, digest))
}

/// Whom a quota, or a share of the pending sessions (`session`), belongs to.
/// Ordered only so that it can break ties in ordered sets; the order means nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    /// A client that authenticated: the digest of its token.
    Token([u8; 32]),
    /// Any other client: its address. IPv6 addresses are cut to their /64, since
    /// one host commonly has a whole /64 to itself.
    Address(IpAddr),
}

/// What a request may see of what earlier requests left: the blobs of protocol
/// v1.1 §D and the answers of long jobs (§F). With authentication on, a client's
/// scope is its token; with it off, every client shares the open scope (not the
/// address: a client may come back from another one, behind a NAT or after
/// changing networks; an async answer's id, 122 random bits, is then the
/// capability, and the answer is sealed to its sender anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Authentication is off.
    Open,
    /// The client authenticated with the token of this digest.
    Token([u8; 32]),
}

impl Scope {
    /// The scope of a request made by `client`.
    pub fn of(client: ClientKey) -> Scope {
        match client {
            ClientKey::Token(digest) => Scope::Token(digest),
            ClientKey::Address(_) => Scope::Open,
        }
    }
}

impl ClientKey {
    pub fn address(address: IpAddr) -> ClientKey {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                ClientKey::Address(IpAddr::V6(prefix.into()))
            }
            v4 => ClientKey::Address(v4),
        }
    }
}

/// The limits of one client.
#[derive(Debug, Clone, Copy)]
pub struct QuotaSettings {
    /// Sustained requests a second; 0 for no rate limit.
    pub requests_per_second: u32,
    /// Requests allowed at once above the rate (the bucket's size), >= 1.
    pub burst: u32,
    /// Executions in flight; 0 for no limit.
    pub max_concurrent_executions: u32,
    /// Most clients tracked at once.
    pub max_tracked: usize,
}

/// What is known of one client: a token bucket and its executions in flight.
#[derive(Debug)]
struct Client {
    /// Requests it may make now (a token bucket, refilled lazily).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
    executions: u32,
    last_seen: Instant,
}

struct Table {
    clients: HashMap<ClientKey, Client>,
}

struct Shared {
    settings: QuotaSettings,
    /// A `std` mutex: held for a map lookup and some arithmetic, never across an
    /// `.await`.
    table: Mutex<Table>,
}

/// The per-client quotas; cheap to clone.
#[derive(Clone)]
pub struct Quotas {
    shared: Arc<Shared>,
}

impl Quotas {
    pub fn new(settings: QuotaSettings) -> Quotas {
        Quotas {
            shared: Arc::new(Shared {
                settings,
                table: Mutex::new(Table {
                    clients: HashMap::new(),
                }),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while the lock was held cannot leave the table inconsistent in a
        // way that matters more than refusing every client would.
        self.shared
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one request of `client` at `now` against its rate.
    pub fn check_request(&self, client: ClientKey, now: Instant) -> Result<(), QuotaError> {
        let settings = self.shared.settings;
        if settings.requests_per_second == 0 {
            return Ok(());
        }
        let mut table = self.table();
        let entry = table.entry(client, now, &settings)?;
        if entry.tokens >= 1.0 {
            entry.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - entry.tokens) / f64::from(settings.requests_per_second);
            Err(QuotaError::RateLimited {
                retry_after: Duration::from_secs_f64(wait),
            })
        }
    }

    /// Takes one of `client`'s execution slots until the permit is dropped.
    pub fn begin_execution(
        &self,
        client: ClientKey,
        now: Instant,
    ) -> Result<ExecutionPermit, QuotaError> {
        let settings = self.shared.settings;
        if settings.max_concurrent_executions == 0 {
            return Ok(ExecutionPermit { _held: None });
        }
        let mut table = self.table();
        let entry = table.entry(client, now, &settings)?;
        if entry.executions >= settings.max_concurrent_executions {
            return Err(QuotaError::TooManyExecutions);
        }
        entry.executions += 1;
        Ok(ExecutionPermit {
            _held: Some(Arc::new(HeldSlot {
                quotas: self.clone(),
                client,
            })),
        })
    }

    /// Executions `client` has in flight.
    pub fn executions(&self, client: ClientKey) -> u32 {
        self.table()
            .clients
            .get(&client)
            .map_or(0, |entry| entry.executions)
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.table().clients.len()
    }

    fn end_execution(&self, client: ClientKey) {
        // Entries with executions in flight are never evicted, so it is there.
        if let Some(entry) = self.table().clients.get_mut(&client) {
            entry.executions = entry.executions.saturating_sub(1);
        }
    }
}

impl Table {
    /// `client`'s entry, refilled up to `now`; created if new. When the table is
    /// full, idle clients (a full bucket and nothing in flight: forgetting them
    /// changes nothing) are dropped first, then the least recently seen client
    /// with nothing in flight (which may get a fresh bucket sooner than it would
    /// have). A client with executions in flight is never dropped, so its count
    /// stays true; if all of them are, the new client is refused.
    fn entry(
        &mut self,
        client: ClientKey,
        now: Instant,
        settings: &QuotaSettings,
    ) -> Result<&mut Client, QuotaError> {
        let burst = f64::from(settings.burst);
        let rate = f64::from(settings.requests_per_second);
        let refill = |entry: &mut Client| {
            let elapsed = now.saturating_duration_since(entry.refilled).as_secs_f64();
            entry.tokens = (entry.tokens + elapsed * rate).min(burst);
            entry.refilled = now;
        };
        if !self.clients.contains_key(&client) && self.clients.len() >= settings.max_tracked {
            self.clients.retain(|_, entry| {
                refill(entry);
                // With no rate limit the bucket is never drawn from.
                let rested = rate == 0.0 || entry.tokens >= burst;
                !(rested && entry.executions == 0)
            });
            if self.clients.len() >= settings.max_tracked {
                let oldest = self
                    .clients
                    .iter()
                    .filter(|(_, entry)| entry.executions == 0)
                    .min_by_key(|(_, entry)| entry.last_seen)
                    .map(|(key, _)| *key)
                    .ok_or(QuotaError::TableFull)?;
                self.clients.remove(&oldest);
            }
        }
        let entry = self.clients.entry(client).or_insert(Client {
            tokens: burst,
            refilled: now,
            executions: 0,
            last_seen: now,
        });
        refill(entry);
        entry.last_seen = now;
        Ok(entry)
    }
}

/// One execution slot of one client, given back when the last clone is dropped:
/// when the execution ends, whether it succeeded, failed, panicked or its client
/// went away.
#[derive(Clone)]
pub struct ExecutionPermit {
    /// Kept for its `Drop`, which gives the slot back.
    _held: Option<Arc<HeldSlot>>,
}

struct HeldSlot {
    quotas: Quotas,
    client: ClientKey,
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        self.quotas.end_execution(self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, burst: u32, executions: u32, tracked: usize) -> QuotaSettings {
        QuotaSettings {
            requests_per_second: rate,
            burst,
            max_concurrent_executions: executions,
            max_tracked: tracked,
        }
    }

    fn address(last: u8) -> ClientKey {
        ClientKey::address(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn a_burst_is_allowed_then_the_rate_refills_it() {
        let quotas = Quotas::new(settings(2, 3, 0, 16));
        let start = Instant::now();
        for _ in 0..3 {
            quotas.check_request(address(1), start).unwrap();
        }
        let Err(QuotaError::RateLimited { retry_after }) = quotas.check_request(address(1), start)
        else {
            panic!("the fourth request at once is over the burst");
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        // Another client is not affected.
        quotas.check_request(address(2), start).unwrap();
        // Half a second later one request is allowed again, and only one.
        let later = start + Duration::from_millis(500);
        quotas.check_request(address(1), later).unwrap();
        assert!(quotas.check_request(address(1), later).is_err());
        // Long after, no more than the burst has accumulated.
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            quotas.check_request(address(1), much_later).unwrap();
        }
        assert!(quotas.check_request(address(1), much_later).is_err());
    }

    #[test]
    fn a_rate_of_zero_limits_nothing() {
        let quotas = Quotas::new(settings(0, 1, 0, 16));
        let now = Instant::now();
        for _ in 0..1000 {
            quotas.check_request(address(1), now).unwrap();
        }
        assert_eq!(quotas.tracked(), 0);
    }

    #[test]
    fn executions_are_counted_until_every_permit_clone_is_dropped() {
        let quotas = Quotas::new(settings(0, 1, 2, 16));
        let now = Instant::now();
        let first = quotas.begin_execution(address(1), now).unwrap();
        let second = quotas.begin_execution(address(1), now).unwrap();
        assert_eq!(
            quotas.begin_execution(address(1), now).err(),
            Some(QuotaError::TooManyExecutions)
        );
        assert!(quotas.begin_execution(address(2), now).is_ok());
        let clone = first.clone();
        drop(first);
        assert_eq!(quotas.executions(address(1)), 2);
        drop(clone);
        assert_eq!(quotas.executions(address(1)), 1);
        let _third = quotas.begin_execution(address(1), now).unwrap();
        drop(second);
        assert_eq!(quotas.executions(address(1)), 1);
    }

    #[test]
    fn the_table_stays_bounded_and_never_forgets_a_client_with_executions_in_flight() {
        let quotas = Quotas::new(settings(1, 5, 1, 16));
        let now = Instant::now();
        let busy = quotas.begin_execution(address(0), now).unwrap();
        // Many addresses, each with a bucket not yet refilled, so not idle.
        for last in 1..=200 {
            quotas.check_request(address(last), now).unwrap();
            assert!(quotas.tracked() <= 16);
        }
        assert_eq!(quotas.executions(address(0)), 1);
        assert_eq!(
            quotas.begin_execution(address(0), now).err(),
            Some(QuotaError::TooManyExecutions),
            "the busy client was not forgotten"
        );
        drop(busy);
        assert_eq!(quotas.executions(address(0)), 0);
    }

    #[test]
    fn a_table_full_of_busy_clients_refuses_a_new_one_until_one_finishes() {
        let quotas = Quotas::new(settings(1, 5, 1, 16));
        let now = Instant::now();
        let permits: Vec<_> = (0..16)
            .map(|last| quotas.begin_execution(address(last), now).unwrap())
            .collect();
        assert_eq!(
            quotas.check_request(address(100), now).err(),
            Some(QuotaError::TableFull)
        );
        drop(permits);
        quotas.check_request(address(100), now).unwrap();
        assert!(quotas.tracked() <= 16);
    }

    #[test]
    fn idle_clients_are_forgotten_before_recent_ones() {
        let quotas = Quotas::new(settings(10, 2, 0, 16));
        let start = Instant::now();
        for last in 0..16 {
            quotas.check_request(address(last), start).unwrap();
        }
        // Client 15 drains its bucket a second later; the others' refill meanwhile.
        let later = start + Duration::from_secs(1);
        quotas.check_request(address(15), later).unwrap();
        quotas.check_request(address(15), later).unwrap();
        quotas.check_request(address(200), later).unwrap();
        // The rested clients went; the one with an empty bucket is still limited.
        assert!(quotas.check_request(address(15), later).is_err());
        assert_eq!(quotas.tracked(), 2);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_bit_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::address(a), ClientKey::address(b));
        assert_ne!(ClientKey::address(a), ClientKey::address(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::address(mapped), address(7));
    }

    #[test]
    fn a_token_set_accepts_exactly_its_tokens() {
        let (token, digest) = new_token(envelope::Provider::default()).unwrap();
        assert_eq!(token.len(), 43);
        let mut digest_bytes = [0u8; 32];
        hex::decode_to_slice(&digest, &mut digest_bytes).unwrap();
        let set = TokenSet::from_digests([[0u8; 32], digest_bytes]);
        assert_eq!(set.accept(&token).map(hex::encode), Some(digest));
        assert_eq!(set.accept("guess"), None);
        assert_eq!(set.accept(""), None);
        assert!(TokenSet::default().is_empty());
        assert_ne!(new_token(envelope::Provider::default()).unwrap().0, token);
    }
}
