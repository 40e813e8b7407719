//! The sealed documents: the execution request a client encrypts, and the result
//! the server encrypts back (protocol §2 and §3, "request_plaintext" and
//! "result_plaintext").
//!
//! These are JSON, but not HTTP: they travel inside the envelope and their exact
//! bytes are committed to, so they live here rather than in `api`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::encoding::{Base64, Hex};

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
    /// A blob the request names by its SHA-256 is not in the client's blob store
    /// (protocol v1.1 §D): `missing_blobs` lists every missing hash.
    MissingBlob,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Completed,
        Status::Trap,
        Status::FuelExhausted,
        Status::Timeout,
        Status::MemoryLimit,
        Status::InvalidModule,
        Status::InvalidRequest,
        Status::MissingBlob,
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
            Status::MissingBlob => "missing_blob",
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
    /// Base64 of the WebAssembly binary. Exactly one of `module` and
    /// `module_sha256` is required; the server checks that rule (so that a request
    /// breaking it is a logged `invalid_request`, not a parse error of serde's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The SHA-256 of a module this client sent before (protocol v1.1 §D).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_sha256: Option<Hex>,
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
    /// Directories the guest sees (protocol v1.1 §E), at most [`MAX_MOUNTS`].
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded_mounts"
    )]
    pub mounts: Vec<MountRequest>,
    /// A reproducible execution (protocol v1.2 §R): the outputs depend on
    /// nothing but this request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// The 32 bytes the guest's random bytes are drawn from, as lowercase hex
    /// (protocol v1.2 §R; zero when absent). Only with `deterministic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Hex>,
}

/// Most mounts a request may have (protocol v1.1 §E); parsing stops past it.
pub const MAX_MOUNTS: usize = 16;
/// Longest mount path, in bytes.
pub const MAX_MOUNT_PATH_BYTES: usize = 4096;
/// Longest segment of a mount path, in bytes.
pub const MAX_MOUNT_SEGMENT_BYTES: usize = 255;

/// One directory the guest sees (protocol v1.1 §E).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRequest {
    /// Where the guest sees it: absolute and normalized (see [`check_mount_path`]).
    pub path: String,
    /// Base64 of a tar archive of its initial contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar: Option<String>,
    /// The SHA-256 of an archive this client sent before, instead of `tar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar_sha256: Option<Hex>,
    /// Whether the guest may change it; a writable mount comes back in the
    /// result's `mounts_out`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable: bool,
}

/// Why a mount path is not absolute and normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MountPathError {
    #[error("must start with `/`")]
    NotAbsolute,
    #[error("may not end with `/` (except `/` itself)")]
    TrailingSlash,
    #[error("may not have empty, `.` or `..` segments")]
    NotNormalized,
    #[error("may not contain NUL")]
    Nul,
    #[error("is longer than {MAX_MOUNT_PATH_BYTES} bytes")]
    TooLong,
    #[error("has a segment longer than {MAX_MOUNT_SEGMENT_BYTES} bytes")]
    SegmentTooLong,
}

/// Checks that `path` is a mount path of protocol v1.1 §E: it starts with `/`, has
/// no empty, `.` or `..` segment, no trailing `/` unless it is `/`, no NUL, is at
/// most [`MAX_MOUNT_PATH_BYTES`] bytes with segments of at most
/// [`MAX_MOUNT_SEGMENT_BYTES`].
pub fn check_mount_path(path: &str) -> Result<(), MountPathError> {
    if path.len() > MAX_MOUNT_PATH_BYTES {
        return Err(MountPathError::TooLong);
    }
    if path.contains('\0') {
        return Err(MountPathError::Nul);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(MountPathError::NotAbsolute);
    };
    if rest.is_empty() {
        return Ok(());
    }
    if rest.ends_with('/') {
        return Err(MountPathError::TrailingSlash);
    }
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(MountPathError::NotNormalized);
        }
        if segment.len() > MAX_MOUNT_SEGMENT_BYTES {
            return Err(MountPathError::SegmentTooLong);
        }
    }
    Ok(())
}

/// Whether mount path `inner` is `outer` or lies inside it (both checked paths).
pub fn mount_path_within(inner: &str, outer: &str) -> bool {
    outer == "/"
        || inner == outer
        || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
}

