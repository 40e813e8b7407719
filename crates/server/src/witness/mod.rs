//! Witness cosigning (protocol v1.2 §T5): the log submits its checkpoints to the
//! witnesses of a C2SP tlog-policy file as c2sp.org/tlog-witness says, checks and
//! keeps their cosignatures, and *publishes* the newest checkpoint whose
//! cosignatures meet the policy's quorum; `/tlog/checkpoint` and `/tlog/proof`
//! serve that one.
//!
//! - [`Witnessing`]: the shared state (what is published, each witness's
//!   progress and failures) and the background submitter ([`Witnessing::run`]).
//!   It runs beside the executor and never in a request's path: an `/execute`
//!   never waits on a witness.
//! - `submission`: the tlog-witness client protocol, one add-checkpoint
//!   exchange read into a cosignature or a [`FailureKind`].
//! - `publication`: the state machine from a new checkpoint to a published one
//!   (candidates, each witness's progress and backoff, the quorum).
//! - `follow`: cluster mode's replicas; [`state`]: the durable part, a file
//!   beside the file log, or in cluster mode a [`state::SharedStore`] (one row in
//!   PostgreSQL) that one replica at a time writes (the one holding the
//!   submitters' lease: only it submits) and every replica reads when a write
//!   notifies it, serving the published checkpoint it names once its own tree
//!   holds it.
//!
//! The HTTP exchange itself is the API layer's (`api::witness_client`, behind
//! [`Transport`]): only `api` and `server` speak HTTP.
//!
//! How a submission goes (tlog-witness, "add-checkpoint"): the body is `old <n>`,
//! the consistency proof from `n` to the checkpoint's size, a blank line and the
//! checkpoint note, `n` being the size that witness last cosigned (0 when the
//! server does not know it). A `409` with `text/x.tlog.size` names the witness's
//! size: resubmitted once at once from it (a fork then gets `422`); a size larger
//! than the log's tree means this log was rolled back, and is a `conflict`. Any
//! other refusal (`400`, `403`, `404`, `422`), an unreadable answer or a
//! cosignature that does not verify is a failure: counted by kind, logged, shown
//! in `/health` and the metrics, and the same checkpoint is not sent to that
//! witness again; it gets the next one, after a backoff.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use wasm_hypervisor_protocol::checkpoint::verify_note;
use wasm_hypervisor_protocol::merkle::Hash;
use wasm_hypervisor_protocol::note::{Note, NoteSigningKey, VerifierKey};
use wasm_hypervisor_protocol::policy::Policy;
use wasm_hypervisor_protocol::signing::PublicKey;
use wasm_hypervisor_protocol::tiles::{self, Tile, TileLevel};
use wasm_hypervisor_protocol::wire::{WitnessHealth, WitnessingHealth};

use crate::audit::AuditLog;
use crate::metrics::Metrics;

mod follow;
mod publication;
pub(crate) mod state;
mod submission;

pub(crate) use publication::Published;
use publication::{Progress, State};
use submission::Target;
pub(crate) use submission::{Answer, MAX_ANSWER_BYTES, Transport};

/// How often the submitter looks at the log's size when nothing else wakes it.
const TICK: Duration = Duration::from_millis(100);

/// Why the witness configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WitnessConfigError {
    /// The policy file could not be read.
    #[error("witnesses.policy_file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The policy file is not a valid C2SP tlog-policy.
    #[error("witnesses.policy_file {path}: {source}")]
    Policy {
        path: PathBuf,
        source: wasm_hypervisor_protocol::policy::PolicyError,
    },
    /// The policy names no witness with a URL, yet its quorum needs cosignatures:
    /// nothing would ever be published.
    #[error(
        "witnesses.policy_file {path}: its quorum needs cosignatures but no witness line has a submission URL"
    )]
    NoSubmissionUrl { path: PathBuf },
    /// The kept state file could not be read.
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// The settings of [`Witnessing::new`], from the configuration.
pub struct Settings {
    /// The policy file's contents, already parsed.
    pub policy: Policy,
    /// Where the durable state is kept.
    pub state_path: PathBuf,
    /// How long one submission may take.
    pub timeout: Duration,
    /// Cluster mode: the replicas' shared state, instead of the file at
    /// `state_path`.
    pub shared: Option<Arc<dyn state::SharedStore>>,
    /// Cluster mode: the longest a follower goes without reading the shared
    /// state when no write notified it.
    pub follow_poll: Duration,
}

