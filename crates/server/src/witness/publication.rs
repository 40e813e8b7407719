//! The publication state machine (protocol v1.2 §T5): each new checkpoint of
//! the log becomes a *candidate*, goes to every witness that is due
//! ([`Witnessing::tick`]), gathers their cosignatures ([`Witnessing::submit`]),
//! and is *published* once they meet the policy's quorum
//! ([`Witnessing::settle`]). What the server knows of each witness is a
//! [`Progress`]: where its next proof starts, its failures and backoff.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wasm_hypervisor_protocol::checkpoint::Checkpoint;
use wasm_hypervisor_protocol::note::{Note, NoteSignature};
use wasm_hypervisor_protocol::policy::Policy;

use super::state::Kept;
use super::submission::{Failure, signature_line};
use super::{Witnessing, unix_now};

/// The first wait after a failure; it doubles with each failure in a row.
const BACKOFF_MIN: Duration = Duration::from_millis(500);

/// The longest wait after failures in a row.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The published checkpoint: the note with the log's signatures and every valid
/// cosignature the server has for it.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub checkpoint: Checkpoint,
    pub(super) note: Note,
    pub(super) cosigned: Vec<bool>,
}

impl Published {
    pub(super) fn new(checkpoint: Checkpoint, note: Note, witnesses: usize) -> Published {
        Published {
            checkpoint,
            note,
            cosigned: vec![false; witnesses],
        }
    }

    /// The note, cosignatures included.
    pub(crate) fn note(&self) -> &Note {
        &self.note
    }

    /// The note's text, cosignatures included.
    pub(crate) fn text(&self) -> String {
        self.note.to_text()
    }

    pub(super) fn add(&mut self, witness: usize, signature: NoteSignature) {
        if self.cosigned[witness] {
            return;
        }
        if self.note.add_signature(signature).is_ok() {
            self.cosigned[witness] = true;
        }
    }
}

/// What the server knows of one witness.
#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    /// The largest size it cosigned (or told in a 409) for this origin: where
    /// the next submission's proof starts.
    pub(super) size: Option<u64>,
    /// The size of the last checkpoint of *this* log it cosigned for this
    /// process (a 409's size may be another history's).
    pub(super) cosigned: Option<u64>,
    /// When it last gave a valid cosignature (POSIX seconds, our clock).
    pub(super) cosigned_at: Option<u64>,
    /// Its last valid cosignature line, kept in cluster mode's shared state.
    pub(super) cosignature: Option<String>,
    /// Whether it answered this process: until then the kept size is only a
    /// starting point, and the checkpoint goes to it even at that size (so a
    /// restart on a rolled-back copy of the data meets the witness at once).
    pub(super) answered: bool,
    pub(super) busy: bool,
    pub(super) retry_at: Option<Instant>,
    pub(super) backoff: Duration,
    /// The checkpoint size it refused last: not sent to it again.
    pub(super) refused_size: Option<u64>,
    pub(super) failures: BTreeMap<&'static str, u64>,
    pub(super) last_error: Option<String>,
}

impl Progress {
    /// Each of the policy's witnesses as the state file left it (its size and
    /// when it last cosigned), in the policy's order.
    pub(super) fn kept(policy: &Policy, kept: &Kept) -> Vec<Progress> {
        policy
            .witnesses()
            .iter()
            .map(|witness| match kept.witnesses.get(&witness.name) {
                Some(kept) => Progress {
                    size: Some(kept.size),
                    cosigned_at: kept.cosigned_at,
                    ..Progress::default()
                },
                None => Progress::default(),
            })
            .collect()
    }

    /// It cosigned `checkpoint` with `signature`: its next proof starts there,
    /// and its backoff and last refusal are forgotten.
    fn cosigned_by(&mut self, checkpoint: &Checkpoint, signature: &NoteSignature) {
        self.size = Some(checkpoint.tree_size);
        self.cosigned = Some(checkpoint.tree_size);
        self.cosigned_at = Some(unix_now());
        self.cosignature = Some(signature_line(signature));
        self.retry_at = None;
        self.backoff = Duration::ZERO;
        self.last_error = None;
        self.refused_size = None;
    }

    /// A submission of the checkpoint of `size` failed (`told`: the size the
    /// witness said it has): counted, and the witness backs off.
    fn failed(&mut self, failure: &Failure, told: Option<u64>, size: u64) {
        if failure.kind.is_refusal() {
            self.answered = true;
            // A refusal is not retried blindly: the witness gets the next
            // checkpoint. A witness that could not answer gets this one again.
            self.refused_size = Some(size);
        }
        if let Some(told) = told {
            self.size = Some(told);
        }
        self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.retry_at = Some(Instant::now() + self.backoff);
        *self.failures.entry(failure.kind.as_str()).or_default() += 1;
        self.last_error = Some(format!(
            "{}: {} (checkpoint of size {size})",
            failure.kind.as_str(),
            failure.detail,
        ));
    }

    /// Its failures by kind, as `/health` and the shared state name them.
    pub(super) fn failure_counts(&self) -> BTreeMap<String, u64> {
        self.failures
            .iter()
            .map(|(kind, count)| ((*kind).to_owned(), *count))
            .collect()
    }

    /// What it cosigned of this log: for this process, or before it answered
    /// one, as kept.
    pub(super) fn cosigned_size(&self) -> Option<u64> {
        if self.answered {
            self.cosigned
        } else {
            self.size
        }
    }
}

