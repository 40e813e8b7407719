//! Records the exact Wasmtime version from `Cargo.lock`, so that every result can
//! say which engine ran it (`"engine": "wasmtime 48.0.8"`).

fn main() {
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    let lock = std::fs::read_to_string("../../Cargo.lock").unwrap_or_default();
    let mut version = "unknown".to_owned();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasmtime\"" {
            if let Some(v) = lines
                .next()
                .and_then(|next| next.strip_prefix("version = \""))
            {
                version = v.trim_end_matches('"').to_owned();
            }
            break;
        }
    }
    println!("cargo:rustc-env=WASMTIME_VERSION={version}");
}
