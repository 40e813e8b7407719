//! The service configuration: one struct whose doc comments are the documentation.
//!
//! Sources, later ones overriding earlier ones: the embedded defaults, an optional
//! YAML file (`--config`), environment variables `WASM_HYPERVISOR_<KEY>` with `__`
//! between nesting levels (`WASM_HYPERVISOR_LIMITS__TIMEOUT_MS=5000`), and the
//! command-line flags. The result is validated once, at start-up: a value that makes
//! no sense stops the server with a message naming the key.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::envelope::{PROVIDER_NAMES, Provider, ProviderNameError};

/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "WASM_HYPERVISOR_";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type or an unknown key.
    #[error("invalid configuration: {0}")]
    Source(String),
    /// A value parsed but is out of its allowed range.
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// Everything the server can be told. Every key is optional; `config.yaml` at the
/// top of the repository lists them all with their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Directory for the signing key and the audit log; created (mode 0700) if
    /// missing. Default `./data`.
    pub data_dir: PathBuf,
    /// Free space, in bytes, that the data directory's file system must keep for
    /// `GET /health` to answer 200; below it, health answers 503 with
    /// `data_dir_low_space` so that a load balancer drains this instance before
    /// appends start failing. An audit record is about 137 bytes, so the default
    /// 67108864 (64 MiB) is room for some 490,000 more executions. 0 turns the
    /// check off. Default 67108864.
    pub data_dir_min_free_bytes: u64,
    /// Name of this log in signed checkpoints (C2SP tlog-checkpoint "origin"): a
    /// schema-less URL that identifies this log instance. Default
    /// `localhost/wasm-hypervisor`.
    pub origin: String,
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
    pub shutdown_grace_secs: u64,
    pub sessions: SessionsConfig,
    pub limits: LimitsConfig,
    pub execution: ExecutionConfig,
    pub auth: AuthConfig,
    pub clients: ClientsConfig,
    pub http: HttpConfig,
    pub crypto: CryptoConfig,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Seconds a session key lives before it is destroyed unused. 1..=3600, default 60.
    pub ttl_secs: u64,
    /// Most sessions pending at once. When the pool is full, a client that holds
    /// fewer pending sessions than the client holding the most takes the place of
    /// that client's oldest one (which then answers `session_not_found`, like an
    /// expired session); any other client gets 503 `too_many_sessions` with
    /// `Retry-After`. 1..=1000000, default 10000.
    pub max_pending: usize,
    /// Most sessions one client (its token when authentication is on, else its
    /// address) may have pending, counting those being created; past it `POST
    /// /sessions` answers 429 `too_many_client_sessions` with `Retry-After`, before
    /// any key is generated. 0 turns the share off (a client may then hold the
    /// whole pool, still subject to eviction by the others). 0..=`max_pending`,
    /// default 64 (four times `clients.max_concurrent_executions`' default).
    pub max_pending_per_client: usize,
}

/// The server's maxima for one execution. A request may lower each, never raise it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wasmtime fuel units (about one per executed instruction). >= 1, default 10000000000.
    pub fuel: u64,
    /// Largest linear memory, in bytes, for each memory of the guest. 64 KiB..=4 GiB,
    /// default 67108864 (64 MiB).
    pub memory_bytes: u64,
    /// Wall-clock milliseconds from the moment the guest starts (queueing and
    /// compilation excluded); also ends a guest blocked in a host call.
    /// 1..=600000, default 10000.
    pub timeout_ms: u64,
    /// Bytes of stdout, and separately of stderr, returned; more is dropped and
    /// flagged as truncated. 0..=64 MiB, default 1048576 (1 MiB).
    pub max_output_bytes: u64,
    /// Largest module, in bytes, accepted for compilation. >= 8, default 8388608 (8 MiB).
    pub max_module_bytes: u64,
    /// Largest HTTP request body, in bytes, read before anything is decoded; larger
    /// bodies get 413. The module travels base64-encoded inside base64-encoded
    /// ciphertext, so this should be at least about 1.8 x `max_module_bytes`.
    /// >= 1024, default 16777216 (16 MiB).
    pub max_request_bytes: u64,
    /// Most `args` entries a request may give the guest; more is an
    /// `invalid_request`. Parsing stops at 65536 whatever this says.
    /// 0..=65536, default 4096.
    pub max_args: u64,
    /// Most `env` entries a request may give the guest; more is an
    /// `invalid_request`. Parsing stops at 65536 whatever this says.
    /// 0..=65536, default 4096.
    pub max_env: u64,
    /// Most bytes of `args` and `env` together (each string's UTF-8 bytes plus one
    /// for its terminating NUL, and one for each `=`, as the guest sees them);
    /// more is an `invalid_request`. 0..=16 MiB, default 1048576 (1 MiB).
    pub max_args_env_bytes: u64,
}

