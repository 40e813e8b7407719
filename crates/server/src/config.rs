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
//! [`TokenDigest`]s (32 bytes), trusted proxies are [`IpNet`](ipnet::IpNet)s, `crypto.provider`
//! is the [`Provider`] itself (known and compiled in). Each type checks its value
//! in `TryFrom`, which its `Deserialize` goes through, so a `Config` that exists is
//! a valid one: the server takes its values as they are, with nothing to re-check
//! and nothing to `expect`.
//!
//! # Layout
//! - This file: [`Config`], its top-level keys and their defaults; the sections'
//!   types re-exported from their files, one per group of sections.
//! - `sessions`, `limits`, `execution` (with `blobs`), `clients` (with `auth` and
//!   `quotas`), `http`, `cluster` (with `witnesses`): each section's struct, its
//!   keys documented on its fields, and its defaults.
//! - `value`: the types of the values, each checking what its key allows.
//! - `load`: the sources merged and extracted ([`Config::load`], [`Overrides`]);
//!   `error`: [`ConfigError`], [`Problem`], [`Source`].
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

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::envelope::Provider;

mod clients;
mod cluster;
mod error;
mod execution;
mod http;
mod limits;
mod load;
mod sessions;
mod value;

pub use clients::{AuthConfig, ClientsConfig, QuotaLimits, QuotasConfig};
pub use cluster::{ClusterConfig, DatabaseUrl, WitnessesConfig};
pub use error::{ConfigError, Problem, Source};
pub use execution::{BlobsConfig, ExecutionConfig};
pub use http::HttpConfig;
pub use limits::LimitsConfig;
pub use load::Overrides;
pub use sessions::SessionsConfig;
pub use value::{
    Bounded, BoundedDuration, CompileSlots, Millis, NonEmptyPath, Origin, Secs, TokenDigest,
    parse_network, parse_provider,
};

/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "WASM_HYPERVISOR_";

/// The upper bound of keys that have none: any `u64` will do.
const UNBOUNDED: u64 = u64::MAX;

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
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
// figment's Jail closures return its large error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use figment::Figment;
    use figment::providers::{Format as _, Yaml};
    use ipnet::IpNet;

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
