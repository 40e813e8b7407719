//! What bounds one run: the request's limits ([`GuestLimits`]), the one budget
//! for all of a guest's memories and tables ([`GuestLimiter`], which remembers the
//! [`LimitHit`]), and hostcall fuel. The wall clock is [`super::deadline`]'s; the
//! limits fixed for every run are the engine's ([`super::engine`]).

use std::time::Duration;

use wasmtime::ResourceLimiter;

use super::engine::{MAX_INSTANCES, MAX_STORE_MEMORIES, MAX_STORE_TABLES, MAX_TABLE_ELEMENTS};

/// Bytes in a WebAssembly page.
pub(crate) const WASM_PAGE: u64 = 65_536;

/// Host bytes of one table element: tables hold pointers.
pub(crate) const TABLE_ELEMENT_BYTES: u64 = 8;

/// Hostcall fuel: the bytes one call may copy from the guest into the host
/// (a string or list argument of a WASI call, an invoked export's return
/// values). Wasmtime's default is 128 MiB; it is set to the run's
/// `max_output_bytes`, and never below this floor so that WASI calls with
/// ordinary arguments (paths, environment) work when output is capped low.
pub(crate) const MIN_HOSTCALL_FUEL: usize = 1 << 20;

/// Limits for one run, already capped by the server's maxima.
#[derive(Debug, Clone, Copy)]
pub struct GuestLimits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub max_output_bytes: usize,
    /// Bytes of regular files in all of the run's mounts (`limits.files_bytes`).
    pub files_bytes: u64,
    /// Files and directories in all of the run's mounts (`limits.max_mount_entries`).
    pub max_mount_entries: u32,
}

impl GuestLimits {
    /// The run's hostcall fuel: `max_output_bytes`, at least [`MIN_HOSTCALL_FUEL`].
    pub fn hostcall_fuel(&self) -> usize {
        self.max_output_bytes.max(MIN_HOSTCALL_FUEL)
    }
}

/// Which limit a guest ran into (status `memory_limit`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitHit {
    /// All memories (linear memories and the GC heap) and tables together would
    /// pass `memory_bytes`.
    #[error(
        "memories (linear and GC heap) and tables of {desired} bytes in all requested; the limit is {limit} bytes"
    )]
    Memory { desired: u64, limit: u64 },
    /// One table would have more than [`MAX_TABLE_ELEMENTS`] elements.
    #[error("table of {desired} elements requested; the limit is {MAX_TABLE_ELEMENTS}")]
    Table { desired: u64 },
}

/// Enforces one budget, `memory_bytes`, for all of a guest's linear memories and
/// tables together (a component has several core instances, each may have its
/// own), by failing (trapping) the growth that would pass it; remembers which
/// limit was hit so the run ends as `memory_limit` rather than a generic trap.
///
/// Wasmtime asks the limiter for every memory's and table's initial size at
/// instantiation (growth from 0) and for every later growth, with the sizes
/// before and after, so the sum of `desired - current` over all calls is what the
/// guest holds.
pub(crate) struct GuestLimiter {
    memory_bytes: u64,
    /// Bytes of memories and tables the guest holds now.
    used: u64,
    hit: Option<LimitHit>,
}

impl GuestLimiter {
    pub(crate) fn new(memory_bytes: u64) -> GuestLimiter {
        GuestLimiter {
            memory_bytes,
            used: 0,
            hit: None,
        }
    }

    /// The limit the guest ran into, if any: it decides the run's outcome
    /// whatever error Wasmtime wrapped the refusal in.
    pub(crate) fn hit(&self) -> Option<&LimitHit> {
        self.hit.as_ref()
    }

    /// Grows the total by `current -> desired` bytes, or records the hit.
    fn grow(&mut self, current: u64, desired: u64) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.memory_bytes {
            return Err(self.refuse(LimitHit::Memory {
                desired: total,
                limit: self.memory_bytes,
            }));
        }
        self.used = total;
        Ok(true)
    }

    /// Records `hit` and makes the error that fails the growth.
    fn refuse(&mut self, hit: LimitHit) -> wasmtime::Error {
        self.hit = Some(hit.clone());
        wasmtime::Error::new(hit)
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current as u64, desired as u64)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(self.refuse(LimitHit::Table {
                desired: desired as u64,
            }));
        }
        self.grow(
            current as u64 * TABLE_ELEMENT_BYTES,
            desired as u64 * TABLE_ELEMENT_BYTES,
        )
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_STORE_TABLES
    }

    fn memories(&self) -> usize {
        MAX_STORE_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut limiter = GuestLimiter::new(4 * WASM_PAGE);
        // Two memories of two pages each: the budget is spent.
        assert!(
            limiter
                .memory_growing(0, 2 * WASM_PAGE as usize, None)
                .unwrap()
        );
        assert!(
            limiter
                .memory_growing(0, 2 * WASM_PAGE as usize, None)
                .unwrap()
        );
        // A third memory, or a table, or growing either memory, passes it.
        assert!(limiter.memory_growing(0, WASM_PAGE as usize, None).is_err());
        assert!(limiter.table_growing(0, 1, None).is_err());
        assert!(
            limiter
                .memory_growing(2 * WASM_PAGE as usize, 3 * WASM_PAGE as usize, None)
                .is_err()
        );
        assert!(matches!(
            limiter.hit,
            Some(LimitHit::Memory { desired, limit }) if desired > limit
        ));
        // Refused growth is not counted.
        assert_eq!(limiter.used, 4 * WASM_PAGE);

        let mut tables = GuestLimiter::new(1000 * TABLE_ELEMENT_BYTES);
        assert!(tables.table_growing(0, 600, None).unwrap());
        assert!(tables.table_growing(0, 500, None).is_err());
        assert!(tables.table_growing(0, 400, None).unwrap());
    }

    #[test]
    fn limit_hits_read_as_before() {
        let memory = LimitHit::Memory {
            desired: 131_072,
            limit: 65_536,
        };
        assert_eq!(
            memory.to_string(),
            "memories (linear and GC heap) and tables of 131072 bytes in all requested; the limit is 65536 bytes"
        );
        let table = LimitHit::Table { desired: 2_000_000 };
        assert_eq!(
            table.to_string(),
            "table of 2000000 elements requested; the limit is 1000000"
        );
    }
}
