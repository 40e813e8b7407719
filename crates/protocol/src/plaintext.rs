//! The request and result plaintexts in CBOR (protocol v1.1 §C), and which of the
//! two formats a plaintext is.
//!
//! The documents are [`payload`](crate::payload)'s, with the same keys, meanings
//! and checks as in JSON; only the encoding differs: every field that is base64
//! in JSON is a byte string, hex hashes and other strings are text strings, `env`
//! is a map of text to text, `null` is `0xF6`. A request's byte fields (`module`,
//! `stdin`, each mount's `tar`) are not copied while parsing: [`RequestBytes`]
//! borrows them from the plaintext. Results are written in RFC 8949 §4.2.1 core
//! deterministic encoding ([`cbor::Item`]).

use std::collections::BTreeMap;
use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cbor::{self, CborError, Fields, Item, Reader, major};
use crate::encoding::{Base64, Hex, decode_base64};
use crate::payload::{
    EffectiveLimits, ExecutionRequest, ExecutionResult, MAX_ARGS_CEILING, MAX_ENV_CEILING,
    MAX_MOUNTS, MountOut, MountRequest, RequestedLimits, Status,
};

/// The two encodings of a plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// UTF-8 JSON, as in protocol v1.
    Json,
    /// A CBOR map (protocol v1.1 §C).
    Cbor,
}

impl Format {
    /// Protocol v1.1 §C: a plaintext whose first byte is a CBOR map head
    /// (0xA0–0xBB) is CBOR; anything else is JSON (and an empty plaintext is JSON,
    /// which then fails to parse).
    pub fn of(plaintext: &[u8]) -> Format {
        match plaintext.first() {
            Some(0xA0..=0xBB) => Format::Cbor,
            _ => Format::Json,
        }
    }

    /// `json` or `cbor`, e.g. for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Cbor => "cbor",
        }
    }
}

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
fn optional<'a, T>(
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
fn read_hash(reader: &mut Reader<'_>) -> Result<Hex, CborError> {
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

fn read_limits(reader: &mut Reader<'_>) -> Result<RequestedLimits, CborError> {
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
    let mut map = Vec::new();
    if let Some(module) = bytes.module {
        map.push(("module", Item::Bytes(module)));
    }
    let module_sha256 = request.module_sha256.map(|hash| hash.to_string());
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
        map.push(("limits", Item::Map(limits)));
    }
    let tar_hashes: Vec<Option<String>> = request
        .mounts
        .iter()
        .map(|mount| mount.tar_sha256.map(|hash| hash.to_string()))
        .collect();
    if !request.mounts.is_empty() {
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
        map.push(("mounts", Item::Array(mounts)));
    }
    if request.deterministic {
        map.push(("deterministic", Item::Bool(true)));
    }
    let seed = request.seed.map(|seed| seed.to_string());
    if let Some(seed) = &seed {
        map.push(("seed", Item::Text(seed)));
    }
    Item::Map(map).to_vec()
}

/// Writes a result as a CBOR plaintext, in RFC 8949 §4.2.1 core deterministic
/// encoding, with the fields JSON has (those JSON leaves out when empty are left
/// out here too): [`write_result`] in CBOR.
pub fn encode_result(result: &ExecutionResult) -> Vec<u8> {
    std::mem::take(&mut *write_result(result, Format::Cbor, &mut []))
}

/// A `mounts_out` archive that [`write_result`] writes straight into the result
/// plaintext, so that no whole copy of it exists outside that buffer: its exact
/// length first (the buffer is allocated once, and CBOR's byte string head says
/// it), then its bytes.
pub trait ArchiveSource {
    /// The archive's exact length in bytes.
    fn archive_len(&self) -> u64;
    /// Passes the archive to `sink` in order, in pieces of any size: exactly
    /// [`ArchiveSource::archive_len`] bytes. Called at most once.
    fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8]));
}

/// An archive already in memory (a `MountOut`'s `tar`).
impl ArchiveSource for &[u8] {
    fn archive_len(&self) -> u64 {
        self.len() as u64
    }

    fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8])) {
        sink(self);
    }
}

/// One `mounts_out` entry for [`write_result`]: its path, and its archive's source.
pub struct StreamedMount<'a> {
    pub path: &'a str,
    pub tar: &'a mut dyn ArchiveSource,
}

