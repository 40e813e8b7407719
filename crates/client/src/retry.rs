//! Retries of idempotent calls: a 429 or 503 with `Retry-After` is the server
//! asking to be asked again later, so a call that changes nothing when refused
//! (`GET /keys`, `/verify/{id}`, `/log/checkpoint`, `/log/consistency`,
//! `/executions/{id}`, `/tlog/checkpoint`, `/tlog/proof/{id}`, `POST /sessions`)
//! is made again after that wait, within a bound, before its error reaches the
//! caller; so is `/tlog/proof/{id}`'s `404 not_yet_published`. `/execute` is never retried here
//! (it uses its session), nor `/health` (its 503 is an answer, not a refusal).

use std::time::{Duration, Instant};

use crate::ClientError;

/// How an idempotent call answered 429 or 503 with `Retry-After` is made again:
/// after the seconds the server asked, while fewer than `tries` were made and the
/// waits fit in `within`; then its error is returned. The idempotent calls are
/// `GET /keys`, `/verify/{id}`, `/log/checkpoint`, `/log/consistency`,
/// `/executions/{id}`, and `POST /sessions`, which a refusal leaves undone; never
/// `/execute` (it uses its session) nor `/health` (its 503 is an answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Tries in all, the first included; 1 never retries.
    pub tries: u32,
    /// The most time from the first try to the start of the last.
    pub within: Duration,
}

impl Retries {
    /// One try: every refusal is returned as it comes.
    pub const NONE: Retries = Retries {
        tries: 1,
        within: Duration::ZERO,
    };
}

impl Default for Retries {
    /// At most 5 tries within 30 s: enough for a rate limiter's `Retry-After: 1`
    /// (or a few), short of what a caller would take for a hang.
    fn default() -> Retries {
        Retries {
            tries: 5,
            within: Duration::from_secs(30),
        }
    }
}

/// The wait a refusal asks for before the same idempotent call, if it is one to
/// retry: a 429 or 503 with `Retry-After`, or `GET /tlog/proof`'s `404
/// not_yet_published` with `Retry-After` (protocol v1.2 §T4: the execution is
/// logged, and a checkpoint will cover it once witnesses cosign it).
fn retry_wait(error: &ClientError) -> Option<Duration> {
    match error {
        ClientError::Server {
            status: 429 | 503,
            retry_after: Some(seconds),
            ..
        } => Some(Duration::from_secs(*seconds)),
        ClientError::Server {
            status: 404,
            code,
            retry_after: Some(seconds),
            ..
        } if code == NOT_YET_PUBLISHED => Some(Duration::from_secs(*seconds)),
        _ => None,
    }
}

/// The code of `GET /tlog/proof`'s 404 for an execution no published checkpoint
/// covers yet.
pub(crate) const NOT_YET_PUBLISHED: &str = "not_yet_published";

/// `call` (an idempotent request), made again after a 429 or 503's `Retry-After`
/// as `retries` allow and `retry_if` agrees; the last outcome otherwise.
pub(crate) async fn idempotent<T, F, Fut>(
    retries: Retries,
    mut call: F,
    retry_if: impl Fn(&ClientError) -> bool,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let started = Instant::now();
    let mut tries = 1;
    loop {
        let error = match call().await {
            Err(error) => error,
            done => return done,
        };
        let wait = match retry_wait(&error) {
            Some(wait)
                if tries < retries.tries
                    && started.elapsed() + wait <= retries.within
                    && retry_if(&error) =>
            {
                wait
            }
            _ => return Err(error),
        };
        tokio::time::sleep(wait).await;
        tries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, code: &str, retry_after: Option<u64>) -> ClientError {
        ClientError::Server {
            status,
            code: code.to_owned(),
            message: String::new(),
            retry_after,
        }
    }

    #[test]
    fn only_refusals_that_ask_to_come_back_are_retried() {
        let two = Some(Duration::from_secs(2));
        assert_eq!(retry_wait(&refusal(429, "rate_limited", Some(2))), two);
        assert_eq!(retry_wait(&refusal(503, "overloaded", Some(2))), two);
        assert_eq!(retry_wait(&refusal(404, NOT_YET_PUBLISHED, Some(2))), two);
        assert_eq!(retry_wait(&refusal(503, "overloaded", None)), None);
        assert_eq!(retry_wait(&refusal(404, NOT_YET_PUBLISHED, None)), None);
        assert_eq!(retry_wait(&refusal(404, "not_found", Some(2))), None);
        assert_eq!(retry_wait(&refusal(500, "internal_error", Some(2))), None);
    }
}
