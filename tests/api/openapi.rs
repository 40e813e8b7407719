//! `GET /openapi.json`: the OpenAPI 3.1 document, checked against what the server
//! actually serves and against every error code of PROTOCOL.md.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::TestApp;

/// Every route the server serves: the protocol's endpoints and the operational ones.
const SERVED: [(&str, &str); 15] = [
    ("post", "/sessions"),
    ("post", "/execute"),
    ("get", "/executions/{execution_id}"),
    ("get", "/usage"),
    ("get", "/keys"),
    ("get", "/fuel-costs"),
    ("get", "/log/checkpoint"),
    ("get", "/log/consistency"),
    ("get", "/verify/{execution_id}"),
    ("get", "/tlog/checkpoint"),
    ("get", "/tlog/proof/{execution_id}"),
    ("get", "/tlog/tile/{path}"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// The error table of PROTOCOL.md: `| `code` | status | when |`.
fn protocol_error_codes() -> Vec<(String, u16)> {
    let doc = include_str!("../../PROTOCOL.md");
    let table = doc
        .split("## Errors answered in the clear")
        .nth(1)
        .expect("PROTOCOL.md has its error table");
    table
        .lines()
        .skip_while(|line| !line.starts_with("| `"))
        .take_while(|line| line.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].parse().expect("a status code"),
            )
        })
        .collect()
}

/// Answers `method path` with the error code of the answer, if it has one.
async fn probe(app: &TestApp, method: Method, path: &str) -> (u16, Option<String>) {
    let response = app
        .http
        .request(method, app.url(path))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let code = response
        .json::<Value>()
        .await
        .ok()
        .and_then(|body| body["error"]["code"].as_str().map(str::to_owned));
    (status, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_lists_exactly_the_served_routes_and_every_error_code() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        document,
        serde_json::to_value(wasm_hypervisor_server::api::openapi()).unwrap(),
        "the server serves the document generated from its handlers"
    );

    // The document lists exactly the served routes...
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| ["get", "post", "put", "delete", "patch"].contains(&key.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = SERVED
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, served);

    // ...each of which the router really serves, with no other method (HEAD comes
    // with every GET, as HTTP defines it).
    let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
    for path in paths {
        let concrete = path
            .replace("{execution_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{path}", "0/000");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            let listed = documented.contains(&(method.as_str().to_lowercase(), path.clone()));
            let (status, code) = probe(&app, method.clone(), &concrete).await;
            // A route may answer `not_found` itself for an id it does not know
            // (`GET /tlog/proof/{id}`, protocol v1.2 §T4), when it says so.
            let own_not_found = document["paths"][path.as_str()][method.as_str().to_lowercase()]
                ["responses"]["404"]["description"]
                .as_str()
                .is_some_and(|description| description.contains("`not_found`"));
            if listed {
                assert!(
                    !matches!(code.as_deref(), Some("method_not_allowed"))
                        && (own_not_found || code.as_deref() != Some("not_found")),
                    "{method} {path} is documented but answered {status} {code:?}"
                );
            } else {
                assert_eq!(
                    (status, code.as_deref()),
                    (405, Some("method_not_allowed")),
                    "{method} {path} is served but not documented"
                );
            }
        }
    }

    // Every error code of the protocol is in the document, with its status.
    let codes = protocol_error_codes();
    assert!(codes.len() >= 14, "{codes:?}");
    for (code, status) in codes {
        let needle = format!("`{code}`");
        let with_status = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .any(|operation| {
                operation["responses"][status.to_string()]["description"]
                    .as_str()
                    .is_some_and(|description| description.contains(&needle))
            })
            || document["info"]["description"]
                .as_str()
                .unwrap()
                .contains(&format!("{needle} ({status})"));
        assert!(with_status, "{code} ({status}) is not documented");
    }

    // What the document says /metrics answers is what it answers.
    let declared: Vec<&String> =
        document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(
        declared,
        [metrics.headers()["content-type"].to_str().unwrap()]
    );
    app.stop_and_verify_log().await;
}
