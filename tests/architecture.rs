//! Architecture invariants that a reviewer should not have to check by eye
//! (ARCHITECTURE.md, "Architecture invariants"):
//!
//! - the layers: `protocol` depends on no other crate of ours; `server` and
//!   `client` depend on `protocol` and never on each other; only the binary
//!   package depends on all three;
//! - only the protocol crate's providers name a crypto crate, in code and in
//!   manifests (plus `sha2` for the SHA-256 the protocol fixes: `digest`,
//!   `merkle`);
//! - in the server, only `api` and `server` name an HTTP crate, only
//!   `sandbox` names Wasmtime, and only `cluster` names PostgreSQL's crates or
//!   holds SQL;
//! - the protocol crate depends on no runtime (tokio, axum, hyper, reqwest,
//!   wasmtime), and with `rustcrypto` alone its build for wasm32-unknown-unknown
//!   has nothing that compiles C.
//! - the guest's file system (`sandbox::fs`) names nothing of the host's disk,
//!   no server file preopens a host directory, and in the server only
//!   `sandbox::fs::archive` names `tar` and only `sandbox::fs::p1` names `wiggle`;
//! - `unsafe` code is forbidden everywhere (`[workspace.lints]`) but where the
//!   sandbox loads what the compile worker compiled (`sandbox::target`), each
//!   block with its `SAFETY` argument;
//! - no modules import each other in a cycle (the top-level modules of every
//!   crate, and the modules inside `audit` and `cluster`);
//! - ARCHITECTURE.md's code map has a row for every module file of every crate,
//!   and no row for a module that is gone (the naming rule is in its "Code map").
//! - no production function is longer than a screen (60 lines from its `fn` line
//!   to its closing brace; tests and `#[cfg(test)]` items aside).
//!
//! They read the sources and ask `cargo metadata` / `cargo tree`, so they hold for
//! what is actually built, not for what a comment says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that implement cryptographic primitives, by the name code uses
/// (`aws_lc_rs::`) and the name manifests use (`aws-lc-rs`).
const CRYPTO_CRATES: &[&str] = &[
    "aws-lc-rs",
    "aws-lc-sys",
    "ring",
    "openssl",
    "p256",
    "ecdsa",
    "elliptic-curve",
    "aes-gcm",
    "aes",
    "hmac",
    "hkdf",
    "sha2",
    "hpke",
    "rand_core",
    "getrandom",
    "ed25519-dalek",
    "curve25519-dalek",
];

/// Who may name which crypto crate in its source, and why.
const SOURCE_ALLOWED: &[(&str, &[&str])] = &[
    // The providers: the only place a primitive comes from.
    ("crates/protocol/src/provider/aws_lc.rs", &["aws-lc-rs"]),
    (
        "crates/protocol/src/provider/rustcrypto.rs",
        &[
            "p256",
            "aes-gcm",
            "hmac",
            "sha2",
            "rand_core",
            "ed25519-dalek",
        ],
    ),
    // SHA-256 fixed by the protocol, the same on every provider: the digests that
    // name modules, tokens and keys, and RFC 9162 hashing (hundreds of thousands of
    // hashes when a server starts).
    ("crates/protocol/src/digest.rs", &["sha2"]),
    ("crates/protocol/src/merkle.rs", &["sha2"]),
];

/// Which manifest may depend on which crypto crate.
const MANIFEST_ALLOWED: &[(&str, &[&str])] = &[(
    "wasm-hypervisor-protocol",
    &[
        "aws-lc-rs",
        "p256",
        "aes-gcm",
        "hmac",
        "sha2",
        "rand_core",
        "getrandom",
        "ed25519-dalek",
    ],
)];

/// Which of our crates each of our packages may depend on: the layers.
const LAYERS: &[(&str, &[&str])] = &[
    ("wasm-hypervisor-protocol", &[]),
    ("wasm-hypervisor-server", &["wasm-hypervisor-protocol"]),
    ("wasm-hypervisor-client", &["wasm-hypervisor-protocol"]),
    (
        "wasm-hypervisor",
        &[
            "wasm-hypervisor-protocol",
            "wasm-hypervisor-server",
            "wasm-hypervisor-client",
        ],
    ),
];

/// Crates that speak HTTP, by the name code uses them by.
const HTTP_CRATES: &[&str] = &[
    "axum",
    "hyper",
    "hyper-util",
    "tower",
    "tower-http",
    "utoipa",
    "utoipa-axum",
    "reqwest",
];

/// Wasmtime and the WebAssembly parser it uses.
const WASM_CRATES: &[&str] = &["wasmtime", "wasmtime-wasi", "wasmparser"];

/// What the protocol crate must never pull in, however deep.
const RUNTIMES: &[&str] = &["tokio", "axum", "hyper", "reqwest", "wasmtime", "mio"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

/// `path` relative to the repository root, as the rules above name files.
fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The crypto crates a source file names in code (comments aside): `name::` or
/// `use name`, unless the file imports a module of that name from elsewhere
/// (`use crate::hpke;`, `use aws_lc_rs::hmac;`), which then shadows the crate.
fn crypto_crates_named(source: &str) -> Vec<&'static str> {
    crates_named(source, CRYPTO_CRATES)
}

