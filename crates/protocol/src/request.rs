//! The request plaintext, read once: [`Request::read`] takes an opened plaintext
//! in either format (protocol v1 JSON, v1.1 CBOR) and makes every check the
//! request itself is subject to, in the order PROTOCOL.md gives ("The request
//! plaintext"): the document, the mounts' shape, the module's and archives' bytes,
//! `limits` under the server's maxima, `args`, `env` and `stdin`, and their sizes
//! under the server's ceilings. The outcome is a [`Request`] that can run, or a
//! [`Refused`] naming the first rule broken ([`RequestError`], status
//! `invalid_request`). This is the only place those rules are checked.
//!
//! What the request alone cannot decide is the server's: whether a blob named by
//! hash is in the client's store (`missing_blob`), the module's size (known for a
//! named module only once it is found), each archive's contents, compilation.
//!
//! The module and the archives are [`Source`]s: sent (borrowed from a CBOR
//! plaintext, or decoded from JSON's base64, with their SHA-256) or named by
//! SHA-256. A server keeps every blob a request sent, even when the request is
//! then refused (PROTOCOL.md, "Blobs and compiled code"), so a refusal hands back
//! the sources read before it.

use zeroize::{Zeroize, Zeroizing};

use crate::cbor::CborError;
use crate::digest::sha256;
use crate::encoding::{Hex, decode_base64};
use crate::payload::{
    EffectiveLimits, ExecutionRequest, LimitError, MountPathError, MountRequest, check_mount_path,
    mount_path_within,
};
use crate::plaintext::{self, Format, RequestBytes};

/// The server's bounds a request is read under, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceilings {
    /// The largest value of each limit; a request may only lower them.
    pub maxima: EffectiveLimits,
    /// Most `args` entries (`limits.max_args`).
    pub max_args: usize,
    /// Most `env` entries (`limits.max_env`).
    pub max_env: usize,
    /// Most bytes of `args` and `env` as the guest counts them
    /// (`limits.max_args_env_bytes`).
    pub max_args_env_bytes: usize,
}

/// Why an opened plaintext is not a request that can run (status
/// `invalid_request`); the text is the result's `error`.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The plaintext is not an `ExecutionRequest` in JSON.
    #[error("the request is not a valid execution request: {0}")]
    NotARequest(serde_json::Error),
    /// The plaintext is a CBOR map but not an `ExecutionRequest` in the strict
    /// CBOR of protocol v1.1 §C.
    #[error("the request is not a valid execution request: {0}")]
    NotACborRequest(CborError),
    /// A mount's path is not absolute and normalized.
    #[error("`mounts[{index}].path` {reason}")]
    MountPath {
        index: usize,
        reason: MountPathError,
    },
    /// A mount with both `tar` and `tar_sha256`, or a read-only one with neither.
    #[error(
        "`mounts[{0}]` needs exactly one of `tar` and `tar_sha256` (a writable mount may \
         have neither and starts empty)"
    )]
    MountSource(usize),
    /// Two mounts at the same path, or one inside another.
    #[error("`mounts[{inner}].path` is inside `mounts[{outer}].path`; mounts may not overlap")]
    MountsOverlap { inner: usize, outer: usize },
    /// Neither or both of `module` and `module_sha256`.
    #[error("exactly one of `module` and `module_sha256` is required")]
    ModuleChoice,
    /// `module` is not base64.
    #[error("`module` is not valid base64: {0}")]
    ModuleBase64(base64::DecodeError),
    /// A mount's `tar` is not base64.
    #[error("`mounts[{index}].tar` is not valid base64: {error}")]
    TarBase64 {
        index: usize,
        error: base64::DecodeError,
    },
    /// A requested limit is refused (it names the key).
    #[error(transparent)]
    Limits(LimitError),
    /// `stdin` is not base64.
    #[error("`stdin` is not valid base64: {0}")]
    StdinBase64(base64::DecodeError),
    /// An argument holds a NUL, which WASI cannot pass.
    #[error("`args` may not contain NUL characters")]
    NulInArgs,
    /// An environment name is empty or holds `=` or NUL.
    #[error("`env` names must be non-empty and may not contain `=` or NUL")]
    BadEnvName,
    /// An environment value holds a NUL.
    #[error("`env` values may not contain NUL characters")]
    NulInEnvValue,
    /// More `args` than `limits.max_args`.
    #[error("`args` has {count} entries; this server allows at most {max} (limits.max_args)")]
    TooManyArgs { count: usize, max: usize },
    /// More `env` variables than `limits.max_env`.
    #[error("`env` has {count} entries; this server allows at most {max} (limits.max_env)")]
    TooManyEnv { count: usize, max: usize },
    /// argv and environment, as the guest counts them, past `limits.max_args_env_bytes`.
    #[error(
        "`args` and `env` take {bytes} bytes; this server allows at most {max} \
         (limits.max_args_env_bytes)"
    )]
    TooManyArgsEnvBytes { bytes: usize, max: usize },
    /// A `seed` in a request that is not `deterministic` (it would mean nothing).
    #[error("`seed` is only allowed with `\"deterministic\": true`")]
    SeedWithoutDeterministic,
}

