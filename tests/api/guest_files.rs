//! The guest's files at the sandbox level (issue 14): real guests (the C program
//! `examples/files.c` and small WAT modules) run by `Sandbox::run` with real
//! mounts made from real archives, and the `mounts_out` archives read back.
//! The request side (`mounts` in the plaintext) is wired in `execution`; these
//! tests need none of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasm_hypervisor_server::envelope::sha256;
use wasm_hypervisor_server::sandbox::compiler::CompilerSettings;
use wasm_hypervisor_server::sandbox::fs::{self, MountImage, MountSpec, Mounts};
use wasm_hypervisor_server::sandbox::{
    Entry, GuestInput, GuestLimits, GuestOutcome, MountError, RunError, RunReport, Sandbox,
    SandboxSettings,
};

use crate::helpers::example;

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxSettings {
        max_concurrent: 4,
        module_cache_bytes: 64 << 20,
        guest_threads: 1,
        compiler: CompilerSettings {
            program: env!("CARGO_BIN_EXE_wasm-hypervisor").into(),
            slots: 1,
            cpu: Duration::from_secs(60),
            memory_bytes: 4 << 30,
        },
    })
    .unwrap()
}

fn limits(files_bytes: u64) -> GuestLimits {
    GuestLimits {
        fuel: 10_000_000_000,
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(20),
        max_output_bytes: 1 << 20,
        files_bytes,
        max_mount_entries: 10_000,
    }
}

/// A run's report with its `mounts_out` archives written, as the result's
/// builder writes them (the sandbox hands them over unwritten).
struct Ran {
    report: RunReport,
    mounts_out: Vec<Vec<u8>>,
}

impl std::ops::Deref for Ran {
    type Target = RunReport;

    fn deref(&self) -> &RunReport {
        &self.report
    }
}

async fn run_with(
    sandbox: &Sandbox,
    module: &[u8],
    entry: Entry,
    args: &[&str],
    mounts: Vec<MountSpec>,
    limits: GuestLimits,
) -> Ran {
    let target = sandbox
        .prepare(sha256(module), module)
        .await
        .value
        .expect("compiles");
    let mut input = GuestInput::default();
    input.args = args.iter().map(|a| a.to_string()).collect();
    let mut report = sandbox.run(target, entry, input, mounts, limits).await;
    let mounts_out = written(&mut report);
    Ran { report, mounts_out }
}

/// The report's `mounts_out` archives, written as the result's builder writes
/// them (each checked against its announced length).
fn written(report: &mut RunReport) -> Vec<Vec<u8>> {
    std::mem::take(&mut report.mounts_out.archives)
        .into_iter()
        .map(|mut archive| {
            let mut out = Vec::new();
            archive.write(&mut |piece| out.extend_from_slice(piece));
            assert_eq!(out.len() as u64, archive.len());
            out
        })
        .collect()
}

async fn run(module: &[u8], args: &[&str], mounts: Vec<MountSpec>, files_bytes: u64) -> Ran {
    run_with(
        &sandbox(),
        module,
        Entry::Command,
        args,
        mounts,
        limits(files_bytes),
    )
    .await
}

fn stdout(report: &RunReport) -> String {
    String::from_utf8_lossy(&report.stdout).into_owned()
}

fn exit_code(report: &RunReport) -> i32 {
    match &report.outcome {
        GuestOutcome::Exited(code) => *code,
        other => panic!("did not exit: {other:?}; stdout: {}", stdout(report)),
    }
}

/// A tar of `files` (path → contents) made by the system's `tar` in GNU format,
/// as a client's `tar -c` would make it.
fn gnu_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let output = std::process::Command::new("tar")
        .args(["--format=gnu", "--sort=name", "-cf", "-", "-C"])
        .arg(dir.path())
        .arg(".")
        .output()
        .expect("tar is installed (Debian: apt-get install tar)");
    assert!(output.status.success(), "tar failed: {:?}", output);
    output.stdout
}

