//! Blobs by reference (protocol v1.1 §D): a module sent once runs by its SHA-256,
//! a blob the client's store does not hold is a logged `missing_blob`, scopes do not
//! see each other's blobs, and a module is compiled once however it arrives.

use wasm_hypervisor_client::Client;
use wasm_hypervisor_protocol::encoding::Hex;
use wasm_hypervisor_protocol::payload::{ExecutionRequest, MountRequest, RequestedLimits, Status};
use wasm_hypervisor_server::blobs::charge_of;
use wasm_hypervisor_server::config::Bounded;

use crate::helpers::{TEST_TOKEN, TestApp, example, request, token_digest};

fn sha256(bytes: &[u8]) -> [u8; 32] {
    wasm_hypervisor_protocol::digest::sha256(bytes)
}

/// `request(module)` naming the module instead of sending it.
fn by_reference(module: &[u8]) -> ExecutionRequest {
    ExecutionRequest {
        module: None,
        module_sha256: Some(Hex(sha256(module))),
        ..request(module)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_sent_once_runs_by_reference_and_compiles_once() {
    let app = TestApp::spawn().await;
    let hello = example("hello");
    let (hits_before, misses_before) = app.executor.module_cache_stats();
    let first = app.execute(&request(&hello)).await.result;
    assert_eq!(first.status, Status::Completed, "{:?}", first.error);
    let second = app.execute(&by_reference(&hello)).await;
    let result = &second.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(result.stdout_bytes(), first.stdout_bytes());
    assert_eq!(result.module_sha256, Some(Hex(sha256(&hello))));
    assert_eq!(result.missing_blobs, None);
    let (hits, misses) = app.executor.module_cache_stats();
    assert_eq!(
        (hits - hits_before, misses - misses_before),
        (1, 1),
        "compiled for the bytes, found compiled for the reference"
    );
    // Run by reference, it is an execution like any: logged and provable.
    let proof = app
        .client
        .inclusion(&second.execution_id.to_string())
        .await
        .unwrap();
    assert_eq!(proof.log_index, second.response.log_index);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_references_are_a_logged_missing_blob_listing_every_hash() {
    let app = TestApp::spawn().await;
    let module = [1u8; 32];
    let archive = [2u8; 32];
    let plaintext = ExecutionRequest {
        module: None,
        module_sha256: Some(Hex(module)),
        mounts: vec![
            MountRequest {
                path: "/a".into(),
                tar_sha256: Some(Hex(archive)),
                ..Default::default()
            },
            // The same archive again is listed once.
            MountRequest {
                path: "/b".into(),
                tar_sha256: Some(Hex(archive)),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let size_before = app.state.log.size();
    let execution = app.execute(&plaintext).await;
    let result = &execution.result;
    assert_eq!(result.status, Status::MissingBlob);
    assert_eq!(result.missing_blobs, Some(vec![Hex(module), Hex(archive)]));
    assert_eq!(result.module_sha256, Some(Hex(module)));
    let error = result.error.as_deref().unwrap();
    assert!(error.contains(&Hex(module).to_string()), "{error}");
    assert!(error.contains(&Hex(archive).to_string()), "{error}");
    assert_eq!(result.exit_code, None);
    assert_eq!(
        app.state.log.size(),
        size_before + 1,
        "logged like any execution"
    );
    app.client
        .inclusion(&execution.execution_id.to_string())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn another_token_cannot_use_my_blobs() {
    let other = "another-accepted-token";
    let app = TestApp::spawn_with(|config| {
        config.auth.tokens_sha256 = vec![token_digest(TEST_TOKEN), token_digest(other)];
    })
    .await;
    let hello = example("hello");
    let mine = Client::new(&app.base, Some(TEST_TOKEN.to_owned()));
    let theirs = Client::new(&app.base, Some(other.to_owned()));
    let run = |client: Client, request: ExecutionRequest| {
        let key = app.identity.public_key;
        async move {
            let session = client.open_session(&key).await.unwrap();
            let plaintext = serde_json::to_vec(&request).unwrap();
            client.execute(&session, &plaintext).await.unwrap().result
        }
    };
    let sent = run(mine.clone(), request(&hello)).await;
    assert_eq!(sent.status, Status::Completed);
    let theirs_by_reference = run(theirs, by_reference(&hello)).await;
    assert_eq!(theirs_by_reference.status, Status::MissingBlob);
    assert_eq!(
        theirs_by_reference.missing_blobs,
        Some(vec![Hex(sha256(&hello))])
    );
    let mine_by_reference = run(mine, by_reference(&hello)).await;
    assert_eq!(mine_by_reference.status, Status::Completed);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_least_recently_used_blob_is_evicted_past_store_bytes() {
    let hello = example("hello");
    let sleep = example("sleep");
    let app = TestApp::spawn_with(|config| {
        // Room for the larger of the two, not for both.
        let room = charge_of(hello.len().max(sleep.len())) as u64 + 1;
        assert!(room < (charge_of(hello.len()) + charge_of(sleep.len())) as u64);
        config.blobs.store_bytes = Bounded::try_from(room).unwrap();
    })
    .await;
    assert_eq!(
        app.execute(&request(&hello)).await.result.status,
        Status::Completed
    );
    let mut sleeper = request(&sleep);
    sleeper.args = vec!["0".into()];
    assert_eq!(app.execute(&sleeper).await.result.status, Status::Completed);
    let evicted = app.execute(&by_reference(&hello)).await.result;
    assert_eq!(evicted.status, Status::MissingBlob);
    let mut kept = by_reference(&sleep);
    kept.args = vec!["0".into()];
    assert_eq!(app.execute(&kept).await.result.status, Status::Completed);
    assert_eq!(app.executor.blobs().total_bytes(), charge_of(sleep.len()));
}

#[tokio::test(flavor = "multi_thread")]
async fn neither_or_both_of_module_and_module_sha256_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let hello = example("hello");
    let both = ExecutionRequest {
        module_sha256: Some(Hex(sha256(&hello))),
        ..request(&hello)
    };
    for plaintext in [ExecutionRequest::default(), both] {
        let result = app.execute(&plaintext).await.result;
        assert_eq!(result.status, Status::InvalidRequest);
        assert_eq!(
            result.error.as_deref(),
            Some("exactly one of `module` and `module_sha256` is required")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn files_bytes_is_in_a_result_only_when_the_request_uses_files() {
    let app = TestApp::spawn_with(|config| {
        config.limits.files_bytes = Bounded::constant::<{ 1 << 20 }>();
    })
    .await;
    let hello = example("hello");
    let v1 = app.execute(&request(&hello)).await;
    assert_eq!(v1.result.limits.files_bytes, None);
    let opened = String::from_utf8(v1.result_plaintext.clone()).unwrap();
    assert!(!opened.contains("files_bytes"), "{opened}");
    let asking = ExecutionRequest {
        limits: Some(RequestedLimits {
            files_bytes: Some(4096),
            ..Default::default()
        }),
        ..request(&hello)
    };
    assert_eq!(
        app.execute(&asking).await.result.limits.files_bytes,
        Some(4096)
    );
    let too_much = ExecutionRequest {
        limits: Some(RequestedLimits {
            files_bytes: Some((1 << 20) + 1),
            ..Default::default()
        }),
        ..request(&hello)
    };
    let refused = app.execute(&too_much).await.result;
    assert_eq!(refused.status, Status::InvalidRequest);
    assert!(
        refused
            .error
            .as_deref()
            .unwrap()
            .contains("limits.files_bytes"),
        "{:?}",
        refused.error
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_mounts_are_invalid_requests_naming_the_mount() {
    let app = TestApp::spawn().await;
    let hello = example("hello");
    let writable = |path: &str| MountRequest {
        path: path.into(),
        writable: true,
        ..Default::default()
    };
    for (mounts, expected) in [
        (
            vec![writable("relative")],
            "`mounts[0].path` must start with `/`",
        ),
        (
            vec![writable("/a"), writable("/a/../b")],
            "`mounts[1].path` may not have empty, `.` or `..` segments",
        ),
        (
            vec![writable("/a"), writable("/a/b")],
            "`mounts[1].path` is inside `mounts[0].path`",
        ),
        (
            vec![writable("/a"), writable("/a")],
            "`mounts[0].path` is inside `mounts[1].path`",
        ),
        (
            vec![MountRequest {
                path: "/ro".into(),
                ..Default::default()
            }],
            "`mounts[0]` needs exactly one of `tar` and `tar_sha256`",
        ),
        (
            vec![MountRequest {
                path: "/ro".into(),
                tar: Some("not base64!".into()),
                ..Default::default()
            }],
            "`mounts[0].tar` is not valid base64",
        ),
    ] {
        let plaintext = ExecutionRequest {
            mounts,
            ..request(&hello)
        };
        let result = app.execute(&plaintext).await.result;
        assert_eq!(result.status, Status::InvalidRequest);
        let error = result.error.unwrap();
        assert!(error.starts_with(expected), "{error}");
    }
}

/// Runs `wasm-hypervisor run` against `app` with `cache` as its blob cache.
async fn cli_run(app: &TestApp, cache: &std::path::Path, args: &[&str]) -> std::process::Output {
    crate::helpers::cli_command()
        .env("XDG_CACHE_HOME", cache)
        .args(["run", "--server", &app.base])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

/// Named blobs found in the client's scope, from the operator's metrics.
fn blob_hits(app: &TestApp) -> u64 {
    use wasm_hypervisor_server::metrics::{Audience, Gauges};
    let text = app
        .state
        .metrics
        .render(Gauges::default(), Audience::Operator);
    text.lines()
        .find_map(|line| line.strip_prefix("wasm_hypervisor_blob_store_hits_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_sends_known_blobs_by_reference_and_resends_missing_ones() {
    let app = TestApp::spawn().await;
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("hello.wasm");
    std::fs::write(&module, example("hello")).unwrap();
    let module = module.to_str().unwrap();
    let stdout_of = |output: &std::process::Output| {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout.clone()).unwrap()
    };

    let first = cli_run(&app, cache.path(), &[module, "x"]).await;
    assert!(stdout_of(&first).contains("arg[1]=x"));
    assert_eq!(blob_hits(&app), 0, "the first run sends the bytes");
    let second = cli_run(&app, cache.path(), &[module, "y"]).await;
    assert!(stdout_of(&second).contains("arg[1]=y"));
    assert_eq!(blob_hits(&app), 1, "the second names the module");
    let with_bytes = cli_run(&app, cache.path(), &["--no-references", module, "z"]).await;
    assert!(stdout_of(&with_bytes).contains("arg[1]=z"));
    assert_eq!(blob_hits(&app), 1, "--no-references sends the bytes");

    // A restarted server holds no blobs: the reference is a missing_blob, and
    // run sends the bytes again without the user noticing.
    let data_dir = app.stop().await;
    let app = TestApp::spawn_in(data_dir, |_| {}).await;
    let size_before = app.state.log.size();
    let third = cli_run(&app, cache.path(), &[module, "again"]).await;
    assert!(stdout_of(&third).contains("arg[1]=again"));
    assert_eq!(
        app.state.log.size(),
        size_before + 2,
        "the missing_blob is an execution too, then the run with the bytes"
    );
    let fourth = cli_run(&app, cache.path(), &[module, "last"]).await;
    assert!(stdout_of(&fourth).contains("arg[1]=last"));
    assert_eq!(app.state.log.size(), size_before + 3, "named again, found");
}

#[tokio::test(flavor = "multi_thread")]
async fn tiny_blobs_count_their_overhead_against_store_bytes() {
    // Issue 25, row 6: blobs of a few bytes were counted at their length, so a
    // store of 512 MiB could hold about 20 GiB of bookkeeping. Room for ten
    // two-byte blobs, then thirty sent.
    let room = 10 * charge_of(2);
    let app = TestApp::spawn_with(|config| {
        config.blobs.store_bytes = Bounded::try_from(room as u64).unwrap();
    })
    .await;
    let tiny: Vec<Vec<u8>> = (0..30u8).map(|n| vec![n, 0xff]).collect();
    for module in &tiny {
        // Not WebAssembly, and kept all the same (protocol v1.1 §D).
        let result = app.execute(&request(module)).await.result;
        assert_eq!(result.status, Status::InvalidModule);
    }
    assert!(app.executor.blobs().total_bytes() <= room);
    let mut held = 0;
    for module in &tiny {
        match app.execute(&by_reference(module)).await.result.status {
            Status::MissingBlob => {}
            Status::InvalidModule => held += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(held, 10, "the ten most recently sent, and no more");
}
