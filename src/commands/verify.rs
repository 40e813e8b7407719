//! `verify`: an execution proved from its receipt (against the server's log;
//! offline against a saved `/verify` answer; or offline against the receipt's
//! tlog-proof under the log's note key or a C2SP tlog-policy, protocol v1.2 §T6),
//! or the log proved consistent with a checkpoint saved earlier. Exit 0 only if
//! every check holds, 1 if one failed, 125 if the checks could not be made.
//!
//! Architecture invariant: with `--note-key` or `--policy` no HTTP client and no
//! async runtime is made, so nothing can reach the network.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use wasm_hypervisor_client::{Client, ServerIdentity};
use wasm_hypervisor_protocol::checkpoint::Checkpoint;
use wasm_hypervisor_protocol::note::VerifierKey;
use wasm_hypervisor_protocol::policy::Policy;
use wasm_hypervisor_protocol::provider::Provider;
use wasm_hypervisor_protocol::receipt::{self, Check, Receipt};
use wasm_hypervisor_protocol::signing::PublicKey;
use wasm_hypervisor_protocol::tlog_proof::TlogProof;
use wasm_hypervisor_protocol::wire::CheckpointResponse;

use super::{CliError, EXIT_CLIENT_ERROR, read_json, runtime, write_private};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The server's URL (default: the receipt's server, else http://127.0.0.1:8080).
    #[arg(long, value_name = "URL", env = "WASM_HYPERVISOR_SERVER")]
    server: Option<String>,
    /// The key id the server must have (hex SHA-256 of its SPKI). Without it, the key
    /// from /keys (or, with --proof, --note-key or --policy, the receipt's) is used
    /// and printed.
    #[arg(long, value_name = "HEX", env = "WASM_HYPERVISOR_KEY_ID")]
    key_id: Option<String>,
    /// Check the log is consistent with this checkpoint (the JSON of an earlier
    /// GET /log/checkpoint) instead of verifying a receipt.
    #[arg(long, value_name = "OLD.json", conflicts_with_all = ["receipt", "proof", "save_proof", "note_key", "policy"])]
    checkpoint: Option<PathBuf>,
    /// With --checkpoint: after a successful check, write the current checkpoint here
    /// (the same file, for a monitor that runs periodically).
    #[arg(long, value_name = "FILE", requires = "checkpoint")]
    save: Option<PathBuf>,
    /// Verify offline against a saved /verify answer instead of asking the server.
    #[arg(long, value_name = "FILE", conflicts_with = "save_proof")]
    proof: Option<PathBuf>,
    /// Save the server's /verify answer, to verify offline later with --proof.
    #[arg(long, value_name = "FILE")]
    save_proof: Option<PathBuf>,
    /// Verify offline, with no network at all, against the tlog-proof the receipt
    /// carries, under the log's note verifier key (GET /keys' note_verifier_key,
    /// `<origin>+<key id>+<base64>`): the policy `log VKEY` / `quorum none`.
    /// --server is not used. A receipt without a tlog_proof fails: verify it
    /// online.
    #[arg(long, value_name = "VKEY", conflicts_with_all = ["proof", "save_proof", "policy"])]
    note_key: Option<String>,
    /// Verify offline, with no network at all, against the tlog-proof the receipt
    /// carries, under this C2SP tlog-policy file (`log`, `witness`, `group` and
    /// `quorum` lines; `quorum none` for a log without witnesses). --server is not
    /// used. A receipt without a tlog_proof fails: verify it online.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["proof", "save_proof"])]
    policy: Option<PathBuf>,
    /// The receipt written by `run --receipt`.
    #[arg(value_name = "RECEIPT.json", required_unless_present = "checkpoint")]
    receipt: Option<PathBuf>,
}

/// Exit code of `verify` when a check failed.
const EXIT_VERIFY_FAILED: u8 = 1;

