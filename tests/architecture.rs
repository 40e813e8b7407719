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
//! - `unsafe` code is forbidden everywhere but where the sandbox loads what the
//!   compile worker compiled (`sandbox::target`), each block with its `SAFETY`
//!   argument.
//! - ARCHITECTURE.md's code map has a row for every module file of every crate,
//!   and no row for a module that is gone (the naming rule is in its "Code map").
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
        &["crates/server/src/sandbox/fs/archive.rs"],
    );
    offences.extend(files_naming(
        "crates/server/src",
        &["wiggle"],
        &["crates/server/src/sandbox/fs/p1.rs"],
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

/// Crate roots that forbid `unsafe` for their whole crate.
const FORBIDDING_CRATE_ROOTS: &[&str] = &[
    "crates/protocol/src/lib.rs",
    "crates/client/src/lib.rs",
    "src/main.rs",
    "src/bin/loadgen.rs",
];

/// Files that only deny `unsafe` (`forbid` would bind the allowed module too):
/// the server's crate root and the sandbox's.
const DENYING_ROOTS: &[&str] = &[
    "crates/server/src/lib.rs",
    "crates/server/src/sandbox/mod.rs",
];

#[test]
fn unsafe_code_is_forbidden_everywhere_but_where_the_sandbox_loads_compiled_code() {
    for root_file in FORBIDDING_CRATE_ROOTS {
        let source = std::fs::read_to_string(root().join(root_file)).unwrap();
        assert!(
            source
                .lines()
                .any(|line| line.trim() == "#![forbid(unsafe_code)]"),
            "{root_file} does not forbid unsafe code"
        );
    }
    let mut files = Vec::new();
    rust_files(&root().join("crates/server/src"), &mut files);
    assert!(files.len() >= 30, "found only {} server files", files.len());
    let mut offences = Vec::new();
    for path in &files {
        let relative = relative(path);
        let source = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        let unsafe_lines: Vec<usize> = (0..lines.len())
            .filter(|&at| !lines[at].starts_with("//") && lines[at].contains("unsafe {"))
            .collect();
        if DENYING_ROOTS.contains(&relative.as_str()) {
            if !lines.contains(&"#![deny(unsafe_code)]") {
                offences.push(format!("{relative} does not deny unsafe code"));
            }
        } else if !UNSAFE_ALLOWED.contains(&relative.as_str()) {
            if !lines.contains(&"#![forbid(unsafe_code)]") {
                offences.push(format!("{relative} does not forbid unsafe code"));
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
