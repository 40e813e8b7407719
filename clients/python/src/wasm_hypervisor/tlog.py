"""The C2SP transparency formats of protocol v1.2, read and verified strictly, as
PROTOCOL.md "Protocol v1.2: transparency formats" says (the Rust protocol crate's
``note``, ``checkpoint``, ``policy`` and ``tlog_proof`` modules, rule for rule):

- **signed notes** (c2sp.org/signed-note): :class:`Note`, verified under
  :class:`VerifierKey` s of type ``0x01`` (Ed25519), ``0x02`` (ECDSA P-256 over an
  SPKI, as transparency-dev/witness) and ``0x04`` (cosignature/v1);
- **checkpoints** (c2sp.org/tlog-checkpoint): :class:`Checkpoint`, read from a note
  only once a log key named after its origin signed it;
- **policies** (c2sp.org/tlog-policy): :class:`Policy` (``log``, ``witness``,
  ``group``, ``quorum`` lines; :meth:`Policy.single_log` is ``log <vkey>`` /
  ``quorum none``);
- **proofs of logging** (c2sp.org/tlog-proof@v1): :class:`TlogProof`, whose
  ``extra`` line is the 57-byte v1 leaf.

Everything here is offline and pure: no network, no clock. Ed25519 and ECDSA come
from pyca/cryptography (OpenSSL's Ed25519 is RFC 8032's cofactorless check with
``S`` below the group order, as the server's providers and Go's ``crypto/ed25519``);
only the text formats are written here. Every refusal is a ``ValueError``:
:class:`NoteError`, :class:`PolicyError` or :class:`TlogProofError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import _crypto

__all__ = [
    "Checkpoint",
    "Note",
    "NoteError",
    "NoteSignature",
    "Policy",
    "PolicyError",
    "TlogProof",
    "TlogProofError",
    "VerifiedCheckpoint",
    "VerifiedTlogProof",
    "VerifierKey",
]

#: The most signature lines a note may carry (the spec asks for at least 16; Go's
#: ``note.Open`` allows 100).
MAX_SIGNATURES = 100
#: The largest note read, in bytes.
MAX_NOTE_BYTES = 1_000_000
#: The most hashes an inclusion proof has (a tree of < 2^64 leaves is <= 64 high).
MAX_PROOF_HASHES = 64
#: The largest tlog-proof read: a note of the largest size and the lines before it.
MAX_TLOG_PROOF_BYTES = MAX_NOTE_BYTES + 64 * 1024
#: The most logs, witnesses or groups a policy may define, of each.
MAX_POLICY_ENTRIES = 256
#: The largest policy file read, in bytes.
MAX_POLICY_BYTES = 1 << 20

TYPE_ED25519 = 0x01
TYPE_ECDSA = 0x02
TYPE_COSIGNATURE_V1 = 0x04
LOG_KEY_TYPES = (TYPE_ED25519, TYPE_ECDSA)

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
_SIGNATURE_PREFIX = "\u2014 "
_COSIGNATURE_LEN = 8 + 64

# Unicode's White_Space property (what signed-note's "Unicode spaces" and Rust's
# `char::is_whitespace` mean), listed so the answer does not depend on Python's
# `str.isspace`, which differs from it.
_WHITE_SPACE = frozenset(
    "\u0009\u000a\u000b\u000c\u000d\u0020\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004"
    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class NoteError(ValueError):
    """A signed note, a verifier key or a signature was refused."""


class PolicyError(ValueError):
    """A policy file was refused, or a checkpoint did not pass a policy."""


class TlogProofError(ValueError):
    """A tlog-proof was refused: malformed, or it does not verify."""


def _is_control(char: str) -> bool:
    """Unicode category Cc (Rust's `char::is_control`)."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def is_valid_key_name(name: str) -> bool:
    """Non-empty, without Unicode spaces, ``+`` or control characters (signed-note "Format")."""
    return bool(name) and not any(c in _WHITE_SPACE or c == "+" or _is_control(c) for c in name)


def canonical_b64decode(text: str) -> Optional[bytes]:
    """Standard padded base64 in its canonical form only (zero trailing bits), else ``None``."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return data if base64.b64encode(data).decode("ascii") == text else None


def _canonical_decimal(text: str, limit: int = 1 << 64) -> Optional[int]:
    """A decimal without leading zeros (``0`` itself allowed), below ``limit``."""
    if not text or not all("0" <= c <= "9" for c in text) or (text != "0" and text[0] == "0"):
        return None
    value = int(text)
    return value if value < limit else None


def key_id(name: str, signature_type: int, public_key: bytes) -> int:
    """``SHA-256(name || 0x0A || type || public key)[:4]``, big-endian (types 0x01, 0x04)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def ecdsa_key_id(spki_der: bytes) -> int:
    """``SHA-256(DER SPKI)[:4]``: the key id of an ECDSA key (type 0x02)."""
    return int.from_bytes(hashlib.sha256(spki_der).digest()[:4], "big")


def cosignature_message(timestamp: int, text: str) -> bytes:
    """tlog-cosignature's signed message: ``cosignature/v1\\ntime <t>\\n`` then the note text."""
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode("utf-8")


# -- signed notes -------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key's name and id, and the signature bytes after the id."""

    name: str
    key_id: int
    signature: bytes

    @classmethod
    def parse_line(cls, line: str) -> "NoteSignature":
        """Reads ``— <name> <base64>`` (without its newline)."""
        if not line.startswith(_SIGNATURE_PREFIX) or " " not in line[len(_SIGNATURE_PREFIX) :]:
            raise NoteError("a signature line is an em dash, a space, a key name, a space and base64")
        name, encoded = line[len(_SIGNATURE_PREFIX) :].split(" ", 1)
        if not is_valid_key_name(name):
            raise NoteError("a key name is not empty and holds no space, plus or control character")
        data = canonical_b64decode(encoded)
        if data is None or len(data) < 5:
            raise NoteError("a signature is the canonical base64 of a key id and at least one byte")
        return cls(name, int.from_bytes(data[:4], "big"), data[4:])

    def line(self) -> str:
        encoded = base64.b64encode(self.key_id.to_bytes(4, "big") + self.signature).decode("ascii")
        return f"{_SIGNATURE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified: the index of its key among those given and, for a
    cosignature, its timestamp (POSIX seconds)."""

    verifier: int
    timestamp: Optional[int] = None


@dataclass
class Note:
    """A signed note: its text (final newline included) and its signature lines."""

    text: str
    signatures: List[NoteSignature] = field(default_factory=list)

    @classmethod
    def parse(cls, data: Union[bytes, str]) -> "Note":
        """Reads a signed note strictly; its signatures are read, not verified."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if len(raw) > MAX_NOTE_BYTES:
            raise NoteError(f"a note is at most {MAX_NOTE_BYTES} bytes")
        try:
            note = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("a note is UTF-8") from None
        if any(b < 0x20 and b != 0x0A for b in raw):
            raise NoteError("a note holds no control character but newline")
        # The text ends at the last blank line and keeps its final newline.
        split = note.rfind("\n\n")
        block = note[split + 2 :]
        if split < 0 or not block.endswith("\n"):
            raise NoteError("a note is a text ending in a newline, a blank line, then signature lines")
        parsed = cls(note[: split + 1])
        for line in block[:-1].split("\n"):
            parsed.add_signature(NoteSignature.parse_line(line))
        return parsed

    def add_signature(self, signature: NoteSignature) -> None:
        if len(self.signatures) == MAX_SIGNATURES:
            raise NoteError(f"a note carries at most {MAX_SIGNATURES} signatures")
        if any(s.name == signature.name and s.key_id == signature.key_id for s in self.signatures):
            raise NoteError(f"two signatures of the key {signature.name}+{signature.key_id:08x}")
        self.signatures.append(signature)

    def to_text(self) -> str:
        """The note's text: the text, a blank line, one line per signature."""
        return self.text + "\n" + "".join(signature.line() for signature in self.signatures)

    def verify(self, keys: Sequence["VerifierKey"]) -> List[VerifiedSignature]:
        """Signed-note "Signatures": signatures of unknown keys are ignored, each of a
        known key must verify, at least one must. The ones that verified, in order."""
        seen = set()
        for key in keys:
            if (key.name, key.key_id) in seen:
                raise NoteError(f"two verifier keys are named {key.name}+{key.key_id:08x}")
            seen.add((key.name, key.key_id))
        verified = []
        for signature in self.signatures:
            index = next(
                (i for i, key in enumerate(keys) if key.name == signature.name and key.key_id == signature.key_id),
                None,
            )
            if index is None:
                continue
            ok, timestamp = keys[index].check(self.text, signature.signature)
            if not ok:
                raise NoteError(f"the signature of the key {signature.name}+{signature.key_id:08x} does not verify")
            verified.append(VerifiedSignature(index, timestamp))
        if not verified:
            raise NoteError("the note carries no signature of a known key")
        return verified


class VerifierKey:
    """A vkey, ``<name>+<key id>+<base64(type || public key)>``, of type ``0x01``
    (Ed25519), ``0x02`` (a P-256 SPKI) or ``0x04`` (cosignature/v1)."""

    def __init__(self, name: str, signature_type: int, public_key: bytes) -> None:
        if not is_valid_key_name(name):
            raise NoteError("a key name is not empty and holds no space, plus or control character")
        public_key = bytes(public_key)
        self.name = name
        self.signature_type = signature_type
        self.public_key = public_key
        self._ed25519: Optional[Ed25519PublicKey] = None
        self._ecdsa: Optional[_crypto.ServerKey] = None
        if signature_type in (TYPE_ED25519, TYPE_COSIGNATURE_V1):
            if len(public_key) != 32:
                raise NoteError("the key material is not a public key of its type")
            try:
                self._ed25519 = Ed25519PublicKey.from_public_bytes(public_key)
            except ValueError:
                raise NoteError("the key material is not a public key of its type") from None
            self.key_id = key_id(name, signature_type, public_key)
        elif signature_type == TYPE_ECDSA:
            try:
                self._ecdsa = _crypto.ServerKey(public_key)
            except ValueError:
                raise NoteError("the key material is not a public key of its type") from None
            self.key_id = ecdsa_key_id(public_key)
        else:
            raise NoteError(f"signature type 0x{signature_type:02x} is not supported")

    @classmethod
    def parse(cls, vkey: str) -> "VerifierKey":
        """Reads a vkey whose key id must be its key's (lowercase hex)."""
        if not isinstance(vkey, str) or vkey.count("+") < 2:
            raise NoteError("a verifier key is <name>+<8 lowercase hex digits>+<base64 of type and key>")
        # The name and the id hold no `+`; base64 may.
        name, id_hex, encoded = vkey.split("+", 2)
        if not is_valid_key_name(name):
            raise NoteError("a key name is not empty and holds no space, plus or control character")
        data = canonical_b64decode(encoded)
        if len(id_hex) != 8 or any(c not in "0123456789abcdef" for c in id_hex) or not data:
            raise NoteError("a verifier key is <name>+<8 lowercase hex digits>+<base64 of type and key>")
        key = cls(name, data[0], data[1:])
        if key.key_id != int(id_hex, 16):
            raise NoteError("the key id does not match the key")
        return key

    @classmethod
    def ecdsa_p256(cls, name: str, spki_der: bytes) -> "VerifierKey":
        """The vkey (type 0x02) of the P-256 key ``spki_der`` named ``name``."""
        return cls(name, TYPE_ECDSA, spki_der)

    def check(self, text: str, signature: bytes) -> Tuple[bool, Optional[int]]:
        """Whether ``signature`` (the bytes after the key id) signs ``text``; a
        cosignature also gives its timestamp."""
        message = text.encode("utf-8")
        if self._ecdsa is not None:
            return self._ecdsa.verify(message, signature), None
        assert self._ed25519 is not None
        timestamp = None
        if self.signature_type == TYPE_COSIGNATURE_V1:
            if len(signature) != _COSIGNATURE_LEN:
                return False, None
            timestamp = int.from_bytes(signature[:8], "big")
            if timestamp >= 1 << 63:
                return False, None
            message, signature = cosignature_message(timestamp, text), signature[8:]
        try:
            self._ed25519.verify(bytes(signature), message)
        except InvalidSignature:
            return False, None
        return True, timestamp

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([self.signature_type]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def __repr__(self) -> str:
        return f"VerifierKey({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifierKey) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


# -- checkpoints --------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: which log, how many leaves, the root over them."""

    origin: str
    tree_size: int
    root_hash: bytes

    @classmethod
    def parse(cls, body: str) -> "Checkpoint":
        """A body of exactly three newline-terminated lines (no extension lines)."""
        lines = body.split("\n")
        if len(lines) != 4 or lines[3] != "":
            raise NoteError("a checkpoint body is exactly three lines, each ending in a newline")
        origin, size, root = lines[:3]
        if not origin or any(_is_control(c) for c in origin):
            raise NoteError("the origin line is empty or not printable")
        tree_size = _canonical_decimal(size)
        if tree_size is None:
            raise NoteError("the tree size is not a canonical decimal number")
        root_hash = canonical_b64decode(root)
        if root_hash is None or len(root_hash) != 32:
            raise NoteError("the root hash is not the base64 of 32 bytes")
        return cls(origin, tree_size, root_hash)


@dataclass
class VerifiedCheckpoint:
    """A checkpoint read from a note that a log key named after its origin signed:
    the log keys (indexes into those given) whose signature verified, and the
    witnesses' (index, timestamp) whose cosignature did."""

    checkpoint: Checkpoint
    note: Note
    logs: List[int]
    cosignatures: List[Tuple[int, int]]


def verify_checkpoint_note(
    note: Note, logs: Sequence[VerifierKey], witnesses: Sequence[VerifierKey] = ()
) -> VerifiedCheckpoint:
    """Opens a checkpoint note: signed by one of ``logs`` (type 0x01 or 0x02) whose
    name is the origin, every signature of a key of ``logs`` or ``witnesses`` (type
    0x04) valid, a three-line body. The body is read only after a signature verified."""
    if any(key.signature_type not in LOG_KEY_TYPES for key in logs) or any(
        key.signature_type != TYPE_COSIGNATURE_V1 for key in witnesses
    ):
        raise NoteError("a log key is of type 0x01 or 0x02 and a witness key of type 0x04")
    verified = note.verify(list(logs) + list(witnesses))
    checkpoint = Checkpoint.parse(note.text)
    signed_by = [v.verifier for v in verified if v.verifier < len(logs)]
    cosignatures = [
        (v.verifier - len(logs), v.timestamp) for v in verified if v.verifier >= len(logs) and v.timestamp is not None
    ]
    if not signed_by:
        raise NoteError("the checkpoint carries no signature of the log's key")
    if not any(logs[i].name == checkpoint.origin for i in signed_by):
        raise NoteError("the checkpoint's origin is not the name of the log's key")
    return VerifiedCheckpoint(checkpoint, note, signed_by, cosignatures)


# -- policies -----------------------------------------------------------------

_NONE = "none"
# What a group or the quorum names: ("none",), ("witness", i) or ("group", i).
_Member = Tuple[str, int]
_NOBODY: _Member = ("none", -1)


@dataclass(frozen=True)
class PolicyLog:
    key: VerifierKey
    url: Optional[str] = None


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    key: VerifierKey
    url: Optional[str] = None


@dataclass(frozen=True)
class _Group:
    name: str
    threshold: int
    members: Tuple[_Member, ...]


class Policy:
    """A C2SP tlog-policy: the logs, the witnesses, their groups and the quorum."""

    def __init__(self) -> None:
        self.logs: List[PolicyLog] = []
        self.witnesses: List[PolicyWitness] = []
        self._groups: List[_Group] = []
        self._quorum: Optional[_Member] = None

    @classmethod
    def single_log(cls, vkey: Union[str, VerifierKey]) -> "Policy":
        """``log <vkey>`` / ``quorum none``: what a verifier holding the log's key alone checks."""
        key = VerifierKey.parse(vkey) if isinstance(vkey, str) else vkey
        if key.signature_type not in LOG_KEY_TYPES:
            raise PolicyError("line 1: a log key is of type 0x01 or 0x02, a witness key of type 0x04")
        policy = cls()
        policy.logs.append(PolicyLog(key))
        policy._quorum = _NOBODY
        return policy

    @classmethod
    def parse(cls, data: Union[bytes, str]) -> "Policy":
        """Reads a policy file as tlog-policy's "Policy file syntax and structure" says,
        with PROTOCOL.md's choices (UTF-8 names, keys and URLs; key types by role;
        numeric thresholds without leading zeros; at most 256 of each; 1 MiB)."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if len(raw) > MAX_POLICY_BYTES:
            raise PolicyError(f"a policy file is at most {MAX_POLICY_BYTES} bytes")
        policy = cls()
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if any((b < 0x20 and b != 0x09) or b == 0x7F for b in line):
                raise PolicyError(f"line {number}: a control character other than tab")
            items = [item for item in line.replace(b"\t", b" ").split(b" ") if item]
            if not items or items[0].startswith(b"#"):
                continue
            try:
                words = [item.decode("utf-8") for item in items]
            except UnicodeDecodeError:
                raise PolicyError(f"line {number}: names, keys and URLs are UTF-8") from None
            policy._line(number, words)
        if policy._quorum is None:
            raise PolicyError("a policy has exactly one quorum line, and this one has none")
        return policy

    def _key(self, number: int, text: str) -> VerifierKey:
        try:
            return VerifierKey.parse(text)
        except NoteError as error:
            raise PolicyError(f"line {number}: {error}") from None

    def _lookup(self, name: str) -> Optional[_Member]:
        for index, witness in enumerate(self.witnesses):
            if witness.name == name:
                return ("witness", index)
        for index, group in enumerate(self._groups):
            if group.name == name:
                return ("group", index)
        return None

    def _new_name(self, number: int, name: str) -> None:
        if name == _NONE or self._lookup(name) is not None:
            raise PolicyError(f"line {number}: the name is `none` or already defined")

    def _line(self, number: int, words: List[str]) -> None:
        keyword, rest = words[0], words[1:]
        too_many = PolicyError(f"line {number}: a policy defines at most {MAX_POLICY_ENTRIES} of each")
        if keyword == "log" and 1 <= len(rest) <= 2:
            key = self._key(number, rest[0])
            if key.signature_type not in LOG_KEY_TYPES:
                raise PolicyError(f"line {number}: a log key is of type 0x01 or 0x02, a witness key of type 0x04")
            if any(log.key.public_key == key.public_key for log in self.logs):
                raise PolicyError(f"line {number}: this public key is already in the policy")
            if len(self.logs) == MAX_POLICY_ENTRIES:
                raise too_many
            self.logs.append(PolicyLog(key, rest[1] if len(rest) == 2 else None))
        elif keyword == "witness" and 2 <= len(rest) <= 3:
            self._new_name(number, rest[0])
            key = self._key(number, rest[1])
            if key.signature_type != TYPE_COSIGNATURE_V1:
                raise PolicyError(f"line {number}: a log key is of type 0x01 or 0x02, a witness key of type 0x04")
            if any(witness.key.public_key == key.public_key for witness in self.witnesses):
                raise PolicyError(f"line {number}: this public key is already in the policy")
            if len(self.witnesses) == MAX_POLICY_ENTRIES:
                raise too_many
            self.witnesses.append(PolicyWitness(rest[0], key, rest[2] if len(rest) == 3 else None))
        elif keyword == "group" and len(rest) >= 3:
            name, threshold_text, names = rest[0], rest[1], rest[2:]
            self._new_name(number, name)
            members: List[_Member] = []
            for member_name in names:
                if member_name == _NONE:
                    raise PolicyError(f"line {number}: a member is listed twice, or is `none`")
                member = self._lookup(member_name)
                if member is None:
                    raise PolicyError(f"line {number}: the name is not defined on an earlier line")
                if member in members:
                    raise PolicyError(f"line {number}: a member is listed twice, or is `none`")
                members.append(member)
            if threshold_text == "all":
                threshold: Optional[int] = len(members)
            elif threshold_text == "any":
                threshold = 1
            else:
                threshold = _canonical_decimal(threshold_text)
            if threshold is None or not 1 <= threshold <= len(members):
                raise PolicyError(f"line {number}: the threshold is all, any or a number from 1 to the group's size")
            if len(self._groups) == MAX_POLICY_ENTRIES:
                raise too_many
            self._groups.append(_Group(name, threshold, tuple(members)))
        elif keyword == "quorum" and len(rest) == 1:
            if self._quorum is not None:
                raise PolicyError(f"line {number}: a policy has exactly one quorum line")
            quorum = _NOBODY if rest[0] == _NONE else self._lookup(rest[0])
            if quorum is None:
                raise PolicyError(f"line {number}: the name is not defined on an earlier line")
            self._quorum = quorum
        elif keyword in ("log", "witness", "group", "quorum"):
            raise PolicyError(f"line {number}: wrong number of items")
        else:
            raise PolicyError(f"line {number}: a line is log, witness, group or quorum")

    def quorum_met(self, cosigned: Sequence[bool]) -> bool:
        """Whether the witnesses marked in ``cosigned`` (by index) make the quorum."""

        def met(member: _Member, groups_met: List[bool]) -> bool:
            kind, index = member
            if kind == "none":
                return True
            return (cosigned if kind == "witness" else groups_met)[index]

        # Groups name only earlier groups: one pass in order settles them all.
        groups_met: List[bool] = []
        for group in self._groups:
            groups_met.append(sum(met(m, groups_met) for m in group.members) >= group.threshold)
        assert self._quorum is not None
        return met(self._quorum, groups_met)

    def verify_checkpoint(self, note: Union[Note, bytes, str]) -> VerifiedCheckpoint:
        """A checkpoint note passes when one of the logs, named after its origin, signed
        it, every known signature verifies, and the cosignatures make the quorum."""
        if not isinstance(note, Note):
            note = Note.parse(note)
        verified = verify_checkpoint_note(
            note, [log.key for log in self.logs], [witness.key for witness in self.witnesses]
        )
        cosigned = [False] * len(self.witnesses)
        for witness, _ in verified.cosignatures:
            cosigned[witness] = True
        if not self.quorum_met(cosigned):
            raise PolicyError("the checkpoint's cosignatures do not make the policy's quorum")
        return verified


# -- tlog-proofs --------------------------------------------------------------


@dataclass
class VerifiedTlogProof:
    """What a verified proof proves: the 57-byte leaf at ``index`` in the tree of the
    checkpoint that passed the policy."""

    leaf: bytes
    index: int
    checkpoint: VerifiedCheckpoint


@dataclass
class TlogProof:
    """A ``c2sp.org/tlog-proof@v1``: optional extra data (here the v1 leaf), the
    entry's index, its RFC 6962 inclusion proof and the checkpoint note."""

    extra: Optional[bytes]
    index: int
    inclusion_proof: List[bytes]
    checkpoint: Note

    @classmethod
    def parse(cls, data: Union[bytes, str]) -> "TlogProof":
        """Reads a proof strictly (PROTOCOL.md); nothing is verified yet."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if len(raw) > MAX_TLOG_PROOF_BYTES:
            raise TlogProofError(f"a tlog-proof is at most {MAX_TLOG_PROOF_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TlogProofError("a tlog-proof is UTF-8") from None
        if not text.startswith(TLOG_PROOF_HEADER + "\n"):
            raise TlogProofError(f"a tlog-proof starts with the line {TLOG_PROOF_HEADER}")
        rest = text[len(TLOG_PROOF_HEADER) + 1 :]
        extra = None
        if rest.startswith("extra "):
            encoded, newline, rest = rest[len("extra ") :].partition("\n")
            extra = canonical_b64decode(encoded)
            if not newline or not extra:
                raise TlogProofError("the extra line is `extra` and the canonical base64 of at least one byte")
        digits, newline, rest = rest[len("index ") :].partition("\n") if rest.startswith("index ") else ("", "", "")
        index = _canonical_decimal(digits)
        if not newline or index is None:
            raise TlogProofError("the index line is `index` and a decimal number without leading zeros")
        hashes: List[bytes] = []
        while True:
            line, newline, rest = rest.partition("\n")
            if not newline:
                raise TlogProofError("each proof line is the base64 of a 32-byte hash, and an empty line ends them")
            if not line:
                break
            if len(hashes) == MAX_PROOF_HASHES:
                raise TlogProofError(f"an inclusion proof has at most {MAX_PROOF_HASHES} hashes")
            digest = canonical_b64decode(line)
            if digest is None or len(digest) != 32:
                raise TlogProofError("each proof line is the base64 of a 32-byte hash, and an empty line ends them")
            hashes.append(digest)
        try:
            note = Note.parse(rest)
        except NoteError as error:
            raise TlogProofError(f"the checkpoint is not a signed note: {error}") from None
        return cls(extra, index, hashes, note)

    def to_text(self) -> str:
        out = TLOG_PROOF_HEADER + "\n"
        if self.extra is not None:
            out += "extra " + base64.b64encode(self.extra).decode("ascii") + "\n"
        out += f"index {self.index}\n"
        out += "".join(base64.b64encode(h).decode("ascii") + "\n" for h in self.inclusion_proof)
        return out + "\n" + self.checkpoint.to_text()

    def verify(self, policy: Policy) -> VerifiedTlogProof:
        """tlog-proof "Verifying a tlog proof", in its order: the leaf hash from
        ``extra`` (a v1 leaf), the checkpoint under ``policy``, the index within its
        tree, the inclusion proof to its root. A caller compares the leaf with what it
        expects (a receipt's execution id and commitment)."""
        if self.extra is None:
            raise TlogProofError("the proof has no extra line: its leaf is unknown")
        try:
            _crypto.parse_leaf(self.extra)
        except ValueError:
            raise TlogProofError("the extra data is not a 57-byte v1 log leaf") from None
        checkpoint = policy.verify_checkpoint(self.checkpoint)
        size = checkpoint.checkpoint.tree_size
        if self.index >= size:
            raise TlogProofError(f"index {self.index} is not in the checkpoint's tree of {size} leaves")
        try:
            _crypto.verify_inclusion(
                _crypto.leaf_hash(self.extra), self.index, size, self.inclusion_proof, checkpoint.checkpoint.root_hash
            )
        except ValueError as error:
            raise TlogProofError(f"the inclusion proof does not verify: {error}") from None
        return VerifiedTlogProof(self.extra, self.index, checkpoint)