/// Bytes a request sends: a CBOR request's, borrowed from its plaintext (no
/// copy), or a JSON request's, decoded from base64 (zeroized when dropped).
pub enum SentBytes<'a> {
    Borrowed(&'a [u8]),
    Decoded(Zeroizing<Vec<u8>>),
}

impl SentBytes<'_> {
    /// The bytes as a vector of their own: borrowed ones copied (once), decoded
    /// ones moved.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            SentBytes::Borrowed(bytes) => bytes.to_vec(),
            SentBytes::Decoded(mut bytes) => std::mem::take(&mut *bytes),
        }
    }
}

impl Default for SentBytes<'_> {
    fn default() -> Self {
        SentBytes::Borrowed(&[])
    }
}

impl std::ops::Deref for SentBytes<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SentBytes::Borrowed(bytes) => bytes,
            SentBytes::Decoded(bytes) => bytes,
        }
    }
}

/// Where a module's or an archive's bytes come from.
pub enum Source<'a> {
    /// Sent in the request.
    Sent {
        sha256: [u8; 32],
        bytes: SentBytes<'a>,
    },
    /// Named by its SHA-256 (protocol v1.1 §D), to be found in the client's store.
    Named([u8; 32]),
}

impl Source<'_> {
    /// The SHA-256 of its bytes, computed or named.
    pub fn sha256(&self) -> [u8; 32] {
        match self {
            Source::Sent { sha256, .. } | Source::Named(sha256) => *sha256,
        }
    }

    fn sent(bytes: SentBytes<'_>) -> Source<'_> {
        Source::Sent {
            sha256: sha256(&bytes),
            bytes,
        }
    }
}

/// Plaintext-derived bytes are never printed: their hash and length only.
impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Sent { sha256, bytes } => f
                .debug_struct("Sent")
                .field("sha256", &Hex(*sha256))
                .field("len", &bytes.len())
                .finish(),
            Source::Named(sha256) => f.debug_tuple("Named").field(&Hex(*sha256)).finish(),
        }
    }
}

/// One directory the guest sees (protocol v1.1 §E), its path checked.
pub struct Mount<'a> {
    /// Absolute and normalized, inside no other mount's.
    pub path: String,
    pub writable: bool,
    /// Its initial contents; `None` (writable mounts only) starts empty.
    pub archive: Option<Source<'a>>,
}

/// The guest's argv (without argv\[0\]), environment and stdin, checked for what
/// WASI cannot carry and against the server's ceilings. Its strings are zeroized
/// when it drops; a taker moves them out first.
#[derive(Default)]
pub struct Input<'a> {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: SentBytes<'a>,
}

impl Drop for Input<'_> {
    fn drop(&mut self) {
        // Plaintext-derived: cleared before the allocator sees it again.
        self.args.zeroize();
        for (name, value) in &mut self.env {
            name.zeroize();
            value.zeroize();
        }
    }
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("args", &self.args.len())
            .field("env", &self.env.len())
            .field("stdin_bytes", &self.stdin.len())
            .finish()
    }
}

