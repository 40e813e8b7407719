//! The playground (`playground: true`): off by default (404), on it serves its
//! page and scripts with their media types and a CSP that allows scripts from
//! the server only. The browser test that runs a module from it is
//! `clients/js/test/playground.browser.mjs`.

use crate::helpers::TestApp;

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_playground_is_off_by_default_and_every_path_of_it_is_404() {
    let app = TestApp::spawn().await;
    for path in [
        "/playground",
        "/playground/",
        "/playground/app.js",
        "/playground/sdk/index.js",
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    app.stop_and_verify_log().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_playground_true_the_page_and_its_scripts_are_served_with_their_types() {
    let app = TestApp::spawn_with(|config| config.playground = true).await;
    let index = get(&app, "/playground/").await;
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'self' 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(index.headers()["x-content-type-options"], "nosniff");
    let page = index.text().await.unwrap();
    assert!(
        page.contains("<script type=\"module\" src=\"app.js\"></script>"),
        "{page}"
    );

    for path in [
        "app.js",
        "sdk/index.js",
        "sdk/client.js",
        "vendor/hpke-core.js",
    ] {
        let response = get(&app, &format!("/playground/{path}")).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/javascript; charset=utf-8",
            "{path}"
        );
        assert!(!response.text().await.unwrap().is_empty(), "{path}");
    }
    let css = get(&app, "/playground/style.css").await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let wasm = get(&app, "/playground/examples/hello.wasm").await;
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    let bytes = wasm.bytes().await.unwrap();
    assert_eq!(&bytes[..], include_bytes!("../../examples/hello.wasm"));

    // Without the slash, a redirect to the page; an unknown file is 404.
    let bare = app
        .http
        .get(format!("{}/playground", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 200);
    assert_eq!(bare.url().path(), "/playground/");
    assert_eq!(get(&app, "/playground/nothing.js").await.status(), 404);
    app.stop_and_verify_log().await;
}
