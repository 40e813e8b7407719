"""The client's options as types: :class:`Wire` and :class:`References` (enums whose
members are also the strings release 0.1 took, so ``"v1"`` or ``"never"`` still
work), :class:`Limits` and :class:`Retries` (dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Dict, Literal, Mapping, Optional, Union

__all__ = ["Limits", "References", "Retries", "Wire", "DEFAULT_BATCH", "INITIAL_BATCH"]

#: The most sessions one signed batch asks for by default (``Client(batch=...)``).
#: The server's default share per client is 64 pending sessions: four programs
#: behind one address (or token) whose pools are all at their largest still fit.
DEFAULT_BATCH = 16
#: The first batch of a pool; it doubles each time the pool's sessions were all
#: used, up to the ceiling, so a program that runs a few executions holds few.
INITIAL_BATCH = 4


class Wire(str, Enum):
    """The protocol version spoken on ``/execute``."""

    #: Protocol v1: JSON bodies and plaintexts, one session per execution.
    V1 = "v1"
    #: Protocol v1.1: signed session batches, binary bodies, CBOR plaintexts.
    V1_1 = "v1.1"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Union["Wire", str]) -> "Wire":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown wire version {value!r} (v1 or v1.1)") from None


class References(str, Enum):
    """When modules and mount archives go by SHA-256 instead of bytes (v1.1 §D)."""

    #: One of at least 4 KiB that this client already sent goes by SHA-256.
    AUTO = "auto"
    #: Every one goes by SHA-256 first (bytes follow if the server lacks it).
    ALWAYS = "always"
    #: Always the bytes.
    NEVER = "never"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Union["References", str]) -> "References":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown references policy {value!r} (auto, always or never)") from None


WireName = Union[Wire, Literal["v1", "v1.1"]]
ReferencesName = Union[References, Literal["auto", "always", "never"]]


@dataclass(frozen=True)
class Limits:
    """Limits one execution asks for; each may lower the server's, never raise it.
    ``None`` leaves the server's."""

    #: Wasmtime fuel units (about one per executed instruction).
    fuel: Optional[int] = None
    #: Largest linear memory, in bytes.
    memory_bytes: Optional[int] = None
    #: Wall-clock time, in milliseconds.
    timeout_ms: Optional[int] = None
    #: Bytes kept of stdout and of stderr, each.
    max_output_bytes: Optional[int] = None
    #: Bytes the guest may write to its writable mounts, together.
    files_bytes: Optional[int] = None

    def to_dict(self) -> Dict[str, int]:
        """The plaintext's ``limits`` object: the limits that are set."""
        return {name: int(value) for name, value in asdict(self).items() if value is not None}

    @classmethod
    def parse(cls, value: Union["Limits", Mapping[str, Any]]) -> "Limits":
        """A :class:`Limits`, or a mapping of its field names (as release 0.1 took);
        an unknown name is a ``ValueError``."""
        if isinstance(value, Limits):
            return value
        names = tuple(cls.__dataclass_fields__)
        unknown = [name for name in value if name not in names]
        if unknown:
            raise ValueError(f"unknown limit {unknown[0]!r} (one of {', '.join(names)})")
        return cls(**{name: None if item is None else int(item) for name, item in value.items()})


@dataclass(frozen=True)
class Retries:
    """How an idempotent call (``GET /keys``, ``/verify``, ``/log/checkpoint``,
    ``/executions/{id}``, and ``POST /sessions``, which a refusal leaves undone)
    answered 429 or 503 with ``Retry-After`` is tried again: after the seconds the
    server asked, while fewer than ``tries`` were made and the waits fit in
    ``within`` seconds. Then the error is raised. ``Retries(tries=1)`` never retries."""

    tries: int = 5
    within: float = 30.0
