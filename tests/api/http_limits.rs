//! The HTTP layer against slow, idle, oversized and numerous clients, over raw TCP
//! where a well-behaved HTTP client cannot misbehave enough.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// The configured window the tests wait out.
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);

async fn app_with_short_timeouts() -> TestApp {
    TestApp::spawn_with(|config| {
        config.http.header_read_timeout_ms = HEADER_TIMEOUT.as_millis() as u64;
        config.http.body_read_timeout_ms = 500;
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
        elapsed >= HEADER_TIMEOUT - Duration::from_millis(100),
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
    assert!(started.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(100));

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
    let app = TestApp::spawn_with(|config| config.http.max_header_bytes = 4096).await;
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
async fn open_connections_are_bounded_and_the_next_is_served_when_one_closes() {
    let app = TestApp::spawn_with(|config| {
        config.http.max_connections = 2;
        config.http.header_read_timeout_ms = HEADER_TIMEOUT.as_millis() as u64;
    })
    .await;
    // TestApp's own client may hold a keep-alive connection: the server closes it
    // after the header timeout like any idle one. Two more idle connections fill
    // the server up.
    let _first = connect(&app).await;
    let _second = connect(&app).await;
    let started = Instant::now();
    let fresh = reqwest::Client::new();
    let health = fresh.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // It had to wait for an idle connection to be closed.
    assert!(
        started.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
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
