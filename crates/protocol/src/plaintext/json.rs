//! The result plaintext in JSON (protocol v1), as [`ExecutionResult`]'s
//! `Serialize` writes it, for [`write_result`](super::write_result).

use super::out::Out;
use super::write::StreamedMount;
use crate::payload::ExecutionResult;

/// The JSON of [`ExecutionResult`] exactly as its `Serialize` writes it (compact,
/// fields in declaration order, the same omissions), with the byte fields
/// written as base64 without a temporary string.
pub(super) fn json_document(
    out: &mut impl Out,
    result: &ExecutionResult,
    mounts: Option<&mut [StreamedMount<'_>]>,
) {
    out.raw(b"{\"execution_id\":");
    out.json(&result.execution_id);
    out.raw(b",\"status\":");
    out.json(&result.status);
    out.raw(b",\"exit_code\":");
    out.json(&result.exit_code);
    out.raw(b",\"returns\":");
    out.json(&result.returns);
    out.raw(b",\"stdout\":\"");
    out.base64(&result.stdout.0);
    out.raw(b"\",\"stderr\":\"");
    out.base64(&result.stderr.0);
    out.raw(b"\",\"stdout_truncated\":");
    out.json(&result.stdout_truncated);
    out.raw(b",\"stderr_truncated\":");
    out.json(&result.stderr_truncated);
    if let Some(error) = &result.error {
        out.raw(b",\"error\":");
        out.json(error);
    }
    out.raw(b",\"fuel_consumed\":");
    out.json(&result.fuel_consumed);
    out.raw(b",\"wall_time_us\":");
    out.json(&result.wall_time_us);
    out.raw(b",\"module_sha256\":");
    out.json(&result.module_sha256);
    out.raw(b",\"limits\":");
    out.json(&result.limits);
    out.raw(b",\"engine\":");
    out.json(&result.engine);
    if let Some(missing) = &result.missing_blobs {
        out.raw(b",\"missing_blobs\":");
        out.json(missing);
    }
    if let Some(mounts) = mounts {
        json_mounts_out(out, mounts);
    }
    if result.mounts_out_truncated {
        out.raw(b",\"mounts_out_truncated\":true");
    }
    if result.deterministic {
        out.raw(b",\"deterministic\":true");
    }
    if let Some(engine_sha256) = &result.engine_sha256 {
        out.raw(b",\"engine_sha256\":");
        out.json(engine_sha256);
    }
    out.raw(b"}");
}

/// `"mounts_out":[…]`, each archive's base64 written by its source.
fn json_mounts_out(out: &mut impl Out, mounts: &mut [StreamedMount<'_>]) {
    out.raw(b",\"mounts_out\":[");
    for (index, mount) in mounts.iter_mut().enumerate() {
        if index > 0 {
            out.raw(b",");
        }
        out.raw(b"{\"path\":");
        out.json(&mount.path);
        out.raw(b",\"tar\":\"");
        out.archive(&mut *mount.tar, true);
        out.raw(b"\"}");
    }
    out.raw(b"]");
}
