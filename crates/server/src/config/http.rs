//! The `http` section: the HTTP layer's protection against slow, oversized and
//! idle clients.

use serde::{Deserialize, Serialize};

use super::{Bounded, Millis, Secs};

/// Protection of the HTTP layer against slow, oversized and idle clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Milliseconds a connection may take to send a request's headers, counted
    /// from when the server starts waiting for them (also on an idle keep-alive
    /// connection); then it is closed. 100..=600000, default 10000.
    pub header_read_timeout_ms: Millis<100, 600_000>,
    /// Milliseconds a client may take to send a whole request body; past it, 408
    /// `request_timeout`. 100..=3600000, default 60000.
    pub body_read_timeout_ms: Millis<100, 3_600_000>,
    /// Bytes of request line and headers accepted; past it, 431
    /// `headers_too_large`. 1024..=1048576, default 16384.
    pub max_header_bytes: Bounded<1024, { 1 << 20 }>,
    /// Connections open at once. When a new one arrives at this cap, the oldest
    /// idle connection (no request in flight, no response stalled) is closed to
    /// admit it; if none is idle, the new one waits in the kernel's backlog until a
    /// connection closes or goes idle. 1..=1000000, default 4096.
    pub max_connections: Bounded<1, 1_000_000>,
    /// Connections open at once from one address (an IPv6 address counts as its
    /// /64), counted by the TCP peer. A connection past it answers its request 429
    /// `too_many_connections` and is closed. Peers in `clients.trusted_proxies`
    /// carry many clients and are bounded only by `max_connections`. Above
    /// `max_connections` it has no effect. 1..=1000000, default 64.
    pub max_connections_per_address: Bounded<1, 1_000_000>,
    /// Milliseconds a response write may make no progress (the client does not
    /// read and the socket's buffers are full); then the connection is closed.
    /// 100..=600000, default 10000.
    pub response_write_timeout_ms: Millis<100, 600_000>,
    /// Seconds a connection may stay open: then it is closed at once if idle,
    /// else after the response in flight, which says `Connection: close`.
    /// 1..=86400, default 3600.
    pub max_connection_age_secs: Secs<1, 86_400>,
    /// Requests one connection may make; the last is answered with `Connection:
    /// close` and the connection is closed after it. Requests are answered one at a
    /// time; pipelined ones wait, unread, in a bounded buffer. 1..=1000000,
    /// default 1000.
    pub max_requests_per_connection: Bounded<1, 1_000_000>,
    /// Requests a second to `GET /health` from one address (the one the per-client
    /// rate would use), in bursts of twice that; past it, 429 `rate_limited`. A
    /// bucket of its own, apart from `clients.requests_per_second`, so that a load
    /// balancer's probes (a few a second) never see a 429 however busy the API is
    /// from the same address. 0 turns it off. 0..=1000000, default 10.
    pub health_requests_per_second: Bounded<0, 1_000_000>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_ms: Millis::constant::<10_000>(),
            body_read_timeout_ms: Millis::constant::<60_000>(),
            max_header_bytes: Bounded::constant::<{ 16 << 10 }>(),
            max_connections: Bounded::constant::<4096>(),
            max_connections_per_address: Bounded::constant::<64>(),
            response_write_timeout_ms: Millis::constant::<10_000>(),
            max_connection_age_secs: Secs::constant::<3600>(),
            max_requests_per_connection: Bounded::constant::<1000>(),
            health_requests_per_second: Bounded::constant::<10>(),
        }
    }
}
