//! The result plaintext of an execution (protocol §3, v1.1 §G): where every
//! result starts ([`blank_result`]), the results of a request refused before its
//! guest ran (its own checks, a missing blob, its module or mounts), the fields a
//! run fills in from its report, the `error`'s cap, and the document written in
//! the request's format into the one buffer that is then sealed.

use uuid::Uuid;
use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::payload::{EffectiveLimits, ExecutionResult, Status};
use wasm_hypervisor_protocol::plaintext::{self, ArchiveSource, Format, StreamedMount};
use wasm_hypervisor_protocol::request::{Refused, Request};
use zeroize::Zeroizing;

use crate::answer::MAX_ERROR_BYTES;
use crate::sandbox::fs::{MountsOut, TreeArchive};
use crate::sandbox::{GuestOutcome, RunError, RunReport, Sandbox};

/// `result` for an execution that ended with `error` before its guest ran: the
/// status, and the text for the client, rendered here.
pub(super) fn refused_with(
    mut result: ExecutionResult,
    status: Status,
    error: impl std::fmt::Display,
) -> ExecutionResult {
    result.status = status;
    result.error = Some(error.to_string());
    result
}

/// A result with nothing in it yet: the starting point of every result.
pub(super) fn blank_result(execution_id: Uuid, limits: EffectiveLimits) -> ExecutionResult {
    ExecutionResult::blank(
        execution_id.hyphenated().to_string(),
        EffectiveLimits {
            files_bytes: None,
            ..limits
        },
        Sandbox::engine_name(),
    )
}

/// The result of an execution the host failed to carry out (a server bug).
pub(super) fn host_failure(execution_id: Uuid, limits: EffectiveLimits) -> ExecutionResult {
    ExecutionResult {
        status: Status::Trap,
        error: Some(RunError::HostFailure.to_string()),
        ..blank_result(execution_id, limits)
    }
}

/// The result of a request that passed its own checks, before it resolves: the
/// module's SHA-256 (named, or of the bytes sent), the limits in force as the
/// result shows them, and for a deterministic request its engine's hash.
pub(super) fn for_request(execution_id: Uuid, request: &Request<'_>) -> ExecutionResult {
    let deterministic = request.deterministic.is_some();
    ExecutionResult {
        module_sha256: Some(Hex(request.module.sha256())),
        limits: request.shown_limits(),
        // Protocol v1.2 §R: what the outputs of a deterministic execution depend
        // on besides the request.
        deterministic,
        engine_sha256: deterministic.then(|| Hex(Sandbox::deterministic_engine_sha256())),
        ..blank_result(execution_id, request.limits)
    }
}

/// The result of a request its own checks refused (`invalid_request`): the
/// module's SHA-256 and the limits in force when they were known, else `null`
/// and the server's maxima.
pub(super) fn refused_request(
    execution_id: Uuid,
    maxima: EffectiveLimits,
    refused: &Refused<'_>,
) -> ExecutionResult {
    let mut result = blank_result(execution_id, maxima);
    result.module_sha256 = refused.module_sha256.map(Hex);
    if let Some(limits) = refused.limits {
        result.limits = limits;
    }
    refused_with(result, Status::InvalidRequest, &refused.error)
}