/// What the server knows, behind `Inner::state`'s mutex.
#[derive(Default)]
pub(super) struct State {
    pub(super) published: Option<Published>,
    /// Checkpoints submitted and not yet published, by size, with what they
    /// gathered.
    pub(super) candidates: BTreeMap<u64, Published>,
    pub(super) witnesses: Vec<Progress>,
    /// A reason of the server's own to publish nothing (see `problem` in health).
    pub(super) problem: Option<String>,
}

impl Witnessing {
    /// One look at the log: the latest checkpoint becomes a candidate, published
    /// at once if the quorum needs no cosignature, and goes to every witness that
    /// is idle, not backing off, and has not cosigned or refused it.
    pub(super) fn tick(&self) {
        let size = self.0.log.size();
        self.update_lag(size);
        let Some(due) = self.due_witnesses(size) else {
            return;
        };
        let signed = self.0.log.checkpoint();
        let note = match signed.to_note(&self.0.note_key, &self.0.public) {
            Ok(note) => note,
            Err(error) => {
                tracing::error!(%error, "cannot make the checkpoint note to submit");
                return;
            }
        };
        let checkpoint = signed.checkpoint;
        let size = checkpoint.tree_size;
        let publish = {
            let mut state = self.lock();
            let newer = state
                .published
                .as_ref()
                .is_none_or(|published| published.checkpoint.tree_size < size);
            if newer {
                let count = self.0.policy.witnesses().len();
                state
                    .candidates
                    .entry(size)
                    .or_insert_with(|| Published::new(checkpoint.clone(), note.clone(), count));
            }
            for &index in &due {
                state.witnesses[index].busy = true;
            }
            self.settle(&mut state)
        };
        if publish {
            self.spawn_persist();
        }
        self.send_to(&due, &checkpoint, &note);
    }

    /// The witnesses (by index in the policy) that are idle, not backing off,
    /// and have not cosigned or refused the checkpoint of `size`; `None` if
    /// there are none and the published checkpoint is already that large.
    fn due_witnesses(&self, size: u64) -> Option<Vec<usize>> {
        let now = Instant::now();
        let state = self.lock();
        let due: Vec<usize> = self
            .0
            .targets
            .iter()
            .filter(|target| {
                let progress = &state.witnesses[target.index];
                let idle = !progress.busy && progress.retry_at.is_none_or(|at| at <= now);
                let unsent = progress.cosigned != Some(size) || !progress.answered;
                idle && unsent && progress.refused_size != Some(size)
            })
            .map(|target| target.index)
            .collect();
        let needs_candidate = state
            .published
            .as_ref()
            .is_none_or(|published| published.checkpoint.tree_size < size);
        (!due.is_empty() || needs_candidate).then_some(due)
    }

    /// Submits `checkpoint` to each of the witnesses `due` (marked busy), each
    /// in a task of its own that wakes the loop when it is answered.
    fn send_to(&self, due: &[usize], checkpoint: &Checkpoint, note: &Note) {
        for &index in due {
            let Some(target) = self.0.targets.iter().position(|t| t.index == index) else {
                continue;
            };
            let this = self.clone();
            let (checkpoint, note) = (checkpoint.clone(), note.clone());
            tokio::spawn(async move {
                this.submit(target, checkpoint, note).await;
                this.0.wake.notify_one();
            });
        }
    }

    /// Publishes the largest candidate whose cosignatures meet the quorum and
    /// drops the candidates it covers; whether anything was published.
    pub(super) fn settle(&self, state: &mut State) -> bool {
        let met = state
            .candidates
            .iter()
            .rev()
            .find(|(_, candidate)| self.0.policy.quorum_met(&candidate.cosigned))
            .map(|(size, _)| *size);
        let Some(size) = met else {
            return false;
        };
        let published = state.candidates.remove(&size);
        state.candidates.retain(|candidate, _| *candidate > size);
        if let Some(published) = published {
            tracing::info!(
                tree_size = size,
                cosignatures = published.cosigned.iter().filter(|c| **c).count(),
                "published a checkpoint its witnesses cosigned"
            );
            self.0.metrics.set_published_size(size);
            state.published = Some(published);
            state.problem = None;
        }
        true
    }

    /// Submits `checkpoint` to one witness and records what came of it.
    pub(super) async fn submit(&self, target: usize, checkpoint: Checkpoint, note: Note) {
        let target = &self.0.targets[target];
        let result = self.exchange(target, &checkpoint, &note).await;
        let persist = {
            let mut state = self.lock();
            let progress = &mut state.witnesses[target.index];
            progress.busy = false;
            match result {
                Ok((signature, _timestamp)) => {
                    progress.answered = true;
                    progress.cosigned_by(&checkpoint, &signature);
                    let size = checkpoint.tree_size;
                    if let Some(candidate) = state.candidates.get_mut(&size)
                        && candidate.checkpoint == checkpoint
                    {
                        candidate.add(target.index, signature.clone());
                    }
                    if let Some(published) = &mut state.published
                        && published.checkpoint == checkpoint
                    {
                        published.add(target.index, signature);
                    }
                    self.settle(&mut state);
                    true
                }
                Err((failure, witness_size)) => {
                    progress.failed(&failure, witness_size, checkpoint.tree_size);
                    self.0
                        .metrics
                        .count_witness_failure(&target.name, failure.kind.as_str());
                    tracing::warn!(
                        witness = %target.name,
                        url = %target.url,
                        kind = failure.kind.as_str(),
                        tree_size = checkpoint.tree_size,
                        error = %failure.detail,
                        "the witness did not cosign the checkpoint; it is not published on its word"
                    );
                    // Replicas share the failures for their `/health`.
                    witness_size.is_some() || self.0.shared.is_some()
                }
            }
        };
        if persist {
            self.spawn_persist();
        }
    }
}
