"""The protocol's cryptography, byte for byte as protocol-v1.md says, on maintained
libraries: HPKE (RFC 9180) from pyhpke, ECDSA P-256 and AES-256-GCM from
pyca/cryptography, SHA-256 from hashlib. Nothing here is hand-written crypto:
only the labels, the byte layouts and the RFC 9162 proof walk.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

# Labels of protocol-v1.md §1–§3 and v1.1 §A (ASCII, no terminator).
REQUEST_INFO_LABEL = b"wasm-hypervisor v1 request "
RESPONSE_KEY_LABEL = b"wasm-hypervisor v1 response key"
RESPONSE_NONCE_LABEL = b"wasm-hypervisor v1 response nonce"
COMMITMENT_SALT_LABEL = b"wasm-hypervisor v1 commitment salt"
COMMITMENT_LABEL = b"wasm-hypervisor v1 commitment"
SESSION_LABEL = b"wasm-hypervisor v1 session "
SESSIONS_LABEL = b"wasm-hypervisor v1 sessions "

POINT_LEN = 65
LEAF_LEN = 57
LEAF_VERSION = 0x01

SUITE = {"kem": "DHKEM(P-256, HKDF-SHA256)", "kdf": "HKDF-SHA256", "aead": "AES-256-GCM"}

_HPKE = CipherSuite.new(KEMId.DHKEM_P256_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def digest_eq(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(a, b)


class ServerKey:
    """The server's long-term ECDSA P-256 key (an SPKI), and its key id."""

    def __init__(self, spki_der: bytes) -> None:
        key = serialization.load_der_public_key(spki_der)
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("not a P-256 public key")
        self._key = key
        self.spki_der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if self.spki_der != bytes(spki_der):
            raise ValueError("the SPKI is not in canonical DER")
        #: Lowercase hex SHA-256 of the SPKI DER, as `GET /keys` names it.
        self.key_id = hashlib.sha256(self.spki_der).hexdigest()

    def verify(self, message: bytes, signature_der: bytes) -> bool:
        """Whether ``signature_der`` is this key's ECDSA P-256 SHA-256 signature of ``message``."""
        try:
            self._key.verify(bytes(signature_der), bytes(message), ec.ECDSA(hashes.SHA256()))
            return True
        except (InvalidSignature, ValueError):
            return False


def session_message(session_id: str, public_key: bytes) -> bytes:
    """protocol-v1 §1: what the server signs for one session."""
    return SESSION_LABEL + session_id.encode("ascii") + public_key


def sessions_message(sessions: Sequence[Tuple[str, bytes]]) -> bytes:
    """protocol-v1.1 §A: what the server signs once for a batch, in its order."""
    parts = [SESSIONS_LABEL]
    for session_id, public_key in sessions:
        parts.append(session_id.encode("ascii"))
        parts.append(public_key)
    return b"".join(parts)


def check_point(point: bytes) -> None:
    """A session key must be a 65-byte uncompressed SEC1 point on P-256."""
    if len(point) != POINT_LEN or point[0] != 0x04:
        raise ValueError("not a 65-byte uncompressed point")
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


@dataclass(frozen=True)
class ResponseKeys:
    """What a sealed request exports to open its result and its commitment."""

    key: bytes
    nonce: bytes
    salt: bytes

    def open_result(self, execution_id: str, ciphertext: bytes) -> bytes:
        """AES-256-GCM open, with the 36-char execution id as the AAD; raises on failure."""
        return AESGCM(self.key).decrypt(self.nonce, bytes(ciphertext), execution_id.encode("ascii"))

    def commitment(self, request_plaintext: bytes, result_plaintext: bytes) -> bytes:
        return commitment(self.salt, sha256(request_plaintext), sha256(result_plaintext))


def seal_request(
    session_id: str, public_key: bytes, plaintext: bytes, _ephemeral_ikm: Optional[bytes] = None
) -> Tuple[bytes, bytes, ResponseKeys]:
    """protocol-v1 §2: (enc, ciphertext, keys) for ``plaintext`` sealed to a session.
    ``_ephemeral_ikm`` fixes the ephemeral key, for known-answer tests only."""
    check_point(public_key)
    pkr = _HPKE.kem.deserialize_public_key(public_key)
    eks = None if _ephemeral_ikm is None else _HPKE.kem.derive_key_pair(_ephemeral_ikm)
    enc, context = _HPKE.create_sender_context(pkr, REQUEST_INFO_LABEL + session_id.encode("ascii"), eks=eks)
    ciphertext = context.seal(plaintext, b"")
    keys = ResponseKeys(
        key=context.export(RESPONSE_KEY_LABEL, 32),
        nonce=context.export(RESPONSE_NONCE_LABEL, 12),
        salt=context.export(COMMITMENT_SALT_LABEL, 32),
    )
    return enc, ciphertext, keys


def commitment(salt: bytes, request_sha256: bytes, result_sha256: bytes) -> bytes:
    """protocol-v1 §3: SHA-256(label || salt || SHA-256(request) || SHA-256(result))."""
    return sha256(COMMITMENT_LABEL + salt + request_sha256 + result_sha256)


def parse_leaf(leaf: bytes) -> Tuple[str, int, bytes]:
    """(execution_id, timestamp_ms, commitment) of a 57-byte v1 leaf; raises ValueError."""
    if len(leaf) != LEAF_LEN or leaf[0] != LEAF_VERSION:
        raise ValueError("not a 57-byte v1 leaf")
    return str(uuid.UUID(bytes=bytes(leaf[1:17]))), int.from_bytes(leaf[17:25], "big"), bytes(leaf[25:57])


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x00 || leaf)."""
    return sha256(b"\x00" + leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right)


def verify_inclusion(leaf_digest: bytes, index: int, size: int, proof: List[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2, step by step; raises ValueError saying why it fails."""
    if index >= size:
        raise ValueError(f"leaf index {index} is out of range for a tree of size {size}")
    f_n, s_n = index, size - 1
    r = leaf_digest
    for p in proof:
        if s_n == 0:
            raise ValueError(f"a proof of {len(proof)} hashes has the wrong length for these tree sizes")
        if f_n & 1 == 1 or f_n == s_n:
            r = node_hash(p, r)
            while f_n & 1 == 0 and f_n != 0:
                f_n >>= 1
                s_n >>= 1
        else:
            r = node_hash(r, p)
        f_n >>= 1
        s_n >>= 1
    if s_n != 0:
        raise ValueError(f"a proof of {len(proof)} hashes has the wrong length for these tree sizes")
    if not digest_eq(r, root):
        raise ValueError("the proof does not lead to the expected root hash")
