//! `wasm-hypervisor key new FILE`: the signing key file a cluster's replicas share,
//! made before any of them starts.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;

use crate::helpers::TestApp;

fn key_new(file: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasm-hypervisor"))
        .args(["key", "new"])
        .arg(file)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn key_new_writes_an_owner_only_key_that_a_server_serves_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signing_key.pem");
    let made = key_new(&file);
    assert!(made.status.success(), "{made:?}");
    let stdout = String::from_utf8(made.stdout).unwrap();
    let key_id = stdout.trim_end().to_owned();
    assert_eq!(stdout, format!("{key_id}\n"), "one line: the key id");
    assert_eq!(key_id.len(), 64);
    assert!(key_id.bytes().all(|b| b.is_ascii_hexdigit()), "{key_id}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read(&file).unwrap();
    assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));

    // A second `key new` on the same file fails and leaves the first key.
    let again = key_new(&file);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(again.stdout.is_empty());
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), pem);

    // A server given the file as signing_key_file signs with that key.
    let app = TestApp::spawn_with(|config| config.signing_key_file = file.clone()).await;
    let keys: Value = app.get_json("/keys").await;
    assert_eq!(keys["key_id"], key_id.as_str(), "{keys}");
}
