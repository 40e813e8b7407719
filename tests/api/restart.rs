//! Durability across restarts: the key and every acknowledged record survive.

use wasm_hypervisor_protocol::payload::Status;

use crate::helpers::{TestApp, fixture, logged_records, request, verify_log_file};

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_execution_survives_a_restart() {
    let app = TestApp::spawn().await;
    let first = app.execute(&request(&fixture("exit_code"))).await;
    assert_eq!(first.result.status, Status::Completed);
    let key_id = app.identity.key_id;
    let key = app.identity.public_key;
    let data_dir = app.stop().await;

    let app = TestApp::spawn_in(data_dir, |_| {}).await;
    assert_eq!(app.identity.key_id, key_id, "the signing key is reused");
    assert_eq!(app.health().await["log_size"], 1);
    let second = app.execute(&request(&fixture("exit_code"))).await;
    assert_eq!(
        second.response.log_index, 1,
        "the log continues where it was"
    );
    let data_dir = app.stop().await;

    let records = logged_records(&data_dir.path, &key);
    assert_eq!(records[0].leaf.execution_id, first.execution_id);
    assert_eq!(records[0].leaf.commitment, first.commitment);
    assert_eq!(records[1].leaf.execution_id, second.execution_id);
    assert_eq!(verify_log_file(&data_dir.path, &key), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_and_its_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    let path = app.data_dir.path.join("signing_key.pem");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(&app.data_dir.path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    app.execute(&request(&fixture("exit_code"))).await;
    let data_dir = app.stop().await;
    for file in ["audit.log", "checkpoint"] {
        let mode = std::fs::metadata(data_dir.path.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}