/// A JSON array of at most [`MAX_MOUNTS`] mounts.
fn bounded_mounts<'de, D>(deserializer: D) -> Result<Vec<MountRequest>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<MountRequest>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of mounts")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(mount) = seq.next_element::<MountRequest>()? {
                if out.len() == MAX_MOUNTS {
                    return Err(serde::de::Error::custom(format!(
                        "`mounts` has more than {MAX_MOUNTS} entries"
                    )));
                }
                out.push(mount);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Visitor)
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
    /// Bytes of all mounts' files together (protocol v1.1 §E).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_bytes: Option<u64>,
}

/// The limits in force for one execution, after applying the server's maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveLimits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub timeout_ms: u64,
    pub max_output_bytes: u64,
    /// The files limit in force (protocol v1.1 §G). In a result only when the
    /// request had mounts or asked for `limits.files_bytes`, so that the result of
    /// a v1 request is byte for byte a v1 result; the server always knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_bytes: Option<u64>,
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
            files_bytes: match maxima.files_bytes {
                Some(max) => Some(lower("files_bytes", max, requested.files_bytes, 0)?),
                None => None,
            },
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
    /// What the guest wrote to stdout (up to `max_output_bytes`).
    pub stdout: Base64,
    /// What the guest wrote to stderr (up to `max_output_bytes`).
    pub stderr: Base64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub fuel_consumed: u64,
    pub wall_time_us: u64,
    /// SHA-256 of the module bytes; `null` when the request carried no decodable
    /// module (an `invalid_request`).
    pub module_sha256: Option<Hex>,
    pub limits: EffectiveLimits,
    pub engine: String,
    /// With `missing_blob` only: every blob the request named that the client's
    /// store does not hold (protocol v1.1 §D, §G).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_blobs: Option<Vec<Hex>>,
    /// When the request had a writable mount: each one's contents after the guest
    /// ended, in request order (protocol v1.1 §E, §G).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts_out: Option<Vec<MountOut>>,
    /// `mounts_out`'s archives were cut to stay within their bound (PROTOCOL.md,
    /// "The guest's files"): each is a valid archive of the entries up to the cut.
    /// Our own addition to v1.1's result, present (and `true`) only when so.
    #[serde(default, skip_serializing_if = "is_false")]
    pub mounts_out_truncated: bool,
    /// The execution was reproducible (protocol v1.2 §R); present (and `true`)
    /// only when so.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deterministic: bool,
    /// With `deterministic` only: the SHA-256 of the canonical description of
    /// everything its outputs depend on besides the request (PROTOCOL.md,
    /// "Reproducible executions").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_sha256: Option<Hex>,
}

/// Whether a flag is off, for fields present only when on.
fn is_false(flag: &bool) -> bool {
    !*flag
}

/// A writable mount as the guest left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountOut {
    pub path: String,
    /// A ustar or pax archive of its regular files and directories, entries sorted
    /// by name.
    pub tar: Base64,
}

impl ExecutionResult {
    /// A result with nothing in it yet (status `invalid_request`, no output, no
    /// fuel): where the server starts each result, and a reader each decoding.
    pub fn blank(execution_id: String, limits: EffectiveLimits, engine: String) -> ExecutionResult {
        ExecutionResult {
            execution_id,
            status: Status::InvalidRequest,
            exit_code: None,
            returns: Vec::new(),
            stdout: Base64::default(),
            stderr: Base64::default(),
            stdout_truncated: false,
            stderr_truncated: false,
            error: None,
            fuel_consumed: 0,
            wall_time_us: 0,
            module_sha256: None,
            limits,
            engine,
            missing_blobs: None,
            mounts_out: None,
            mounts_out_truncated: false,
            deterministic: false,
            engine_sha256: None,
        }
    }

    /// A copy of the guest's stdout.
    pub fn stdout_bytes(&self) -> Vec<u8> {
        self.stdout.0.clone()
    }

