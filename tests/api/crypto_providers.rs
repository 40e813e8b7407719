//! The two crypto providers against each other through a real server over HTTP:
//! the client seals, verifies and opens on one provider while the server opens,
//! seals, commits and signs on the other (`crypto.provider`), in both directions.
//! Nothing on the wire depends on the provider, so each side must accept the
//! other's every byte.

#![cfg(all(feature = "aws-lc", feature = "rustcrypto"))]

use wasm_hypervisor_protocol::payload::Status;
use wasm_hypervisor_protocol::receipt;
use wasm_hypervisor_server::envelope::{self, Provider};

use crate::helpers::{TestApp, example, request};

/// Session (its signature checked by the client), sealed request, execution,
/// opened result, commitment (recomputed by the client), leaf signature, inclusion
/// proof and checkpoint signature (the receipt's checks), then the whole log file
/// re-verified on the client's provider.
async fn whole_protocol_with(server: Provider, client: Provider) {
    let app = TestApp::spawn_with_providers(server, client).await;
    // The two sides really are on different providers.
    assert_eq!(app.state.sessions.provider(), server);
    assert_eq!(app.state.key.provider(), server);
    assert_eq!(app.client.provider(), client);
    let key = app.identity.public_key;
    assert_eq!(key.provider(), client);

    let mut req = request(&example("hello"));
    req.args = vec!["across".into(), "providers".into()];
    let execution = app.execute(&req).await;
    assert_eq!(execution.result.status, Status::Completed);
    assert_eq!(
        String::from_utf8(execution.result.stdout_bytes()).unwrap(),
        "hello from wasm\narg[1]=across\narg[2]=providers\nstdin: 0 bytes\n"
    );
    // The server's commitment is the one the client computes on its own provider.
    let opened = envelope::commitment(
        client,
        &execution.salt,
        &execution.request_sha256,
        &execution.result_sha256,
    );
    assert_eq!(opened, execution.commitment);
    assert_eq!(opened, execution.response.commitment.0);

    // The leaf signature, made on the server's provider, verifies on the client's.
    let answer = app
        .client
        .inclusion(&execution.response.execution_id)
        .await
        .unwrap();
    key.verify(&answer.leaf.0, &execution.response.leaf_signature.0)
        .unwrap();
    // And so does everything a receipt proves.
    let receipt = execution.receipt(&app.base, &app.identity);
    let checks = receipt::check_receipt(&receipt, &answer, &key);
    assert!(receipt::all_hold(&checks), "{checks:?}");
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_on_rustcrypto_runs_the_whole_protocol_against_a_server_on_aws_lc() {
    whole_protocol_with(Provider::aws_lc(), Provider::rustcrypto()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_on_aws_lc_runs_the_whole_protocol_against_a_server_on_rustcrypto() {
    whole_protocol_with(Provider::rustcrypto(), Provider::aws_lc()).await;
}

/// Switching `crypto.provider` between restarts keeps the signing key (the key
/// file is the same PKCS#8 to both) and the log, which the other provider's
/// signatures then extend.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_restarted_on_the_other_provider_keeps_its_key_and_extends_its_log() {
    let on = |provider: Provider| {
        move |config: &mut wasm_hypervisor_server::config::Config| config.crypto.provider = provider
    };
    let first = TestApp::spawn_with(on(Provider::aws_lc())).await;
    first.execute(&request(&example("hello"))).await;
    let key_id = first.identity.key_id;
    let data_dir = first.stop().await;

    let second = TestApp::spawn_in(data_dir, on(Provider::rustcrypto())).await;
    assert_eq!(second.state.key.provider(), Provider::rustcrypto());
    assert_eq!(second.identity.key_id, key_id);
    let execution = second.execute(&request(&example("hello"))).await;
    assert_eq!(execution.response.log_index, 1);
    assert_eq!(second.stop_and_verify_log().await, 2);
}
