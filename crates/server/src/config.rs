//! The service configuration: one struct whose doc comments are the documentation,
//! parsed once, at start-up, into typed values.
//!
//! Sources, later ones overriding earlier ones: the embedded defaults, an optional
//! YAML file (`--config`), environment variables `WASM_HYPERVISOR_<KEY>` with `__`
//! between nesting levels (`WASM_HYPERVISOR_LIMITS__TIMEOUT_MS=5000`), and the
//! command-line flags. A value that makes no sense stops the server with a
//! [`ConfigError`] that names the key, what is wrong with the value and where it
//! came from.
//!
//! # Parsed, not validated
//! Each field's type holds only what its key allows: durations are
//! [`Duration`](std::time::Duration)s (behind [`Millis`] and [`Secs`], which know
//! the key's unit and bounds), bounded numbers are [`Bounded`] with the bounds in
//! the type, token digests are
//! [`TokenDigest`]s (32 bytes), trusted proxies are [`IpNet`]s, `crypto.provider`
//! is the [`Provider`] itself (known and compiled in). Each type checks its value
//! in `TryFrom`, which its `Deserialize` goes through, so a `Config` that exists is
//! a valid one: the server takes its values as they are, with nothing to re-check
//! and nothing to `expect`. The types are in `config/value.rs`; this file is the
//! keys, their defaults, the loading and the errors.
//!
//! Why typed fields, rather than a raw serde struct converted into a typed one:
//! one struct keeps each key's documentation on the type that enforces it, a new
//! key is one field and its default instead of four places to keep in step, and
//! the key an error names is the path serde and figment followed to the value, not
//! a string typed a second time by hand. The one bound that spans two keys (a
//! client's share of the session pool, at most the pool) is kept by
//! [`SessionsConfig`], whose two fields change only together.
//!
//! Architecture invariant: no module but this one reads the server's configuration
//! sources, and none re-checks a value from here. Domain modules take plain domain
//! values (`Duration`, `usize`, `IpNet`, `[u8; 32]`), not config types; `server`
//! hands them over.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider as _};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use wasm_hypervisor_protocol::payload::{MAX_ARGS_CEILING, MAX_ENV_CEILING};

use crate::envelope::{PROVIDER_NAMES, Provider};

mod value;

pub use value::{
    Bounded, BoundedDuration, CompileSlots, Millis, NonEmptyPath, Origin, Secs, TokenDigest,
    parse_network, parse_provider,
};

/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "WASM_HYPERVISOR_";

/// The upper bound of keys that have none: any `u64` will do.
const UNBOUNDED: u64 = u64::MAX;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` does not exist.
    #[error("invalid configuration: config file {} does not exist", .0.display())]
    MissingFile(PathBuf),
    /// A key is unknown, or its value has the wrong type or is not one the key
    /// allows.
    #[error(
        "invalid configuration: `{key}`: {}{}",
        Explained(reason),
        from.as_ref().map(|from| format!(" ({from})")).unwrap_or_default()
    )]
    Invalid {
        /// The key, dotted as in the YAML file: `limits.timeout_ms`; for a bound
        /// between keys, their section: `sessions`.
        key: String,
        /// What is wrong, as figment has it: a wrong type, an unknown key or name,
        /// or (as `Kind::Message`) the text of a [`Problem`] this module found.
        reason: Box<figment::error::Kind>,
        /// Which source gave the value; `None` for a section, whose keys may come
        /// from several.
        from: Option<Source>,
    },
    /// A source could not be read at all (bad YAML syntax, say): no key to name.
    #[error("invalid configuration: {0}")]
    Unreadable(Box<figment::Error>),
}

/// What is wrong with a value, by the checks of this module's types. Apart from
/// [`ConfigError`] because a value's type does not know its key: `TryFrom` says
/// what is wrong, and loading adds the key and the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A number outside its key's bounds.
    #[error("must be {}, not {value}", describe_bounds(*.min, *.max))]
    OutOfRange { value: u64, min: u64, max: u64 },
    /// More compilation slots than the machine has cores.
    #[error("must be at most the number of cores ({cores}), not {value}")]
    AboveCores { value: usize, cores: usize },
    /// A client's share of the session pool larger than the pool.
    #[error(
        "`max_pending_per_client` ({share}) must be at most `max_pending` ({pool}); \
         0 turns the share off"
    )]
    ShareAbovePool { share: u64, pool: u64 },
    /// A checkpoint origin that is empty, too long, or has spaces, `+` or control
    /// characters (it names the log's note key: signed-note key names have none).
    #[error("must be 1..=256 printable characters without spaces or `+`")]
    Origin,
    /// An empty path.
    #[error("must not be empty")]
    EmptyPath,
    /// A token digest that is not a SHA-256 digest in lowercase hex.
    #[error("entries must be 64 lowercase hex characters (a SHA-256 digest)")]
    Digest,
    /// A trusted proxy that is neither a network nor an address.
    #[error("has `{0}`, which is neither a CIDR nor an address")]
    Network(String),
    /// A crypto provider name that names no provider.
    #[error("is `{0}`; it must be `aws-lc` or `rustcrypto`")]
    UnknownProvider(String),
    /// A crypto provider this build was made without.
    #[error(
        "is `{0}`, which this build does not include (it was built without the `{0}` \
         cargo feature); this build has {list}",
        list = compiled_in_providers()
    )]
    ProviderNotBuilt(&'static str),
}

/// figment's own errors, worded like this module's where figment's wording nests
/// quotes (unknown keys and names).
struct Explained<'a>(&'a figment::error::Kind);

impl fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use figment::error::{Kind, OneOf};
        match self.0 {
            Kind::UnknownField(_, expected) => {
                write!(f, "is not a key; it must be {}", OneOf(expected))
            }
            Kind::UnknownVariant(found, expected) => {
                write!(f, "is `{found}`; it must be {}", OneOf(expected))
            }
            other => other.fmt(f),
        }
    }
}

/// "between 1 and 600000", "at most 3600" or "at least 8".
fn describe_bounds(min: u64, max: u64) -> String {
    match (min, max) {
        (0, max) => format!("at most {max}"),
        (min, UNBOUNDED) => format!("at least {min}"),
        (min, max) => format!("between {min} and {max}"),
    }
}

fn compiled_in_providers() -> String {
    Provider::compiled_in()
        .iter()
        .map(|provider| format!("`{provider}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The embedded defaults (only `crypto.provider` can be wrong there, in a build
    /// without `aws-lc`).
    Defaults,
    /// The YAML file given with `--config`.
    File(PathBuf),
    /// The environment variable of this name.
    Environment(String),
    /// The command-line flag of this name.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Defaults => f.write_str("the default"),
            Source::File(path) => write!(f, "in {}", path.display()),
            Source::Environment(name) => write!(f, "environment variable {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// Everything the server can be told. Every key is optional; `config.yaml` at the
/// top of the repository lists them all with their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Directory for the signing key and the audit log; created (mode 0700) if
    /// missing. Not empty. Default `./data`.
    pub data_dir: NonEmptyPath,
    /// The long-term signing key's file (PKCS#8 PEM, mode 0600), created if
    /// missing. Empty: `signing_key.pem` in `data_dir`. In cluster mode every
    /// replica points it at the same key (a mounted secret): a replica with
    /// another key refuses to start. Default empty.
    pub signing_key_file: PathBuf,
    /// The log's note key (protocol v1.2 §T1: the Ed25519 key of its signed-note
    /// checkpoints), as signed-note signer key text (mode 0600). Made on first
    /// start from the signing key, so replicas that share the signing key make
    /// the same note key; a file put there beforehand is used as it is, and must
    /// be the key of `origin`. Empty: `note_key` in `data_dir`. Default empty.
    pub note_key_file: PathBuf,
    /// Free space, in bytes, that the data directory's file system must keep for
    /// `GET /health` to answer 200; below it, health answers 503 with
    /// `data_dir_low_space` so that a load balancer drains this instance before
    /// appends start failing. An audit record is about 137 bytes, so the default
    /// 67108864 (64 MiB) is room for some 490,000 more executions. 0 turns the
    /// check off. Default 67108864.
    pub data_dir_min_free_bytes: u64,
    /// Name of this log in signed checkpoints (C2SP tlog-checkpoint "origin"): a
    /// schema-less URL that identifies this log instance, and the name of its
    /// note key; 1..=256 printable characters without spaces or `+`. Default
    /// `localhost/wasm-hypervisor`.
    pub origin: Origin,
    /// How log lines on stderr look: `text`, one human-readable line per event, or
    /// `json`, one JSON object per event with the request's span (method, route,
    /// request id, execution id) in `spans`, for log collectors. `RUST_LOG`
    /// filters them either way. Default `text`.
    pub log_format: LogFormat,
    /// Seconds a shutdown (SIGTERM or Ctrl-C) waits for requests and executions in
    /// flight before it closes the audit log anyway. The server stops accepting
    /// connections at once. Keep the orchestrator's stop timeout above this (`docker
    /// stop --time`, Kubernetes `terminationGracePeriodSeconds`), or it kills the
    /// server mid-drain. 0..=3600, default 30.
    pub shutdown_grace_secs: Secs<0, 3600>,
    /// Serve the playground at `/playground/`: a static page that runs a module
    /// sealed from the browser and verifies its receipt there. Default false.
    pub playground: bool,
    pub sessions: SessionsConfig,
    pub limits: LimitsConfig,
    pub execution: ExecutionConfig,
    pub blobs: BlobsConfig,
    pub auth: AuthConfig,
    pub clients: ClientsConfig,
    pub quotas: QuotasConfig,
    pub http: HttpConfig,
    pub crypto: CryptoConfig,
    pub cluster: ClusterConfig,
    pub witnesses: WitnessesConfig,
}

/// Witness cosigning (protocol v1.2 §T5; PROTOCOL.md, "Witnesses").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WitnessesConfig {
    /// A C2SP tlog-policy file (`witness <name> <vkey> <url>`, `group`, `quorum`
    /// lines; `log` lines are allowed and ignored here): the log submits each new
    /// checkpoint to every witness whose line has a URL (its tlog-witness
    /// submission prefix) and publishes a checkpoint once its cosignatures meet
    /// the quorum; `/tlog/checkpoint` and `/tlog/proof` serve the published one.
    /// The same file without the URLs, plus the log's `log` line, is the policy
    /// clients verify with. Empty (the default): no witness, every checkpoint is
    /// published at once. In cluster mode every replica has the same file.
    pub policy_file: PathBuf,
    /// How long one submission to a witness may take before it counts as a
    /// `timeout` failure. 100..=600000, default 10000.
    pub submit_timeout_ms: Millis<100, 600_000>,
    /// Cluster mode: a replica learns of a newly published checkpoint when the
    /// replica that submits notifies it (PostgreSQL `NOTIFY`), and reads the
    /// shared state at least this often regardless, reconnecting a lost
    /// listener: the most a missed notification delays it. 100..=3600000,
    /// default 5000.
    pub follow_poll_ms: Millis<100, 3_600_000>,
}

