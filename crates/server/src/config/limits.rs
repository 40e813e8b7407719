//! The `limits` section: the server's maxima for one execution.

use serde::{Deserialize, Serialize};
use wasm_hypervisor_protocol::payload::{MAX_ARGS_CEILING, MAX_ENV_CEILING};

use super::{Bounded, Millis, UNBOUNDED};

/// The server's maxima for one execution. A request may lower each, never raise it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wasmtime fuel units (about one per executed instruction). >= 1, default 10000000000.
    pub fuel: Bounded<1, UNBOUNDED>,
    /// Largest linear memory, in bytes, for each memory of the guest. 64 KiB (one
    /// wasm page)..=4 GiB, default 67108864 (64 MiB).
    pub memory_bytes: Bounded<65_536, { 4 << 30 }>,
    /// Wall-clock milliseconds from the moment the guest starts (queueing and
    /// compilation excluded); also ends a guest blocked in a host call.
    /// 1..=600000, default 10000.
    pub timeout_ms: Millis<1, 600_000>,
    /// Bytes of stdout, and separately of stderr, returned; more is dropped and
    /// flagged as truncated. 0..=64 MiB, default 1048576 (1 MiB).
    pub max_output_bytes: Bounded<0, { 64 << 20 }>,
    /// Largest module, in bytes, accepted for compilation, whether sent or named
    /// by its SHA-256. >= 8, default 134217728 (128 MiB: yosys is 69 MB).
    pub max_module_bytes: Bounded<8, UNBOUNDED>,
    /// Largest HTTP request body, in bytes, read before anything is decoded; larger
    /// bodies get 413. In a JSON body the module and archives travel base64-encoded
    /// inside base64-encoded ciphertext, so this should be at least about 1.8 x
    /// `max_module_bytes` for modules sent by bytes. A body is held in memory while
    /// it is read: this bounds each connection's share. >= 1024, default
    /// 268435456 (256 MiB).
    pub max_request_bytes: Bounded<1024, UNBOUNDED>,
    /// Bytes of all regular files of all of an execution's mounts together
    /// (protocol v1.1 §E): archive contents and what the guest writes. Mount
    /// contents over it are an `invalid_request`; a write past it fails in the
    /// guest with `ENOSPC`. Held in memory, never on disk, per execution running.
    /// A request may lower it. 0..=4 GiB, default 268435456 (256 MiB).
    pub files_bytes: Bounded<0, { 4 << 30 }>,
    /// Most files and directories of all of an execution's mounts together,
    /// archive members and what the guest creates; past it archives are an
    /// `invalid_request` and creating an entry fails with `ENOSPC`.
    /// 1..=1000000, default 100000.
    pub max_mount_entries: Bounded<1, 1_000_000>,
    /// Most `args` entries a request may give the guest; more is an
    /// `invalid_request`. Parsing stops at 65536 whatever this says.
    /// 0..=65536, default 4096.
    pub max_args: Bounded<0, { MAX_ARGS_CEILING as u64 }>,
    /// Most `env` entries a request may give the guest; more is an
    /// `invalid_request`. Parsing stops at 65536 whatever this says.
    /// 0..=65536, default 4096.
    pub max_env: Bounded<0, { MAX_ENV_CEILING as u64 }>,
    /// Most bytes of `args` and `env` together (each string's UTF-8 bytes plus one
    /// for its terminating NUL, and one for each `=`, as the guest sees them);
    /// more is an `invalid_request`. 0..=16 MiB, default 1048576 (1 MiB).
    pub max_args_env_bytes: Bounded<0, { 16 << 20 }>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            fuel: Bounded::constant::<10_000_000_000>(),
            memory_bytes: Bounded::constant::<{ 64 << 20 }>(),
            timeout_ms: Millis::constant::<10_000>(),
            max_output_bytes: Bounded::constant::<{ 1 << 20 }>(),
            max_module_bytes: Bounded::constant::<{ 128 << 20 }>(),
            max_request_bytes: Bounded::constant::<{ 256 << 20 }>(),
            files_bytes: Bounded::constant::<{ 256 << 20 }>(),
            max_mount_entries: Bounded::constant::<100_000>(),
            max_args: Bounded::constant::<4096>(),
            max_env: Bounded::constant::<4096>(),
            max_args_env_bytes: Bounded::constant::<{ 1 << 20 }>(),
        }
    }
}
