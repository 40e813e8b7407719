"""The exceptions the package raises; every one is a :class:`WasmHypervisorError`."""

from __future__ import annotations

from typing import List, Optional, Sequence


class WasmHypervisorError(Exception):
    """Anything that went wrong talking to a server or checking what it said."""


class ServerError(WasmHypervisorError):
    """The server answered with an error in the protocol's error shape
    (``{"error": {"code", "message"}}``), e.g. ``session_not_found``, ``overloaded``."""

    def __init__(self, status: int, code: str, message: str, retry_after: Optional[int] = None) -> None:
        super().__init__(f"the server answered {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: Seconds from the ``Retry-After`` header, when the server sent one.
        self.retry_after = retry_after


class KeyMismatch(WasmHypervisorError):
    """The server's key id is not the pinned one (``Client(key_id=...)``)."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"the server's key id is {actual}, not the pinned {expected}")
        self.expected = expected
        self.actual = actual


class BadSessionSignature(WasmHypervisorError):
    """A session key (or batch) is not signed by the server's key: nothing was encrypted to it."""

    def __init__(self) -> None:
        super().__init__("the session key is not signed by the server's key; refusing to encrypt to it")


class ProtocolViolation(WasmHypervisorError):
    """The server answered something the protocol does not allow (a result that does
    not open, a wrong commitment, a malformed body, ...)."""


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


class VerificationFailed(WasmHypervisorError):
    """A receipt did not verify. ``check`` is the name of the first failed check
    (``failed`` lists all of them), ``checks`` every check in order."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self.checks: List[Check] = list(checks)
        self.failed: List[Check] = [check for check in self.checks if not check.ok]
        first = self.failed[0] if self.failed else Check("unknown", "no check failed")
        self.check: str = first.name
        super().__init__(f"{first.name}: {first.error}")
