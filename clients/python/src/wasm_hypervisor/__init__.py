"""wasm-hypervisor: run WebAssembly sealed on a wasm-hypervisor server, and prove it.

>>> from wasm_hypervisor import Client
>>> with Client("http://127.0.0.1:8080") as client:
...     result = client.run("hello.wasm", args=["a"], stdin=b"hi")
...     result.status, result.stdout
...     client.verify(result.receipt)

See :class:`Client` for the options (protocol version, key pinning, blobs by
reference, long jobs, retries) and :mod:`wasm_hypervisor.errors` for the errors.
"""

from __future__ import annotations

from typing import Any

from .client import (
    Client,
    ExecutionResult,
    Job,
    Mount,
    MountOut,
    Replay,
    ReplayBundle,
    ServerIdentity,
    pack_directory,
    replay,
    verify_receipt,
)
from .errors import (
    Check,
    ConnectionFailedError,
    KeyMismatchError,
    ProtocolError,
    ReplayError,
    ReplayToolMissingError,
    RequestError,
    ResponseError,
    ServerError,
    SessionSignatureError,
    VerificationError,
    WasmHypervisorError,
    deprecated as _deprecated,
)
from .options import Limits, References, Retries, Wire
from .receipt import Receipt
from .tlog import Policy, VerifierKey

__version__ = "0.1.0"

__all__ = [
    "Check",
    "Client",
    "ConnectionFailedError",
    "ExecutionResult",
    "Job",
    "KeyMismatchError",
    "Limits",
    "Mount",
    "MountOut",
    "Policy",
    "ProtocolError",
    "Receipt",
    "References",
    "Replay",
    "ReplayBundle",
    "ReplayError",
    "ReplayToolMissingError",
    "RequestError",
    "ResponseError",
    "Retries",
    "ServerError",
    "ServerIdentity",
    "SessionSignatureError",
    "VerificationError",
    "VerifierKey",
    "WasmHypervisorError",
    "Wire",
    "pack_directory",
    "replay",
    "verify_receipt",
]


def __getattr__(name: str) -> Any:
    # Release 0.1's exception names (KeyMismatch, ...), with a DeprecationWarning.
    return _deprecated(__name__, name)
