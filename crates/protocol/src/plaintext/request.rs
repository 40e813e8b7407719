//! The request plaintext in CBOR (protocol v1.1 §C), read and written: the same
//! fields and checks as JSON's, byte fields as byte strings borrowed from the
//! plaintext ([`RequestBytes`]). Its field readers (`optional`, `read_hash`,
//! `read_limits`) serve the result's reader too.

use std::collections::BTreeMap;

use crate::cbor::{CborError, Fields, Item, Reader};
use crate::encoding::{Hex, decode_base64};
use crate::payload::{
    ExecutionRequest, MAX_ARGS_CEILING, MAX_ENV_CEILING, MAX_MOUNTS, MountRequest, RequestedLimits,
};

/// The byte fields of a CBOR request, borrowed from its plaintext: what JSON
/// carries as base64 text in [`ExecutionRequest`]'s `module`, `stdin` and
/// `mounts[].tar`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestBytes<'a> {
    pub module: Option<&'a [u8]>,
    pub stdin: Option<&'a [u8]>,
    /// One per mount, in request order.
    pub tars: Vec<Option<&'a [u8]>>,
}

impl<'a> RequestBytes<'a> {
    /// Mount `index`'s archive bytes, if it sent any.
    pub fn tar(&self, index: usize) -> Option<&'a [u8]> {
        self.tars.get(index).copied().flatten()
    }
}

const REQUEST_FIELDS: &[&str] = &[
    "module",
    "module_sha256",
    "invoke",
    "args",
    "env",
    "stdin",
    "limits",
    "mounts",
    "deterministic",
    "seed",
];
const LIMIT_FIELDS: &[&str] = &[
    "fuel",
    "memory_bytes",
    "timeout_ms",
    "max_output_bytes",
    "files_bytes",
];
const MOUNT_FIELDS: &[&str] = &["path", "tar", "tar_sha256", "writable"];

/// Parses a CBOR request plaintext strictly: the request with its byte fields
/// (`module`, `stdin`, `mounts[].tar`) left `None`, and those bytes, borrowed.
/// Unknown and duplicate keys (also in `env`), indefinite lengths, trailing
/// bytes and everything [`crate::cbor`] refuses are errors; so are `args`, `env` and
/// `mounts` past the ceilings JSON parsing has.
pub fn decode_request(plaintext: &[u8]) -> Result<(ExecutionRequest, RequestBytes<'_>), CborError> {
    let mut reader = Reader::new(plaintext);
    let mut request = ExecutionRequest::default();
    let mut bytes = RequestBytes::default();
    let mut fields = Fields::new(REQUEST_FIELDS);
    for _ in 0..reader.map_len()? {
        match fields.index(reader.text()?)? {
            0 => bytes.module = optional(&mut reader, Reader::bytes)?,
            1 => request.module_sha256 = optional(&mut reader, read_hash)?,
            2 => request.invoke = optional(&mut reader, |r| r.text().map(str::to_owned))?,
            3 => {
                for _ in 0..array_len_at_most(&mut reader, MAX_ARGS_CEILING, "args")? {
                    request.args.push(reader.text()?.to_owned());
                }
            }
            4 => request.env = read_env(&mut reader)?,
            5 => bytes.stdin = optional(&mut reader, Reader::bytes)?,
            6 => request.limits = optional(&mut reader, read_limits)?,
            7 => {
                for _ in 0..array_len_at_most(&mut reader, MAX_MOUNTS, "mounts")? {
                    let (mount, tar) = read_mount(&mut reader)?;
                    request.mounts.push(mount);
                    bytes.tars.push(tar);
                }
            }
            8 => request.deterministic = reader.boolean()?,
            9 => request.seed = optional(&mut reader, read_hash)?,
            _ => unreachable!("Fields only returns indexes of REQUEST_FIELDS"),
        }
    }
    reader.finish()?;
    Ok((request, bytes))
}

/// An array's length, refused past `max` entries before any is read.
fn array_len_at_most(reader: &mut Reader<'_>, max: usize, field: &str) -> Result<usize, CborError> {
    let count = reader.array_len()?;
    if count > max {
        return Err(invalid(format!("`{field}` has more than {max} entries")));
    }
    Ok(count)
}

fn invalid(message: String) -> CborError {
    CborError::Invalid(message)
}

/// `null` or what `read` reads, as JSON's `Option` fields take `null` or a value.
pub(super) fn optional<'a, T>(
    reader: &mut Reader<'a>,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, CborError>,
) -> Result<Option<T>, CborError> {
    if reader.null() {
        Ok(None)
    } else {
        read(reader).map(Some)
    }
}

/// A text string of 64 lowercase hex digits.
pub(super) fn read_hash(reader: &mut Reader<'_>) -> Result<Hex, CborError> {
    Hex::parse(reader.text()?)
        .ok_or_else(|| invalid("expected lowercase hex of 32 bytes".to_owned()))
}

fn read_env(reader: &mut Reader<'_>) -> Result<BTreeMap<String, String>, CborError> {
    let count = reader.map_len()?;
    if count > MAX_ENV_CEILING {
        return Err(invalid(format!(
            "`env` has more than {MAX_ENV_CEILING} entries"
        )));
    }
    let mut env = BTreeMap::new();
    for _ in 0..count {
        let name = reader.text()?;
        let value = reader.text()?;
        if env.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(invalid(format!("duplicate env name `{name}`")));
        }
    }
    Ok(env)
}

