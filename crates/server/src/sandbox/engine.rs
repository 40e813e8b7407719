//! The Wasmtime `Config` and `Engine`: the server's (with the pooling allocator)
//! and the compile workers' (which only compile), and every limit Wasmtime takes
//! from its configuration, set explicitly because its defaults are permissive.
//! The constants carry their reasoning; the per-run limits are in
//! [`super::limits`].
//!
//! Everything that shapes compiled code is set in one place, [`config`], so that
//! an artifact a worker serialized loads into the server's engine.

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Wasm stack available to a guest. Deep enough for ordinary recursive programs;
/// unbounded recursion ends as a `trap` ("call stack exhausted").
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Native stack of the fiber a guest runs on: the wasm stack plus room for host
/// calls (WASI) made from the deepest wasm frame.
pub const ASYNC_STACK: usize = MAX_WASM_STACK + (1 << 20);

/// Elements per table. A C program's function table has a few hundred; a million
/// pointer-sized elements is 8 MiB.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Core instances per store: a core module is one; a component made from a module
/// and the WASI adapter has a handful.
pub const MAX_INSTANCES: usize = 16;
/// Tables per core module. Each pooled table slot reserves `MAX_TABLE_ELEMENTS`
/// pointers of address space, so this stays small.
pub const MAX_TABLES: usize = 4;
/// Linear memories per core module, each bounded by the memory limit. Each pooled
/// memory slot reserves 4 GiB of address space, so this stays small; compilers emit
/// one memory.
pub const MAX_MEMORIES: usize = 2;
/// Tables in one execution (all core instances of a component together).
pub const MAX_STORE_TABLES: usize = 8;
/// Linear memories in one execution (all core instances of a component together).
pub const MAX_STORE_MEMORIES: usize = 4;

/// Frames of wasm backtrace kept in a trap's error text.
pub const MAX_BACKTRACE_FRAMES: usize = 16;

/// Address space of each pooled memory slot: the whole 32-bit range.
const POOL_MEMORY_BYTES: usize = 4 << 30;

/// Bytes of each pooled linear memory reset with `memset` rather than `madvise`
/// when its slot is released (see [`pool`]): two wasm pages, what small WASI
/// programs use.
const KEEP_RESIDENT_MEMORY_BYTES: usize = 128 << 10;
/// The same for tables.
const KEEP_RESIDENT_TABLE_BYTES: usize = 16 << 10;

/// The server's engine: [`config`] with a pool sized for `max_concurrent` guests.
pub(super) fn server(max_concurrent: usize) -> wasmtime::Result<Engine> {
    let slots = u32::try_from(max_concurrent.max(1)).unwrap_or(u32::MAX);
    Engine::new(&config(Some(pool(slots)), true))
}

/// A compile worker's engine: the same code generation as the server's, on one
/// core (`execution.max_concurrent_compilations` is then the number of cores
/// compilation may take), and no pool, since a worker instantiates nothing.
pub(super) fn worker() -> wasmtime::Result<Engine> {
    Engine::new(&config(None, false))
}

/// The Wasmtime configuration of both engines; `pool` is the server's.
fn config(pool: Option<PoolingAllocationConfig>, parallel: bool) -> Config {
    let mut config = Config::new();
    if let Some(pool) = pool {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
        .memory_init_cow(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .wasm_component_model(true)
        // Shared memories are not seen by the resource limiter: off, so that
        // `memory_bytes` means what it says. The GC proposal is off too (no guest
        // language the service targets needs it, and it is a large new surface).
        .wasm_threads(false)
        .wasm_gc(false)
        // Exception handling is on: C++ and other toolchains emit it (yosys from
        // YoWASP needs it). Its exception objects live in the store's GC heap,
        // which Wasmtime backs with a linear memory taken from the pool and grows
        // through the store's resource limiter, so `GuestLimiter` counts it in
        // `memory_bytes` with the guest's other memories and tables.
        .wasm_exceptions(true)
        .parallel_compilation(parallel)
        // Traps carry a short wasm backtrace into the (sealed) `error` text;
        // capped so a deep recursion cannot make the error itself huge.
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(MAX_BACKTRACE_FRAMES));
    config
}

/// The pooling allocator for `slots` guests. It reserves every instance, memory,
/// table and fiber stack up front, sized for that many guests at their largest;
/// an execution then takes a slot instead of mapping fresh memory, and
/// copy-on-write images make instantiation a few page-table updates.
fn pool(slots: u32) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(slots.saturating_mul(MAX_INSTANCES as u32))
        .total_component_instances(slots)
        // Each store may also hold one GC heap (exception objects), which takes
        // one more memory from the pool.
        .total_memories(slots.saturating_mul(MAX_STORE_MEMORIES as u32 + 1))
        .total_tables(slots.saturating_mul(MAX_STORE_TABLES as u32))
        .total_stacks(slots)
        .total_gc_heaps(slots)
        .max_core_instances_per_component(MAX_INSTANCES as u32)
        .max_memories_per_component(MAX_STORE_MEMORIES as u32)
        .max_tables_per_component(MAX_STORE_TABLES as u32)
        .max_memories_per_module(MAX_MEMORIES as u32)
        .max_tables_per_module(MAX_TABLES as u32)
        .table_elements(MAX_TABLE_ELEMENTS)
        // Slots are sized for the largest 32-bit memory (each reserves that much
        // address space anyway): the pool would otherwise refuse an oversized
        // module at compile time with a generic error. The configured limit is
        // enforced by `GuestLimiter` and the core module's resource check, which
        // say so.
        .max_memory_size(POOL_MEMORY_BYTES)
        // A released slot's first bytes are zeroed with `memset` (and a memory's
        // image copied back) instead of `madvise`: for small guests this saves
        // the system call, the TLB shootdown it causes on every core, and the
        // page faults of the next run. Beyond these bytes, `madvise` as before.
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY_BYTES)
        .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES);
    pool
}

/// "wasmtime X.Y.Z", the `engine` field of results.
pub fn name() -> String {
    format!("wasmtime {}", env!("WASMTIME_VERSION"))
}
