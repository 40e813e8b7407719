//! The playground (`playground: true`, off by default): a static page at
//! `/playground/` that runs a module sealed from the browser with the JavaScript
//! package and verifies its receipt there. Its files are compiled into the
//! binary (the page, the committed build of `clients/js`, the vendored
//! `@hpke/core` bundle and three example guests): serving it needs no build step
//! and reads no file. With `playground: false` none of these routes exist (404).

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};

use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;

use super::AppState;
use super::error::ApiError;
use super::middleware::{CheckLayer, limit_requests};

/// One embedded file: its path under `/playground/` and its media type.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr, $file:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the playground serves. `sdk/` is `clients/js/dist` (the package's
/// build, committed and checked in sync by `clients/js/run-tests.sh`).
static ASSETS: &[Asset] = &[
    asset!(
        "index.html",
        "text/html; charset=utf-8",
        "clients/js/playground/index.html"
    ),
    asset!("app.js", JS, "clients/js/playground/app.js"),
    asset!(
        "style.css",
        "text/css; charset=utf-8",
        "clients/js/playground/style.css"
    ),
    asset!("sdk/index.js", JS, "clients/js/dist/index.js"),
    asset!("sdk/client.js", JS, "clients/js/dist/client.js"),
    asset!("sdk/bytes.js", JS, "clients/js/dist/bytes.js"),
    asset!("sdk/cbor.js", JS, "clients/js/dist/cbor.js"),
    asset!("sdk/crypto.js", JS, "clients/js/dist/crypto.js"),
    asset!("sdk/merkle.js", JS, "clients/js/dist/merkle.js"),
    asset!("sdk/receipt.js", JS, "clients/js/dist/receipt.js"),
    asset!("sdk/tar.js", JS, "clients/js/dist/tar.js"),
    asset!("sdk/tlog.js", JS, "clients/js/dist/tlog.js"),
    asset!("vendor/hpke-core.js", JS, "clients/js/vendor/hpke-core.js"),
    asset!(
        "vendor/hpke-core.LICENSE",
        "text/plain; charset=utf-8",
        "clients/js/vendor/hpke-core.LICENSE"
    ),
    asset!(
        "examples/hello.wasm",
        "application/wasm",
        "examples/hello.wasm"
    ),
    asset!(
        "examples/sha256sum.wasm",
        "application/wasm",
        "examples/sha256sum.wasm"
    ),
    asset!(
        "examples/tiny.wasm",
        "application/wasm",
        "examples/tiny.wasm"
    ),
];

/// The Content-Security-Policy of every playground answer: scripts from this
/// origin only, plus the page's one inline script, its import map (by hash);
/// requests to this origin only; nothing framed, embedded or posted elsewhere.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; script-src 'self' 'sha256-{}'; style-src 'self'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
        import_map_hash(ASSETS[0].bytes)
    );
    // Base64 and ASCII only: always a valid header value.
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

/// Base64 SHA-256 of the text of the page's `<script type="importmap">`, as CSP
/// hashes an inline script.
fn import_map_hash(page: &[u8]) -> String {
    const OPEN: &[u8] = b"<script type=\"importmap\">";
    let script = find(page, OPEN)
        .map(|start| &page[start + OPEN.len()..])
        .and_then(|rest| find(rest, b"</script>").map(|end| &rest[..end]))
        .unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .encode(wasm_hypervisor_protocol::digest::sha256(script))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The playground's routes, each counted against the client's request rate like
/// every public route.
pub(super) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/playground",
            get(|| async { Redirect::permanent("/playground/") }),
        )
        .route("/playground/", get(|| async { serve("index.html") }))
        .route(
            "/playground/{*file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
        .route_layer({
            let state = state.clone();
            CheckLayer(move |request: &mut Request| limit_requests(&state, request))
        })
}

fn serve(path: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) else {
        return ApiError::NotFound.into_response();
    };
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CONTENT_SECURITY_POLICY, CSP.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_hashes_the_pages_import_map() {
        let page = br#"<head><script type="importmap">{"imports": {}}</script></head>"#;
        let expected = base64::engine::general_purpose::STANDARD.encode(
            wasm_hypervisor_protocol::digest::sha256(br#"{"imports": {}}"#),
        );
        assert_eq!(import_map_hash(page), expected);
        let csp = CSP.to_str().unwrap();
        assert!(
            csp.contains(&format!("'sha256-{}'", import_map_hash(ASSETS[0].bytes))),
            "{csp}"
        );
        assert!(
            std::str::from_utf8(ASSETS[0].bytes)
                .unwrap()
                .contains("<script type=\"importmap\">")
        );
    }

    /// A file added to the package's build must be served too.
    #[test]
    fn every_file_of_the_packages_build_is_served() {
        let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/js/dist");
        for entry in std::fs::read_dir(dist).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".js") {
                let path = format!("sdk/{name}");
                assert!(
                    ASSETS.iter().any(|asset| asset.path == path),
                    "{path} is not served"
                );
            }
        }
    }

    #[test]
    fn every_asset_path_is_distinct_and_relative() {
        for (index, asset) in ASSETS.iter().enumerate() {
            assert!(!asset.path.starts_with('/'), "{}", asset.path);
            assert!(!asset.bytes.is_empty(), "{}", asset.path);
            assert!(ASSETS[..index].iter().all(|other| other.path != asset.path));
        }
    }
}
