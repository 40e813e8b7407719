//! The Wasmtime `Config` and `Engine`: the server's (with the pooling allocator)
//! and the compile workers' (which only compile), and every limit Wasmtime takes
//! from its configuration, set explicitly because its defaults are permissive.
//! The constants carry their reasoning; the per-run limits are in
//! [`super::limits`].
//!
//! Everything that shapes compiled code is set in one place, [`config`], so that
//! an artifact a worker serialized loads into the server's engine.

use std::sync::OnceLock;

use wasm_hypervisor_protocol::digest::sha256;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OperatorCost, PoolingAllocationConfig,
    VariableOperatorCost,
};

/// Wasm stack available to a guest. Deep enough for ordinary recursive programs;
/// unbounded recursion ends as a `trap` ("call stack exhausted").
pub(crate) const MAX_WASM_STACK: usize = 512 << 10;

/// Native stack of the fiber a guest runs on: the wasm stack plus room for host
/// calls (WASI) made from the deepest wasm frame.
pub(crate) const ASYNC_STACK: usize = MAX_WASM_STACK + (1 << 20);

/// Elements per table. A C program's function table has a few hundred; a million
/// pointer-sized elements is 8 MiB.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Core instances per store: a core module is one; a component made from a module
/// and the WASI adapter has a handful.
pub(crate) const MAX_INSTANCES: usize = 16;
/// Tables per core module. Each pooled table slot reserves `MAX_TABLE_ELEMENTS`
/// pointers of address space, so this stays small.
pub(crate) const MAX_TABLES: usize = 4;
/// Linear memories per core module, each bounded by the memory limit. Each pooled
/// memory slot reserves 4 GiB of address space, so this stays small; compilers emit
/// one memory.
pub(crate) const MAX_MEMORIES: usize = 2;
/// Tables in one execution (all core instances of a component together).
pub(crate) const MAX_STORE_TABLES: usize = 8;
/// Linear memories in one execution (all core instances of a component together).
pub(crate) const MAX_STORE_MEMORIES: usize = 4;

/// Frames of wasm backtrace kept in a trap's error text.
pub(crate) const MAX_BACKTRACE_FRAMES: usize = 16;

/// Address space of each pooled memory slot: the whole 32-bit range.
const POOL_MEMORY_BYTES: usize = 4 << 30;

/// Bytes of each pooled linear memory reset with `memset` rather than `madvise`
/// when its slot is released (see [`pool`]): two wasm pages, what small WASI
/// programs use.
const KEEP_RESIDENT_MEMORY_BYTES: usize = 128 << 10;
/// The same for tables.
const KEEP_RESIDENT_TABLE_BYTES: usize = 16 << 10;

/// Which code generation an engine has: the ordinary one, or the one of
/// deterministic executions (protocol v1.2 §R), whose code and compiled-module
/// cache entries are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    Normal,
    /// NaN canonicalisation and deterministic relaxed SIMD on.
    Deterministic,
}

impl Flavor {
    /// The word for it on a compile worker's command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Normal => "normal",
            Flavor::Deterministic => "deterministic",
        }
    }

    /// The flavor [`Flavor::as_str`] names.
    pub fn parse(word: &str) -> Option<Flavor> {
        match word {
            "normal" => Some(Flavor::Normal),
            "deterministic" => Some(Flavor::Deterministic),
            _ => None,
        }
    }
}

/// The server's engine of `flavor`: [`config`] with, for the normal one, a pool
/// sized for `max_concurrent` guests. Deterministic executions are expected to
/// be few: their engine allocates each instance on demand rather than reserve
/// a second pool's address space.
pub(super) fn server(max_concurrent: usize, flavor: Flavor) -> wasmtime::Result<Engine> {
    let slots = u32::try_from(max_concurrent.max(1)).unwrap_or(u32::MAX);
    let pool = (flavor == Flavor::Normal).then(|| pool(slots));
    Engine::new(&config(pool, true, flavor))
}

/// A compile worker's engine: the same code generation as the server's engine
/// of `flavor`, on one core (`execution.max_concurrent_compilations` is then
/// the number of cores compilation may take), and no pool, since a worker
/// instantiates nothing.
pub(super) fn worker(flavor: Flavor) -> wasmtime::Result<Engine> {
    Engine::new(&config(None, false, flavor))
}

/// The version of [`fuel_costs`]. A change of any cost is a new version.
pub(crate) const FUEL_COSTS_VERSION: &str = "v1";