/// A request that passed every check of its own: what the server resolves,
/// prepares and runs.
pub struct Request<'a> {
    pub module: Source<'a>,
    /// In request order.
    pub mounts: Vec<Mount<'a>>,
    /// A WAVE call expression, instead of running a command.
    pub invoke: Option<String>,
    pub input: Input<'a>,
    /// The limits in force: the request's, under the server's maxima.
    pub limits: EffectiveLimits,
    /// It has mounts or asks for `limits.files_bytes`: only then does its result
    /// show `limits.files_bytes`, so that a v1 request's result is a v1 result.
    pub uses_files: bool,
    /// `"deterministic": true` (protocol v1.2 §R): the seed its random bytes
    /// come from (zero when the request names none).
    pub deterministic: Option<Seed>,
}

/// The seed of a deterministic execution's random bytes (protocol v1.2 §R);
/// never printed.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Seed(pub [u8; 32]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

/// The plaintext's content is not printed: the module's hash, counts and
/// limits only.
impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("module", &self.module)
            .field("mounts", &self.mounts.len())
            .field("invoke", &self.invoke.is_some())
            .field("input", &self.input)
            .field("limits", &self.limits)
            .field("uses_files", &self.uses_files)
            .field("deterministic", &self.deterministic.is_some())
            .finish()
    }
}

/// A request refused by its own checks, with what its result shows of it.
#[derive(Debug)]
pub struct Refused<'a> {
    pub error: RequestError,
    /// The module and archives read before the refusal, module first: all of them
    /// for a refusal after its blobs were read, those before a mount's bad base64,
    /// else none. The server keeps those sent all the same.
    pub read: Vec<Source<'a>>,
    /// The module's SHA-256, when all the request's blobs were read.
    pub module_sha256: Option<[u8; 32]>,
    /// The limits in force as the result shows them, when they were applied.
    pub limits: Option<EffectiveLimits>,
}

impl Refused<'_> {
    /// Refused before its module and archives were read.
    fn early(error: RequestError) -> Box<Self> {
        Box::new(Refused {
            error,
            read: Vec::new(),
            module_sha256: None,
            limits: None,
        })
    }
}

impl<'a> Request<'a> {
    /// Reads an opened request plaintext in its format (protocol v1.1 §C: a CBOR
    /// map head first is CBOR, anything else JSON exactly as in v1), checking it
    /// under `ceilings` and stopping at the first rule it breaks. A CBOR
    /// request's byte fields stay in `plaintext`, borrowed; JSON's base64 text is
    /// zeroized as it is decoded.
    pub fn read(plaintext: &'a [u8], ceilings: &Ceilings) -> Result<Request<'a>, Box<Refused<'a>>> {
        let (mut request, bytes) = parse(plaintext).map_err(Refused::early)?;
        if request.seed.is_some() && !request.deterministic {
            return Err(Refused::early(RequestError::SeedWithoutDeterministic));
        }
        let deterministic = request
            .deterministic
            .then(|| Seed(request.seed.map_or([0; 32], |seed| seed.0)));
        let uses_files = !request.mounts.is_empty()
            || request
                .limits
                .is_some_and(|limits| limits.files_bytes.is_some());
        check_mounts(&request.mounts, &bytes).map_err(Refused::early)?;
        let (module, mounts) = read_blobs(&mut request, &bytes)?;
        let refuse = |error, module: Source<'a>, mounts: Vec<Mount<'a>>, limits| {
            Box::new(Refused {
                error,
                module_sha256: Some(module.sha256()),
                read: std::iter::once(module)
                    .chain(mounts.into_iter().filter_map(|mount| mount.archive))
                    .collect(),
                limits,
            })
        };
        let limits = match EffectiveLimits::apply(ceilings.maxima, request.limits) {
            Ok(limits) => limits,
            Err(error) => return Err(refuse(RequestError::Limits(error), module, mounts, None)),
        };
        let shown = shown_limits(limits, uses_files);
        let input = match read_input(&mut request, bytes.stdin, ceilings) {
            Ok(input) => input,
            Err(error) => return Err(refuse(error, module, mounts, Some(shown))),
        };
        Ok(Request {
            module,
            mounts,
            invoke: request.invoke.take(),
            input,
            limits,
            uses_files,
            deterministic,
        })
    }

    /// The limits as the result shows them: `files_bytes` only for a request
    /// that uses files.
    pub fn shown_limits(&self) -> EffectiveLimits {
        shown_limits(self.limits, self.uses_files)
    }

