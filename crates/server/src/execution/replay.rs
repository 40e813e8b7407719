//! A deterministic request run again on this machine, with no server, no session
//! and no log (protocol v1.2 §R, `wasm-hypervisor replay`): read it as the
//! executor does, resolve its blobs (which must be the request's own bytes),
//! prepare its mounts, compile its module for the deterministic engine, run it in
//! the [`Sandbox`], and write its result plaintext in the request's format, the
//! bytes the server sealed, for the caller to compare.
//!
//! The steps are the executor's own functions (`read`, `resolve`, `prepare`'s
//! mount and limit helpers, `result`), so that a replay runs the code the
//! server ran; what it leaves out is what a deterministic result does not
//! depend on: sessions, quotas, the compile budget, the module cache's sharing,
//! sealing and logging.

use wasm_hypervisor_protocol::encoding::Hex;
use wasm_hypervisor_protocol::payload::{EffectiveLimits, ExecutionResult, Status};
use wasm_hypervisor_protocol::plaintext::Format;
use wasm_hypervisor_protocol::request::{Ceilings, Request};
use zeroize::Zeroizing;

use super::prepare::{CompileRefusal, Refusal, guest_limits, mount_specs_under};
use super::{Reading, read, resolve, result};
use crate::access::Scope;
use crate::blobs::BlobStores;
use crate::envelope::Plaintext;
use crate::metrics::Metrics;
use crate::sandbox::{self, Sandbox};

/// Why a request cannot be replayed; a replay that ran and differs is not one
/// of these, it is a result.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The request is not `"deterministic": true`: its outputs depend on the
    /// clock and the host's random bytes, so no replay can match them.
    #[error(
        "the request is not deterministic (no `\"deterministic\": true`): it cannot be replayed"
    )]
    NotDeterministic,
    /// The request does not read as one that can run (the server answered it
    /// `invalid_request`, without running a guest).
    #[error("the request does not read as a runnable request: {0}")]
    Unreadable(String),
    /// The request names its module or an archive by SHA-256 instead of
    /// carrying its bytes, so there is nothing here to run.
    #[error(
        "the request names blobs by SHA-256 instead of carrying them ({0}); a replay needs their bytes (`run --replay-bundle` sends them)"
    )]
    NamedBlobs(String),
}

/// Where a replay is bounded: the limits the result says were in force, and the
/// server-side bounds the result does not show.
#[derive(Debug, Clone, Copy)]
pub struct ReplayLimits {
    /// The result's `limits` (the request's, under the server's maxima).
    pub limits: EffectiveLimits,
    /// `limits.max_mount_entries` of the server (not in the result).
    pub max_mount_entries: u32,
}

/// Runs the deterministic request `plaintext` again in `sandbox` and returns its
/// result plaintext, in the request's format, for the execution `execution_id`
/// (the field is copied into the result, it changes nothing else).
pub async fn replay_locally(
    sandbox: &Sandbox,
    plaintext: &[u8],
    execution_id: uuid::Uuid,
    bounds: ReplayLimits,
) -> Result<Zeroizing<Vec<u8>>, ReplayError> {
    let plaintext = Plaintext::new(plaintext.to_vec());
    let request = read_deterministic(&plaintext, bounds.limits)?;
    let mut result = result::for_request(execution_id, &request);
    let limits = request.limits;
    let resolved = resolve_alone(request, &plaintext)?;
    let format = Format::of(&plaintext);
    let files_bytes = limits.files_bytes.unwrap_or(0);
    let prepared = mount_specs_under(resolved.mounts, files_bytes, bounds.max_mount_entries)
        .and_then(|mounts| {
            sandbox::fs::check_limits(&mounts, files_bytes, bounds.max_mount_entries)
                .map(|()| mounts)
                .map_err(Refusal::MountContents)
        });
    let mounts = match prepared {
        Ok(mounts) => mounts,
        Err(refusal) => {
            let mut result = result::refused_with(result, refusal.status(), refusal);
            return Ok(finish(&mut result, format, None));
        }
    };
    let writable = mounts
        .iter()
        .filter(|spec| spec.writable)
        .map(|spec| spec.path.clone())
        .collect();
    let module = resolved.module;
    let target = sandbox
        .prepare_for(resolved.input.flavor(), module.sha256, &module.bytes)
        .await
        .value;
    let target = match target {
        Ok(target) => target,
        Err(error) => {
            let refusal = Refusal::Compile(CompileRefusal::Compiler(error));
            let mut result = result::refused_with(result, Status::InvalidModule, refusal);
            return Ok(finish(&mut result, format, None));
        }
    };
    let report = sandbox
        .run(
            target,
            resolved.entry,
            resolved.input,
            mounts,
            guest_limits(&limits, files_bytes, bounds.max_mount_entries),
        )
        .await;
    let mounts_out = result::fill_from_report(&mut result, report, writable);
    Ok(finish(&mut result, format, mounts_out))
}

/// Reads `plaintext` as the executor does and checks that it is deterministic.
fn read_deterministic(
    plaintext: &Plaintext,
    limits: EffectiveLimits,
) -> Result<Request<'_>, ReplayError> {
    // The request passed the server's own ceilings on args and env; the limits
    // it ran under are the result's, so a request that asked for less reads
    // the same here.
    let ceilings = Ceilings {
        maxima: limits,
        max_args: usize::MAX,
        max_env: usize::MAX,
        max_args_env_bytes: usize::MAX,
    };
    let request = match read(plaintext, &ceilings) {
        Reading::Request(request) => request,
        Reading::Refused(refused) => {
            return Err(ReplayError::Unreadable(refused.error.to_string()));
        }
        Reading::Panicked => return Err(ReplayError::Unreadable("reading it panicked".to_owned())),
    };
    if request.deterministic.is_none() {
        return Err(ReplayError::NotDeterministic);
    }
    Ok(request)
}

/// Resolves `request`'s blobs in a store of its own, for this request alone:
/// what it sent is found, what it only names is missing.
fn resolve_alone(
    request: Request<'_>,
    plaintext: &Plaintext,
) -> Result<resolve::Resolved, ReplayError> {
    let stores = BlobStores::new(usize::MAX);
    let store = stores.scope(Scope::Open);
    resolve::resolve(&store, &Metrics::new(), request, plaintext).map_err(
        |resolve::Missing(hashes)| {
            let list = hashes
                .iter()
                .map(|hash| Hex(*hash).to_string())
                .collect::<Vec<_>>()
                .join(", ");
            ReplayError::NamedBlobs(list)
        },
    )
}

/// The result plaintext as `record` writes it before sealing.
fn finish(
    result: &mut ExecutionResult,
    format: Format,
    mounts_out: Option<result::PendingMountsOut>,
) -> Zeroizing<Vec<u8>> {
    result::cap_error(&mut result.error);
    result::result_plaintext(result, format, mounts_out)
}