impl Default for WitnessesConfig {
    fn default() -> Self {
        WitnessesConfig {
            policy_file: PathBuf::new(),
            submit_timeout_ms: Millis::constant::<10_000>(),
            follow_poll_ms: Millis::constant::<5_000>(),
        }
    }
}

/// Cluster mode: replicas sharing one PostgreSQL (ARCHITECTURE.md, "Cluster
/// mode").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The PostgreSQL URL (`postgresql://user:password@host:port/db`, or
    /// `postgresql:///db?host=/run/postgresql` for a unix socket) that every
    /// replica of one service shares: pending sessions, async answers and the
    /// one audit log live there, so any replica serves them (a file log with
    /// records in `data_dir` must be moved in first: `wasm-hypervisor log
    /// import`). Empty: embedded mode, everything in
    /// this process and `data_dir`. No TLS: reach the database over a private
    /// network or a socket. It may hold a password: it is never logged. Default
    /// empty.
    pub database_url: DatabaseUrl,
    /// Connections in this replica's pool. 1..=1024, default 16.
    pub pool_size: Bounded<1, 1024>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            database_url: DatabaseUrl::default(),
            pool_size: Bounded::constant::<16>(),
        }
    }
}

/// `cluster.database_url`: its `Debug` never shows it (it may hold a password).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether cluster mode is on.
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> DatabaseUrl {
        DatabaseUrl(url)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("DatabaseUrl(\"\")")
        } else {
            f.write_str("DatabaseUrl(<redacted>)")
        }
    }
}

/// The shape of log lines (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Pending sessions (`POST /sessions`).
///
/// `max_pending` and `max_pending_per_client` are private: the share is bounded by
/// the pool, so they are set through methods that keep it so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SessionsFields", into = "SessionsFields")]
pub struct SessionsConfig {
    /// Seconds a session key lives before it is destroyed unused. 1..=3600, default 60.
    pub ttl_secs: Secs<1, 3600>,
    /// Most sessions pending at once. When the pool is full, a client that holds
    /// fewer pending sessions than the client holding the most takes the place of
    /// that client's oldest one (which then answers `session_not_found`, like an
    /// expired session); any other client gets 503 `too_many_sessions` with
    /// `Retry-After`. 1..=1000000, default 10000.
    max_pending: Bounded<1, 1_000_000>,
    /// Most sessions one client (its token when authentication is on, else its
    /// address) may have pending, counting those being created; past it `POST
    /// /sessions` answers 429 `too_many_client_sessions` with `Retry-After`, before
    /// any key is generated. 0 turns the share off (a client may then hold the
    /// whole pool, still subject to eviction by the others). 0..=`max_pending`,
    /// default 64 (four times `clients.max_concurrent_executions`' default).
    max_pending_per_client: Bounded<0, 1_000_000>,
    /// Most sessions one `POST /sessions {"count": N}` may ask for (protocol v1.1
    /// §A, which says the maximum is at least 64); a larger N is 400
    /// `invalid_parameter`. 64..=1024, default 64.
    pub max_batch: Bounded<64, 1024>,
}

/// `sessions` as the sources give it, before the share is held to the pool.
#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SessionsFields {
    ttl_secs: Secs<1, 3600>,
    max_pending: Bounded<1, 1_000_000>,
    max_pending_per_client: Bounded<0, 1_000_000>,
    max_batch: Bounded<64, 1024>,
}