/// Admission control for executions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Guests running at once. 1..=10000, default 100.
    pub max_concurrent: usize,
    /// Requests waiting for a slot; past it `/execute` answers 503 at once.
    /// 0..=100000, default 200.
    pub max_queued: usize,
    /// Milliseconds a request may wait for a slot before it gets 503. 1..=600000,
    /// default 5000.
    pub queue_timeout_ms: u64,
    /// Bytes of compiled modules kept in memory, least recently used out first.
    /// 0 disables caching. At most 64 GiB, default 268435456 (256 MiB).
    pub module_cache_bytes: u64,
    /// Modules compiled at once, each in its own worker process on one core.
    /// Executions of cached modules never wait for a compilation, and at most this
    /// many cores compile, so the rest keep running guests. 0 means the number of
    /// cores minus one (at least 1). 0..=the number of cores, default 0.
    pub max_concurrent_compilations: usize,
    /// Executions that may be in the compile stage at once without holding a
    /// guest slot (waiting for or going through a compilation, then for a slot to
    /// run in). Past it, an execution compiles in its guest slot, as if compiling
    /// were part of running. 0..=100000, default 100.
    pub max_queued_compilations: usize,
    /// CPU seconds one compilation may take; past it the worker is killed and
    /// the module is refused (`invalid_module`, cached by hash). The wall-clock
    /// bound is three times this plus 5 s. 1..=3600, default 300.
    pub compile_timeout_secs: u64,
    /// Address space, in bytes, one compilation may take in its worker process
    /// (on top of what the worker maps at start: its binary and the allocator's
    /// reservation); a module whose compilation needs more is refused
    /// (`invalid_module`, cached by hash).
    /// 16 MiB..=64 GiB, default 4294967296 (4 GiB).
    pub compile_memory_bytes: u64,
    /// Not a configuration key: the program run as `PROGRAM compile-worker`.
    /// `None`, always in the server, means this executable; tests that serve from
    /// their own binary point it at the built `wasm-hypervisor`.
    #[serde(skip)]
    pub compile_worker: Option<PathBuf>,
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
    pub tokens_sha256: Vec<String>,
    /// Lowercase hex SHA-256 digests of the bearer tokens accepted by `GET
    /// /metrics` (a scraper's, not a client's); a scraper with one sees every
    /// series, including fuel, guest, compile and request times and module cache
    /// lookups. Empty (the default): with authentication off `/metrics` is open
    /// but shows only counts by status and the gauges, which say nothing about one
    /// execution's content; with authentication on it is closed (401).
    pub metrics_tokens_sha256: Vec<String>,
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
    pub requests_per_second: u32,
    /// Requests one client may make at once above the sustained rate (the bucket's
    /// size). >= 1, default 200.
    pub burst: u32,
    /// `POST /execute` requests one client may have in flight (queued or running);
    /// past it, 429 `too_many_executions`. 0 turns the limit off. 0..=10000,
    /// default 16.
    pub max_concurrent_executions: u32,
    /// Most clients tracked at once. Idle clients are forgotten first; when every
    /// tracked client is busy, a new one gets 429 `rate_limited`. 16..=10000000,
    /// default 100000 (about 10 MB).
    pub max_tracked: usize,
    /// Seconds of compilation one client may use per hour (a token bucket that
    /// holds an hour's worth, charged with each compilation's duration). A client
    /// with nothing left gets `invalid_module` with a retryable error for modules
    /// that are not cached; cached modules still run. 0 turns the budget off.
    /// 0..=360000, default 600.
    pub compile_seconds_per_hour: u64,
    /// Reverse proxies (CIDRs such as `10.0.0.0/8`, or single addresses) whose
    /// `X-Forwarded-For` or `Forwarded` header names the client. Requests from any
    /// other peer are keyed by the peer's address, whatever they claim. Default
    /// empty: headers are never trusted.
    pub trusted_proxies: Vec<String>,
}

