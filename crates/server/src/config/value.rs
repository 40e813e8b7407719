//! The types of the configuration's values: each holds only what its key allows
//! and checks it in `TryFrom`, which its `Deserialize` goes through. They say what
//! is wrong as a [`Problem`]; `config` adds the key and the source.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Problem, cores};
use crate::envelope::{Provider, ProviderNameError};

/// An integer in `MIN..=MAX`, the documented bounds of its key; no other can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// `VALUE`, checked when the program is compiled: for defaults and tests.
    pub const fn constant<const VALUE: u64>() -> Self {
        const {
            assert!(
                MIN <= VALUE && VALUE <= MAX,
                "a constant outside its key's bounds"
            )
        };
        Bounded(VALUE)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The value as a `usize`, for keys whose bounds fit in 32 bits (checked when
    /// the program is compiled), so that the conversion is lossless everywhere.
    pub const fn get_usize(self) -> usize {
        const { assert!(MAX <= u32::MAX as u64, "a bound beyond 32 bits") };
        self.0 as usize
    }

    /// The value as a `u32`, for keys whose bounds fit in it (checked when the
    /// program is compiled).
    pub const fn get_u32(self) -> u32 {
        const { assert!(MAX <= u32::MAX as u64, "a bound beyond 32 bits") };
        self.0 as u32
    }
}

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Bounded<MIN, MAX> {
    type Error = Problem;

    fn try_from(value: u64) -> Result<Self, Problem> {
        if (MIN..=MAX).contains(&value) {
            Ok(Bounded(value))
        } else {
            Err(Problem::OutOfRange {
                value,
                min: MIN,
                max: MAX,
            })
        }
    }
}

impl<const MIN: u64, const MAX: u64> From<Bounded<MIN, MAX>> for u64 {
    fn from(value: Bounded<MIN, MAX>) -> u64 {
        value.0
    }
}

/// A duration of `MIN..=MAX` whole units of `UNIT_MS` milliseconds: what a key
/// ending in `_ms` ([`Millis`]) or `_secs` ([`Secs`]) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct BoundedDuration<const UNIT_MS: u64, const MIN: u64, const MAX: u64>(Duration);

/// Milliseconds, `MIN..=MAX` of them.
pub type Millis<const MIN: u64, const MAX: u64> = BoundedDuration<1, MIN, MAX>;

/// Seconds, `MIN..=MAX` of them.
pub type Secs<const MIN: u64, const MAX: u64> = BoundedDuration<1000, MIN, MAX>;

impl<const UNIT_MS: u64, const MIN: u64, const MAX: u64> BoundedDuration<UNIT_MS, MIN, MAX> {
    /// `COUNT` units, checked when the program is compiled: for defaults and tests.
    pub const fn constant<const COUNT: u64>() -> Self {
        const {
            assert!(
                MIN <= COUNT && COUNT <= MAX,
                "a constant outside its key's bounds"
            )
        };
        BoundedDuration(Duration::from_millis(COUNT * UNIT_MS))
    }

    pub const fn get(self) -> Duration {
        self.0
    }

    /// The duration in the key's unit: milliseconds for [`Millis`], seconds for
    /// [`Secs`].
    pub fn count(self) -> u64 {
        // Whole units of at most `MAX`, so neither the division nor the narrowing
        // loses anything.
        (self.0.as_millis() / u128::from(UNIT_MS)) as u64
    }
}

impl<const UNIT_MS: u64, const MIN: u64, const MAX: u64> TryFrom<u64>
    for BoundedDuration<UNIT_MS, MIN, MAX>
{
    type Error = Problem;

    fn try_from(count: u64) -> Result<Self, Problem> {
        const {
            assert!(
                MAX.checked_mul(UNIT_MS).is_some(),
                "a bound beyond u64 milliseconds"
            )
        };
        let count = Bounded::<MIN, MAX>::try_from(count)?;
        Ok(BoundedDuration(Duration::from_millis(
            count.get() * UNIT_MS,
        )))
    }
}

impl<const UNIT_MS: u64, const MIN: u64, const MAX: u64> From<BoundedDuration<UNIT_MS, MIN, MAX>>
    for u64
{
    fn from(value: BoundedDuration<UNIT_MS, MIN, MAX>) -> u64 {
        value.count()
    }
}

/// `execution.max_concurrent_compilations`: as configured, and resolved to a number
/// of compilation slots (0 is the cores but one, at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "usize", into = "usize")]
pub struct CompileSlots {
    configured: usize,
    slots: NonZeroUsize,
}

impl CompileSlots {
    /// 0, the default: the cores but one, at least one.
    pub fn auto() -> CompileSlots {
        CompileSlots {
            configured: 0,
            slots: NonZeroUsize::new(cores().saturating_sub(1)).unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// Modules compiled at once.
    pub fn get(self) -> NonZeroUsize {
        self.slots
    }
}

impl TryFrom<usize> for CompileSlots {
    type Error = Problem;

    fn try_from(configured: usize) -> Result<CompileSlots, Problem> {
        let cores = cores();
        match NonZeroUsize::new(configured) {
            None => Ok(CompileSlots::auto()),
            Some(slots) if configured <= cores => Ok(CompileSlots { configured, slots }),
            Some(_) => Err(Problem::AboveCores {
                value: configured,
                cores,
            }),
        }
    }
}

impl From<CompileSlots> for usize {
    fn from(value: CompileSlots) -> usize {
        value.configured
    }
}

/// A checkpoint origin (`origin`): 1..=256 printable characters without spaces,
/// since it is the first line of every signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
// `pub(super)`: the default (`Config::default`) is the one value made unchecked.
pub struct Origin(pub(super) String);

impl Origin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Origin {
    type Error = Problem;

    fn try_from(text: String) -> Result<Origin, Problem> {
        if text.len() <= 256 && wasm_hypervisor_protocol::note::is_valid_key_name(&text) {
            Ok(Origin(text))
        } else {
            Err(Problem::Origin)
        }
    }
}

impl FromStr for Origin {
    type Err = Problem;

    fn from_str(text: &str) -> Result<Origin, Problem> {
        Origin::try_from(text.to_owned())
    }
}

impl From<Origin> for String {
    fn from(origin: Origin) -> String {
        origin.0
    }
}

/// A path that is not empty (`data_dir`): an empty one would put the key and the
/// log in whatever directory the server happens to start in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
// `pub(super)`: the default (`Config::default`) is the one value made unchecked.
pub struct NonEmptyPath(pub(super) PathBuf);

impl NonEmptyPath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<PathBuf> for NonEmptyPath {
    type Error = Problem;

    fn try_from(path: PathBuf) -> Result<NonEmptyPath, Problem> {
        if path.as_os_str().is_empty() {
            Err(Problem::EmptyPath)
        } else {
            Ok(NonEmptyPath(path))
        }
    }
}

impl TryFrom<&Path> for NonEmptyPath {
    type Error = Problem;

    fn try_from(path: &Path) -> Result<NonEmptyPath, Problem> {
        NonEmptyPath::try_from(path.to_owned())
    }
}

impl From<NonEmptyPath> for PathBuf {
    fn from(path: NonEmptyPath) -> PathBuf {
        path.0
    }
}

/// The SHA-256 digest of a bearer token, written as 64 lowercase hex characters
/// (`auth.tokens_sha256`, `auth.metrics_tokens_sha256`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl From<[u8; 32]> for TokenDigest {
    fn from(bytes: [u8; 32]) -> TokenDigest {
        TokenDigest(bytes)
    }
}

impl FromStr for TokenDigest {
    type Err = Problem;

    fn from_str(text: &str) -> Result<TokenDigest, Problem> {
        // Lowercase only, as `wasm-hypervisor token` prints it: one spelling per
        // digest keeps configurations comparable by eye and by diff.
        let lowercase_hex = text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) if lowercase_hex => Ok(TokenDigest(bytes)),
            _ => Err(Problem::Digest),
        }
    }
}