impl SessionsConfig {
    /// `sessions.max_pending`.
    pub fn max_pending(&self) -> usize {
        self.max_pending.get_usize()
    }

    /// `sessions.max_pending_per_client`; 0: no share.
    pub fn max_pending_per_client(&self) -> usize {
        self.max_pending_per_client.get_usize()
    }

    /// Sets `max_pending`, which must stay at least the client share.
    pub fn set_max_pending(&mut self, pool: Bounded<1, 1_000_000>) -> Result<(), Problem> {
        *self = SessionsConfig::try_from(SessionsFields {
            max_pending: pool,
            ..self.clone().into()
        })?;
        Ok(())
    }

    /// Sets `max_pending_per_client`, which must stay at most the pool.
    pub fn set_max_pending_per_client(
        &mut self,
        share: Bounded<0, 1_000_000>,
    ) -> Result<(), Problem> {
        *self = SessionsConfig::try_from(SessionsFields {
            max_pending_per_client: share,
            ..self.clone().into()
        })?;
        Ok(())
    }
}

impl TryFrom<SessionsFields> for SessionsConfig {
    type Error = Problem;

    fn try_from(fields: SessionsFields) -> Result<SessionsConfig, Problem> {
        let (share, pool) = (fields.max_pending_per_client, fields.max_pending);
        if share.get() > pool.get() {
            return Err(Problem::ShareAbovePool {
                share: share.get(),
                pool: pool.get(),
            });
        }
        Ok(SessionsConfig {
            ttl_secs: fields.ttl_secs,
            max_pending: pool,
            max_pending_per_client: share,
            max_batch: fields.max_batch,
        })
    }
}

impl From<SessionsConfig> for SessionsFields {
    fn from(config: SessionsConfig) -> SessionsFields {
        SessionsFields {
            ttl_secs: config.ttl_secs,
            max_pending: config.max_pending,
            max_pending_per_client: config.max_pending_per_client,
            max_batch: config.max_batch,
        }
    }
}

/// The server's maxima for one execution. A request may lower each, never raise it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wasmtime fuel units (about one per executed instruction). >= 1, default 10000000000.
    pub fuel: Bounded<1, UNBOUNDED>,
    /// Largest linear memory, in bytes, for each memory of the guest. 64 KiB (one
    /// wasm page)..=4 GiB, default 67108864 (64 MiB).
    pub memory_bytes: Bounded<65_536, { 4 << 30 }>,
    /// Wall-clock milliseconds from the moment the guest starts (queueing and
    /// compilation excluded); also ends a guest blocked in a host call.
    /// 1..=600000, default 10000.
    pub timeout_ms: Millis<1, 600_000>,
    /// Bytes of stdout, and separately of stderr, returned; more is dropped and
    /// flagged as truncated. 0..=64 MiB, default 1048576 (1 MiB).
    pub max_output_bytes: Bounded<0, { 64 << 20 }>,
    /// Largest module, in bytes, accepted for compilation, whether sent or named
    /// by its SHA-256. >= 8, default 134217728 (128 MiB: yosys is 69 MB).
    pub max_module_bytes: Bounded<8, UNBOUNDED>,
    /// Largest HTTP request body, in bytes, read before anything is decoded; larger
    /// bodies get 413. In a JSON body the module and archives travel base64-encoded
    /// inside base64-encoded ciphertext, so this should be at least about 1.8 x
    /// `max_module_bytes` for modules sent by bytes. A body is held in memory while
    /// it is read: this bounds each connection's share. >= 1024, default
    /// 268435456 (256 MiB).
    pub max_request_bytes: Bounded<1024, UNBOUNDED>,
    /// Bytes of all regular files of all of an execution's mounts together
    /// (protocol v1.1 §E): archive contents and what the guest writes. Mount
    /// contents over it are an `invalid_request`; a write past it fails in the
    /// guest with `ENOSPC`. Held in memory, never on disk, per execution running.
    /// A request may lower it. 0..=4 GiB, default 268435456 (256 MiB).
    pub files_bytes: Bounded<0, { 4 << 30 }>,
    /// Most files and directories of all of an execution's mounts together,
    /// archive members and what the guest creates; past it archives are an
    /// `invalid_request` and creating an entry fails with `ENOSPC`.
    /// 1..=1000000, default 100000.
    pub max_mount_entries: Bounded<1, 1_000_000>,
    /// Most `args` entries a request may give the guest; more is an
    /// `invalid_request`. Parsing stops at 65536 whatever this says.
    /// 0..=65536, default 4096.
    pub max_args: Bounded<0, { MAX_ARGS_CEILING as u64 }>,
    /// Most `env` entries a request may give the guest; more is an
    /// `invalid_request`. Parsing stops at 65536 whatever this says.
    /// 0..=65536, default 4096.
    pub max_env: Bounded<0, { MAX_ENV_CEILING as u64 }>,
    /// Most bytes of `args` and `env` together (each string's UTF-8 bytes plus one
    /// for its terminating NUL, and one for each `=`, as the guest sees them);
    /// more is an `invalid_request`. 0..=16 MiB, default 1048576 (1 MiB).
    pub max_args_env_bytes: Bounded<0, { 16 << 20 }>,
}

