//! `replay`: a deterministic execution (protocol v1.2 §R) checked by running it
//! again. From a replay bundle (`run --replay-bundle`) it checks that the
//! request and result plaintexts are those the receipt's hashes name and that
//! its salt and hashes open its commitment, that the receipt is logged (as
//! `verify` does, online or offline; its code, not a copy), then re-runs the
//! request on this machine with the server crate's sandbox and deterministic
//! engine, and compares the outputs the protocol says a deterministic execution
//! fixes: `status`, `exit_code`, `stdout`, `stderr`, `returns`,
//! `fuel_consumed`, `mounts_out`, `engine_sha256`. It names the first that
//! differs (for bytes, the first differing offset).
//!
//! | outcome | exit code |
//! | --- | --- |
//! | every check holds and every output is identical | 0 |
//! | a check of the bundle failed (plaintext hashes, commitment, logging) | 1 |
//! | the replay's outputs differ from the bundle's result | 3 |
//! | the request is not deterministic: refused | 4 |
//! | the replay could not be made (a file, the server, the request) | 125 |

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use wasm_hypervisor_protocol::digest::sha256;
use wasm_hypervisor_protocol::payload::{ExecutionResult, MountOut};
use wasm_hypervisor_protocol::plaintext::decode_result_any;
use wasm_hypervisor_protocol::reproducible::{BUNDLE_FORMAT, Bundle};
use wasm_hypervisor_server::config::Config;
use wasm_hypervisor_server::execution::{ReplayError, ReplayLimits, replay_locally};
use wasm_hypervisor_server::sandbox::compiler::CompilerSettings;
use wasm_hypervisor_server::sandbox::{Sandbox, SandboxSettings};

use super::verify::{VerifyArgs, verify_logged};
use super::{EXIT_CLIENT_ERROR, read_json, runtime};

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The server's URL, to prove the receipt is logged (default: the receipt's
    /// server).
    #[arg(long, value_name = "URL", env = "WASM_HYPERVISOR_SERVER")]
    server: Option<String>,
    /// The key id the server must have (hex SHA-256 of its SPKI), as for `verify`.
    #[arg(long, value_name = "HEX", env = "WASM_HYPERVISOR_KEY_ID")]
    key_id: Option<String>,
    /// Prove the receipt is logged offline, with no network, from its tlog-proof
    /// under the log's note verifier key, as `verify --note-key`.
    #[arg(long, value_name = "VKEY", conflicts_with = "policy")]
    note_key: Option<String>,
    /// Prove the receipt is logged offline, with no network, from its tlog-proof
    /// under this C2SP tlog-policy file, as `verify --policy`.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The server's `limits.max_mount_entries`, which bounds the guest's files
    /// and is not in the result (default: the server's default).
    #[arg(long, value_name = "N")]
    max_mount_entries: Option<u32>,
    /// The bundle written by `run --replay-bundle`.
    #[arg(value_name = "BUNDLE.json")]
    bundle: PathBuf,
}

/// Exit code when a check of the bundle failed.
const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code when the replay's outputs differ from the bundle's.
const EXIT_DIFFERS: u8 = 3;
/// Exit code when the request is not deterministic.
const EXIT_NOT_DETERMINISTIC: u8 = 4;

/// Why a replay did not end in a comparison.
enum Stop {
    /// A check failed (already printed).
    CheckFailed,
    /// The request is not deterministic.
    NotDeterministic,
    /// The replay could not be made.
    Cannot(String),
}