/// `result` for a request naming blobs its client's store does not hold
/// (`missing_blob`, protocol v1.1 §D): every one of them, in `missing_blobs`
/// and in the `error`.
pub(super) fn missing_blobs(
    mut result: ExecutionResult,
    missing: Vec<[u8; 32]>,
) -> ExecutionResult {
    let list = missing
        .iter()
        .map(|hash| Hex(*hash).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    result.missing_blobs = Some(missing.into_iter().map(Hex).collect());
    refused_with(
        result,
        Status::MissingBlob,
        format_args!("blobs not in this client's store: {list}; send them again with their bytes"),
    )
}

/// The writable mounts of a guest that ran: their paths, in request order, and
/// their archives, planned but not yet written.
pub(super) struct PendingMountsOut {
    paths: Vec<String>,
    archives: MountsOut,
}

/// The result of a guest that ran, from its report; `writable` are the paths of
/// the writable mounts, in request order, which come back in `mounts_out`
/// (returned, to be written into the result plaintext).
pub(super) fn fill_from_report(
    result: &mut ExecutionResult,
    mut report: RunReport,
    writable: Vec<String>,
) -> Option<PendingMountsOut> {
    let (status, exit_code, error) = match report.outcome {
        GuestOutcome::Exited(code) => (Status::Completed, Some(code), None),
        GuestOutcome::Returned => (Status::Completed, None, None),
        GuestOutcome::Failed(error) => (status_of(&error), None, Some(error.to_string())),
    };
    result.status = status;
    result.exit_code = exit_code;
    result.error = error;
    result.returns = report.returns;
    // Moved, not copied: the result's buffers are zeroized once it is sealed.
    result.stdout = Base64(std::mem::take(&mut *report.stdout));
    result.stderr = Base64(std::mem::take(&mut *report.stderr));
    result.stdout_truncated = report.stdout_truncated;
    result.stderr_truncated = report.stderr_truncated;
    result.fuel_consumed = report.fuel_consumed;
    result.wall_time_us = u64::try_from(report.wall_time.as_micros()).unwrap_or(u64::MAX);
    // One archive per writable mount, planned after the guest ended whatever
    // its status; none after a host failure.
    if writable.is_empty() || report.mounts_out.archives.len() != writable.len() {
        return None;
    }
    result.mounts_out_truncated = report.mounts_out.truncated;
    Some(PendingMountsOut {
        paths: writable,
        archives: report.mounts_out,
    })
}

/// The result plaintext in `format`, in one buffer with room for the tag
/// ([`plaintext::write_result`]), `mounts_out`'s archives written straight
/// into it.
pub(super) fn result_plaintext(
    result: &ExecutionResult,
    format: Format,
    mounts_out: Option<PendingMountsOut>,
) -> Zeroizing<Vec<u8>> {
    let Some(PendingMountsOut { paths, archives }) = mounts_out else {
        return plaintext::write_result(result, format, &mut []);
    };
    let mut archives = archives.archives;
    let mut mounts: Vec<StreamedMount<'_>> = paths
        .iter()
        .zip(archives.iter_mut())
        .map(|(path, tar)| StreamedMount { path, tar })
        .collect();
    plaintext::write_result(result, format, &mut mounts)
}

impl ArchiveSource for TreeArchive {
    fn archive_len(&self) -> u64 {
        self.len()
    }

    fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8])) {
        self.write(sink);
    }
}

/// Cuts an `error` longer than [`MAX_ERROR_BYTES`] at a character boundary,
/// ending it with `…`.
pub(super) fn cap_error(error: &mut Option<String>) {
    let Some(text) = error else {
        return;
    };
    if text.len() <= MAX_ERROR_BYTES {
        return;
    }
    let mut cut = MAX_ERROR_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push('…');
}

/// The status of a run that failed with `error`.
pub(super) fn status_of(error: &RunError) -> Status {
    match error {
        RunError::OutOfFuel { .. } => Status::FuelExhausted,
        RunError::TimedOut { .. } | RunError::FuelTimeout { .. } => Status::Timeout,
        RunError::MemoryLimit(_) => Status::MemoryLimit,
        RunError::Unlinkable(_)
        | RunError::TooManyMemories { .. }
        | RunError::TooManyTables { .. }
        | RunError::NoStart
        | RunError::StartNotCommand
        | RunError::NoCliRun => Status::InvalidModule,
        RunError::BadInvoke(_) | RunError::Mounts(_) => Status::InvalidRequest,
        RunError::Trap(_)
        | RunError::StackOverflow(_)
        | RunError::HostcallFuel { .. }
        | RunError::ReturnsTooLarge { .. } => Status::Trap,
        // No status says "the host failed"; the run was aborted like a trap, and
        // the error says whose fault it was.
        RunError::HostFailure => Status::Trap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_past_its_maximum_is_cut_at_a_character_boundary() {
        let mut error = Some("é".repeat(MAX_ERROR_BYTES));
        cap_error(&mut error);
        let error = error.unwrap();
        assert!(error.len() <= MAX_ERROR_BYTES, "{}", error.len());
        assert!(error.len() > MAX_ERROR_BYTES - 4);
        assert!(error.ends_with("é…"));
        let mut short = Some("short".to_owned());
        cap_error(&mut short);
        assert_eq!(short.as_deref(), Some("short"));
    }
}