impl VerifyArgs {
    /// The arguments that prove a receipt held elsewhere than in a file (a replay
    /// bundle's): online against `server`, or offline under `note_key` or
    /// `policy`, as `verify` would.
    pub(crate) fn for_receipt(
        server: Option<String>,
        key_id: Option<String>,
        note_key: Option<String>,
        policy: Option<PathBuf>,
    ) -> VerifyArgs {
        VerifyArgs {
            server,
            key_id,
            checkpoint: None,
            save: None,
            proof: None,
            save_proof: None,
            note_key,
            policy,
            receipt: None,
        }
    }
}

pub(crate) fn verify(args: VerifyArgs) -> ExitCode {
    let outcome = if args.note_key.is_some() || args.policy.is_some() {
        read_receipt(&args).and_then(|receipt| verify_offline(&args, &receipt))
    } else {
        runtime().block_on(verify_client(args))
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_VERIFY_FAILED),
        Err(message) => {
            eprintln!("wasm-hypervisor: {message}");
            ExitCode::from(EXIT_CLIENT_ERROR)
        }
    }
}

/// Fetches the server's key, pinned to `key_id` when given, and says which it is.
async fn server_identity(
    client: &Client,
    key_id: Option<&str>,
) -> Result<ServerIdentity, CliError> {
    let identity = client.identity(key_id).await?;
    if key_id.is_none() {
        println!(
            "server key id {} (not pinned; pass --key-id to pin it)",
            identity.key_id
        );
    }
    Ok(identity)
}

fn report_checks(checks: &[Check]) -> bool {
    for check in checks {
        match &check.outcome {
            Ok(()) => println!("ok      {}", check.name),
            Err(why) => println!("FAILED  {}: {why}", check.name),
        }
    }
    receipt::all_hold(checks)
}

async fn verify_client(args: VerifyArgs) -> Result<bool, CliError> {
    match &args.checkpoint {
        Some(path) => verify_checkpoint(&args, path).await,
        None => verify_receipt(&args, &read_receipt(&args)?).await,
    }
}

/// The receipt file the arguments name.
fn read_receipt(args: &VerifyArgs) -> Result<Receipt, CliError> {
    read_json(args.receipt.as_deref().expect("clap requires a receipt"))
}

/// Proves that `receipt`'s execution is logged as `args` say (online, or offline
/// with `--note-key` or `--policy`), printing each check as `verify` does;
/// whether all held.
pub(crate) fn verify_logged(args: &VerifyArgs, receipt: &Receipt) -> Result<bool, CliError> {
    if args.note_key.is_some() || args.policy.is_some() {
        verify_offline(args, receipt)
    } else {
        runtime().block_on(verify_receipt(args, receipt))
    }
}

/// Checks the log is consistent with the checkpoint saved at `path`.
async fn verify_checkpoint(args: &VerifyArgs, path: &Path) -> Result<bool, CliError> {
    let server = args.server.as_deref().unwrap_or("http://127.0.0.1:8080");
    let client = Client::new(server, None);
    let identity = server_identity(&client, args.key_id.as_deref()).await?;
    let old: CheckpointResponse = read_json(path)?;
    let new = client.checkpoint().await?;
    let proof = if old.tree_size > 0 && old.tree_size <= new.tree_size {
        client
            .consistency(old.tree_size, new.tree_size)
            .await?
            .proof
    } else {
        Vec::new()
    };
    let checks = receipt::check_consistency(&old, &new, &proof, &identity.public_key);
    let held = report_checks(&checks);
    if held {
        println!(
            "consistent: the log `{}` at {} entries extends the saved checkpoint at {}",
            new.origin, new.tree_size, old.tree_size
        );
        if let Some(save) = &args.save {
            write_private(save, &new)?;
        }
    } else {
        println!("verification failed: the log is NOT consistent with the saved checkpoint");
    }
    Ok(held)
}

