//! The decrypted request's reader, as `execution` applies it: the protocol's
//! `Request::read` on either format (strict JSON or CBOR, the mounts' shape, the
//! module's and archives' bytes, the requested limits under the server's maxima,
//! the guest's argv/env/stdin and their sizes), then the `invoke` call's parse.
//! Never a panic; limits never above the maxima; nothing WASI cannot carry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_hypervisor_protocol::payload::EffectiveLimits;
use wasm_hypervisor_protocol::request::{Ceilings, Request};
use wasm_hypervisor_server::sandbox::parse_call;

const CEILINGS: Ceilings = Ceilings {
    maxima: EffectiveLimits {
        fuel: 1_000_000,
        memory_bytes: 1 << 20,
        timeout_ms: 1_000,
        max_output_bytes: 4096,
        files_bytes: Some(1 << 20),
    },
    max_args: 64,
    max_env: 64,
    max_args_env_bytes: 4096,
};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = Request::read(data, &CEILINGS) else {
        return;
    };
    let (limits, maxima) = (request.limits, CEILINGS.maxima);
    assert!(limits.fuel >= 1 && limits.fuel <= maxima.fuel);
    assert!(limits.timeout_ms >= 1 && limits.timeout_ms <= maxima.timeout_ms);
    assert!(limits.memory_bytes <= maxima.memory_bytes);
    assert!(limits.max_output_bytes <= maxima.max_output_bytes);
    assert!(limits.files_bytes <= maxima.files_bytes);
    assert!(request.input.args.iter().all(|arg| !arg.contains('\0')));
    assert!(request.input.args.len() <= CEILINGS.max_args);
    assert!(request.input.env.len() <= CEILINGS.max_env);
    if let Some(expression) = &request.invoke {
        let _ = parse_call(expression);
    }
});
