//! Crash safety of the audit log: torn tails are zeroed, damage stops the server, and
//! a server killed with SIGKILL loses no acknowledged execution.

use wasm_hypervisor_client::Client;
use wasm_hypervisor_protocol::merkle::{self, Hash};
use wasm_hypervisor_protocol::payload::Status;
use wasm_hypervisor_protocol::receipt;
use wasm_hypervisor_server::audit::file::{FILE_MAGIC, LOG_FILE};
use wasm_hypervisor_server::keys::PublicKey;
use wasm_hypervisor_server::server::{ServerError, Service};

use crate::helpers::{DataDir, ServerProcess, TestApp, fixture, request, test_config};

/// Record 0 begins right after the file header.
const FIRST_RECORD: u64 = FILE_MAGIC.len() as u64;

async fn log_three_executions() -> (DataDir, PublicKey) {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.execute(&request(&fixture("exit_code"))).await;
    }
    let key = app.identity.public_key;
    (app.stop().await, key)
}

/// Where the log ends: the header and its records (zeros follow, up to the end of
/// the preallocated file).
fn end_of_log(data_dir: &DataDir, key: &PublicKey) -> usize {
    let records = crate::helpers::logged_records(&data_dir.path, key);
    FIRST_RECORD as usize + records.iter().map(|r| r.encoded_len()).sum::<usize>()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_that_ends_mid_record_is_zeroed_back_and_serves() {
    let (data_dir, key) = log_three_executions().await;
    let path = data_dir.path.join(LOG_FILE);
    let end = end_of_log(&data_dir, &key);
    // A crash during a fourth append: only the first 40 bytes of a record (here a
    // copy of record 0's, a plausible header and leaf start) reached the disk.
    let mut torn = std::fs::read(&path).unwrap();
    let partial = torn[FIRST_RECORD as usize..FIRST_RECORD as usize + 40].to_vec();
    torn[end..end + 40].copy_from_slice(&partial);
    std::fs::write(&path, &torn).unwrap();

    let app = TestApp::spawn_in(data_dir, |_| {}).await;
    assert_eq!(app.health().await["log_size"], 3);
    assert!(
        std::fs::read(&path).unwrap()[end..].iter().all(|&b| b == 0),
        "the torn bytes are zeros again"
    );
    let next = app.execute(&request(&fixture("exit_code"))).await;
    assert_eq!(next.response.log_index, 3);
    assert_eq!(app.identity.public_key, key);
    assert_eq!(app.stop_and_verify_log().await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_whose_acknowledged_last_record_lost_its_end_stops_the_server() {
    let (data_dir, key) = log_three_executions().await;
    let path = data_dir.path.join(LOG_FILE);
    let end = end_of_log(&data_dir, &key);
    // The last record was acknowledged and is covered by the signed checkpoint:
    // its end reading as zeros (as if it had never reached the disk) is lost
    // history, not a torn append.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[end - 10..end].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let error = build_error(&data_dir);
    assert!(error.contains("records were lost"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_in_the_middle_of_the_log_stops_the_server_naming_file_and_offset() {
    let (data_dir, key) = log_three_executions().await;
    let path = data_dir.path.join(LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let second_record =
        FIRST_RECORD as usize + (end_of_log(&data_dir, &key) - FIRST_RECORD as usize) / 3;
    bytes[second_record + 30] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let error = build_error(&data_dir);
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("corrupt at byte offset"), "{error}");
    assert!(error.contains("record 1"), "{error}");
    // Nothing was rewritten.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

fn build_error(data_dir: &DataDir) -> String {
    match Service::build(&test_config(&data_dir.path)) {
        Err(error @ ServerError::Audit(_)) => error.to_string(),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("the server started on a damaged log"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_sigkill_every_answered_execution_is_in_the_log_with_a_valid_proof() {
    let data_dir = DataDir::new();
    let server = ServerProcess::start(&data_dir.path);
    let client = Client::new(&server.base, None);
    let key = client.identity(None).await.unwrap().public_key;

    // Eight clients execute in a loop; the server is killed while they do.
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        let answered = answered_tx.clone();
        workers.push(tokio::spawn(async move {
            let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
            loop {
                let Ok(session) = client.open_session(&key).await else {
                    return;
                };
                match client.execute(&session, &plaintext).await {
                    Ok(execution) => {
                        assert_eq!(execution.result.status, Status::Completed);
                        if answered.send(execution).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    drop(answered_tx);
    let mut answered = Vec::new();
    while answered.len() < 40 {
        answered.push(answered_rx.recv().await.expect("executions are answered"));
    }
    server.kill();
    for worker in workers {
        worker.await.unwrap();
    }
    while let Some(execution) = answered_rx.recv().await {
        answered.push(execution);
    }

    let server = ServerProcess::start(&data_dir.path);
    let client = Client::new(&server.base, None);
    for execution in &answered {
        let answer = client
            .inclusion(&execution.response.execution_id)
            .await
            .unwrap();
        assert_eq!(answer.log_index, execution.response.log_index);
        assert_eq!(answer.commitment, execution.response.commitment);
        let checkpoint = receipt::check_checkpoint(&answer.checkpoint, &key).unwrap();
        let proof: Vec<Hash> = answer.inclusion_proof.iter().map(|h| h.0).collect();
        merkle::verify_inclusion(
            &merkle::leaf_hash(&answer.leaf.0),
            answer.log_index,
            checkpoint.tree_size,
            &proof,
            &checkpoint.root_hash,
        )
        .unwrap();
    }
    // Stop it cleanly and re-verify the whole file.
    server.sigterm();
    assert!(server.wait().await.status.success());
    let records = crate::helpers::verify_log_file(&data_dir.path, &key);
    assert!(records >= answered.len(), "{records} < {}", answered.len());
}