/// Writes `result` as a result plaintext in `format`, into one buffer allocated
/// once, at the plaintext's exact length plus [`hpke::NT`](crate::hpke::NT)
/// bytes of room for the AES-GCM tag, so that it can be sealed in place
/// ([`ResponseKeys::seal_result_in_place`](crate::envelope::ResponseKeys::seal_result_in_place))
/// without another copy. The bytes are those of `serde_json::to_vec` (JSON) or
/// the deterministic CBOR of protocol v1.1 §C of the same result, whose
/// `mounts_out` is `mounts` if that is not empty (`result.mounts_out` is then
/// ignored), else `result.mounts_out`. Each of `mounts`' archives is written
/// straight into the buffer (in JSON as base64, a piece at a time).
pub fn write_result(
    result: &ExecutionResult,
    format: Format,
    mounts: &mut [StreamedMount<'_>],
) -> Zeroizing<Vec<u8>> {
    if !mounts.is_empty() {
        return write_document(result, format, Some(mounts));
    }
    let Some(listed) = &result.mounts_out else {
        return write_document(result, format, None);
    };
    let mut tars: Vec<&[u8]> = listed.iter().map(|mount| &mount.tar.0[..]).collect();
    let mut mounts: Vec<StreamedMount<'_>> = listed
        .iter()
        .zip(tars.iter_mut())
        .map(|(mount, tar)| StreamedMount {
            path: &mount.path,
            tar,
        })
        .collect();
    write_document(result, format, Some(&mut mounts))
}

/// [`write_result`] with its `mounts_out` settled: counted first, then written.
fn write_document(
    result: &ExecutionResult,
    format: Format,
    mut mounts: Option<&mut [StreamedMount<'_>]>,
) -> Zeroizing<Vec<u8>> {
    let mut counter = Counter(0);
    document(&mut counter, result, format, mounts.as_deref_mut());
    let len = usize::try_from(counter.0).unwrap_or(usize::MAX);
    let mut buffer = Zeroizing::new(Vec::with_capacity(len.saturating_add(crate::hpke::NT)));
    document(&mut Buffer(&mut buffer), result, format, mounts);
    debug_assert_eq!(buffer.len(), len, "the count and the writing agree");
    buffer
}

fn document(
    out: &mut impl Out,
    result: &ExecutionResult,
    format: Format,
    mounts: Option<&mut [StreamedMount<'_>]>,
) {
    match format {
        Format::Json => json_document(out, result, mounts),
        Format::Cbor => cbor_document(out, result, mounts),
    }
}

/// The JSON of [`ExecutionResult`] exactly as its `Serialize` writes it (compact,
/// fields in declaration order, the same omissions), with the byte fields
/// written as base64 without a temporary string.
fn json_document(
    out: &mut impl Out,
    result: &ExecutionResult,
    mounts: Option<&mut [StreamedMount<'_>]>,
) {
    out.raw(b"{\"execution_id\":");
    out.json(&result.execution_id);
    out.raw(b",\"status\":");
    out.json(&result.status);
    out.raw(b",\"exit_code\":");
    out.json(&result.exit_code);
    out.raw(b",\"returns\":");
    out.json(&result.returns);
    out.raw(b",\"stdout\":\"");
    out.base64(&result.stdout.0);
    out.raw(b"\",\"stderr\":\"");
    out.base64(&result.stderr.0);
    out.raw(b"\",\"stdout_truncated\":");
    out.json(&result.stdout_truncated);
    out.raw(b",\"stderr_truncated\":");
    out.json(&result.stderr_truncated);
    if let Some(error) = &result.error {
        out.raw(b",\"error\":");
        out.json(error);
    }
    out.raw(b",\"fuel_consumed\":");
    out.json(&result.fuel_consumed);
    out.raw(b",\"wall_time_us\":");
    out.json(&result.wall_time_us);
    out.raw(b",\"module_sha256\":");
    out.json(&result.module_sha256);
    out.raw(b",\"limits\":");
    out.json(&result.limits);
    out.raw(b",\"engine\":");
    out.json(&result.engine);
    if let Some(missing) = &result.missing_blobs {
        out.raw(b",\"missing_blobs\":");
        out.json(missing);
    }
    if let Some(mounts) = mounts {
        out.raw(b",\"mounts_out\":[");
        for (index, mount) in mounts.iter_mut().enumerate() {
            if index > 0 {
                out.raw(b",");
            }
            out.raw(b"{\"path\":");
            out.json(&mount.path);
            out.raw(b",\"tar\":\"");
            out.archive(&mut *mount.tar, true);
            out.raw(b"\"}");
        }
        out.raw(b"]");
    }
    if result.mounts_out_truncated {
        out.raw(b",\"mounts_out_truncated\":true");
    }
    if result.deterministic {
        out.raw(b",\"deterministic\":true");
    }
    if let Some(engine_sha256) = &result.engine_sha256 {
        out.raw(b",\"engine_sha256\":");
        out.json(engine_sha256);
    }
    out.raw(b"}");
}

/// A value of the CBOR result's top-level map.
enum Value<'a> {
    Item(Item<'a>),
    /// `mounts_out`, whose archives are written by their sources.
    MountsOut,
}

/// The CBOR result (protocol v1.1 §C): the top-level map's keys in deterministic
/// order, `mounts_out`'s archives as byte strings written by their sources.
fn cbor_document(
    out: &mut impl Out,
    result: &ExecutionResult,
    mounts: Option<&mut [StreamedMount<'_>]>,
) {
    let module_sha256 = result.module_sha256.map(|hash| hash.to_string());
    let missing: Vec<String> = result
        .missing_blobs
        .iter()
        .flatten()
        .map(|hash| hash.to_string())
        .collect();
    let limits = &result.limits;
    let mut limit_fields = vec![
        ("fuel", Item::Unsigned(limits.fuel)),
        ("memory_bytes", Item::Unsigned(limits.memory_bytes)),
        ("timeout_ms", Item::Unsigned(limits.timeout_ms)),
        ("max_output_bytes", Item::Unsigned(limits.max_output_bytes)),
    ];
    if let Some(files_bytes) = limits.files_bytes {
        limit_fields.push(("files_bytes", Item::Unsigned(files_bytes)));
    }
    let item = |key, item| (key, Value::Item(item));
    let mut map = vec![
        item("execution_id", Item::Text(&result.execution_id)),
        item("status", Item::Text(result.status.as_str())),
        item(
            "exit_code",
            result
                .exit_code
                .map_or(Item::Null, |code| Item::Integer(i64::from(code))),
        ),
        item(
            "returns",
            Item::Array(
                result
                    .returns
                    .iter()
                    .map(|value| Item::Text(value))
                    .collect(),
            ),
        ),
        item("stdout", Item::Bytes(&result.stdout.0)),
        item("stderr", Item::Bytes(&result.stderr.0)),
        item("stdout_truncated", Item::Bool(result.stdout_truncated)),
        item("stderr_truncated", Item::Bool(result.stderr_truncated)),
        item("fuel_consumed", Item::Unsigned(result.fuel_consumed)),
        item("wall_time_us", Item::Unsigned(result.wall_time_us)),
        item(
            "module_sha256",
            module_sha256.as_deref().map_or(Item::Null, Item::Text),
        ),
        item("limits", Item::Map(limit_fields)),
        item("engine", Item::Text(&result.engine)),
    ];
    if let Some(error) = &result.error {
        map.push(item("error", Item::Text(error)));
    }
    if result.missing_blobs.is_some() {
        let hashes = missing.iter().map(|hash| Item::Text(hash)).collect();
        map.push(item("missing_blobs", Item::Array(hashes)));
    }
    if mounts.is_some() {
        map.push(("mounts_out", Value::MountsOut));
    }
    if result.mounts_out_truncated {
        map.push(item("mounts_out_truncated", Item::Bool(true)));
    }
    if result.deterministic {
        map.push(item("deterministic", Item::Bool(true)));
    }
    let engine_sha256 = result.engine_sha256.map(|hash| hash.to_string());
    if let Some(hash) = &engine_sha256 {
        map.push(item("engine_sha256", Item::Text(hash)));
    }
    map.sort_by(|(a, _), (b, _)| cbor::key_order(a, b));
    out.head(major::MAP, map.len() as u64);
    let mut mounts = mounts;
    for (key, value) in &map {
        out.item(&Item::Text(key));
        match value {
            Value::Item(value) => out.item(value),
            Value::MountsOut => {
                let mounts = mounts.as_deref_mut().unwrap_or_default();
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
        }
    }
}

/// Where [`write_result`] writes: a [`Counter`] first, for the exact length, then
/// the [`Buffer`]. Both are infallible.
trait Out {
    fn raw(&mut self, bytes: &[u8]);
    /// A value as `serde_json` writes it (strings quoted and escaped).
    fn json(&mut self, value: &impl Serialize);
    /// Bytes as standard base64 with padding, unquoted.
    fn base64(&mut self, bytes: &[u8]);
    /// A CBOR item, deterministically encoded.
    fn item(&mut self, item: &Item<'_>);
    /// A CBOR head ([`cbor::head`]).
    fn head(&mut self, major: u8, argument: u64);
    /// An archive: its bytes (CBOR) or their base64, unquoted (JSON).
    fn archive(&mut self, source: &mut dyn ArchiveSource, base64: bool);
}

/// The length of standard base64 with padding of `len` bytes.
fn base64_len(len: u64) -> u64 {
    len.div_ceil(3) * 4
}

/// Counts what would be written.
struct Counter(u64);

impl io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Out for Counter {
    fn raw(&mut self, bytes: &[u8]) {
        self.0 += bytes.len() as u64;
    }

    fn json(&mut self, value: &impl Serialize) {
        // Cannot fail: the writer does not, and no value here has a map with
        // non-string keys (serde_json's only other error).
        let _ = serde_json::to_writer(&mut *self, value);
    }

    fn base64(&mut self, bytes: &[u8]) {
        self.0 += base64_len(bytes.len() as u64);
    }

    fn item(&mut self, item: &Item<'_>) {
        self.0 += item.encoded_len() as u64;
    }

    fn head(&mut self, _major: u8, argument: u64) {
        self.0 += cbor::head_len(argument) as u64;
    }

    fn archive(&mut self, source: &mut dyn ArchiveSource, base64: bool) {
        let len = source.archive_len();
        self.0 += if base64 { base64_len(len) } else { len };
    }
}

/// Appends to a buffer whose capacity the [`Counter`] settled: nothing here
/// reallocates it.
struct Buffer<'a>(&'a mut Vec<u8>);

impl io::Write for Buffer<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Out for Buffer<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn json(&mut self, value: &impl Serialize) {
        // Cannot fail, as for the count (and a failure would show as a length
        // that differs from it).
        let _ = serde_json::to_writer(&mut *self, value);
    }

    fn base64(&mut self, bytes: &[u8]) {
        base64_into(self.0, bytes);
    }

    fn item(&mut self, item: &Item<'_>) {
        item.write(self.0);
    }

    fn head(&mut self, major: u8, argument: u64) {
        cbor::head(self.0, major, argument);
    }

    fn archive(&mut self, source: &mut dyn ArchiveSource, base64: bool) {
        let mut remaining = source.archive_len();
        let mut stream = Base64Stream {
            out: &mut *self.0,
            held: [0; 3],
            held_len: 0,
        };
        let put = |piece: &[u8], stream: &mut Base64Stream<'_>| {
            if base64 {
                stream.push(piece);
            } else {
                stream.out.extend_from_slice(piece);
            }
        };
        source.write_archive(&mut |piece| {
            // A source that writes more than it said is a bug: what is past its
            // length is dropped, so the document keeps the length it was
            // counted at (the buffer is never reallocated).
            debug_assert!(
                piece.len() as u64 <= remaining,
                "an archive past its length"
            );
            let take = piece
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            remaining -= take as u64;
            put(&piece[..take], &mut stream);
        });
        // And one that writes less: zeros, for the same reason.
        debug_assert_eq!(remaining, 0, "an archive short of its length");
        const ZEROS: [u8; 512] = [0; 512];
        while remaining > 0 {
            let take = ZEROS
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            remaining -= take as u64;
            put(&ZEROS[..take], &mut stream);
        }
        if base64 {
            stream.finish();
        }
    }
}

/// Appends the base64 of `bytes` to `out`, encoded in place (no temporary
/// string).
fn base64_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let at = out.len();
    let len = usize::try_from(base64_len(bytes.len() as u64)).unwrap_or(usize::MAX);
    out.resize(at + len, 0);
    // Cannot fail: the room is exactly the encoding's length.
    let _ = B64.encode_slice(bytes, &mut out[at..]);
}

/// Base64 of bytes that arrive in pieces of any size, appended to `out`: whole
/// groups of three at once, the one or two left over held for the next piece.
struct Base64Stream<'a> {
    out: &'a mut Vec<u8>,
    held: [u8; 3],
    held_len: usize,
}

impl Base64Stream<'_> {
    fn push(&mut self, mut piece: &[u8]) {
        if self.held_len > 0 {
            let take = (3 - self.held_len).min(piece.len());
            self.held[self.held_len..self.held_len + take].copy_from_slice(&piece[..take]);
            self.held_len += take;
            piece = &piece[take..];
            if self.held_len < 3 {
                return;
            }
            let held = self.held;
            base64_into(self.out, &held);
            self.held_len = 0;
        }
        let whole = piece.len() / 3 * 3;
        base64_into(self.out, &piece[..whole]);
        let rest = &piece[whole..];
        self.held[..rest.len()].copy_from_slice(rest);
        self.held_len = rest.len();
    }

    /// The last one or two bytes, padded.
    fn finish(self) {
        let held = self.held;
        base64_into(self.out, &held[..self.held_len]);
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

/// Reads a CBOR result plaintext (the client's side), as strictly as a request;
/// unknown keys are skipped, as JSON's reader ignores unknown fields of a result.
pub fn decode_result(plaintext: &[u8]) -> Result<ExecutionResult, CborError> {
    let mut reader = Reader::new(plaintext);
    let mut result = ExecutionResult::blank(
        String::new(),
        EffectiveLimits {
            fuel: 0,
            memory_bytes: 0,
            timeout_ms: 0,
            max_output_bytes: 0,
            files_bytes: None,
        },
        String::new(),
    );
    let mut fields = Fields::new(RESULT_FIELDS);
    let mut unknown = std::collections::BTreeSet::new();
    for _ in 0..reader.map_len()? {
        let key = reader.text()?;
        let index = match fields.index(key) {
            Ok(index) => index,
            Err(CborError::UnknownField(_)) => {
                if !unknown.insert(key) {
                    return Err(CborError::DuplicateField(key.to_owned()));
                }
                reader.skip()?;
                continue;
            }
            Err(error) => return Err(error),
        };
        match index {
            0 => result.execution_id = reader.text()?.to_owned(),
            1 => {
                let at = reader.position();
                let word = reader.text()?;
                result.status = Status::ALL
                    .into_iter()
                    .find(|status| status.as_str() == word)
                    .ok_or(CborError::Unexpected {
                        at,
                        expected: "a status word",
                    })?;
            }
            2 => {
                let at = reader.position();
                result.exit_code = optional(&mut reader, Reader::integer)?
                    .map(|code| i32::try_from(code).map_err(|_| CborError::OutOfRange(at)))
                    .transpose()?;
            }
            3 => {
                for _ in 0..reader.array_len()? {
                    result.returns.push(reader.text()?.to_owned());
                }
            }
            4 => result.stdout = Base64(reader.bytes()?.to_vec()),
            5 => result.stderr = Base64(reader.bytes()?.to_vec()),
            6 => result.stdout_truncated = reader.boolean()?,
            7 => result.stderr_truncated = reader.boolean()?,
            8 => result.error = Some(reader.text()?.to_owned()),
            9 => result.fuel_consumed = reader.unsigned()?,
            10 => result.wall_time_us = reader.unsigned()?,
            11 => result.module_sha256 = optional(&mut reader, read_hash)?,
            12 => result.limits = read_effective_limits(&mut reader)?,
            13 => result.engine = reader.text()?.to_owned(),
            14 => {
                let mut hashes = Vec::new();
                for _ in 0..reader.array_len()? {
                    hashes.push(read_hash(&mut reader)?);
                }
                result.missing_blobs = Some(hashes);
            }
            15 => {
                let mut mounts = Vec::new();
                for _ in 0..reader.array_len()? {
                    mounts.push(read_mount_out(&mut reader)?);
                }
                result.mounts_out = Some(mounts);
            }
            16 => result.mounts_out_truncated = reader.boolean()?,
            17 => result.deterministic = reader.boolean()?,
            18 => result.engine_sha256 = Some(read_hash(&mut reader)?),
            _ => unreachable!("Fields only returns indexes of RESULT_FIELDS"),
        }
    }
    reader.finish()?;
    for required in [
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
    ] {
        if !fields.has(required) {
            return Err(CborError::MissingField(required));
        }
    }
    Ok(result)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::encode_base64;

    fn full_request() -> ExecutionRequest {
        ExecutionRequest {
            module: Some(encode_base64(b"\0asm\x01\0\0\0")),
            module_sha256: None,
            invoke: Some("add(1, 2)".into()),
            args: vec!["a".into(), "b c".into()],
            env: [
                ("K".to_owned(), "v".to_owned()),
                ("LONGER".to_owned(), "w".to_owned()),
            ]
            .into_iter()
            .collect(),
            stdin: Some(encode_base64(&[0, 1, 2, 255])),
            limits: Some(RequestedLimits {
                fuel: Some(1000),
                timeout_ms: Some(5),
                ..Default::default()
            }),
            mounts: vec![
                MountRequest {
                    path: "/data".into(),
                    tar: Some(encode_base64(&[7; 1024])),
                    tar_sha256: None,
                    writable: false,
                },
                MountRequest {
                    path: "/out".into(),
                    tar: None,
                    tar_sha256: Some(Hex([0xab; 32])),
                    writable: true,
                },
            ],
            deterministic: true,
            seed: Some(Hex([9; 32])),
        }
    }

    #[test]
    fn the_format_is_told_by_the_first_byte() {
        assert_eq!(Format::of(b"{}"), Format::Json);
        assert_eq!(Format::of(b""), Format::Json);
        assert_eq!(Format::of(&[0xA0]), Format::Cbor);
        assert_eq!(Format::of(&[0xBB]), Format::Cbor);
        assert_eq!(Format::of(&[0xBF]), Format::Json); // indefinite map: not CBOR here
        assert_eq!(Format::of(&[0x9F]), Format::Json);
    }

    #[test]
    fn a_cbor_request_parses_to_the_same_request_as_its_json() {
        let request = full_request();
        let cbor = encode_request(&request).unwrap();
        assert_eq!(Format::of(&cbor), Format::Cbor);
        let (parsed, bytes) = decode_request(&cbor).unwrap();
        let json: ExecutionRequest =
            serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
        assert_eq!(bytes.module.map(encode_base64), json.module);
        assert_eq!(bytes.stdin.map(encode_base64), json.stdin);
        assert_eq!(bytes.tar(0).map(encode_base64), json.mounts[0].tar);
        assert_eq!(bytes.tar(1), None);
        assert_eq!(parsed.module_sha256, json.module_sha256);
        assert_eq!(parsed.invoke, json.invoke);
        assert_eq!(parsed.args, json.args);
        assert_eq!(parsed.env, json.env);
        assert_eq!(parsed.limits, json.limits);
        assert_eq!(parsed.mounts.len(), 2);
        assert_eq!(parsed.mounts[1], json.mounts[1]);
        assert_eq!(parsed.mounts[0].path, "/data");
        assert_eq!(parsed.module, None);
    }

    #[test]
    fn byte_fields_are_borrowed_from_the_plaintext() {
        let cbor = encode_request(&full_request()).unwrap();
        let (_, bytes) = decode_request(&cbor).unwrap();
        let range = cbor.as_ptr_range();
        for field in [bytes.module, bytes.stdin, bytes.tar(0)] {
            let field = field.unwrap();
            assert!(range.contains(&field.as_ptr()), "copied, not borrowed");
        }
    }

    #[test]
    fn a_request_is_written_deterministically() {
        // {"args": ["x"], "module": h'00'} with the shorter key first.
        let request = ExecutionRequest {
            module: Some(encode_base64(&[0])),
            args: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(
            hex::encode(encode_request(&request).unwrap()),
            "a2646172677381617866 6d6f64756c654100".replace(' ', "")
        );
    }

    fn refused(cbor: &[u8]) -> String {
        decode_request(cbor).unwrap_err().to_string()
    }

    #[test]
    fn unknown_and_duplicate_keys_are_refused() {
        // {"argv": []}
        assert_eq!(
            refused(&hex::decode("a1646172677680").unwrap()),
            "unknown field `argv`"
        );
        // {"args": [], "args": []}
        assert_eq!(
            refused(&hex::decode("a2646172677380646172677380").unwrap()),
            "duplicate field `args`"
        );
        // {"env": {"A": "1", "A": "2"}}
        assert_eq!(
            refused(&hex::decode("a163656e76a26141613161416132").unwrap()),
            "duplicate env name `A`"
        );
        // {"limits": {"cpu": 1}}
        assert_eq!(
            refused(&hex::decode("a1666c696d697473a163637075 01".replace(' ', "")).unwrap()),
            "unknown field `cpu`"
        );
        // {"mounts": [{"writable": true}]}
        assert_eq!(
            refused(
                &hex::decode("a1666d6f756e747381a16877726974616 26c65f5".replace(' ', "")).unwrap()
            ),
            "missing field `path`"
        );
    }

    #[test]
    fn indefinite_lengths_trailing_bytes_and_wrong_types_are_refused() {
        // An indefinite-length map starts with 0xBF: not even CBOR to `Format::of`,
        // and refused by the reader too.
        assert!(
            refused(&hex::decode("bf6461726773 80ff".replace(' ', "")).unwrap())
                .contains("indefinite")
        );
        // {"args": [_ "x"]}: an indefinite array inside.
        assert!(
            refused(&hex::decode("a16461726773 9f6178ff".replace(' ', "")).unwrap())
                .contains("indefinite")
        );
        assert!(refused(&hex::decode("a000").unwrap()).contains("trailing"));
        // {"stdin": "text"}: text where bytes go.
        assert!(
            refused(&hex::decode("a165737464696e 6474657874".replace(' ', "")).unwrap())
                .contains("byte string")
        );
        // {"module_sha256": "AB..."}: uppercase hex.
        let mut upper =
            hex::decode("a16d6d6f64756c655f736861323536 7840".replace(' ', "")).unwrap();
        upper.extend_from_slice("AB".repeat(32).as_bytes());
        assert!(refused(&upper).contains("lowercase hex"));
    }

    #[test]
    fn args_past_the_ceiling_are_refused_before_they_are_read() {
        let mut cbor = hex::decode("a16461726773 9a00010001".replace(' ', "")).unwrap();
        cbor.extend(std::iter::repeat_n(0x60, MAX_ARGS_CEILING + 1));
        assert!(refused(&cbor).contains("more than 65536"));
    }

    #[test]
    fn a_result_round_trips_and_is_deterministic() {
        let result = ExecutionResult {
            execution_id: "1b4e28ba-2fa1-41d2-883f-0016d3cca427".into(),
            status: Status::Completed,
            exit_code: Some(-3),
            returns: vec!["3".into()],
            stdout: Base64(b"out".to_vec()),
            stderr: Base64(vec![]),
            stdout_truncated: false,
            stderr_truncated: true,
            error: Some("e".into()),
            fuel_consumed: 10,
            wall_time_us: 20,
            module_sha256: Some(Hex([1; 32])),
            limits: EffectiveLimits {
                fuel: 1,
                memory_bytes: 2,
                timeout_ms: 3,
                max_output_bytes: 4,
                files_bytes: Some(5),
            },
            engine: "wasmtime".into(),
            missing_blobs: Some(vec![Hex([2; 32])]),
            mounts_out: Some(vec![MountOut {
                path: "/out".into(),
                tar: Base64(vec![0; 1024]),
            }]),
            mounts_out_truncated: true,
            deterministic: true,
            engine_sha256: Some(Hex([3; 32])),
        };
        let cbor = encode_result(&result);
        assert_eq!(decode_result(&cbor).unwrap(), result);
        assert_eq!(decode_result_any(&cbor).unwrap(), result);
        // Keys in deterministic order: the first is the shortest, "error" (19 keys).
        assert_eq!(&cbor[..7], &hex::decode("b3656572726f72").unwrap()[..]);
        let mut reader = Reader::new(&cbor);
        reader.skip().unwrap();
        reader.finish().unwrap();
        let v1 = ExecutionResult {
            error: None,
            missing_blobs: None,
            mounts_out: None,
            mounts_out_truncated: false,
            module_sha256: None,
            exit_code: None,
            ..result
        };
        assert_eq!(decode_result(&encode_result(&v1)).unwrap(), v1);
    }

    /// Results with every optional field on and off, strings that JSON escapes,
    /// and byte fields of every length modulo 3 (base64 padding).
    fn results() -> Vec<ExecutionResult> {
        let base = ExecutionResult::blank(
            "1b4e28ba-2fa1-41d2-883f-0016d3cca427".into(),
            EffectiveLimits {
                fuel: 1 << 40,
                memory_bytes: 1 << 20,
                timeout_ms: 3,
                max_output_bytes: 1024,
                files_bytes: None,
            },
            "wasmtime 48.0.8".into(),
        );
        let mut results = vec![base.clone()];
        for n in 0..7usize {
            let bytes = |seed: u8| (0..n * 37).map(|i| (i as u8).wrapping_mul(seed)).collect();
            results.push(ExecutionResult {
                status: Status::Trap,
                exit_code: (n % 2 == 0).then_some(-(n as i32)),
                returns: (0..n).map(|i| format!("\"q\\{i}\" é")).collect(),
                stdout: Base64(bytes(3)),
                stderr: Base64(bytes(7)[..n].to_vec()),
                stdout_truncated: n % 2 == 1,
                stderr_truncated: n % 3 == 1,
                error: (n % 2 == 1).then(|| "a \"trap\"\n\u{1}\u{7f} ünïcode \u{2028}".into()),
                fuel_consumed: n as u64 * 1000,
                wall_time_us: u64::MAX - n as u64,
                module_sha256: (n % 3 != 0).then_some(Hex([n as u8; 32])),
                limits: EffectiveLimits {
                    files_bytes: (n % 2 == 0).then_some(n as u64),
                    ..base.limits
                },
                missing_blobs: (n == 3).then(|| vec![Hex([1; 32]), Hex([2; 32])]),
                mounts_out: (n >= 2).then(|| {
                    (0..n - 1)
                        .map(|i| MountOut {
                            path: format!("/out{i}/\"x\"\u{1}"),
                            tar: Base64(bytes(i as u8 + 1)[..(n * 31 + i) % (n * 37)].to_vec()),
                        })
                        .collect()
                }),
                mounts_out_truncated: n >= 4,
                ..base.clone()
            });
        }
        results
    }

    #[test]
    fn a_result_written_in_one_buffer_is_its_serde_json_and_its_cbor() {
        for result in results() {
            let json = write_result(&result, Format::Json, &mut []);
            assert_eq!(
                String::from_utf8(json.to_vec()).unwrap(),
                serde_json::to_string(&result).unwrap()
            );
            assert_eq!(
                serde_json::from_slice::<ExecutionResult>(&json).unwrap(),
                result
            );
            let cbor = write_result(&result, Format::Cbor, &mut []);
            assert_eq!(decode_result(&cbor).unwrap(), result);
            assert_eq!(&cbor[..], &encode_result(&result)[..]);
            for written in [&json, &cbor] {
                assert_eq!(
                    written.capacity(),
                    written.len() + crate::hpke::NT,
                    "allocated once, with room for the tag"
                );
            }
        }
    }

    /// An archive handed over in pieces of every size from 1 to 7 bytes, then
    /// the rest.
    struct Pieces(Vec<u8>);

    impl ArchiveSource for Pieces {
        fn archive_len(&self) -> u64 {
            self.0.len() as u64
        }

        fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8])) {
            let mut rest = &self.0[..];
            let mut size = 1;
            while !rest.is_empty() {
                let (piece, after) = rest.split_at(size.min(rest.len()));
                sink(piece);
                rest = after;
                size = size % 7 + 1;
            }
        }
    }

    #[test]
    fn archives_streamed_in_pieces_write_what_archives_in_the_result_write() {
        for result in results() {
            let Some(listed) = result.mounts_out.clone() else {
                continue;
            };
            let bare = ExecutionResult {
                mounts_out: None,
                ..result.clone()
            };
            let mut sources: Vec<Pieces> = listed
                .iter()
                .map(|mount| Pieces(mount.tar.0.clone()))
                .collect();
            for format in [Format::Json, Format::Cbor] {
                let mut mounts: Vec<StreamedMount<'_>> = listed
                    .iter()
                    .zip(sources.iter_mut())
                    .map(|(mount, tar)| StreamedMount {
                        path: &mount.path,
                        tar,
                    })
                    .collect();
                let streamed = write_result(&bare, format, &mut mounts);
                assert_eq!(&streamed[..], &write_result(&result, format, &mut [])[..]);
                assert_eq!(streamed.capacity(), streamed.len() + crate::hpke::NT);
            }
        }
    }
}
