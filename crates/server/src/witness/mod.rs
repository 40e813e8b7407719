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
//! - [`state`]: the durable part, a file beside the file log; in cluster mode a
//!   [`state::SharedStore`] (one row in PostgreSQL) that one replica at a time
//!   writes (the one holding the submitters' lease: only it submits) and every
//!   replica reads about every [`TICK`], serving the published checkpoint it
//!   names once its own tree holds it.
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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::sync::Notify;

use wasm_hypervisor_protocol::checkpoint::{Checkpoint, verify_note};
use wasm_hypervisor_protocol::merkle::Hash;
use wasm_hypervisor_protocol::note::{Note, NoteSignature, NoteSigningKey, VerifierKey};
use wasm_hypervisor_protocol::policy::Policy;
use wasm_hypervisor_protocol::signing::PublicKey;
use wasm_hypervisor_protocol::tiles::{self, Tile, TileLevel};
use wasm_hypervisor_protocol::wire::{WitnessHealth, WitnessingHealth};

use crate::audit::AuditLog;
use crate::metrics::Metrics;

pub mod state;

/// How often the submitter looks at the log's size when nothing else wakes it.
const TICK: Duration = Duration::from_millis(100);

/// The first wait after a failure; it doubles with each failure in a row.
const BACKOFF_MIN: Duration = Duration::from_millis(500);

/// The longest wait after failures in a row.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Most bytes of a witness's answer read (tlog-witness answers are a few lines).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

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
pub enum FailureKind {
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
    pub const ALL: [FailureKind; 10] = [
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
    pub fn is_refusal(self) -> bool {
        !matches!(
            self,
            FailureKind::Unreachable | FailureKind::Timeout | FailureKind::HttpStatus
        )
    }

    pub fn as_str(self) -> &'static str {
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
struct Failure {
    kind: FailureKind,
    detail: String,
}

fn failure(kind: FailureKind, detail: impl Into<String>) -> Failure {
    Failure {
        kind,
        detail: detail.into(),
    }
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
}

/// The published checkpoint: the note with the log's signatures and every valid
/// cosignature the server has for it.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub checkpoint: Checkpoint,
    note: Note,
    cosigned: Vec<bool>,
}

impl Published {
    fn new(checkpoint: Checkpoint, note: Note, witnesses: usize) -> Published {
        Published {
            checkpoint,
            note,
            cosigned: vec![false; witnesses],
        }
    }

    /// The note, cosignatures included.
    pub fn note(&self) -> &Note {
        &self.note
    }

    /// The note's text, cosignatures included.
    pub fn text(&self) -> String {
        self.note.to_text()
    }

    fn add(&mut self, witness: usize, signature: NoteSignature) {
        if self.cosigned[witness] {
            return;
        }
        if self.note.add_signature(signature).is_ok() {
            self.cosigned[witness] = true;
        }
    }
}

/// One witness the log submits to.
struct Target {
    /// Its index in the policy's witnesses.
    index: usize,
    name: String,
    key: VerifierKey,
    url: String,
}

/// What the server knows of one witness.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The largest size it cosigned (or told in a 409) for this origin: where
    /// the next submission's proof starts.
    size: Option<u64>,
    /// The size of the last checkpoint of *this* log it cosigned for this
    /// process (a 409's size may be another history's).
    cosigned: Option<u64>,
    /// When it last gave a valid cosignature (POSIX seconds, our clock).
    cosigned_at: Option<u64>,
    /// Its last valid cosignature line, kept in cluster mode's shared state.
    cosignature: Option<String>,
    /// Whether it answered this process: until then the kept size is only a
    /// starting point, and the checkpoint goes to it even at that size (so a
    /// restart on a rolled-back copy of the data meets the witness at once).
    answered: bool,
    busy: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The checkpoint size it refused last: not sent to it again.
    refused_size: Option<u64>,
    failures: BTreeMap<&'static str, u64>,
    last_error: Option<String>,
}