/// Admission control for executions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Guests running at once. 1..=10000, default 100.
    pub max_concurrent: Bounded<1, 10_000>,
    /// Requests waiting for a slot; past it `/execute` answers 503 at once.
    /// 0..=100000, default 200.
    pub max_queued: Bounded<0, 100_000>,
    /// Milliseconds a request may wait for a slot before it gets 503. 1..=600000,
    /// default 5000.
    pub queue_timeout_ms: Millis<1, 600_000>,
    /// Bytes of compiled modules kept in memory, least recently used out first,
    /// each entry counting 1 KiB (`sandbox::cache::ENTRY_OVERHEAD_BYTES`) more
    /// than its code (a cached refusal, than the module). 0 disables caching.
    /// One compiled CPython or yosys takes tens to hundreds of MB. At most 64
    /// GiB, default 1073741824 (1 GiB).
    pub module_cache_bytes: Bounded<0, { 64 << 30 }>,
    /// Modules compiled at once, each in its own worker process on one core.
    /// Executions of cached modules never wait for a compilation, and at most this
    /// many cores compile, so the rest keep running guests. 0 means the number of
    /// cores minus one (at least 1). 0..=the number of cores, default 0.
    pub max_concurrent_compilations: CompileSlots,
    /// Executions that may be in the compile stage at once without holding a
    /// guest slot (waiting for or going through a compilation, then for a slot to
    /// run in). Past it, an execution compiles in its guest slot, as if compiling
    /// were part of running. 0..=100000, default 100.
    pub max_queued_compilations: Bounded<0, 100_000>,
    /// CPU seconds one compilation may take; past it the worker is killed and
    /// the module is refused (`invalid_module`, cached by hash). The wall-clock
    /// bound is three times this plus 5 s. 1..=3600, default 300.
    pub compile_timeout_secs: Secs<1, 3600>,
    /// Address space, in bytes, one compilation may take in its worker process
    /// (on top of what the worker maps at start: its binary and the allocator's
    /// reservation); a module whose compilation needs more is refused
    /// (`invalid_module`, cached by hash).
    /// 16 MiB..=64 GiB, default 4294967296 (4 GiB).
    pub compile_memory_bytes: Bounded<{ 16 << 20 }, { 64 << 30 }>,
    /// Seconds a finished async execution's answer (`Prefer: respond-async`) is
    /// kept for `GET /executions/{id}`, counted from when it finished; then 404
    /// (the log entry stays provable at `/verify`). 600..=86400, default 900.
    pub async_retention_secs: Secs<600, 86_400>,
    /// Async executions accepted and not finished at once; past it `POST /execute`
    /// with `Prefer: respond-async` answers 503 `overloaded` before using the
    /// session. 0 turns long jobs off: the preference is ignored (RFC 7240 §2) and
    /// every execution is answered synchronously. 0..=100000, default 1000.
    pub max_async_pending: Bounded<0, 100_000>,
    /// Bytes of async answers, kept and pending, in all. A pending execution
    /// counts as the largest sealed answer its limits allow (from the moment
    /// its plaintext opens, before its `202`), a finished one as its sealed
    /// result and signature (plus 128 bytes), until it is swept; an execution
    /// that does not fit is refused with 503 `overloaded` (before its session is
    /// used when not even the smallest answer fits, else after). Kept answers
    /// are never dropped early. Never passed. 1 MiB..=64 GiB, default 1073741824
    /// (1 GiB: twice the per-client share).
    pub async_results_bytes: Bounded<{ 1 << 20 }, { 64 << 30 }>,
    /// Bytes of one client's async answers, kept and pending, counted as for
    /// `async_results_bytes` (a client is its token, else its address); past
    /// it 429 `too_many_async_results`. The largest answer a request at the
    /// default limits can produce is 8,436,424 bytes in JSON (4,263,988 in
    /// CBOR), and 503,299,370 with a writable mount (`files_bytes` and 1 KiB per
    /// `max_mount_entries` on top, however many writable mounts): the
    /// default holds any of them with the store otherwise empty, and is half the
    /// total, so that one client never holds the whole store. A value at or above
    /// `async_results_bytes` leaves only the total. 1 MiB..=64 GiB, default
    /// 536870912 (512 MiB).
    pub async_results_bytes_per_client: Bounded<{ 1 << 20 }, { 64 << 30 }>,
    /// Not a configuration key: the program run as `PROGRAM compile-worker`.
    /// `None`, always in the server, means this executable; tests that serve from
    /// their own binary point it at the built `wasm-hypervisor`.
    #[serde(skip)]
    pub compile_worker: Option<PathBuf>,
}

/// The blob stores (protocol v1.1 §D): modules and archives clients sent, kept in
/// memory so that later requests can name them by SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsConfig {
    /// Bytes of blobs kept for each scope (each bearer token, or everyone when
    /// authentication is off), least recently used out first. Each blob counts
    /// its length plus 512 bytes (`blobs::ENTRY_OVERHEAD_BYTES`: what keeping
    /// it costs), and an archive a mount has read also its file tree, so the
    /// server holds at most (tokens + 1) x this however small the blobs. A blob
    /// that counts more than this is used by its execution and not kept; 0
    /// keeps nothing (every reference is then a `missing_blob`). 0..=64 GiB,
    /// default 536870912 (512 MiB).
    pub store_bytes: Bounded<0, { 64 << 30 }>,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        BlobsConfig {
            store_bytes: Bounded::constant::<{ 512 << 20 }>(),
        }
    }
}

/// Optional bearer-token authentication of `POST /sessions` and `POST /execute`,
/// and separately of `GET /metrics`. What `/metrics` shows depends on both keys:
///
/// | `tokens_sha256` | `metrics_tokens_sha256` | `GET /metrics` |
/// | --- | --- | --- |
/// | empty | empty | open; counts and gauges only, nothing measured per execution |
/// | any | set | a metrics token required; every series |
/// | set | empty | closed: 401 to everyone (the server says so at start) |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lowercase hex SHA-256 digests of the accepted bearer tokens (the tokens
    /// themselves are never stored). Empty (the default) disables authentication:
    /// anyone who can reach the port may run code, and the server says so at start
    /// when it listens on anything but loopback. Make a token and its digest with
    /// `wasm-hypervisor token`.
    pub tokens_sha256: Vec<TokenDigest>,
    /// Lowercase hex SHA-256 digests of the bearer tokens accepted by `GET
    /// /metrics` (a scraper's, not a client's); a scraper with one sees every
    /// series, including fuel, guest, compile and request times and module cache
    /// lookups. Empty (the default): with authentication off `/metrics` is open
    /// but shows only counts by status and the gauges, which say nothing about one
    /// execution's content; with authentication on it is closed (401).
    pub metrics_tokens_sha256: Vec<TokenDigest>,
}

/// Per-client limits. A client is its bearer token when authentication is on
/// (`POST /sessions`, `POST /execute`), otherwise its address: the socket peer, or
/// the address a trusted proxy forwarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientsConfig {
    /// Requests a second one client may make, sustained, to every endpoint but
    /// `/health` (which has `http.health_requests_per_second`), unknown routes and
    /// methods included; past it, 429 `rate_limited` with `Retry-After`. 0 turns
    /// the rate limit off. 0..=1000000, default 100.
    pub requests_per_second: Bounded<0, 1_000_000>,
    /// Requests one client may make at once above the sustained rate (the bucket's
    /// size). 1..=4294967295, default 200.
    pub burst: Bounded<1, { u32::MAX as u64 }>,
    /// `POST /execute` requests one client may have in flight (queued or running);
    /// past it, 429 `too_many_executions`. 0 turns the limit off. 0..=10000,
    /// default 16.
    pub max_concurrent_executions: Bounded<0, 10_000>,
    /// Most clients tracked at once. Idle clients are forgotten first; when every
    /// tracked client is busy, a new one gets 429 `rate_limited`. 16..=10000000,
    /// default 100000 (about 10 MB).
    pub max_tracked: Bounded<16, 10_000_000>,
    /// Seconds of compilation one client may use per hour (a token bucket that
    /// holds an hour's worth, charged with each compilation's duration). A client
    /// with nothing left gets `invalid_module` with a retryable error for modules
    /// that are not cached; cached modules still run. 0 turns the budget off.
    /// 0..=360000, default 600.
    pub compile_seconds_per_hour: Bounded<0, 360_000>,
    /// Reverse proxies (CIDRs such as `10.0.0.0/8`, or single addresses, which are
    /// networks of one) whose `X-Forwarded-For` or `Forwarded` header names the
    /// client. Requests from any other peer are keyed by the peer's address,
    /// whatever they claim. Default empty: headers are never trusted.
    #[serde(with = "value::networks")]
    pub trusted_proxies: Vec<IpNet>,
}

/// Each client's quotas of usage (protocol v1.2 §U), per UTC hour and per UTC
/// day; a client is as in `clients`. Usage counts logged executions, the sum of
/// their `fuel_consumed`, and the bytes of their sealed requests (in) and sealed
/// results (out); `GET /usage` shows a client its own. A request of a client
/// that has reached any quota is refused before its session is used, 429
/// `quota_exceeded` with `Retry-After` the seconds until the window ends. A
/// request is checked before it runs and counted once logged, so executions in
/// flight when a quota is crossed complete and may carry the client past it
/// (in cluster mode also by what the other replicas counted in their last
/// second). Default: no quota.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    /// Quotas of each UTC hour (from a whole hour).
    pub per_hour: QuotaLimits,
    /// Quotas of each UTC day (from midnight UTC).
    pub per_day: QuotaLimits,
}

