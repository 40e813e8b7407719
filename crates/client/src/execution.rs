//! A finished execution, opened and checked: the sealed result opened with the
//! request's keys, read in the request's format, and the commitment checked
//! ([`open_execution`]); the receipt that proves it later ([`Execution::receipt`]).

use uuid::Uuid;
use wasm_hypervisor_protocol::digest::sha256;
use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::envelope::{self, EnvelopeError, ResponseKeys};
use wasm_hypervisor_protocol::payload::ExecutionResult;
use wasm_hypervisor_protocol::plaintext::{self, Format};
use wasm_hypervisor_protocol::receipt::{RECEIPT_VERSION, Receipt};
use wasm_hypervisor_protocol::wire::ExecuteResponse;

use crate::{ClientError, ServerIdentity, Violation};

/// A finished execution, opened and checked.
pub struct Execution {
    pub response: ExecuteResponse,
    pub execution_id: Uuid,
    pub result: ExecutionResult,
    pub result_plaintext: Vec<u8>,
    pub request_sha256: [u8; 32],
    pub result_sha256: [u8; 32],
    pub salt: [u8; 32],
    pub commitment: [u8; 32],
}

impl Execution {
    /// The receipt that proves this execution later, offline or against the log
    /// (`verify`): what `run --receipt` writes. It holds the commitment's salt,
    /// so whoever keeps it should keep it private.
    pub fn receipt(&self, server: &str, identity: &ServerIdentity) -> Receipt {
        Receipt {
            version: RECEIPT_VERSION,
            server: server.to_owned(),
            origin: identity.origin.clone(),
            key_id: identity.key_id,
            public_key: Base64(identity.public_key.spki_der()),
            execution_id: self.response.execution_id.clone(),
            log_index: self.response.log_index,
            status: self.result.status,
            commitment: self.response.commitment,
            salt: Hex(self.salt),
            request_sha256: Hex(self.request_sha256),
            result_sha256: Hex(self.result_sha256),
            module_sha256: self.result.module_sha256,
            leaf_signature: self.response.leaf_signature.clone(),
            tlog_proof: None,
        }
    }
}

/// Opens and checks an `/execute` answer with the keys of the request it answers.
pub fn open_execution(
    response: ExecuteResponse,
    keys: &ResponseKeys,
    request_plaintext: &[u8],
) -> Result<Execution, ClientError> {
    let execution_id =
        Uuid::try_parse(&response.execution_id).map_err(|_| Violation::ExecutionId)?;
    let result_plaintext = keys
        .open_result(&execution_id, &response.ciphertext.0)
        .map_err(|_: EnvelopeError| Violation::ResultDoesNotOpen)?;
    // Protocol v1.1 §C: the result is in the request's format.
    let result: ExecutionResult = match Format::of(request_plaintext) {
        Format::Json => serde_json::from_slice(&result_plaintext).map_err(Violation::Result)?,
        Format::Cbor => {
            plaintext::decode_result(&result_plaintext).map_err(Violation::CborResult)?
        }
    };
    if result.execution_id != response.execution_id {
        return Err(Violation::OtherExecution.into());
    }
    let commitment = keys.commitment(request_plaintext, &result_plaintext);
    if !envelope::digest_eq(&commitment, &response.commitment.0) {
        return Err(Violation::Commitment.into());
    }
    Ok(Execution {
        execution_id,
        request_sha256: sha256(request_plaintext),
        result_sha256: sha256(&result_plaintext),
        salt: keys.salt(),
        commitment,
        result,
        result_plaintext,
        response,
    })
}
