//! The audit log's routes (protocol §4): the signed checkpoint, an execution's
//! inclusion proof, and consistency proofs. They read the log directly.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::wire::{
    CheckpointResponse, ConsistencyResponse, ErrorBody, VerifyResponse,
};

use super::AppState;
use super::error::ApiError;
use super::extract::parse_uuid;
use crate::audit::{AuditError, Inclusion};

/// The signed tree head of the whole log as it is now (protocol §4).
#[utoipa::path(
    get,
    path = "/log/checkpoint",
    tag = "protocol",
    responses(
        (status = 200, description = "A signed checkpoint", body = CheckpointResponse),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
pub(super) async fn checkpoint(State(state): State<AppState>) -> Json<CheckpointResponse> {
    Json(CheckpointResponse::from(&state.log.checkpoint()))
}

/// An execution's leaf and its inclusion proof against a fresh checkpoint
/// (protocol §4).
#[utoipa::path(
    get,
    path = "/verify/{execution_id}",
    tag = "protocol",
    params(("execution_id" = String, Path, description = "The execution id, a 36-character lowercase UUID")),
    responses(
        (status = 200, description = "The leaf, its signature and an RFC 9162 inclusion proof", body = VerifyResponse),
        (status = 400, description = "`invalid_parameter`: the id is not a 36-character lowercase UUID", body = ErrorBody),
        (status = 404, description = "`execution_not_found`: no execution with this id is in the log", body = ErrorBody),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`log_unavailable`: cluster mode, the database cannot be reached", body = ErrorBody),
    )
)]
pub(super) async fn verify(
    State(state): State<AppState>,
    Path(execution_id): Path<String>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let inclusion = inclusion_of(&state, &execution_id)
        .await?
        .ok_or(ApiError::ExecutionNotFound)?;
    let leaf = inclusion.record.leaf;
    Ok(Json(VerifyResponse {
        execution_id: leaf.execution_id.hyphenated().to_string(),
        log_index: inclusion.index,
        timestamp_ms: leaf.timestamp_ms,
        commitment: Hex(leaf.commitment),
        leaf: Base64(leaf.to_bytes().to_vec()),
        leaf_signature: Base64(inclusion.record.signature),
        inclusion_proof: inclusion.proof.into_iter().map(Base64).collect(),
        checkpoint: CheckpointResponse::from(&inclusion.checkpoint),
    }))
}

/// The execution `execution_id` names (a lowercase UUID, else
/// `invalid_parameter`), its record and its inclusion proof against a fresh
/// checkpoint, or `None` when the log does not hold it: what `/verify/{id}` and
/// `/tlog/proof/{id}` answer from.
pub(super) async fn inclusion_of(
    state: &AppState,
    execution_id: &str,
) -> Result<Option<Inclusion>, ApiError> {
    let id = parse_uuid(execution_id).ok_or_else(|| {
        ApiError::InvalidParameter(
            "the execution id is not a 36-character lowercase UUID".to_owned(),
        )
    })?;
    state.log.inclusion(&id).await.map_err(|error| match error {
        // Cluster mode: the database did not answer.
        AuditError::Unavailable(_) => {
            tracing::warn!(%error, "cannot look an execution up in the log");
            ApiError::LogUnavailable
        }
        error => {
            tracing::error!(%error, "cannot read a logged record back");
            ApiError::Internal
        }
    })
}

/// An RFC 9162 consistency proof between two sizes of the log (protocol §4).
#[utoipa::path(
    get,
    path = "/log/consistency",
    tag = "protocol",
    params(
        ("first" = u64, Query, description = "The smaller tree size, at least 1"),
        ("second" = u64, Query, description = "The larger tree size, at most the current size"),
    ),
    responses(
        (status = 200, description = "The proof", body = ConsistencyResponse),
        (status = 400, description = "`invalid_parameter`: `first` and `second` missing, not integers, or not 1 <= first <= second <= size", body = ErrorBody),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
pub(super) async fn consistency(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ConsistencyResponse>, ApiError> {
    let Query(params) = query.map_err(|rejection| {
        ApiError::InvalidParameter(format!("cannot read the query string: {rejection}"))
    })?;
    let size_param = |name: &str| -> Result<u64, ApiError> {
        let text = params.get(name).ok_or_else(|| {
            ApiError::InvalidParameter(format!("the query parameter `{name}` is required"))
        })?;
        text.parse::<u64>().map_err(|_| {
            ApiError::InvalidParameter(format!("`{name}` is not a non-negative integer"))
        })
    };
    let (first, second) = (size_param("first")?, size_param("second")?);
    let log = &state.log;
    let size = log.size_for(second).await;
    if first == 0 || first > second || second > size {
        return Err(ApiError::InvalidParameter(format!(
            "need 1 <= first <= second <= {size} (the current tree size)"
        )));
    }
    let proof = log
        .consistency(first, second)
        .map_err(|error| ApiError::InvalidParameter(error.to_string()))?;
    Ok(Json(ConsistencyResponse {
        first,
        second,
        proof: proof.into_iter().map(Base64).collect(),
    }))
}