impl Progress {
    /// What it cosigned of this log: for this process, or before it answered
    /// one, as kept.
    fn cosigned_size(&self) -> Option<u64> {
        if self.answered {
            self.cosigned
        } else {
            self.size
        }
    }
}

struct State {
    published: Option<Published>,
    /// Checkpoints submitted and not yet published, by size, with what they
    /// gathered.
    candidates: BTreeMap<u64, Published>,
    witnesses: Vec<Progress>,
    /// A reason of the server's own to publish nothing (see `problem` in health).
    problem: Option<String>,
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
        let targets: Vec<Target> = policy
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
            .collect();
        if targets.is_empty() && !policy.quorum_met(&vec![false; policy.witnesses().len()]) {
            return Err(WitnessConfigError::NoSubmissionUrl {
                path: settings.state_path,
            });
        }
        let count = policy.witnesses().len();
        // In cluster mode the shared state is read by `run`, asynchronously.
        let kept = match settings.shared {
            Some(_) => state::Kept::default(),
            None => state::load(&settings.state_path)?,
        };
        let mut witnesses = vec![Progress::default(); count];
        for (index, witness) in policy.witnesses().iter().enumerate() {
            if let Some(kept) = kept.witnesses.get(&witness.name) {
                witnesses[index].size = Some(kept.size);
                witnesses[index].cosigned_at = kept.cosigned_at;
            }
        }
        let mut state = State {
            published: None,
            candidates: BTreeMap::new(),
            witnesses,
            problem: None,
        };
        let witnessing = Witnessing(Arc::new(Inner {
            policy,
            targets,
            log,
            note_key,
            public,
            state: Mutex::new(State {
                published: None,
                candidates: BTreeMap::new(),
                witnesses: Vec::new(),
                problem: None,
            }),
            state_path: settings.state_path,
            shared: settings.shared,
            persist: tokio::sync::Mutex::new(()),
            transport,
            metrics,
            timeout: settings.timeout,
            wake: Notify::new(),
            started: SystemTime::now(),
        }));
        if let Some(text) = kept.published {
            match witnessing.reopen(&text) {
                Ok(published) => state.published = Some(published),
                Err(problem) => {
                    tracing::error!(
                        path = %witnessing.0.state_path.display(),
                        %problem,
                        "the kept published checkpoint does not match this log; publishing nothing until witnesses cosign a new one"
                    );
                    state.problem = Some(problem);
                }
            }
        }
        if let Some(published) = &state.published {
            witnessing
                .0
                .metrics
                .set_published_size(published.checkpoint.tree_size);
        }
        *witnessing.lock() = state;
        Ok(witnessing)
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
                    failures: progress
                        .failures
                        .iter()
                        .map(|(kind, count)| ((*kind).to_owned(), *count))
                        .collect(),
                    last_error: progress.last_error.clone(),
                })
                .collect(),
        }
    }

    /// Submits checkpoints until the task is aborted (at shutdown). In cluster
    /// mode only while this replica holds the submitters' lease; every replica
    /// follows the shared state meanwhile.
    pub async fn run(self) {
        // Whether this replica, leading, has read the shared state since it took
        // the lease (another replica may have written it before).
        let mut adopted = false;
        loop {
            match &self.0.shared {
                None => self.tick(),
                Some(shared) => {
                    let leads = match shared.lead().await {
                        state::Lead::Acquired => {
                            adopted = false;
                            true
                        }
                        state::Lead::Held => true,
                        state::Lead::Follower => {
                            adopted = false;
                            false
                        }
                    };
                    if !adopted || !leads {
                        match shared.load().await {
                            Ok(kept) => {
                                self.follow(kept, leads).await;
                                if leads {
                                    adopted = true;
                                    tracing::info!(
                                        "this replica now submits checkpoints to the witnesses"
                                    );
                                }
                            }
                            Err(error) => {
                                tracing::warn!(%error, "cannot read the witnesses' shared state")
                            }
                        }
                    }
                    if leads && adopted {
                        self.tick();
                    } else {
                        self.update_lag(self.0.log.size());
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = self.0.wake.notified() => {}
            }
        }
    }

    /// One look at the log: the latest checkpoint becomes a candidate, published
    /// at once if the quorum needs no cosignature, and goes to every witness that
    /// is idle, not backing off, and has not cosigned or refused it.
    fn tick(&self) {
        let size = self.0.log.size();
        self.update_lag(size);
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let state = self.lock();
            for target in &self.0.targets {
                let progress = &state.witnesses[target.index];
                let idle = !progress.busy && progress.retry_at.is_none_or(|at| at <= now);
                let unsent = progress.cosigned != Some(size) || !progress.answered;
                if idle && unsent && progress.refused_size != Some(size) {
                    due.push(target.index);
                }
            }
            let needs_candidate = state
                .published
                .as_ref()
                .is_none_or(|published| published.checkpoint.tree_size < size);
            if due.is_empty() && !needs_candidate {
                return;
            }
        }
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
        for index in due {
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

    /// Publishes the largest candidate whose cosignatures meet the quorum and
    /// drops the candidates it covers; whether anything was published.
    fn settle(&self, state: &mut State) -> bool {
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
    async fn submit(&self, target: usize, checkpoint: Checkpoint, note: Note) {
        let target = &self.0.targets[target];
        let result = self.exchange(target, &checkpoint, &note).await;
        let persist = {
            let mut state = self.lock();
            let progress = &mut state.witnesses[target.index];
            progress.busy = false;
            if result
                .as_ref()
                .map_or_else(|(failure, _)| failure.kind.is_refusal(), |_| true)
            {
                progress.answered = true;
            }
            match result {
                Ok((signature, _timestamp)) => {
                    progress.size = Some(checkpoint.tree_size);
                    progress.cosigned = Some(checkpoint.tree_size);
                    progress.cosigned_at = Some(unix_now());
                    progress.cosignature = Some(signature_line(&signature));
                    progress.retry_at = None;
                    progress.backoff = Duration::ZERO;
                    progress.last_error = None;
                    progress.refused_size = None;
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
                    if let Some(size) = witness_size {
                        progress.size = Some(size);
                    }
                    progress.backoff = (progress.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    progress.retry_at = Some(Instant::now() + progress.backoff);
                    // A refusal is not retried blindly: the witness gets the next
                    // checkpoint. A witness that could not answer gets this one again.
                    if failure.kind.is_refusal() {
                        progress.refused_size = Some(checkpoint.tree_size);
                    }
                    *progress.failures.entry(failure.kind.as_str()).or_default() += 1;
                    progress.last_error = Some(format!(
                        "{}: {} (checkpoint of size {})",
                        failure.kind.as_str(),
                        failure.detail,
                        checkpoint.tree_size
                    ));
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

    /// The exchange of tlog-witness's add-checkpoint, with one resubmission after
    /// a `409` that names a size the log can prove from. `Ok`: the witness's
    /// verified cosignature and its timestamp; `Err`: the failure, and the
    /// witness's size if it told one.
    async fn exchange(
        &self,
        target: &Target,
        checkpoint: &Checkpoint,
        note: &Note,
    ) -> Result<(NoteSignature, u64), (Failure, Option<u64>)> {
        let size = checkpoint.tree_size;
        let mut old = self.lock().witnesses[target.index].size.unwrap_or(0);
        let mut told = None;
        for attempt in 0..2 {
            if old > size {
                return Err((
                    failure(
                        FailureKind::Conflict,
                        format!(
                            "the witness cosigned a tree of {old} leaves for this origin and this log has {size}: this log was rolled back or forked"
                        ),
                    ),
                    told,
                ));
            }
            let body = self
                .request_body(old, size, note)
                .map_err(|detail| (failure(FailureKind::Conflict, detail), told))?;
            let url = format!("{}/add-checkpoint", target.url);
            let answer = match tokio::time::timeout(
                self.0.timeout,
                self.0.transport.add_checkpoint(&url, body),
            )
            .await
            {
                Err(_) => {
                    return Err((
                        failure(
                            FailureKind::Timeout,
                            format!("no answer within {} ms", self.0.timeout.as_millis()),
                        ),
                        told,
                    ));
                }
                Ok(Err(error)) => {
                    return Err((failure(FailureKind::Unreachable, error), told));
                }
                Ok(Ok(answer)) => answer,
            };
            match answer.status {
                200 => {
                    return self
                        .cosignature(target, note, &answer.body)
                        .map_err(|failure| (failure, told));
                }
                409 => {
                    let Some(theirs) = tlog_size(&answer) else {
                        return Err((
                            failure(
                                FailureKind::Garbage,
                                "a 409 without a text/x.tlog.size body",
                            ),
                            told,
                        ));
                    };
                    told = Some(theirs);
                    if attempt == 0 && theirs <= size {
                        old = theirs;
                        continue;
                    }
                    return Err((
                        failure(
                            FailureKind::Conflict,
                            format!(
                                "the witness cosigned a tree of {theirs} leaves for this origin and this log has {size}: this log was rolled back or forked"
                            ),
                        ),
                        told,
                    ));
                }
                status => {
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
                    return Err((failure(kind, format!("{what} (HTTP {status})")), told));
                }
            }
        }
        Err((
            failure(FailureKind::Conflict, "the witness answered 409 twice"),
            told,
        ))
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
        let lines = std::str::from_utf8(body)
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
            })?;
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

impl Witnessing {
    /// Takes `shared` (cluster mode) as this replica's state: the published
    /// checkpoint once this replica's tree holds it, checked as at a restart
    /// (signatures, cosignatures, quorum, root), and what is known of each
    /// witness. `leading`: this replica has just taken the submitters' lease and
    /// starts from the shared sizes, as a restart from the state file does.
    async fn follow(&self, shared: state::Shared, leading: bool) {
        let current = self.lock().published.as_ref().map(Published::text);
        // `None`: the published checkpoint stays as it is.
        let mut published: Option<Option<Published>> = None;
        let mut problem = shared.problem.clone();
        if shared.published != current {
            match &shared.published {
                None => published = Some(None),
                Some(text) => {
                    if let Some(size) = note_size(text) {
                        self.0.log.size_for(size).await;
                    }
                    let reopened = self.reopen(text).and_then(|reopened| {
                        if self.0.policy.quorum_met(&reopened.cosigned) {
                            Ok(reopened)
                        } else {
                            Err("the shared published checkpoint lacks the quorum".to_owned())
                        }
                    });
                    match reopened {
                        Ok(reopened) => published = Some(Some(reopened)),
                        Err(reason) => {
                            tracing::warn!(%reason, "not serving the shared published checkpoint");
                            problem = Some(reason);
                        }
                    }
                }
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
            let kept = shared
                .witnesses
                .get(&witness.name)
                .cloned()
                .unwrap_or_default();
            *progress = Progress {
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
            };
        }
        if leading {
            state.candidates.clear();
        }
    }

    /// Cluster mode's shared state, as this (submitting) replica knows it.
    fn shared_snapshot(&self) -> state::Shared {
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
                            failures: progress
                                .failures
                                .iter()
                                .map(|(kind, count)| ((*kind).to_owned(), *count))
                                .collect(),
                            last_error: progress.last_error.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The tree size a note's checkpoint names, if it reads as one.
fn note_size(text: &str) -> Option<u64> {
    let note = Note::parse(text.as_bytes()).ok()?;
    Checkpoint::parse(note.text()).ok().map(|c| c.tree_size)
}

/// A signature's note line, `— <name> <base64 of key id and signature>`.
fn signature_line(signature: &NoteSignature) -> String {
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
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
