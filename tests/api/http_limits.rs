//! The HTTP layer against slow, idle, oversized, pipelining and numerous clients,
//! over raw TCP where a well-behaved HTTP client cannot misbehave enough. Each
//! attack checks that the server stays bounded (the attacker's connections are
//! closed, or it gets its status) and that another, well-behaved client is still
//! served meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wasm_hypervisor_protocol::payload::Status;
use wasm_hypervisor_server::access::ClientKey;
use wasm_hypervisor_server::config::{Bounded, Millis, Secs};

use crate::helpers::{TestApp, example, fixture, limits, request, sealed_body, token_digest};

/// The configured window the tests wait out (`http.header_read_timeout_ms`).
const HEADER_TIMEOUT: Millis<100, 600_000> = Millis::constant::<500>();

async fn app_with_short_timeouts() -> TestApp {
    TestApp::spawn_with(|config| {
        config.http.header_read_timeout_ms = HEADER_TIMEOUT;
        config.http.body_read_timeout_ms = Millis::constant::<500>();
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or resets it), at most `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server did not close the connection within {limit:?}"
    );
    received
}

/// The status and JSON body of a raw HTTP/1.1 response with a content length.
fn parse_response(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_lowercase(),
        serde_json::from_str(body).unwrap(),
    )
}

/// On a new connection: a pooled one may be closed by the server's idle timeout
/// just as a request goes out on it (which is why a proxy's keep-alive timeout
/// must be below the server's, README "Behind nginx").
async fn still_serving(app: &TestApp) {
    let health = reqwest::Client::new()
        .get(app.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_cut_off_however_it_trickles() {
    let app = app_with_short_timeouts().await;
    // Slowloris: a header line now and then, never the blank line that ends them.
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for n in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer
                .write_all(format!("x-{n}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // Meanwhile everyone else is served.
    still_serving(&app).await;
    let mut buffer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "a trickling client kept its connection");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= HEADER_TIMEOUT.get() - Duration::from_millis(100),
        "{elapsed:?}"
    );
    assert!(
        buffer.is_empty() || buffer.starts_with(b"HTTP/1.1 408"),
        "no request was answered"
    );
    trickle.abort();
    still_serving(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_the_header_timeout() {
    let app = app_with_short_timeouts().await;
    let mut idle = connect(&app).await;
    let started = Instant::now();
    let received = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(received.is_empty() || received.starts_with(b"HTTP/1.1 408"));
    assert!(started.elapsed() >= HEADER_TIMEOUT.get() - Duration::from_millis(100));

    // Also after a first request on a keep-alive connection.
    let mut kept = connect(&app).await;
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&received)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_does_not_arrive_in_time_is_408_in_the_error_shape() {
    let app = app_with_short_timeouts().await;
    let mut slow = connect(&app).await;
    slow.write_all(
        b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"session_id\"",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let received = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    let (status, head, body) = parse_response(&received);
    assert_eq!(status, 408);
    assert_eq!(body["error"]["code"], "request_timeout");
    assert!(head.contains("connection: close"), "{head}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    still_serving(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_are_431_in_the_error_shape_and_far_oversized_ones_still_431() {
    let app =
        TestApp::spawn_with(|config| config.http.max_header_bytes = Bounded::constant::<4096>())
            .await;
    let fits = app
        .http
        .get(app.url("/keys"))
        .header("x-padding", "a".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
    let big = app
        .http
        .get(app.url("/keys"))
        .header("x-padding", "a".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 431);
    let body: Value = big.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large");
    // A long path counts too.
    let long = app
        .http
        .get(app.url(&format!("/verify/{}", "a".repeat(5000))))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 431);
    // Past the router's limit plus hyper's slack, hyper refuses before parsing.
    let mut raw = connect(&app).await;
    let huge = format!(
        "GET /keys HTTP/1.1\r\nHost: x\r\nx-padding: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let _ = raw.write_all(huge.as_bytes()).await;
    let received = read_until_closed(&mut raw, Duration::from_secs(5)).await;
    assert!(received.is_empty() || received.starts_with(b"HTTP/1.1 431"));
    still_serving(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_json_bodies_are_taken_and_unknown_routes_and_methods_are_refused() {
    let app = TestApp::spawn().await;
    let cases: [(reqwest::Method, &str, Option<&str>, u16, &str); 5] = [
        (
            reqwest::Method::POST,
            "/execute",
            None,
            415,
            "unsupported_media_type",
        ),
        (
            reqwest::Method::POST,
            "/execute",
            Some("application/jsonx"),
            415,
            "unsupported_media_type",
        ),
        (
            reqwest::Method::POST,
            "/execute",
            Some("Application/JSON; charset=utf-8"),
            400,
            "malformed_body",
        ),
        (
            reqwest::Method::DELETE,
            "/keys",
            None,
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::GET,
            "/sessions/extra",
            None,
            404,
            "not_found",
        ),
    ];
    for (method, path, content_type, status, code) in cases {
        let mut request = app.http.request(method.clone(), app.url(path)).body("{}");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            status,
            "{method} {path} {content_type:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], code,
            "{method} {path} {content_type:?}"
        );
    }
    app.stop().await;
}

/// A liveness bound for "served promptly": far below the timeouts the attacks
/// would otherwise hold a client for (a minute), far above any honest latency.
const PROMPTLY: Duration = Duration::from_secs(5);

const GET_HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

fn server_address(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

/// A raw connection from `local`, another address of the loopback's 127.0.0.0/8:
/// to the server, another client.
async fn connect_from(app: &TestApp, local: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((local, 0))).unwrap();
    socket.connect(server_address(app)).await.unwrap()
}

/// Reads one response with a `Content-Length` off `stream`: (status, head in
/// lower case, body). Anything read past it is dropped: not for pipelining.
async fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the connection closed before a whole response");
        received.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap());
    while received.len() < head_end + length {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the connection closed in the middle of a body");
        received.extend_from_slice(&buffer[..n]);
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, received[head_end..head_end + length].to_vec())
}

/// The heads (in lower case) of the responses with a `Content-Length` that `raw`
/// holds one after the other.
fn response_heads(mut raw: &[u8]) -> Vec<String> {
    let mut heads = Vec::new();
    while let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..at + 4]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().unwrap());
        raw = &raw[at + 4 + length..];
        heads.push(head);
    }
    heads
}

/// Sends `request` on `stream` and reads its response, within [`PROMPTLY`].
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> (u16, String, Vec<u8>) {
    stream.write_all(request).await.unwrap();
    tokio::time::timeout(PROMPTLY, read_response(stream))
        .await
        .expect("answered promptly")
}

/// A fresh client (a new connection, from `local`) gets `GET /health` answered
/// within [`PROMPTLY`]; returns how long it took.
async fn served_promptly_from(app: &TestApp, local: [u8; 4]) -> Duration {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from(local))
        .build()
        .unwrap();
    let started = Instant::now();
    let health = tokio::time::timeout(PROMPTLY, client.get(app.url("/health")).send())
        .await
        .expect("a well-behaved client was kept waiting")
        .unwrap();
    assert_eq!(health.status(), 200);
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_pipeline_and_never_read_are_cut_off_and_others_are_still_served() {
    let app = TestApp::spawn_with(|config| {
        config.http.max_connections = Bounded::constant::<8>();
        config.http.response_write_timeout_ms = Millis::constant::<300>();
        // Neither the idle timeout nor the request count may be what ends them.
        config.http.header_read_timeout_ms = Millis::constant::<60_000>();
        config.http.max_requests_per_connection = Bounded::constant::<1_000_000>();
    })
    .await;
    // A large answer fills the socket buffers sooner than /health's would.
    let pipelined = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(64);
    let mut attackers = Vec::new();
    for _ in 0..8 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(server_address(&app)).await.unwrap();
        // Admitted (one honest exchange), then it only writes.
        assert_eq!(exchange(&mut stream, GET_HEALTH).await.0, 200);
        let pipelined = pipelined.clone();
        attackers.push(tokio::spawn(async move {
            let (_never_read, mut writer) = stream.into_split();
            // Ends when the server closes the connection.
            while writer.write_all(&pipelined).await.is_ok() {}
        }));
    }
    // Every place is taken by a connection that is busy or stalled; a new client
    // still gets in.
    served_promptly_from(&app, [127, 0, 0, 1]).await;
    for attacker in attackers {
        tokio::time::timeout(PROMPTLY, attacker)
            .await
            .expect("a connection whose client never reads was kept open")
            .unwrap();
    }
    still_serving(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_cap_the_oldest_idle_connection_makes_room_and_one_in_flight_is_never_cut() {
    let app = TestApp::spawn_with(|config| {
        config.http.max_connections = Bounded::constant::<4>();
        // Idle connections would otherwise hold their places for a minute.
        config.http.header_read_timeout_ms = Millis::constant::<60_000>();
    })
    .await;
    // The oldest connection (the app client's) gets a request in flight: a guest
    // that sleeps until its 1.5 s timeout.
    let mut sleeper = request(&example("sleep"));
    sleeper.args = vec!["60000".into()];
    sleeper.limits = limits(None, Some(1500));
    let in_flight = {
        let client = app.client.clone();
        let key = app.identity.public_key;
        let plaintext = serde_json::to_vec(&sleeper).unwrap();
        tokio::spawn(async move {
            let session = client.open_session(&key).await.unwrap();
            client.execute(&session, &plaintext).await.unwrap()
        })
    };
    let deadline = Instant::now() + PROMPTLY;
    while app.executor.slots_in_use() != 1 {
        assert!(Instant::now() < deadline, "the guest never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Three idle keep-alive connections fill the server up.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(&app).await;
        assert_eq!(exchange(&mut stream, GET_HEALTH).await.0, 200);
        idle.push(stream);
    }
    // A new client is admitted at once: the oldest idle connection made room.
    served_promptly_from(&app, [127, 0, 0, 2]).await;
    let closed = read_until_closed(&mut idle[0], PROMPTLY).await;
    assert!(
        closed.is_empty(),
        "an idle connection is closed without an answer"
    );
    // The connection with a request in flight was not cut: it gets its result.
    let execution = in_flight.await.unwrap();
    assert_eq!(execution.result.status, Status::Timeout);
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_from_one_address_are_capped_and_other_addresses_are_still_served() {
    let app = TestApp::spawn_with(|config| {
        config.http.max_connections_per_address = Bounded::constant::<3>();
        config.http.header_read_timeout_ms = Millis::constant::<60_000>();
        config.clients.trusted_proxies = vec!["127.0.0.3/32".parse().unwrap()];
    })
    .await;
    let attacker = [127, 0, 0, 2];
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from(&app, attacker).await;
        assert_eq!(exchange(&mut stream, GET_HEALTH).await.0, 200);
        held.push(stream);
    }
    // One more from the same address: told why, and closed.
    let mut excess = connect_from(&app, attacker).await;
    excess.write_all(GET_HEALTH).await.unwrap();
    let received = read_until_closed(&mut excess, PROMPTLY).await;
    let (status, head, body) = parse_response(&received);
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "too_many_connections");
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    // Another address is served meanwhile.
    served_promptly_from(&app, [127, 0, 0, 4]).await;
    // A trusted proxy carries many clients: its connections are not capped.
    let mut proxied = Vec::new();
    for _ in 0..6 {
        let mut stream = connect_from(&app, [127, 0, 0, 3]).await;
        assert_eq!(exchange(&mut stream, GET_HEALTH).await.0, 200);
        proxied.push(stream);
    }
    // Once one of its connections closes, the address may open another.
    drop(held.pop());
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let mut stream = connect_from(&app, attacker).await;
        match exchange(&mut stream, GET_HEALTH).await.0 {
            200 => break,
            429 => assert!(
                Instant::now() < deadline,
                "the closed connection still counts"
            ),
            other => panic!("unexpected status {other}"),
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_announced_oversize_body_is_413_at_once_before_authentication_and_quotas() {
    let app = TestApp::spawn_with(|config| {
        config.limits.max_request_bytes = Bounded::constant::<4096>();
        // The body would otherwise be waited for a minute, and then be a 408.
        config.http.body_read_timeout_ms = Millis::constant::<60_000>();
        config.auth.tokens_sha256 = vec![token_digest(crate::helpers::TEST_TOKEN)];
        config.clients.requests_per_second = Bounded::constant::<1>();
        config.clients.burst = Bounded::constant::<1>();
    })
    .await;
    let attacker = [127, 0, 0, 2];
    let mut stream = connect_from(&app, attacker).await;
    stream
        .write_all(
            b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100000000\r\n\r\n{\"session_id\"",
        )
        .await
        .unwrap();
    let received = read_until_closed(&mut stream, PROMPTLY).await;
    let (status, head, body) = parse_response(&received);
    // Not 401 (no token was sent): refused before authentication.
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(head.contains("connection: close"), "{head}");
    // Nor was the address's one request of rate spent on it.
    let keys = reqwest::Client::builder()
        .local_address(IpAddr::from(attacker))
        .build()
        .unwrap()
        .get(app.url("/keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200);
    served_promptly_from(&app, [127, 0, 0, 3]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_never_holds_the_clients_execution_slot() {
    let app = TestApp::spawn_with(|config| {
        config.clients.max_concurrent_executions = Bounded::constant::<1>();
        // A rate high enough never to refuse, on so that the client is tracked.
        config.clients.requests_per_second = Bounded::constant::<1000>();
        config.clients.burst = Bounded::constant::<1000>();
        config.clients.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        config.http.body_read_timeout_ms = Millis::constant::<60_000>();
    })
    .await;
    let client = ClientKey::address(IpAddr::from([192, 0, 2, 9]));
    let tracked = app.state.quotas.tracked();
    let mut slow = connect(&app).await;
    slow.write_all(
        b"POST /execute HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.9\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"session_id\"",
    )
    .await
    .unwrap();
    // Past the rate limit, the request is in its handler, reading the body.
    let deadline = Instant::now() + PROMPTLY;
    while app.state.quotas.tracked() == tracked {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.state.quotas.executions(client), 0);
    // The same client's execution runs meanwhile.
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
    let body = sealed_body(&app, None, &plaintext).await;
    let response = app
        .http
        .post(app.url("/execute"))
        .header("content-type", "application/json")
        .header("x-forwarded-for", "192.0.2.9")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The slow body ends malformed; no slot was ever taken for it.
    slow.write_all(&[b' '; 87]).await.unwrap();
    let (status, _, _) = tokio::time::timeout(PROMPTLY, read_response(&mut slow))
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(app.state.quotas.executions(client), 0);
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_answers_at_most_its_request_count_and_says_so_on_the_last() {
    let app = TestApp::spawn_with(|config| {
        config.http.max_requests_per_connection = Bounded::constant::<3>();
        config.http.header_read_timeout_ms = Millis::constant::<60_000>();
    })
    .await;
    let mut pipelining = connect(&app).await;
    pipelining.write_all(&GET_HEALTH.repeat(5)).await.unwrap();
    // The two requests past the count are not answered: the connection closes.
    let received = read_until_closed(&mut pipelining, PROMPTLY).await;
    let heads = response_heads(&received);
    assert_eq!(heads.len(), 3, "{}", String::from_utf8_lossy(&received));
    assert!(heads.iter().all(|head| head.starts_with("http/1.1 200")));
    assert!(!heads[0].contains("connection: close"), "{}", heads[0]);
    assert!(!heads[1].contains("connection: close"), "{}", heads[1]);
    assert!(heads[2].contains("connection: close"), "{}", heads[2]);
    still_serving(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_past_its_age_is_closed_when_idle_or_after_its_request_in_flight() {
    let app = TestApp::spawn_with(|config| {
        config.http.max_connection_age_secs = Secs::constant::<1>();
        config.http.header_read_timeout_ms = Millis::constant::<60_000>();
        config.http.body_read_timeout_ms = Millis::constant::<60_000>();
    })
    .await;
    // Idle when it comes of age: closed then, not a minute later.
    let mut idle = connect(&app).await;
    let opened = Instant::now();
    let (status, head, _) = exchange(&mut idle, GET_HEALTH).await;
    assert_eq!(status, 200);
    assert!(!head.contains("connection: close"), "{head}");
    let closed = read_until_closed(&mut idle, PROMPTLY).await;
    assert!(closed.is_empty());
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "{:?}",
        opened.elapsed()
    );
    // Busy when it comes of age: its request is answered, with Connection: close.
    let mut busy = connect(&app).await;
    busy.write_all(
        b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 2\r\n\r\n{",
    )
    .await
    .unwrap();
    // The connection's age passes while its body is still on its way.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    busy.write_all(b"}").await.unwrap();
    let received = read_until_closed(&mut busy, PROMPTLY).await;
    let (status, head, body) = parse_response(&received);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "malformed_body");
    assert!(head.contains("connection: close"), "{head}");
    still_serving(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_has_a_rate_of_its_own_and_unknown_routes_spend_the_clients_rate() {
    let app = TestApp::spawn_with(|config| {
        config.http.health_requests_per_second = Bounded::constant::<1>();
        config.clients.requests_per_second = Bounded::constant::<1>();
        config.clients.burst = Bounded::constant::<1>();
    })
    .await;
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let get = |path: &str| client.get(app.url(path)).send();
    // The client spends its API rate...
    assert_eq!(get("/keys").await.unwrap().status(), 200);
    assert_eq!(get("/keys").await.unwrap().status(), 429);
    // ...which unknown routes and methods count against too.
    for response in [
        get("/nope").await.unwrap(),
        client.delete(app.url("/keys")).send().await.unwrap(),
        client.post(app.url("/health")).send().await.unwrap(),
    ] {
        assert_eq!(response.status(), 429);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    // Its probes are still answered, a burst of twice their rate...
    for _ in 0..2 {
        assert_eq!(get("/health").await.unwrap().status(), 200);
    }
    // ...and a flood of them is refused (one more is allowed a second).
    let mut refused = None;
    for _ in 0..10 {
        let probe = get("/health").await.unwrap();
        if probe.status() == 429 {
            refused = Some(probe);
            break;
        }
    }
    let refused = refused.expect("a flood of probes is rate-limited");
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another address is served meanwhile.
    served_promptly_from(&app, [127, 0, 0, 3]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_at_the_default_health_rate_never_see_a_429() {
    let rate = wasm_hypervisor_server::config::HttpConfig::default().health_requests_per_second;
    let app = TestApp::spawn_with(|config| config.http.health_requests_per_second = rate).await;
    // A load balancer probes a few times a second; even twice the default rate at
    // once is answered.
    for _ in 0..2 * rate.get() {
        let health = app.http.get(app.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
    app.stop().await;
}
