"""The client: ``Client(url).run(module, ...)`` seals a request to a session key the
server signed, sends it, opens the result and checks its commitment; ``verify``
proves an execution from its receipt against the server's log.

Protocol v1.1 by default (``wire="v1.1"``): sessions from signed batches kept in a
pool, binary ``/execute`` bodies, CBOR plaintexts, modules and archives named by
SHA-256 once the server has them (sent again when it answers ``missing_blob``),
and long jobs with ``Prefer: respond-async`` (:meth:`Client.submit`,
:meth:`Client.result`). ``wire="v1"`` is protocol v1 exactly: JSON bodies and
plaintexts, one session per execution, every blob by its bytes.
"""

from __future__ import annotations

import collections
import datetime
import io
import json
import os
import tarfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from cryptography.exceptions import InvalidTag

from . import _cbor, _crypto
from ._http import Http, parse_json, retry_after, server_error
from .errors import (
    BadSessionSignature,
    Check,
    KeyMismatch,
    ProtocolViolation,
    ServerError,
    VerificationFailed,
)
from .receipt import RECEIPT_VERSION, STATUSES, Receipt, b64decode, b64encode, check_receipt

__all__ = [
    "Client",
    "ExecutionResult",
    "Job",
    "Mount",
    "MountOut",
    "ServerIdentity",
    "pack_directory",
    "verify_receipt",
]

PathLike = Union[str, "os.PathLike[str]"]
LIMIT_NAMES = ("fuel", "memory_bytes", "timeout_ms", "max_output_bytes", "files_bytes")
#: Modules and archives smaller than this go by bytes under ``references="auto"``:
#: naming them saves little, and a reference the server lost costs a round trip.
REFERENCE_MIN_BYTES = 4096


# ---------------------------------------------------------------------------
# What a caller passes and gets back


def pack_directory(host_dir: PathLike) -> bytes:
    """A tar archive (pax) of the regular files and directories under ``host_dir``,
    sorted by name, as a mount's ``tar``. A symbolic link or any other kind of file
    is an error (the server refuses them)."""
    root = os.fspath(host_dir)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                relative = os.path.relpath(full, root).replace(os.sep, "/")
                if os.path.islink(full):
                    raise ValueError(f"{full} is a symbolic link: a mount holds regular files and directories only")
                info = tarfile.TarInfo(relative)
                stat = os.stat(full)
                info.mtime = int(stat.st_mtime)
                info.uid = info.gid = 0
                if os.path.isdir(full):
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    archive.addfile(info)
                elif os.path.isfile(full):
                    info.mode = 0o644
                    info.size = stat.st_size
                    with open(full, "rb") as file:
                        archive.addfile(info, file)
                else:
                    raise ValueError(f"{full} is neither a regular file nor a directory")
    return buffer.getvalue()


@dataclass
class Mount:
    """A directory the guest sees at ``path`` (protocol v1.1 §E): the contents of
    ``tar`` (a tar archive), or empty; writable ones come back in ``mounts_out``."""

    path: str
    tar: Optional[bytes] = None
    writable: bool = False

    @classmethod
    def directory(cls, path: str, host_dir: PathLike, writable: bool = False) -> "Mount":
        """The host directory ``host_dir`` (packed with :func:`pack_directory`) at ``path``."""
        return cls(path, pack_directory(host_dir), writable)


@dataclass
class MountOut:
    """A writable mount as the guest left it: ``tar`` is a ustar/pax archive."""

    path: str
    tar: bytes

    def files(self) -> Dict[str, bytes]:
        """Every regular file of the archive, by its name inside the mount."""
        out: Dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(self.tar), mode="r:") as archive:
            for member in archive.getmembers():
                if member.isfile():
                    extracted = archive.extractfile(member)
                    out[member.name] = extracted.read() if extracted is not None else b""
        return out

    def extract(self, host_dir: PathLike) -> None:
        """Writes the archive's files and directories under ``host_dir``; a name that
        would leave it is refused."""
        root = os.path.realpath(os.fspath(host_dir))
        os.makedirs(root, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(self.tar), mode="r:") as archive:
            for member in archive.getmembers():
                target = os.path.realpath(os.path.join(root, member.name))
                if os.path.commonpath([root, target]) != root:
                    raise ValueError(f"archive member {member.name!r} is outside the directory")
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                elif member.isfile():
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    extracted = archive.extractfile(member)
                    with open(target, "wb") as file:
                        file.write(extracted.read() if extracted is not None else b"")
                else:
                    raise ValueError(f"archive member {member.name!r} is not a file or directory")