pub(crate) fn replay(args: ReplayArgs) -> ExitCode {
    match replay_bundle(&args) {
        Ok(None) => {
            println!("replayed: every output is identical");
            ExitCode::SUCCESS
        }
        Ok(Some(difference)) => {
            println!("replay differs: {difference}");
            ExitCode::from(EXIT_DIFFERS)
        }
        Err(Stop::CheckFailed) => {
            println!("replay refused: the bundle does not check");
            ExitCode::from(EXIT_CHECK_FAILED)
        }
        Err(Stop::NotDeterministic) => {
            eprintln!("wasm-hypervisor: {}", ReplayError::NotDeterministic);
            ExitCode::from(EXIT_NOT_DETERMINISTIC)
        }
        Err(Stop::Cannot(message)) => {
            eprintln!("wasm-hypervisor: {message}");
            ExitCode::from(EXIT_CLIENT_ERROR)
        }
    }
}

/// Checks the bundle, replays it; the first difference, if any.
fn replay_bundle(args: &ReplayArgs) -> Result<Option<String>, Stop> {
    let bundle: Bundle =
        read_json(&args.bundle).map_err(|error| Stop::Cannot(error.to_string()))?;
    if bundle.format != BUNDLE_FORMAT {
        return Err(Stop::Cannot(format!(
            "{}: format `{}`, not `{BUNDLE_FORMAT}`",
            args.bundle.display(),
            bundle.format
        )));
    }
    check_bundle(args, &bundle)?;
    let recorded = decode_result_any(&bundle.result_plaintext.0)
        .map_err(|error| Stop::Cannot(format!("the result plaintext does not parse: {error}")))?;
    let replayed = run_again(args, &bundle, &recorded)?;
    let replayed = decode_result_any(&replayed)
        .map_err(|error| Stop::Cannot(format!("the replayed result does not parse: {error}")))?;
    Ok(first_difference(&recorded, &replayed))
}

/// The bundle's checks, printed as `verify` prints its own: the plaintexts are
/// those the receipt's hashes name, then `verify`'s checks (the commitment
/// opening among them).
fn check_bundle(args: &ReplayArgs, bundle: &Bundle) -> Result<(), Stop> {
    let receipt = &bundle.receipt;
    let mut held = true;
    for (name, plaintext, expected) in [
        (
            "request plaintext",
            &bundle.request_plaintext.0,
            &receipt.request_sha256,
        ),
        (
            "result plaintext",
            &bundle.result_plaintext.0,
            &receipt.result_sha256,
        ),
    ] {
        if sha256(plaintext) == expected.0 {
            println!("ok      {name}");
        } else {
            held = false;
            println!("FAILED  {name}: its SHA-256 is not the receipt's");
        }
    }
    let verify = VerifyArgs::for_receipt(
        args.server.clone(),
        args.key_id.clone(),
        args.note_key.clone(),
        args.policy.clone(),
    );
    let logged =
        verify_logged(&verify, receipt).map_err(|error| Stop::Cannot(error.to_string()))?;
    if held && logged {
        Ok(())
    } else {
        Err(Stop::CheckFailed)
    }
}

/// The request run again here, in the server's sandbox, under the limits the
/// recorded result says were in force: its result plaintext.
fn run_again(
    args: &ReplayArgs,
    bundle: &Bundle,
    recorded: &ExecutionResult,
) -> Result<Vec<u8>, Stop> {
    let defaults = Config::default();
    let program = std::env::current_exe()
        .map_err(|error| Stop::Cannot(format!("cannot find this program: {error}")))?;
    let sandbox = Sandbox::new(SandboxSettings {
        max_concurrent: 1,
        module_cache_bytes: 1 << 30,
        guest_threads: 1,
        compiler: CompilerSettings {
            program,
            slots: 1,
            cpu: defaults.execution.compile_timeout_secs.get(),
            memory_bytes: defaults.execution.compile_memory_bytes.get(),
        },
    })
    .map_err(|error| Stop::Cannot(error.to_string()))?;
    let execution_id = uuid::Uuid::try_parse(&bundle.receipt.execution_id).unwrap_or_default();
    let bounds = ReplayLimits {
        limits: recorded.limits,
        max_mount_entries: args.max_mount_entries.unwrap_or_else(|| {
            u32::try_from(defaults.limits.max_mount_entries.get()).unwrap_or(u32::MAX)
        }),
    };
    let replayed = runtime().block_on(replay_locally(
        &sandbox,
        &bundle.request_plaintext.0,
        execution_id,
        bounds,
    ));
    match replayed {
        Ok(plaintext) => Ok(plaintext.to_vec()),
        Err(ReplayError::NotDeterministic) => Err(Stop::NotDeterministic),
        Err(error) => Err(Stop::Cannot(error.to_string())),
    }
}