/// The most one client may use in one window; 0 for no limit on that count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaLimits {
    /// Logged executions. Default 0 (none).
    pub executions: u64,
    /// Fuel: the sum of the results' `fuel_consumed`. Default 0 (none).
    pub fuel: u64,
    /// Bytes of sealed requests (`ciphertext`, tag included). Default 0 (none).
    pub bytes_in: u64,
    /// Bytes of sealed results (`ciphertext`, tag included). Default 0 (none).
    pub bytes_out: u64,
}

/// Protection of the HTTP layer against slow, oversized and idle clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Milliseconds a connection may take to send a request's headers, counted
    /// from when the server starts waiting for them (also on an idle keep-alive
    /// connection); then it is closed. 100..=600000, default 10000.
    pub header_read_timeout_ms: Millis<100, 600_000>,
    /// Milliseconds a client may take to send a whole request body; past it, 408
    /// `request_timeout`. 100..=3600000, default 60000.
    pub body_read_timeout_ms: Millis<100, 3_600_000>,
    /// Bytes of request line and headers accepted; past it, 431
    /// `headers_too_large`. 1024..=1048576, default 16384.
    pub max_header_bytes: Bounded<1024, { 1 << 20 }>,
    /// Connections open at once. When a new one arrives at this cap, the oldest
    /// idle connection (no request in flight, no response stalled) is closed to
    /// admit it; if none is idle, the new one waits in the kernel's backlog until a
    /// connection closes or goes idle. 1..=1000000, default 4096.
    pub max_connections: Bounded<1, 1_000_000>,
    /// Connections open at once from one address (an IPv6 address counts as its
    /// /64), counted by the TCP peer. A connection past it answers its request 429
    /// `too_many_connections` and is closed. Peers in `clients.trusted_proxies`
    /// carry many clients and are bounded only by `max_connections`. Above
    /// `max_connections` it has no effect. 1..=1000000, default 64.
    pub max_connections_per_address: Bounded<1, 1_000_000>,
    /// Milliseconds a response write may make no progress (the client does not
    /// read and the socket's buffers are full); then the connection is closed.
    /// 100..=600000, default 10000.
    pub response_write_timeout_ms: Millis<100, 600_000>,
    /// Seconds a connection may stay open: then it is closed at once if idle,
    /// else after the response in flight, which says `Connection: close`.
    /// 1..=86400, default 3600.
    pub max_connection_age_secs: Secs<1, 86_400>,
    /// Requests one connection may make; the last is answered with `Connection:
    /// close` and the connection is closed after it. Requests are answered one at a
    /// time; pipelined ones wait, unread, in a bounded buffer. 1..=1000000,
    /// default 1000.
    pub max_requests_per_connection: Bounded<1, 1_000_000>,
    /// Requests a second to `GET /health` from one address (the one the per-client
    /// rate would use), in bursts of twice that; past it, 429 `rate_limited`. A
    /// bucket of its own, apart from `clients.requests_per_second`, so that a load
    /// balancer's probes (a few a second) never see a 429 however busy the API is
    /// from the same address. 0 turns it off. 0..=1000000, default 10.
    pub health_requests_per_second: Bounded<0, 1_000_000>,
}

/// The implementation of the cryptography.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoConfig {
    /// The crypto provider behind HPKE, result sealing, the commitment and the
    /// signing key: `aws-lc` (AWS-LC's assembly P-256 and AES-GCM, the faster; see
    /// BENCHMARKS.md) or `rustcrypto` (pure Rust). Both put the same bytes on the
    /// wire and read the same key file, so it can change between restarts. A
    /// provider this binary was built without (cargo features `aws-lc`,
    /// `rustcrypto`) stops the server at start; a build without `aws-lc` must say
    /// `rustcrypto`. Default `aws-lc`.
    #[serde(with = "value::provider_name")]
    pub provider: Provider,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: NonEmptyPath(PathBuf::from("./data")),
            signing_key_file: PathBuf::new(),
            note_key_file: PathBuf::new(),
            data_dir_min_free_bytes: 64 << 20,
            origin: Origin("localhost/wasm-hypervisor".to_owned()),
            log_format: LogFormat::Text,
            shutdown_grace_secs: Secs::constant::<30>(),
            playground: false,
            sessions: SessionsConfig::default(),
            limits: LimitsConfig::default(),
            execution: ExecutionConfig::default(),
            blobs: BlobsConfig::default(),
            auth: AuthConfig::default(),
            clients: ClientsConfig::default(),
            quotas: QuotasConfig::default(),
            http: HttpConfig::default(),
            crypto: CryptoConfig::default(),
            cluster: ClusterConfig::default(),
            witnesses: WitnessesConfig::default(),
        }
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            ttl_secs: Secs::constant::<60>(),
            max_pending: Bounded::constant::<10_000>(),
            max_pending_per_client: Bounded::constant::<64>(),
            max_batch: Bounded::constant::<64>(),
        }
    }
}

impl Default for SessionsFields {
    fn default() -> Self {
        SessionsConfig::default().into()
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            fuel: Bounded::constant::<10_000_000_000>(),
            memory_bytes: Bounded::constant::<{ 64 << 20 }>(),
            timeout_ms: Millis::constant::<10_000>(),
            max_output_bytes: Bounded::constant::<{ 1 << 20 }>(),
            max_module_bytes: Bounded::constant::<{ 128 << 20 }>(),
            max_request_bytes: Bounded::constant::<{ 256 << 20 }>(),
            files_bytes: Bounded::constant::<{ 256 << 20 }>(),
            max_mount_entries: Bounded::constant::<100_000>(),
            max_args: Bounded::constant::<4096>(),
            max_env: Bounded::constant::<4096>(),
            max_args_env_bytes: Bounded::constant::<{ 1 << 20 }>(),
        }
    }
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            max_concurrent: Bounded::constant::<100>(),
            max_queued: Bounded::constant::<200>(),
            queue_timeout_ms: Millis::constant::<5_000>(),
            module_cache_bytes: Bounded::constant::<{ 1 << 30 }>(),
            max_concurrent_compilations: CompileSlots::auto(),
            max_queued_compilations: Bounded::constant::<100>(),
            compile_timeout_secs: Secs::constant::<300>(),
            compile_memory_bytes: Bounded::constant::<{ 4 << 30 }>(),
            async_retention_secs: Secs::constant::<900>(),
            max_async_pending: Bounded::constant::<1000>(),
            async_results_bytes: Bounded::constant::<{ 1 << 30 }>(),
            async_results_bytes_per_client: Bounded::constant::<{ 512 << 20 }>(),
            compile_worker: None,
        }
    }
}

