//! `GET /keys` (protocol §4): the log's origin and the server's signing key, and
//! (v1.2 §T1) the verifier key of its note key; `GET /fuel-costs` (v1.2 §U, §R):
//! the fuel cost table and the deterministic engine's description.

use axum::Json;
use axum::extract::State;

use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::wire::{ErrorBody, FuelCostClass, FuelCostsResponse, KeysResponse};

use super::AppState;
use crate::sandbox::engine;

/// The server's long-term public key (protocol §4).
#[utoipa::path(
    get,
    path = "/keys",
    tag = "protocol",
    responses(
        (status = 200, description = "The log's origin and the server's signing key", body = KeysResponse),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
pub(super) async fn keys(State(state): State<AppState>) -> Json<KeysResponse> {
    let public = state.key.public();
    Json(KeysResponse {
        origin: state.origin.to_string(),
        public_key: Base64(public.spki_der()),
        key_id: Hex(public.key_id()),
        note_verifier_key: Some(state.note_key.verifier_key().to_string()),
    })
}

/// The fuel cost table in force and the deterministic engine (protocol v1.2 §U,
/// §R; PROTOCOL.md, "Fuel costs").
#[utoipa::path(
    get,
    path = "/fuel-costs",
    tag = "protocol",
    responses(
        (status = 200, description = "The fuel cost table and the deterministic engine", body = FuelCostsResponse),
        (status = 405, description = "`method_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client is over `clients.requests_per_second`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the client may make a request again, at least 1"))),
    )
)]
pub(super) async fn fuel_costs() -> Json<FuelCostsResponse> {
    let table = engine::fuel_cost_table();
    Json(FuelCostsResponse {
        version: table.version.to_owned(),
        sha256: Hex(table.sha256),
        table: table.description.clone(),
        classes: engine::FUEL_COST_CLASSES
            .iter()
            .map(|(operators, cost, why)| FuelCostClass {
                operators: (*operators).to_owned(),
                cost: *cost,
                why: (*why).to_owned(),
            })
            .collect(),
        deterministic_engine_sha256: Hex(engine::deterministic_sha256()),
        deterministic_engine: engine::deterministic_description(),
    })
}
