//! The reads a client makes besides executions: `GET /health`, and what a
//! receipt is checked against (`/log/checkpoint`, `/verify/{id}`,
//! `/log/consistency`), each made again after a 429 or 503 as
//! [`Retries`](crate::Retries) allow.

use wasm_hypervisor_protocol::wire::{
    CheckpointResponse, ConsistencyResponse, HealthResponse, VerifyResponse,
};

use crate::http::parse;
use crate::{Client, ClientError, retry};

/// What `GET /health` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The HTTP status: 200 while the server can execute and log, 503 otherwise.
    pub status: u16,
    /// Why it cannot (PROTOCOL.md, "Health"); empty with 200, or when the body
    /// could not be read.
    pub reasons: Vec<String>,
}

impl Health {
    /// Whether the server is in rotation.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Client {
    /// `GET /health`. Either status is an answer; only a failed request is an error.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let response = self
            .http
            .get(format!("{}/health", self.base))
            .send()
            .await?;
        let status = response.status().as_u16();
        // A 503 names its reasons; anything else unreadable just has none.
        let reasons = response
            .json::<HealthResponse>()
            .await
            .map(|body| body.reasons)
            .unwrap_or_default();
        Ok(Health { status, reasons })
    }

    /// `GET /log/checkpoint`.
    pub async fn checkpoint(&self) -> Result<CheckpointResponse, ClientError> {
        self.get_json(format!("{}/log/checkpoint", self.base)).await
    }

    /// `GET /verify/{execution_id}`.
    pub async fn inclusion(&self, execution_id: &str) -> Result<VerifyResponse, ClientError> {
        self.get_json(format!("{}/verify/{execution_id}", self.base))
            .await
    }

    /// `GET /log/consistency?first=..&second=..`.
    pub async fn consistency(
        &self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyResponse, ClientError> {
        self.get_json(format!(
            "{}/log/consistency?first={first}&second={second}",
            self.base
        ))
        .await
    }

    /// An idempotent `GET` of a JSON document.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
    ) -> Result<T, ClientError> {
        retry::idempotent(
            self.retries,
            || async { parse(self.http.get(&url).send().await?).await },
            |_| true,
        )
        .await
    }
}