impl TryFrom<String> for TokenDigest {
    type Error = Problem;

    fn try_from(text: String) -> Result<TokenDigest, Problem> {
        text.parse()
    }
}

impl From<TokenDigest> for String {
    fn from(digest: TokenDigest) -> String {
        hex::encode(digest.0)
    }
}

/// A digest is not a secret (the token is), so it prints: in hex, as configured.
impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", hex::encode(self.0))
    }
}

/// A trusted proxy: a CIDR, or a bare address as a network of one.
pub fn parse_network(text: &str) -> Result<IpNet, Problem> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| Problem::Network(text.to_owned()))
}

/// `clients.trusted_proxies` as text in the sources and [`IpNet`]s here.
pub(super) mod networks {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(
        networks: &[IpNet],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(networks.iter().map(ToString::to_string))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| super::parse_network(text).map_err(D::Error::custom))
            .collect()
    }
}

/// The crypto provider of this name, if this build has it.
pub fn parse_provider(name: &str) -> Result<Provider, Problem> {
    Provider::by_name(name).map_err(|error| match error {
        ProviderNameError::Unknown(name) => Problem::UnknownProvider(name),
        ProviderNameError::NotCompiledIn(name) => Problem::ProviderNotBuilt(name),
    })
}

/// `crypto.provider` as its name in the sources and the [`Provider`] here.
pub(super) mod provider_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::envelope::Provider;

    pub(crate) fn serialize<S: Serializer>(
        provider: &Provider,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(provider.name())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Provider, D::Error> {
        let name = String::deserialize(deserializer)?;
        super::parse_provider(&name).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_concurrent_compilations_resolves_to_slots() {
        assert_eq!(
            CompileSlots::try_from(0).unwrap().get().get(),
            cores().saturating_sub(1).max(1)
        );
        assert_eq!(CompileSlots::try_from(1).unwrap().get().get(), 1);
        assert_eq!(
            CompileSlots::try_from(cores() + 1),
            Err(Problem::AboveCores {
                value: cores() + 1,
                cores: cores()
            })
        );
        // What was configured is what is written back: 0, not the cores.
        assert_eq!(usize::from(CompileSlots::auto()), 0);
    }

    #[test]
    fn numbers_and_durations_made_in_code_are_held_to_their_bounds() {
        assert_eq!(
            Bounded::<1, 600_000>::try_from(0),
            Err(Problem::OutOfRange {
                value: 0,
                min: 1,
                max: 600_000
            })
        );
        assert_eq!(
            Bounded::<1, 600_000>::try_from(600_000).unwrap().get(),
            600_000
        );
        assert!(Millis::<100, 600_000>::try_from(99).is_err());
        let millis = Millis::<100, 600_000>::try_from(500).unwrap();
        assert_eq!(
            (millis.get(), millis.count()),
            (Duration::from_millis(500), 500)
        );
        let secs = Secs::<1, 86_400>::try_from(86_400).unwrap();
        assert_eq!(
            (secs.get(), secs.count()),
            (Duration::from_secs(86_400), 86_400)
        );
        assert!(Secs::<1, 86_400>::try_from(86_401).is_err());
    }

    #[test]
    fn origin_is_printable_without_spaces() {
        assert_eq!(
            "hypervisor.example.com/log"
                .parse::<Origin>()
                .unwrap()
                .as_str(),
            "hypervisor.example.com/log"
        );
        for bad in [String::new(), "a\tb".to_owned(), "x".repeat(257)] {
            assert_eq!(bad.parse::<Origin>(), Err(Problem::Origin), "{bad:?}");
        }
    }
}
