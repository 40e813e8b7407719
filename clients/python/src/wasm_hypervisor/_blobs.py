"""Blobs by reference (protocol v1.1 §D): what a request holds before each module
or archive is chosen to go by bytes or by SHA-256, which blobs the server is
believed to hold, and which to send again by bytes after ``missing_blob``."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from . import _crypto
from ._mounts import Mount
from .options import Limits, References

#: Modules and archives smaller than this go by bytes under ``References.AUTO``:
#: naming them saves little, and a reference the server lost costs a round trip.
REFERENCE_MIN_BYTES = 4096

PathLike = Union[str, "os.PathLike[str]"]
ModuleLike = Union[bytes, bytearray, memoryview, PathLike]


@dataclass
class Blob:
    data: bytes
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> "Blob":
        return cls(data, _crypto.sha256(data).hex())


@dataclass
class Spec:
    """A request before its blobs are chosen to go by bytes or by reference."""

    module: Blob
    base: Dict[str, Any]
    mounts: List[Tuple[str, bool, Optional[Blob]]]

    def blobs(self) -> List[Blob]:
        return [self.module] + [blob for _, _, blob in self.mounts if blob is not None]


def build_spec(
    module: ModuleLike,
    args: Sequence[str],
    env: Optional[Mapping[str, str]],
    stdin: bytes,
    limits: Optional[Union[Limits, Mapping[str, Any]]],
    mounts: Optional[Iterable[Union[Mount, Mapping[str, Any]]]],
    invoke: Optional[str],
    deterministic: bool = False,
    seed: Optional[Union[bytes, str]] = None,
) -> Spec:
    """What :meth:`Client.run` was asked, checked and read (a module path is read here)."""
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
        base["limits"] = Limits.parse(limits).to_dict()
    if deterministic or seed is not None:
        # Protocol v1.2 §R: a seed alone is `invalid_request`, so it implies the flag.
        base["deterministic"] = True
    if seed is not None:
        base["seed"] = seed_hex(seed)
    mount_specs: List[Tuple[str, bool, Optional[Blob]]] = []
    for mount in mounts or ():
        if isinstance(mount, Mapping):
            mount = Mount(str(mount["path"]), mount.get("tar"), bool(mount.get("writable", False)))
        tar = None if mount.tar is None else Blob.of(bytes(mount.tar))
        mount_specs.append((mount.path, mount.writable, tar))
    return Spec(Blob.of(module_bytes), base, mount_specs)


def seed_hex(seed: Union[bytes, str]) -> str:
    """A deterministic execution's seed as the protocol writes it: 64 lowercase hex
    digits, from 32 bytes or from those hex digits. Raises ``ValueError``."""
    if isinstance(seed, (bytes, bytearray, memoryview)):
        data = bytes(seed)
    else:
        try:
            data = bytes.fromhex(seed)
        except ValueError:
            raise ValueError("seed is 32 bytes or 64 hex digits") from None
    if len(data) != 32:
        raise ValueError("seed is 32 bytes or 64 hex digits")
    return data.hex()


class KnownBlobs:
    """The blobs this client sent by bytes, which the server keeps (within its
    budget), and the policy that names them by SHA-256. Shared by threads."""

    def __init__(self, policy: References) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._sent: Set[str] = set()

    def initial_references(self, spec: Spec) -> Set[str]:
        """The blobs the first try of ``spec`` names instead of sending."""
        if self.policy is References.NEVER or spec.base.get("deterministic"):
            # A deterministic request carries its bytes, so that its replay
            # bundle alone is enough to run it again (as `run --replay-bundle`).
            return set()
        if self.policy is References.ALWAYS:
            return {blob.sha256 for blob in spec.blobs()}
        with self._lock:
            return {
                blob.sha256
                for blob in spec.blobs()
                if len(blob.data) >= REFERENCE_MIN_BYTES and blob.sha256 in self._sent
            }

    def remember(self, spec: Spec) -> None:
        """The server has every blob of ``spec`` now (it answered other than ``missing_blob``)."""
        with self._lock:
            self._sent.update(blob.sha256 for blob in spec.blobs())

    def forget(self, missing: List[str]) -> None:
        with self._lock:
            self._sent.difference_update(missing)


def resend_needed(doc: Mapping[str, Any], by_reference: Set[str]) -> List[str]:
    """The blobs to send again by bytes: those of a ``missing_blob`` that this
    request named (empty if the server names one it was not asked for)."""
    if doc.get("status") != "missing_blob":
        return []
    missing = doc.get("missing_blobs") or []
    if not missing or not all(isinstance(h, str) and h in by_reference for h in missing):
        return []
    return list(missing)
