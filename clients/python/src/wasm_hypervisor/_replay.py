"""Reproducible executions (protocol v1.2 §R) on the client's side: the replay
bundle of a deterministic execution (:class:`ReplayBundle`), in the format of the
CLI's ``run --replay-bundle`` so that ``wasm-hypervisor replay`` reads it, and
:func:`replay`, which checks a bundle and runs its request again on this machine.

A replay runs the module with Wasmtime under the server's deterministic engine
settings, fuel cost table, clocks and random streams, which live in the server
crate: no Python binding of Wasmtime can be given exactly those, so :func:`replay`
runs the ``wasm-hypervisor replay`` command, the server's own code. The engine it
ran is compared anyway (``engine_sha256``): a binary of another version is named
as the difference, never a silent mismatch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

from .errors import ReplayError, ReplayToolMissingError
from .receipt import Receipt, b64decode, b64encode
from .tlog import VerifierKey

__all__ = ["BUNDLE_FORMAT", "Replay", "ReplayBundle", "find_binary", "replay"]

#: The ``format`` of a replay bundle (PROTOCOL.md, "Replay bundles").
BUNDLE_FORMAT = "wasm-hypervisor replay bundle v1"

#: ``wasm-hypervisor replay``'s exit codes other than 0, as :attr:`ReplayError.reason`.
EXIT_REASONS = {1: "check_failed", 3: "differs", 4: "not_deterministic", 125: "cannot_replay"}

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class ReplayBundle:
    """A receipt and the two plaintexts its commitment binds, exactly as sealed.
    The plaintexts are the caller's secrets: whoever holds a bundle reads the
    request and the result (so they are left out of ``repr``)."""

    receipt: Receipt
    request_plaintext: bytes = field(repr=False)
    result_plaintext: bytes = field(repr=False)

    def to_dict(self) -> Dict[str, Any]:
        """The bundle as the CLI writes it: ``format``, ``receipt``, the two plaintexts in base64."""
        return {
            "format": BUNDLE_FORMAT,
            "receipt": self.receipt.to_dict(),
            "request_plaintext": b64encode(self.request_plaintext),
            "result_plaintext": b64encode(self.result_plaintext),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: PathLike) -> None:
        """Writes :meth:`to_json` to ``path``, readable by its owner only."""
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if hasattr(os, "fchmod"):
            # The mode of os.open applies only to a file it creates.
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(self.to_json())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "ReplayBundle":
        """Reads a bundle object (the CLI's or :meth:`to_dict`'s). Raises ``ValueError``."""
        if not isinstance(doc, Mapping):
            raise ValueError("a replay bundle is a JSON object")
        if doc.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"the bundle's format is {doc.get('format')!r}, not {BUNDLE_FORMAT!r}")
        return cls(
            Receipt.from_dict(doc.get("receipt")),  # type: ignore[arg-type]
            b64decode(doc.get("request_plaintext"), "request_plaintext"),
            b64decode(doc.get("result_plaintext"), "result_plaintext"),
        )

    @classmethod
    def load(cls, path: PathLike) -> "ReplayBundle":
        with open(path, "rb") as file:
            return cls.from_dict(json.loads(file.read()))


@dataclass
class Replay:
    """A replay that passed: every check of the bundle held and every output the
    protocol fixes was identical. ``checks`` names the checks (``request
    plaintext``, ``result plaintext``, then ``verify``'s), ``output`` is the
    command's whole standard output."""

    checks: List[str]
    output: str


def find_binary(binary: Optional[PathLike] = None) -> str:
    """The ``wasm-hypervisor`` program to run: ``binary`` if given, else
    ``$WASM_HYPERVISOR_BIN``, else ``wasm-hypervisor`` on ``PATH``. Raises
    :class:`ReplayToolMissingError` when it is not an executable file."""
    candidate = os.fspath(binary) if binary is not None else os.environ.get("WASM_HYPERVISOR_BIN")
    if candidate is None:
        found = shutil.which("wasm-hypervisor")
        if found is None:
            raise ReplayToolMissingError("no `wasm-hypervisor` on PATH (give binary=, or set WASM_HYPERVISOR_BIN)")
        return found
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise ReplayToolMissingError(f"{candidate} is not an executable file")
    return candidate


def replay(
    bundle: Union[ReplayBundle, PathLike],
    *,
    server: Optional[str] = None,
    key_id: Optional[str] = None,
    note_key: Optional[Union[str, VerifierKey]] = None,
    policy: Optional[PathLike] = None,
    max_mount_entries: Optional[int] = None,
    binary: Optional[PathLike] = None,
    timeout: Optional[float] = None,
) -> Replay:
    """Checks ``bundle`` (a :class:`ReplayBundle` or the path of a saved one) and
    runs its deterministic request again on this machine with ``wasm-hypervisor
    replay``: its plaintexts are those its receipt names, the receipt is logged
    (online at ``server``, default the receipt's, pinned to ``key_id``; or
    offline under ``note_key`` or the tlog-policy file ``policy``), and the
    replay's outputs are the bundle's.

    Returns a :class:`Replay` when everything holds. Raises :class:`ReplayError`
    otherwise (``reason``: ``check_failed``, ``differs`` with the first
    difference in ``difference``, ``not_deterministic``, ``cannot_replay``), and
    :class:`ReplayToolMissingError` when the program is missing; ``timeout``
    (seconds) raises ``subprocess.TimeoutExpired``."""
    program = find_binary(binary)
    args = [program, "replay"]
    if server is not None:
        args += ["--server", server]
    if key_id is not None:
        args += ["--key-id", key_id]
    if note_key is not None:
        args += ["--note-key", str(note_key)]
    if policy is not None:
        args += ["--policy", os.fspath(policy)]
    if max_mount_entries is not None:
        args += ["--max-mount-entries", str(int(max_mount_entries))]
    with tempfile.TemporaryDirectory(prefix="wasm-hypervisor-replay-") as work:
        if isinstance(bundle, ReplayBundle):
            path = os.path.join(work, "bundle.json")
            bundle.save(path)
        else:
            path = os.fspath(bundle)
        # The replay's own settings only: none of the caller's WASM_HYPERVISOR_*
        # variables (a server's configuration) may change what it checks against.
        env = {name: value for name, value in os.environ.items() if not name.startswith("WASM_HYPERVISOR_")}
        done = subprocess.run(
            args + [path],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    output = done.stdout.decode("utf-8", "replace")
    if done.returncode == 0:
        checks = [line[len("ok") :].strip() for line in output.splitlines() if line.startswith("ok ")]
        return Replay(checks, output)
    stderr = done.stderr.decode("utf-8", "replace")
    reason = EXIT_REASONS.get(done.returncode, "cannot_replay")
    difference = None
    for line in output.splitlines():
        if line.startswith("replay differs: "):
            difference = line[len("replay differs: ") :]
    raise ReplayError(reason, done.returncode, difference, output, stderr)
