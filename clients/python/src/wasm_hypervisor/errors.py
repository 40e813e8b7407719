"""The exceptions the package raises, named as PEP 8 asks (an ``Error`` suffix).

Every one is a :class:`WasmHypervisorError`::

    WasmHypervisorError
    ├── ConnectionFailedError    the server could not be reached
    ├── ProtocolError            the server answered what the protocol does not allow
    ├── ResponseError            the server answered an error (status, code, message)
    │   ├── RequestError         4xx: this request was refused (rate limits, auth, ...)
    │   └── ServerError          5xx: the server could not serve it (overloaded, ...)
    ├── KeyMismatchError         the server's key is not the pinned one
    ├── SessionSignatureError    a session key the server's key did not sign
    ├── VerificationError        a receipt did not verify
    ├── ReplayError              a replay bundle did not check, or its replay differed
    └── ReplayToolMissingError   no ``wasm-hypervisor`` program to replay with

The names of release 0.1 (``KeyMismatch``, ``BadSessionSignature``,
``ProtocolViolation``, ``VerificationFailed``, ``ConnectionFailed``) still import,
with a ``DeprecationWarning``, and name the same classes.
"""

from __future__ import annotations

import warnings
from typing import Any, List, Optional, Sequence

__all__ = [
    "Check",
    "ConnectionFailedError",
    "KeyMismatchError",
    "ProtocolError",
    "ReplayError",
    "ReplayToolMissingError",
    "RequestError",
    "ResponseError",
    "ServerError",
    "SessionSignatureError",
    "VerificationError",
    "WasmHypervisorError",
]


class WasmHypervisorError(Exception):
    """Anything that went wrong talking to a server or checking what it said."""


class ConnectionFailedError(WasmHypervisorError):
    """The server could not be reached, or the connection broke."""


class ProtocolError(WasmHypervisorError):
    """The server answered something the protocol does not allow (a result that does
    not open, a wrong commitment, a malformed body, ...)."""


class ResponseError(WasmHypervisorError):
    """The server answered with an error status, in the protocol's error shape
    (``{"error": {"code", "message"}}``) when it could be read, else code ``unknown``.
    Catch this to handle a refusal whichever side it blames."""

    def __init__(self, status: int, code: str, message: str, retry_after: Optional[int] = None) -> None:
        super().__init__(f"the server answered {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: Seconds from the ``Retry-After`` header, when the server sent one.
        self.retry_after = retry_after


class RequestError(ResponseError):
    """A 4xx answer: the server refused this request (``unauthorized``,
    ``rate_limited``, ``too_many_client_sessions``, ``invalid_parameter``, ...)."""


class ServerError(ResponseError):
    """A 5xx answer (or any other non-success status): the server could not serve the
    request (``overloaded``, ``too_many_sessions``, ``log_unavailable``, ...)."""


class KeyMismatchError(WasmHypervisorError):
    """The server's key id is not the pinned one (``Client(key_id=...)``)."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"the server's key id is {actual}, not the pinned {expected}")
        self.expected = expected
        self.actual = actual


class SessionSignatureError(WasmHypervisorError):
    """A session key (or batch) is not signed by the server's key: nothing was encrypted to it."""

    def __init__(self) -> None:
        super().__init__("the session key is not signed by the server's key; refusing to encrypt to it")


class Check:
    """One named check of a receipt and how it went (``error`` is ``None`` when it held).
    The names are the CLI's ``verify`` names: ``receipt key``, ``leaf signature``,
    ``leaf contents``, ``commitment opening``, ``checkpoint signature``,
    ``inclusion proof``."""

    def __init__(self, name: str, error: Optional[str] = None) -> None:
        self.name = name
        self.error = error

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        return f"Check({self.name!r}, {'ok' if self.ok else self.error!r})"


class VerificationError(WasmHypervisorError):
    """A receipt did not verify. ``check`` is the name of the first failed check
    (``failed`` lists all of them), ``checks`` every check in order."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self.checks: List[Check] = list(checks)
        self.failed: List[Check] = [check for check in self.checks if not check.ok]
        first = self.failed[0] if self.failed else Check("unknown", "no check failed")
        self.check: str = first.name
        super().__init__(f"{first.name}: {first.error}")


class ReplayError(WasmHypervisorError):
    """``wasm-hypervisor replay`` did not pass. ``reason`` is ``check_failed`` (a
    check of the bundle failed: a plaintext, the commitment, the logging; exit
    code 1), ``differs`` (the replay's outputs differ; ``difference`` names the
    first; 3), ``not_deterministic`` (the request is not deterministic, no replay
    can match it; 4) or ``cannot_replay`` (a file, the server, the request; 125).
    ``output`` and ``stderr`` are the command's."""

    def __init__(self, reason: str, exit_code: int, difference: Optional[str], output: str, stderr: str) -> None:
        lines = output.strip().splitlines()
        detail = difference or stderr.strip() or (lines[-1] if lines else "")
        super().__init__(f"replay {reason} (exit code {exit_code}): {detail}")
        self.reason = reason
        self.exit_code = exit_code
        self.difference = difference
        self.output = output
        self.stderr = stderr


class ReplayToolMissingError(WasmHypervisorError):
    """The ``wasm-hypervisor`` program a replay runs was not found (``binary=``,
    ``$WASM_HYPERVISOR_BIN``, ``PATH``)."""


#: Release 0.1's names, kept for a release as aliases of the classes above.
DEPRECATED_NAMES = {
    "BadSessionSignature": SessionSignatureError,
    "ConnectionFailed": ConnectionFailedError,
    "KeyMismatch": KeyMismatchError,
    "ProtocolViolation": ProtocolError,
    "VerificationFailed": VerificationError,
}


def deprecated(module: str, name: str) -> Any:
    """The class an old name stands for, with a ``DeprecationWarning`` (PEP 562's
    module ``__getattr__`` calls this, so only a use of the old name warns)."""
    if name not in DEPRECATED_NAMES:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = DEPRECATED_NAMES[name]
    warnings.warn(
        f"{module}.{name} is deprecated: use {new.__name__} (PEP 8 names); the old name goes in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    return new


def __getattr__(name: str) -> Any:
    return deprecated(__name__, name)