@dataclass
class ExecutionResult:
    """A finished execution, opened and checked (its commitment is the one request
    and result give). ``stdout``, ``stderr`` are bytes; ``receipt`` proves it later."""

    execution_id: str
    status: str
    exit_code: Optional[int]
    stdout: bytes
    stderr: bytes
    returns: List[str]
    fuel_consumed: int
    wall_time_us: int
    receipt: Receipt
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: Optional[str] = None
    module_sha256: Optional[str] = None
    limits: Dict[str, int] = field(default_factory=dict)
    engine: str = ""
    missing_blobs: Optional[List[str]] = None
    mounts_out: Optional[List[MountOut]] = None
    log_index: int = 0
    commitment: str = ""
    #: SHA-256s (hex) the final request named instead of sending.
    sent_by_reference: List[str] = field(default_factory=list)
    #: SHA-256s (hex) the server had lost (``missing_blob``), sent again by bytes.
    resent_blobs: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The guest ran to the end and exited 0 (or an ``invoke`` returned)."""
        return self.status == "completed" and self.exit_code in (0, None)


@dataclass(frozen=True)
class ServerIdentity:
    """The server's key from ``GET /keys``."""

    origin: str
    key: _crypto.ServerKey
    key_id: str


@dataclass
class _Session:
    session_id: str
    public_key: bytes
    expires_at: float


@dataclass
class _Blob:
    data: bytes
    sha256: str


@dataclass
class _Spec:
    """A request before its blobs are chosen to go by bytes or by reference."""

    module: _Blob
    base: Dict[str, Any]
    mounts: List[Tuple[str, bool, Optional[_Blob]]]

    def blobs(self) -> List[_Blob]:
        return [self.module] + [blob for _, _, blob in self.mounts if blob is not None]


@dataclass
class _Sent:
    """A sealed request on its way: what opens its answer."""

    keys: _crypto.ResponseKeys
    plaintext: bytes
    binary: bool


class Job:
    """An execution submitted with ``Prefer: respond-async`` (:meth:`Client.submit`).
    It holds the keys that open its answer: keep it private. ``execution_id`` is
    the server's id (it changes if the request had to be sent again with blobs the
    server had lost)."""

    def __init__(self, spec: _Spec, by_reference: Set[str]) -> None:
        self.execution_id = ""
        self.location: Optional[str] = None
        self._spec = spec
        self._by_reference = by_reference
        self._resent: List[str] = []
        self._sent: Optional[_Sent] = None
        self._answer: Optional[Dict[str, Any]] = None
        self._result: Optional[ExecutionResult] = None

    @property
    def done(self) -> bool:
        return self._result is not None

    def __repr__(self) -> str:
        return f"Job({self.execution_id!r}, done={self.done})"


# ---------------------------------------------------------------------------
# Decoding what the server says


def _uuid_text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 36 or value != value.lower():
        raise ProtocolViolation(f"`{what}` is not a 36-character lowercase UUID")
    try:
        uuid.UUID(value)
    except ValueError:
        raise ProtocolViolation(f"`{what}` is not a UUID") from None
    return value


def _b64(value: Any, what: str, length: Optional[int] = None) -> bytes:
    try:
        return b64decode(value, what, length)
    except ValueError as error:
        raise ProtocolViolation(str(error)) from None


