"""Receipts: the JSON document of PROTOCOL.md "Receipts (`run --receipt`)", the
same one the CLI's ``run --receipt`` writes and ``verify`` reads, and the checks
that prove an execution from one: against a ``GET /verify/{id}`` answer
(:func:`check_receipt`), or offline from the receipt's own ``tlog_proof`` under a
C2SP tlog-policy (:func:`check_receipt_offline`, protocol v1.2 §T4/§T6).

The checks are those of the Rust ``receipt::check_receipt``, with the same names
and in the same order.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from . import _crypto
from .errors import Check
from .tlog import Policy, TlogProof, VerifiedCheckpoint, VerifierKey

__all__ = ["Receipt", "RECEIPT_VERSION", "STATUSES", "check_receipt", "check_checkpoint", "check_receipt_offline"]

RECEIPT_VERSION = 1

#: Every execution status (protocol §3 and v1.1 §G).
STATUSES = (
    "completed",
    "trap",
    "fuel_exhausted",
    "timeout",
    "memory_limit",
    "invalid_module",
    "invalid_request",
    "missing_blob",
)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: Any, what: str, length: Optional[int] = None) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"`{what}` is not a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"`{what}` is not standard base64") from None
    if length is not None and len(data) != length:
        raise ValueError(f"`{what}` is not the base64 of {length} bytes")
    return data


def hex32(text: Any, what: str) -> str:
    """A lowercase hex string of 32 bytes, as the protocol writes hashes."""
    if not isinstance(text, str) or len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"`{what}` is not 64 lowercase hex digits")
    return text


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 1 << 64:
        raise ValueError(f"`{what}` is not an unsigned 64-bit integer")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"`{what}` is not a string")
    return value


@dataclass
class Receipt:
    """What proves an execution later. It holds the commitment's ``salt``: keep it
    private (with it anyone can test guesses of the plaintexts)."""

    version: int
    server: str
    origin: str
    key_id: str
    public_key: str
    execution_id: str
    log_index: int
    status: str
    commitment: str
    salt: str
    request_sha256: str
    result_sha256: str
    module_sha256: Optional[str]
    leaf_signature: str
    #: The ``c2sp.org/tlog-proof@v1`` text exactly as ``GET /tlog/proof/{id}``
    #: served it, when the client got one (protocol v1.2 §T4): it lets anyone
    #: holding the log's note key verify the receipt offline. Optional.
    tlog_proof: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """The receipt as a JSON object, fields in the CLI's order (``tlog_proof``
        last, and only when there is one)."""
        doc = {
            "version": self.version,
            "server": self.server,
            "origin": self.origin,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "execution_id": self.execution_id,
            "log_index": self.log_index,
            "status": self.status,
            "commitment": self.commitment,
            "salt": self.salt,
            "request_sha256": self.request_sha256,
            "result_sha256": self.result_sha256,
            "module_sha256": self.module_sha256,
            "leaf_signature": self.leaf_signature,
        }
        if self.tlog_proof is not None:
            doc["tlog_proof"] = self.tlog_proof
        return doc

    def to_json(self) -> str:
        """The receipt's JSON text, as the CLI writes it (two-space indent, final newline)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes :meth:`to_json` to ``path``, readable by its owner only (a file
        that was there keeps its inode but loses any wider mode)."""
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if hasattr(os, "fchmod"):
            # The mode of os.open applies only to a file it creates.
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(self.to_json())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Receipt":
        """Reads a receipt object, checking every field's type and encoding; unknown
        fields are ignored (as the CLI ignores them). Raises ``ValueError``."""
        if not isinstance(doc, Mapping):
            raise ValueError("a receipt is a JSON object")
        missing = [name for name in _FIELDS if name not in doc]
        if missing:
            raise ValueError(f"the receipt has no `{missing[0]}`")
        version = _integer(doc["version"], "version")
        if version != RECEIPT_VERSION:
            raise ValueError(f"receipt version {version} is not {RECEIPT_VERSION}")
        execution_id = _text(doc["execution_id"], "execution_id")
        status = _text(doc["status"], "status")
        if status not in STATUSES:
            raise ValueError(f"`status` {status!r} is not an execution status")
        b64decode(doc["public_key"], "public_key")
        b64decode(doc["leaf_signature"], "leaf_signature")
        module_sha256 = doc["module_sha256"]
        # Receipts written before protocol v1.2 have no `tlog_proof`.
        tlog_proof = doc.get("tlog_proof")
        if tlog_proof is not None:
            tlog_proof = _text(tlog_proof, "tlog_proof")
        return cls(
            version=version,
            server=_text(doc["server"], "server"),
            origin=_text(doc["origin"], "origin"),
            key_id=hex32(doc["key_id"], "key_id"),
            public_key=doc["public_key"],
            execution_id=execution_id,
            log_index=_integer(doc["log_index"], "log_index"),
            status=status,
            commitment=hex32(doc["commitment"], "commitment"),
            salt=hex32(doc["salt"], "salt"),
            request_sha256=hex32(doc["request_sha256"], "request_sha256"),
            result_sha256=hex32(doc["result_sha256"], "result_sha256"),
            module_sha256=None if module_sha256 is None else hex32(module_sha256, "module_sha256"),
            leaf_signature=doc["leaf_signature"],
            tlog_proof=tlog_proof,
        )

    @classmethod
    def from_json(cls, text: Union[str, bytes]) -> "Receipt":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "Receipt":
        with open(path, "rb") as file:
            return cls.from_json(file.read())


#: The required fields, in order (``tlog_proof``, optional, comes after them).
_FIELDS = tuple(name for name in Receipt.__dataclass_fields__ if name != "tlog_proof")


def check_checkpoint(checkpoint: Mapping[str, Any], key: _crypto.ServerKey) -> Tuple[str, int, bytes]:
    """A signed checkpoint (``GET /log/checkpoint``, or inside ``/verify``): its
    signature over ``body``, its body's three lines, and that its JSON fields say
    what the body says. Returns (origin, tree_size, root_hash); raises ValueError."""
    body = checkpoint.get("body")
    if not isinstance(body, str):
        raise ValueError("the checkpoint has no body")
    signature = b64decode(checkpoint.get("signature"), "checkpoint.signature")
    if not key.verify(body.encode("utf-8"), signature):
        raise ValueError("the checkpoint signature does not verify under the server's key")
    lines = body.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise ValueError("a checkpoint body is exactly three lines, each ending in a newline")
    origin, size, root = lines[0], lines[1], lines[2]
    if not origin or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in origin):
        raise ValueError("the origin line is empty or not printable")
    if not size.isascii() or not size.isdigit() or (size != "0" and size.startswith("0")) or int(size) >= 1 << 64:
        raise ValueError("the tree size is not a canonical decimal number")
    try:
        root_hash = b64decode(root, "root", 32)
    except ValueError:
        raise ValueError("the root hash is not the base64 of 32 bytes") from None
    tree_size = int(size)
    try:
        fields_root = b64decode(checkpoint.get("root_hash"), "root_hash", 32)
    except ValueError:
        fields_root = b""
    if checkpoint.get("origin") != origin or checkpoint.get("tree_size") != tree_size or fields_root != root_hash:
        raise ValueError("the checkpoint's fields differ from its signed body")
    return origin, tree_size, root_hash


def _run(checks: List[Check], name: str, step: Any) -> bool:
    try:
        step()
    except ValueError as error:
        checks.append(Check(name, str(error)))
        return False
    checks.append(Check(name))
    return True


def _open_commitment(receipt: Receipt) -> None:
    opened = _crypto.commitment(
        bytes.fromhex(receipt.salt), bytes.fromhex(receipt.request_sha256), bytes.fromhex(receipt.result_sha256)
    )
    if not _crypto.digest_eq(opened, bytes.fromhex(receipt.commitment)):
        raise ValueError("salt and plaintext hashes do not open the commitment")


def check_receipt(receipt: Receipt, answer: Mapping[str, Any], key: _crypto.ServerKey) -> List[Check]:
    """Every check of ``receipt`` against a ``GET /verify/{id}`` ``answer`` under the
    server's ``key``, in order; the receipt proves its execution when all hold."""
    checks: List[Check] = []

    def receipt_key() -> None:
        if key.key_id != receipt.key_id:
            raise ValueError(f"the receipt was signed by key {receipt.key_id}, the server's key is {key.key_id}")

    _run(checks, "receipt key", receipt_key)

    try:
        leaf = b64decode(answer.get("leaf"), "leaf")
    except ValueError:
        leaf = b""

    def leaf_signature() -> None:
        try:
            signature = b64decode(receipt.leaf_signature, "leaf_signature")
        except ValueError:
            signature = b""
        if not key.verify(leaf, signature):
            raise ValueError("the receipt's leaf signature does not verify over the logged leaf")

    _run(checks, "leaf signature", leaf_signature)

    def leaf_contents() -> None:
        try:
            logged_id, _, logged_commitment = _crypto.parse_leaf(leaf)
        except ValueError:
            raise ValueError("the logged leaf is not a 57-byte v1 leaf") from None
        try:
            receipt_id = str(uuid.UUID(receipt.execution_id))
        except ValueError:
            raise ValueError("the receipt's execution id is not a UUID") from None
        if logged_id != receipt_id:
            raise ValueError("the logged leaf is for another execution")
        if logged_commitment.hex() != receipt.commitment:
            raise ValueError("the logged leaf carries another commitment")
        if answer.get("log_index") != receipt.log_index:
            raise ValueError(f"the execution is at index {answer.get('log_index')}, the receipt says {receipt.log_index}")

    _run(checks, "leaf contents", leaf_contents)

    _run(checks, "commitment opening", lambda: _open_commitment(receipt))

    checkpoint: List[Tuple[str, int, bytes]] = []

    def checkpoint_signature() -> None:
        raw = answer.get("checkpoint")
        if not isinstance(raw, Mapping):
            raise ValueError("the answer has no checkpoint")
        checkpoint.append(check_checkpoint(raw, key))

    _run(checks, "checkpoint signature", checkpoint_signature)

    def inclusion_proof() -> None:
        if not checkpoint:
            raise ValueError("no valid checkpoint")
        _, tree_size, root_hash = checkpoint[0]
        proof = answer.get("inclusion_proof")
        if not isinstance(proof, list):
            raise ValueError("the answer has no inclusion proof")
        hashes = [b64decode(item, "inclusion_proof[]", 32) for item in proof]
        index = answer.get("log_index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError("the answer's log index is not an integer")
        _crypto.verify_inclusion(_crypto.leaf_hash(leaf), index, tree_size, hashes, root_hash)

    _run(checks, "inclusion proof", inclusion_proof)
    return checks


#: What the offline checks say when a receipt has no proof to check offline.
NO_TLOG_PROOF = "the receipt carries no tlog_proof; verify it online"


def check_receipt_offline(receipt: Receipt, policy: Policy) -> List[Check]:
    """Every check of ``receipt`` from its own ``tlog_proof`` under ``policy`` (a
    C2SP tlog-policy; :meth:`Policy.single_log` for the log's note key alone), in
    order, with no network (the shared design of issue 27):

    1. ``receipt key``: ``key_id`` is the SHA-256 of ``public_key``'s SPKI, and the
       proof's checkpoint note carries a valid type-0x02 line of that key named
       after the receipt's ``origin`` (which ties the leaf's signer to the log);
    2. ``leaf signature``: the proof's leaf (its ``extra``) under ``public_key``;
    3. ``leaf contents``: the leaf's execution id and commitment are the receipt's,
       the proof's index its ``log_index``;
    4. ``commitment opening``: as online;
    5. ``checkpoint signature``: the note passes the policy, its origin is ``origin``;
    6. ``inclusion proof``: from the leaf hash at the index to the note's root.

    Without a ``tlog_proof`` every check but the commitment opening fails with
    :data:`NO_TLOG_PROOF`."""
    checks: List[Check] = []
    proof: Optional[TlogProof] = None
    malformed = NO_TLOG_PROOF
    if receipt.tlog_proof is not None:
        try:
            proof = TlogProof.parse(receipt.tlog_proof)
        except ValueError as error:
            malformed = f"the receipt's tlog_proof is malformed: {error}"

    def needs_proof() -> TlogProof:
        if proof is None:
            raise ValueError(malformed)
        return proof

    def needs_leaf() -> bytes:
        extra = needs_proof().extra
        if extra is None:
            raise ValueError("the tlog_proof has no extra line: its leaf is unknown")
        return extra

    key: List[_crypto.ServerKey] = []

    def receipt_key() -> None:
        try:
            spki = b64decode(receipt.public_key, "public_key")
            server_key = _crypto.ServerKey(spki)
        except ValueError:
            raise ValueError("the receipt's public key is not a P-256 SPKI") from None
        if server_key.key_id != receipt.key_id:
            raise ValueError(f"the receipt's key_id is not the SHA-256 of its public key ({server_key.key_id})")
        try:
            needs_proof().checkpoint.verify([VerifierKey.ecdsa_p256(receipt.origin, server_key.spki_der)])
        except ValueError as error:
            raise ValueError(f"the checkpoint note carries no valid line of the receipt's key named {receipt.origin}: {error}") from None
        key.append(server_key)

    _run(checks, "receipt key", receipt_key)

    def leaf_signature() -> None:
        leaf = needs_leaf()
        if not key:
            try:
                key.append(_crypto.ServerKey(b64decode(receipt.public_key, "public_key")))
            except ValueError:
                raise ValueError("the receipt's public key is not a P-256 SPKI") from None
        try:
            signature = b64decode(receipt.leaf_signature, "leaf_signature")
        except ValueError:
            signature = b""
        if not key[0].verify(leaf, signature):
            raise ValueError("the receipt's leaf signature does not verify over the proof's leaf")

    _run(checks, "leaf signature", leaf_signature)

    def leaf_contents() -> None:
        leaf = needs_leaf()
        try:
            logged_id, _, logged_commitment = _crypto.parse_leaf(leaf)
        except ValueError:
            raise ValueError("the proof's leaf is not a 57-byte v1 leaf") from None
        try:
            receipt_id = str(uuid.UUID(receipt.execution_id))
        except ValueError:
            raise ValueError("the receipt's execution id is not a UUID") from None
        if logged_id != receipt_id:
            raise ValueError("the proof's leaf is for another execution")
        if logged_commitment.hex() != receipt.commitment:
            raise ValueError("the proof's leaf carries another commitment")
        if needs_proof().index != receipt.log_index:
            raise ValueError(f"the proof is for index {needs_proof().index}, the receipt says {receipt.log_index}")

    _run(checks, "leaf contents", leaf_contents)
    _run(checks, "commitment opening", lambda: _open_commitment(receipt))

    verified: List[VerifiedCheckpoint] = []

    def checkpoint_signature() -> None:
        checkpoint = policy.verify_checkpoint(needs_proof().checkpoint)
        if checkpoint.checkpoint.origin != receipt.origin:
            raise ValueError(f"the checkpoint is of the log {checkpoint.checkpoint.origin}, the receipt's is {receipt.origin}")
        verified.append(checkpoint)

    _run(checks, "checkpoint signature", checkpoint_signature)

    def inclusion_proof() -> None:
        leaf, proof_ = needs_leaf(), needs_proof()
        if not verified:
            raise ValueError("no valid checkpoint")
        tree = verified[0].checkpoint
        _crypto.verify_inclusion(_crypto.leaf_hash(leaf), proof_.index, tree.tree_size, proof_.inclusion_proof, tree.root_hash)

    _run(checks, "inclusion proof", inclusion_proof)
    return checks
