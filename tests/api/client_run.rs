//! `Client::run`, the client crate's one call for an execution end to end: the
//! blobs it names and sends again, its receipt, its long jobs and the progress
//! it reports, against a real server.

use std::sync::{Arc, Mutex};

use wasm_hypervisor_client::{
    BlobCache, Client, ClientError, References, Run, RunError, RunProgress, Wire,
};
use wasm_hypervisor_protocol::digest::sha256;
use wasm_hypervisor_protocol::payload::Status;
use wasm_hypervisor_protocol::receipt;

use crate::helpers::{TestApp, example};

/// A client of `app` speaking `wire`, with its blobs remembered in memory.
fn client(app: &TestApp, wire: Wire) -> Client {
    Client::new(&app.base, None)
        .with_wire(wire)
        .with_blob_cache(BlobCache::in_memory())
}

/// Every progress event of a run, in order.
fn recorder() -> (
    Arc<Mutex<Vec<RunProgress>>>,
    impl Fn(RunProgress) + Send + Sync + 'static,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let record = events.clone();
    (events, move |event| record.lock().unwrap().push(event))
}

#[tokio::test(flavor = "multi_thread")]
async fn client_run_names_what_the_server_holds_and_resends_what_it_lost() {
    let app = TestApp::spawn().await;
    let client = client(&app, Wire::V1_1);
    let hello = example("hello");
    let hash = sha256(&hello);

    let first = client
        .run(&Run::new(hello.clone()).args(["x"]))
        .await
        .unwrap();
    assert_eq!(first.execution.result.status, Status::Completed);
    assert!(
        first.sent_by_reference.is_empty(),
        "the first run sends bytes"
    );
    let second = client
        .run(&Run::new(hello.clone()).args(["y"]))
        .await
        .unwrap();
    let stdout = String::from_utf8(second.execution.result.stdout_bytes()).unwrap();
    assert!(stdout.contains("arg[1]=y"), "{stdout}");
    assert_eq!(second.sent_by_reference, [hash], "the second names it");
    assert!(second.resent_blobs.is_empty());
    let never = client
        .run(&Run::new(hello.clone()).references(References::Never))
        .await
        .unwrap();
    assert!(never.sent_by_reference.is_empty());

    // A module the server never saw, named first: the server answers
    // `missing_blob` (an execution, logged) and the client sends the bytes.
    let sleep = example("sleep");
    let size_before = app.state.log.size();
    let named = client
        .run(
            &Run::new(sleep.clone())
                .args(["0"])
                .references(References::Always),
        )
        .await
        .unwrap();
    assert_eq!(named.execution.result.status, Status::Completed);
    assert_eq!(named.resent_blobs, [sha256(&sleep)]);
    assert!(named.sent_by_reference.is_empty());
    assert_eq!(app.state.log.size(), size_before + 2);
    assert_eq!(app.stop_and_verify_log().await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_run_gives_a_receipt_that_verifies_in_either_wire() {
    let app = TestApp::spawn().await;
    for wire in [Wire::V1, Wire::V1_1] {
        let client = client(&app, wire).with_key_id(Some(app.identity.key_id.to_string()));
        let outcome = client
            .run(&Run::new(example("hello")).stdin(b"in"))
            .await
            .unwrap();
        assert_eq!(outcome.identity.key_id, app.identity.key_id);
        let receipt = outcome.receipt(&app.base);
        assert_eq!(
            receipt.execution_id,
            outcome.execution.execution_id.to_string()
        );
        let proof = app.client.inclusion(&receipt.execution_id).await.unwrap();
        let checks = receipt::check_receipt(&receipt, &proof, &app.identity.public_key);
        assert!(receipt::all_hold(&checks), "{wire:?}: {checks:?}");
    }
    assert_eq!(app.stop_and_verify_log().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_run_refuses_a_server_of_another_key_before_sending() {
    let app = TestApp::spawn().await;
    let client = client(&app, Wire::V1_1).with_key_id(Some("00".repeat(32)));
    let error = client.run(&Run::new(example("hello"))).await.err();
    assert!(
        matches!(
            error,
            Some(RunError::Client(ClientError::KeyMismatch { .. }))
        ),
        "{error:?}"
    );
    assert_eq!(app.stop_and_verify_log().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_run_as_a_long_job_reports_its_id_then_its_answer() {
    let app = TestApp::spawn().await;
    let (events, observer) = recorder();
    let outcome = client(&app, Wire::V1_1)
        .run(
            &Run::new(example("sleep"))
                .args(["300"])
                .asynchronous(true)
                .on_progress(observer),
        )
        .await
        .unwrap();
    assert_eq!(outcome.execution.result.stdout_bytes(), b"slept\n");
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events.first(),
        Some(&RunProgress::Accepted {
            execution_id: outcome.execution.execution_id
        }),
        "{events:?}"
    );
    assert!(
        events[1..]
            .iter()
            .all(|event| matches!(event, RunProgress::Pending { phase: Some(_), .. })),
        "{events:?}"
    );
    assert_eq!(app.stop_and_verify_log().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_run_reports_a_large_uploads_progress_to_the_whole() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.bin"), vec![0x5a; 300 << 10]).unwrap();
    let archive = wasm_hypervisor_client::archive::pack_directory(dir.path()).unwrap();
    for wire in [Wire::V1, Wire::V1_1] {
        let (events, observer) = recorder();
        let outcome = client(&app, wire)
            .run(
                &Run::new(example("hello"))
                    .mount("/data", archive.clone())
                    .on_progress(observer),
            )
            .await
            .unwrap();
        assert_eq!(outcome.execution.result.status, Status::Completed);
        let sent: Vec<(u64, u64)> = events
            .lock()
            .unwrap()
            .iter()
            .map(|event| match event {
                RunProgress::Upload { sent, total } => (*sent, *total),
                other => panic!("{other:?}"),
            })
            .collect();
        let total = sent[0].1;
        assert!(total > 300 << 10, "{wire:?}: {total}");
        assert!(sent.len() >= 4, "{wire:?}: {sent:?}");
        assert!(sent.iter().all(|&(_, of)| of == total));
        assert!(sent.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert!(sent[0].0 > 0);
        assert_eq!(sent.last().map(|s| s.0), Some(total));
    }
    // Without an observer, nothing is reported and the body goes whole.
    let plain = client(&app, Wire::V1_1)
        .run(&Run::new(example("hello")).mount("/data", archive))
        .await
        .unwrap();
    assert_eq!(plain.execution.result.status, Status::Completed);
    assert_eq!(app.stop_and_verify_log().await, 3);
}
