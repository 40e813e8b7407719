"""Long jobs (protocol v1.1 §F): a :class:`Job` submitted with ``Prefer:
respond-async``, the server's ``202`` read, and ``GET /executions/{id}`` answers
told apart (still pending, or the sealed answer)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from ._blobs import Spec
from ._http import parse_json, response_error
from ._results import ExecutionResult
from ._sealing import Sent, uuid_text
from .errors import ProtocolError

__all__ = ["Job"]


class Job:
    """An execution submitted with ``Prefer: respond-async`` (:meth:`Client.submit`).
    It holds the keys that open its answer: keep it private. ``execution_id`` is
    the server's id (it changes if the request had to be sent again with blobs the
    server had lost). While it is pending, ``state`` (``"queued"`` or ``"running"``)
    and ``phase`` (``"queued"``, ``"compiling"`` or ``"running"``; ``None`` from a
    server that does not say, or one this client does not know) are where the last
    :meth:`Client.poll` found it (``None`` before the first)."""

    def __init__(self, spec: Spec, by_reference: Set[str]) -> None:
        self.execution_id = ""
        self.location: Optional[str] = None
        self.state: Optional[str] = None
        self.phase: Optional[str] = None
        self._spec = spec
        self._by_reference = by_reference
        self._resent: List[str] = []
        self._sent: Optional[Sent] = None
        self._answer: Optional[Dict[str, Any]] = None
        self._result: Optional[ExecutionResult] = None

    @property
    def done(self) -> bool:
        return self._result is not None

    def __repr__(self) -> str:
        return f"Job({self.execution_id!r}, done={self.done})"


def accepted_location(status: int, headers: Mapping[str, str], data: bytes) -> Tuple[str, str]:
    """(execution id, location) of the server's ``202`` to ``Prefer: respond-async``."""
    if status != 202:
        raise response_error(status, headers, data) if status >= 400 else ProtocolError(f"unexpected HTTP status {status}")
    accepted = parse_json(data)
    if not isinstance(accepted, dict):
        raise ProtocolError("the 202 is not a JSON object")
    execution_id = uuid_text(accepted.get("execution_id"), "execution_id")
    applied = headers.get("preference-applied", "").strip().lower() == "respond-async"
    if not applied or accepted.get("location") != f"/executions/{execution_id}":
        raise ProtocolError("the server's 202 is not an accepted async execution")
    return execution_id, accepted["location"]


#: The phases this client knows; a later server's other phases read as ``None``.
PHASES = ("queued", "compiling", "running")


def check_pending(job: Job, data: bytes) -> None:
    """A ``202`` of ``GET /executions/{id}`` must name the job's execution; records
    its ``state`` and ``phase`` on the job."""
    state = parse_json(data)
    if not isinstance(state, dict) or state.get("execution_id") != job.execution_id:
        raise ProtocolError("the pending state names another execution")
    job.state = state.get("state") if state.get("state") in ("queued", "running") else None
    job.phase = state.get("phase") if state.get("phase") in PHASES else None
