//! Preparing a resolved request to run, in PROTOCOL.md's order: the module's
//! size, the mounts' archives read as file trees and their contents checked
//! against the limits, then the module's compiled target, from the cache or
//! compiled now under the client's budget. A compilation gives the execution's
//! guest slot back while it waits and runs, so that executions of cached modules
//! never wait behind a compiler (`Executor::compiled`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasm_hypervisor_protocol::payload::{EffectiveLimits, Status};

use super::Executor;
use super::resolve::{Resolved, ResolvedMount};
use crate::access::ClientKey;
use crate::async_results::{Phase, report_phase};
use crate::blobs::Blob;
use crate::compile_budget::BudgetError;
use crate::sandbox::compiler::CompileError;
use crate::sandbox::engine::Flavor;
use crate::sandbox::fs::ArchiveError;
use crate::sandbox::{self, Entry, GuestInput, GuestLimits, MountError, MountSpec, RunTarget};

/// A request ready to run: its compiled target, the slot it runs in, and what
/// the sandbox is given.
pub(super) struct Prepared {
    pub target: Arc<RunTarget>,
    pub slot: OwnedSemaphorePermit,
    pub entry: Entry,
    pub input: GuestInput,
    pub mounts: Vec<MountSpec>,
    pub limits: GuestLimits,
    /// The writable mounts' paths, in request order: they come back in
    /// `mounts_out`.
    pub writable: Vec<String>,
}

/// Why a resolved request is not run; the text is the result's `error`.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    /// The module is larger than `limits.max_module_bytes`.
    #[error("the module is {bytes} bytes; the limit is {limit} bytes")]
    ModuleTooLarge { bytes: usize, limit: u64 },
    /// A mount's archive breaks the rules of protocol v1.1 §E (a link, a device,
    /// an absolute name, `..`, a member claiming more bytes than it has, ...).
    #[error("`mounts[{index}]`'s archive is refused: {error}")]
    Archive { index: usize, error: ArchiveError },
    /// The mounts' initial contents are over `files_bytes` or
    /// `max_mount_entries`.
    #[error("the mounts' contents are refused: {0}")]
    MountContents(MountError),
    /// The module was not compiled.
    #[error(transparent)]
    Compile(CompileRefusal),
}

impl Refusal {
    /// The result's status: the module's faults are `invalid_module`, the
    /// mounts' `invalid_request`.
    pub(super) fn status(&self) -> Status {
        match self {
            Refusal::ModuleTooLarge { .. } | Refusal::Compile(_) => Status::InvalidModule,
            Refusal::Archive { .. } | Refusal::MountContents(_) => Status::InvalidRequest,
        }
    }
}

/// Why a module was not compiled (status `invalid_module`).
#[derive(Debug, thiserror::Error)]
pub(super) enum CompileRefusal {
    /// The compiler refused it, or could not compile it now.
    #[error(transparent)]
    Compiler(CompileError),
    /// The client's compilation budget is spent.
    #[error(
        "this client has spent its compilation budget (clients.compile_seconds_per_hour); \
         modules already compiled still run; retry an uncached module in {} s",
        retry_after.as_secs().max(1)
    )]
    Budget { retry_after: Duration },
}

impl Executor {
    /// Makes `resolved` ready to run under `limits` (in force), holding `slot`
    /// but while a compilation runs. Refused, the slot is given back.
    pub(super) async fn prepare(
        &self,
        resolved: Resolved,
        limits: EffectiveLimits,
        slot: OwnedSemaphorePermit,
        client: ClientKey,
    ) -> Result<Prepared, Refusal> {
        let policy = &self.inner.policy;
        let Resolved {
            module,
            mounts,
            entry,
            input,
        } = resolved;
        if module.bytes.len() as u64 > policy.max_module_bytes {
            return Err(Refusal::ModuleTooLarge {
                bytes: module.bytes.len(),
                limit: policy.max_module_bytes,
            });
        }
        let files_bytes = limits.files_bytes.unwrap_or(0);
        let max_files_bytes = policy.maxima.files_bytes.unwrap_or(0);
        let mounts = mount_specs_under(mounts, max_files_bytes, policy.max_mount_entries)?;
        sandbox::fs::check_limits(&mounts, files_bytes, policy.max_mount_entries)
            .map_err(Refusal::MountContents)?;
        let writable = mounts
            .iter()
            .filter(|spec| spec.writable)
            .map(|spec| spec.path.clone())
            .collect();
        let (target, slot) = self.compiled(module, input.flavor(), slot, client).await;
        let limits = guest_limits(&limits, files_bytes, policy.max_mount_entries);
        Ok(Prepared {
            target: target.map_err(Refusal::Compile)?,
            slot,
            entry,
            input,
            mounts,
            limits,
            writable,
        })
    }