/// The classes of operators of [`fuel_costs`] `v1`, their cost, and why: the
/// table is Wasmtime 48's default (so that fuel figures read as they did before
/// the table was explicit), written down and pinned by its hash (a Wasmtime
/// upgrade that changes a default fails the test that pins it, and then needs a
/// new version).
pub(crate) const FUEL_COST_CLASSES: &[(&str, u8, &str)] = &[
    ("nop, drop", 0, "no machine code is generated for them"),
    (
        "block, loop, else, end, return, unreachable",
        0,
        "structure, not work: the branches and calls they lead to are charged",
    ),
    (
        "every other operator (arithmetic, memory access, calls, br, br_if, if, SIMD, ...)",
        1,
        "one unit an operator: a count of executed instructions, not of time",
    ),
    (
        "memory.copy, memory.fill, memory.init: per byte",
        1,
        "their work grows with their length operand, which the flat cost does not see",
    ),
    (
        "table.copy, table.fill, table.init, table.grow: per element",
        1,
        "the same, per element",
    ),
    (
        "memory.grow: per page",
        0,
        "pages are mapped lazily (copy-on-write), and memory_bytes bounds them",
    ),
    (
        "array.*: per element (the GC proposal is off)",
        1,
        "Wasmtime's default, for completeness",
    ),
];

/// The fuel cost table, set explicitly on every engine (`Config::operator_cost`):
/// the classes of [`FUEL_COST_CLASSES`].
pub(crate) fn fuel_costs() -> OperatorCost {
    let mut costs = OperatorCost::new();
    for free in [
        &mut costs.Nop,
        &mut costs.Drop,
        &mut costs.Block,
        &mut costs.Loop,
        &mut costs.Else,
        &mut costs.End,
        &mut costs.Return,
        &mut costs.Unreachable,
    ] {
        *free = 0;
    }
    costs.variable = VariableOperatorCost {
        memory_copy_per_byte: 1,
        memory_fill_per_byte: 1,
        memory_init_per_byte: 1,
        memory_grow_per_page: 0,
        table_copy_per_element: 1,
        table_fill_per_element: 1,
        table_init_per_element: 1,
        table_grow_per_element: 1,
        array_copy_per_element: 1,
        array_fill_per_element: 1,
        array_new_data_per_element: 1,
        array_init_data_per_element: 1,
        array_new_elem_per_element: 1,
        array_init_elem_per_element: 1,
        array_new_default_per_element: 1,
        array_new_per_element: 1,
    };
    costs
}

/// The fuel cost table as published: its version, the canonical description
/// (every operator's cost, as compact JSON in Wasmtime's field order) and that
/// description's SHA-256.
#[derive(Debug)]
pub(crate) struct FuelCostTable {
    pub version: &'static str,
    pub description: String,
    pub sha256: [u8; 32],
}

/// [`fuel_costs`] described and hashed, once.
pub(crate) fn fuel_cost_table() -> &'static FuelCostTable {
    static TABLE: OnceLock<FuelCostTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let description =
            serde_json::to_string(&fuel_costs()).expect("a struct of integers always serializes");
        FuelCostTable {
            version: FUEL_COSTS_VERSION,
            sha256: sha256(description.as_bytes()),
            description,
        }
    })
}

/// Fuel a deterministic execution may use per millisecond of its `timeout_ms`:
/// its wall-clock limit, which would make its outcome depend on the machine,
/// becomes `min(fuel, timeout_ms * this)`. A hundred million units a second is
/// well under what Cranelift's code does on a current core, so an execution
/// that fits in its fuel also fits in its time on any reasonable machine.
pub(crate) const DETERMINISTIC_FUEL_PER_MS: u64 = 100_000;

/// A deterministic execution's wall clock still ends it, as a safety net, at
/// this many times its `timeout_ms` (a host too slow, a guest parked in a
/// sleep); that outcome is then not reproducible, and a replay says so.
pub(crate) const DETERMINISTIC_WALL_CLOCK_FACTOR: u32 = 4;

/// Where a deterministic guest's wall clock starts: 2024-01-01T00:00:00Z.
pub(crate) const DETERMINISTIC_EPOCH_SECS: u64 = 1_704_067_200;

/// How far a deterministic guest's clocks (wall and monotonic together)
/// advance at each read: the reads are the guest's own work, and nothing else
/// moves them.
pub(crate) const DETERMINISTIC_CLOCK_STEP_NS: u64 = 1_000;

