//! Cluster mode's side of witnessing (protocol v1.2 §T5 with replicas): the
//! replica holding the submitters' lease submits and writes the shared state;
//! every other replica *follows* it, reading it again when a write notifies
//! ([`SharedStore::listen`]) and, as a fallback, at least every
//! `witnesses.follow_poll_ms`, and serves the published checkpoint it names once
//! its own tree holds it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use wasm_hypervisor_protocol::checkpoint::Checkpoint;
use wasm_hypervisor_protocol::note::Note;

use super::publication::{Progress, Published};
use super::state::{self, Lead, SharedStore};
use super::submission::FailureKind;
use super::{TICK, Witnessing};

/// How soon a follower without a `LISTEN` connection reads the shared state
/// and tries to listen again (as the cluster log's tailer does).
const LISTEN_RETRY: Duration = Duration::from_secs(1);

impl Witnessing {
    /// Cluster mode's loop: every [`TICK`] (or when a submission ends) asks for
    /// the submitters' lease; leading, submits as the file mode does; following,
    /// reads the shared state when a write notified it, or when the fallback
    /// poll is due (which also brings back a lost listener connection, before
    /// it reads, so that no write between the two goes unread).
    pub(super) async fn run_replica(&self, shared: Arc<dyn SharedStore>) {
        let changed = Arc::new(Notify::new());
        // Whether this replica, leading, has read the shared state since it took
        // the lease (another replica may have written it before); a follower
        // that still says so has just lost the lease and reads it again.
        let mut adopted = false;
        let mut heard = false;
        let mut next_poll = Instant::now();
        loop {
            let lead = shared.lead().await;
            let leads = lead != Lead::Follower;
            let poll = Instant::now() >= next_poll;
            if poll {
                // Without a listener, the next poll comes sooner: it is the only
                // way to learn of a write, and the way to listen again.
                let wait = if shared.listen(changed.clone()).await {
                    self.0.follow_poll
                } else {
                    self.0.follow_poll.min(LISTEN_RETRY)
                };
                next_poll = Instant::now() + wait;
            }
            let read = match lead {
                Lead::Acquired => true,
                Lead::Held => !adopted,
                Lead::Follower => heard || poll || adopted,
            };
            if lead != Lead::Held {
                adopted = false;
            }
            heard = false;
            if read {
                match shared.load().await {
                    Ok(kept) => {
                        self.follow(kept, leads).await;
                        if leads {
                            adopted = true;
                            tracing::info!("this replica now submits checkpoints to the witnesses");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the witnesses' shared state");
                        // Read again at the next tick rather than the next poll.
                        heard = !leads;
                    }
                }
            }
            if leads && adopted {
                self.tick();
            } else {
                self.update_lag(self.0.log.size());
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = self.0.wake.notified() => {}
                () = changed.notified() => heard = true,
            }
        }
    }

    /// Takes `shared` (cluster mode) as this replica's state: the published
    /// checkpoint once this replica's tree holds it, checked as at a restart
    /// (signatures, cosignatures, quorum, root), and what is known of each
    /// witness. `leading`: this replica has just taken the submitters' lease and
    /// starts from the shared sizes, as a restart from the state file does.
    pub(super) async fn follow(&self, shared: state::Shared, leading: bool) {
        let current = self.lock().published.as_ref().map(Published::text);
        // `None`: the published checkpoint stays as it is.
        let mut published: Option<Option<Published>> = None;
        let mut problem = shared.problem.clone();
        if shared.published != current {
            match &shared.published {
                None => published = Some(None),
                Some(text) => match self.shared_published(text).await {
                    Ok(reopened) => published = Some(Some(reopened)),
                    Err(reason) => {
                        tracing::warn!(%reason, "not serving the shared published checkpoint");
                        problem = Some(reason);
                    }
                },
            }
        }
        let mut state = self.lock();
        if let Some(published) = published {
            if let Some(published) = &published {
                self.0
                    .metrics
                    .set_published_size(published.checkpoint.tree_size);
            }
            state.published = published;
        }
        state.problem = problem;
        for (witness, progress) in self.0.policy.witnesses().iter().zip(&mut state.witnesses) {
            let kept = shared.witnesses.get(&witness.name).cloned();
            *progress = shared_progress(kept.unwrap_or_default(), leading);
        }
        if leading {
            state.candidates.clear();
        }
    }

    /// The shared published checkpoint `text`, once this replica's tree holds
    /// it, checked as at a restart and against the quorum; or why not.
    async fn shared_published(&self, text: &str) -> Result<Published, String> {
        if let Some(size) = note_size(text) {
            self.0.log.size_for(size).await;
        }
        let reopened = self.reopen(text)?;
        if self.0.policy.quorum_met(&reopened.cosigned) {
            Ok(reopened)
        } else {
            Err("the shared published checkpoint lacks the quorum".to_owned())
        }
    }

    /// Cluster mode's shared state, as this (submitting) replica knows it.
    pub(super) fn shared_snapshot(&self) -> state::Shared {
        let state = self.lock();
        state::Shared {
            published: state.published.as_ref().map(Published::text),
            problem: state.problem.clone(),
            witnesses: self
                .0
                .policy
                .witnesses()
                .iter()
                .zip(&state.witnesses)
                .map(|(witness, progress)| {
                    (
                        witness.name.clone(),
                        state::SharedWitness {
                            size: progress.size,
                            cosigned: progress.cosigned_size(),
                            cosignature: progress.cosignature.clone(),
                            cosigned_at: progress.cosigned_at,
                            failures: progress.failure_counts(),
                            last_error: progress.last_error.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// A witness's progress as the replicas share it. `leading`: this replica has
/// just become the submitter, and starts from the shared sizes.
fn shared_progress(kept: state::SharedWitness, leading: bool) -> Progress {
    Progress {
        size: kept.size,
        cosigned: if leading { None } else { kept.cosigned },
        cosigned_at: kept.cosigned_at,
        cosignature: kept.cosignature,
        // A follower shows what the submitter says; a new submitter
        // sends the checkpoint even at the kept size.
        answered: !leading,
        failures: kept
            .failures
            .iter()
            .filter_map(|(word, count)| {
                let kind = FailureKind::ALL.iter().find(|kind| kind.as_str() == word)?;
                Some((kind.as_str(), *count))
            })
            .collect(),
        last_error: kept.last_error,
        ..Progress::default()
    }
}

/// The tree size a note's checkpoint names, if it reads as one.
fn note_size(text: &str) -> Option<u64> {
    let note = Note::parse(text.as_bytes()).ok()?;
    Checkpoint::parse(note.text()).ok().map(|c| c.tree_size)
}
