//! The log in the standard transparency formats (protocol v1.2 §T1–T4): the note
//! key in `GET /keys`, the checkpoint as a signed note, the tiles, and proofs of
//! logging that verify offline with the log's verifier key alone; checked by our
//! verifiers and by Go's `golang.org/x/mod/sumdb/{note,tlog}` (the program of
//! tests/interop/go, which crates/protocol/tests/tlog_interop.rs also runs).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wasm_hypervisor_client::Execution;
use wasm_hypervisor_protocol::checkpoint::open_note;
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::note::VerifierKey;
use wasm_hypervisor_protocol::policy::Policy;
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::tiles::{self, Tile};
use wasm_hypervisor_protocol::tlog_proof::{TlogProof, TlogProofError};
use wasm_hypervisor_protocol::wire::KeysResponse;

use crate::helpers::{DataDir, TestApp, fixture, request};

/// The note key's vkey, as `GET /keys` gives it.
async fn note_vkey(app: &TestApp) -> String {
    let keys: KeysResponse = app.get_json("/keys").await;
    keys.note_verifier_key
        .expect("a v1.2 server gives its note key")
}

/// GETs `path` and returns its status, content type and body.
async fn get_text(app: &TestApp, path: &str) -> (u16, String, String) {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_names_the_note_key_after_the_origin_with_its_c2sp_key_id() {
    let app = TestApp::spawn().await;
    let vkey = note_vkey(&app).await;
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(parts.len(), 3, "{vkey}");
    assert_eq!(parts[0], "wasm-hypervisor.test");
    assert!(
        parts[1].len() == 8
            && parts[1]
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{vkey}"
    );
    let key = VerifierKey::parse(Provider::default(), &vkey).unwrap();
    assert_eq!(key.signature_type(), 0x01, "an Ed25519 key");
    assert_eq!(key.name(), "wasm-hypervisor.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checkpoint_note_is_the_v1_checkpoint_signed_by_both_keys() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.execute(&request(&fixture("exit_code"))).await;
    }
    let note_key = VerifierKey::parse(Provider::default(), &note_vkey(&app).await).unwrap();
    let p256 = VerifierKey::ecdsa_p256("wasm-hypervisor.test", &app.identity.public_key).unwrap();
    let response = app
        .http
        .get(app.url("/tlog/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let cache = response.headers()["cache-control"].to_str().unwrap();
    let max_age: u64 = cache
        .split("max-age=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|age| age.trim().parse().ok())
        .unwrap_or_else(|| panic!("{cache}"));
    assert!(max_age <= 5, "a few seconds at most: {cache}");
    let note = response.text().await.unwrap();
    let opened = open_note(note.as_bytes(), &[note_key, p256], &[]).unwrap();
    assert_eq!(opened.logs, vec![0, 1], "both lines verify, Ed25519 first");
    assert_eq!(opened.note.signatures().len(), 2, "no other line: {note}");
    let v1 = app.checkpoint().await;
    assert_eq!(opened.checkpoint.tree_size, 3);
    assert_eq!(opened.checkpoint.tree_size, v1.tree_size);
    assert_eq!(opened.checkpoint.root_hash, v1.root_hash.0);
    // One checkpoint, one note: nothing in it is signed anew per request.
    let (_, _, again) = get_text(&app, "/tlog/checkpoint").await;
    assert_eq!(again, note);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tlog_proof_verifies_offline_under_a_quorum_none_policy() {
    let app = TestApp::spawn().await;
    let mut executions = Vec::new();
    for _ in 0..5 {
        executions.push(app.execute(&request(&fixture("exit_code"))).await);
    }
    let vkey = note_vkey(&app).await;
    // The server is no longer needed: everything below is offline.
    let mut proofs = Vec::new();
    for execution in &executions {
        let path = format!("/tlog/proof/{}", execution.response.execution_id);
        let (status, content_type, text) = get_text(&app, &path).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/plain; charset=utf-8")
        );
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
        proofs.push(text);
    }
    app.stop().await;
    let policy = Policy::parse(
        Provider::default(),
        format!("log {vkey}\nquorum none\n").as_bytes(),
    )
    .unwrap();
    for (execution, text) in executions.iter().zip(&proofs) {
        let verified = TlogProof::parse(text.as_bytes())
            .unwrap()
            .verify(&policy)
            .unwrap();
        assert_eq!(verified.index, execution.response.log_index);
        assert_eq!(verified.leaf.execution_id, execution.execution_id);
        assert_eq!(verified.leaf.commitment, execution.commitment);
        assert_eq!(verified.checkpoint.checkpoint.tree_size, 5);
        assert_eq!(Leaf::parse(&verified.leaf.to_bytes()), Some(verified.leaf));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_tlog_proof_is_refused() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            app.execute(&request(&fixture("exit_code")))
                .await
                .response
                .execution_id,
        );
    }
    let policy = Policy::single_log(
        VerifierKey::parse(Provider::default(), &note_vkey(&app).await).unwrap(),
    )
    .unwrap();
    let (_, _, text) = get_text(&app, &format!("/tlog/proof/{}", ids[1])).await;
    let verify = |text: &str| TlogProof::parse(text.as_bytes()).and_then(|p| p.verify(&policy));
    assert!(verify(&text).is_ok());
    let lines: Vec<&str> = text.lines().collect();
    // Another index; another leaf (another execution's entry); a proof hash
    // changed; the checkpoint's size changed (its signature no longer holds).
    let (_, _, other) = get_text(&app, &format!("/tlog/proof/{}", ids[2])).await;
    let other_extra = other.lines().nth(1).unwrap();
    let first_hash = lines[3];
    let mut flipped = first_hash.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, tampered) in [
        ("index", text.replacen("\nindex 1\n", "\nindex 2\n", 1)),
        ("leaf", text.replacen(lines[1], other_extra, 1)),
        ("hash", text.replacen(first_hash, &flipped, 1)),
        ("checkpoint", text.replacen("\n4\n", "\n5\n", 1)),
    ] {
        assert_ne!(tampered, text, "{what} was changed");
        let refused = verify(&tampered);
        assert!(
            matches!(
                refused,
                Err(TlogProofError::Inclusion(_) | TlogProofError::Policy(_))
            ),
            "{what}: {refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_execution_has_no_proof_and_a_bad_id_is_a_bad_parameter() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::new_v4();
    let response = app
        .http
        .get(app.url(&format!("/tlog/proof/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let response = app
        .http
        .get(app.url("/tlog/proof/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_parameter");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_note_key_is_made_once_owner_only_and_follows_the_signing_key() {
    let app = TestApp::spawn().await;
    let vkey = note_vkey(&app).await;
    let data_dir = app.stop().await;
    let file = data_dir.path.join("note_key");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("PRIVATE+KEY+wasm-hypervisor.test+"),
        "Go's signer key text"
    );
    // The same file after a restart.
    let again = TestApp::spawn_in(data_dir, |_| {}).await;
    assert_eq!(note_vkey(&again).await, vkey);
    let data_dir = again.stop().await;
    // A replica sharing the signing key, with a data directory of its own, makes
    // the same note key.
    let signing_key = data_dir.path.join("signing_key.pem");
    let replica = TestApp::spawn_with(|config| config.signing_key_file = signing_key).await;
    assert_eq!(note_vkey(&replica).await, vkey);
    // A note key file of another log is refused at start.
    let other = DataDir::new();
    std::fs::create_dir_all(&other.path).unwrap();
    let foreign = other.path.join("note_key");
    std::fs::copy(&file, &foreign).unwrap();
    let mut config = crate::helpers::test_config(&other.path);
    config.origin = "another.example/log".parse().unwrap();
    let refused = wasm_hypervisor_server::server::Service::build(&config)
        .err()
        .expect("a note key of another origin is refused");
    assert!(
        refused.to_string().contains("not of this log's origin"),
        "{refused}"
    );
}

/// Runs `count` tiny executions, eight at a time, and returns them in log order.
async fn run_many(app: &TestApp, count: usize) -> Vec<Execution> {
    let plaintext = serde_json::to_vec(&request(&fixture("exit_code"))).unwrap();
    let mut done = Vec::new();
    for chunk in 0..count.div_ceil(8) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8.min(count - chunk * 8) {
            let (client, key, plaintext) = (
                app.client.clone(),
                app.identity.public_key,
                plaintext.clone(),
            );
            tasks.spawn(async move {
                let session = client.open_session(&key).await.unwrap();
                client.execute(&session, &plaintext).await.unwrap()
            });
        }
        while let Some(execution) = tasks.join_next().await {
            done.push(execution.unwrap());
        }
    }
    done.sort_by_key(|execution| execution.response.log_index);
    done
}

/// GETs `/tlog/<path>`: its status, `Cache-Control` and bytes.
async fn get_tile(app: &TestApp, path: &str) -> (u16, String, Vec<u8>) {
    let response = app
        .http
        .get(app.url(&format!("/tlog/{path}")))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cache, response.bytes().await.unwrap().to_vec())
}

/// Every tile of the tree of `size` (hash tiles and entry bundles), by path.
async fn mirror(app: &TestApp, size: u64) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for tile in tiles::hash_tiles(size)
        .into_iter()
        .chain(tiles::entry_bundles(size))
    {
        let (status, cache, bytes) = get_tile(app, &tile.path()).await;
        assert_eq!(status, 200, "{}", tile.path());
        assert_eq!(
            cache,
            "public, max-age=31536000, immutable",
            "{}",
            tile.path()
        );
        files.insert(tile.path(), bytes);
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tiles_hash_to_the_checkpoint_and_the_bundles_hold_every_entry() {
    let app = TestApp::spawn().await;
    let executions = run_many(&app, 300).await;
    let files = mirror(&app, 300).await;
    // Level 0: one full tile and one of 44; level 1: one of 1. Bundles alike.
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        [
            "tile/0/000",
            "tile/0/001.p/44",
            "tile/1/000.p/1",
            "tile/entries/000",
            "tile/entries/001.p/44"
        ]
    );
    let v1 = app.checkpoint().await;
    assert_eq!(v1.tree_size, 300);
    let read = |tile: &Tile| files.get(&tile.path()).cloned().ok_or("missing");
    assert_eq!(tiles::root(300, read).unwrap(), v1.root_hash.0);
    let leaf_hashes = tiles::verified_leaf_hashes(0, 300, &v1.root_hash.0, read).unwrap();
    let mut entries = tiles::parse_entry_bundle(&files["tile/entries/000"], 256).unwrap();
    entries.extend(tiles::parse_entry_bundle(&files["tile/entries/001.p/44"], 44).unwrap());
    for ((entry, hash), execution) in entries.iter().zip(&leaf_hashes).zip(&executions) {
        assert_eq!(&wasm_hypervisor_protocol::merkle::leaf_hash(entry), hash);
        let leaf = Leaf::parse(entry).unwrap();
        assert_eq!(leaf.execution_id, execution.execution_id);
        assert_eq!(leaf.commitment, execution.commitment);
    }
    // A full tile is the same bytes once the tree grew past it, and a tile the
    // tree does not hold yet is not served.
    run_many(&app, 1).await;
    assert_eq!(get_tile(&app, "tile/0/000").await.2, files["tile/0/000"]);
    assert_eq!(
        get_tile(&app, "tile/0/001.p/44").await.2,
        files["tile/0/001.p/44"],
        "a partial tile's bytes never change either"
    );
    for absent in [
        "tile/0/001",
        "tile/0/001.p/46",
        "tile/entries/002.p/1",
        "tile/2/000.p/1",
    ] {
        assert_eq!(get_tile(&app, absent).await.0, 404, "{absent}");
    }
    for malformed in [
        "tile/0/1",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/x/000",
        "tiles",
    ] {
        let (status, _, body) = get_tile(&app, malformed).await;
        assert_eq!(status, 404, "{malformed}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{malformed}");
    }
}

/// The Go program, built once for the whole test binary.
pub(crate) fn go_program() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let gopath = Path::new("/usr/share/gocode");
        assert!(
            gopath.join("src/golang.org/x/mod/sumdb/tlog").is_dir(),
            "this test needs Go's x/mod sources: Debian's golang-golang-x-mod-dev"
        );
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = target.join("tlog-interop-api");
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/go"))
            .env("GO111MODULE", "off")
            .env("GOPATH", gopath)
            .env("GOCACHE", target.join("go-cache"))
            .env("GOFLAGS", "")
            .status()
            .expect("this test needs Go: Debian's golang-go");
        assert!(status.success(), "building tests/interop/go failed");
        out
    })
}

/// What the Go program said of the log in `dir` (with `overlay`'s files read in
/// place of its own): 0 accepted, 1 refused, and its line.
fn go(args: &[&str], dir: &Path, overlay: Option<&Path>) -> (i32, String) {
    let mut command = Command::new(go_program());
    command.arg(args[0]).arg("-dir").arg(dir);
    if let Some(overlay) = overlay {
        command.arg("-overlay").arg(overlay);
    }
    let output = command.args(&args[1..]).output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let code = output.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "{args:?} failed to run: {said} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (code, said)
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn go_accepts_a_live_logs_checkpoints_tiles_and_proofs_and_refuses_tampered_ones() {
    let app = TestApp::spawn().await;
    let dir = DataDir::new().path;
    let origin = "wasm-hypervisor.test";
    write(&dir, "origin", origin);
    write(&dir, "vkey", note_vkey(&app).await);
    let p256 = VerifierKey::ecdsa_p256(origin, &app.identity.public_key).unwrap();
    write(&dir, "p256-vkey", p256.to_string());
    // Two checkpoints, so that Go proves them consistent from the tiles.
    let mut executions = run_many(&app, 100).await;
    write(
        &dir,
        "checkpoint-100",
        get_text(&app, "/tlog/checkpoint").await.2,
    );
    executions.extend(run_many(&app, 200).await);
    write(
        &dir,
        "checkpoint-300",
        get_text(&app, "/tlog/checkpoint").await.2,
    );
    for (path, bytes) in mirror(&app, 300).await {
        write(&dir, &path, bytes);
    }
    let consistency = app.client.consistency(100, 300).await.unwrap();
    let hashes: Vec<String> = consistency
        .proof
        .iter()
        .map(|hash| base64_encode(&hash.0))
        .collect();
    write(&dir, "consistency-100-300", hashes.join("\n") + "\n");
    let proved = [0, 99, 255, 256, 299];
    for index in proved {
        let id = executions[index].response.execution_id.clone();
        write(
            &dir,
            &format!("proof-{index}"),
            get_text(&app, &format!("/tlog/proof/{id}")).await.2,
        );
    }

    let (code, said) = go(&["check-log", "300"], &dir, None);
    assert_eq!(code, 0, "{said}");
    // The figures, for whoever reads the test's output.
    println!("Go: {said}");
    let (code, said) = go(&["check-consistency", "100", "300"], &dir, None);
    assert_eq!(code, 0, "{said}");
    for index in proved {
        let (code, said) = go(&["check-proof", &format!("proof-{index}")], &dir, None);
        assert_eq!(code, 0, "proof-{index}: {said}");
    }

    // Each tampered file is refused by Go and by our verifiers.
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let flip = |mut bytes: Vec<u8>, at: usize| {
        bytes[at] ^= 1;
        bytes
    };
    let checkpoint = String::from_utf8(read("checkpoint-300")).unwrap();
    let proof = String::from_utf8(read("proof-256")).unwrap();
    let proof_hash = proof.lines().nth(3).unwrap();
    let other_hash = base64_encode(&[7u8; 32]);
    let variants: Vec<(&str, &str, Vec<u8>, Vec<&str>)> = vec![
        (
            "a hash in the full level-0 tile",
            "tile/0/000",
            flip(read("tile/0/000"), 100),
            vec!["check-log", "300"],
        ),
        (
            "the partial level-0 tile",
            "tile/0/001.p/44",
            flip(read("tile/0/001.p/44"), 5),
            vec!["check-log", "300"],
        ),
        (
            "the level-1 tile",
            "tile/1/000.p/1",
            flip(read("tile/1/000.p/1"), 0),
            vec!["check-log", "300"],
        ),
        (
            "an entry",
            "tile/entries/000",
            flip(read("tile/entries/000"), 30),
            vec!["check-log", "300"],
        ),
        (
            "the checkpoint's size",
            "checkpoint-300",
            checkpoint.replacen("\n300\n", "\n301\n", 1).into_bytes(),
            vec!["check-log", "300"],
        ),
        (
            "a proof hash",
            "proof-256",
            proof.replacen(proof_hash, &other_hash, 1).into_bytes(),
            vec!["check-proof", "proof-256"],
        ),
        (
            "a proof's index",
            "proof-256",
            proof
                .replacen("\nindex 256\n", "\nindex 257\n", 1)
                .into_bytes(),
            vec!["check-proof", "proof-256"],
        ),
        (
            "a tile under the consistency proof",
            "tile/0/000",
            flip(read("tile/0/000"), 3000),
            vec!["check-consistency", "100", "300"],
        ),
    ];
    let policy = Policy::single_log(
        VerifierKey::parse(Provider::default(), &note_vkey(&app).await).unwrap(),
    )
    .unwrap();
    for (what, file, bytes, args) in variants {
        let overlay = DataDir::new().path;
        write(&overlay, file, &bytes);
        let (code, said) = go(&args, &dir, Some(&overlay));
        assert_eq!(code, 1, "Go accepted {what}: {said}");
        let ours = if file.starts_with("tile/") {
            let tiles = |tile: &Tile| {
                let path = tile.path();
                std::fs::read(overlay.join(&path)).or_else(|_| std::fs::read(dir.join(&path)))
            };
            let root = wasm_hypervisor_protocol::checkpoint::open_note(
                checkpoint.as_bytes(),
                std::slice::from_ref(&p256),
                &[],
            )
            .unwrap()
            .checkpoint
            .root_hash;
            if file.starts_with("tile/entries/") {
                let leaf_hashes = tiles::verified_leaf_hashes(0, 300, &root, tiles).unwrap();
                let entries = tiles::parse_entry_bundle(&bytes, 256).unwrap();
                entries.iter().zip(&leaf_hashes).all(|(entry, hash)| {
                    &wasm_hypervisor_protocol::merkle::leaf_hash(entry) == hash
                })
            } else {
                tiles::verified_leaf_hashes(0, 300, &root, tiles).is_ok()
            }
        } else if file.starts_with("proof-") {
            TlogProof::parse(&bytes)
                .and_then(|proof| proof.verify(&policy))
                .is_ok()
        } else {
            wasm_hypervisor_protocol::checkpoint::open_note(
                &bytes,
                std::slice::from_ref(&p256),
                &[],
            )
            .is_ok()
        };
        assert!(!ours, "our verifiers accepted {what}");
    }
}

fn base64_encode(bytes: &[u8; 32]) -> String {
    let encoded = serde_json::to_value(wasm_hypervisor_protocol::encoding::Base64(*bytes)).unwrap();
    encoded.as_str().unwrap().to_owned()
}