/// The canonical description of everything a deterministic execution's outputs
/// depend on besides its request (PROTOCOL.md, "Reproducible executions"): one
/// `key value` line each.
pub(crate) fn deterministic_description() -> String {
    let table = fuel_cost_table();
    let lines = [
        ("engine", "wasm-hypervisor deterministic v1".to_owned()),
        ("wasmtime", env!("WASMTIME_VERSION").to_owned()),
        (
            "target",
            format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        ),
        ("nan_canonicalization", "true".to_owned()),
        ("relaxed_simd_deterministic", "true".to_owned()),
        ("threads", "false".to_owned()),
        ("gc", "false".to_owned()),
        ("exceptions", "true".to_owned()),
        ("max_wasm_stack", MAX_WASM_STACK.to_string()),
        ("max_table_elements", MAX_TABLE_ELEMENTS.to_string()),
        ("max_instances", MAX_INSTANCES.to_string()),
        ("max_memories", MAX_MEMORIES.to_string()),
        ("max_tables", MAX_TABLES.to_string()),
        (
            "fuel_costs",
            format!("{} {}", table.version, hex::encode(table.sha256)),
        ),
        ("fuel_per_timeout_ms", DETERMINISTIC_FUEL_PER_MS.to_string()),
        ("clock_epoch_secs", DETERMINISTIC_EPOCH_SECS.to_string()),
        ("clock_step_ns", DETERMINISTIC_CLOCK_STEP_NS.to_string()),
        ("random", "wasm-hypervisor seed stream v1".to_owned()),
    ];
    lines
        .iter()
        .map(|(key, value)| format!("{key} {value}\n"))
        .collect()
}

/// SHA-256 of [`deterministic_description`]: a deterministic result's
/// `engine_sha256`.
pub(crate) fn deterministic_sha256() -> [u8; 32] {
    static HASH: OnceLock<[u8; 32]> = OnceLock::new();
    *HASH.get_or_init(|| sha256(deterministic_description().as_bytes()))
}

/// The Wasmtime configuration of every engine; `pool` is the server's normal one.
fn config(pool: Option<PoolingAllocationConfig>, parallel: bool, flavor: Flavor) -> Config {
    let mut config = Config::new();
    if let Some(pool) = pool {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    if flavor == Flavor::Deterministic {
        // Protocol v1.2 §R: the only sources of nondeterminism in wasm's own
        // semantics are NaN bit patterns and relaxed SIMD (threads are off in
        // every engine, below).
        config
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true);
    }
    config
        .memory_init_cow(true)
        .consume_fuel(true)
        .operator_cost(fuel_costs())
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .wasm_component_model(true)
        // The component model's async ABI (async-lifted functions, `stream`,
        // `future`: WASI 0.3) is off. Guests get WASI preview2, whose calls are
        // synchronous; with it on, Wasmtime keeps a task in a table for every
        // host call and guest-to-guest adapter call, and runs each export call
        // through its concurrent scheduler, which `hello.component.wasm` paid
        // for in every execution (BENCHMARKS.md, "component13, session 13").
        .concurrency_support(false)
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
pub(crate) fn name() -> String {
    format!("wasmtime {}", env!("WASMTIME_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table `v1` is Wasmtime 48's defaults, pinned: a Wasmtime upgrade that
    /// changes a default, or an edit of [`fuel_costs`], fails here and needs a
    /// new [`FUEL_COSTS_VERSION`] (and a line in PROTOCOL.md).
    #[test]
    fn the_fuel_cost_table_v1_is_pinned_by_its_hash() {
        let table = fuel_cost_table();
        assert_eq!(table.version, "v1");
        assert_eq!(
            hex::encode(table.sha256),
            "98e117d771dcf5efdfe5a0213cd39110fa3ffcd0ba67a4ee159fa2fbd08726af",
            "{}",
            table.description
        );
        assert_eq!(
            fuel_costs(),
            OperatorCost::new(),
            "v1 is Wasmtime's defaults"
        );
    }

    /// Every engine runs components without the component model's async
    /// machinery: neither the ABI (refused when a component is compiled) nor
    /// the per-store concurrent state.
    #[test]
    fn no_engine_has_the_component_model_async_machinery() {
        let engines = [
            server(1, Flavor::Normal),
            server(1, Flavor::Deterministic),
            worker(Flavor::Normal),
            worker(Flavor::Deterministic),
        ];
        for engine in engines {
            let engine = engine.expect("the configuration is valid");
            assert!(!engine.get_concurrency_support());
            assert!(
                !engine
                    .get_wasm_features()
                    .contains(wasmtime::WasmFeatures::CM_ASYNC)
            );
        }
    }

    #[test]
    fn the_deterministic_engine_description_names_the_table_and_the_settings() {
        let description = deterministic_description();
        assert!(description.starts_with("engine wasm-hypervisor deterministic v1\nwasmtime "));
        assert!(description.contains(&format!(
            "fuel_costs v1 {}\n",
            hex::encode(fuel_cost_table().sha256)
        )));
        assert_eq!(deterministic_sha256(), sha256(description.as_bytes()));
    }
}
