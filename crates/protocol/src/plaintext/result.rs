//! The result plaintext in CBOR (protocol v1.1 §C): written in deterministic
//! encoding (for [`write_result`](super::write_result)) and read strictly
//! ([`decode_result`]); [`decode_result_any`] reads either format.

use std::collections::BTreeSet;

use super::Format;
use super::out::Out;
use super::request::{optional, read_hash, read_limits};
use super::write::StreamedMount;
use crate::cbor::{self, CborError, Fields, Item, Reader, major};
use crate::encoding::Base64;
use crate::payload::{EffectiveLimits, ExecutionResult, MountOut, Status};

/// A value of the CBOR result's top-level map.
enum Value<'a> {
    Item(Item<'a>),
    /// `mounts_out`, whose archives are written by their sources.
    MountsOut,
}

/// The CBOR result (protocol v1.1 §C): the top-level map's keys in deterministic
/// order, `mounts_out`'s archives as byte strings written by their sources.
pub(super) fn cbor_document(
    out: &mut impl Out,
    result: &ExecutionResult,
    mut mounts: Option<&mut [StreamedMount<'_>]>,
) {
    let texts = HashTexts::of(result);
    let mut map = result_map(result, &texts, mounts.is_some());
    map.sort_by(|(a, _), (b, _)| cbor::key_order(a, b));
    out.head(major::MAP, map.len() as u64);
    for (key, value) in &map {
        out.item(&Item::Text(key));
        match value {
            Value::Item(value) => out.item(value),
            Value::MountsOut => write_mounts_out(out, mounts.as_deref_mut().unwrap_or_default()),
        }
    }
}

/// A result's hashes as text, owned here so that the map's items can borrow them.
struct HashTexts {
    module_sha256: Option<String>,
    missing_blobs: Vec<String>,
    engine_sha256: Option<String>,
}

impl HashTexts {
    fn of(result: &ExecutionResult) -> HashTexts {
        HashTexts {
            module_sha256: result.module_sha256.map(|hash| hash.to_string()),
            missing_blobs: (result.missing_blobs.iter().flatten())
                .map(|hash| hash.to_string())
                .collect(),
            engine_sha256: result.engine_sha256.map(|hash| hash.to_string()),
        }
    }
}

/// The result's top-level map, unsorted: the fields JSON always has, then those
/// it leaves out when empty (`mounts_out` as a place for the streamed archives).
fn result_map<'a>(
    result: &'a ExecutionResult,
    texts: &'a HashTexts,
    mounts_out: bool,
) -> Vec<(&'static str, Value<'a>)> {
    let item = |key, item| (key, Value::Item(item));
    let exit_code = (result.exit_code).map_or(Item::Null, |code| Item::Integer(i64::from(code)));
    let returns = result.returns.iter().map(|value| Item::Text(value));
    let module_sha256 = texts
        .module_sha256
        .as_deref()
        .map_or(Item::Null, Item::Text);
    let mut map = vec![
        item("execution_id", Item::Text(&result.execution_id)),
        item("status", Item::Text(result.status.as_str())),
        item("exit_code", exit_code),
        item("returns", Item::Array(returns.collect())),
        item("stdout", Item::Bytes(&result.stdout.0)),
        item("stderr", Item::Bytes(&result.stderr.0)),
        item("stdout_truncated", Item::Bool(result.stdout_truncated)),
        item("stderr_truncated", Item::Bool(result.stderr_truncated)),
        item("fuel_consumed", Item::Unsigned(result.fuel_consumed)),
        item("wall_time_us", Item::Unsigned(result.wall_time_us)),
        item("module_sha256", module_sha256),
        item("limits", effective_limits_item(&result.limits)),
        item("engine", Item::Text(&result.engine)),
    ];
    if let Some(error) = &result.error {
        map.push(item("error", Item::Text(error)));
    }
    if result.missing_blobs.is_some() {
        let hashes = texts.missing_blobs.iter().map(|hash| Item::Text(hash));
        map.push(item("missing_blobs", Item::Array(hashes.collect())));
    }
    if mounts_out {
        map.push(("mounts_out", Value::MountsOut));
    }
    if result.mounts_out_truncated {
        map.push(item("mounts_out_truncated", Item::Bool(true)));
    }
    if result.deterministic {
        map.push(item("deterministic", Item::Bool(true)));
    }
    if let Some(hash) = &texts.engine_sha256 {
        map.push(item("engine_sha256", Item::Text(hash)));
    }
    map
}

