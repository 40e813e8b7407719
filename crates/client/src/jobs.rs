//! Long jobs (protocol v1.1 §F) from the client's side: a request posted with
//! `Prefer: respond-async`, then `GET /executions/{id}` polled, after each
//! `Retry-After`, until the answer is there to open.

use uuid::Uuid;
use wasm_hypervisor_protocol::envelope::ResponseKeys;
use wasm_hypervisor_protocol::wire::{
    ExecutionAccepted, ExecutionPhase, ExecutionState, PendingState,
};

use crate::execute::{SealedBody, parse_execute_answer};
use crate::http::{parse, retry_after};
use crate::run::Observer;
use crate::{
    Client, ClientError, Execution, RunProgress, Session, Violation, open_execution, retry,
};

impl Client {
    /// As [`Client::execute`], with `Prefer: respond-async` (protocol v1.1 §F):
    /// returns once the server has opened the request, with what is needed to
    /// fetch and open the answer later ([`Client::poll`], [`Client::wait`]).
    /// Refusals before the plaintext opened are errors, as with `execute`.
    pub async fn execute_async(
        &self,
        session: &Session,
        request_plaintext: &[u8],
    ) -> Result<PendingExecution, ClientError> {
        self.execute_async_observed(session, request_plaintext, None)
            .await
    }

    /// [`Client::execute_async`], reporting the upload of a large body to
    /// `observer`.
    pub(crate) async fn execute_async_observed(
        &self,
        session: &Session,
        request_plaintext: &[u8],
        observer: Option<&Observer>,
    ) -> Result<PendingExecution, ClientError> {
        let (body, keys) = self.seal(session, request_plaintext)?;
        let binary = matches!(body, SealedBody::Binary(_));
        let response = body
            .post(self, observer)
            .header("prefer", "respond-async")
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::OK {
            // A server may ignore the preference (RFC 7240): the answer is here.
            let response = parse_execute_answer(response).await?;
            let execution = open_execution(response, &keys, request_plaintext)?;
            return Ok(PendingExecution {
                execution_id: execution.execution_id,
                location: None,
                keys,
                request_plaintext: request_plaintext.to_vec(),
                finished: Some(Box::new(execution)),
                binary,
            });
        }
        let (execution_id, location) = accepted(response).await?;
        Ok(PendingExecution {
            execution_id,
            location: Some(location),
            keys,
            request_plaintext: request_plaintext.to_vec(),
            finished: None,
            binary,
        })
    }

    /// `GET /executions/{id}` once (made again after a 429 or 503 as
    /// [`Retries`](crate::Retries) allows): the execution opened and checked if it has
    /// finished, else where it is and how long the server asks to wait. For an
    /// execution the server answered at once (it ignored the preference:
    /// `location` is `None`) there is nothing to poll; [`Client::wait`] returns it.
    pub async fn poll(&self, pending: &PendingExecution) -> Result<Progress, ClientError> {
        Ok(self.poll_phase(pending).await?.0)
    }

    /// [`Client::poll`], with the phase a pending execution is in, if the
    /// server says (a separate value so that [`Progress`] stays as it was).
    async fn poll_phase(
        &self,
        pending: &PendingExecution,
    ) -> Result<(Progress, Option<ExecutionPhase>), ClientError> {
        retry::idempotent(self.retries, || self.poll_once(pending), |_| true).await
    }

    /// One `GET /executions/{id}` of [`Client::poll`].
    async fn poll_once(
        &self,
        pending: &PendingExecution,
    ) -> Result<(Progress, Option<ExecutionPhase>), ClientError> {
        let Some(location) = &pending.location else {
            return Err(Violation::Accepted.into());
        };
        let mut request = self.authorized(self.http.get(format!("{}{location}", self.base)));
        if pending.binary {
            // Protocol v1.1 §F: the answer in binary, as the request was.
            request = request.header(reqwest::header::ACCEPT, "application/octet-stream");
        }
        let response = request.send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::ACCEPTED {
            let retry_after = retry_after(&response);
            let state: ExecutionState = parse(response).await?;
            if state.execution_id != pending.execution_id.hyphenated().to_string() {
                return Err(Violation::OtherExecution.into());
            }
            let progress = Progress::Pending {
                state: state.state,
                retry_after: std::time::Duration::from_secs(retry_after.unwrap_or(1)),
            };
            return Ok((progress, state.phase));
        }
        let response = parse_execute_answer(response).await?;
        if response.execution_id != pending.execution_id.hyphenated().to_string() {
            return Err(Violation::OtherExecution.into());
        }
        let execution = open_execution(response, &pending.keys, &pending.request_plaintext)?;
        Ok((Progress::Done(Box::new(execution)), None))
    }

    /// Polls until the execution has finished, waiting between polls as long as
    /// the server's `Retry-After` says (at most a minute).
    pub async fn wait(&self, pending: PendingExecution) -> Result<Execution, ClientError> {
        self.wait_observed(pending, None).await
    }

    /// [`Client::wait`], telling `observer` where the execution is at each poll.
    pub(crate) async fn wait_observed(
        &self,
        mut pending: PendingExecution,
        observer: Option<&Observer>,
    ) -> Result<Execution, ClientError> {
        if let Some(execution) = pending.finished.take() {
            return Ok(*execution);
        }
        loop {
            match self.poll_phase(&pending).await? {
                (Progress::Done(execution), _) => return Ok(*execution),
                (Progress::Pending { state, retry_after }, phase) => {
                    if let Some(observer) = observer {
                        observer(RunProgress::Pending { state, phase });
                    }
                    tokio::time::sleep(retry_after.min(std::time::Duration::from_secs(60))).await
                }
            }
        }
    }
}

/// An execution accepted with `Prefer: respond-async`. It holds the request's
/// response keys (which never leave the client) and plaintext (for the
/// commitment), so whoever holds it can open the answer: keep it private.
pub struct PendingExecution {
    pub execution_id: Uuid,
    /// `/executions/{execution_id}`; `None` if the server answered at once.
    pub location: Option<String>,
    keys: ResponseKeys,
    request_plaintext: Vec<u8>,
    /// The server ignored the preference and answered synchronously.
    finished: Option<Box<Execution>>,
    /// The request went as a binary body: its answer is fetched in binary.
    binary: bool,
}

/// Where an async execution is.
pub enum Progress {
    /// Not finished: poll again after `retry_after`.
    Pending {
        state: PendingState,
        retry_after: std::time::Duration,
    },
    /// Finished, opened and checked.
    Done(Box<Execution>),
}

/// The execution id and location of a `202` to `Prefer: respond-async`, which
/// must say it applied the preference and name the execution's location.
async fn accepted(response: reqwest::Response) -> Result<(Uuid, String), ClientError> {
    let applied = response
        .headers()
        .get("preference-applied")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("respond-async"));
    let status = response.status();
    let accepted: ExecutionAccepted = parse(response).await?;
    if status != reqwest::StatusCode::ACCEPTED {
        return Err(Violation::Status(status.as_u16()).into());
    }
    let execution_id =
        Uuid::try_parse(&accepted.execution_id).map_err(|_| Violation::ExecutionId)?;
    if !applied || accepted.location != format!("/executions/{}", accepted.execution_id) {
        return Err(Violation::Accepted.into());
    }
    Ok((execution_id, accepted.location))
}
