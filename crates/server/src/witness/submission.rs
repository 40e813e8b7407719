//! The log's side of c2sp.org/tlog-witness "add-checkpoint" (protocol v1.2
//! §T5): the request body (`old <n>`, the consistency proof, the note), one
//! resubmission after a `409` whose `text/x.tlog.size` names a size the log can
//! prove from, and the answer read into a verified cosignature or a
//! [`FailureKind`]. What comes of it (progress, publication) is
//! `witness::publication`'s; the HTTP itself is behind [`Transport`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use wasm_hypervisor_protocol::checkpoint::{Checkpoint, verify_note};
use wasm_hypervisor_protocol::note::{Note, NoteSignature, VerifierKey};
use wasm_hypervisor_protocol::policy::Policy;

use super::Witnessing;

/// Most bytes of a witness's answer read (tlog-witness answers are a few lines).
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A witness's answer to `add-checkpoint`, as the transport read it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    /// At most [`MAX_ANSWER_BYTES`].
    pub body: Vec<u8>,
}

/// How a submission reaches a witness: `POST <url>/add-checkpoint` with `body`.
/// `Err` is a transport failure (unreachable, reset), with its description.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn add_checkpoint(&self, url: &str, body: String) -> Result<Answer, String>;
}

/// What kind of failure a submission met: the words of `/health` and the
/// `witness_failures` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailureKind {
    Unreachable,
    Timeout,
    /// 403: the witness does not accept the log's signature.
    Forbidden,
    /// 404: the witness does not know the log's origin.
    UnknownLog,
    /// 422: the consistency proof or the root does not match what it cosigned.
    Inconsistent,
    /// 409 with a size this log cannot prove from: larger than its tree.
    Conflict,
    /// 400.
    BadRequest,
    /// Another status.
    HttpStatus,
    /// An answer that is not what tlog-witness says.
    Garbage,
    /// A 200 whose lines hold no valid cosignature of the witness's key.
    BadCosignature,
}

impl FailureKind {
    pub(super) const ALL: [FailureKind; 10] = [
        FailureKind::Unreachable,
        FailureKind::Timeout,
        FailureKind::Forbidden,
        FailureKind::UnknownLog,
        FailureKind::Inconsistent,
        FailureKind::Conflict,
        FailureKind::BadRequest,
        FailureKind::HttpStatus,
        FailureKind::Garbage,
        FailureKind::BadCosignature,
    ];

    /// Whether the witness answered and refused (rather than not answering, or
    /// failing in a way of its own, a 5xx say).
    pub(super) fn is_refusal(self) -> bool {
        !matches!(
            self,
            FailureKind::Unreachable | FailureKind::Timeout | FailureKind::HttpStatus
        )
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::Timeout => "timeout",
            FailureKind::Forbidden => "forbidden",
            FailureKind::UnknownLog => "unknown_log",
            FailureKind::Inconsistent => "inconsistent",
            FailureKind::Conflict => "conflict",
            FailureKind::BadRequest => "bad_request",
            FailureKind::HttpStatus => "http_status",
            FailureKind::Garbage => "garbage",
            FailureKind::BadCosignature => "bad_cosignature",
        }
    }
}

/// A failed submission: its kind and what happened.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) kind: FailureKind,
    pub(super) detail: String,
}

pub(super) fn failure(kind: FailureKind, detail: impl Into<String>) -> Failure {
    Failure {
        kind,
        detail: detail.into(),
    }
}

/// One witness the log submits to.
pub(super) struct Target {
    /// Its index in the policy's witnesses.
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) key: VerifierKey,
    pub(super) url: String,
}

impl Target {
    /// The policy's witnesses that have a submission URL.
    pub(super) fn all(policy: &Policy) -> Vec<Target> {
        policy
            .witnesses()
            .iter()
            .enumerate()
            .filter_map(|(index, witness)| {
                Some(Target {
                    index,
                    name: witness.name.clone(),
                    key: witness.key.clone(),
                    url: witness.url.clone()?.trim_end_matches('/').to_owned(),
                })
            })
            .collect()
    }
}