    /// Whether any mount is writable (and so comes back in `mounts_out`).
    pub fn has_writable_mounts(&self) -> bool {
        self.mounts.iter().any(|mount| mount.writable)
    }
}

fn shown_limits(limits: EffectiveLimits, uses_files: bool) -> EffectiveLimits {
    EffectiveLimits {
        files_bytes: limits.files_bytes.filter(|_| uses_files),
        ..limits
    }
}

/// The document in its format; a CBOR request's byte fields borrowed.
fn parse(plaintext: &[u8]) -> Result<(ExecutionRequest, RequestBytes<'_>), RequestError> {
    match Format::of(plaintext) {
        Format::Json => serde_json::from_slice(plaintext)
            .map(|request| (request, RequestBytes::default()))
            .map_err(RequestError::NotARequest),
        Format::Cbor => plaintext::decode_request(plaintext).map_err(RequestError::NotACborRequest),
    }
}

/// The shape of the mounts (protocol v1.1 §E): each path absolute and
/// normalized, each with at most one of `tar` and `tar_sha256` and a read-only
/// one with exactly one, then no two overlapping. `bytes` holds a CBOR
/// request's archives.
fn check_mounts(mounts: &[MountRequest], bytes: &RequestBytes<'_>) -> Result<(), RequestError> {
    for (index, mount) in mounts.iter().enumerate() {
        check_mount_path(&mount.path)
            .map_err(|reason| RequestError::MountPath { index, reason })?;
        let sources = usize::from(mount.tar.is_some() || bytes.tar(index).is_some())
            + usize::from(mount.tar_sha256.is_some());
        if sources > 1 || (sources == 0 && !mount.writable) {
            return Err(RequestError::MountSource(index));
        }
    }
    for (inner, mount) in mounts.iter().enumerate() {
        for (outer, other) in mounts.iter().enumerate() {
            if inner != outer && mount_path_within(&mount.path, &other.path) {
                return Err(RequestError::MountsOverlap { inner, outer });
            }
        }
    }
    Ok(())
}

/// The module and each mount's archive as sources, the base64 text of each
/// zeroized as it is decoded. A bad archive base64 is refused with the sources
/// read before it.
fn read_blobs<'a>(
    request: &mut ExecutionRequest,
    bytes: &RequestBytes<'a>,
) -> Result<(Source<'a>, Vec<Mount<'a>>), Box<Refused<'a>>> {
    let module = read_module(request, bytes).map_err(Refused::early)?;
    let mut mounts: Vec<Mount<'a>> = Vec::with_capacity(request.mounts.len());
    for (index, mount) in request.mounts.iter_mut().enumerate() {
        let archive = match (mount.tar.take(), mount.tar_sha256.take(), bytes.tar(index)) {
            (None, _, Some(tar)) => Some(Source::sent(SentBytes::Borrowed(tar))),
            (Some(text), _, _) => match decode_zeroizing(text) {
                Ok(tar) => Some(Source::sent(SentBytes::Decoded(tar))),
                Err(error) => {
                    let read = std::iter::once(module)
                        .chain(mounts.into_iter().filter_map(|mount| mount.archive))
                        .collect();
                    let mut refused = Refused::early(RequestError::TarBase64 { index, error });
                    refused.read = read;
                    return Err(refused);
                }
            },
            (None, Some(Hex(hash)), None) => Some(Source::Named(hash)),
            (None, None, None) => None,
        };
        mounts.push(Mount {
            path: std::mem::take(&mut mount.path),
            writable: mount.writable,
            archive,
        });
    }
    Ok((module, mounts))
}

/// Exactly one of `module` (base64 in JSON, bytes in CBOR) and `module_sha256`.
fn read_module<'a>(
    request: &mut ExecutionRequest,
    bytes: &RequestBytes<'a>,
) -> Result<Source<'a>, RequestError> {
    match (
        request.module.take(),
        request.module_sha256.take(),
        bytes.module,
    ) {
        (None, None, Some(module)) => Ok(Source::sent(SentBytes::Borrowed(module))),
        (Some(text), None, _) => decode_zeroizing(text)
            .map(|module| Source::sent(SentBytes::Decoded(module)))
            .map_err(RequestError::ModuleBase64),
        (None, Some(Hex(hash)), None) => Ok(Source::Named(hash)),
        (Some(mut text), Some(_), _) => {
            text.zeroize();
            Err(RequestError::ModuleChoice)
        }
        (None, Some(_), Some(_)) | (None, None, None) => Err(RequestError::ModuleChoice),
    }
}

