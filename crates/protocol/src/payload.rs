//! The sealed documents: the execution request a client encrypts, and the result
//! the server encrypts back (protocol §2 and §3, "request_plaintext" and
//! "result_plaintext").
//!
//! These are JSON, but not HTTP: they travel inside the envelope and their exact
//! bytes are committed to, so they live here rather than in `api`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// Every execution status of protocol §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The guest ran to the end (`exit_code` says how).
    Completed,
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...).
    Trap,
    /// The guest burned all its fuel.
    FuelExhausted,
    /// The guest ran past `timeout_ms` of wall-clock time.
    Timeout,
    /// The guest needed more memory (or table space) than allowed.
    MemoryLimit,
    /// The module does not compile, link or is not a runnable command.
    InvalidModule,
    /// The request plaintext is not a valid execution request.
    InvalidRequest,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Completed,
        Status::Trap,
        Status::FuelExhausted,
        Status::Timeout,
        Status::MemoryLimit,
        Status::InvalidModule,
        Status::InvalidRequest,
    ];

    /// The snake_case word used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Trap => "trap",
            Status::FuelExhausted => "fuel_exhausted",
            Status::Timeout => "timeout",
            Status::MemoryLimit => "memory_limit",
            Status::InvalidModule => "invalid_module",
            Status::InvalidRequest => "invalid_request",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request plaintext as a client writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionRequest {
    /// Base64 of the WebAssembly binary.
    pub module: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded_args"
    )]
    pub args: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_keys"
    )]
    pub env: BTreeMap<String, String>,
    /// Base64 of the guest's stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RequestedLimits>,
}

/// Most `args` entries, and separately `env` entries, that a request plaintext may
/// carry at all, whatever the server's configured maxima (`limits.max_args`,
/// `limits.max_env`, which may only be lower). Enforced while parsing, so that a
/// plaintext of millions of empty strings is refused after a bounded amount of work
/// and memory instead of costing a `String` (24 bytes and an allocation) each: a
/// 16 MB body of `"",` holds four million of them.
pub const MAX_ARGS_CEILING: usize = 65_536;
/// See [`MAX_ARGS_CEILING`].
pub const MAX_ENV_CEILING: usize = 65_536;

/// A JSON array of strings of at most [`MAX_ARGS_CEILING`] entries.
fn bounded_args<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of strings")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            // The size hint is the client's claim: never trusted for capacity.
            let mut out = Vec::new();
            while let Some(arg) = seq.next_element::<String>()? {
                if out.len() == MAX_ARGS_CEILING {
                    return Err(serde::de::Error::custom(format!(
                        "`args` has more than {MAX_ARGS_CEILING} entries"
                    )));
                }
                out.push(arg);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Visitor)
}

/// A JSON object whose keys must be unique: serde's maps keep the last of duplicate
/// keys silently, which would let two readers of the same committed plaintext
/// disagree about the guest's environment. At most [`MAX_ENV_CEILING`] entries.
fn unique_keys<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of strings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if out.len() == MAX_ENV_CEILING {
                    return Err(serde::de::Error::custom(format!(
                        "`env` has more than {MAX_ENV_CEILING} entries"
                    )));
                }
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate env name `{key}`"
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Visitor)
}

/// Limits a request asks for; each may only lower the server's maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

/// The limits in force for one execution, after applying the server's maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveLimits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub timeout_ms: u64,
    pub max_output_bytes: u64,
}

/// Why a request's limits cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A requested limit is above the server's maximum.
    #[error("limits.{name} = {value} is above the server's maximum of {max}")]
    AboveMaximum {
        name: &'static str,
        value: u64,
        max: u64,
    },
    /// A requested limit is below what the field allows (a zero fuel or timeout).
    #[error("limits.{name} = {value} is below the minimum of {min}")]
    BelowMinimum {
        name: &'static str,
        value: u64,
        min: u64,
    },
}

impl EffectiveLimits {
    /// Applies a request's limits under the server's maxima. A requested value
    /// above the maximum (or a zero) is refused, naming the field.
    pub fn apply(
        maxima: EffectiveLimits,
        requested: Option<RequestedLimits>,
    ) -> Result<EffectiveLimits, LimitError> {
        let Some(requested) = requested else {
            return Ok(maxima);
        };
        fn lower(
            name: &'static str,
            max: u64,
            asked: Option<u64>,
            min: u64,
        ) -> Result<u64, LimitError> {
            match asked {
                None => Ok(max),
                Some(value) if value > max => Err(LimitError::AboveMaximum { name, value, max }),
                Some(value) if value < min => Err(LimitError::BelowMinimum { name, value, min }),
                Some(value) => Ok(value),
            }
        }
        Ok(EffectiveLimits {
            fuel: lower("fuel", maxima.fuel, requested.fuel, 1)?,
            memory_bytes: lower(
                "memory_bytes",
                maxima.memory_bytes,
                requested.memory_bytes,
                0,
            )?,
            timeout_ms: lower("timeout_ms", maxima.timeout_ms, requested.timeout_ms, 1)?,
            max_output_bytes: lower(
                "max_output_bytes",
                maxima.max_output_bytes,
                requested.max_output_bytes,
                0,
            )?,
        })
    }
}