impl Witnessing {
    /// The exchange of tlog-witness's add-checkpoint, with one resubmission after
    /// a `409` that names a size the log can prove from. `Ok`: the witness's
    /// verified cosignature and its timestamp; `Err`: the failure, and the
    /// witness's size if it told one.
    pub(super) async fn exchange(
        &self,
        target: &Target,
        checkpoint: &Checkpoint,
        note: &Note,
    ) -> Result<(NoteSignature, u64), (Failure, Option<u64>)> {
        let size = checkpoint.tree_size;
        let mut old = self.lock().witnesses[target.index].size.unwrap_or(0);
        let mut told = None;
        for attempt in 0..2 {
            let answer = self
                .post(target, old, size, note)
                .await
                .map_err(|failure| (failure, told))?;
            match answer.status {
                200 => {
                    return self
                        .cosignature(target, note, &answer.body)
                        .map_err(|failure| (failure, told));
                }
                409 => {
                    let theirs = tlog_size(&answer).ok_or_else(|| {
                        let detail = "a 409 without a text/x.tlog.size body";
                        (failure(FailureKind::Garbage, detail), told)
                    })?;
                    told = Some(theirs);
                    // Once, from the witness's size: a fork then meets a 422.
                    if attempt == 0 && theirs <= size {
                        old = theirs;
                        continue;
                    }
                    return Err((conflict(theirs, size), told));
                }
                status => return Err((refusal(status), told)),
            }
        }
        Err((
            failure(FailureKind::Conflict, "the witness answered 409 twice"),
            told,
        ))
    }

    /// One `POST <url>/add-checkpoint` proving `old` → `size`, within the
    /// submission timeout: the answer, whatever its status.
    async fn post(
        &self,
        target: &Target,
        old: u64,
        size: u64,
        note: &Note,
    ) -> Result<Answer, Failure> {
        if old > size {
            return Err(conflict(old, size));
        }
        let body = self
            .request_body(old, size, note)
            .map_err(|detail| failure(FailureKind::Conflict, detail))?;
        let url = format!("{}/add-checkpoint", target.url);
        let sent = self.0.transport.add_checkpoint(&url, body);
        match tokio::time::timeout(self.0.timeout, sent).await {
            Err(_) => Err(failure(
                FailureKind::Timeout,
                format!("no answer within {} ms", self.0.timeout.as_millis()),
            )),
            Ok(Err(error)) => Err(failure(FailureKind::Unreachable, error)),
            Ok(Ok(answer)) => Ok(answer),
        }
    }

    /// `old <n>`, the consistency proof from `n` to `size`, a blank line, the note.
    fn request_body(&self, old: u64, size: u64, note: &Note) -> Result<String, String> {
        let mut body = format!("old {old}\n");
        if old != 0 && old != size {
            let proof = self
                .0
                .log
                .consistency(old, size)
                .map_err(|error| format!("cannot prove {old} → {size}: {error}"))?;
            for hash in proof {
                body.push_str(&B64.encode(hash));
                body.push('\n');
            }
        }
        body.push('\n');
        body.push_str(&note.to_text());
        Ok(body)
    }

    /// The witness's cosignature in a 200's signature lines, verified under its
    /// key over the checkpoint (tlog-witness: concatenate the lines to the note
    /// and verify with the witness key; others' lines are ignored).
    fn cosignature(
        &self,
        target: &Target,
        note: &Note,
        body: &[u8],
    ) -> Result<(NoteSignature, u64), Failure> {
        let lines = signature_lines(body)?;
        let joined = format!("{}{lines}", note.to_text());
        let parsed = Note::parse(joined.as_bytes()).map_err(|error| {
            failure(
                FailureKind::Garbage,
                format!("unreadable signature lines: {error}"),
            )
        })?;
        let verified = verify_note(
            parsed,
            &[self.0.note_key.verifier_key()],
            std::slice::from_ref(&target.key),
        )
        .map_err(|error| {
            failure(
                FailureKind::BadCosignature,
                format!("a cosignature does not verify: {error}"),
            )
        })?;
        let Some(&(_, timestamp)) = verified.cosignatures.first() else {
            return Err(failure(
                FailureKind::BadCosignature,
                "no cosignature of the witness's key",
            ));
        };
        if timestamp == 0 {
            return Err(failure(
                FailureKind::BadCosignature,
                "a cosignature without a timestamp",
            ));
        }
        let signature = verified
            .note
            .signatures()
            .iter()
            .find(|signature| {
                signature.name() == target.key.name() && signature.key_id() == target.key.key_id()
            })
            .cloned()
            .ok_or_else(|| {
                failure(
                    FailureKind::BadCosignature,
                    "no cosignature of the witness's key",
                )
            })?;
        Ok((signature, timestamp))
    }
}