/// Base64 `text` decoded, the text zeroized whatever the outcome.
fn decode_zeroizing(mut text: String) -> Result<Zeroizing<Vec<u8>>, base64::DecodeError> {
    let decoded = decode_base64(&text);
    text.zeroize();
    decoded.map(Zeroizing::new)
}

/// The guest's argv, env and stdin: what WASI cannot carry refused (NUL in an
/// argument or a value; a name empty or with `=` or NUL), then their sizes
/// against the ceilings. `stdin` is a CBOR request's, borrowed.
fn read_input<'a>(
    request: &mut ExecutionRequest,
    stdin: Option<&'a [u8]>,
    ceilings: &Ceilings,
) -> Result<Input<'a>, RequestError> {
    // Moved into an `Input` first: it zeroizes them when dropped, also when they
    // are refused below.
    let mut input = Input {
        args: std::mem::take(&mut request.args),
        env: std::mem::take(&mut request.env).into_iter().collect(),
        stdin: SentBytes::Borrowed(stdin.unwrap_or_default()),
    };
    if let Some(text) = request.stdin.take() {
        input.stdin =
            SentBytes::Decoded(decode_zeroizing(text).map_err(RequestError::StdinBase64)?);
    }
    if input.args.iter().any(|arg| arg.contains('\0')) {
        return Err(RequestError::NulInArgs);
    }
    for (name, value) in &input.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(RequestError::BadEnvName);
        }
        if value.contains('\0') {
            return Err(RequestError::NulInEnvValue);
        }
    }
    check_input_size(&input, ceilings)?;
    Ok(input)
}

