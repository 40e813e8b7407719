//! The `POST /execute` body decoder (`api::decode_execute_body`): JSON, the session
//! id, `enc` as a P-256 point, `ciphertext` as base64. Any input is a sealed
//! request or a `malformed_body`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_hypervisor_server::api::decode_execute_body;
use wasm_hypervisor_server::envelope::Provider;

fuzz_target!(|data: &[u8]| {
    match decode_execute_body(Provider::default(), data) {
        Ok(sealed) => assert_eq!(sealed.enc.to_bytes().len(), 65),
        Err(error) => assert_eq!(error.code(), "malformed_body"),
    }
});