def _expiry(text: Any) -> float:
    if not isinstance(text, str):
        raise ProtocolViolation("`expires_at` is not an RFC 3339 time")
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ProtocolViolation("`expires_at` is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ProtocolViolation("`expires_at` has no time zone")
    return moment.timestamp()


def _execute_answer(status: int, headers: Mapping[str, str], data: bytes) -> Dict[str, Any]:
    """A ``200`` of ``/execute`` (or a finished ``GET /executions/{id}``) in either
    body type, as {execution_id, ciphertext, commitment (bytes), log_index, leaf_signature (bytes)}."""
    if status != 200:
        raise server_error(status, headers, data) if status >= 400 else ProtocolViolation(f"unexpected HTTP status {status}")
    if headers.get("content-type", "").lower().startswith("application/octet-stream"):
        # protocol v1.1 §B
        if len(data) < 58:
            raise ProtocolViolation("the binary answer is shorter than its fixed fields")
        signature_len = int.from_bytes(data[56:58], "big")
        if len(data) < 58 + signature_len:
            raise ProtocolViolation("the binary answer's leaf signature runs past its end")
        return {
            "execution_id": str(uuid.UUID(bytes=data[0:16])),
            "log_index": int.from_bytes(data[16:24], "big"),
            "commitment": data[24:56],
            "leaf_signature": data[58 : 58 + signature_len],
            "ciphertext": data[58 + signature_len :],
        }
    doc = parse_json(data)
    if not isinstance(doc, dict):
        raise ProtocolViolation("the /execute answer is not a JSON object")
    commitment = doc.get("commitment")
    if not isinstance(commitment, str) or len(commitment) != 64:
        raise ProtocolViolation("`commitment` is not a hex SHA-256")
    try:
        commitment_bytes = bytes.fromhex(commitment)
    except ValueError:
        raise ProtocolViolation("`commitment` is not a hex SHA-256") from None
    log_index = doc.get("log_index")
    if isinstance(log_index, bool) or not isinstance(log_index, int) or log_index < 0:
        raise ProtocolViolation("`log_index` is not an unsigned integer")
    return {
        "execution_id": _uuid_text(doc.get("execution_id"), "execution_id"),
        "log_index": log_index,
        "commitment": commitment_bytes,
        "leaf_signature": _b64(doc.get("leaf_signature"), "leaf_signature"),
        "ciphertext": _b64(doc.get("ciphertext"), "ciphertext"),
    }


def _is_cbor(plaintext: bytes) -> bool:
    """protocol v1.1 §C: a plaintext whose first byte is a CBOR map head is CBOR."""
    return len(plaintext) > 0 and 0xA0 <= plaintext[0] <= 0xBB


def _result_document(result_plaintext: bytes, cbor: bool) -> Dict[str, Any]:
    """The result plaintext as a dict whose byte fields are bytes, whatever its format."""
    try:
        doc = _cbor.decode(result_plaintext) if cbor else json.loads(result_plaintext)
    except ValueError as error:
        raise ProtocolViolation(f"the result is not valid {'CBOR' if cbor else 'JSON'}: {error}") from None
    if not isinstance(doc, dict):
        raise ProtocolViolation("the result is not an object")

    def as_bytes(value: Any, what: str) -> bytes:
        if cbor:
            if not isinstance(value, bytes):
                raise ProtocolViolation(f"the result's `{what}` is not a byte string")
            return value
        return _b64(value, what)

    doc["stdout"] = as_bytes(doc.get("stdout", b"" if cbor else ""), "stdout")
    doc["stderr"] = as_bytes(doc.get("stderr", b"" if cbor else ""), "stderr")
    mounts_out = doc.get("mounts_out")
    if mounts_out is not None:
        if not isinstance(mounts_out, list) or not all(isinstance(item, dict) for item in mounts_out):
            raise ProtocolViolation("the result's `mounts_out` is not a list of objects")
        doc["mounts_out"] = [MountOut(str(item.get("path")), as_bytes(item.get("tar"), "mounts_out[].tar")) for item in mounts_out]
    if doc.get("status") not in STATUSES:
        raise ProtocolViolation(f"the result's status {doc.get('status')!r} is unknown")
    return doc


# ---------------------------------------------------------------------------
# The client


#: ``/execute`` refusals that leave the session unused (PROTOCOL.md): the pool keeps it.
_SESSION_UNUSED = ("rate_limited", "too_many_executions", "overloaded", "database_unavailable")


class Client:
    """A client of one wasm-hypervisor server.

    ``url`` is the server's base URL; ``token`` a bearer token when the server
    requires one; ``key_id`` pins the server's key (the hex key id of ``GET
    /keys``): any other key raises :class:`KeyMismatch` before anything is sent.

    Keyword options: ``wire`` (``"v1.1"``, the default, or ``"v1"``); ``timeout``
    (seconds to wait for one answer, default 600); ``batch`` (sessions per signed
    batch, v1.1, default 32; halved while the server refuses a batch for the
    client's share of pending sessions, and kept at the size it granted);
    ``session_margin`` (seconds: a pooled session that
    expires sooner is dropped, default 5); ``references`` (``"auto"``: a module or
    archive of at least 4 KiB that this client already sent goes by SHA-256;
    ``"always"``: every one goes by SHA-256 first; ``"never"``). A blob the server
    no longer has is sent again by bytes at once, whatever the policy.

    A client may be shared by threads.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        key_id: Optional[str] = None,
        *,
        wire: str = "v1.1",
        timeout: float = 600.0,
        batch: int = 32,
        session_margin: float = 5.0,
        references: str = "auto",
    ) -> None:
        if wire not in ("v1", "v1.1"):
            raise ValueError(f"unknown wire version {wire!r} (v1 or v1.1)")
        if references not in ("auto", "always", "never"):
            raise ValueError(f"unknown references policy {references!r} (auto, always or never)")
        self.url = url.rstrip("/")
        self.wire = wire
        self.pinned_key_id = key_id.lower() if key_id is not None else None
        self.batch = max(1, int(batch))
        self.session_margin = float(session_margin)
        self.references = references if wire == "v1.1" else "never"
        self._http = Http(self.url, token, timeout)
        self._lock = threading.Lock()
        # Held by the thread opening a batch for an empty pool (v1.1): threads that
        # arrive meanwhile take that batch's sessions instead of opening their own.
        self._refill = threading.Lock()
        self._identity: Optional[ServerIdentity] = None
        self._sessions: Deque[_Session] = collections.deque()
        self._known_blobs: Set[str] = set()
        #: Counters: ``sessions_opened`` (sessions received), ``session_requests``
        #: (``POST /sessions`` made), ``session_retries`` (executions sent again
        #: after ``session_not_found``/``session_expired``), ``blob_resends``.
        self.stats: Dict[str, int] = {"sessions_opened": 0, "session_requests": 0, "session_retries": 0, "blob_resends": 0}

    def _count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.stats[name] += by

    # -- the server's key and sessions ------------------------------------

    def identity(self) -> ServerIdentity:
        """The server's key (``GET /keys``, fetched once), checked against the pin."""
        with self._lock:
            if self._identity is not None:
                return self._identity
        doc = self._http.json("GET", "/keys")
        if not isinstance(doc, dict):
            raise ProtocolViolation("`/keys` is not a JSON object")
        try:
            key = _crypto.ServerKey(_b64(doc.get("public_key"), "public_key"))
        except ValueError:
            raise ProtocolViolation("`public_key` is not a P-256 SPKI") from None
        if doc.get("key_id") != key.key_id:
            raise ProtocolViolation("`key_id` is not the SHA-256 of the public key")
        if self.pinned_key_id is not None and self.pinned_key_id != key.key_id:
            raise KeyMismatch(self.pinned_key_id, key.key_id)
        origin = doc.get("origin")
        if not isinstance(origin, str):
            raise ProtocolViolation("`origin` is not a string")
        identity = ServerIdentity(origin, key, key.key_id)
        with self._lock:
            self._identity = identity
        return identity

    def _open_sessions(self) -> List[_Session]:
        key = self.identity().key
        if self.wire == "v1":
            self._count("session_requests")
            doc = self._http.json("POST", "/sessions", authorized=True)
            if not isinstance(doc, dict):
                raise ProtocolViolation("the session is not a JSON object")
            if doc.get("suite") != _crypto.SUITE:
                raise ProtocolViolation(f"unexpected cipher suite {doc.get('suite')!r}")
            session_id = _uuid_text(doc.get("session_id"), "session_id")
            public_key = _b64(doc.get("public_key"), "public_key", _crypto.POINT_LEN)
            if not key.verify(_crypto.session_message(session_id, public_key), _b64(doc.get("signature"), "signature")):
                raise BadSessionSignature()
            sessions = [_Session(session_id, public_key, _expiry(doc.get("expires_at")))]
        else:
            asked, doc = self._post_batch()
            if not isinstance(doc, dict) or not isinstance(doc.get("sessions"), list):
                raise ProtocolViolation("the session batch is not a JSON object with `sessions`")
            if doc.get("suite") != _crypto.SUITE:
                raise ProtocolViolation(f"unexpected cipher suite {doc.get('suite')!r}")
            sessions = []
            for item in doc["sessions"]:
                if not isinstance(item, dict):
                    raise ProtocolViolation("a session of the batch is not an object")
                sessions.append(
                    _Session(
                        _uuid_text(item.get("session_id"), "session_id"),
                        _b64(item.get("public_key"), "public_key", _crypto.POINT_LEN),
                        _expiry(item.get("expires_at")),
                    )
                )
            if len(sessions) != asked:
                raise ProtocolViolation(f"asked for {asked} sessions, got {len(sessions)}")
            message = _crypto.sessions_message([(s.session_id, s.public_key) for s in sessions])
            if not key.verify(message, _b64(doc.get("signature"), "signature")):
                raise BadSessionSignature()
        self._count("sessions_opened", len(sessions))
        return sessions

    def _post_batch(self) -> Tuple[int, Any]:
        """``POST /sessions {"count": N}`` at ``self.batch``, halved (down to one) while
        the server refuses the batch for its pending bounds (``too_many_client_sessions``,
        ``too_many_sessions``); the size granted is kept for later batches. Returns the
        count asked for and the answer."""
        while True:
            count = self.batch
            self._count("session_requests")
            try:
                doc = self._http.json(
                    "POST",
                    "/sessions",
                    body=json.dumps({"count": count}).encode(),
                    headers={"Content-Type": "application/json"},
                    authorized=True,
                )
            except ServerError as error:
                if count > 1 and error.code in ("too_many_client_sessions", "too_many_sessions"):
                    self.batch = max(1, count // 2)
                    continue
                raise
            return count, doc

    def _pop_live(self) -> Optional[_Session]:
        """The oldest pooled session not about to expire; those about to are dropped."""
        now = time.time()
        with self._lock:
            while self._sessions:
                session = self._sessions.popleft()
                if session.expires_at > now + self.session_margin:
                    return session
        return None

    def _take_session(self) -> _Session:
        """The oldest pooled session not about to expire, else one of a batch opened now
        (by this thread, or by the one already opening a batch: v1.1 threads that find
        the pool empty at once share one batch)."""
        session = self._pop_live()
        if session is not None:
            return session
        if self.wire == "v1":
            return self._fresh_session()
        with self._refill:
            session = self._pop_live()
            if session is not None:
                return session
            return self._fresh_session()

    def _fresh_session(self) -> _Session:
        opened = self._open_sessions()
        with self._lock:
            self._sessions.extend(opened[1:])
        return opened[0]

    @property
    def pooled_sessions(self) -> int:
        """Sessions held now (some may have expired since)."""
        with self._lock:
            return len(self._sessions)

    # -- sealing and sending ----------------------------------------------

    def _post_execute(self, session: _Session, plaintext: bytes, asynchronous: bool) -> Tuple[_Sent, int, Mapping[str, str], bytes]:
        enc, ciphertext, keys = _crypto.seal_request(session.session_id, session.public_key, plaintext)
        headers: Dict[str, str] = {}
        if self.wire == "v1.1":
            body = uuid.UUID(session.session_id).bytes + enc + ciphertext
            headers["Content-Type"] = "application/octet-stream"
        else:
            body = json.dumps(
                {"session_id": session.session_id, "enc": b64encode(enc), "ciphertext": b64encode(ciphertext)}
            ).encode()
            headers["Content-Type"] = "application/json"
        if asynchronous:
            headers["Prefer"] = "respond-async"
        status, answer_headers, data = self._http.request("POST", "/execute", body=body, headers=headers, authorized=True)
        return _Sent(keys, plaintext, self.wire == "v1.1"), status, answer_headers, data

    def _send(self, plaintext: bytes, asynchronous: bool) -> Tuple[_Sent, int, Mapping[str, str], bytes]:
        """``POST /execute`` on a pooled session; after ``session_not_found`` (nothing
        ran) the pool is emptied and the request goes once more on a fresh session."""
        session = self._take_session()
        sent, status, headers, data = self._post_execute(session, plaintext, asynchronous)
        if status == 404:
            error = server_error(status, headers, data)
            if error.code in ("session_not_found", "session_expired"):
                with self._lock:
                    self._sessions.clear()
                self._count("session_retries")
                session = self._fresh_session()
                sent, status, headers, data = self._post_execute(session, plaintext, asynchronous)
        if status in (429, 503) and server_error(status, headers, data).code in _SESSION_UNUSED:
            # Refused before the session was used: it serves the next request.
            with self._lock:
                self._sessions.appendleft(session)
        return sent, status, headers, data

    def _open(self, sent: _Sent, answer: Dict[str, Any]) -> Dict[str, Any]:
        execution_id = answer["execution_id"]
        try:
            result_plaintext = sent.keys.open_result(execution_id, answer["ciphertext"])
        except (InvalidTag, ValueError):
            raise ProtocolViolation("the result does not decrypt with this request's keys") from None
        doc = _result_document(result_plaintext, _is_cbor(sent.plaintext))
        if doc.get("execution_id") != execution_id:
            raise ProtocolViolation("the sealed result names another execution")
        if not _crypto.digest_eq(sent.keys.commitment(sent.plaintext, result_plaintext), answer["commitment"]):
            raise ProtocolViolation("the commitment does not match the request and result")
        doc["_request_sha256"] = _crypto.sha256(sent.plaintext).hex()
        doc["_result_sha256"] = _crypto.sha256(result_plaintext).hex()
        return doc

    # -- requests ---------------------------------------------------------

    def _spec(
        self,
        module: Union[bytes, bytearray, memoryview, PathLike],
        args: Sequence[str],
        env: Optional[Mapping[str, str]],
        stdin: bytes,
        limits: Optional[Mapping[str, int]],
        mounts: Optional[Iterable[Union[Mount, Mapping[str, Any]]]],
        invoke: Optional[str],
    ) -> _Spec:
        if isinstance(module, (bytes, bytearray, memoryview)):
            module_bytes = bytes(module)
        else:
            with open(module, "rb") as file:
                module_bytes = file.read()
        if isinstance(args, (str, bytes)):
            raise TypeError("args is a sequence of strings, not one string")
        base: Dict[str, Any] = {}
        if invoke is not None:
            base["invoke"] = str(invoke)
        if args:
            base["args"] = [str(arg) for arg in args]
        if env:
            base["env"] = {str(name): str(value) for name, value in env.items()}
        if stdin:
            base["stdin"] = bytes(stdin)
        if limits:
            unknown = [name for name in limits if name not in LIMIT_NAMES]
            if unknown:
                raise ValueError(f"unknown limit {unknown[0]!r} (one of {', '.join(LIMIT_NAMES)})")
            base["limits"] = {name: int(value) for name, value in limits.items() if value is not None}
        mount_specs: List[Tuple[str, bool, Optional[_Blob]]] = []
        for mount in mounts or ():
            if isinstance(mount, Mapping):
                mount = Mount(str(mount["path"]), mount.get("tar"), bool(mount.get("writable", False)))
            tar = None if mount.tar is None else _Blob(bytes(mount.tar), _crypto.sha256(bytes(mount.tar)).hex())
            mount_specs.append((mount.path, mount.writable, tar))
        return _Spec(_Blob(module_bytes, _crypto.sha256(module_bytes).hex()), base, mount_specs)

    def _initial_references(self, spec: _Spec) -> Set[str]:
        if self.references == "never":
            return set()
        if self.references == "always":
            return {blob.sha256 for blob in spec.blobs()}
        with self._lock:
            return {
                blob.sha256
                for blob in spec.blobs()
                if len(blob.data) >= REFERENCE_MIN_BYTES and blob.sha256 in self._known_blobs
            }

    def _plaintext(self, spec: _Spec, by_reference: Set[str]) -> bytes:
        """The request plaintext: deterministic CBOR with bytes (v1.1) or JSON with base64 (v1)."""
        request: Dict[str, Any] = {}
        if spec.module.sha256 in by_reference:
            request["module_sha256"] = spec.module.sha256
        else:
            request["module"] = spec.module.data
        request.update(spec.base)
        if spec.mounts:
            mounts = []
            for path, writable, blob in spec.mounts:
                item: Dict[str, Any] = {"path": path}
                if blob is not None and blob.sha256 in by_reference:
                    item["tar_sha256"] = blob.sha256
                elif blob is not None:
                    item["tar"] = blob.data
                if writable:
                    item["writable"] = True
                mounts.append(item)
            request["mounts"] = mounts
        if self.wire == "v1.1":
            return _cbor.encode(request)
        for name in ("module", "stdin"):
            if name in request:
                request[name] = b64encode(request[name])
        for item in request.get("mounts", []):
            if "tar" in item:
                item["tar"] = b64encode(item["tar"])
        return json.dumps(request, separators=(",", ":")).encode()

    def _finish(self, spec: _Spec, doc: Dict[str, Any], answer: Dict[str, Any], sent: _Sent, by_reference: Set[str], resent: List[str]) -> ExecutionResult:
        identity = self.identity()
        if doc["status"] != "missing_blob":
            # The server keeps every blob it receives (within its budget).
            with self._lock:
                self._known_blobs.update(blob.sha256 for blob in spec.blobs())
        receipt = Receipt(
            version=RECEIPT_VERSION,
            server=self.url,
            origin=identity.origin,
            key_id=identity.key_id,
            public_key=b64encode(identity.key.spki_der),
            execution_id=answer["execution_id"],
            log_index=answer["log_index"],
            status=doc["status"],
            commitment=answer["commitment"].hex(),
            salt=sent.keys.salt.hex(),
            request_sha256=doc["_request_sha256"],
            result_sha256=doc["_result_sha256"],
            module_sha256=doc.get("module_sha256"),
            leaf_signature=b64encode(answer["leaf_signature"]),
        )
        return ExecutionResult(
            execution_id=answer["execution_id"],
            status=doc["status"],
            exit_code=doc.get("exit_code"),
            stdout=doc["stdout"],
            stderr=doc["stderr"],
            returns=list(doc.get("returns") or []),
            fuel_consumed=int(doc.get("fuel_consumed") or 0),
            wall_time_us=int(doc.get("wall_time_us") or 0),
            receipt=receipt,
            stdout_truncated=bool(doc.get("stdout_truncated", False)),
            stderr_truncated=bool(doc.get("stderr_truncated", False)),
            error=doc.get("error"),
            module_sha256=doc.get("module_sha256"),
            limits=dict(doc.get("limits") or {}),
            engine=str(doc.get("engine") or ""),
            missing_blobs=doc.get("missing_blobs"),
            mounts_out=doc.get("mounts_out"),
            log_index=answer["log_index"],
            commitment=answer["commitment"].hex(),
            sent_by_reference=sorted(by_reference),
            resent_blobs=list(resent),
        )

    def _resend_needed(self, doc: Dict[str, Any], by_reference: Set[str]) -> List[str]:
        """The blobs to send again by bytes: those of a ``missing_blob`` that this
        request named (empty if the server names one it was not asked for)."""
        if doc.get("status") != "missing_blob":
            return []
        missing = doc.get("missing_blobs") or []
        if not missing or not all(isinstance(h, str) and h in by_reference for h in missing):
            return []
        return list(missing)

    def _forget(self, missing: List[str], by_reference: Set[str], resent: List[str]) -> None:
        by_reference.difference_update(missing)
        resent.extend(missing)
        self._count("blob_resends")
        with self._lock:
            self._known_blobs.difference_update(missing)

    def run(
        self,
        module: Union[bytes, bytearray, memoryview, PathLike],
        *,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        stdin: bytes = b"",
        limits: Optional[Mapping[str, int]] = None,
        mounts: Optional[Iterable[Union[Mount, Mapping[str, Any]]]] = None,
        invoke: Optional[str] = None,
        asynchronous: bool = False,
    ) -> ExecutionResult:
        """Runs ``module`` (bytes, or a path to a ``.wasm`` file) sealed and returns
        its result, opened and checked. ``args`` follow argv[0]; ``env`` is the
        guest's whole environment; ``limits`` may lower the server's ``fuel``,
        ``memory_bytes``, ``timeout_ms``, ``max_output_bytes``, ``files_bytes``;
        ``mounts`` are :class:`Mount` s (or dicts of their fields); ``invoke`` calls
        one export (a WAVE call expression, e.g. ``'add(1, 2)'``) instead of running
        a command. ``asynchronous=True`` is :meth:`submit` then :meth:`result`: for
        jobs longer than a proxy's read timeout.

        Every outcome after the server opened the request is a result (see
        ``status``); refusals before it raise :class:`ServerError`."""
        spec = self._spec(module, args, env, stdin, limits, mounts, invoke)
        if asynchronous:
            return self.result(self._submit(spec))
        by_reference = self._initial_references(spec)
        resent: List[str] = []
        while True:
            plaintext = self._plaintext(spec, by_reference)
            sent, status, headers, data = self._send(plaintext, asynchronous=False)
            answer = _execute_answer(status, headers, data)
            doc = self._open(sent, answer)
            missing = self._resend_needed(doc, by_reference)
            if not missing:
                return self._finish(spec, doc, answer, sent, by_reference, resent)
            self._forget(missing, by_reference, resent)

    # -- long jobs (protocol v1.1 §F) --------------------------------------

    def submit(
        self,
        module: Union[bytes, bytearray, memoryview, PathLike],
        *,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        stdin: bytes = b"",
        limits: Optional[Mapping[str, int]] = None,
        mounts: Optional[Iterable[Union[Mount, Mapping[str, Any]]]] = None,
        invoke: Optional[str] = None,
    ) -> Job:
        """Submits a long job (``Prefer: respond-async``) and returns as soon as the
        server has opened the request; :meth:`result` waits for it, :meth:`poll`
        asks once. The arguments are :meth:`run`'s."""
        return self._submit(self._spec(module, args, env, stdin, limits, mounts, invoke))

    def _submit(self, spec: _Spec) -> Job:
        job = Job(spec, self._initial_references(spec))
        self._dispatch(job)
        return job

    def _dispatch(self, job: Job) -> None:
        plaintext = self._plaintext(job._spec, job._by_reference)
        sent, status, headers, data = self._send(plaintext, asynchronous=True)
        job._sent = sent
        if status == 200:
            # A server may ignore the preference (RFC 7240): the answer is here.
            answer = _execute_answer(status, headers, data)
            job.execution_id, job.location = answer["execution_id"], None
            self._conclude(job, answer)
            return
        if status != 202:
            raise server_error(status, headers, data) if status >= 400 else ProtocolViolation(f"unexpected HTTP status {status}")
        accepted = parse_json(data)
        if not isinstance(accepted, dict):
            raise ProtocolViolation("the 202 is not a JSON object")
        execution_id = _uuid_text(accepted.get("execution_id"), "execution_id")
        applied = headers.get("preference-applied", "").strip().lower() == "respond-async"
        if not applied or accepted.get("location") != f"/executions/{execution_id}":
            raise ProtocolViolation("the server's 202 is not an accepted async execution")
        job.execution_id, job.location = execution_id, accepted["location"]

    def _conclude(self, job: Job, answer: Dict[str, Any]) -> None:
        """Opens a finished job's answer; a ``missing_blob`` is submitted again with the bytes."""
        assert job._sent is not None
        doc = self._open(job._sent, answer)
        missing = self._resend_needed(doc, job._by_reference)
        if missing:
            self._forget(missing, job._by_reference, job._resent)
            self._dispatch(job)
            return
        job._result = self._finish(job._spec, doc, answer, job._sent, job._by_reference, job._resent)

    def poll(self, job: Job) -> Tuple[Optional[ExecutionResult], float]:
        """``GET /executions/{id}`` once: (the result, 0) if the job has finished,
        else (``None``, the seconds the server asks to wait)."""
        if job._result is not None:
            return job._result, 0.0
        assert job._sent is not None and job.location is not None
        headers = {"Accept": "application/octet-stream"} if job._sent.binary else {}
        status, answer_headers, data = self._http.request("GET", job.location, headers=headers, authorized=True)
        if status == 202:
            state = parse_json(data)
            if not isinstance(state, dict) or state.get("execution_id") != job.execution_id:
                raise ProtocolViolation("the pending state names another execution")
            wait = retry_after(answer_headers)
            return None, float(1 if wait is None else wait)
        answer = _execute_answer(status, answer_headers, data)
        if answer["execution_id"] != job.execution_id:
            raise ProtocolViolation("the answer names another execution")
        self._conclude(job, answer)
        return job._result, 0.0

    def result(self, job: Job, timeout: Optional[float] = None) -> ExecutionResult:
        """Waits for ``job`` (polling as often as the server's ``Retry-After`` says,
        at most a minute apart) and returns its result; raises ``TimeoutError``
        after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result, wait = self.poll(job)
            if result is not None:
                return result
            wait = min(wait, 60.0)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"execution {job.execution_id} has not finished")
                wait = min(wait, left)
            time.sleep(wait)

    # -- proofs -----------------------------------------------------------

    def verify(self, receipt: Union[Receipt, Mapping[str, Any], str, bytes]) -> List[Check]:
        """Proves an execution from its receipt (a :class:`Receipt`, its dict or its
        JSON text) against this server's log (``GET /verify/{id}``) under the
        server's key (pinned if the client pins one), as the CLI's ``verify`` does.
        Returns the checks, all held; raises :class:`VerificationFailed` naming the
        first check that failed."""
        if isinstance(receipt, (str, bytes)):
            receipt = Receipt.from_json(receipt)
        elif not isinstance(receipt, Receipt):
            receipt = Receipt.from_dict(receipt)
        identity = self.identity()
        answer = self._http.json("GET", "/verify/" + urllib.parse.quote(receipt.execution_id, safe=""))
        if not isinstance(answer, dict):
            raise ProtocolViolation("the /verify answer is not a JSON object")
        checks = check_receipt(receipt, answer, identity.key)
        if not all(check.ok for check in checks):
            raise VerificationFailed(checks)
        return checks

    def checkpoint(self) -> Dict[str, Any]:
        """``GET /log/checkpoint``, its signature checked under the server's key."""
        from .receipt import check_checkpoint

        doc = self._http.json("GET", "/log/checkpoint")
        try:
            check_checkpoint(doc, self.identity().key)
        except ValueError as error:
            raise ProtocolViolation(str(error)) from None
        return dict(doc)


def verify_receipt(receipt: Union[Receipt, Mapping[str, Any], str, bytes], answer: Mapping[str, Any], key_id: Optional[str] = None) -> List[Check]:
    """Proves an execution offline: ``answer`` is a saved ``GET /verify/{id}``
    document, the key is the receipt's own ``public_key`` (pinned to ``key_id`` when
    given, else trusted as it is). Raises :class:`VerificationFailed` or ``KeyMismatch``."""
    if isinstance(receipt, (str, bytes)):
        receipt = Receipt.from_json(receipt)
    elif not isinstance(receipt, Receipt):
        receipt = Receipt.from_dict(receipt)
    try:
        key = _crypto.ServerKey(b64decode(receipt.public_key, "public_key"))
    except ValueError:
        raise ProtocolViolation("the receipt's public key is not a P-256 SPKI") from None
    if key_id is not None and key_id.lower() != key.key_id:
        raise KeyMismatch(key_id.lower(), key.key_id)
    checks = check_receipt(receipt, answer, key)
    if not all(check.ok for check in checks):
        raise VerificationFailed(checks)
    return checks