/// At most `max_args` arguments, `max_env` variables, and `max_args_env_bytes`
/// in all as the guest's `args_sizes_get`/`environ_sizes_get` count them (each
/// string and its NUL, `NAME=value` for a variable).
fn check_input_size(input: &Input<'_>, ceilings: &Ceilings) -> Result<(), RequestError> {
    if input.args.len() > ceilings.max_args {
        return Err(RequestError::TooManyArgs {
            count: input.args.len(),
            max: ceilings.max_args,
        });
    }
    if input.env.len() > ceilings.max_env {
        return Err(RequestError::TooManyEnv {
            count: input.env.len(),
            max: ceilings.max_env,
        });
    }
    let args: usize = input.args.iter().map(|arg| arg.len() + 1).sum();
    let env: usize = input
        .env
        .iter()
        .map(|(name, value)| name.len() + value.len() + 2)
        .sum();
    if args + env > ceilings.max_args_env_bytes {
        return Err(RequestError::TooManyArgsEnvBytes {
            bytes: args + env,
            max: ceilings.max_args_env_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::encode_base64;

    const CEILINGS: Ceilings = Ceilings {
        maxima: EffectiveLimits {
            fuel: 1000,
            memory_bytes: 1 << 20,
            timeout_ms: 100,
            max_output_bytes: 64,
            files_bytes: Some(1 << 10),
        },
        max_args: 2,
        max_env: 1,
        max_args_env_bytes: 9,
    };

    const HASH: &str = "abababababababababababababababababababababababababababababababab";

    fn read(plaintext: &str) -> Result<Request<'_>, Box<Refused<'_>>> {
        Request::read(plaintext.as_bytes(), &CEILINGS)
    }

    fn refusal(plaintext: &str) -> Box<Refused<'_>> {
        read(plaintext).expect_err(plaintext)
    }

    /// A JSON request with a module sent as `bytes` and the rest of its fields.
    fn with_module(bytes: &[u8], rest: &str) -> String {
        let module = encode_base64(bytes);
        format!(r#"{{"module":"{module}"{rest}}}"#)
    }

    #[test]
    fn a_json_request_reads_into_sources_input_and_limits() {
        let tar = encode_base64(b"archive");
        let plaintext = with_module(
            b"\0asm",
            &format!(
                r#","invoke":"f(1)","args":["a"],"env":{{"N":"v"}},"stdin":"aGk=",
                "limits":{{"fuel":5}},
                "mounts":[{{"path":"/in","tar":"{tar}"}},{{"path":"/lib","tar_sha256":"{HASH}"}},
                          {{"path":"/out","writable":true}}]"#
            ),
        );
        let request = read(&plaintext).unwrap();
        assert!(
            matches!(&request.module, Source::Sent { bytes: SentBytes::Decoded(bytes), .. }
            if bytes[..] == b"\0asm"[..])
        );
        assert_eq!(request.module.sha256(), sha256(b"\0asm"));
        assert_eq!(request.invoke.as_deref(), Some("f(1)"));
        assert_eq!(request.input.args, ["a"]);
        assert_eq!(request.input.env, [("N".to_owned(), "v".to_owned())]);
        assert_eq!(&request.input.stdin[..], b"hi");
        assert_eq!(request.limits.fuel, 5);
        assert_eq!(request.limits.files_bytes, Some(1 << 10));
        assert_eq!(request.shown_limits(), request.limits, "it uses files");
        let mounts: Vec<_> = request
            .mounts
            .iter()
            .map(|mount| {
                (
                    mount.path.as_str(),
                    mount.writable,
                    mount.archive.as_ref().map(Source::sha256),
                )
            })
            .collect();
        assert_eq!(
            mounts,
            [
                ("/in", false, Some(sha256(b"archive"))),
                ("/lib", false, Some([0xab; 32])),
                ("/out", true, None),
            ]
        );
        assert!(request.has_writable_mounts());
    }

    #[test]
    fn a_v1_request_shows_no_files_limit() {
        let named = format!(r#"{{"module_sha256":"{HASH}"}}"#);
        let request = read(&named).unwrap();
        assert!(matches!(request.module, Source::Named([0xab, ..])));
        assert_eq!(request.limits, CEILINGS.maxima);
        assert_eq!(request.shown_limits().files_bytes, None);
        assert!(!request.has_writable_mounts());
        let files = format!(r#"{{"module_sha256":"{HASH}","limits":{{"files_bytes":7}}}}"#);
        let asked = read(&files).unwrap();
        assert_eq!(asked.shown_limits().files_bytes, Some(7));
    }

    #[test]
    fn a_cbor_request_borrows_its_bytes_from_the_plaintext() {
        let request = ExecutionRequest {
            module: Some(encode_base64(b"module")),
            stdin: Some(encode_base64(b"input")),
            mounts: vec![MountRequest {
                path: "/a".to_owned(),
                tar: Some(encode_base64(b"tar")),
                ..Default::default()
            }],
            ..Default::default()
        };
        let plaintext = plaintext::encode_request(&request).unwrap();
        let read = Request::read(&plaintext, &CEILINGS).unwrap();
        let within = |part: &[u8]| plaintext.as_ptr_range().contains(&part.as_ptr());
        let Source::Sent {
            bytes: SentBytes::Borrowed(module),
            sha256: hash,
        } = read.module
        else {
            panic!("the module is borrowed");
        };
        assert!(within(module) && module == b"module");
        assert_eq!(hash, sha256(b"module"));
        assert!(matches!(read.input.stdin, SentBytes::Borrowed(stdin) if within(stdin)));
        assert!(matches!(&read.mounts[0].archive,
            Some(Source::Sent { bytes: SentBytes::Borrowed(tar), .. }) if within(tar)));
    }

    /// Every refusal before the blobs are read: the exact error, nothing read,
    /// nothing shown.
    #[test]
    fn each_early_refusal_names_its_rule() {
        let bad_path = r#"{"mounts":[{"path":"a","writable":true}]}"#;
        for (plaintext, error) in [
            (
                "not json",
                "the request is not a valid execution request: expected ident at line 1 column 2",
            ),
            (
                r#"{"module":"","argv":[]}"#,
                "the request is not a valid execution request: unknown field `argv`, expected \
                 one of `module`, `module_sha256`, `invoke`, `args`, `env`, `stdin`, `limits`, \
                 `mounts`, `deterministic`, `seed` at line 1 column 19",
            ),
            // The mounts before the module: a request with neither module nor
            // good mounts is refused for its mounts.
            (bad_path, "`mounts[0].path` must start with `/`"),
            (
                r#"{"mounts":[{"path":"/a"}]}"#,
                "`mounts[0]` needs exactly one of `tar` and `tar_sha256` (a writable mount may \
                 have neither and starts empty)",
            ),
            (
                r#"{"mounts":[{"path":"/a","tar":"","tar_sha256":"00"}]}"#,
                "the request is not a valid execution request: expected lowercase hex of 32 \
                 bytes at line 1 column 50",
            ),
            (
                &format!(r#"{{"mounts":[{{"path":"/a","tar":"","tar_sha256":"{HASH}"}}]}}"#),
                "`mounts[0]` needs exactly one of `tar` and `tar_sha256` (a writable mount may \
                 have neither and starts empty)",
            ),
            (
                r#"{"mounts":[{"path":"/a/b","writable":true},{"path":"/a","writable":true}]}"#,
                "`mounts[0].path` is inside `mounts[1].path`; mounts may not overlap",
            ),
            (
                "{}",
                "exactly one of `module` and `module_sha256` is required",
            ),
            (
                &format!(r#"{{"module":"","module_sha256":"{HASH}"}}"#),
                "exactly one of `module` and `module_sha256` is required",
            ),
            (
                r#"{"module":"!!!!"}"#,
                "`module` is not valid base64: Invalid symbol 33, offset 0.",
            ),
        ] {
            let refused = refusal(plaintext);
            assert_eq!(refused.error.to_string(), error, "{plaintext}");
            assert!(refused.read.is_empty(), "{plaintext}");
            assert_eq!(refused.module_sha256, None, "{plaintext}");
            assert_eq!(refused.limits, None, "{plaintext}");
        }
        assert!(matches!(
            refusal("null").error,
            RequestError::NotARequest(_)
        ));
        assert!(matches!(
            refusal(bad_path).error,
            RequestError::MountPath {
                index: 0,
                reason: MountPathError::NotAbsolute
            }
        ));
    }

    #[test]
    fn a_cbor_document_breaking_the_strict_rules_is_refused() {
        // A map of one key that is not a request field.
        let refused = Request::read(b"\xa1\x61x\x00", &CEILINGS).unwrap_err();
        assert!(matches!(refused.error, RequestError::NotACborRequest(_)));
        assert!(
            refused
                .error
                .to_string()
                .starts_with("the request is not a valid execution request: "),
            "{}",
            refused.error
        );
        // Module bytes and a module hash: one too many.
        let request = ExecutionRequest {
            module: Some(encode_base64(b"m")),
            module_sha256: Some(Hex([1; 32])),
            ..Default::default()
        };
        let plaintext = plaintext::encode_request(&request).unwrap();
        let refused = Request::read(&plaintext, &CEILINGS).unwrap_err();
        assert!(matches!(refused.error, RequestError::ModuleChoice));
    }

    #[test]
    fn a_bad_archive_base64_hands_back_what_was_read_before_it() {
        let plaintext = with_module(
            b"m",
            &format!(
                r#","mounts":[{{"path":"/a","tar":"dGFy"}},{{"path":"/b","tar_sha256":"{HASH}"}},
                {{"path":"/c","tar":"*"}},{{"path":"/d","tar":"dGFy"}}]"#
            ),
        );
        let refused = refusal(&plaintext);
        assert_eq!(
            refused.error.to_string(),
            "`mounts[2].tar` is not valid base64: Invalid symbol 42, offset 0."
        );
        let read: Vec<_> = refused.read.iter().map(Source::sha256).collect();
        assert_eq!(read, [sha256(b"m"), sha256(b"tar"), [0xab; 32]]);
        assert_eq!(refused.module_sha256, None, "not every blob was read");
        assert_eq!(refused.limits, None);
    }

    #[test]
    fn a_refused_limit_hands_back_every_blob_and_the_module_hash() {
        let plaintext = with_module(
            b"m",
            &format!(
                r#","limits":{{"fuel":1001}},"args":["\u0000"],
                "mounts":[{{"path":"/a","tar_sha256":"{HASH}"}}]"#
            ),
        );
        let refused = refusal(&plaintext);
        assert_eq!(
            refused.error.to_string(),
            "limits.fuel = 1001 is above the server's maximum of 1000"
        );
        assert!(matches!(
            refused.error,
            RequestError::Limits(LimitError::AboveMaximum { name: "fuel", .. })
        ));
        let read: Vec<_> = refused.read.iter().map(Source::sha256).collect();
        assert_eq!(read, [sha256(b"m"), [0xab; 32]]);
        assert_eq!(refused.module_sha256, Some(sha256(b"m")));
        assert_eq!(refused.limits, None, "the result shows the maxima");
        let no_time = format!(r#"{{"module_sha256":"{HASH}","limits":{{"timeout_ms":0}}}}"#);
        let zero = refusal(&no_time);
        assert_eq!(
            zero.error.to_string(),
            "limits.timeout_ms = 0 is below the minimum of 1"
        );
    }

    /// Every refusal of the guest's input: the exact error, with the blobs, the
    /// module's hash and the limits in force as the result shows them.
    #[test]
    fn each_input_refusal_names_its_rule_and_shows_the_limits() {
        for (rest, error) in [
            (
                r#","stdin":"%""#,
                "`stdin` is not valid base64: Invalid symbol 37, offset 0.",
            ),
            (
                r#","args":["a\u0000"]"#,
                "`args` may not contain NUL characters",
            ),
            (
                r#","env":{"":"v"}"#,
                "`env` names must be non-empty and may not contain `=` or NUL",
            ),
            (
                r#","env":{"A=B":"v"}"#,
                "`env` names must be non-empty and may not contain `=` or NUL",
            ),
            (
                r#","env":{"A\u0000":"v"}"#,
                "`env` names must be non-empty and may not contain `=` or NUL",
            ),
            (
                r#","env":{"A":"\u0000"}"#,
                "`env` values may not contain NUL characters",
            ),
            // NUL is checked before the counts: three arguments, one with NUL.
            (
                r#","args":["a","b","\u0000"]"#,
                "`args` may not contain NUL characters",
            ),
            (
                r#","args":["a","b","c"]"#,
                "`args` has 3 entries; this server allows at most 2 (limits.max_args)",
            ),
            (
                r#","env":{"A":"1","B":"2"}"#,
                "`env` has 2 entries; this server allows at most 1 (limits.max_env)",
            ),
            // "ab\0" + "cd\0" + "N=v\0": 3 + 3 + 4 bytes, one past the ceiling.
            (
                r#","args":["ab","cd"],"env":{"N":"v"}"#,
                "`args` and `env` take 10 bytes; this server allows at most 9 \
                 (limits.max_args_env_bytes)",
            ),
        ] {
            let plaintext = with_module(b"m", &format!(r#","limits":{{"fuel":3}}{rest}"#));
            let refused = refusal(&plaintext);
            assert_eq!(refused.error.to_string(), error, "{rest}");
            assert_eq!(refused.module_sha256, Some(sha256(b"m")));
            assert_eq!(refused.read.len(), 1);
            let shown = EffectiveLimits {
                fuel: 3,
                files_bytes: None,
                ..CEILINGS.maxima
            };
            assert_eq!(refused.limits, Some(shown), "{rest}");
        }
        // At the ceilings exactly: "a\0" + "bc\0" + "N=v\0" is 9 bytes.
        let plaintext = with_module(b"m", r#","args":["a","bc"],"env":{"N":"v"}"#);
        assert!(read(&plaintext).is_ok());
    }

    #[test]
    fn the_first_rule_broken_is_the_one_named() {
        // Bad limits and a NUL argument: the limits come first.
        let plaintext = with_module(b"m", r#","limits":{"fuel":0},"args":["\u0000"]"#);
        assert!(matches!(refusal(&plaintext).error, RequestError::Limits(_)));
        // A bad module and a bad mount: the mount comes first.
        let refused = refusal(r#"{"module":"*","mounts":[{"path":"/"}]}"#);
        assert!(matches!(refused.error, RequestError::MountSource(0)));
        // A mount's path before its source, mount by mount.
        let refused = refusal(r#"{"mounts":[{"path":"/a"},{"path":"b","writable":true}]}"#);
        assert!(matches!(refused.error, RequestError::MountSource(0)));
    }
}