    /// A copy of the guest's stderr.
    pub fn stderr_bytes(&self) -> Vec<u8> {
        self.stderr.0.clone()
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
        files_bytes: Some(1000),
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
    fn module_and_module_sha256_are_both_optional_to_serde() {
        // The exactly-one-of rule is the server's, so that breaking it is a logged
        // `invalid_request` rather than an unparsable plaintext.
        let neither: ExecutionRequest = serde_json::from_str("{}").unwrap();
        assert!(neither.module.is_none() && neither.module_sha256.is_none());
        let hash = "ab".repeat(32);
        let both: ExecutionRequest =
            serde_json::from_str(&format!(r#"{{"module":"","module_sha256":"{hash}"}}"#)).unwrap();
        assert_eq!(both.module_sha256.unwrap().0, [0xab; 32]);
    }

    #[test]
    fn module_sha256_must_be_lowercase_hex_of_32_bytes() {
        for bad in ["AB".repeat(32), "ab".repeat(31), "zz".repeat(32)] {
            let request = format!(r#"{{"module_sha256":"{bad}"}}"#);
            assert!(
                serde_json::from_str::<ExecutionRequest>(&request).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn mounts_past_16_are_refused_while_parsing() {
        let mount = r#"{"path":"/a","writable":true}"#;
        let at_max = vec![mount; MAX_MOUNTS].join(",");
        let request: ExecutionRequest =
            serde_json::from_str(&format!(r#"{{"mounts":[{at_max}]}}"#)).unwrap();
        assert_eq!(request.mounts.len(), MAX_MOUNTS);
        let past = vec![mount; MAX_MOUNTS + 1].join(",");
        let error = serde_json::from_str::<ExecutionRequest>(&format!(r#"{{"mounts":[{past}]}}"#))
            .unwrap_err();
        assert!(error.to_string().contains("more than 16"), "{error}");
        let unknown =
            serde_json::from_str::<ExecutionRequest>(r#"{"mounts":[{"path":"/a","mode":"rw"}]}"#)
                .unwrap_err();
        assert!(unknown.to_string().contains("mode"), "{unknown}");
    }

    #[test]
    fn mount_paths_must_be_absolute_and_normalized() {
        for good in [
            "/",
            "/a",
            "/a/b",
            "/usr/local/lib/python3.11",
            "/a..b",
            "/.a",
        ] {
            assert_eq!(check_mount_path(good), Ok(()), "{good}");
        }
        let long_segment = format!("/{}", "x".repeat(MAX_MOUNT_SEGMENT_BYTES + 1));
        let long_path = "/x".repeat(MAX_MOUNT_PATH_BYTES / 2 + 1);
        for (bad, why) in [
            ("", MountPathError::NotAbsolute),
            ("a", MountPathError::NotAbsolute),
            ("/a/", MountPathError::TrailingSlash),
            ("//a", MountPathError::NotNormalized),
            ("/a//b", MountPathError::NotNormalized),
            ("/a/./b", MountPathError::NotNormalized),
            ("/a/../b", MountPathError::NotNormalized),
            ("/..", MountPathError::NotNormalized),
            ("/a\0", MountPathError::Nul),
            (long_segment.as_str(), MountPathError::SegmentTooLong),
            (long_path.as_str(), MountPathError::TooLong),
        ] {
            assert_eq!(check_mount_path(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn a_mount_path_is_within_itself_its_ancestors_and_the_root() {
        assert!(mount_path_within("/a/b", "/a"));
        assert!(mount_path_within("/a", "/a"));
        assert!(mount_path_within("/a", "/"));
        assert!(!mount_path_within("/ab", "/a"));
        assert!(!mount_path_within("/a", "/a/b"));
    }

    #[test]
    fn files_bytes_may_only_lower_the_maximum() {
        let asked = |files_bytes| {
            EffectiveLimits::apply(
                MAX,
                Some(RequestedLimits {
                    files_bytes: Some(files_bytes),
                    ..Default::default()
                }),
            )
        };
        assert_eq!(asked(10).unwrap().files_bytes, Some(10));
        assert_eq!(asked(0).unwrap().files_bytes, Some(0));
        let error = asked(1001).unwrap_err();
        assert!(error.to_string().contains("limits.files_bytes"), "{error}");
    }

    #[test]
    fn a_v1_result_has_none_of_the_v1_1_fields() {
        let result = ExecutionResult {
            execution_id: "x".into(),
            status: Status::Completed,
            exit_code: Some(0),
            returns: vec![],
            stdout: Base64::default(),
            stderr: Base64::default(),
            stdout_truncated: false,
            stderr_truncated: false,
            error: None,
            fuel_consumed: 1,
            wall_time_us: 1,
            module_sha256: None,
            limits: EffectiveLimits {
                files_bytes: None,
                ..MAX
            },
            engine: "e".into(),
            missing_blobs: None,
            mounts_out: None,
            deterministic: false,
            engine_sha256: None,
            mounts_out_truncated: false,
        };
        let json = serde_json::to_string(&result).unwrap();
        for field in ["files_bytes", "missing_blobs", "mounts_out"] {
            assert!(!json.contains(field), "{json}");
        }
        assert!(
            json.ends_with(r#""max_output_bytes":10},"engine":"e"}"#),
            "{json}"
        );
    }

    #[test]
    fn status_words_match_the_protocol() {
        for status in Status::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }
}
