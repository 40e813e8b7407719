//! Why the configuration does not load: [`ConfigError`] (the key, what is wrong
//! and which source gave the value), the [`Problem`]s the values' types find, and
//! the [`Source`] an error names.

use std::fmt;
use std::path::PathBuf;

use figment::{Figment, Metadata};

use super::load::FLAGS;
use super::{ENV_PREFIX, UNBOUNDED};
use crate::envelope::Provider;

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

impl ConfigError {
    /// figment's error, with its key and its source. (It can chain several, one per
    /// source that failed; serde stops at the first bad value, so there is one.)
    pub(super) fn from_figment(
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