/// The first output, in the protocol's order, in which `replayed` differs from
/// `recorded`.
fn first_difference(recorded: &ExecutionResult, replayed: &ExecutionResult) -> Option<String> {
    if recorded.status != replayed.status {
        return Some(format!(
            "status: recorded {}, replayed {}",
            recorded.status, replayed.status
        ));
    }
    if recorded.exit_code != replayed.exit_code {
        return Some(format!(
            "exit_code: recorded {:?}, replayed {:?}",
            recorded.exit_code, replayed.exit_code
        ));
    }
    if let Some(offset) = bytes_differ(&recorded.stdout.0, &replayed.stdout.0) {
        return Some(format!("stdout: first differs at byte {offset}"));
    }
    if let Some(offset) = bytes_differ(&recorded.stderr.0, &replayed.stderr.0) {
        return Some(format!("stderr: first differs at byte {offset}"));
    }
    if recorded.returns != replayed.returns {
        let index = recorded
            .returns
            .iter()
            .zip(&replayed.returns)
            .position(|(a, b)| a != b)
            .unwrap_or(recorded.returns.len().min(replayed.returns.len()));
        return Some(format!("returns: first differs at value {index}"));
    }
    if recorded.fuel_consumed != replayed.fuel_consumed {
        return Some(format!(
            "fuel_consumed: recorded {}, replayed {}",
            recorded.fuel_consumed, replayed.fuel_consumed
        ));
    }
    let none = Vec::new();
    let recorded_mounts = recorded.mounts_out.as_ref().unwrap_or(&none);
    let replayed_mounts = replayed.mounts_out.as_ref().unwrap_or(&none);
    if let Some(difference) = mounts_differ(recorded_mounts, replayed_mounts) {
        return Some(difference);
    }
    if recorded.engine_sha256 != replayed.engine_sha256 {
        let show = |hash: &Option<_>| {
            hash.map_or_else(
                || "none".to_owned(),
                |h: wasm_hypervisor_protocol::encoding::Hex| h.to_string(),
            )
        };
        return Some(format!(
            "engine_sha256: recorded {}, replayed {} (another engine or fuel cost table)",
            show(&recorded.engine_sha256),
            show(&replayed.engine_sha256)
        ));
    }
    None
}

/// The first offset at which two byte strings differ (the shorter one's length
/// if one is a prefix of the other).
fn bytes_differ(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// The first difference between two `mounts_out` lists.
fn mounts_differ(recorded: &[MountOut], replayed: &[MountOut]) -> Option<String> {
    if recorded.len() != replayed.len() {
        return Some(format!(
            "mounts_out: recorded {} mounts, replayed {}",
            recorded.len(),
            replayed.len()
        ));
    }
    for (index, (a, b)) in recorded.iter().zip(replayed).enumerate() {
        if a.path != b.path {
            return Some(format!(
                "mounts_out[{index}].path: `{}`, replayed `{}`",
                a.path, b.path
            ));
        }
        if let Some(offset) = bytes_differ(&a.tar.0, &b.tar.0) {
            return Some(format!(
                "mounts_out[{index}] ({}): its archive first differs at byte {offset}",
                a.path
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_differing_byte_is_named_even_past_a_common_prefix() {
        assert_eq!(bytes_differ(b"abc", b"abc"), None);
        assert_eq!(bytes_differ(b"abc", b"abd"), Some(2));
        assert_eq!(bytes_differ(b"ab", b"abc"), Some(2));
    }
}