    /// The module's run target, from the cache, or compiled now: usually with
    /// the slot given back while this execution waits for and goes through
    /// compilation, and a slot taken again after (the compile tickets bound how
    /// many do so); when every ticket is taken, in its slot, as if compilation
    /// were part of running (bounded by the slots, and never refused after its
    /// plaintext was opened). Returns the slot to run in.
    async fn compiled(
        &self,
        module: Arc<Blob>,
        flavor: Flavor,
        slot: OwnedSemaphorePermit,
        client: ClientKey,
    ) -> (Result<Arc<RunTarget>, CompileRefusal>, OwnedSemaphorePermit) {
        let inner = &self.inner;
        if let Some(found) = inner.sandbox.lookup_for(flavor, &module.sha256) {
            inner.metrics.record_module_cache(true);
            return (found.map_err(CompileRefusal::Compiler), slot);
        }
        report_phase(Phase::Compiling);
        let Ok(ticket) = inner.compile_tickets.clone().try_acquire_owned() else {
            return (self.compile(&module, flavor, client).await, slot);
        };
        drop(slot);
        let target = self.compile(&module, flavor, client).await;
        // The module's bytes are not needed to run: dropped before the wait.
        drop(module);
        let slot = self.wait_for_slot().await;
        drop(ticket);
        (target, slot)
    }

    /// Compiles a module that is not cached, if `client`'s compilation budget
    /// allows, and charges the budget with the time it took.
    async fn compile(
        &self,
        module: &Blob,
        flavor: Flavor,
        client: ClientKey,
    ) -> Result<Arc<RunTarget>, CompileRefusal> {
        let inner = &self.inner;
        if let Err(BudgetError::Spent { retry_after }) = inner.budgets.check(client, Instant::now())
        {
            return Err(CompileRefusal::Budget { retry_after });
        }
        let preparation = inner
            .sandbox
            .prepare_for(flavor, module.sha256, &module.bytes)
            .await;
        inner.metrics.record_module_cache(preparation.hit);
        if let Some(compile_time) = preparation.compile_time {
            inner.metrics.observe_compile(compile_time.as_secs_f64());
            inner.budgets.charge(client, compile_time, Instant::now());
        }
        preparation.value.map_err(CompileRefusal::Compiler)
    }
}

/// The sandbox's limits of a guest that runs under `limits` (in force), with
/// `files_bytes` of files and the server's `max_mount_entries`.
pub(super) fn guest_limits(
    limits: &EffectiveLimits,
    files_bytes: u64,
    max_mount_entries: u32,
) -> GuestLimits {
    GuestLimits {
        fuel: limits.fuel,
        memory_bytes: limits.memory_bytes,
        timeout: Duration::from_millis(limits.timeout_ms),
        max_output_bytes: usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX),
        files_bytes,
        max_mount_entries,
    }
}

/// Each mount as the sandbox takes it, its archive read as a file tree. Each
/// archive is read and checked once per blob, at `max_files_bytes` (the
/// server's maxima; the request's own `files_bytes` is checked over all of them
/// after) and `max_mount_entries`.
pub(super) fn mount_specs_under(
    mounts: Vec<ResolvedMount>,
    max_files_bytes: u64,
    max_mount_entries: u32,
) -> Result<Vec<MountSpec>, Refusal> {
    let mut specs = Vec::with_capacity(mounts.len());
    for (index, mount) in mounts.into_iter().enumerate() {
        let image = match &mount.archive {
            Some(blob) => Some(
                blob.image(max_files_bytes, max_mount_entries)
                    .map_err(|error| Refusal::Archive { index, error })?,
            ),
            None => None,
        };
        specs.push(MountSpec {
            path: mount.path,
            writable: mount.writable,
            image,
        });
    }
    Ok(specs)
}