/// Protection of the HTTP layer against slow, oversized and idle clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Milliseconds a connection may take to send a request's headers, counted
    /// from when the server starts waiting for them (also on an idle keep-alive
    /// connection); then it is closed. 100..=600000, default 10000.
    pub header_read_timeout_ms: u64,
    /// Milliseconds a client may take to send a whole request body; past it, 408
    /// `request_timeout`. 100..=3600000, default 60000.
    pub body_read_timeout_ms: u64,
    /// Bytes of request line and headers accepted; past it, 431
    /// `headers_too_large`. 1024..=1048576, default 16384.
    pub max_header_bytes: usize,
    /// Connections open at once. When a new one arrives at this cap, the oldest
    /// idle connection (no request in flight, no response stalled) is closed to
    /// admit it; if none is idle, the new one waits in the kernel's backlog until a
    /// connection closes or goes idle. 1..=1000000, default 4096.
    pub max_connections: usize,
    /// Connections open at once from one address (an IPv6 address counts as its
    /// /64), counted by the TCP peer. A connection past it answers its request 429
    /// `too_many_connections` and is closed. Peers in `clients.trusted_proxies`
    /// carry many clients and are bounded only by `max_connections`. Above
    /// `max_connections` it has no effect. 1..=1000000, default 64.
    pub max_connections_per_address: usize,
    /// Milliseconds a response write may make no progress (the client does not
    /// read and the socket's buffers are full); then the connection is closed.
    /// 100..=600000, default 10000.
    pub response_write_timeout_ms: u64,
    /// Seconds a connection may stay open: then it is closed at once if idle,
    /// else after the response in flight, which says `Connection: close`.
    /// 1..=86400, default 3600.
    pub max_connection_age_secs: u64,
    /// Requests one connection may make; the last is answered with `Connection:
    /// close` and the connection is closed after it. Requests are answered one at a
    /// time; pipelined ones wait, unread, in a bounded buffer. 1..=1000000,
    /// default 1000.
    pub max_requests_per_connection: u64,
    /// Requests a second to `GET /health` from one address (the one the per-client
    /// rate would use), in bursts of twice that; past it, 429 `rate_limited`. A
    /// bucket of its own, apart from `clients.requests_per_second`, so that a load
    /// balancer's probes (a few a second) never see a 429 however busy the API is
    /// from the same address. 0 turns it off. 0..=1000000, default 10.
    pub health_requests_per_second: u32,
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
    pub provider: String,
}

