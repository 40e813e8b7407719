//! The `execution` section (admission control, compilation, long jobs) and the
//! `blobs` section (the blob stores).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Bounded, CompileSlots, Millis, Secs};

/// Admission control for executions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Guests running at once. 1..=10000, default 100.
    pub max_concurrent: Bounded<1, 10_000>,
    /// Requests waiting for a slot; past it `/execute` answers 503 at once.
    /// 0..=100000, default 200.
    pub max_queued: Bounded<0, 100_000>,
    /// Milliseconds a request may wait for a slot before it gets 503. 1..=600000,
    /// default 5000.
    pub queue_timeout_ms: Millis<1, 600_000>,
    /// Bytes of compiled modules kept in memory, least recently used out first,
    /// each entry counting 1 KiB (`sandbox::cache::ENTRY_OVERHEAD_BYTES`) more
    /// than its code (a cached refusal, than the module). 0 disables caching.
    /// One compiled CPython or yosys takes tens to hundreds of MB. At most 64
    /// GiB, default 1073741824 (1 GiB).
    pub module_cache_bytes: Bounded<0, { 64 << 30 }>,
    /// Modules compiled at once, each in its own worker process on one core.
    /// Executions of cached modules never wait for a compilation, and at most this
    /// many cores compile, so the rest keep running guests. 0 means the number of
    /// cores minus one (at least 1). 0..=the number of cores, default 0.
    pub max_concurrent_compilations: CompileSlots,
    /// Executions that may be in the compile stage at once without holding a
    /// guest slot (waiting for or going through a compilation, then for a slot to
    /// run in). Past it, an execution compiles in its guest slot, as if compiling
    /// were part of running. 0..=100000, default 100.
    pub max_queued_compilations: Bounded<0, 100_000>,
    /// CPU seconds one compilation may take; past it the worker is killed and
    /// the module is refused (`invalid_module`, cached by hash). The wall-clock
    /// bound is three times this plus 5 s. 1..=3600, default 300.
    pub compile_timeout_secs: Secs<1, 3600>,
    /// Address space, in bytes, one compilation may take in its worker process
    /// (on top of what the worker maps at start: its binary and the allocator's
    /// reservation); a module whose compilation needs more is refused
    /// (`invalid_module`, cached by hash).
    /// 16 MiB..=64 GiB, default 4294967296 (4 GiB).
    pub compile_memory_bytes: Bounded<{ 16 << 20 }, { 64 << 30 }>,
    /// Seconds a finished async execution's answer (`Prefer: respond-async`) is
    /// kept for `GET /executions/{id}`, counted from when it finished; then 404
    /// (the log entry stays provable at `/verify`). 600..=86400, default 900.
    pub async_retention_secs: Secs<600, 86_400>,
    /// Async executions accepted and not finished at once; past it `POST /execute`
    /// with `Prefer: respond-async` answers 503 `overloaded` before using the
    /// session. 0 turns long jobs off: the preference is ignored (RFC 7240 §2) and
    /// every execution is answered synchronously. 0..=100000, default 1000.
    pub max_async_pending: Bounded<0, 100_000>,
    /// Bytes of async answers, kept and pending, in all. A pending execution
    /// counts as the largest sealed answer its limits allow (from the moment
    /// its plaintext opens, before its `202`), a finished one as its sealed
    /// result and signature (plus 128 bytes), until it is swept; an execution
    /// that does not fit is refused with 503 `overloaded` (before its session is
    /// used when not even the smallest answer fits, else after). Kept answers
    /// are never dropped early. Never passed. 1 MiB..=64 GiB, default 1073741824
    /// (1 GiB: twice the per-client share).
    pub async_results_bytes: Bounded<{ 1 << 20 }, { 64 << 30 }>,
    /// Bytes of one client's async answers, kept and pending, counted as for
    /// `async_results_bytes` (a client is its token, else its address); past
    /// it 429 `too_many_async_results`. The largest answer a request at the
    /// default limits can produce is 8,436,424 bytes in JSON (4,263,988 in
    /// CBOR), and 503,299,370 with a writable mount (`files_bytes` and 1 KiB per
    /// `max_mount_entries` on top, however many writable mounts): the
    /// default holds any of them with the store otherwise empty, and is half the
    /// total, so that one client never holds the whole store. A value at or above
    /// `async_results_bytes` leaves only the total. 1 MiB..=64 GiB, default
    /// 536870912 (512 MiB).
    pub async_results_bytes_per_client: Bounded<{ 1 << 20 }, { 64 << 30 }>,
    /// Not a configuration key: the program run as `PROGRAM compile-worker`.
    /// `None`, always in the server, means this executable; tests that serve from
    /// their own binary point it at the built `wasm-hypervisor`.
    #[serde(skip)]
    pub compile_worker: Option<PathBuf>,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            max_concurrent: Bounded::constant::<100>(),
            max_queued: Bounded::constant::<200>(),
            queue_timeout_ms: Millis::constant::<5_000>(),
            module_cache_bytes: Bounded::constant::<{ 1 << 30 }>(),
            max_concurrent_compilations: CompileSlots::auto(),
            max_queued_compilations: Bounded::constant::<100>(),
            compile_timeout_secs: Secs::constant::<300>(),
            compile_memory_bytes: Bounded::constant::<{ 4 << 30 }>(),
            async_retention_secs: Secs::constant::<900>(),
            max_async_pending: Bounded::constant::<1000>(),
            async_results_bytes: Bounded::constant::<{ 1 << 30 }>(),
            async_results_bytes_per_client: Bounded::constant::<{ 512 << 20 }>(),
            compile_worker: None,
        }
    }
}

/// The blob stores (protocol v1.1 §D): modules and archives clients sent, kept in
/// memory so that later requests can name them by SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsConfig {
    /// Bytes of blobs kept for each scope (each bearer token, or everyone when
    /// authentication is off), least recently used out first. Each blob counts
    /// its length plus 512 bytes (`blobs::ENTRY_OVERHEAD_BYTES`: what keeping
    /// it costs), and an archive a mount has read also its file tree, so the
    /// server holds at most (tokens + 1) x this however small the blobs. A blob
    /// that counts more than this is used by its execution and not kept; 0
    /// keeps nothing (every reference is then a `missing_blob`). 0..=64 GiB,
    /// default 536870912 (512 MiB).
    pub store_bytes: Bounded<0, { 64 << 30 }>,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        BlobsConfig {
            store_bytes: Bounded::constant::<{ 512 << 20 }>(),
        }
    }
}
