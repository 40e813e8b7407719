//! The `invoke` parser (`sandbox::parse_call`): the export's name before the first
//! `(`, the argument list as a WAVE call. Never a panic; a name it returns is
//! never empty and never holds a `(`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_hypervisor_server::sandbox::parse_call;

fuzz_target!(|data: &[u8]| {
    let Ok(expression) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((name, _call)) = parse_call(expression) {
        assert!(!name.is_empty());
        assert!(!name.contains('('));
    }
});