impl Default for CryptoConfig {
    fn default() -> Self {
        CryptoConfig {
            provider: PROVIDER_NAMES[0].to_owned(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            data_dir_min_free_bytes: 64 << 20,
            origin: "localhost/wasm-hypervisor".to_owned(),
            log_format: LogFormat::Text,
            shutdown_grace_secs: 30,
            sessions: SessionsConfig::default(),
            limits: LimitsConfig::default(),
            execution: ExecutionConfig::default(),
            auth: AuthConfig::default(),
            clients: ClientsConfig::default(),
            http: HttpConfig::default(),
            crypto: CryptoConfig::default(),
        }
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            ttl_secs: 60,
            max_pending: 10_000,
            max_pending_per_client: 64,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            fuel: 10_000_000_000,
            memory_bytes: 64 << 20,
            timeout_ms: 10_000,
            max_output_bytes: 1 << 20,
            max_module_bytes: 8 << 20,
            max_request_bytes: 16 << 20,
            max_args: 4096,
            max_env: 4096,
            max_args_env_bytes: 1 << 20,
        }
    }
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            max_concurrent: 100,
            max_queued: 200,
            queue_timeout_ms: 5_000,
            module_cache_bytes: 256 << 20,
            max_concurrent_compilations: 0,
            max_queued_compilations: 100,
            compile_timeout_secs: 300,
            compile_memory_bytes: 4 << 30,
            compile_worker: None,
        }
    }
}

impl Default for ClientsConfig {
    fn default() -> Self {
        ClientsConfig {
            requests_per_second: 100,
            burst: 200,
            max_concurrent_executions: 16,
            max_tracked: 100_000,
            compile_seconds_per_hour: 600,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            max_header_bytes: 16 << 10,
            max_connections: 4096,
            max_connections_per_address: 64,
            response_write_timeout_ms: 10_000,
            max_connection_age_secs: 3600,
            max_requests_per_connection: 1000,
            health_requests_per_second: 10,
        }
    }
}