struct Inner {
    policy: Policy,
    targets: Vec<Target>,
    log: AuditLog,
    note_key: Arc<NoteSigningKey>,
    public: PublicKey,
    state: Mutex<State>,
    state_path: PathBuf,
    /// Cluster mode's shared state (see [`state::SharedStore`]).
    shared: Option<Arc<dyn state::SharedStore>>,
    /// Serializes writes of the state file, so the last written is the newest.
    persist: tokio::sync::Mutex<()>,
    transport: Arc<dyn Transport>,
    metrics: Metrics,
    timeout: Duration,
    follow_poll: Duration,
    wake: Notify,
    started: SystemTime,
}

/// Witness cosigning and publication; cheap to clone.
#[derive(Clone)]
pub struct Witnessing(Arc<Inner>);

impl Witnessing {
    /// Reads the kept state (checking it against `log`) and prepares the
    /// submitter; [`Witnessing::run`] starts it.
    pub fn new(
        settings: Settings,
        log: AuditLog,
        note_key: Arc<NoteSigningKey>,
        public: PublicKey,
        transport: Arc<dyn Transport>,
        metrics: Metrics,
    ) -> Result<Witnessing, WitnessConfigError> {
        let policy = settings.policy;
        let targets = Target::all(&policy);
        if targets.is_empty() && !policy.quorum_met(&vec![false; policy.witnesses().len()]) {
            return Err(WitnessConfigError::NoSubmissionUrl {
                path: settings.state_path,
            });
        }
        // In cluster mode the shared state is read by `run`, asynchronously.
        let kept = match settings.shared {
            Some(_) => state::Kept::default(),
            None => state::load(&settings.state_path)?,
        };
        let witnesses = Progress::kept(&policy, &kept);
        let witnessing = Witnessing(Arc::new(Inner {
            policy,
            targets,
            log,
            note_key,
            public,
            state: Mutex::new(State {
                witnesses,
                ..State::default()
            }),
            state_path: settings.state_path,
            shared: settings.shared,
            persist: tokio::sync::Mutex::new(()),
            transport,
            metrics,
            timeout: settings.timeout,
            follow_poll: settings.follow_poll,
            wake: Notify::new(),
            started: SystemTime::now(),
        }));
        if let Some(text) = kept.published {
            witnessing.restore(&text);
        }
        Ok(witnessing)
    }

    /// Serves the kept published checkpoint `text` again if it matches this
    /// log ([`Witnessing::reopen`]); otherwise says why nothing is published.
    fn restore(&self, text: &str) {
        match self.reopen(text) {
            Ok(published) => {
                self.0
                    .metrics
                    .set_published_size(published.checkpoint.tree_size);
                self.lock().published = Some(published);
            }
            Err(problem) => {
                tracing::error!(
                    path = %self.0.state_path.display(),
                    %problem,
                    "the kept published checkpoint does not match this log; publishing nothing until witnesses cosign a new one"
                );
                self.lock().problem = Some(problem);
            }
        }
    }

