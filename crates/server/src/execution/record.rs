//! The end of every execution whose plaintext opened: its result written in the
//! request's format, committed to and sealed in place (protocol §3), the log
//! leaf signed and appended, the execution's one log line, its client's usage
//! counted, and the receipt.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use uuid::Uuid;
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::payload::ExecutionResult;
use wasm_hypervisor_protocol::plaintext::Format;
use zeroize::Zeroize;

use super::result::{self, PendingMountsOut};
use super::{ExecutionError, Executor, Opened};
use crate::answer::ExecutionReceipt;
use crate::audit::LogRecord;
use crate::usage::{self, Counts};

impl Executor {
    /// Seals `result` for the client, commits to it, signs and appends the
    /// leaf; answered only once the log has it.
    pub(super) async fn record(
        &self,
        execution_id: Uuid,
        opened: &Opened,
        mut result: ExecutionResult,
        mounts_out: Option<PendingMountsOut>,
        started: Instant,
    ) -> Result<ExecutionReceipt, ExecutionError> {
        let inner = &self.inner;
        let status = result.status;
        inner
            .metrics
            .observe_execution(status, result.fuel_consumed, result.wall_time_us);
        // Protocol v1.1 §C: the result is in the request plaintext's format.
        let format = Format::of(&opened.plaintext);
        inner.metrics.record_request_plaintext(format.as_str());
        let (ciphertext, commitment) = seal(execution_id, opened, &mut result, format, mounts_out);
        let leaf = Leaf {
            execution_id,
            timestamp_ms: unix_millis(SystemTime::now()),
            commitment,
        };
        let leaf_signature = inner.key.sign(&leaf.to_bytes());
        let append_started = Instant::now();
        let log_index = self.append(leaf, leaf_signature.clone()).await?;
        // Counted once logged: what is counted is what the log proves ran.
        inner.usage.record(
            opened.client,
            usage::unix_now(),
            Counts {
                executions: 1,
                fuel: result.fuel_consumed,
                bytes_in: opened.sealed_bytes as u64,
                bytes_out: ciphertext.len() as u64,
            },
        );
        // The one line an execution logs (the HTTP layer logs none for an answered
        // execution): ids, status, counts, durations and sizes, never content.
        tracing::info!(
            %execution_id,
            status = status.as_str(),
            log_index,
            fuel_consumed = result.fuel_consumed,
            wall_time_us = result.wall_time_us,
            append_us = append_started.elapsed().as_micros() as u64,
            elapsed_us = started.elapsed().as_micros() as u64,
            request_bytes = opened.plaintext.len(),
            result_bytes = ciphertext.len(),
            "execution recorded"
        );
        Ok(ExecutionReceipt {
            execution_id,
            ciphertext,
            commitment,
            log_index,
            leaf_signature,
            status,
        })
    }

    /// Appends `leaf` with its `signature`: its log index, once the log has it
    /// durably.
    async fn append(&self, leaf: Leaf, signature: Vec<u8>) -> Result<u64, ExecutionError> {
        let inner = &self.inner;
        let append_started = Instant::now();
        let log_index = inner
            .log
            .append(LogRecord { leaf, signature })
            .await
            .map_err(ExecutionError::LogUnavailable)?;
        inner
            .metrics
            .observe_audit_append(append_started.elapsed().as_secs_f64());
        Ok(log_index)
    }
}

/// The result plaintext written, committed to and sealed in place: its
/// ciphertext and the commitment. The guest's output in the clear is zeroized.
fn seal(
    execution_id: Uuid,
    opened: &Opened,
    result: &mut ExecutionResult,
    format: Format,
    mounts_out: Option<PendingMountsOut>,
) -> (bytes::Bytes, [u8; 32]) {
    result::cap_error(&mut result.error);
    // One buffer, of the plaintext's exact length and room for the tag: the
    // archives are written into it from the trees (each tree dropped once
    // its archive is in), and it is sealed in place.
    let mut sealed = result::result_plaintext(result, format, mounts_out);
    // The guest's output, in the clear, is no longer needed.
    result.stdout.0.zeroize();
    result.stderr.0.zeroize();
    result.returns.zeroize();
    if let Some(error) = result.error.as_mut() {
        error.zeroize();
    }
    let commitment = opened.keys.commitment(&opened.plaintext, &sealed);
    opened.keys.seal_result_in_place(&execution_id, &mut sealed);
    // Ciphertext now, which needs no zeroizing: moved out of its `Zeroizing`
    // (left empty), not copied.
    (bytes::Bytes::from(std::mem::take(&mut *sealed)), commitment)
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