impl Default for ClientsConfig {
    fn default() -> Self {
        ClientsConfig {
            requests_per_second: Bounded::constant::<100>(),
            burst: Bounded::constant::<200>(),
            max_concurrent_executions: Bounded::constant::<16>(),
            max_tracked: Bounded::constant::<100_000>(),
            compile_seconds_per_hour: Bounded::constant::<600>(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_ms: Millis::constant::<10_000>(),
            body_read_timeout_ms: Millis::constant::<60_000>(),
            max_header_bytes: Bounded::constant::<{ 16 << 10 }>(),
            max_connections: Bounded::constant::<4096>(),
            max_connections_per_address: Bounded::constant::<64>(),
            response_write_timeout_ms: Millis::constant::<10_000>(),
            max_connection_age_secs: Secs::constant::<3600>(),
            max_requests_per_connection: Bounded::constant::<1000>(),
            health_requests_per_second: Bounded::constant::<10>(),
        }
    }
}

/// The fastest provider this build has: `aws-lc`, the documented default, in the
/// full build. A build without `aws-lc` has no value for that name, so its
/// `Config::default()` holds `rustcrypto`; [`Config::load`] still defaults to the
/// name `aws-lc` and refuses it, as documented.
impl Default for CryptoConfig {
    fn default() -> Self {
        CryptoConfig {
            provider: Provider::default(),
        }
    }
}

/// Command-line overrides, applied last.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// The name of the flags as a figment source, by which an error knows it came
/// from one.
const FLAGS: &str = "command-line flags";

/// The flags are one more source, the last, so that their values are parsed like
/// any other's and refused naming the flag.
impl figment::Provider for Overrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(FLAGS)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(self).data()
    }
}

impl Config {
    /// The signing key's file: `signing_key_file`, or `signing_key.pem` in
    /// `data_dir`.
    pub fn signing_key_path(&self) -> PathBuf {
        if self.signing_key_file.as_os_str().is_empty() {
            self.data_dir.as_path().join(crate::keys::SIGNING_KEY_FILE)
        } else {
            self.signing_key_file.clone()
        }
    }

    /// The note key's file: `note_key_file`, or `note_key` in `data_dir`.
    pub fn note_key_path(&self) -> PathBuf {
        if self.note_key_file.as_os_str().is_empty() {
            self.data_dir.as_path().join(crate::keys::NOTE_KEY_FILE)
        } else {
            self.note_key_file.clone()
        }
    }

    /// Loads defaults, then `file` (if given), then the environment, then
    /// `overrides`, and parses the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        // `crypto.provider` defaults to the name `aws-lc` whatever the build, not to
        // the fastest provider compiled in: a build without `aws-lc` must be told
        // `rustcrypto` (README, "Building without a C compiler") rather than
        // quietly run on something else than the documentation says.
        let mut figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Serialized::default("crypto.provider", PROVIDER_NAMES[0]));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Yaml::file_exact(path));
        }
        // `run`'s client settings share the prefix; they are not server configuration.
        let environment = Env::prefixed(ENV_PREFIX)
            .split("__")
            .ignore(&["server", "token", "key_id"]);
        let environment_name = environment.metadata().name;
        let figment = figment.merge(environment).merge(overrides.clone());
        figment
            .extract()
            .map_err(|error| ConfigError::from_figment(error, &figment, &environment_name))
    }
}

