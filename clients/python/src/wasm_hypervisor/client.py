"""The client: ``Client(url).run(module, ...)`` seals a request to a session key the
server signed, sends it, opens the result and checks its commitment; ``verify``
proves an execution from its receipt against the server's log.

Protocol v1.1 by default (``wire=Wire.V1_1``): sessions from signed batches kept in
a pool, binary ``/execute`` bodies, CBOR plaintexts, modules and archives named by
SHA-256 once the server has them (sent again when it answers ``missing_blob``),
and long jobs with ``Prefer: respond-async`` (:meth:`Client.submit`,
:meth:`Client.result`). ``wire=Wire.V1`` is protocol v1 exactly: JSON bodies and
plaintexts, one session per execution, every blob by its bytes.

This module is the facade; the work is done by ``_sessions`` (the pool),
``_sealing`` (plaintexts, sealing, opening), ``_blobs`` (references), ``_jobs``
(long jobs), ``_results`` and ``_mounts`` (what callers get and give),
``_replay`` (replay bundles, ``wasm-hypervisor replay``) and ``_http``
(connections, error mapping, retries).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
from types import TracebackType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Type, Union

from . import _crypto
from ._blobs import KnownBlobs, ModuleLike, Spec, build_spec, resend_needed
from ._http import Http, retry_after
from ._jobs import Job, accepted_location, check_pending
from ._mounts import Mount, MountOut, pack_directory
from ._proofs import PolicyLike, fetch_tlog_proof, offline_policy
from ._replay import Replay, ReplayBundle, replay
from ._results import ExecutionResult, ServerIdentity, build_result
from ._sealing import Sent, b64, encode_plaintext, execute_answer, open_answer
from ._sessions import SessionPool
from .errors import Check, KeyMismatchError, ProtocolError, VerificationError
from .options import DEFAULT_BATCH, Limits, References, ReferencesName, Retries, Wire, WireName
from .receipt import Receipt, b64decode, check_checkpoint, check_receipt, check_receipt_offline
from .tlog import VerifierKey

__all__ = [
    "Client",
    "ExecutionResult",
    "Job",
    "Mount",
    "MountOut",
    "Replay",
    "ReplayBundle",
    "ServerIdentity",
    "pack_directory",
    "replay",
    "verify_receipt",
]

LimitsLike = Union[Limits, Mapping[str, int]]
MountLike = Union[Mount, Mapping[str, Any]]


class Client:
    """A client of one wasm-hypervisor server.

    ``url`` is the server's base URL; ``token`` a bearer token when the server
    requires one; ``key_id`` pins the server's key (the hex key id of ``GET
    /keys``): any other key raises :class:`KeyMismatchError` before anything is sent.

    Keyword options: ``wire`` (:class:`Wire`, ``V1_1`` by default, or ``"v1"``,
    ``"v1.1"``); ``timeout`` (seconds to wait for one answer, default 600); ``batch``
    (v1.1: the most sessions one signed batch asks for, default 16; the pool starts
    at 4, doubles while its sessions are all used, halves when some expire unused
    or the server refuses a batch for a pending bound); ``session_margin`` (seconds:
    a pooled session that expires sooner is dropped, default 5); ``references``
    (:class:`References`: ``AUTO``, the default, names a module or archive of at
    least 4 KiB that this client already sent by SHA-256; ``ALWAYS`` names every
    one first; ``NEVER``); ``retries`` (:class:`Retries`: idempotent calls answered
    429 or 503 are tried again after ``Retry-After``, at most 5 tries within 30 s).
    A blob the server no longer has is sent again by bytes at once, whatever the
    policy.

    A client may be shared by threads. :meth:`close` (or ``with Client(...) as
    client:``) closes its connections.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        key_id: Optional[str] = None,
        *,
        wire: WireName = Wire.V1_1,
        timeout: float = 600.0,
        batch: int = DEFAULT_BATCH,
        session_margin: float = 5.0,
        references: ReferencesName = References.AUTO,
        retries: Retries = Retries(),
    ) -> None:
        self.wire = Wire.parse(wire)
        references = References.parse(references)
        self.url = url.rstrip("/")
        self.pinned_key_id = key_id.lower() if key_id is not None else None
        self.references = references if self.wire is Wire.V1_1 else References.NEVER
        self._lock = threading.Lock()
        self._identity: Optional[ServerIdentity] = None
        #: Counters: ``sessions_opened`` (sessions received), ``session_requests``
        #: (``POST /sessions`` made), ``session_retries`` (executions sent again
        #: after ``session_not_found``/``session_expired``), ``blob_resends``,
        #: ``retries`` (idempotent calls made again after a 429 or 503).
        self.stats: Dict[str, int] = {
            "sessions_opened": 0,
            "session_requests": 0,
            "session_retries": 0,
            "blob_resends": 0,
            "retries": 0,
        }
        self._http = Http(self.url, token, timeout, retries, on_retry=lambda: self._count("retries"))
        self._pool = SessionPool(
            self._http, self.wire, lambda: self.identity().key, self._count, batch, session_margin
        )
        self._blobs = KnownBlobs(self.references)

    def _count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.stats[name] += by

    # -- resources ----------------------------------------------------------

    def close(self) -> None:
        """Closes the client's connections and forgets its pooled sessions (they
        expire on the server). A closed client raises ``RuntimeError`` if used."""
        self._pool.clear()
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    # -- the server's key and sessions ------------------------------------

    def identity(self) -> ServerIdentity:
        """The server's key (``GET /keys``, fetched once), checked against the pin."""
        with self._lock:
            if self._identity is not None:
                return self._identity
        doc = self._http.json("GET", "/keys", idempotent=True)
        if not isinstance(doc, dict):
            raise ProtocolError("`/keys` is not a JSON object")
        try:
            key = _crypto.ServerKey(b64(doc.get("public_key"), "public_key"))
        except ValueError:
            raise ProtocolError("`public_key` is not a P-256 SPKI") from None
        if doc.get("key_id") != key.key_id:
            raise ProtocolError("`key_id` is not the SHA-256 of the public key")
        if self.pinned_key_id is not None and self.pinned_key_id != key.key_id:
            raise KeyMismatchError(self.pinned_key_id, key.key_id)
        origin = doc.get("origin")
        if not isinstance(origin, str):
            raise ProtocolError("`origin` is not a string")
        # Protocol v1.2 §T1; absent on older servers, which serve no proofs.
        note_key = None
        if doc.get("note_verifier_key") is not None:
            try:
                note_key = VerifierKey.parse(doc["note_verifier_key"])
            except ValueError as error:
                raise ProtocolError(f"`note_verifier_key` is not a verifier key: {error}") from None
            if note_key.name != origin:
                raise ProtocolError("`note_verifier_key` is not named after the origin")
        identity = ServerIdentity(origin, key, key.key_id, note_key)
        with self._lock:
            self._identity = identity
        return identity

    @property
    def batch(self) -> int:
        """Sessions the next signed batch asks for (v1.1)."""
        return self._pool.batch

    @batch.setter
    def batch(self, size: int) -> None:
        self._pool.batch = max(1, int(size))

    @property
    def pooled_sessions(self) -> int:
        """Sessions held now (some may have expired since)."""
        return len(self._pool)

    # -- executions -------------------------------------------------------

    def _finish(self, spec: Spec, doc: Dict[str, Any], answer: Dict[str, Any], sent: Sent, by_reference: Set[str], resent: List[str]) -> ExecutionResult:
        identity = self.identity()
        if doc["status"] != "missing_blob":
            # The server keeps every blob it receives (within its budget).
            self._blobs.remember(spec)
        result = build_result(self.url, identity, doc, answer, sent, by_reference, resent)
        if identity.note_key is not None:
            proof, why = fetch_tlog_proof(self._http, result.receipt, identity.note_key)
            result.receipt.tlog_proof, result.tlog_proof_error = proof, why
        return result

    def _forget(self, missing: List[str], by_reference: Set[str], resent: List[str]) -> None:
        by_reference.difference_update(missing)
        resent.extend(missing)
        self._count("blob_resends")
        self._blobs.forget(missing)

    def run(
        self,
        module: ModuleLike,
        *,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        stdin: bytes = b"",
        limits: Optional[LimitsLike] = None,
        mounts: Optional[Iterable[MountLike]] = None,
        invoke: Optional[str] = None,
        asynchronous: bool = False,
        deterministic: bool = False,
        seed: Optional[Union[bytes, str]] = None,
    ) -> ExecutionResult:
        """Runs ``module`` (bytes, or a path to a ``.wasm`` file) sealed and returns
        its result, opened and checked. ``args`` follow argv[0]; ``env`` is the
        guest's whole environment; ``limits`` (:class:`Limits`, or a dict of its
        field names) may lower the server's ``fuel``, ``memory_bytes``,
        ``timeout_ms``, ``max_output_bytes``, ``files_bytes``; ``mounts`` are
        :class:`Mount` s (or dicts of their fields); ``invoke`` calls one export (a
        WAVE call expression, e.g. ``'add(1, 2)'``) instead of running a command.
        ``asynchronous=True`` is :meth:`submit` then :meth:`result`: for jobs longer
        than a proxy's read timeout.

        ``deterministic=True`` asks for a reproducible execution (protocol v1.2
        §R): fixed clocks, random bytes from ``seed`` (32 bytes or 64 hex digits;
        zero when absent; giving one implies ``deterministic``), canonical NaNs,
        the timeout as a fuel bound. Its module and archives go by bytes, and the
        result's ``replay_bundle`` can be saved (the CLI's ``run --replay-bundle``
        format) and checked with :meth:`replay`.

        Every outcome after the server opened the request is a result (see
        ``status``); refusals before it raise :class:`RequestError` (4xx) or
        :class:`ServerError` (5xx)."""
        spec = build_spec(module, args, env, stdin, limits, mounts, invoke, deterministic, seed)
        if asynchronous:
            return self.result(self._submit(spec))
        by_reference = self._blobs.initial_references(spec)
        resent: List[str] = []
        while True:
            sent, status, headers, data = self._pool.send(self._encode(spec, by_reference), asynchronous=False)
            answer = execute_answer(status, headers, data)
            doc = open_answer(sent, answer)
            missing = resend_needed(doc, by_reference)
            if not missing:
                return self._finish(spec, doc, answer, sent, by_reference, resent)
            self._forget(missing, by_reference, resent)

    def _encode(self, spec: Spec, by_reference: Set[str]) -> bytes:
        return encode_plaintext(spec, by_reference, self.wire)

    # -- long jobs (protocol v1.1 §F) --------------------------------------

    def submit(
        self,
        module: ModuleLike,
        *,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        stdin: bytes = b"",
        limits: Optional[LimitsLike] = None,
        mounts: Optional[Iterable[MountLike]] = None,
        invoke: Optional[str] = None,
        deterministic: bool = False,
        seed: Optional[Union[bytes, str]] = None,
    ) -> Job:
        """Submits a long job (``Prefer: respond-async``) and returns as soon as the
        server has opened the request; :meth:`result` waits for it, :meth:`poll`
        asks once. The arguments are :meth:`run`'s."""
        return self._submit(build_spec(module, args, env, stdin, limits, mounts, invoke, deterministic, seed))

    def _submit(self, spec: Spec) -> Job:
        job = Job(spec, self._blobs.initial_references(spec))
        self._dispatch(job)
        return job

    def _dispatch(self, job: Job) -> None:
        plaintext = self._encode(job._spec, job._by_reference)
        sent, status, headers, data = self._pool.send(plaintext, asynchronous=True)
        job._sent = sent
        if status == 200:
            # A server may ignore the preference (RFC 7240): the answer is here.
            answer = execute_answer(status, headers, data)
            job.execution_id, job.location = answer["execution_id"], None
            self._conclude(job, answer)
            return
        job.execution_id, job.location = accepted_location(status, headers, data)

    def _conclude(self, job: Job, answer: Dict[str, Any]) -> None:
        """Opens a finished job's answer; a ``missing_blob`` is submitted again with the bytes."""
        assert job._sent is not None
        doc = open_answer(job._sent, answer)
        missing = resend_needed(doc, job._by_reference)
        if missing:
            self._forget(missing, job._by_reference, job._resent)
            self._dispatch(job)
            return
        job._result = self._finish(job._spec, doc, answer, job._sent, job._by_reference, job._resent)

    def poll(self, job: Job) -> Tuple[Optional[ExecutionResult], float]:
        """``GET /executions/{id}`` once (tried again after a 429 or 503 as
        ``retries`` allows): (the result, 0) if the job has finished, else (``None``,
        the seconds the server asks to wait)."""
        if job._result is not None:
            return job._result, 0.0
        assert job._sent is not None and job.location is not None
        headers = {"Accept": "application/octet-stream"} if job._sent.binary else {}
        status, answer_headers, data = self._http.request(
            "GET", job.location, headers=headers, authorized=True, idempotent=True
        )
        if status == 202:
            check_pending(job, data)
            wait = retry_after(answer_headers)
            return None, float(1 if wait is None else wait)
        answer = execute_answer(status, answer_headers, data)
        if answer["execution_id"] != job.execution_id:
            raise ProtocolError("the answer names another execution")
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

    def verify(
        self,
        receipt: Union[Receipt, Mapping[str, Any], str, bytes],
        *,
        policy: Optional[PolicyLike] = None,
        note_key: Optional[Union[str, VerifierKey]] = None,
    ) -> List[Check]:
        """Proves an execution from its receipt (a :class:`Receipt`, its dict or its
        JSON text) against this server's log (``GET /verify/{id}``) under the
        server's key (pinned if the client pins one), as the CLI's ``verify`` does;
        a ``tlog_proof`` in the receipt is then not used.

        Given ``policy`` (a C2SP tlog-policy: its text, or a :class:`Policy`) or
        ``note_key`` (the log's ``note_verifier_key``, short for ``log <vkey>`` /
        ``quorum none``), it is :func:`verify_receipt` offline: no request at all,
        from the receipt's own ``tlog_proof`` (a receipt without one fails
        ``receipt key`` ... ``inclusion proof``: verify it online).

        Returns the checks, all held; raises :class:`VerificationError` naming the
        first check that failed."""
        if policy is not None or note_key is not None:
            return verify_receipt(receipt, key_id=self.pinned_key_id, policy=policy, note_key=note_key)
        receipt = _as_receipt(receipt)
        identity = self.identity()
        answer = self._http.json(
            "GET", "/verify/" + urllib.parse.quote(receipt.execution_id, safe=""), idempotent=True
        )
        if not isinstance(answer, dict):
            raise ProtocolError("the /verify answer is not a JSON object")
        checks = check_receipt(receipt, answer, identity.key)
        if not all(check.ok for check in checks):
            raise VerificationError(checks)
        return checks

    def replay(
        self,
        bundle: Union[ExecutionResult, ReplayBundle, str, "os.PathLike[str]"],
        *,
        note_key: Optional[Union[str, VerifierKey]] = None,
        policy: Optional[Union[str, "os.PathLike[str]"]] = None,
        max_mount_entries: Optional[int] = None,
        binary: Optional[Union[str, "os.PathLike[str]"]] = None,
        timeout: Optional[float] = None,
    ) -> Replay:
        """Checks a deterministic execution by running it again on this machine
        (protocol v1.2 §R): ``bundle`` is a result of ``run(deterministic=True)``,
        its ``replay_bundle``, or the path of a saved bundle (the SDK's or the
        CLI's). Runs ``wasm-hypervisor replay`` (``binary``, else
        ``$WASM_HYPERVISOR_BIN``, else ``PATH``): the plaintexts are those the
        receipt names, the receipt is logged on this server (under the pinned key
        if any; offline under ``note_key`` or the tlog-policy file ``policy``),
        and every output the protocol fixes is identical.

        Returns a :class:`Replay`; raises :class:`ReplayError` (``reason``,
        ``difference``) or :class:`ReplayToolMissingError`."""
        if isinstance(bundle, ExecutionResult):
            if bundle.replay_bundle is None:
                raise ValueError("the execution is not deterministic: it has no replay bundle")
            bundle = bundle.replay_bundle
        offline = note_key is not None or policy is not None
        return replay(
            bundle,
            server=None if offline else self.url,
            key_id=self.pinned_key_id,
            note_key=note_key,
            policy=policy,
            max_mount_entries=max_mount_entries,
            binary=binary,
            timeout=timeout,
        )

    def usage(self) -> Dict[str, Any]:
        """This client's own usage and quotas (``GET /usage``, protocol v1.2 §U):
        ``hour`` and ``day`` (each ``start``, ``end``, ``used`` and ``quota`` by
        ``executions``, ``fuel``, ``bytes_in``, ``bytes_out``; a ``None`` quota is
        no limit) and ``total``. With a token, that token's; without, this
        address's."""
        doc = self._http.json("GET", "/usage", authorized=True, idempotent=True)
        if not isinstance(doc, dict) or not all(isinstance(doc.get(name), dict) for name in ("hour", "day", "total")):
            raise ProtocolError("the /usage answer is not an object with `hour`, `day` and `total`")
        return dict(doc)

    def checkpoint(self) -> Dict[str, Any]:
        """``GET /log/checkpoint``, its signature checked under the server's key."""
        doc = self._http.json("GET", "/log/checkpoint", idempotent=True)
        try:
            check_checkpoint(doc, self.identity().key)
        except ValueError as error:
            raise ProtocolError(str(error)) from None
        return dict(doc)