    /// The kept published checkpoint, if this log's tree has it: same size or
    /// larger, and the same root at its size. Its cosignatures are checked again.
    fn reopen(&self, text: &str) -> Result<Published, String> {
        let note = Note::parse(text.as_bytes()).map_err(|error| error.to_string())?;
        let witness_keys: Vec<VerifierKey> = self
            .0
            .policy
            .witnesses()
            .iter()
            .map(|witness| witness.key.clone())
            .collect();
        let verified = verify_note(note, &[self.0.note_key.verifier_key()], &witness_keys)
            .map_err(|error| format!("its note does not verify: {error}"))?;
        let checkpoint = verified.checkpoint;
        let size = self.0.log.size();
        if checkpoint.tree_size > size {
            return Err(format!(
                "the kept checkpoint has {} leaves and the log {size}: the log was rolled back",
                checkpoint.tree_size
            ));
        }
        let root = self
            .root(checkpoint.tree_size)
            .ok_or("cannot compute the log's root")?;
        if root != checkpoint.root_hash {
            return Err(format!(
                "the kept checkpoint's root at size {} is not the log's: the log was forked",
                checkpoint.tree_size
            ));
        }
        let mut cosigned = vec![false; witness_keys.len()];
        for (witness, _) in &verified.cosignatures {
            cosigned[*witness] = true;
        }
        Ok(Published {
            checkpoint,
            note: verified.note,
            cosigned,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The published checkpoint, if any.
    pub(crate) fn published(&self) -> Option<Published> {
        self.lock().published.clone()
    }

    /// `PATH(index, D[0:size])` from the log's stored nodes: the inclusion proof
    /// against a published checkpoint smaller than the tree.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        tiles::inclusion_proof(index, size, |tile| self.hash_tile(tile)).ok()
    }

    /// `MTH(D[0:size])` from the log's stored nodes.
    fn root(&self, size: u64) -> Option<Hash> {
        tiles::root(size, |tile| self.hash_tile(tile)).ok()
    }

    fn hash_tile(&self, tile: &Tile) -> Result<Vec<u8>, ()> {
        let TileLevel::Hashes(level) = tile.level() else {
            return Err(());
        };
        let first = tile.index() * u64::from(tiles::TILE_WIDTH);
        let mut bytes = Vec::with_capacity(usize::from(tile.width()) * tiles::HASH_SIZE);
        for node in first..first + u64::from(tile.width()) {
            let hash = self
                .0
                .log
                .perfect_subtree(8 * u32::from(level), node)
                .ok_or(())?;
            bytes.extend_from_slice(&hash);
        }
        Ok(bytes)
    }

    /// `/health`'s `witnessing`.
    pub fn health(&self) -> WitnessingHealth {
        let size = self.0.log.size();
        let now = unix_now();
        let state = self.lock();
        let published_size = state
            .published
            .as_ref()
            .map(|published| published.checkpoint.tree_size);
        WitnessingHealth {
            published_size,
            unpublished_entries: size.saturating_sub(published_size.unwrap_or(0)),
            problem: state.problem.clone(),
            witnesses: self
                .0
                .policy
                .witnesses()
                .iter()
                .zip(&state.witnesses)
                .map(|(witness, progress)| WitnessHealth {
                    name: witness.name.clone(),
                    cosigned_size: progress.cosigned_size(),
                    lag_entries: size.saturating_sub(progress.cosigned_size().unwrap_or(0)),
                    lag_secs: progress.cosigned_at.map(|at| now.saturating_sub(at)),
                    failures: progress.failure_counts(),
                    last_error: progress.last_error.clone(),
                })
                .collect(),
        }
    }

    /// Submits checkpoints until the task is aborted (at shutdown). In cluster
    /// mode only while this replica holds the submitters' lease; every replica
    /// follows the shared state meanwhile (`follow`).
    pub async fn run(self) {
        if let Some(shared) = self.0.shared.clone() {
            return self.run_replica(shared).await;
        }
        loop {
            self.tick();
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = self.0.wake.notified() => {}
            }
        }
    }

    fn update_lag(&self, size: u64) {
        let now = unix_now();
        let started = self
            .0
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let state = self.lock();
        for (witness, progress) in self.0.policy.witnesses().iter().zip(&state.witnesses) {
            self.0.metrics.set_witness_lag(
                &witness.name,
                size.saturating_sub(progress.cosigned_size().unwrap_or(0)),
                now.saturating_sub(progress.cosigned_at.unwrap_or(started)),
            );
        }
    }

    /// Writes the state file in the background (the newest state wins: writes
    /// are serialized and each takes the state as it is when it starts).
    fn spawn_persist(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let _writing = this.0.persist.lock().await;
            if let Some(shared) = &this.0.shared {
                let kept = this.shared_snapshot();
                if let Err(error) = shared.store(&kept).await {
                    tracing::warn!(%error, "cannot write the witnesses' shared state");
                }
                return;
            }
            let kept = this.snapshot();
            let path = this.0.state_path.clone();
            let written = tokio::task::spawn_blocking(move || state::store(&path, &kept)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "cannot keep the witnesses' state"),
                Err(error) => tracing::error!(%error, "the witnesses' state writer failed"),
            }
        });
    }

    fn snapshot(&self) -> state::Kept {
        let state = self.lock();
        state::Kept {
            published: state.published.as_ref().map(Published::text),
            witnesses: self
                .0
                .policy
                .witnesses()
                .iter()
                .zip(&state.witnesses)
                .filter_map(|(witness, progress)| {
                    Some((
                        witness.name.clone(),
                        state::KeptWitness {
                            size: progress.size?,
                            cosigned_at: progress.cosigned_at,
                        },
                    ))
                })
                .collect(),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
