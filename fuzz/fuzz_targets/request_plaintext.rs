//! The decrypted request's parser, in the order `execution` applies it: the strict
//! JSON (`ExecutionRequest`, duplicate `env` names refused), the module's base64,
//! the requested limits under the server's maxima, the `invoke` call and the
//! guest's argv/env/stdin. Never a panic; limits never above the maxima.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_hypervisor_server::execution::guest_input;
use wasm_hypervisor_protocol::payload::{EffectiveLimits, ExecutionRequest, decode_base64};
use wasm_hypervisor_server::sandbox::parse_call;

const MAXIMA: EffectiveLimits = EffectiveLimits {
    fuel: 1_000_000,
    memory_bytes: 1 << 20,
    timeout_ms: 1_000,
    max_output_bytes: 4096,
    files_bytes: Some(1 << 20),
};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<ExecutionRequest>(data) else {
        return;
    };
    if let Some(module) = &request.module {
        let _ = decode_base64(module);
    }
    for mount in &request.mounts {
        let _ = wasm_hypervisor_protocol::payload::check_mount_path(&mount.path);
    }
    if let Ok(limits) = EffectiveLimits::apply(MAXIMA, request.limits) {
        assert!(limits.fuel >= 1 && limits.fuel <= MAXIMA.fuel);
        assert!(limits.timeout_ms >= 1 && limits.timeout_ms <= MAXIMA.timeout_ms);
        assert!(limits.memory_bytes <= MAXIMA.memory_bytes);
        assert!(limits.max_output_bytes <= MAXIMA.max_output_bytes);
        assert!(limits.files_bytes <= MAXIMA.files_bytes);
    }
    if let Some(expression) = &request.invoke {
        let _ = parse_call(expression);
    }
    if let Ok(input) = guest_input(request) {
        assert!(input.args.iter().all(|arg| !arg.contains('\0')));
    }
});
