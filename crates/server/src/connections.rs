//! The open HTTP connections and what bounds them below HTTP: how many are open in
//! all and from one address, which of them are idle, closing the oldest idle one
//! to admit a new connection at the cap (as nginx reuses keep-alive connections),
//! each connection's age and request count, and a deadline on response writes
//! that make no progress.
//!
//! `server`'s accept loop asks [`Connections::admit`] for each accepted socket,
//! serves it through a [`ConnectionIo`] and counts its requests with
//! [`Connection::begin_request`]. No HTTP here beyond that vocabulary: hyper does
//! the closing when asked (a graceful close never cuts a request in flight).
//!
//! Architecture invariant: a connection with a request in flight, or with a
//! response it is still writing, is never chosen to make room; only the write
//! deadline, the connection's own limits or a shutdown end it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::access::ClientKey;

/// What bounds each connection and all of them (`http.*`).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: its /64).
    pub max_per_address: usize,
    /// Peers that carry many clients (`clients.trusted_proxies`): bounded only by
    /// `max_connections`.
    pub exempt: Arc<[IpNet]>,
    /// How long a connection may stay open.
    pub max_age: Duration,
    /// Requests one connection may make.
    pub max_requests: u64,
    /// How long a response write may make no progress.
    pub write_timeout: Duration,
}

/// Every open connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Connections {
    shared: Arc<Shared>,
}

struct Shared {
    limits: ConnectionLimits,
    /// A `std` mutex: held for a map update or, only at the cap, one scan of the
    /// open connections; never across an `.await`.
    table: Mutex<Table>,
    /// Woken when a connection closes or goes idle: what a connection waiting at
    /// the cap waits for.
    changed: Arc<Notify>,
    /// The parent of every connection's close token: cancelled by a shutdown.
    all: CancellationToken,
}

struct Table {
    next_id: u64,
    /// Oldest first: ids only grow.
    open: BTreeMap<u64, Arc<Connection>>,
    /// Open connections per address, for those not exempt.
    per_address: HashMap<ClientKey, usize>,
}

/// One open connection, as its task, its requests and its IO see it.
#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    /// `None` for a peer exempt from the per-address cap.
    address: Option<ClientKey>,
    /// It was admitted past its address's cap: it only answers
    /// `too_many_connections` and closes.
    over_address_cap: bool,
    opened: Instant,
    max_age: Duration,
    max_requests: u64,
    in_flight: AtomicU32,
    requests: AtomicU64,
    /// A response write is waiting for the client to read.
    write_stalled: AtomicBool,
    /// Cancelled to close the connection gracefully (past its age, to make room,
    /// or on shutdown).
    close: CancellationToken,
    changed: Arc<Notify>,
}

