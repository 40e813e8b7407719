"""Sealing: a request written as its plaintext (deterministic CBOR for v1.1, JSON
for v1), sealed to a session key as an ``/execute`` body, and the answer read
back (binary or JSON), opened with the request's keys and its commitment checked."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Set, Tuple

from cryptography.exceptions import InvalidTag

from . import _cbor, _crypto
from ._blobs import Spec
from ._http import parse_json, response_error
from ._mounts import MountOut
from .errors import ProtocolError
from .options import Wire
from .receipt import STATUSES, b64decode, b64encode


@dataclass
class Sent:
    """A sealed request on its way: what opens its answer."""

    keys: _crypto.ResponseKeys
    plaintext: bytes
    binary: bool


def encode_plaintext(spec: Spec, by_reference: Set[str], wire: Wire) -> bytes:
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
    if wire is Wire.V1_1:
        return _cbor.encode(request)
    for name in ("module", "stdin"):
        if name in request:
            request[name] = b64encode(request[name])
    for item in request.get("mounts", []):
        if "tar" in item:
            item["tar"] = b64encode(item["tar"])
    return json.dumps(request, separators=(",", ":")).encode()


def seal(session_id: str, public_key: bytes, plaintext: bytes, wire: Wire) -> Tuple[Sent, bytes, str]:
    """``plaintext`` sealed to the session: what opens the answer, the ``/execute``
    body (binary, §B, or JSON) and its content type."""
    enc, ciphertext, keys = _crypto.seal_request(session_id, public_key, plaintext)
    if wire is Wire.V1_1:
        body = uuid.UUID(session_id).bytes + enc + ciphertext
        content_type = "application/octet-stream"
    else:
        body = json.dumps({"session_id": session_id, "enc": b64encode(enc), "ciphertext": b64encode(ciphertext)}).encode()
        content_type = "application/json"
    return Sent(keys, plaintext, wire is Wire.V1_1), body, content_type


def open_answer(sent: Sent, answer: Dict[str, Any]) -> Dict[str, Any]:
    """The result document of ``answer``, opened with ``sent``'s keys, its execution
    id and commitment checked; ``_request_sha256``, ``_result_sha256`` and
    ``_result_plaintext`` added."""
    execution_id = answer["execution_id"]
    try:
        result_plaintext = sent.keys.open_result(execution_id, answer["ciphertext"])
    except (InvalidTag, ValueError):
        raise ProtocolError("the result does not decrypt with this request's keys") from None
    doc = result_document(result_plaintext, is_cbor(sent.plaintext))
    if doc.get("execution_id") != execution_id:
        raise ProtocolError("the sealed result names another execution")
    if not _crypto.digest_eq(sent.keys.commitment(sent.plaintext, result_plaintext), answer["commitment"]):
        raise ProtocolError("the commitment does not match the request and result")
    doc["_request_sha256"] = _crypto.sha256(sent.plaintext).hex()
    doc["_result_sha256"] = _crypto.sha256(result_plaintext).hex()
    # For a deterministic execution's replay bundle (the bytes as sealed).
    doc["_result_plaintext"] = result_plaintext
    return doc


def uuid_text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 36 or value != value.lower():
        raise ProtocolError(f"`{what}` is not a 36-character lowercase UUID")
    try:
        uuid.UUID(value)
    except ValueError:
        raise ProtocolError(f"`{what}` is not a UUID") from None
    return value


def b64(value: Any, what: str, length: Optional[int] = None) -> bytes:
    try:
        return b64decode(value, what, length)
    except ValueError as error:
        raise ProtocolError(str(error)) from None


def execute_answer(status: int, headers: Mapping[str, str], data: bytes) -> Dict[str, Any]:
    """A ``200`` of ``/execute`` (or a finished ``GET /executions/{id}``) in either
    body type, as {execution_id, ciphertext, commitment (bytes), log_index, leaf_signature (bytes)}."""
    if status != 200:
        raise response_error(status, headers, data) if status >= 400 else ProtocolError(f"unexpected HTTP status {status}")
    if headers.get("content-type", "").lower().startswith("application/octet-stream"):
        # protocol v1.1 §B
        if len(data) < 58:
            raise ProtocolError("the binary answer is shorter than its fixed fields")
        signature_len = int.from_bytes(data[56:58], "big")
        if len(data) < 58 + signature_len:
            raise ProtocolError("the binary answer's leaf signature runs past its end")
        return {
            "execution_id": str(uuid.UUID(bytes=data[0:16])),
            "log_index": int.from_bytes(data[16:24], "big"),
            "commitment": data[24:56],
            "leaf_signature": data[58 : 58 + signature_len],
            "ciphertext": data[58 + signature_len :],
        }
    doc = parse_json(data)
    if not isinstance(doc, dict):
        raise ProtocolError("the /execute answer is not a JSON object")
    commitment = doc.get("commitment")
    if not isinstance(commitment, str) or len(commitment) != 64:
        raise ProtocolError("`commitment` is not a hex SHA-256")
    try:
        commitment_bytes = bytes.fromhex(commitment)
    except ValueError:
        raise ProtocolError("`commitment` is not a hex SHA-256") from None
    log_index = doc.get("log_index")
    if isinstance(log_index, bool) or not isinstance(log_index, int) or log_index < 0:
        raise ProtocolError("`log_index` is not an unsigned integer")
    return {
        "execution_id": uuid_text(doc.get("execution_id"), "execution_id"),
        "log_index": log_index,
        "commitment": commitment_bytes,
        "leaf_signature": b64(doc.get("leaf_signature"), "leaf_signature"),
        "ciphertext": b64(doc.get("ciphertext"), "ciphertext"),
    }


def is_cbor(plaintext: bytes) -> bool:
    """protocol v1.1 §C: a plaintext whose first byte is a CBOR map head is CBOR."""
    return len(plaintext) > 0 and 0xA0 <= plaintext[0] <= 0xBB


def result_document(result_plaintext: bytes, cbor: bool) -> Dict[str, Any]:
    """The result plaintext as a dict whose byte fields are bytes, whatever its format."""
    try:
        doc = _cbor.decode(result_plaintext) if cbor else json.loads(result_plaintext)
    except ValueError as error:
        raise ProtocolError(f"the result is not valid {'CBOR' if cbor else 'JSON'}: {error}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("the result is not an object")

    def as_bytes(value: Any, what: str) -> bytes:
        if cbor:
            if not isinstance(value, bytes):
                raise ProtocolError(f"the result's `{what}` is not a byte string")
            return value
        return b64(value, what)

    doc["stdout"] = as_bytes(doc.get("stdout", b"" if cbor else ""), "stdout")
    doc["stderr"] = as_bytes(doc.get("stderr", b"" if cbor else ""), "stderr")
    mounts_out = doc.get("mounts_out")
    if mounts_out is not None:
        if not isinstance(mounts_out, list) or not all(isinstance(item, dict) for item in mounts_out):
            raise ProtocolError("the result's `mounts_out` is not a list of objects")
        doc["mounts_out"] = [MountOut(str(item.get("path")), as_bytes(item.get("tar"), "mounts_out[].tar")) for item in mounts_out]
    if doc.get("status") not in STATUSES:
        raise ProtocolError(f"the result's status {doc.get('status')!r} is unknown")
    return doc