/// The result plaintext, field order as in protocol §3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionResult {
    pub execution_id: String,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub returns: Vec<String>,
    /// Base64.
    pub stdout: String,
    /// Base64.
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub fuel_consumed: u64,
    pub wall_time_us: u64,
    /// Hex SHA-256 of the module bytes; `null` when the request carried no decodable
    /// module (an `invalid_request`).
    pub module_sha256: Option<String>,
    pub limits: EffectiveLimits,
    pub engine: String,
}

impl ExecutionResult {
    pub fn stdout_bytes(&self) -> Vec<u8> {
        B64.decode(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_bytes(&self) -> Vec<u8> {
        B64.decode(&self.stderr).unwrap_or_default()
    }
}

pub use crate::encoding::{decode_base64, encode_base64};

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: EffectiveLimits = EffectiveLimits {
        fuel: 100,
        memory_bytes: 1 << 20,
        timeout_ms: 1000,
        max_output_bytes: 10,
    };

    #[test]
    fn requested_limits_may_only_lower_the_maxima() {
        let lowered = EffectiveLimits::apply(
            MAX,
            Some(RequestedLimits {
                fuel: Some(50),
                timeout_ms: Some(10),
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(lowered.fuel, 50);
        assert_eq!(lowered.timeout_ms, 10);
        assert_eq!(lowered.memory_bytes, MAX.memory_bytes);

        let error = EffectiveLimits::apply(
            MAX,
            Some(RequestedLimits {
                memory_bytes: Some(2 << 20),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert!(error.to_string().contains("limits.memory_bytes"), "{error}");
        assert!(
            EffectiveLimits::apply(
                MAX,
                Some(RequestedLimits {
                    timeout_ms: Some(0),
                    ..Default::default()
                })
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_request_fields_are_refused() {
        let error =
            serde_json::from_str::<ExecutionRequest>(r#"{"module":"","argv":[]}"#).unwrap_err();
        assert!(error.to_string().contains("argv"));
        let error = serde_json::from_str::<ExecutionRequest>(
            r#"{"module":"","limits":{"fuel":1,"cpu":2}}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("cpu"));
    }

    #[test]
    fn args_and_env_past_their_ceilings_are_refused_while_parsing() {
        let args = vec!["\"\""; MAX_ARGS_CEILING + 1].join(",");
        let error = serde_json::from_str::<ExecutionRequest>(&format!(
            r#"{{"module":"","args":[{args}]}}"#
        ))
        .unwrap_err();
        assert!(error.to_string().contains("more than 65536"), "{error}");
        let at_ceiling = vec!["\"\""; MAX_ARGS_CEILING].join(",");
        let request: ExecutionRequest =
            serde_json::from_str(&format!(r#"{{"module":"","args":[{at_ceiling}]}}"#)).unwrap();
        assert_eq!(request.args.len(), MAX_ARGS_CEILING);

        let env: Vec<String> = (0..=MAX_ENV_CEILING)
            .map(|n| format!(r#""V{n}":"""#))
            .collect();
        let error = serde_json::from_str::<ExecutionRequest>(&format!(
            r#"{{"module":"","env":{{{}}}}}"#,
            env.join(",")
        ))
        .unwrap_err();
        assert!(error.to_string().contains("more than 65536"), "{error}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let top = serde_json::from_str::<ExecutionRequest>(r#"{"module":"","module":""}"#);
        assert!(top.unwrap_err().to_string().contains("duplicate field"));
        let env =
            serde_json::from_str::<ExecutionRequest>(r#"{"module":"","env":{"A":"1","A":"2"}}"#);
        assert!(
            env.unwrap_err()
                .to_string()
                .contains("duplicate env name `A`")
        );
        let fine = serde_json::from_str::<ExecutionRequest>(r#"{"module":"","env":{"A":"1"}}"#);
        assert_eq!(fine.unwrap().env["A"], "1");
    }

    #[test]
    fn status_words_match_the_protocol() {
        for status in Status::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }
}
