//! Who may call and how much: the `auth` section (bearer tokens), `clients`
//! (per-client rates, concurrency, trusted proxies) and `quotas` (usage per hour
//! and per day).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Bounded, TokenDigest, value};

/// Optional bearer-token authentication of `POST /sessions` and `POST /execute`,
/// and separately of `GET /metrics`. What `/metrics` shows depends on both keys:
///
/// | `tokens_sha256` | `metrics_tokens_sha256` | `GET /metrics` |
/// | --- | --- | --- |
/// | empty | empty | open; counts and gauges only, nothing measured per execution |
/// | any | set | a metrics token required; every series |
/// | set | empty | closed: 401 to everyone (the server says so at start) |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lowercase hex SHA-256 digests of the accepted bearer tokens (the tokens
    /// themselves are never stored). Empty (the default) disables authentication:
    /// anyone who can reach the port may run code, and the server says so at start
    /// when it listens on anything but loopback. Make a token and its digest with
    /// `wasm-hypervisor token`.
    pub tokens_sha256: Vec<TokenDigest>,
    /// Lowercase hex SHA-256 digests of the bearer tokens accepted by `GET
    /// /metrics` (a scraper's, not a client's); a scraper with one sees every
    /// series, including fuel, guest, compile and request times and module cache
    /// lookups. Empty (the default): with authentication off `/metrics` is open
    /// but shows only counts by status and the gauges, which say nothing about one
    /// execution's content; with authentication on it is closed (401).
    pub metrics_tokens_sha256: Vec<TokenDigest>,
}

/// Per-client limits. A client is its bearer token when authentication is on
/// (`POST /sessions`, `POST /execute`), otherwise its address: the socket peer, or
/// the address a trusted proxy forwarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientsConfig {
    /// Requests a second one client may make, sustained, to every endpoint but
    /// `/health` (which has `http.health_requests_per_second`), unknown routes and
    /// methods included; past it, 429 `rate_limited` with `Retry-After`. 0 turns
    /// the rate limit off. 0..=1000000, default 100.
    pub requests_per_second: Bounded<0, 1_000_000>,
    /// Requests one client may make at once above the sustained rate (the bucket's
    /// size). 1..=4294967295, default 200.
    pub burst: Bounded<1, { u32::MAX as u64 }>,
    /// `POST /execute` requests one client may have in flight (queued or running);
    /// past it, 429 `too_many_executions`. 0 turns the limit off. 0..=10000,
    /// default 16.
    pub max_concurrent_executions: Bounded<0, 10_000>,
    /// Most clients tracked at once. Idle clients are forgotten first; when every
    /// tracked client is busy, a new one gets 429 `rate_limited`. 16..=10000000,
    /// default 100000 (about 10 MB).
    pub max_tracked: Bounded<16, 10_000_000>,
    /// Seconds of compilation one client may use per hour (a token bucket that
    /// holds an hour's worth, charged with each compilation's duration). A client
    /// with nothing left gets `invalid_module` with a retryable error for modules
    /// that are not cached; cached modules still run. 0 turns the budget off.
    /// 0..=360000, default 600.
    pub compile_seconds_per_hour: Bounded<0, 360_000>,
    /// Reverse proxies (CIDRs such as `10.0.0.0/8`, or single addresses, which are
    /// networks of one) whose `X-Forwarded-For` or `Forwarded` header names the
    /// client. Requests from any other peer are keyed by the peer's address,
    /// whatever they claim. Default empty: headers are never trusted.
    #[serde(with = "value::networks")]
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        ClientsConfig {
            requests_per_second: Bounded::constant::<100>(),
            burst: Bounded::constant::<200>(),
            max_concurrent_executions: Bounded::constant::<16>(),
            max_tracked: Bounded::constant::<100_000>(),
            compile_seconds_per_hour: Bounded::constant::<600>(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Each client's quotas of usage (protocol v1.2 §U), per UTC hour and per UTC
/// day; a client is as in `clients`. Usage counts logged executions, the sum of
/// their `fuel_consumed`, and the bytes of their sealed requests (in) and sealed
/// results (out); `GET /usage` shows a client its own. A request of a client
/// that has reached any quota is refused before its session is used, 429
/// `quota_exceeded` with `Retry-After` the seconds until the window ends. A
/// request is checked before it runs and counted once logged, so executions in
/// flight when a quota is crossed complete and may carry the client past it
/// (in cluster mode also by what the other replicas counted in their last
/// second). Default: no quota.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    /// Quotas of each UTC hour (from a whole hour).
    pub per_hour: QuotaLimits,
    /// Quotas of each UTC day (from midnight UTC).
    pub per_day: QuotaLimits,
}

/// The most one client may use in one window; 0 for no limit on that count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaLimits {
    /// Logged executions. Default 0 (none).
    pub executions: u64,
    /// Fuel: the sum of the results' `fuel_consumed`. Default 0 (none).
    pub fuel: u64,
    /// Bytes of sealed requests (`ciphertext`, tag included). Default 0 (none).
    pub bytes_in: u64,
    /// Bytes of sealed results (`ciphertext`, tag included). Default 0 (none).
    pub bytes_out: u64,
}