impl Connections {
    pub(crate) fn new(limits: ConnectionLimits) -> Connections {
        Connections {
            shared: Arc::new(Shared {
                limits,
                table: Mutex::new(Table {
                    next_id: 0,
                    open: BTreeMap::new(),
                    per_address: HashMap::new(),
                }),
                changed: Arc::new(Notify::new()),
                all: CancellationToken::new(),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table's updates are single inserts and removals: a panic elsewhere
        // while it was held cannot leave it half-updated.
        self.shared
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a connection from `peer` if fewer than `max_connections` are open;
    /// `None` at the cap (see [`Connections::make_room`]). A connection past its
    /// address's cap is admitted too, marked [`Connection::over_address_cap`], so
    /// that it can be told so; it counts against its address like any other.
    pub(crate) fn admit(&self, peer: IpAddr) -> Option<OpenConnection> {
        let limits = &self.shared.limits;
        let mut table = self.table();
        if table.open.len() >= limits.max_connections {
            return None;
        }
        let canonical = peer.to_canonical();
        let exempt = limits
            .exempt
            .iter()
            .any(|network| network.contains(&canonical));
        let address = (!exempt).then(|| ClientKey::address(peer));
        let over_address_cap = match address {
            Some(key) => {
                let count = table.per_address.entry(key).or_insert(0);
                *count += 1;
                *count > limits.max_per_address
            }
            None => false,
        };
        let id = table.next_id;
        table.next_id += 1;
        let connection = Arc::new(Connection {
            id,
            address,
            over_address_cap,
            opened: Instant::now(),
            max_age: limits.max_age,
            max_requests: limits.max_requests,
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            write_stalled: AtomicBool::new(false),
            close: self.shared.all.child_token(),
            changed: self.shared.changed.clone(),
        });
        table.open.insert(id, connection.clone());
        Some(OpenConnection {
            connections: self.clone(),
            connection,
        })
    }

    /// At the cap, with a connection waiting to be admitted: closes the oldest
    /// idle connection (no request in flight, no response stalled), unless one
    /// already asked to close is idle and so about to free its place. A
    /// connection with a request in flight is never chosen.
    pub(crate) fn make_room(&self) {
        let table = self.table();
        let mut oldest_idle = None;
        for connection in table.open.values() {
            if !connection.is_idle() {
                continue;
            }
            if connection.close.is_cancelled() {
                return;
            }
            oldest_idle.get_or_insert(connection);
        }
        if let Some(connection) = oldest_idle {
            tracing::debug!(
                connection = connection.id,
                "closing the oldest idle connection to admit a new one at http.max_connections"
            );
            connection.close.cancel();
        }
    }

    /// Resolves when a connection has closed or gone idle since the last call
    /// resolved (or at once, if one did meanwhile).
    pub(crate) async fn changed(&self) {
        self.shared.changed.notified().await;
    }

    /// Asks every connection to close gracefully: idle ones at once, the others
    /// after their request in flight.
    pub(crate) fn close_all(&self) {
        self.shared.all.cancel();
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.table().open.len()
    }
}

/// An admitted connection; dropping it (when its task ends) frees its place.
pub(crate) struct OpenConnection {
    connections: Connections,
    connection: Arc<Connection>,
}

impl OpenConnection {
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        {
            let mut table = self.connections.table();
            table.open.remove(&self.connection.id);
            if let Some(address) = self.connection.address
                && let Some(count) = table.per_address.get_mut(&address)
            {
                *count -= 1;
                if *count == 0 {
                    table.per_address.remove(&address);
                }
            }
        }
        self.connection.changed.notify_one();
    }
}

impl Connection {
    /// Admitted past `http.max_connections_per_address`.
    pub(crate) fn over_address_cap(&self) -> bool {
        self.over_address_cap
    }

    /// No request in flight and no response write waiting for the client.
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && !self.write_stalled.load(Ordering::Acquire)
    }

    /// Counts a request as in flight until the returned value is dropped.
    pub(crate) fn begin_request(self: &Arc<Self>) -> RequestInFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let number = self.requests.fetch_add(1, Ordering::AcqRel) + 1;
        RequestInFlight {
            connection: self.clone(),
            number,
        }
    }

    /// Resolves when the connection should close gracefully: it was asked to (to
    /// make room, or a shutdown), or it reached `http.max_connection_age_secs`.
    pub(crate) async fn closing(&self) {
        tokio::select! {
            () = self.close.cancelled() => {}
            () = tokio::time::sleep_until(self.opened + self.max_age) => self.close.cancel(),
        }
    }

    fn set_write_stalled(&self, stalled: bool) {
        self.write_stalled.store(stalled, Ordering::Release);
        if !stalled && self.in_flight.load(Ordering::Acquire) == 0 {
            self.changed.notify_one();
        }
    }
}

/// A request on its way through the router.
pub(crate) struct RequestInFlight {
    connection: Arc<Connection>,
    /// 1 for the connection's first request.
    number: u64,
}

impl RequestInFlight {
    /// Whether the connection closes after this request's response: it is the
    /// last one the connection may make, the connection is past its age, or it
    /// was asked to close. The response should then say `Connection: close`.
    pub(crate) fn is_last(&self) -> bool {
        let connection = &self.connection;
        self.number >= connection.max_requests
            || connection.opened.elapsed() >= connection.max_age
            || connection.close.is_cancelled()
    }
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        if self.connection.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.connection.changed.notify_one();
        }
    }
}

