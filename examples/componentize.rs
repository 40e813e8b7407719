//! Wraps a WASI preview1 command module into a WASI preview2 `wasi:cli/run`
//! component, with the preview1 adapter the Wasmtime project publishes.
//!
//! `cargo run --example componentize -- IN.wasm OUT.wasm`

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: componentize IN.wasm OUT.wasm".into());
    };
    let component = wit_component::ComponentEncoder::default()
        .module(&std::fs::read(input)?)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )?
        .validate(true)
        .encode()?;
    std::fs::write(output, component)?;
    Ok(())
}