/// Command-line overrides, applied last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads defaults, then `file` (if given), then the environment, then `overrides`,
    /// and validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Source(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Yaml::file_exact(path));
        }
        // `run`'s client settings share the prefix; they are not server configuration.
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .split("__")
                .ignore(&["server", "token", "key_id"]),
        );
        let mut config: Config = figment
            .extract()
            .map_err(|error| ConfigError::Source(error.to_string()))?;
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every value against its documented bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, key: &'static str, problem: &str) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    problem: problem.to_owned(),
                })
            }
        }
        let origin_ok = !self.origin.is_empty()
            && self.origin.len() <= 256
            && !self.origin.chars().any(|c| c.is_control() || c == ' ');
        check(
            origin_ok,
            "origin",
            "must be 1..=256 printable characters without spaces",
        )?;
        check(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir",
            "must not be empty",
        )?;
        check(
            self.shutdown_grace_secs <= 3600,
            "shutdown_grace_secs",
            "must be at most 3600",
        )?;
        let s = &self.sessions;
        check(
            (1..=3600).contains(&s.ttl_secs),
            "sessions.ttl_secs",
            "must be between 1 and 3600",
        )?;
        check(
            (1..=1_000_000).contains(&s.max_pending),
            "sessions.max_pending",
            "must be between 1 and 1000000",
        )?;
        check(
            s.max_pending_per_client <= s.max_pending,
            "sessions.max_pending_per_client",
            "must be at most sessions.max_pending (0 turns the share off)",
        )?;
        let l = &self.limits;
        check(l.fuel >= 1, "limits.fuel", "must be at least 1")?;
        check(
            (65_536..=4 << 30).contains(&l.memory_bytes),
            "limits.memory_bytes",
            "must be between 65536 (one wasm page) and 4294967296",
        )?;
        check(
            (1..=600_000).contains(&l.timeout_ms),
            "limits.timeout_ms",
            "must be between 1 and 600000",
        )?;
        check(
            l.max_output_bytes <= 64 << 20,
            "limits.max_output_bytes",
            "must be at most 67108864",
        )?;
        check(
            l.max_module_bytes >= 8,
            "limits.max_module_bytes",
            "must be at least 8",
        )?;
        check(
            l.max_request_bytes >= 1024,
            "limits.max_request_bytes",
            "must be at least 1024",
        )?;
        check(
            l.max_args <= wasm_hypervisor_protocol::payload::MAX_ARGS_CEILING as u64,
            "limits.max_args",
            "must be at most 65536",
        )?;
        check(
            l.max_env <= wasm_hypervisor_protocol::payload::MAX_ENV_CEILING as u64,
            "limits.max_env",
            "must be at most 65536",
        )?;
        check(
            l.max_args_env_bytes <= 16 << 20,
            "limits.max_args_env_bytes",
            "must be at most 16777216",
        )?;
        let e = &self.execution;
        check(
            (1..=10_000).contains(&e.max_concurrent),
            "execution.max_concurrent",
            "must be between 1 and 10000",
        )?;
        check(
            e.max_queued <= 100_000,
            "execution.max_queued",
            "must be at most 100000",
        )?;
        check(
            (1..=600_000).contains(&e.queue_timeout_ms),
            "execution.queue_timeout_ms",
            "must be between 1 and 600000",
        )?;
        check(
            e.module_cache_bytes <= 64 << 30,
            "execution.module_cache_bytes",
            "must be at most 68719476736",
        )?;
        check(
            e.max_concurrent_compilations <= cores(),
            "execution.max_concurrent_compilations",
            &format!("must be at most the number of cores ({})", cores()),
        )?;
        check(
            e.max_queued_compilations <= 100_000,
            "execution.max_queued_compilations",
            "must be at most 100000",
        )?;
        check(
            (1..=3600).contains(&e.compile_timeout_secs),
            "execution.compile_timeout_secs",
            "must be between 1 and 3600",
        )?;
        check(
            (16 << 20..=64 << 30).contains(&e.compile_memory_bytes),
            "execution.compile_memory_bytes",
            "must be between 16777216 and 68719476736",
        )?;
        let is_digest = |digest: &String| {
            digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        check(
            self.auth.tokens_sha256.iter().all(is_digest),
            "auth.tokens_sha256",
            "entries must be 64 lowercase hex characters (a SHA-256 digest)",
        )?;
        check(
            self.auth.metrics_tokens_sha256.iter().all(is_digest),
            "auth.metrics_tokens_sha256",
            "entries must be 64 lowercase hex characters (a SHA-256 digest)",
        )?;
        let c = &self.clients;
        check(
            c.requests_per_second <= 1_000_000,
            "clients.requests_per_second",
            "must be at most 1000000",
        )?;
        check(c.burst >= 1, "clients.burst", "must be at least 1")?;
        check(
            c.max_concurrent_executions <= 10_000,
            "clients.max_concurrent_executions",
            "must be at most 10000",
        )?;
        check(
            (16..=10_000_000).contains(&c.max_tracked),
            "clients.max_tracked",
            "must be between 16 and 10000000",
        )?;
        check(
            c.compile_seconds_per_hour <= 360_000,
            "clients.compile_seconds_per_hour",
            "must be at most 360000",
        )?;
        self.trusted_proxies()?;
        let h = &self.http;
        check(
            (100..=600_000).contains(&h.header_read_timeout_ms),
            "http.header_read_timeout_ms",
            "must be between 100 and 600000",
        )?;
        check(
            (100..=3_600_000).contains(&h.body_read_timeout_ms),
            "http.body_read_timeout_ms",
            "must be between 100 and 3600000",
        )?;
        check(
            (1024..=1 << 20).contains(&h.max_header_bytes),
            "http.max_header_bytes",
            "must be between 1024 and 1048576",
        )?;
        check(
            (1..=1_000_000).contains(&h.max_connections),
            "http.max_connections",
            "must be between 1 and 1000000",
        )?;
        check(
            (1..=1_000_000).contains(&h.max_connections_per_address),
            "http.max_connections_per_address",
            "must be between 1 and 1000000",
        )?;
        check(
            (100..=600_000).contains(&h.response_write_timeout_ms),
            "http.response_write_timeout_ms",
            "must be between 100 and 600000",
        )?;
        check(
            (1..=86_400).contains(&h.max_connection_age_secs),
            "http.max_connection_age_secs",
            "must be between 1 and 86400",
        )?;
        check(
            (1..=1_000_000).contains(&h.max_requests_per_connection),
            "http.max_requests_per_connection",
            "must be between 1 and 1000000",
        )?;
        check(
            h.health_requests_per_second <= 1_000_000,
            "http.health_requests_per_second",
            "must be at most 1000000",
        )?;
        self.crypto_provider()?;
        Ok(())
    }

    /// `crypto.provider`, if this build has it.
    pub fn crypto_provider(&self) -> Result<Provider, ConfigError> {
        Provider::by_name(&self.crypto.provider).map_err(|error| ConfigError::Invalid {
            key: "crypto.provider",
            problem: match error {
                ProviderNameError::Unknown(name) => {
                    format!("is `{name}`; it must be `aws-lc` or `rustcrypto`")
                }
                ProviderNameError::NotCompiledIn(name) => format!(
                    "is `{name}`, which this build does not include (it was built without \
                     the `{name}` cargo feature); this build has {}",
                    Provider::compiled_in()
                        .iter()
                        .map(|provider| format!("`{provider}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        })
    }

    /// `clients.trusted_proxies` as networks; a bare address is a network of one.
    pub fn trusted_proxies(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.clients
            .trusted_proxies
            .iter()
            .map(|text| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        key: "clients.trusted_proxies",
                        problem: format!("has `{text}`, which is neither a CIDR nor an address"),
                    })
            })
            .collect()
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.sessions.ttl_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.execution.queue_timeout_ms)
    }

    /// `execution.max_concurrent_compilations` with 0 resolved: the cores but one,
    /// at least one.
    pub fn compilations(&self) -> usize {
        match self.execution.max_concurrent_compilations {
            0 => cores().saturating_sub(1).max(1),
            n => n,
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
    use super::*;

    /// (A build without `aws-lc` must set `crypto.provider`: see the test below.)
    #[test]
    #[cfg(feature = "aws-lc")]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn top_level_config_yaml_equals_the_embedded_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.yaml");
        let from_file: Config = Figment::new()
            .merge(Yaml::file_exact(&path))
            .extract()
            .unwrap();
        assert_eq!(from_file, Config::default());
    }

    #[test]
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
        for (name, default) in keys {
            let line = format!("{name}={default}");
            assert!(
                example.lines().any(|l| l == line),
                ".env.example lacks the line {line}"
            );
        }
    }

    #[test]
    fn environment_overrides_file_and_names_bad_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "limits:\n  timeout_ms: 1234\nlisten: 127.0.0.1:9\n",
            )?;
            let config = Config::load(Some(Path::new("c.yaml")), &Overrides::default()).unwrap();
            assert_eq!(config.limits.timeout_ms, 1234);

            jail.set_env("WASM_HYPERVISOR_LIMITS__TIMEOUT_MS", "5000");
            let config = Config::load(Some(Path::new("c.yaml")), &Overrides::default()).unwrap();
            assert_eq!(config.limits.timeout_ms, 5000);

            let flags = Overrides {
                listen: Some("127.0.0.1:7".parse().unwrap()),
                data_dir: None,
            };
            let config = Config::load(Some(Path::new("c.yaml")), &flags).unwrap();
            assert_eq!(config.listen.port(), 7);

            jail.set_env("WASM_HYPERVISOR_LIMITS__TIMEOUT_MS", "0");
            let error = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(error.to_string().contains("limits.timeout_ms"), "{error}");

            jail.set_env("WASM_HYPERVISOR_LIMITS__TIMEOUT_MS", "soon");
            let error = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(
                error
                    .to_string()
                    .to_lowercase()
                    .contains("limits.timeout_ms"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "limits:\n  timeout: 5\n")?;
            let error = Config::load(Some(Path::new("c.yaml")), &Overrides::default()).unwrap_err();
            assert!(error.to_string().contains("timeout"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn log_format_is_text_or_json_and_anything_else_names_the_key() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(
                Config::load(None, &Overrides::default())
                    .unwrap()
                    .log_format,
                LogFormat::Text
            );
            jail.set_env("WASM_HYPERVISOR_LOG_FORMAT", "json");
            assert_eq!(
                Config::load(None, &Overrides::default())
                    .unwrap()
                    .log_format,
                LogFormat::Json
            );
            jail.set_env("WASM_HYPERVISOR_LOG_FORMAT", "xml");
            let error = Config::load(None, &Overrides::default()).unwrap_err();
            let message = error.to_string().to_lowercase();
            assert!(message.contains("log_format"), "{error}");
            assert!(message.contains("`text` or `json`"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_client_share_of_sessions_is_at_most_the_pool() {
        let mut config = Config::default();
        config.sessions.max_pending_per_client = 0;
        config.validate().unwrap();
        config.sessions.max_pending_per_client = config.sessions.max_pending;
        config.validate().unwrap();
        config.sessions.max_pending_per_client = config.sessions.max_pending + 1;
        let error = config.validate().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("sessions.max_pending_per_client"),
            "{error}"
        );
    }

    #[test]
    fn token_digests_must_be_sha256_hex() {
        let mut config = Config::default();
        config.auth.tokens_sha256 = vec!["not-a-digest".into()];
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("auth.tokens_sha256"));
        let mut config = Config::default();
        config.auth.metrics_tokens_sha256 = vec!["A".repeat(64)];
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("auth.metrics_tokens_sha256"));
    }

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses_and_anything_else_names_the_key() {
        let mut config = Config::default();
        config.clients.trusted_proxies =
            vec!["10.0.0.0/8".into(), "127.0.0.1".into(), "fd00::/8".into()];
        let networks = config.trusted_proxies().unwrap();
        assert_eq!(networks[1], "127.0.0.1/32".parse::<IpNet>().unwrap());
        config.validate().unwrap();
        config.clients.trusted_proxies.push("proxy.example".into());
        let error = config.validate().unwrap_err();
        assert!(
            error.to_string().contains("clients.trusted_proxies"),
            "{error}"
        );
        assert!(error.to_string().contains("proxy.example"), "{error}");
    }

    #[test]
    fn crypto_provider_is_a_compiled_in_provider_and_anything_else_names_the_key() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Config::default().crypto.provider, "aws-lc");
            for provider in Provider::compiled_in() {
                jail.set_env("WASM_HYPERVISOR_CRYPTO__PROVIDER", provider.name());
                let config = Config::load(None, &Overrides::default()).unwrap();
                assert_eq!(config.crypto_provider().unwrap(), *provider);
            }
            jail.set_env("WASM_HYPERVISOR_CRYPTO__PROVIDER", "openssl");
            let error = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(error.to_string().contains("crypto.provider"), "{error}");
            assert!(error.to_string().contains("`openssl`"), "{error}");
            Ok(())
        });
    }

    /// A build without a provider's feature refuses to start with it, saying why.
    #[test]
    #[cfg(not(all(feature = "aws-lc", feature = "rustcrypto")))]
    fn crypto_provider_left_out_of_the_build_is_refused_naming_the_key() {
        let missing = if cfg!(feature = "aws-lc") {
            "rustcrypto"
        } else {
            "aws-lc"
        };
        let mut config = Config::default();
        config.crypto.provider = missing.to_owned();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("crypto.provider"), "{error}");
        assert!(error.contains("does not include"), "{error}");
    }

    #[test]
    fn trusted_proxies_come_from_the_environment_as_a_list() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "WASM_HYPERVISOR_CLIENTS__TRUSTED_PROXIES",
                "[10.1.2.3, 192.168.0.0/16]",
            );
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.trusted_proxies().unwrap().len(), 2);
            Ok(())
        });
    }
}
