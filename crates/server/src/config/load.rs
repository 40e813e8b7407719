//! Loading: the sources merged in order (defaults, the `--config` file, the
//! environment, the command-line [`Overrides`]) and extracted into a [`Config`],
//! or refused with a [`ConfigError`] that names the key and its source.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider as _};
use serde::Serialize;

use super::{Config, ConfigError, ENV_PREFIX};
use crate::envelope::PROVIDER_NAMES;

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
pub(super) const FLAGS: &str = "command-line flags";

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
