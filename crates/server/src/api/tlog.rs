//! The log in the standard transparency formats (protocol v1.2 §T2–T4): the
//! checkpoint as a C2SP signed note, the tiles (`crate::tlog`), and an
//! execution's `c2sp.org/tlog-proof@v1`.
//! Both are text any C2SP verifier reads with the log's verifier key alone
//! (`GET /keys`' `note_verifier_key`). They read the log directly, as the v1
//! log routes do.
//!
//! With no witness configured (§T5) the latest checkpoint is the published one,
//! and a proof is always against it. With witnesses (`crate::witness`), both
//! serve the newest checkpoint a quorum cosigned, with every cosignature the
//! server has for it; an entry it does not cover yet is `404 not_yet_published`.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use wasm_hypervisor_protocol::checkpoint::SignedCheckpoint;
use wasm_hypervisor_protocol::note::Note;
use wasm_hypervisor_protocol::tlog_proof::TlogProof;
use wasm_hypervisor_protocol::wire::ErrorBody;

use super::AppState;
use super::error::ApiError;
use crate::audit::AuditError;
use crate::tlog::TileServeError;

/// The content type of both answers (§T2, §T4).
const TEXT: &str = "text/plain; charset=utf-8";

/// How long a checkpoint may be cached (§T2: "at most a few seconds").
const CHECKPOINT_CACHE: &str = "public, max-age=2";

/// The latest published checkpoint as a signed note (protocol v1.2 §T2).
#[utoipa::path(
    get,
    path = "/tlog/checkpoint",
    tag = "transparency",
    responses(
        (status = 200, description = "The checkpoint as a C2SP signed note: the note key's Ed25519 line, then the P-256 key's (type 0x02), then the witnesses' cosignatures (type 0x04) when witnesses are configured", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 404, description = "`not_yet_published`: witnesses are configured and have not yet cosigned a checkpoint of this log", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may ask again, at least 1"))),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
pub(super) async fn checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = match &state.witnessing {
        Some(witnessing) => witnessing
            .published()
            .ok_or(ApiError::NotYetPublished)?
            .text(),
        None => note(&state, &state.log.checkpoint())?.to_text(),
    };
    Ok((
        [
            (header::CONTENT_TYPE, TEXT),
            (header::CACHE_CONTROL, CHECKPOINT_CACHE),
        ],
        text,
    )
        .into_response())
}

/// An execution's proof of logging against the latest published checkpoint
/// (protocol v1.2 §T4).
#[utoipa::path(
    get,
    path = "/tlog/proof/{execution_id}",
    tag = "transparency",
    params(("execution_id" = String, Path, description = "The execution id, a 36-character lowercase UUID")),
    responses(
        (status = 200, description = "A c2sp.org/tlog-proof@v1: the 57-byte leaf as `extra`, its index, its inclusion proof and the checkpoint note", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 400, description = "`invalid_parameter`: the id is not a 36-character lowercase UUID", body = ErrorBody),
        (status = 404, description = "`not_found`: no execution with this id is in the log; `not_yet_published`: it is, but no published (witnessed) checkpoint covers it yet", body = ErrorBody,
            headers(("Retry-After" = u64, description = "With `not_yet_published`: seconds until the client may ask again, at least 1"))),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`log_unavailable`: cluster mode, the database cannot be reached", body = ErrorBody),
    )
)]
pub(super) async fn proof(
    State(state): State<AppState>,
    Path(execution_id): Path<String>,
) -> Result<Response, ApiError> {
    let inclusion = super::log::inclusion_of(&state, &execution_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (note, hashes) = match &state.witnessing {
        None => (note(&state, &inclusion.checkpoint)?, inclusion.proof),
        Some(witnessing) => {
            let published = witnessing.published().ok_or(ApiError::NotYetPublished)?;
            let size = published.checkpoint.tree_size;
            if inclusion.index >= size {
                return Err(ApiError::NotYetPublished);
            }
            let hashes = witnessing
                .inclusion_proof(inclusion.index, size)
                .ok_or_else(|| {
                    tracing::error!(
                        index = inclusion.index,
                        size,
                        "cannot prove an entry against the published checkpoint"
                    );
                    ApiError::Internal
                })?;
            (published.note().clone(), hashes)
        }
    };
    let proof = TlogProof::for_leaf(&inclusion.record.leaf, inclusion.index, hashes, note)
        .map_err(|error| {
            tracing::error!(%error, "cannot make a tlog-proof");
            ApiError::Internal
        })?;
    Ok(([(header::CONTENT_TYPE, TEXT)], proof.to_text()).into_response())
}

/// `signed` as §T2's note, signed by the note key.
fn note(state: &AppState, signed: &SignedCheckpoint) -> Result<Note, ApiError> {
    signed
        .to_note(&state.note_key, state.key.public())
        .map_err(|error| {
            tracing::error!(%error, "cannot make the checkpoint note");
            ApiError::Internal
        })
}

/// How long a tile may be cached: forever. A tile's path names its width, so the
/// bytes at a path never change, partial tiles included (tlog-tiles: "This
/// endpoint is immutable").
const TILE_CACHE: &str = "public, max-age=31536000, immutable";

/// A hash tile or an entry bundle (protocol v1.2 §T3). The router serves it at
/// `/tlog/tile/{*path}`: a tile's path has several segments.
#[utoipa::path(
    get,
    path = "/tlog/tile/{path}",
    tag = "transparency",
    params(("path" = String, Path, description = "The rest of a C2SP tlog-tiles path: `<L>/<N>[.p/<W>]` (a hash tile, height 8) or `entries/<N>[.p/<W>]` (an entry bundle of 57-byte leaves), `N` in 3-digit groups, the first ones prefixed with `x`")),
    responses(
        (status = 200, description = "The tile's bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "`not_found`: not a tile path, or a tile whose leaves the log does not hold", body = ErrorBody),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`log_unavailable`: cluster mode, the database cannot be reached", body = ErrorBody),
    )
)]
pub(super) async fn tile(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let (bytes, _full) =
        state
            .tiles
            .get(&format!("tile/{path}"))
            .await
            .map_err(|error| match error {
                TileServeError::NotATile | TileServeError::BeyondTree => ApiError::NotFound,
                TileServeError::Log(AuditError::Unavailable(_)) => {
                    tracing::warn!(%error, "cannot read a tile's entries");
                    ApiError::LogUnavailable
                }
                TileServeError::Log(error) => {
                    tracing::error!(%error, "cannot read a tile's entries back");
                    ApiError::Internal
                }
            })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, TILE_CACHE),
        ],
        bytes,
    )
        .into_response())
}