/// Which of `names` a source file names in code, as [`crypto_crates_named`] does.
fn crates_named(source: &str, names: &[&'static str]) -> Vec<&'static str> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    names
        .iter()
        .copied()
        .filter(|name| {
            let ident = name.replace('-', "_");
            let imported_module = [";", ",", "}"]
                .iter()
                .any(|end| code.contains(&format!("::{ident}{end}")));
            !imported_module
                && code.match_indices(&ident).any(|(at, _)| {
                    let before = code[..at].chars().next_back();
                    let after = &code[at + ident.len()..];
                    let starts_a_path = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                        && (after.starts_with("::")
                            || (code[..at].ends_with("use ") && after.starts_with([';', ' '])));
                    // `crate::x::sha2` would be our own module, not the crate.
                    starts_a_path && !code[..at].ends_with("::")
                })
        })
        .collect()
}

#[test]
fn only_the_protocol_crates_providers_name_a_crypto_crate_in_code() {
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests", "benches", "fuzz/fuzz_targets"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut offences = Vec::new();
    for path in &files {
        let relative = relative(path);
        if relative == "tests/architecture.rs" {
            continue;
        }
        let allowed = SOURCE_ALLOWED
            .iter()
            .find(|(file, _)| *file == relative)
            .map_or(&[][..], |(_, crates)| crates);
        let source = std::fs::read_to_string(path).unwrap();
        for name in crypto_crates_named(&source) {
            if !allowed.contains(&name) {
                offences.push(format!("{relative} names `{name}`"));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "crypto crates named outside the providers (ARCHITECTURE.md): {offences:#?}"
    );
}

#[test]
fn the_source_scan_recognises_a_crypto_crate_and_ignores_lookalikes() {
    assert_eq!(
        crypto_crates_named("use aws_lc_rs::agreement;"),
        ["aws-lc-rs"]
    );
    assert_eq!(
        crypto_crates_named("let d = sha2::Sha256::new();"),
        ["sha2"]
    );
    assert_eq!(crypto_crates_named("use hmac;"), ["hmac"]);
    assert!(crypto_crates_named("// p256::PublicKey in a comment").is_empty());
    assert!(crypto_crates_named("let p256_key = 1; my_sha2::x();").is_empty());
    assert!(crypto_crates_named("use crate::audit::sha2::x;").is_empty());
    assert!(crypto_crates_named("use crate::hpke;\nhpke::setup_base_s();").is_empty());
}

#[test]
fn only_the_protocol_crate_depends_on_a_crypto_crate() {
    let metadata = workspace_metadata();
    let mut declared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        for dependency in package["dependencies"].as_array().unwrap() {
            let crate_name = dependency["name"].as_str().unwrap();
            if CRYPTO_CRATES.contains(&crate_name) {
                declared
                    .entry(name.clone())
                    .or_default()
                    .push(crate_name.to_owned());
            }
        }
    }
    assert!(
        declared.contains_key("wasm-hypervisor-protocol"),
        "{declared:?}"
    );
    for (package, crates) in &declared {
        let allowed = MANIFEST_ALLOWED
            .iter()
            .find(|(name, _)| name == package)
            .map_or(&[][..], |(_, crates)| crates);
        for name in crates {
            assert!(
                allowed.contains(&name.as_str()),
                "{package}'s Cargo.toml depends on the crypto crate {name}"
            );
        }
    }
}

/// `cargo metadata` of the workspace's own packages.
fn workspace_metadata() -> serde_json::Value {
    let output = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn each_layer_depends_only_on_the_layers_below_it() {
    let metadata = workspace_metadata();
    let packages = metadata["packages"].as_array().unwrap();
    let ours: Vec<&str> = packages
        .iter()
        .map(|package| package["name"].as_str().unwrap())
        .collect();
    assert_eq!(ours.len(), LAYERS.len(), "{ours:?}");
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let (_, allowed) = LAYERS
            .iter()
            .find(|(layer, _)| *layer == name)
            .unwrap_or_else(|| panic!("{name} is not a layer of ARCHITECTURE.md"));
        for dependency in package["dependencies"].as_array().unwrap() {
            let dependency = dependency["name"].as_str().unwrap();
            if ours.contains(&dependency) {
                assert!(
                    allowed.contains(&dependency),
                    "{name} depends on {dependency}, which is not below it"
                );
            }
        }
    }
}

/// Files under `dir` (relative to the root) that name one of `names`, other than
/// those under one of `allowed` (prefixes relative to the root).
fn files_naming(dir: &str, names: &[&'static str], allowed: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root().join(dir), &mut files);
    assert!(!files.is_empty(), "no sources under {dir}");
    let mut offences = Vec::new();
    for path in files {
        let relative = relative(&path);
        if allowed.iter().any(|prefix| relative.starts_with(prefix)) {
            continue;
        }
        let named = crates_named(&std::fs::read_to_string(&path).unwrap(), names);
        if !named.is_empty() {
            offences.push(format!("{relative} names {named:?}"));
        }
    }
    offences
}

#[test]
fn in_the_server_only_api_and_server_know_http() {
    let offences = files_naming(
        "crates/server/src",
        HTTP_CRATES,
        &["crates/server/src/api", "crates/server/src/server.rs"],
    );
    assert!(offences.is_empty(), "{offences:#?}");
}

/// PostgreSQL's client crates, by the names code uses.
const POSTGRES_CRATES: &[&str] = &[
    "tokio-postgres",
    "deadpool-postgres",
    "deadpool",
    "postgres-types",
    "postgres-protocol",
];

/// Words that start SQL statements, as they would appear in a string.
const SQL_WORDS: &[&str] = &[
    "SELECT ",
    "INSERT INTO",
    "DELETE FROM",
    "UPDATE ",
    "CREATE TABLE",
];

#[test]
fn in_the_server_only_cluster_knows_sql() {
    let mut offences = files_naming(
        "crates/server/src",
        POSTGRES_CRATES,
        &["crates/server/src/cluster"],
    );
    let mut files = Vec::new();
    rust_files(&root().join("crates/server/src"), &mut files);
    for path in files {
        let relative = relative(&path);
        if relative.starts_with("crates/server/src/cluster") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for (number, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if let Some(word) = SQL_WORDS
                .iter()
                .find(|word| code.contains(&format!("\"{word}")))
            {
                offences.push(format!("{relative}:{} has SQL ({word})", number + 1));
            }
        }
    }
    assert!(offences.is_empty(), "{offences:#?}");
}

#[test]
fn in_the_server_only_the_sandbox_knows_wasmtime() {
    let offences = files_naming(
        "crates/server/src",
        WASM_CRATES,
        &["crates/server/src/sandbox"],
    );
    assert!(offences.is_empty(), "{offences:#?}");
}

/// Mount contents never touch disk: the guest's file system names no file API of
/// the host, no temporary files, no capability-based directories.
#[test]
fn the_guest_file_system_names_nothing_of_the_hosts_disk() {
    let offences = files_naming(
        "crates/server/src/sandbox/fs",
        &[
            "std::fs",
            "tokio::fs",
            "tempfile",
            "cap-std",
            "cap-primitives",
        ],
        &[],
    );
    assert!(offences.is_empty(), "{offences:#?}");
}

/// No server file gives a guest a directory of the host.
#[test]
fn no_server_file_preopens_a_host_directory() {
    let mut files = Vec::new();
    rust_files(&root().join("crates/server/src"), &mut files);
    let offences: Vec<String> = files
        .iter()
        .filter(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|line| line.split("//").next().unwrap_or(""))
                .any(|code| code.contains("preopened_dir"))
        })
        .map(|path| relative(path))
        .collect();
    assert!(offences.is_empty(), "{offences:#?}");
}

/// In the server, tar archives are `sandbox::fs::archive`'s alone, and wiggle's
/// guest-memory types (wasmtime-wasi's preview1 trait) `sandbox::fs::p1`'s.
#[test]
fn in_the_server_only_fs_archive_knows_tar_and_only_fs_p1_knows_wiggle() {
    let mut offences = files_naming(
        "crates/server/src",
        &["tar"],
        &[
            "crates/server/src/sandbox/fs/archive.rs",
            "crates/server/src/sandbox/fs/archive/",
        ],
    );
    offences.extend(files_naming(
        "crates/server/src",
        &["wiggle"],
        &[
            "crates/server/src/sandbox/fs/p1.rs",
            "crates/server/src/sandbox/fs/p1/",
        ],
    ));
    assert!(offences.is_empty(), "{offences:#?}");
}

#[test]
fn the_protocol_and_client_crates_know_neither_wasmtime_nor_the_server_runtime() {
    let mut offences = files_naming(
        "crates/protocol/src",
        &[
            "wasmtime", "axum", "hyper", "tokio", "reqwest", "std::fs", "std::net",
        ],
        &[],
    );
    offences.extend(files_naming(
        "crates/client/src",
        &["wasmtime", "axum", "hyper", "wasm_hypervisor_server"],
        &[],
    ));
    assert!(offences.is_empty(), "{offences:#?}");
}

/// The packages `cargo tree` lists for the protocol crate with `args`.
fn protocol_tree(args: &[&str]) -> Vec<String> {
    let output = cargo()
        .args([
            "tree",
            "--locked",
            "-p",
            "wasm-hypervisor-protocol",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    let packages: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        packages.iter().any(|p| p == "wasm-hypervisor-protocol"),
        "{tree}"
    );
    packages
}

#[test]
fn the_protocol_crate_depends_on_no_runtime() {
    for args in [
        &["-e", "normal,build"][..],
        &[
            "-e",
            "normal,build",
            "--no-default-features",
            "--features",
            "rustcrypto",
            "--target",
            "wasm32-unknown-unknown",
        ][..],
    ] {
        let packages = protocol_tree(args);
        for runtime in RUNTIMES {
            assert!(
                !packages.iter().any(|p| p == runtime),
                "`cargo tree -p wasm-hypervisor-protocol {}` has {runtime}",
                args.join(" ")
            );
        }
    }
}

#[test]
fn the_protocol_crate_for_the_browser_compiles_no_c() {
    let packages = protocol_tree(&[
        "-e",
        "normal,build",
        "--no-default-features",
        "--features",
        "rustcrypto",
        "--target",
        "wasm32-unknown-unknown",
    ]);
    for c_build in ["cc", "cmake", "aws-lc-sys", "aws-lc-rs", "ring"] {
        assert!(
            !packages.iter().any(|p| p == c_build),
            "the rustcrypto-only protocol build has {c_build}"
        );
    }
    for pure in ["p256", "aes-gcm", "getrandom", "js-sys"] {
        assert!(
            packages.iter().any(|p| p == pure),
            "expected {pure} in {packages:?}"
        );
    }
}

/// Modules that may hold `unsafe` code, and why.
const UNSAFE_ALLOWED: &[&str] = &[
    // `Module::deserialize` and `Component::deserialize` of the artifacts our own
    // compile worker produced.
    "crates/server/src/sandbox/target.rs",
];

/// The lines of the table `[name]` of the manifest `manifest` (relative to the
/// root), up to the next table; empty if it has none.
fn manifest_table(manifest: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(manifest)).unwrap();
    let header = format!("[{name}]");
    text.lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .map(|line| line.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn unsafe_code_is_forbidden_everywhere_but_where_the_sandbox_loads_compiled_code() {
    // The workspace forbids it, and every crate but the server inherits that;
    // the server denies it (one function allows it, which `forbid` would refuse).
    assert_eq!(
        manifest_table("Cargo.toml", "workspace.lints.rust"),
        [r#"unsafe_code = "forbid""#, r#"unreachable_pub = "warn""#]
    );
    for manifest in [
        "Cargo.toml",
        "crates/protocol/Cargo.toml",
        "crates/client/Cargo.toml",
    ] {
        assert_eq!(
            manifest_table(manifest, "lints"),
            ["workspace = true"],
            "{manifest} does not inherit the workspace's lints"
        );
    }
    assert_eq!(
        manifest_table("crates/server/Cargo.toml", "lints.rust"),
        [r#"unsafe_code = "deny""#, r#"unreachable_pub = "warn""#]
    );
    let mut files = Vec::new();
    rust_files(&root().join("crates/server/src"), &mut files);
    assert!(files.len() >= 30, "found only {} server files", files.len());
    let mut offences = Vec::new();
    for path in &files {
        let relative = relative(path);
        let source = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        let code = |at: usize| lines[at].split("//").next().unwrap_or("");
        let unsafe_lines: Vec<usize> = (0..lines.len())
            .filter(|&at| code(at).contains("unsafe {") || code(at).contains("unsafe fn"))
            .collect();
        let allowing = (0..lines.len()).any(|at| code(at).contains("allow(unsafe_code)"));
        if !UNSAFE_ALLOWED.contains(&relative.as_str()) {
            if allowing || !unsafe_lines.is_empty() {
                offences.push(format!("{relative} allows or uses unsafe code"));
            }
            continue;
        }
        for at in unsafe_lines {
            // The comment block right above the block must open with its argument.
            let comment_start = (0..at)
                .rev()
                .take_while(|&above| lines[above].starts_with("//"))
                .last();
            if !comment_start.is_some_and(|start| lines[start].starts_with("// SAFETY:")) {
                offences.push(format!("{relative}:{} has no SAFETY comment", at + 1));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "unsafe code outside the sandbox's loader (ARCHITECTURE.md): {offences:#?}"
    );
}

/// ARCHITECTURE.md's code map, read as the rule in its "Code map" section says:
/// each crate has a `### ` heading whose first backticked word is its directory
/// (`crates/server`), or `wasm-hypervisor` for the binary package at the root, and
/// under it a table with one row per module, the module's name first in the row's
/// first cell, in backticks. Returns, per crate directory ("" for the root), the
/// heading and the names its rows give.
fn code_map() -> BTreeMap<String, (String, Vec<String>)> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let first_backticked = |text: &str| -> Option<String> {
        let start = text.find('`')? + 1;
        let end = start + text[start..].find('`')?;
        Some(text[start..end].to_string())
    };
    let mut sections = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_code_map = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            in_code_map = line == "## Code map";
            current = None;
            continue;
        }
        if !in_code_map {
            continue;
        }
        if let Some(heading) = line.strip_prefix("### ") {
            current = match first_backticked(heading) {
                Some(name) if name.starts_with("crates/") => Some(name),
                Some(name) if name == "wasm-hypervisor" => Some(String::new()),
                _ => None,
            };
            if let Some(dir) = &current {
                sections
                    .entry(dir.clone())
                    .or_insert_with(|| (line.to_string(), Vec::new()));
            }
            continue;
        }
        let (Some(dir), Some(row)) = (&current, line.strip_prefix("| ")) else {
            continue;
        };
        // The first cell ends at the first cell separator; a header row or the
        // separator row has no backticked name and is skipped.
        let first_cell = row.split(" | ").next().unwrap_or(row);
        if let Some(name) = first_backticked(first_cell) {
            sections.get_mut(dir).unwrap().1.push(name);
        }
    }
    sections
}

/// Every module file of every crate, as (crate directory, file, the name its code
/// map row must give): in a library crate (`crates/*/src/**/*.rs`) its module
/// path (`sandbox::fs::budget` for `sandbox/fs/budget.rs` or `.../budget/mod.rs`,
/// `lib.rs` for the crate root, a binary's file as `bin/NAME.rs`); in the root
/// package (`src/**/*.rs`), which has more than one crate root, its path from the
/// root (`src/cli.rs`, `src/bin/loadgen.rs`).
fn module_files() -> Vec<(String, String, String)> {
    let mut modules = Vec::new();
    let crates_dir = root().join("crates");
    let mut crate_dirs: Vec<PathBuf> = std::fs::read_dir(&crates_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("src").is_dir())
        .collect();
    crate_dirs.sort();
    for crate_dir in crate_dirs {
        let src = crate_dir.join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.sort();
        for file in files {
            let in_src = file
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let name = if in_src == "lib.rs" || in_src == "main.rs" || in_src.starts_with("bin/") {
                in_src
            } else {
                let path = in_src.strip_suffix(".rs").unwrap();
                path.strip_suffix("/mod").unwrap_or(path).replace('/', "::")
            };
            modules.push((relative(&crate_dir), relative(&file), name));
        }
    }
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    for file in files {
        let name = relative(&file).replace('\\', "/");
        modules.push((String::new(), relative(&file), name));
    }
    modules
}

#[test]
fn the_code_map_names_every_module_of_every_crate() {
    let map = code_map();
    let mut missing = Vec::new();
    for (crate_dir, file, name) in module_files() {
        let heading = if crate_dir.is_empty() {
            "### `wasm-hypervisor`".to_string()
        } else {
            format!("### `{crate_dir}`")
        };
        match map.get(&crate_dir) {
            None => missing.push(format!("{file}: no heading {heading} in the code map")),
            Some((heading, names)) if !names.contains(&name) => {
                missing.push(format!("{file}: a row `{name}` under {heading}"))
            }
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map has no row for {} module file(s). Add a row to the \
         crate's table whose first cell starts with the name in backticks (one row per \
         module; a moved module's row takes its new name):\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

#[test]
fn the_code_map_names_no_module_that_is_gone() {
    let files = module_files();
    let mut stale = Vec::new();
    for (crate_dir, (heading, names)) in code_map() {
        for name in names {
            // The root package's table also maps what is not a module (`tests/api/`,
            // `clients/js/`); only its `src/` rows name module files.
            if crate_dir.is_empty() && !name.starts_with("src/") {
                continue;
            }
            if !files
                .iter()
                .any(|(dir, _, known)| *dir == crate_dir && *known == name)
            {
                stale.push(format!("`{name}` under {heading}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md's code map has rows for {} module(s) with no file: remove each \
         row, or rename it to where its module went:\n  {}",
        stale.len(),
        stale.join("\n  ")
    );
}

#[test]
fn the_code_map_reader_finds_rows_and_module_names() {
    // The two tests above are only as good as these readings.
    let map = code_map();
    let (heading, names) = &map["crates/server"];
    assert!(heading.starts_with("### `crates/server`"), "{heading}");
    assert!(
        names.iter().any(|name| name == "sandbox::fs::budget"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|name| name == "module"),
        "header row read as a module"
    );
    assert!(map[""].1.iter().any(|name| name == "src/main.rs"));
    let files = module_files();
    let named = |file: &str| {
        files
            .iter()
            .find(|(_, f, _)| f == file)
            .map(|(_, _, n)| n.clone())
    };
    assert_eq!(
        named("crates/server/src/sandbox/fs/mod.rs").as_deref(),
        Some("sandbox::fs")
    );
    assert_eq!(
        named("crates/server/src/sandbox/fs/budget.rs").as_deref(),
        Some("sandbox::fs::budget")
    );
    assert_eq!(
        named("crates/protocol/src/lib.rs").as_deref(),
        Some("lib.rs")
    );
    assert_eq!(named("src/main.rs").as_deref(), Some("src/main.rs"));
}

/// Import cycles allowed: none.
const CYCLES_ALLOWED: &[&[&str]] = &[];

/// Modules whose own submodules are checked against each other, besides every
/// crate's top-level modules: the two log backends' homes.
const INNER_GRAPHS: &[&str] = &["audit", "cluster"];

/// The crates of the workspace: a name for messages, the source directory its
/// module paths are relative to, and its root file.
const CRATE_ROOTS: &[(&str, &str, &str)] = &[
    ("wasm-hypervisor-protocol", "crates/protocol/src", "lib.rs"),
    ("wasm-hypervisor-server", "crates/server/src", "lib.rs"),
    ("wasm-hypervisor-client", "crates/client/src", "lib.rs"),
    ("wasm-hypervisor", "src", "main.rs"),
    ("loadgen", "src/bin", "loadgen.rs"),
];

/// The module path of a source file of a crate whose sources are in `src`:
/// `audit/file/mod.rs` and `config.rs` name `audit::file` and `config`; the
/// crate root names the empty path.
fn module_path(src: &Path, root_file: &str, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap();
    if relative == Path::new(root_file) {
        return Vec::new();
    }
    let mut segments: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segments.last().is_some_and(|last| last == "mod") {
        segments.pop();
    }
    segments
}

/// `source` without its comments (line, doc and block comments), so that a path
/// named in prose is not an import.
fn without_comments(source: &str) -> String {
    let mut code = String::with_capacity(source.len());
    let mut rest = source;
    while !rest.is_empty() {
        let line_comment = rest.find("//");
        let block_comment = rest.find("/*");
        match (line_comment, block_comment) {
            (Some(line), block) if block.is_none_or(|block| line < block) => {
                code.push_str(&rest[..line]);
                rest = rest[line..]
                    .find('\n')
                    .map_or("", |end| &rest[line + end..]);
            }
            (_, Some(block)) => {
                code.push_str(&rest[..block]);
                rest = rest[block..]
                    .find("*/")
                    .map_or("", |end| &rest[block + end + 2..]);
            }
            (None, None) => {
                code.push_str(rest);
                rest = "";
            }
            (Some(_), None) => unreachable!("the first arm takes a line comment alone"),
        }
    }
    code
}

/// The paths a use tree names, each split into segments: `a::{b, c::{d, e}}`
/// names `a::b`, `a::c::d` and `a::c::e` (`self` in a group names its prefix;
/// `as` renames are dropped).
fn expand_use_tree(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(group) = tree.strip_prefix('{') {
        let inner = group.strip_suffix('}').unwrap_or(group);
        let mut depth = 0;
        let mut start = 0;
        for (at, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use_tree(prefix, &inner[start..at], out);
                    start = at + 1;
                }
                _ => {}
            }
        }
        expand_use_tree(prefix, &inner[start..], out);
        return;
    }
    if tree.is_empty() {
        return;
    }
    let mut path = prefix.to_vec();
    let mut rest = tree;
    loop {
        let end = rest.find("::").unwrap_or(rest.len());
        let segment = rest[..end].split_whitespace().next().unwrap_or("");
        if segment.starts_with('{') {
            expand_use_tree(&path, rest, out);
            return;
        }
        if segment != "self" && segment != "*" && !segment.is_empty() {
            path.push(segment.to_owned());
        }
        if end == rest.len() {
            break;
        }
        rest = &rest[end + 2..];
    }
    out.push(path);
}

/// The paths of the crate's own modules that `code` names: every path that starts
/// with `crate::`, `super::` or `self::`, in `use` trees or inline, and `use`
/// paths that start with one of `children` (a child module named without
/// `self::`). Each is resolved against `module` (the file's module path).
fn module_paths_named(code: &str, module: &[String], children: &[String]) -> Vec<Vec<String>> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut paths = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let before = code[..at].chars().next_back();
        let starts_word = before.is_none_or(|c| !is_ident(c) && c != '$' && c != ':');
        let keyword = ["crate::", "super::", "self::", "use "]
            .into_iter()
            .find(|keyword| rest.starts_with(keyword));
        let (Some(keyword), true) = (keyword, starts_word) else {
            at += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        // The path runs to the first character that cannot be part of it.
        let mut depth = 0usize;
        let end = rest
            .char_indices()
            .skip(keyword.len())
            .find(|&(_, c)| match c {
                '{' => {
                    depth += 1;
                    false
                }
                '}' if depth > 0 => {
                    depth -= 1;
                    false
                }
                c if depth > 0 => c == ';',
                c => {
                    !(is_ident(c) || c == ':' || c == '*' || c.is_whitespace() && keyword == "use ")
                }
            })
            .map_or(rest.len(), |(end, _)| end);
        let text = rest[..end].trim_start_matches("use ").trim();
        let text = text.strip_prefix("pub ").unwrap_or(text);
        let mut named = Vec::new();
        expand_use_tree(&[], text, &mut named);
        for path in named {
            let Some(first) = path.first() else { continue };
            let resolved: Option<Vec<String>> = match first.as_str() {
                "crate" => Some(path[1..].to_vec()),
                "super" => {
                    let ups = path.iter().take_while(|s| *s == "super").count();
                    (ups <= module.len()).then(|| {
                        let mut base = module[..module.len() - ups].to_vec();
                        base.extend_from_slice(&path[ups..]);
                        base
                    })
                }
                "self" => Some([module, &path[1..]].concat()),
                child if children.iter().any(|c| c == child) => Some([module, &path].concat()),
                _ => None,
            };
            paths.extend(resolved);
        }
        at += end.max(1);
    }
    paths
}

/// Module `a` names module `b`: the edges of one crate's import graph, at the
/// granularity of its top-level modules and of the submodules of
/// [`INNER_GRAPHS`], named `crate::module` (`crate::audit::file`).
fn import_edges(crate_name: &str, src: &Path, root_file: &str) -> BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    if root_file == "lib.rs" || root_file == "main.rs" {
        rust_files(src, &mut files);
        // Other binaries are crates of their own.
        files.retain(|file| !file.starts_with(src.join("bin")));
    } else {
        files.push(src.join(root_file));
    }
    let modules: Vec<Vec<String>> = files
        .iter()
        .map(|file| module_path(src, root_file, file))
        .collect();
    // The node a module path belongs to: its top-level module, or for a path
    // inside one of `INNER_GRAPHS`, its child of that module. Paths of the
    // crate root's items, and of the items of an inner graph's own `mod.rs`
    // (its vocabulary: the errors, the trait), belong to no node.
    let is_module = |path: &[String]| modules.iter().any(|module| module.as_slice() == path);
    let node = |path: &[String]| -> Option<String> {
        let top = path.first()?;
        if !is_module(&path[..1]) {
            return None;
        }
        if INNER_GRAPHS.contains(&top.as_str()) {
            return match path.get(1) {
                Some(child) if is_module(&path[..2]) => {
                    Some(format!("{crate_name}::{top}::{child}"))
                }
                _ => Some(format!("{crate_name}::{top}")),
            };
        }
        Some(format!("{crate_name}::{top}"))
    };
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (file, module) in files.iter().zip(&modules) {
        let Some(from) = node(module) else { continue };
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        let children: Vec<String> = modules
            .iter()
            .filter(|other| other.len() == module.len() + 1 && other.starts_with(module))
            .map(|other| other.last().unwrap().clone())
            .collect();
        for path in module_paths_named(&code, module, &children) {
            let Some(to) = node(&path) else { continue };
            // An inner graph's parent and its children: the parent is their
            // vocabulary and their front door, not a node of their graph.
            let parent_and_child = |a: &str, b: &str| b.starts_with(&format!("{a}::"));
            if to != from && !parent_and_child(&from, &to) && !parent_and_child(&to, &from) {
                let targets = edges.entry(from.clone()).or_default();
                if !targets.contains(&to) {
                    targets.push(to);
                }
            }
        }
    }
    edges
}

/// The strongly connected components of more than one node (Tarjan's
/// algorithm), each sorted; together, every import cycle.
fn cycles(edges: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, Vec<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let number = state.index.len();
        state.index.insert(node, number);
        state.low.insert(node, number);
        state.stack.push(node);
        for next in state.edges.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.stack.contains(&next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let at = state.stack.iter().rposition(|n| *n == node).unwrap();
            let mut component: Vec<String> = state.stack.drain(at..).map(str::to_owned).collect();
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[test]
fn no_module_imports_form_a_cycle() {
    let mut found = Vec::new();
    let mut nodes = 0;
    for (crate_name, src, root_file) in CRATE_ROOTS {
        let edges = import_edges(crate_name, &root().join(src), root_file);
        nodes += edges.len();
        for cycle in cycles(&edges) {
            let allowed = CYCLES_ALLOWED
                .iter()
                .any(|allowed| *allowed == cycle.as_slice());
            if !allowed {
                let mut described = Vec::new();
                for from in &cycle {
                    for to in edges[from].iter().filter(|to| cycle.contains(to)) {
                        described.push(format!("{from} -> {to}"));
                    }
                }
                found.push(described);
            }
        }
    }
    // The scan found the server's modules at all.
    assert!(nodes > 20, "found imports in only {nodes} modules");
    assert!(
        found.is_empty(),
        "modules that import each other in a cycle: {found:#?}"
    );
}

#[test]
fn the_import_scan_resolves_use_trees_and_relative_paths() {
    let module: Vec<String> = ["cluster", "log"].map(String::from).to_vec();
    let named = module_paths_named(
        "use super::{Cluster, OPERATION_TIMEOUT};\n\
         use crate::audit::{self, file::{FileLog, LOG_FILE}};\n\
         let x = crate::envelope::digest_eq(a, b); $crate::nothing::here();\n\
         pub use tail::Tailer; use tokio::sync::Notify;",
        &module,
        &["tail".to_owned()],
    );
    let named: Vec<String> = named.iter().map(|path| path.join("::")).collect();
    assert_eq!(
        named,
        [
            "cluster::Cluster",
            "cluster::OPERATION_TIMEOUT",
            "audit",
            "audit::file::FileLog",
            "audit::file::LOG_FILE",
            "envelope::digest_eq",
            "cluster::log::tail::Tailer",
        ]
    );
    let edges = BTreeMap::from([
        ("a".to_owned(), vec!["b".to_owned()]),
        ("b".to_owned(), vec!["c".to_owned()]),
        ("c".to_owned(), vec!["a".to_owned(), "d".to_owned()]),
        ("d".to_owned(), vec![]),
    ]);
    assert_eq!(cycles(&edges), [["a", "b", "c"]]);
}

/// The longest a production function may be, from its `fn` line to its closing
/// brace: what one screen shows, so that it can be read without scrolling.
const LINES_PER_SCREEN: usize = 60;

/// `source` with every comment and the contents of every string and character
/// literal replaced by spaces, newlines kept: its braces are the code's braces,
/// and a byte's line is its line in `source`. Knows nested block comments, raw
/// strings (`r#"…"#`, `br"…"`), escapes, and a lifetime or label (`'a`) from a
/// character (`'{'`, `'\''`, `'\u{7b}'`).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(source.len());
    // Everything from `from` up to `to` (exclusive) becomes blanks.
    let blank = |out: &mut String, from: usize, to: usize| {
        for &c in &chars[from..to.min(chars.len())] {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied();
        let starts_token = at == 0 || !is_ident(chars[at - 1]);
        if c == '/' && next == Some('/') {
            let end = (at..chars.len())
                .find(|&i| chars[i] == '\n')
                .unwrap_or(chars.len());
            blank(&mut out, at, end);
            at = end;
        } else if c == '/' && next == Some('*') {
            let (mut depth, mut end) = (0usize, at);
            while end < chars.len() {
                if chars[end] == '/' && chars.get(end + 1) == Some(&'*') {
                    depth += 1;
                    end += 2;
                } else if chars[end] == '*' && chars.get(end + 1) == Some(&'/') {
                    depth -= 1;
                    end += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    end += 1;
                }
            }
            blank(&mut out, at, end);
            at = end;
        } else if let Some(open) = raw_string_start(&chars, at).filter(|_| starts_token) {
            // `r`, `br` or `cr`, then `hashes` times `#`, then the quote.
            let hashes = open - at - 1 - usize::from(c != 'r');
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let end = (open + 1..chars.len())
                .find(|&i| chars[i..].starts_with(&closing))
                .map_or(chars.len(), |i| i + closing.len());
            out.extend(&chars[at..=open]);
            blank(&mut out, open + 1, end);
            at = end;
        } else if c == '"' {
            let mut end = at + 1;
            while end < chars.len() && chars[end] != '"' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            out.push('"');
            blank(&mut out, at + 1, end + 1);
            at = end + 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(at + 2) == Some(&'\'')) {
            // A character: `'x'` or an escape; otherwise `'` starts a lifetime.
            let mut end = at + 1;
            while end < chars.len() && chars[end] != '\'' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            out.push('\'');
            blank(&mut out, at + 1, end + 1);
            at = end + 1;
        } else {
            out.push(c);
            at += 1;
        }
    }
    out
}

/// Where the opening quote of a raw string starting at `at` is (`r"`, `r#"`,
/// `br##"`, `cr"`), if one starts there.
fn raw_string_start(chars: &[char], at: usize) -> Option<usize> {
    let mut i = at;
    if matches!(chars[i], 'b' | 'c') {
        i += 1;
    }
    if chars.get(i) != Some(&'r') {
        return None;
    }
    i += 1;
    while chars.get(i) == Some(&'#') {
        i += 1;
    }
    (chars.get(i) == Some(&'"')).then_some(i)
}

/// The index just past the item that starts at `at` in `code` (from
/// [`code_only`]): past the `}` matching its first `{`, or past its `;` if one
/// comes first outside parentheses and brackets (`fn f() -> [u8; 4];`).
fn item_end(code: &[u8], at: usize) -> usize {
    let mut nesting = 0usize;
    let mut at = at;
    while at < code.len() {
        match code[at] {
            b'(' | b'[' => nesting += 1,
            b')' | b']' => nesting = nesting.saturating_sub(1),
            b';' if nesting == 0 => return at + 1,
            b'{' if nesting == 0 => break,
            _ => {}
        }
        at += 1;
    }
    let mut depth = 0usize;
    while at < code.len() {
        match code[at] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ => {}
        }
        at += 1;
    }
    code.len()
}

/// Whether the word `word` starts at `at` in `code`, with no identifier
/// character just before or after it.
fn word_at(code: &[u8], at: usize, word: &str) -> bool {
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    code[at..].starts_with(word.as_bytes())
        && (at == 0 || !is_ident(code[at - 1]))
        && code.get(at + word.len()).is_none_or(|&c| !is_ident(c))
}

/// The functions with a body in `source`, outside items marked `#[cfg(test)]`
/// (a test module, a test helper), as (the line of `fn`, its name, the lines it
/// spans from that line to its closing brace), and the test-only modules it
/// declares (`#[cfg(test)] mod tests;`), by name.
fn functions(source: &str) -> (Vec<(usize, String, usize)>, Vec<String>) {
    let code = code_only(source);
    let code = code.as_bytes();
    let line_of = |at: usize| code[..at].iter().filter(|&&c| c == b'\n').count() + 1;
    let ident_at = |at: usize| -> String {
        let start = at
            + code[at..]
                .iter()
                .take_while(|c| c.is_ascii_whitespace())
                .count();
        let len = code[start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count();
        String::from_utf8_lossy(&code[start..start + len]).into_owned()
    };
    let (mut found, mut test_modules) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at < code.len() {
        if code[at..].starts_with(b"#[cfg(test)]") {
            // Skip the item it marks, past any other attributes and `pub`.
            let mut item = at + b"#[cfg(test)]".len();
            loop {
                item += code[item..]
                    .iter()
                    .take_while(|c| c.is_ascii_whitespace())
                    .count();
                if code[item..].starts_with(b"#[") {
                    item += code[item..].iter().position(|&c| c == b']').unwrap_or(0) + 1;
                } else if let Some(prefix) = ["pub(crate) ", "pub(super) ", "pub ", "async "]
                    .into_iter()
                    .find(|prefix| code[item..].starts_with(prefix.as_bytes()))
                {
                    item += prefix.len();
                } else {
                    break;
                }
            }
            if word_at(code, item, "mod") || word_at(code, item, "fn") {
                let end = item_end(code, item);
                if word_at(code, item, "mod") && code[end - 1] == b';' {
                    test_modules.push(ident_at(item + 3));
                }
                at = end;
                continue;
            }
        }
        if word_at(code, at, "fn") {
            let name = ident_at(at + 2);
            let end = item_end(code, at);
            // `fn(u8) -> u8` is a type, and `fn f();` has no body.
            if !name.is_empty() && code[end - 1] == b'}' {
                let first = line_of(at);
                found.push((first, name, line_of(end - 1) - first + 1));
            }
        }
        at += 1;
    }
    (found, test_modules)
}

/// Every production function of the workspace, as (file, line, name, lines
/// spanned): the functions of `crates/*/src` and `src` (binaries included),
/// without `#[cfg(test)]` items nor the files of test-only modules.
fn production_functions() -> Vec<(String, usize, String, usize)> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        rust_files(&entry.unwrap().path().join("src"), &mut files);
    }
    files.sort();
    let mut test_only = Vec::new();
    let mut all = Vec::new();
    for file in &files {
        let (functions, test_modules) = functions(&std::fs::read_to_string(file).unwrap());
        // A module declared in `x.rs` lives in `x/`; one declared in `lib.rs`,
        // `main.rs` or `mod.rs` lives next to it.
        let stem = file.file_stem().unwrap().to_string_lossy();
        let dir = match stem.as_ref() {
            "lib" | "main" | "mod" => file.parent().unwrap().to_path_buf(),
            _ => file.with_extension(""),
        };
        for module in test_modules {
            test_only.push(dir.join(format!("{module}.rs")));
            test_only.push(dir.join(&module).join("mod.rs"));
        }
        for (line, name, lines) in functions {
            all.push((file.clone(), line, name, lines));
        }
    }
    all.into_iter()
        .filter(|(file, ..)| !test_only.contains(file))
        .map(|(file, line, name, lines)| (relative(&file).replace('\\', "/"), line, name, lines))
        .collect()
}

#[test]
fn no_production_function_is_longer_than_a_screen() {
    let functions = production_functions();
    // The scan found the workspace's functions at all.
    assert!(
        functions.len() > 500,
        "found only {} functions",
        functions.len()
    );
    let offenders: Vec<String> = functions
        .iter()
        .filter(|(_, _, _, lines)| *lines > LINES_PER_SCREEN)
        .map(|(file, line, name, lines)| format!("{file}:{line} {name} ({lines} lines)"))
        .collect();
    assert!(
        offenders.is_empty(),
        "{} production function(s) longer than {LINES_PER_SCREEN} lines from `fn` to \
         their closing brace: split each by what its parts do, into named helpers:\n  {}",
        offenders.len(),
        offenders.join("\n  ")
    );
}

#[test]
fn the_function_scan_measures_bodies_past_strings_chars_lifetimes_and_comments() {
    // Each brace in a literal or a comment would end a body early or late.
    let source = r####"
fn first<'a>(x: &'a str) -> [u8; 4] {
    let _ = '{'; let _ = '\''; let _ = '\u{7d}'; let _ = b'}';
    let _ = "}\"}"; let _ = r#"}"# ; let _ = br##"}"#}"##;
    // }
    /* } /* nested } */ } */
    'outer: loop { break 'outer; }
    [0; 4]
}
fn declared_only(x: u8) -> [u8; 2];
type Callback = fn(u8) -> u8;
pub(crate) async fn second() {}
#[cfg(test)]
mod tests {
    fn a_test_helper() {}
}
#[cfg(test)]
#[path = "x.rs"]
mod more_tests;
#[cfg(test)]
pub(crate) fn only_for_tests() {
}
fn third() {
    let url = "http://example"; let _ = '"';
}
"####;
    let (functions, test_modules) = functions(source);
    assert_eq!(
        functions,
        [
            (2, "first".to_owned(), 8),
            (12, "second".to_owned(), 1),
            (23, "third".to_owned(), 3),
        ]
    );
    assert_eq!(test_modules, ["more_tests"]);
    // The scan of the tree finds a known long test-only function nowhere, and
    // finds functions of the binaries.
    let all = production_functions();
    assert!(
        all.iter()
            .all(|(file, ..)| !file.ends_with("known_answer_tests.rs")
                && !file.ends_with("audit/file/tests.rs"))
    );
    assert!(all.iter().any(|(file, ..)| file.starts_with("src/bin/")));
    assert!(
        !all.iter()
            .any(|(_, _, name, _)| name.starts_with("a_bad_value_of_every_kind"))
    );
}
