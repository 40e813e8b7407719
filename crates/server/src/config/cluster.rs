//! The log shared and witnessed: the `cluster` section (replicas over one
//! PostgreSQL, its URL never shown) and the `witnesses` section (cosigning).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Bounded, Millis};

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