impl ConfigError {
    /// figment's error, with its key and its source. (It can chain several, one per
    /// source that failed; serde stops at the first bad value, so there is one.)
    fn from_figment(
        first: figment::Error,
        figment: &Figment,
        environment_name: &str,
    ) -> ConfigError {
        // A list's entries are numbered in the path; the key is the list's.
        let path: Vec<&str> = first
            .path
            .iter()
            .map(String::as_str)
            .filter(|segment| segment.parse::<usize>().is_err())
            .collect();
        if path.is_empty() {
            return ConfigError::Unreadable(Box::new(first));
        }
        let key = path.join(".");
        let section = matches!(
            figment.find_value(&key),
            Ok(figment::value::Value::Dict(..))
        );
        let from = match first.metadata.as_ref() {
            _ if section => None,
            Some(metadata) if metadata.name == environment_name => Some(Source::Environment(
                format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase()),
            )),
            Some(metadata) if metadata.name == FLAGS => {
                Some(Source::Flag(format!("--{}", key.replace('_', "-"))))
            }
            Some(Metadata {
                source: Some(figment::Source::File(file)),
                ..
            }) => Some(Source::File(file.clone())),
            _ => Some(Source::Defaults),
        };
        ConfigError::Invalid {
            key,
            reason: Box::new(first.kind),
            from,
        }
    }
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
// figment's Jail closures return its large error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Empties the jail's environment but for `crypto.provider`, set to one this
    /// build has: a build without `aws-lc` refuses the documented default.
    fn clean_environment(jail: &mut figment::Jail) {
        jail.clear_env();
        jail.set_env(
            "WASM_HYPERVISOR_CRYPTO__PROVIDER",
            Provider::default().name(),
        );
    }

    /// Loads from the (jailed) environment alone.
    fn load() -> Result<Config, ConfigError> {
        Config::load(None, &Overrides::default())
    }

    /// The key, the source and the whole message of a refused value.
    fn refusal(loaded: Result<Config, ConfigError>) -> (String, Option<Source>, String) {
        let error = loaded.expect_err("the configuration is refused");
        let message = error.to_string();
        match error {
            ConfigError::Invalid { key, from, .. } => (key, from, message),
            other => panic!("refused without naming a key: {other}"),
        }
    }

    /// (A build without `aws-lc` must set `crypto.provider`: see below.)
    #[test]
    #[cfg(feature = "aws-lc")]
    fn the_defaults_parse_into_the_documented_values() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let config = load().unwrap();
            assert_eq!(config, Config::default());
            assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
            assert_eq!(config.data_dir.as_path(), Path::new("./data"));
            assert_eq!(config.shutdown_grace_secs.get(), Duration::from_secs(30));
            assert_eq!(config.sessions.ttl_secs.get(), Duration::from_secs(60));
            assert_eq!(config.sessions.max_pending(), 10_000);
            assert_eq!(config.sessions.max_pending_per_client(), 64);
            assert_eq!(config.limits.timeout_ms.get(), Duration::from_secs(10));
            assert_eq!(config.limits.timeout_ms.count(), 10_000);
            assert_eq!(
                config.execution.queue_timeout_ms.get(),
                Duration::from_secs(5)
            );
            assert_eq!(
                config.execution.max_concurrent_compilations.get().get(),
                cores().saturating_sub(1).max(1)
            );
            assert_eq!(
                config.http.max_connection_age_secs.get(),
                Duration::from_secs(3600)
            );
            assert_eq!(config.crypto.provider.name(), "aws-lc");
            assert!(config.auth.tokens_sha256.is_empty());
            assert!(config.clients.trusted_proxies.is_empty());
            Ok(())
        });
    }

    /// The documented defaults are the full build's (see `CryptoConfig::default`).
    #[test]
    #[cfg(feature = "aws-lc")]
    fn top_level_config_yaml_equals_the_embedded_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.yaml");
        let from_file: Config = Figment::new()
            .merge(Yaml::file_exact(&path))
            .extract()
            .unwrap();
        assert_eq!(from_file, Config::default());
    }

    /// The documented defaults are the full build's (see `CryptoConfig::default`).
    #[test]
    #[cfg(feature = "aws-lc")]
    fn env_example_lists_every_key_with_its_default() {
        fn leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, inner) in map {
                        let name = format!("{prefix}{}", key.to_uppercase());
                        leaves(&format!("{name}__"), inner, out);
                    }
                }
                serde_json::Value::String(text) => {
                    out.push((prefix.trim_end_matches('_').to_owned(), text.clone()))
                }
                other => out.push((prefix.trim_end_matches('_').to_owned(), other.to_string())),
            }
        }
        let example = include_str!("../../../.env.example");
        let mut keys = Vec::new();
        leaves(
            ENV_PREFIX,
            &serde_json::to_value(Config::default()).unwrap(),
            &mut keys,
        );
        assert_eq!(keys.len(), 68, "{keys:?}");
        for (name, default) in keys {
            let line = format!("{name}={default}");
            assert!(
                example.lines().any(|l| l == line),
                ".env.example lacks the line {line}"
            );
        }
    }

    #[test]
    fn environment_overrides_file_and_flags_override_both() {
        figment::Jail::expect_with(|jail| {
            clean_environment(jail);
            jail.create_file(
                "c.yaml",
                "limits:\n  timeout_ms: 1234\nlisten: 127.0.0.1:9\n",
            )?;
            let config = Config::load(Some(Path::new("c.yaml")), &Overrides::default()).unwrap();
            assert_eq!(config.limits.timeout_ms.get(), Duration::from_millis(1234));
            assert_eq!(config.listen.port(), 9);

            jail.set_env("WASM_HYPERVISOR_LIMITS__TIMEOUT_MS", "5000");
            jail.set_env("WASM_HYPERVISOR_SESSIONS__TTL_SECS", "2");
            jail.set_env("WASM_HYPERVISOR_LISTEN", "127.0.0.1:8");
            let config = Config::load(Some(Path::new("c.yaml")), &Overrides::default()).unwrap();
            assert_eq!(config.limits.timeout_ms.get(), Duration::from_secs(5));
            assert_eq!(config.sessions.ttl_secs.get(), Duration::from_secs(2));
            assert_eq!(config.listen.port(), 8);

            let flags = Overrides {
                listen: Some("127.0.0.1:7".parse().unwrap()),
                data_dir: Some(PathBuf::from("/var/lib/wasm-hypervisor")),
            };
            let config = Config::load(Some(Path::new("c.yaml")), &flags).unwrap();
            assert_eq!(config.listen.port(), 7);
            assert_eq!(
                config.data_dir.as_path(),
                Path::new("/var/lib/wasm-hypervisor")
            );
            Ok(())
        });
    }

    /// One bad value of each kind of type, from the environment: each is refused
    /// with its key, what is wrong, and the variable that said it.
    #[test]
    fn a_bad_value_of_every_kind_names_its_key_and_its_variable() {
        let too_many_cores = (cores() + 1).to_string();
        let cases: &[(&str, &str, &str, &str)] = &[
            // A duration in milliseconds, then one in seconds.
            (
                "LIMITS__TIMEOUT_MS",
                "0",
                "limits.timeout_ms",
                "must be between 1 and 600000, not 0",
            ),
            (
                "SHUTDOWN_GRACE_SECS",
                "3601",
                "shutdown_grace_secs",
                "must be at most 3600, not 3601",
            ),
            // Integers bounded on both sides, below only, above only.
            (
                "HTTP__MAX_HEADER_BYTES",
                "1023",
                "http.max_header_bytes",
                "must be between 1024 and 1048576",
            ),
            (
                "LIMITS__MAX_MODULE_BYTES",
                "7",
                "limits.max_module_bytes",
                "must be at least 8",
            ),
            (
                "LIMITS__MAX_ARGS",
                "65537",
                "limits.max_args",
                "must be at most 65536",
            ),
            // Not a number at all.
            (
                "LIMITS__TIMEOUT_MS",
                "soon",
                "limits.timeout_ms",
                "invalid type",
            ),
            (
                "EXECUTION__MAX_CONCURRENT_COMPILATIONS",
                &too_many_cores,
                "execution.max_concurrent_compilations",
                "must be at most the number of cores",
            ),
            // Protocol v1.1 §A: the maximum batch is at least 64.
            (
                "SESSIONS__MAX_BATCH",
                "63",
                "sessions.max_batch",
                "must be between 64 and 1024, not 63",
            ),
            (
                "SESSIONS__MAX_PENDING_PER_CLIENT",
                "10001",
                "sessions",
                "`max_pending_per_client` (10001) must be at most `max_pending` (10000)",
            ),
            (
                "ORIGIN",
                "log with spaces",
                "origin",
                "printable characters without spaces",
            ),
            (
                "ORIGIN",
                "log.example/a+b",
                "origin",
                "without spaces or `+`",
            ),
            (
                "AUTH__TOKENS_SHA256",
                "[\"not-a-digest\"]",
                "auth.tokens_sha256",
                "64 lowercase hex characters",
            ),
            (
                "CLIENTS__TRUSTED_PROXIES",
                "[10.0.0.0/8, proxy.example]",
                "clients.trusted_proxies",
                "has `proxy.example`, which is neither a CIDR nor an address",
            ),
            (
                "CRYPTO__PROVIDER",
                "openssl",
                "crypto.provider",
                "is `openssl`; it must be `aws-lc` or `rustcrypto`",
            ),
            (
                "LOG_FORMAT",
                "xml",
                "log_format",
                "is `xml`; it must be `text` or `json`",
            ),
            ("LISTEN", "port 80", "listen", "socket address"),
        ];
        for (variable, value, key, problem) in cases {
            figment::Jail::expect_with(|jail| {
                clean_environment(jail);
                let variable = format!("{ENV_PREFIX}{variable}");
                jail.set_env(&variable, value);
                let (named, from, message) = refusal(load());
                assert_eq!(named, *key, "{message}");
                assert!(message.contains(problem), "{message}");
                // A bound between two keys is reported at their section, whose
                // keys may come from several sources; every other key comes from
                // its variable.
                let expected = (*key != "sessions").then_some(Source::Environment(variable));
                assert_eq!(from, expected, "{message}");
                Ok(())
            });
        }
    }

    #[test]
    fn a_bad_value_in_the_file_names_the_file_and_a_bad_flag_the_flag() {
        figment::Jail::expect_with(|jail| {
            clean_environment(jail);
            jail.create_file("c.yaml", "http:\n  max_connections: 0\n")?;
            let (key, from, message) = refusal(Config::load(
                Some(Path::new("c.yaml")),
                &Overrides::default(),
            ));
            assert_eq!(key, "http.max_connections");
            assert!(
                matches!(&from, Some(Source::File(path)) if path.ends_with("c.yaml")),
                "{message}"
            );
            assert!(message.contains("c.yaml"), "{message}");

            let flags = Overrides {
                listen: None,
                data_dir: Some(PathBuf::new()),
            };
            let (key, from, message) = refusal(Config::load(None, &flags));
            assert_eq!(key, "data_dir");
            assert_eq!(from, Some(Source::Flag("--data-dir".to_owned())));
            assert!(message.contains("must not be empty"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn cluster_keys_load_from_the_environment_and_the_url_never_shows_in_debug() {
        figment::Jail::expect_with(|jail| {
            clean_environment(jail);
            let url = "postgresql://hypervisor:s3cret-pass@db:5432/hv";
            jail.set_env("WASM_HYPERVISOR_CLUSTER__DATABASE_URL", url);
            jail.set_env("WASM_HYPERVISOR_CLUSTER__POOL_SIZE", "4");
            jail.set_env("WASM_HYPERVISOR_SIGNING_KEY_FILE", "/run/secrets/key.pem");
            let config = load().unwrap();
            assert!(config.cluster.database_url.is_set());
            assert_eq!(config.cluster.database_url.expose(), url);
            assert_eq!(config.cluster.pool_size.get(), 4);
            assert_eq!(
                config.signing_key_path(),
                PathBuf::from("/run/secrets/key.pem")
            );
            let debug = format!("{config:?}");
            assert!(!debug.contains("s3cret"), "{debug}");
            assert!(debug.contains("DatabaseUrl(<redacted>)"), "{debug}");
            Ok(())
        });
    }

    #[test]
    fn the_signing_key_defaults_to_the_data_directory_and_cluster_mode_to_off() {
        let config = Config::default();
        assert!(!config.cluster.database_url.is_set());
        assert_eq!(
            config.signing_key_path(),
            PathBuf::from("./data/signing_key.pem")
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        figment::Jail::expect_with(|jail| {
            clean_environment(jail);
            jail.create_file("c.yaml", "limits:\n  timeout: 5\n")?;
            let (key, _, message) = refusal(Config::load(
                Some(Path::new("c.yaml")),
                &Overrides::default(),
            ));
            assert_eq!(key, "limits.timeout");
            assert!(message.contains("is not a key"), "{message}");
            assert!(message.contains("`timeout_ms`"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_refused() {
        let error = Config::load(
            Some(Path::new("/nonexistent/c.yaml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(error, ConfigError::MissingFile(_)), "{error}");
        assert!(error.to_string().contains("/nonexistent/c.yaml"), "{error}");
    }

    #[test]
    fn log_format_is_text_or_json() {
        figment::Jail::expect_with(|jail| {
            clean_environment(jail);
            assert_eq!(load().unwrap().log_format, LogFormat::Text);
            jail.set_env("WASM_HYPERVISOR_LOG_FORMAT", "json");
            assert_eq!(load().unwrap().log_format, LogFormat::Json);
            Ok(())
        });
    }

    #[test]
    fn a_client_share_of_sessions_is_at_most_the_pool() {
        figment::Jail::expect_with(|jail| {
            clean_environment(jail);
            jail.set_env("WASM_HYPERVISOR_SESSIONS__MAX_PENDING", "64");
            jail.set_env("WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT", "64");
            let sessions = load().unwrap().sessions;
            assert_eq!(sessions.max_pending_per_client(), 64);
            jail.set_env("WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT", "0");
            assert_eq!(load().unwrap().sessions.max_pending_per_client(), 0);
            jail.set_env("WASM_HYPERVISOR_SESSIONS__MAX_PENDING", "63");
            jail.set_env("WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT", "64");
            let (key, _, message) = refusal(load());
            assert_eq!(key, "sessions");
            assert!(
                message.contains("`max_pending_per_client` (64)"),
                "{message}"
            );
            Ok(())
        });

        // Code that sets them is held to the same bound.
        let mut sessions = SessionsConfig::default();
        assert_eq!(
            sessions.set_max_pending(Bounded::constant::<63>()),
            Err(Problem::ShareAbovePool {
                share: 64,
                pool: 63
            })
        );
        assert_eq!(
            sessions.set_max_pending_per_client(Bounded::constant::<10_001>()),
            Err(Problem::ShareAbovePool {
                share: 10_001,
                pool: 10_000
            })
        );
        assert_eq!(
            sessions,
            SessionsConfig::default(),
            "a refused change changes nothing"
        );
        sessions
            .set_max_pending_per_client(Bounded::constant::<0>())
            .unwrap();
        sessions.set_max_pending(Bounded::constant::<1>()).unwrap();
        assert_eq!(
            (sessions.max_pending(), sessions.max_pending_per_client()),
            (1, 0)
        );
    }

    #[test]
    fn token_digests_are_32_bytes_from_lowercase_hex() {
        let digest = hex::encode(crate::envelope::sha256(b"token"));
        let parsed: TokenDigest = digest.parse().unwrap();
        assert_eq!(parsed.bytes(), crate::envelope::sha256(b"token"));
        assert_eq!(String::from(parsed), digest);
        for bad in [
            "not-a-digest".to_owned(),
            digest.to_uppercase(),
            digest[..62].to_owned(),
            format!("{digest}00"),
        ] {
            assert_eq!(bad.parse::<TokenDigest>(), Err(Problem::Digest), "{bad}");
        }
        figment::Jail::expect_with(|jail| {
            clean_environment(jail);
            jail.set_env(
                "WASM_HYPERVISOR_AUTH__METRICS_TOKENS_SHA256",
                format!("[\"{digest}\"]"),
            );
            let config = load().unwrap();
            assert_eq!(config.auth.metrics_tokens_sha256, vec![parsed]);
            jail.set_env(
                "WASM_HYPERVISOR_AUTH__METRICS_TOKENS_SHA256",
                format!("[\"{}\"]", "A".repeat(64)),
            );
            let (key, _, _) = refusal(load());
            assert_eq!(key, "auth.metrics_tokens_sha256");
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_are_networks_and_an_address_is_a_network_of_one() {
        figment::Jail::expect_with(|jail| {
            clean_environment(jail);
            jail.set_env(
                "WASM_HYPERVISOR_CLIENTS__TRUSTED_PROXIES",
                "[10.1.2.3, 192.168.0.0/16, fd00::/8]",
            );
            let networks = load().unwrap().clients.trusted_proxies;
            let expected: Vec<IpNet> = ["10.1.2.3/32", "192.168.0.0/16", "fd00::/8"]
                .iter()
                .map(|text| text.parse().unwrap())
                .collect();
            assert_eq!(networks, expected);
            Ok(())
        });
    }

    #[test]
    fn crypto_provider_is_a_compiled_in_provider() {
        figment::Jail::expect_with(|jail| {
            clean_environment(jail);
            for provider in Provider::compiled_in() {
                jail.set_env("WASM_HYPERVISOR_CRYPTO__PROVIDER", provider.name());
                assert_eq!(load().unwrap().crypto.provider, *provider);
            }
            Ok(())
        });
    }

    /// A build without a provider's feature refuses to start with it, saying why;
    /// without `aws-lc`, that includes the default.
    #[test]
    #[cfg(not(all(feature = "aws-lc", feature = "rustcrypto")))]
    fn crypto_provider_left_out_of_the_build_is_refused_naming_the_key() {
        let missing = if cfg!(feature = "aws-lc") {
            "rustcrypto"
        } else {
            "aws-lc"
        };
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("WASM_HYPERVISOR_CRYPTO__PROVIDER", missing);
            let (key, _, message) = refusal(load());
            assert_eq!(key, "crypto.provider");
            assert!(message.contains("does not include"), "{message}");
            if missing == "aws-lc" {
                jail.clear_env();
                let (key, from, message) = refusal(load());
                assert_eq!(
                    (key.as_str(), from),
                    ("crypto.provider", Some(Source::Defaults))
                );
                assert!(message.contains("does not include"), "{message}");
            }
            Ok(())
        });
    }
}
