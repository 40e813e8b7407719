"""What a finished execution gives back: :class:`ExecutionResult` (opened and
checked, with the :class:`Receipt` that proves it later), and the server's key as
:class:`ServerIdentity`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

from . import _crypto
from ._mounts import MountOut
from ._sealing import Sent
from ._replay import ReplayBundle
from .receipt import RECEIPT_VERSION, Receipt, b64encode
from .tlog import VerifierKey

__all__ = ["ExecutionResult", "ServerIdentity"]


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
    #: Why ``receipt`` has no ``tlog_proof`` although the server serves proofs
    #: (v1.2): not yet published within the client's retry bound, an error
    #: answer, a lost connection. ``None`` when the receipt has its proof, or the
    #: server predates v1.2 (its ``/keys`` has no ``note_verifier_key``). Such a
    #: receipt still verifies online.
    tlog_proof_error: Optional[str] = None
    #: A deterministic execution (protocol v1.2 §R, ``run(deterministic=True)``).
    deterministic: bool = False
    #: The hex SHA-256 of the deterministic engine's description (``GET
    #: /fuel-costs``) it ran on; ``None`` for a normal execution.
    engine_sha256: Optional[str] = None
    #: A deterministic execution's replay bundle (the receipt, with its
    #: tlog-proof when there is one, and both plaintexts: secrets):
    #: ``replay_bundle.save(path)`` writes the CLI's format, :meth:`Client.replay`
    #: checks it. ``None`` for a normal execution.
    replay_bundle: Optional[ReplayBundle] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """The guest ran to the end and exited 0 (or an ``invoke`` returned)."""
        return self.status == "completed" and self.exit_code in (0, None)


@dataclass(frozen=True)
class ServerIdentity:
    """The server's key from ``GET /keys``, and its note key (``note_verifier_key``,
    protocol v1.2 §T1; ``None`` from an older server)."""

    origin: str
    key: _crypto.ServerKey
    key_id: str
    note_key: Optional[VerifierKey] = None


def build_result(
    url: str,
    identity: ServerIdentity,
    doc: Dict[str, Any],
    answer: Dict[str, Any],
    sent: Sent,
    by_reference: Set[str],
    resent: List[str],
) -> ExecutionResult:
    """The result of an opened answer (``doc``, from :func:`_sealing.open_answer`),
    with its receipt."""
    receipt = Receipt(
        version=RECEIPT_VERSION,
        server=url,
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
    deterministic = doc.get("deterministic") is True
    bundle = ReplayBundle(receipt, sent.plaintext, doc["_result_plaintext"]) if deterministic else None
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
        deterministic=deterministic,
        engine_sha256=doc.get("engine_sha256"),
        replay_bundle=bundle,
    )