/// A connection's socket with a deadline on writes: a write (or flush) that has
/// made no progress for `timeout` fails with `TimedOut`, which ends the connection.
/// hyper has a header read timeout but nothing for writes, and a client that
/// pipelines requests without reading the answers would otherwise hold its
/// connection for ever once the socket buffers are full. Reads are untouched.
pub(crate) struct ConnectionIo<T> {
    inner: T,
    connection: Arc<Connection>,
    timeout: Duration,
    /// Allocated on the first stall, then reset for each later one.
    deadline: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl<T> ConnectionIo<T> {
    pub(crate) fn new(inner: T, connection: Arc<Connection>, timeout: Duration) -> ConnectionIo<T> {
        ConnectionIo {
            inner,
            connection,
            timeout,
            deadline: None,
            stalled: false,
        }
    }

    /// Passes on what a write-side call returned, arming the deadline when it is
    /// the first `Pending` of a stall and failing once the deadline has passed.
    fn on_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                if self.stalled {
                    self.stalled = false;
                    self.connection.set_write_stalled(false);
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let until = Instant::now() + self.timeout;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                if !self.stalled {
                    deadline.as_mut().reset(until);
                    self.stalled = true;
                    self.connection.set_write_stalled(true);
                }
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client read nothing for http.response_write_timeout_ms",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnectionIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnectionIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.on_write(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.on_write(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn limits(max_connections: usize, max_per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            max_per_address,
            exempt: vec!["10.0.0.0/8".parse().unwrap()].into(),
            max_age: Duration::from_secs(3600),
            max_requests: 2,
            write_timeout: Duration::from_millis(100),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn admission_is_capped_in_all_and_marks_connections_past_their_addresses_cap() {
        let connections = Connections::new(limits(3, 2));
        let first = connections.admit(ip("192.0.2.1")).unwrap();
        let second = connections.admit(ip("192.0.2.1")).unwrap();
        let third = connections.admit(ip("192.0.2.1")).unwrap();
        assert!(!first.connection().over_address_cap());
        assert!(!second.connection().over_address_cap());
        assert!(third.connection().over_address_cap());
        assert!(connections.admit(ip("192.0.2.2")).is_none(), "at the cap");
        drop(third);
        let other = connections.admit(ip("192.0.2.2")).unwrap();
        assert!(!other.connection().over_address_cap());
        drop((first, second, other));
        assert_eq!(connections.open(), 0);
        // Closed connections no longer count against their address.
        assert!(
            !connections
                .admit(ip("192.0.2.1"))
                .unwrap()
                .connection()
                .over_address_cap()
        );
    }

    #[tokio::test]
    async fn trusted_proxies_are_not_capped_per_address_and_ipv6_counts_by_its_64() {
        let connections = Connections::new(limits(100, 1));
        let proxied: Vec<_> = (0..5)
            .map(|_| connections.admit(ip("10.1.2.3")).unwrap())
            .collect();
        assert!(
            proxied
                .iter()
                .all(|open| !open.connection().over_address_cap())
        );
        // IPv4-mapped peers match the proxy's IPv4 network.
        let mapped = connections.admit(ip("::ffff:10.1.2.3")).unwrap();
        assert!(!mapped.connection().over_address_cap());
        let first = connections.admit(ip("2001:db8:1:2::1")).unwrap();
        let same_64 = connections.admit(ip("2001:db8:1:2::ffff")).unwrap();
        let other_64 = connections.admit(ip("2001:db8:1:3::1")).unwrap();
        assert!(!first.connection().over_address_cap());
        assert!(same_64.connection().over_address_cap());
        assert!(!other_64.connection().over_address_cap());
    }

    #[tokio::test]
    async fn making_room_closes_the_oldest_idle_connection_and_never_one_in_flight() {
        let connections = Connections::new(limits(3, 10));
        let oldest = connections.admit(ip("192.0.2.1")).unwrap();
        let middle = connections.admit(ip("192.0.2.2")).unwrap();
        let newest = connections.admit(ip("192.0.2.3")).unwrap();
        let in_flight = oldest.connection().begin_request();
        connections.make_room();
        assert!(!oldest.connection().close.is_cancelled());
        assert!(middle.connection().close.is_cancelled());
        assert!(!newest.connection().close.is_cancelled());
        // The one asked to close is idle and about to go: no second one is closed.
        connections.make_room();
        assert!(!newest.connection().close.is_cancelled());
        drop(middle);
        // A connection whose response is stalled is not idle either.
        newest.connection().set_write_stalled(true);
        connections.make_room();
        assert!(!newest.connection().close.is_cancelled());
        assert!(!oldest.connection().close.is_cancelled());
        // Once the request is answered, the oldest is idle again.
        drop(in_flight);
        connections.make_room();
        assert!(oldest.connection().close.is_cancelled());
    }

    #[tokio::test]
    async fn a_connection_going_idle_or_closing_wakes_a_waiter() {
        let connections = Connections::new(limits(3, 10));
        let open = connections.admit(ip("192.0.2.1")).unwrap();
        let request = open.connection().begin_request();
        let waiter = tokio::spawn({
            let connections = connections.clone();
            async move { connections.changed().await }
        });
        drop(request);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken when the request ended")
            .unwrap();
        drop(open);
        tokio::time::timeout(Duration::from_secs(5), connections.changed())
            .await
            .expect("woken when the connection closed");
    }

    #[tokio::test]
    async fn a_request_is_the_last_at_the_count_or_once_the_connection_is_closing() {
        let connections = Connections::new(limits(3, 10));
        let open = connections.admit(ip("192.0.2.1")).unwrap();
        assert!(!open.connection().begin_request().is_last());
        assert!(
            open.connection().begin_request().is_last(),
            "max_requests is 2"
        );
        let young = connections.admit(ip("192.0.2.1")).unwrap();
        young.connection().close.cancel();
        assert!(young.connection().begin_request().is_last());
    }

    async fn poll_write_once(
        io: &mut ConnectionIo<tokio::io::DuplexStream>,
    ) -> Poll<io::Result<usize>> {
        poll_fn(|cx| Poll::Ready(Pin::new(&mut *io).poll_write(cx, &[1; 8]))).await
    }

    #[tokio::test]
    async fn a_write_that_makes_no_progress_fails_after_the_deadline() {
        let connections = Connections::new(limits(3, 10));
        let open = connections.admit(ip("192.0.2.1")).unwrap();
        let (_client, server) = tokio::io::duplex(64);
        let mut io = ConnectionIo::new(
            server,
            open.connection().clone(),
            Duration::from_millis(100),
        );
        let started = Instant::now();
        let written = tokio::time::timeout(Duration::from_secs(5), io.write_all(&[0; 128]))
            .await
            .expect("the deadline ended the write");
        assert_eq!(written.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn progress_disarms_the_write_deadline_and_a_new_stall_gets_a_fresh_one() {
        let connections = Connections::new(limits(3, 10));
        let open = connections.admit(ip("192.0.2.1")).unwrap();
        let connection = open.connection().clone();
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = ConnectionIo::new(server, connection.clone(), Duration::from_millis(100));
        io.write_all(&[0; 64]).await.unwrap();
        assert!(poll_write_once(&mut io).await.is_pending());
        assert!(!connection.is_idle(), "a stalled write is not idle");
        // Past that deadline, but the client reads before the next write.
        tokio::time::sleep(Duration::from_millis(150)).await;
        client.read_exact(&mut [0; 64]).await.unwrap();
        assert!(matches!(poll_write_once(&mut io).await, Poll::Ready(Ok(8))));
        assert!(connection.is_idle());
        io.write_all(&[0; 56]).await.unwrap();
        // A new stall: its deadline is fresh, not the one that passed.
        assert!(poll_write_once(&mut io).await.is_pending());
    }
}
