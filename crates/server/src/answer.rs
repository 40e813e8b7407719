//! What an execution answers once its plaintext is open: the receipt (the sealed
//! result, its commitment and log entry), and the largest such answer a request
//! can produce ([`answer_bound`]), which bounds the memory of one answer and what
//! a long job reserves in `async_results` before it runs.
//!
//! Its own module so that `execution` (which makes receipts) and `async_results`
//! (which keeps them) both depend on it and not on each other.

use uuid::Uuid;
use wasm_hypervisor_protocol::payload::{
    EffectiveLimits, MAX_MOUNT_PATH_BYTES, MAX_MOUNTS, Status,
};
use wasm_hypervisor_protocol::plaintext::Format;

use crate::sandbox::fs::archive::mounts_out_bound;

/// The longest `error` a result carries, in bytes: a longer text (a trap's
/// backtrace through functions with long names, an import's name) is cut at a
/// character boundary and ends with `…`, so that [`answer_bound`] holds whatever
/// a module names.
pub const MAX_ERROR_BYTES: usize = 65_536;

/// Room in [`answer_bound`] for every field of the result but the output, the
/// `returns`, the `error` and `mounts_out`: keys and punctuation, the ids and
/// hashes, numbers at their longest, the engine, `deterministic` and `engine_sha256`, at most 17 `missing_blobs`
/// (checked by `answer_bound_holds_for_the_worst_result`).
const FIXED_FIELDS_BYTES: u64 = 4096;

/// The largest answer an execution can produce: its result plaintext, sealed
/// (the 16-byte AES-GCM tag included), for the effective `limits`, the
/// server's `max_mount_entries`, whether the request has a writable mount, and
/// the plaintext's `format`. It counts stdout and stderr at `max_output_bytes`
/// each, `returns` at `max_output_bytes` of WAVE text, an `error` of
/// [`MAX_ERROR_BYTES`], every other field at its longest, and with a writable
/// mount `mounts_out` at its bound ([`mounts_out_bound`]: `files_bytes` +
/// 1,024 bytes per entry and per archive, for [`MAX_MOUNTS`] archives) with
/// their paths; in JSON every byte field as base64 (4/3) and every text at its
/// worst escaping. The result is built in one buffer of at most this size,
/// which then holds its ciphertext: the memory an execution's answer takes.
pub fn answer_bound(
    limits: &EffectiveLimits,
    max_mount_entries: u32,
    writable_mounts: bool,
    format: Format,
) -> u64 {
    let output = limits.max_output_bytes;
    // A byte string of `n` bytes, and a text of `n` bytes, each with its
    // framing: in JSON base64 in quotes, and a text where every byte may need
    // `\u00XX`; in CBOR the bytes after a head of at most 9.
    let bytes = |n: u64| match format {
        Format::Json => n.div_ceil(3).saturating_mul(4).saturating_add(2),
        Format::Cbor => n.saturating_add(9),
    };
    let text = |n: u64| match format {
        Format::Json => n.saturating_mul(6).saturating_add(2),
        Format::Cbor => n.saturating_add(9),
    };
    // WAVE text escapes every control character, so JSON escapes only its `"`
    // and `\`: each value of L >= 1 bytes is at most 2L + 3 with its quotes and
    // comma (5 bytes a byte at worst); in CBOR L + a head no longer than L.
    let returns = match format {
        Format::Json => output.saturating_mul(5).saturating_add(2),
        Format::Cbor => output.saturating_mul(2).saturating_add(9),
    };
    let mut bound = FIXED_FIELDS_BYTES
        .saturating_add(bytes(output).saturating_mul(2))
        .saturating_add(returns)
        .saturating_add(text(MAX_ERROR_BYTES as u64));
    if writable_mounts {
        let archives = MAX_MOUNTS as u64;
        let total = mounts_out_bound(
            limits.files_bytes.unwrap_or(0),
            u64::from(max_mount_entries),
            archives,
        );
        // Each archive's bytes (base64 pads each one to 4), its path, and the
        // keys and punctuation around them.
        let per_archive = bytes(0) + 2 + text(MAX_MOUNT_PATH_BYTES as u64) + 32;
        bound = bound
            .saturating_add(bytes(total))
            .saturating_add(archives.saturating_mul(per_archive));
    }
    bound.saturating_add(wasm_hypervisor_protocol::hpke::NT as u64)
}

/// The smallest [`answer_bound`] of any request (no output, no writable mount,
/// CBOR): what an async execution reserves at least (checked against
/// [`answer_bound`] by `the_smallest_answer_bound_is_the_bound_of_a_request_with_no_output`).
pub const SMALLEST_ANSWER_BOUND: u64 = FIXED_FIELDS_BYTES
    + 2 * 9
    + 9
    + (MAX_ERROR_BYTES as u64 + 9)
    + wasm_hypervisor_protocol::hpke::NT as u64;

/// What `/execute` answers after a recovered plaintext.
#[derive(Debug, Clone)]
pub struct ExecutionReceipt {
    pub execution_id: Uuid,
    /// The sealed result, in the buffer it was written and sealed in (shared,
    /// never copied per reader).
    pub ciphertext: bytes::Bytes,
    pub commitment: [u8; 32],
    pub log_index: u64,
    pub leaf_signature: Vec<u8>,
    /// For the operator's log line only; it also travels inside the sealed result.
    pub status: Status,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Sandbox;
    use wasm_hypervisor_protocol::encoding::{Base64, Hex};
    use wasm_hypervisor_protocol::payload::ExecutionResult;
    use wasm_hypervisor_protocol::plaintext::{self, ArchiveSource, StreamedMount};

