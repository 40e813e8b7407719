"""wasm-hypervisor: run WebAssembly sealed on a wasm-hypervisor server, and prove it.

>>> from wasm_hypervisor import Client
>>> client = Client("http://127.0.0.1:8080")
>>> result = client.run("hello.wasm", args=["a"], stdin=b"hi")
>>> result.status, result.stdout
>>> client.verify(result.receipt)

See :class:`Client` for the options (protocol version, key pinning, blobs by
reference, long jobs).
"""

from __future__ import annotations

from ._http import ConnectionFailed
from .client import Client, ExecutionResult, Job, Mount, MountOut, ServerIdentity, pack_directory, verify_receipt
from .errors import (
    BadSessionSignature,
    Check,
    KeyMismatch,
    ProtocolViolation,
    ServerError,
    VerificationFailed,
    WasmHypervisorError,
)
from .receipt import Receipt

__version__ = "0.1.0"

__all__ = [
    "BadSessionSignature",
    "Check",
    "Client",
    "ConnectionFailed",
    "ExecutionResult",
    "Job",
    "KeyMismatch",
    "Mount",
    "MountOut",
    "ProtocolViolation",
    "Receipt",
    "ServerError",
    "ServerIdentity",
    "VerificationFailed",
    "WasmHypervisorError",
    "pack_directory",
    "verify_receipt",
]