/// A 200's body as signature lines: text, not empty, every line `— ` and a
/// name, ending with a newline.
fn signature_lines(body: &[u8]) -> Result<&str, Failure> {
    std::str::from_utf8(body)
        .ok()
        .filter(|lines| {
            !lines.is_empty()
                && lines.ends_with('\n')
                && lines.lines().all(|line| line.starts_with("\u{2014} "))
        })
        .ok_or_else(|| {
            failure(
                FailureKind::Garbage,
                "a 200 whose body is not signature lines",
            )
        })
}

/// The witness cosigned `theirs` leaves of this origin, more than this log's
/// `size`: it cannot be proved from there.
fn conflict(theirs: u64, size: u64) -> Failure {
    failure(
        FailureKind::Conflict,
        format!(
            "the witness cosigned a tree of {theirs} leaves for this origin and this log has {size}: this log was rolled back or forked"
        ),
    )
}

/// What an answer's status other than 200 and 409 says (tlog-witness,
/// "add-checkpoint").
fn refusal(status: u16) -> Failure {
    let (kind, what) = match status {
        400 => (
            FailureKind::BadRequest,
            "400: the witness refused the request as malformed",
        ),
        403 => (
            FailureKind::Forbidden,
            "403: the witness does not accept this log's signature",
        ),
        404 => (
            FailureKind::UnknownLog,
            "404: the witness does not know this log's origin",
        ),
        422 => (
            FailureKind::Inconsistent,
            "422: the checkpoint is not consistent with what the witness cosigned (a fork?)",
        ),
        _ => (
            FailureKind::HttpStatus,
            "the witness answered an unexpected status",
        ),
    };
    failure(kind, format!("{what} (HTTP {status})"))
}

/// A signature's note line, `— <name> <base64 of key id and signature>`.
pub(super) fn signature_line(signature: &NoteSignature) -> String {
    let mut bytes = signature.key_id().to_be_bytes().to_vec();
    bytes.extend_from_slice(signature.signature());
    format!("\u{2014} {} {}", signature.name(), B64.encode(bytes))
}

/// The size of a `409`'s `text/x.tlog.size` body: a decimal and a newline.
fn tlog_size(answer: &Answer) -> Option<u64> {
    let content_type = answer.content_type.as_deref()?;
    if content_type.split(';').next()?.trim() != "text/x.tlog.size" {
        return None;
    }
    let text = std::str::from_utf8(&answer.body).ok()?;
    let digits = text.strip_suffix('\n')?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    digits.parse().ok().filter(|_| canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(content_type: &str, body: &str) -> Answer {
        Answer {
            status: 409,
            content_type: Some(content_type.to_owned()),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_409_size_is_a_canonical_decimal_and_a_newline_of_its_type() {
        assert_eq!(tlog_size(&answer("text/x.tlog.size", "42\n")), Some(42));
        assert_eq!(tlog_size(&answer("text/x.tlog.size", "0\n")), Some(0));
        assert_eq!(tlog_size(&answer("text/plain", "42\n")), None);
        assert_eq!(tlog_size(&answer("text/x.tlog.size", "42")), None);
        assert_eq!(tlog_size(&answer("text/x.tlog.size", "042\n")), None);
        assert_eq!(tlog_size(&answer("text/x.tlog.size", "+4\n")), None);
    }

    #[test]
    fn failure_words_are_distinct() {
        let words: std::collections::BTreeSet<&str> =
            FailureKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(words.len(), FailureKind::ALL.len());
    }
}