    #[test]
    fn the_smallest_answer_bound_is_the_bound_of_a_request_with_no_output() {
        let nothing = EffectiveLimits {
            fuel: 1,
            memory_bytes: 1,
            timeout_ms: 1,
            max_output_bytes: 0,
            files_bytes: None,
        };
        assert_eq!(
            answer_bound(&nothing, 100, false, Format::Cbor),
            SMALLEST_ANSWER_BOUND
        );
        // Every other request's bound is at least as large.
        assert!(answer_bound(&nothing, 100, false, Format::Json) >= SMALLEST_ANSWER_BOUND);
        // Saturates rather than wraps.
        let huge = EffectiveLimits {
            max_output_bytes: u64::MAX,
            ..nothing
        };
        assert_eq!(answer_bound(&huge, 100, true, Format::Json), u64::MAX);
    }

    /// An archive of `len` bytes, handed over 1,000 bytes at a time.
    struct Filler(u64);

    impl ArchiveSource for Filler {
        fn archive_len(&self) -> u64 {
            self.0
        }

        fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8])) {
            let mut left = self.0;
            while left > 0 {
                let piece = left.min(1000);
                sink(&[0xAB; 1000][..piece as usize]);
                left -= piece;
            }
        }
    }

    /// The largest result the limits allow, as far as we can build one: every
    /// field at its longest, output at `max_output_bytes`, `returns` as many
    /// one-byte values as fit (the worst for JSON's quotes and escapes), an
    /// `error` of control characters, and, with writable mounts, 16 of them with
    /// 4,096-byte paths of control characters and archives that fill their bound
    /// (lengths that leave base64 the most padding).
    fn worst_result(limits: EffectiveLimits) -> ExecutionResult {
        let output = limits.max_output_bytes as usize;
        ExecutionResult {
            execution_id: Uuid::from_u128(u128::MAX).hyphenated().to_string(),
            status: Status::InvalidRequest,
            exit_code: Some(i32::MIN),
            returns: vec!["\"".to_owned(); output],
            stdout: Base64(vec![0xFF; output]),
            stderr: Base64(vec![0xFF; output]),
            stdout_truncated: true,
            stderr_truncated: true,
            error: Some("\u{1}".repeat(MAX_ERROR_BYTES)),
            fuel_consumed: u64::MAX,
            wall_time_us: u64::MAX,
            module_sha256: Some(Hex([0xFF; 32])),
            limits: EffectiveLimits {
                fuel: u64::MAX,
                memory_bytes: u64::MAX,
                timeout_ms: u64::MAX,
                max_output_bytes: u64::MAX,
                files_bytes: Some(u64::MAX),
            },
            engine: Sandbox::engine_name(),
            missing_blobs: Some(vec![Hex([0xFF; 32]); MAX_MOUNTS + 1]),
            mounts_out: None,
            mounts_out_truncated: true,
            deterministic: true,
            engine_sha256: Some(Hex([0xFF; 32])),
        }
    }

    #[test]
    fn answer_bound_holds_for_the_worst_result() {
        for (max_output_bytes, files_bytes, entries) in [
            (0, 0, 1),
            (1, 1, 1),
            (4096, 1 << 20, 1000),
            (100_000, 3_000_001, 77),
        ] {
            let limits = EffectiveLimits {
                fuel: 1,
                memory_bytes: 1,
                timeout_ms: 1,
                max_output_bytes,
                files_bytes: Some(files_bytes),
            };
            let result = worst_result(limits);
            let total = mounts_out_bound(files_bytes, u64::from(entries), MAX_MOUNTS as u64);
            // 16 archives, each 1 more than a multiple of 3, filling the bound.
            let each = (total / MAX_MOUNTS as u64) / 3 * 3 + 1;
            let mut archives: Vec<Filler> = (0..MAX_MOUNTS)
                .map(|index| Filler(if index == 0 { total - 15 * each } else { each }))
                .collect();
            assert_eq!(archives.iter().map(|a| a.0).sum::<u64>(), total);
            let path = format!("/{}", "\u{1}".repeat(MAX_MOUNT_PATH_BYTES - 1));
            for format in [Format::Json, Format::Cbor] {
                let bare = ExecutionResult {
                    mounts_out_truncated: false,
                    ..result.clone()
                };
                let written = plaintext::write_result(&bare, format, &mut []).len() as u64;
                let bound = answer_bound(&limits, entries, false, format);
                assert!(
                    written + 16 <= bound,
                    "{format:?}: {written} + 16 > {bound}"
                );

                let mut mounts: Vec<StreamedMount<'_>> = archives
                    .iter_mut()
                    .map(|tar| StreamedMount { path: &path, tar })
                    .collect();
                let written = plaintext::write_result(&result, format, &mut mounts).len() as u64;
                let bound = answer_bound(&limits, entries, true, format);
                assert!(
                    written + 16 <= bound,
                    "{format:?}: {written} + 16 > {bound}"
                );
                // And not loose by more than the allowances for what this
                // result could not fill (its 16 archives' framing, its error's
                // escapes, the fixed fields).
                assert!(bound - written < 16_384, "{format:?}: {bound} vs {written}");
            }
        }
    }
}