/// Proves the execution of the receipt, against the server's log or a saved proof.
async fn verify_receipt(args: &VerifyArgs, receipt: &Receipt) -> Result<bool, CliError> {
    let (answer, key) = match &args.proof {
        Some(proof_path) => {
            // The key first, as it always was: a wrong pin is said before a bad file.
            let key = receipt_key(args, receipt)?;
            (read_json(proof_path)?, key)
        }
        None => {
            let server = args.server.as_deref().unwrap_or(&receipt.server);
            let client = Client::new(server, None);
            let identity = server_identity(&client, args.key_id.as_deref()).await?;
            let answer = client.inclusion(&receipt.execution_id).await?;
            if let Some(save) = &args.save_proof {
                write_private(save, &answer)?;
            }
            (answer, identity.public_key)
        }
    };
    let checks = receipt::check_receipt(receipt, &answer, &key);
    let held = report_checks(&checks);
    if held {
        println!(
            "verified: execution {} ({}) is entry {} of the log `{}` at size {}, under key {}",
            receipt.execution_id,
            receipt.status,
            answer.log_index,
            answer.checkpoint.origin,
            answer.checkpoint.tree_size,
            key.key_id_hex()
        );
    } else {
        println!("verification failed");
    }
    Ok(held)
}

/// The receipt's key, for a verification that asks no server: refused if it is
/// not the one `--key-id` pins, printed if none is pinned.
fn receipt_key(args: &VerifyArgs, receipt: &Receipt) -> Result<PublicKey, CliError> {
    let key = PublicKey::from_spki_der(Provider::default(), &receipt.public_key.0)
        .map_err(CliError::ReceiptKey)?;
    match &args.key_id {
        Some(pinned) if !pinned.eq_ignore_ascii_case(&key.key_id_hex()) => {
            return Err(CliError::ReceiptKeyNotPinned {
                actual: key.key_id_hex(),
                pinned: pinned.clone(),
            });
        }
        Some(_) => {}
        None => println!(
            "receipt key id {} (not pinned; pass --key-id to pin it)",
            key.key_id_hex()
        ),
    }
    Ok(key)
}

/// The policy `--policy` reads or `--note-key` stands for.
fn offline_policy(args: &VerifyArgs) -> Result<Policy, CliError> {
    if let Some(path) = &args.policy {
        let file = std::fs::read(path).map_err(|source| CliError::Read {
            what: path.display().to_string(),
            source,
        })?;
        return Policy::parse(Provider::default(), &file).map_err(|source| CliError::Policy {
            path: path.clone(),
            source,
        });
    }
    let vkey = args.note_key.as_deref().unwrap_or_default();
    let key = VerifierKey::parse(Provider::default(), vkey).map_err(CliError::NoteKey)?;
    Policy::single_log(key).map_err(|_| CliError::NoteKeyType)
}

/// Proves the execution of the receipt offline: its tlog-proof under the policy
/// of `--policy` or `--note-key`, with no network (no HTTP client is made).
fn verify_offline(args: &VerifyArgs, receipt: &Receipt) -> Result<bool, CliError> {
    let policy = offline_policy(args)?;
    let key = receipt_key(args, receipt)?;
    let checks = receipt::check_receipt_offline(receipt, &policy, Provider::default());
    let held = report_checks(&checks);
    if held {
        // Every check held, so the proof parses and its note is a checkpoint.
        let size = receipt
            .tlog_proof
            .as_deref()
            .and_then(|text| TlogProof::parse(text.as_bytes()).ok())
            .and_then(|proof| Checkpoint::parse(proof.checkpoint().text()).ok())
            .map_or_else(
                || "?".to_owned(),
                |checkpoint| checkpoint.tree_size.to_string(),
            );
        println!(
            "verified: execution {} ({}) is entry {} of the log `{}` at size {size}, under key {}",
            receipt.execution_id,
            receipt.status,
            receipt.log_index,
            receipt.origin,
            key.key_id_hex()
        );
    } else {
        println!("verification failed");
    }
    Ok(held)
}