/// `limits`: the four always there, `files_bytes` when set.
fn effective_limits_item(limits: &EffectiveLimits) -> Item<'static> {
    let mut fields = vec![
        ("fuel", Item::Unsigned(limits.fuel)),
        ("memory_bytes", Item::Unsigned(limits.memory_bytes)),
        ("timeout_ms", Item::Unsigned(limits.timeout_ms)),
        ("max_output_bytes", Item::Unsigned(limits.max_output_bytes)),
    ];
    if let Some(files_bytes) = limits.files_bytes {
        fields.push(("files_bytes", Item::Unsigned(files_bytes)));
    }
    Item::Map(fields)
}

/// `mounts_out`'s array, each archive written by its source.
fn write_mounts_out(out: &mut impl Out, mounts: &mut [StreamedMount<'_>]) {
    out.head(major::ARRAY, mounts.len() as u64);
    for mount in mounts {
        // Each mount a map of two keys, "tar" (shorter) first.
        out.head(major::MAP, 2);
        out.item(&Item::Text("tar"));
        out.head(major::BYTES, mount.tar.archive_len());
        out.archive(&mut *mount.tar, false);
        out.item(&Item::Text("path"));
        out.item(&Item::Text(mount.path));
    }
}

const RESULT_FIELDS: &[&str] = &[
    "execution_id",
    "status",
    "exit_code",
    "returns",
    "stdout",
    "stderr",
    "stdout_truncated",
    "stderr_truncated",
    "error",
    "fuel_consumed",
    "wall_time_us",
    "module_sha256",
    "limits",
    "engine",
    "missing_blobs",
    "mounts_out",
    "mounts_out_truncated",
    "deterministic",
    "engine_sha256",
];

/// The fields a result always has: JSON's non-optional ones.
const REQUIRED_RESULT_FIELDS: &[&str] = &[
    "execution_id",
    "status",
    "exit_code",
    "returns",
    "stdout",
    "stderr",
    "stdout_truncated",
    "stderr_truncated",
    "fuel_consumed",
    "wall_time_us",
    "module_sha256",
    "limits",
    "engine",
];

/// Reads a CBOR result plaintext (the client's side), as strictly as a request;
/// unknown keys are skipped, as JSON's reader ignores unknown fields of a result.
pub fn decode_result(plaintext: &[u8]) -> Result<ExecutionResult, CborError> {
    let mut reader = Reader::new(plaintext);
    let limits = EffectiveLimits {
        fuel: 0,
        memory_bytes: 0,
        timeout_ms: 0,
        max_output_bytes: 0,
        files_bytes: None,
    };
    let mut result = ExecutionResult::blank(String::new(), limits, String::new());
    let mut fields = Fields::new(RESULT_FIELDS);
    let mut unknown = BTreeSet::new();
    for _ in 0..reader.map_len()? {
        let key = reader.text()?;
        match fields.index(key) {
            Ok(index) => read_result_field(&mut reader, index, &mut result)?,
            Err(CborError::UnknownField(_)) => {
                if !unknown.insert(key) {
                    return Err(CborError::DuplicateField(key.to_owned()));
                }
                reader.skip()?;
            }
            Err(error) => return Err(error),
        }
    }
    reader.finish()?;
    match REQUIRED_RESULT_FIELDS.iter().find(|name| !fields.has(name)) {
        Some(missing) => Err(CborError::MissingField(missing)),
        None => Ok(result),
    }
}

/// Reads the value of [`RESULT_FIELDS`]`[index]` into `result`.
fn read_result_field(
    reader: &mut Reader<'_>,
    index: usize,
    result: &mut ExecutionResult,
) -> Result<(), CborError> {
    match index {
        0 => result.execution_id = reader.text()?.to_owned(),
        1 => result.status = read_status(reader)?,
        2 => result.exit_code = read_exit_code(reader)?,
        3 => result.returns = read_array(reader, |r| r.text().map(str::to_owned))?,
        4 => result.stdout = Base64(reader.bytes()?.to_vec()),
        5 => result.stderr = Base64(reader.bytes()?.to_vec()),
        6 => result.stdout_truncated = reader.boolean()?,
        7 => result.stderr_truncated = reader.boolean()?,
        8 => result.error = Some(reader.text()?.to_owned()),
        9 => result.fuel_consumed = reader.unsigned()?,
        10 => result.wall_time_us = reader.unsigned()?,
        11 => result.module_sha256 = optional(reader, read_hash)?,
        12 => result.limits = read_effective_limits(reader)?,
        13 => result.engine = reader.text()?.to_owned(),
        14 => result.missing_blobs = Some(read_array(reader, read_hash)?),
        15 => result.mounts_out = Some(read_array(reader, read_mount_out)?),
        16 => result.mounts_out_truncated = reader.boolean()?,
        17 => result.deterministic = reader.boolean()?,
        18 => result.engine_sha256 = Some(read_hash(reader)?),
        _ => unreachable!("Fields only returns indexes of RESULT_FIELDS"),
    }
    Ok(())
}

/// A status word, one of [`Status::ALL`].
fn read_status(reader: &mut Reader<'_>) -> Result<Status, CborError> {
    let at = reader.position();
    let word = reader.text()?;
    Status::ALL
        .into_iter()
        .find(|status| status.as_str() == word)
        .ok_or(CborError::Unexpected {
            at,
            expected: "a status word",
        })
}

/// `null` or an exit code that fits an `i32`.
fn read_exit_code(reader: &mut Reader<'_>) -> Result<Option<i32>, CborError> {
    let at = reader.position();
    optional(reader, Reader::integer)?
        .map(|code| i32::try_from(code).map_err(|_| CborError::OutOfRange(at)))
        .transpose()
}

/// An array, each entry read by `read`.
fn read_array<'a, T>(
    reader: &mut Reader<'a>,
    mut read: impl FnMut(&mut Reader<'a>) -> Result<T, CborError>,
) -> Result<Vec<T>, CborError> {
    let mut entries = Vec::new();
    for _ in 0..reader.array_len()? {
        entries.push(read(reader)?);
    }
    Ok(entries)
}

fn read_effective_limits(reader: &mut Reader<'_>) -> Result<EffectiveLimits, CborError> {
    let requested = read_limits(reader)?;
    let required = |value: Option<u64>, name| value.ok_or(CborError::MissingField(name));
    Ok(EffectiveLimits {
        fuel: required(requested.fuel, "limits.fuel")?,
        memory_bytes: required(requested.memory_bytes, "limits.memory_bytes")?,
        timeout_ms: required(requested.timeout_ms, "limits.timeout_ms")?,
        max_output_bytes: required(requested.max_output_bytes, "limits.max_output_bytes")?,
        files_bytes: requested.files_bytes,
    })
}

fn read_mount_out(reader: &mut Reader<'_>) -> Result<MountOut, CborError> {
    let mut fields = Fields::new(&["path", "tar"]);
    let (mut path, mut tar) = (None, None);
    for _ in 0..reader.map_len()? {
        match fields.index(reader.text()?)? {
            0 => path = Some(reader.text()?.to_owned()),
            _ => tar = Some(reader.bytes()?.to_vec()),
        }
    }
    Ok(MountOut {
        path: path.ok_or(CborError::MissingField("path"))?,
        tar: Base64(tar.ok_or(CborError::MissingField("tar"))?),
    })
}

/// Reads either format of a result plaintext, as [`Format::of`] tells them apart.
pub fn decode_result_any(plaintext: &[u8]) -> Result<ExecutionResult, ResultError> {
    match Format::of(plaintext) {
        Format::Json => serde_json::from_slice(plaintext).map_err(ResultError::Json),
        Format::Cbor => decode_result(plaintext).map_err(ResultError::Cbor),
    }
}

/// Why a result plaintext does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("{0}")]
    Cbor(CborError),
}
