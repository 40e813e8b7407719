//! Assembles a WebAssembly text file (core module or component) into a binary.
//!
//! `cargo run --example wat2wasm -- IN.wat OUT.wasm`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: wat2wasm IN.wat OUT.wasm".into());
    };
    std::fs::write(output, wat::parse_file(input)?)?;
    Ok(())
}