pub(super) fn read_limits(reader: &mut Reader<'_>) -> Result<RequestedLimits, CborError> {
    let mut limits = RequestedLimits::default();
    let mut fields = Fields::new(LIMIT_FIELDS);
    for _ in 0..reader.map_len()? {
        let index = fields.index(reader.text()?)?;
        let value = optional(reader, Reader::unsigned)?;
        match index {
            0 => limits.fuel = value,
            1 => limits.memory_bytes = value,
            2 => limits.timeout_ms = value,
            3 => limits.max_output_bytes = value,
            4 => limits.files_bytes = value,
            _ => unreachable!("Fields only returns indexes of LIMIT_FIELDS"),
        }
    }
    Ok(limits)
}

fn read_mount<'a>(reader: &mut Reader<'a>) -> Result<(MountRequest, Option<&'a [u8]>), CborError> {
    let mut mount = MountRequest::default();
    let mut tar = None;
    let mut fields = Fields::new(MOUNT_FIELDS);
    for _ in 0..reader.map_len()? {
        match fields.index(reader.text()?)? {
            0 => mount.path = reader.text()?.to_owned(),
            1 => tar = optional(reader, Reader::bytes)?,
            2 => mount.tar_sha256 = optional(reader, read_hash)?,
            3 => mount.writable = reader.boolean()?,
            _ => unreachable!("Fields only returns indexes of MOUNT_FIELDS"),
        }
    }
    if !fields.has("path") {
        return Err(CborError::MissingField("path"));
    }
    Ok((mount, tar))
}

/// Why a request cannot be written in CBOR.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A byte field holds text that is not base64.
    #[error("`{0}` is not valid base64")]
    Base64(&'static str),
}

/// Writes `request` as a CBOR plaintext (RFC 8949 §4.2.1 deterministic). Its
/// byte fields hold base64 text, as for JSON; they are written as byte strings.
pub fn encode_request(request: &ExecutionRequest) -> Result<Vec<u8>, EncodeError> {
    let decode = |text: &Option<String>, name| match text {
        Some(text) => decode_base64(text)
            .map(Some)
            .map_err(|_| EncodeError::Base64(name)),
        None => Ok(None),
    };
    let module = decode(&request.module, "module")?;
    let stdin = decode(&request.stdin, "stdin")?;
    let tars = request
        .mounts
        .iter()
        .map(|mount| decode(&mount.tar, "mounts[].tar"))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = RequestBytes {
        module: module.as_deref(),
        stdin: stdin.as_deref(),
        tars: tars.iter().map(Option::as_deref).collect(),
    };
    Ok(encode_request_with(request, &bytes))
}

/// Writes `request` as a CBOR plaintext with its byte fields taken from `bytes`
/// (those of `request` are ignored): no base64 on the way.
pub fn encode_request_with(request: &ExecutionRequest, bytes: &RequestBytes<'_>) -> Vec<u8> {
    // The hashes as text, owned here so that the items can borrow them.
    let module_sha256 = request.module_sha256.map(|hash| hash.to_string());
    let seed = request.seed.map(|seed| seed.to_string());
    let tar_hashes: Vec<Option<String>> = request
        .mounts
        .iter()
        .map(|mount| mount.tar_sha256.map(|hash| hash.to_string()))
        .collect();
    let mut map = Vec::new();
    if let Some(module) = bytes.module {
        map.push(("module", Item::Bytes(module)));
    }
    if let Some(hash) = &module_sha256 {
        map.push(("module_sha256", Item::Text(hash)));
    }
    if let Some(invoke) = &request.invoke {
        map.push(("invoke", Item::Text(invoke)));
    }
    if !request.args.is_empty() {
        let args = request.args.iter().map(|arg| Item::Text(arg)).collect();
        map.push(("args", Item::Array(args)));
    }
    if !request.env.is_empty() {
        let env = request
            .env
            .iter()
            .map(|(name, value)| (name.as_str(), Item::Text(value)))
            .collect();
        map.push(("env", Item::Map(env)));
    }
    if let Some(stdin) = bytes.stdin {
        map.push(("stdin", Item::Bytes(stdin)));
    }
    if let Some(limits) = &request.limits {
        map.push(("limits", limits_item(limits)));
    }
    if !request.mounts.is_empty() {
        map.push(("mounts", mounts_item(request, bytes, &tar_hashes)));
    }
    if request.deterministic {
        map.push(("deterministic", Item::Bool(true)));
    }
    if let Some(seed) = &seed {
        map.push(("seed", Item::Text(seed)));
    }
    Item::Map(map).to_vec()
}

/// `limits`: the limits the request sets, and only those.
fn limits_item(limits: &RequestedLimits) -> Item<'static> {
    let fields = [
        ("fuel", limits.fuel),
        ("memory_bytes", limits.memory_bytes),
        ("timeout_ms", limits.timeout_ms),
        ("max_output_bytes", limits.max_output_bytes),
        ("files_bytes", limits.files_bytes),
    ];
    let limits = fields
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, Item::Unsigned(value))))
        .collect();
    Item::Map(limits)
}

/// `mounts`, each with its archive from `bytes` and its hash from `tar_hashes`
/// (the mounts' `tar_sha256` as text, in request order).
fn mounts_item<'a>(
    request: &'a ExecutionRequest,
    bytes: &RequestBytes<'a>,
    tar_hashes: &'a [Option<String>],
) -> Item<'a> {
    let mounts = request
        .mounts
        .iter()
        .enumerate()
        .map(|(index, mount)| {
            let mut fields = vec![("path", Item::Text(&mount.path))];
            if let Some(tar) = bytes.tar(index) {
                fields.push(("tar", Item::Bytes(tar)));
            }
            if let Some(hash) = &tar_hashes[index] {
                fields.push(("tar_sha256", Item::Text(hash)));
            }
            if mount.writable {
                fields.push(("writable", Item::Bool(true)));
            }
            Item::Map(fields)
        })
        .collect();
    Item::Array(mounts)
}