def _as_receipt(receipt: Union[Receipt, Mapping[str, Any], str, bytes]) -> Receipt:
    if isinstance(receipt, (str, bytes)):
        return Receipt.from_json(receipt)
    if not isinstance(receipt, Receipt):
        return Receipt.from_dict(receipt)
    return receipt


def verify_receipt(
    receipt: Union[Receipt, Mapping[str, Any], str, bytes],
    answer: Optional[Mapping[str, Any]] = None,
    key_id: Optional[str] = None,
    *,
    policy: Optional[PolicyLike] = None,
    note_key: Optional[Union[str, VerifierKey]] = None,
) -> List[Check]:
    """Proves an execution offline, with no network, in one of two ways:

    - ``policy`` (a C2SP tlog-policy: its text or a :class:`Policy`) or ``note_key``
      (the log's ``note_verifier_key`` from ``GET /keys``, short for the policy
      ``log <vkey>`` / ``quorum none``): from the receipt's own ``tlog_proof``
      (protocol v1.2 §T4, §T6), the trust resting on the policy's keys;
    - else ``answer``, a saved ``GET /verify/{id}`` document (``wasm-hypervisor
      verify --save-proof``), the trust resting on the receipt's own
      ``public_key``.

    ``key_id`` pins the receipt's key either way. Raises
    :class:`VerificationError`, :class:`KeyMismatchError`, or ``ValueError`` for
    a malformed policy or key (or both given)."""
    receipt = _as_receipt(receipt)
    trust = offline_policy(policy, note_key)
    if trust is not None:
        if key_id is not None and key_id.lower() != receipt.key_id:
            raise KeyMismatchError(key_id.lower(), receipt.key_id)
        checks = check_receipt_offline(receipt, trust)
        if not all(check.ok for check in checks):
            raise VerificationError(checks)
        return checks
    if answer is None:
        raise ValueError("verify_receipt needs a saved /verify answer, a policy or a note key")
    try:
        key = _crypto.ServerKey(b64decode(receipt.public_key, "public_key"))
    except ValueError:
        raise ProtocolError("the receipt's public key is not a P-256 SPKI") from None
    if key_id is not None and key_id.lower() != key.key_id:
        raise KeyMismatchError(key_id.lower(), key.key_id)
    checks = check_receipt(receipt, answer, key)
    if not all(check.ok for check in checks):
        raise VerificationError(checks)
    return checks