fn image(tar: Vec<u8>) -> Arc<MountImage> {
    Arc::new(fs::read_image(tar, 1 << 30, 100_000).expect("a valid archive"))
}

fn mount(path: &str, writable: bool, image: Option<Arc<MountImage>>) -> MountSpec {
    MountSpec {
        path: path.into(),
        writable,
        image,
    }
}

/// A `mounts_out` archive as path → contents (`None` for a directory).
fn unpack(archive: &[u8]) -> BTreeMap<String, Option<Vec<u8>>> {
    let image = Arc::new(fs::read_image(archive.to_vec(), 1 << 30, 100_000).unwrap());
    let mounts = Mounts::new(vec![mount("/x", false, Some(image))], 1 << 30, 100_000).unwrap();
    mounts
        .walk_mount(0)
        .into_iter()
        .map(|(path, node)| {
            let contents = (!node.is_dir()).then(|| mounts.with_contents(&node, <[u8]>::to_vec));
            (String::from_utf8(path).unwrap(), contents)
        })
        .collect()
}

#[test]
fn a_real_gnu_tar_archive_is_accepted() {
    let long = format!("{}/{}.txt", "d".repeat(120), "n".repeat(150));
    let tar = gnu_tar(&[("a.txt", b"alpha"), (&long, b"long"), ("e/empty", b"")]);
    // GNU format: names over 100 bytes go in `././@LongLink` members.
    assert!(tar.windows(13).any(|w| w == b"././@LongLink"));
    let files = unpack(&tar);
    assert_eq!(files["a.txt"].as_deref(), Some(&b"alpha"[..]));
    assert_eq!(files[&long].as_deref(), Some(&b"long"[..]));
    assert_eq!(files["e/empty"].as_deref(), Some(&b""[..]));
    assert_eq!(files["e"], None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_c_program_reads_and_writes_its_mounts() {
    let input = image(gnu_tar(&[
        ("input.txt", b"hello from the archive"),
        ("b.txt", b"b"),
        ("sub/c.txt", b"c"),
    ]));
    let report = run(
        &example("files"),
        &["selftest", "/in", "/out"],
        vec![mount("/in", false, Some(input)), mount("/out", true, None)],
        1 << 20,
    )
    .await;
    let out = stdout(&report);
    assert_eq!(exit_code(&report), 0, "{out}");
    assert!(out.contains("input.txt: hello from the archive\n"), "{out}");
    assert!(out.contains("readdir: . .. b.txt input.txt sub\n"), "{out}");
    assert!(out.contains("create in IN is EROFS: ok\n"), "{out}");
    assert!(out.contains("rename IN to OUT is EXDEV: ok\n"), "{out}");
    assert!(out.ends_with("selftest: ok\n"), "{out}");
    // One archive: the writable mount, as the guest left it.
    assert_eq!(report.mounts_out.len(), 1);
    let files = unpack(&report.mounts_out[0]);
    let expected: BTreeMap<String, Option<Vec<u8>>> = [
        ("log.txt".to_string(), Some(b"Hello World".to_vec())),
        ("trunc.txt".to_string(), Some(b"abc".to_vec())),
    ]
    .into();
    assert_eq!(files, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_fills_files_bytes_gets_enospc_and_the_next_run_goes_on() {
    let sandbox = sandbox();
    let files_bytes = (1 << 20) + 1000;
    let report = run_with(
        &sandbox,
        &example("files"),
        Entry::Command,
        &["fill", "/out"],
        vec![mount("/out", true, None)],
        limits(files_bytes),
    )
    .await;
    assert_eq!(exit_code(&report), 0, "{}", stdout(&report));
    // All-or-nothing writes: 16 whole chunks of 64 KiB, then ENOSPC.
    assert_eq!(stdout(&report), "filled 1048576 bytes\n");
    let files = unpack(&report.mounts_out[0]);
    assert_eq!(files["fill.bin"].as_ref().map(Vec::len), Some(1 << 20));
    let again = run_with(
        &sandbox,
        &example("files"),
        Entry::Command,
        &["fill", "/out"],
        vec![mount("/out", true, None)],
        limits(64 << 10),
    )
    .await;
    assert_eq!(stdout(&again), "filled 65536 bytes\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn more_than_1024_open_files_is_emfile() {
    let report = run(
        &example("files"),
        &["fds", "/out", "2000"],
        vec![mount("/out", true, None)],
        1 << 20,
    )
    .await;
    // 0, 1, 2 (stdio) and 3 (the preopen) leave 1,020 of the 1,024.
    let out = stdout(&report);
    assert_eq!(exit_code(&report), 0, "{out}");
    assert!(out.starts_with("opened 1020\nthen: "), "{out}");
    let at_limit = run(
        &example("files"),
        &["fds", "/out", "1020"],
        vec![mount("/out", true, None)],
        1 << 20,
    )
    .await;
    assert_eq!(stdout(&at_limit), "opened 1020\n");
}

/// A module that prints the preopened directories it finds at fds 3.. (name per
/// line), then stops at the first fd that is not one.
const PRESTATS: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $fd i32) (local $len i32)
    (local.set $fd (i32.const 3))
    (block $done
      (loop $next
        (br_if $done (call $prestat (local.get $fd) (i32.const 0)))
        (local.set $len (i32.load (i32.const 4)))
        (drop (call $name (local.get $fd) (i32.const 100) (local.get $len)))
        (i32.store8 (i32.add (i32.const 100) (local.get $len)) (i32.const 10))
        ;; iovec at 16: (100, len + 1)
        (i32.store (i32.const 16) (i32.const 100))
        (i32.store (i32.const 20) (i32.add (local.get $len) (i32.const 1)))
        (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $next)))))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn preopens_are_fds_3_and_up_in_request_order() {
    let module = wat::parse_str(PRESTATS).unwrap();
    let report = run(
        &module,
        &[],
        vec![
            mount("/zeta", true, None),
            mount("/alpha/beta", false, Some(Arc::new(MountImage::empty()))),
            mount("/", true, None),
        ],
        1 << 20,
    )
    .await;
    assert_eq!(exit_code(&report), 0);
    assert_eq!(stdout(&report), "/zeta\n/alpha/beta\n/\n");
    // Two writable mounts: two archives, in request order, both empty.
    assert_eq!(report.mounts_out.len(), 2);
    assert!(report.mounts_out.iter().all(|tar| tar[..] == [0; 1024]));
    let none = run(&module, &[], Vec::new(), 0).await;
    assert_eq!(stdout(&none), "");
    assert!(none.mounts_out.is_empty());
}

/// Creates `f` in the preopen at fd 3, writes `data` to it, then `$end`.
fn writer_then(end: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (data (i32.const 8) "data")
  (func (export "_start")
    ;; path_open(3, 0, "f", 1, CREAT, FD_WRITE, 0, 0, &fd at 32)
    (if (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
                    (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 32))
      (then unreachable))
    (i32.store (i32.const 16) (i32.const 8))
    (i32.store (i32.const 20) (i32.const 4))
    (drop (call $write (i32.load (i32.const 32)) (i32.const 16) (i32.const 1) (i32.const 24)))
    {end}))
"#
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn writable_mounts_come_back_after_a_trap_and_a_timeout() {
    let sandbox = sandbox();
    let trap = writer_then("unreachable");
    let report = run_with(
        &sandbox,
        &trap,
        Entry::Command,
        &[],
        vec![mount("/out", true, None)],
        limits(1 << 20),
    )
    .await;
    assert!(matches!(
        report.outcome,
        GuestOutcome::Failed(RunError::Trap(_))
    ));
    assert_eq!(
        unpack(&report.mounts_out[0])["f"].as_deref(),
        Some(&b"data"[..])
    );

    // A guest that spins until the deadline.
    let spin = writer_then("(loop $forever (br $forever))");
    let mut short = limits(1 << 20);
    short.timeout = Duration::from_millis(300);
    let report = run_with(
        &sandbox,
        &spin,
        Entry::Command,
        &[],
        vec![mount("/out", true, None)],
        short,
    )
    .await;
    assert!(
        matches!(
            report.outcome,
            GuestOutcome::Failed(RunError::TimedOut { .. })
        ),
        "{:?}",
        report.outcome
    );
    assert_eq!(
        unpack(&report.mounts_out[0])["f"].as_deref(),
        Some(&b"data"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_contents_over_the_limits_are_a_typed_error() {
    let input = image(gnu_tar(&[("a", &[1; 3000]), ("b", b"")]));
    assert_eq!(
        fs::check_limits(&[mount("/in", false, Some(input.clone()))], 2999, 10),
        Err(MountError::FilesBytes {
            bytes: 3000,
            limit: 2999
        })
    );
    let report = run(
        &example("files"),
        &["selftest", "/in", "/out"],
        vec![mount("/in", false, Some(input.clone()))],
        2999,
    )
    .await;
    assert!(
        matches!(
            report.outcome,
            GuestOutcome::Failed(RunError::Mounts(MountError::FilesBytes {
                bytes: 3000,
                limit: 2999
            }))
        ),
        "{:?}",
        report.outcome
    );
    let mut few = limits(1 << 20);
    few.max_mount_entries = 1;
    let report = run_with(
        &sandbox(),
        &example("files"),
        Entry::Command,
        &[],
        vec![mount("/in", false, Some(input))],
        few,
    )
    .await;
    assert!(matches!(
        report.outcome,
        GuestOutcome::Failed(RunError::Mounts(MountError::Entries {
            entries: 2,
            limit: 1
        }))
    ));
}

/// `examples/files.component.wasm`: files.c wrapped as a `wasi:cli/run`
/// component with the preview1 adapter, so it uses `wasi:filesystem`.
fn files_component() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/files.component.wasm"))
        .unwrap()
}

/// The same C program as a component: every file call goes through
/// `wasi:filesystem`. wasmtime-wasi's own implementation has no preopens here
/// (the sandbox preopens no host directory), so reading `/in/input.txt` at all
/// shows the interface is ours.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_reads_and_writes_its_mounts() {
    let input = image(gnu_tar(&[
        ("input.txt", b"hello from the archive"),
        ("b.txt", b"b"),
        ("sub/c.txt", b"c"),
    ]));
    let report = run(
        &files_component(),
        &["selftest", "/in", "/out"],
        vec![mount("/in", false, Some(input)), mount("/out", true, None)],
        1 << 20,
    )
    .await;
    let out = stdout(&report);
    assert_eq!(exit_code(&report), 0, "{out}");
    assert!(out.contains("input.txt: hello from the archive\n"), "{out}");
    assert!(out.contains("readdir: . .. b.txt input.txt sub\n"), "{out}");
    assert!(out.contains("create in IN is EROFS: ok\n"), "{out}");
    assert!(out.contains("rename IN to OUT is EXDEV: ok\n"), "{out}");
    assert!(out.ends_with("selftest: ok\n"), "{out}");
    let files = unpack(&report.mounts_out[0]);
    let expected: BTreeMap<String, Option<Vec<u8>>> = [
        ("log.txt".to_string(), Some(b"Hello World".to_vec())),
        ("trunc.txt".to_string(), Some(b"abc".to_vec())),
    ]
    .into();
    assert_eq!(files, expected);
}

/// A component sees exactly the request's mounts as preopens: a mounted path
/// lists, any other path is not there (wasmtime-wasi's own implementation would
/// have no preopens at all).
#[tokio::test(flavor = "multi_thread")]
async fn the_filesystem_interface_is_ours_not_wasmtime_wasis() {
    let sandbox = sandbox();
    let tar = gnu_tar(&[("in-zeta", b"z")]);
    let mounts = || {
        vec![
            mount("/zeta", false, Some(image(tar.clone()))),
            mount("/alpha", true, None),
        ]
    };
    let zeta = run_with(
        &sandbox,
        &files_component(),
        Entry::Command,
        &["ls", "/zeta"],
        mounts(),
        limits(1 << 20),
    )
    .await;
    assert_eq!(stdout(&zeta), ".\n..\nin-zeta\n");
    let elsewhere = run_with(
        &sandbox,
        &files_component(),
        Entry::Command,
        &["ls", "/tmp"],
        mounts(),
        limits(1 << 20),
    )
    .await;
    assert_eq!(exit_code(&elsewhere), 1);
    assert!(
        stdout(&elsewhere).starts_with("opendir: "),
        "{}",
        stdout(&elsewhere)
    );
}

/// Through the adapter, file writes are `write-via-stream` writes: past
/// `files_bytes` the stream fails, and `filesystem-error-code` says
/// `insufficient-space`, which the guest sees as ENOSPC.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_filling_files_bytes_gets_insufficient_space() {
    let report = run(
        &files_component(),
        &["fill", "/out"],
        vec![mount("/out", true, None)],
        (1 << 20) + 1000,
    )
    .await;
    assert_eq!(exit_code(&report), 0, "{}", stdout(&report));
    assert_eq!(stdout(&report), "filled 1048576 bytes\n");
    let files = unpack(&report.mounts_out[0]);
    assert_eq!(files["fill.bin"].as_ref().map(Vec::len), Some(1 << 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_still_works_with_mounts() {
    let module = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_prestat_get" (func $p (param i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "preopen_error") (param i32) (result i32) (call $p (local.get 0) (i32.const 0))))"#,
    )
    .unwrap();
    let sandbox = sandbox();
    for (fd, errno) in [(3, "0"), (4, "8")] {
        let report = run_with(
            &sandbox,
            &module,
            Entry::Invoke(format!("preopen_error({fd})")),
            &[],
            vec![mount("/out", true, None)],
            limits(1 << 20),
        )
        .await;
        assert!(
            matches!(report.outcome, GuestOutcome::Returned),
            "{:?}",
            report.outcome
        );
        // 0: success for the preopen; 8: EBADF past it.
        assert_eq!(report.returns, [errno]);
        assert_eq!(report.mounts_out.len(), 1);
    }
}

const WASI_IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn fd_renumber_stays_in_one_fd_space() {
    // Opens `f` (fd 4), renumbers it over stdout, writes "to file" to fd 1, then
    // opens `g`, which gets the lowest free number, 4 again, and writes "to g"
    // there and "stderr ok" to fd 2.
    let module = wat::parse_str(format!(
        r#"(module {WASI_IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (data (i32.const 1) "g")
  (data (i32.const 8) "to file")
  (data (i32.const 48) "stderr ok")
  (data (i32.const 64) "to g")
  (func $print (param $fd i32) (param $at i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $at))
    (i32.store (i32.const 20) (local.get $len))
    (if (call $write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)) (then unreachable)))
  (func (export "_start")
    (if (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
                    (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 32))
      (then unreachable))
    (if (i32.ne (i32.load (i32.const 32)) (i32.const 4)) (then unreachable))
    (if (call $renumber (i32.const 4) (i32.const 1)) (then unreachable))
    (call $print (i32.const 1) (i32.const 8) (i32.const 7))
    (if (call $open (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 1)
                    (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 36))
      (then unreachable))
    (if (i32.ne (i32.load (i32.const 36)) (i32.const 4)) (then unreachable))
    (call $print (i32.const 4) (i32.const 64) (i32.const 4))
    (call $print (i32.const 2) (i32.const 48) (i32.const 9))
    ;; fd 4 over 3 (the preopen): fd 3 is now `g`, the preopen is gone.
    (if (call $renumber (i32.const 4) (i32.const 3)) (then unreachable))
    ;; Renumbering to or from a closed fd is EBADF (8).
    (if (i32.ne (call $renumber (i32.const 4) (i32.const 3)) (i32.const 8)) (then unreachable))))
"#
    ))
    .unwrap();
    let report = run(&module, &[], vec![mount("/out", true, None)], 1 << 20).await;
    assert_eq!(exit_code(&report), 0, "{:?}", report.outcome);
    assert_eq!(stdout(&report), "");
    assert_eq!(&report.stderr[..], b"stderr ok");
    let files = unpack(&report.mounts_out[0]);
    assert_eq!(files["f"].as_deref(), Some(&b"to file"[..]));
    assert_eq!(files["g"].as_deref(), Some(&b"to g"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn poll_oneoff_reports_mount_files_ready_and_sleeps_on_clocks() {
    // `file`: one fd_read subscription on a 3-byte file and a 10 s clock; returns
    // events * 1,000,000 + the first event's userdata * 1,000 + its nbytes.
    // `clock`: one 200 ms clock alone; returns events * 10 + the event's type.
    let module = wat::parse_str(format!(
        r#"(module {WASI_IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (func (export "file") (result i64)
    (if (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
                    (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32))
      (then unreachable))
    ;; subscription 0 at 64: userdata 7, fd_read (1) on the file
    (i64.store (i32.const 64) (i64.const 7))
    (i32.store8 (i32.const 72) (i32.const 1))
    (i32.store (i32.const 80) (i32.load (i32.const 32)))
    ;; subscription 1 at 112: userdata 8, clock (0), monotonic, 10 s relative
    (i64.store (i32.const 112) (i64.const 8))
    (i32.store8 (i32.const 120) (i32.const 0))
    (i32.store (i32.const 128) (i32.const 1))
    (i64.store (i32.const 136) (i64.const 10000000000))
    (if (call $poll (i32.const 64) (i32.const 256) (i32.const 2) (i32.const 400)) (then unreachable))
    (i64.add
      (i64.add
        (i64.mul (i64.extend_i32_u (i32.load (i32.const 400))) (i64.const 1000000))
        (i64.mul (i64.load (i32.const 256)) (i64.const 1000)))
      (i64.load (i32.const 272))))
  (func (export "clock") (result i64)
    (i64.store (i32.const 64) (i64.const 9))
    (i32.store8 (i32.const 72) (i32.const 0))
    (i32.store (i32.const 80) (i32.const 1))
    (i64.store (i32.const 88) (i64.const 200000000))
    (if (call $poll (i32.const 64) (i32.const 256) (i32.const 1) (i32.const 400)) (then unreachable))
    (i64.add
      (i64.mul (i64.extend_i32_u (i32.load (i32.const 400))) (i64.const 10))
      (i64.extend_i32_u (i32.load8_u (i32.const 266))))))
"#
    ))
    .unwrap();
    let input = image(gnu_tar(&[("f", b"abc")]));
    let sandbox = sandbox();
    let started = std::time::Instant::now();
    let report = run_with(
        &sandbox,
        &module,
        Entry::Invoke("file()".into()),
        &[],
        vec![mount("/in", false, Some(input.clone()))],
        limits(1 << 20),
    )
    .await;
    assert!(
        matches!(report.outcome, GuestOutcome::Returned),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.returns, ["1007003"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for the clock"
    );
    let started = std::time::Instant::now();
    let report = run_with(
        &sandbox,
        &module,
        Entry::Invoke("clock()".into()),
        &[],
        vec![mount("/in", false, Some(input))],
        limits(1 << 20),
    )
    .await;
    assert_eq!(report.returns, ["10"], "one clock event (type 0)");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_args_env_and_clocks_are_unchanged_with_mounts() {
    // hello.c with a mount it does not use: the same output as without.
    let sandbox = sandbox();
    let mut outputs = Vec::new();
    for mounts in [Vec::new(), vec![mount("/out", true, None)]] {
        let target = sandbox
            .prepare(sha256(&example("hello")), &example("hello"))
            .await
            .value
            .unwrap();
        let mut input = GuestInput::default();
        input.args = vec!["one".into(), "two".into()];
        input.env = vec![
            ("NAME".into(), "wasm".into()),
            ("EXIT_CODE".into(), "3".into()),
        ];
        input.stdin = b"line\n".to_vec().into();
        let report = sandbox
            .run(target, Entry::Command, input, mounts, limits(1 << 20))
            .await;
        assert_eq!(exit_code(&report), 3);
        outputs.push((stdout(&report), report.stderr.to_vec()));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert!(outputs[0].0.contains("arg[1]=one"), "{}", outputs[0].0);
}

/// 500 files whose names and dirents need several `fd_readdir` calls of
/// wasi-libc's 4 KiB buffer: every name once, in name order, for a read-only
/// (image) and a writable mount, a module and a component.
#[tokio::test(flavor = "multi_thread")]
async fn readdir_lists_a_large_directory_in_order_across_calls() {
    let names: Vec<String> = (0..500).map(|i| format!("file-number-{i:04}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let tar = gnu_tar(&files);
    let mut expected = String::from(".\n..\n");
    for name in &names {
        expected.push_str(name);
        expected.push('\n');
    }
    let sandbox = sandbox();
    for guest in [example("files"), files_component()] {
        for writable in [false, true] {
            let report = run_with(
                &sandbox,
                &guest,
                Entry::Command,
                &["ls", "/d"],
                vec![mount("/d", writable, Some(image(tar.clone())))],
                limits(1 << 20),
            )
            .await;
            assert_eq!(exit_code(&report), 0);
            assert_eq!(stdout(&report), expected, "writable: {writable}");
        }
    }
}

/// `tests/fixtures/big_write.wat`'s 4 MiB buffer: byte `i` is `i % 251`.
fn big_write_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// One `fd_write` of 4 MiB (as a C `fwrite` of a big buffer makes) to stdout,
/// stderr and a file, and one `fd_read` of 4 MiB of stdin, with
/// `max_output_bytes` above and below 4 MiB: never an errno; a short count at
/// most, which the guest retries as libc does. Output past the cap is dropped
/// and flagged; the file gets every byte. A module, and the same module as a
/// component (its calls go through the adapter and `wasi:io` streams).
#[tokio::test(flavor = "multi_thread")]
async fn a_4_mib_read_or_write_in_one_call_is_never_an_errno() {
    const FOUR_MIB: usize = 4 << 20;
    let module = crate::helpers::fixture("big_write");
    let sandbox = sandbox();
    let pattern = big_write_pattern(FOUR_MIB);
    for (kind, guest) in [
        ("module", module.clone()),
        ("component", crate::components::componentize(&module)),
    ] {
        let target = sandbox
            .prepare(sha256(&guest), &guest)
            .await
            .value
            .expect("compiles");
        for max_output_bytes in [8 << 20, 1 << 20, 1_000_000] {
            let mut limits = limits(8 << 20);
            limits.max_output_bytes = max_output_bytes;
            let mut input = GuestInput::default();
            input.stdin = pattern.clone().into();
            let mounts = vec![mount("/out", true, None)];
            let mut report = sandbox
                .run(target.clone(), Entry::Command, input, mounts, limits)
                .await;
            let mounts_out = written(&mut report);
            let case = format!("{kind}, max_output_bytes {max_output_bytes}");
            assert_eq!(exit_code(&report), 0, "{case}");
            let kept = FOUR_MIB.min(max_output_bytes);
            let truncated = max_output_bytes < FOUR_MIB;
            assert!(report.stdout[..] == pattern[..kept], "{case}: stdout");
            assert!(report.stderr[..] == pattern[..kept], "{case}: stderr");
            assert_eq!(report.stdout_truncated, truncated, "{case}");
            assert_eq!(report.stderr_truncated, truncated, "{case}");
            let files = unpack(&mounts_out[0]);
            let file = files["big.bin"].as_deref().unwrap();
            assert!(
                file == &pattern[..],
                "{case}: big.bin has {} bytes",
                file.len()
            );
        }
    }
}
