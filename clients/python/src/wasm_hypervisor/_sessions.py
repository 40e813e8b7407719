"""The session pool: sessions the server signed, opened ahead of use (signed
batches with v1.1, protocol §A; one at a time with v1), and ``POST /execute`` on
one of them.

Batch sizes grow on demand, the same rule as the Rust and JS clients: the first
batch asks for :data:`INITIAL_BATCH` (or the ceiling, if smaller); the next one
doubles, up to the ceiling (``Client(batch=...)``), when every session of the pool
was used, and halves when some expired unused; a batch the server refuses for a
pending bound (``too_many_client_sessions``, ``too_many_sessions``) is asked again at
half the size, down to one. So several programs behind one address or token share
the server's per-client share of pending sessions instead of refusing each other.
"""

from __future__ import annotations

import collections
import datetime
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Mapping, Optional, Tuple

from . import _crypto
from ._http import Http, response_error
from ._sealing import Sent, b64, seal, uuid_text
from .errors import ProtocolError, ResponseError, SessionSignatureError
from .options import INITIAL_BATCH, Wire

#: ``/execute`` refusals that leave the session unused (PROTOCOL.md): the pool keeps it.
SESSION_UNUSED = ("rate_limited", "too_many_executions", "overloaded", "database_unavailable")
#: ``POST /sessions`` refusals for a pending bound, which a smaller batch may fit under.
PENDING_BOUNDS = ("too_many_client_sessions", "too_many_sessions")


@dataclass
class Session:
    session_id: str
    public_key: bytes
    expires_at: float


def expiry(text: Any) -> float:
    if not isinstance(text, str):
        raise ProtocolError("`expires_at` is not an RFC 3339 time")
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ProtocolError("`expires_at` is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ProtocolError("`expires_at` has no time zone")
    return moment.timestamp()


class SessionPool:
    """Sessions of one client, shared by its threads. ``server_key`` returns the
    server's key (fetched once by the client); ``count`` bumps a client counter."""

    def __init__(
        self,
        http: Http,
        wire: Wire,
        server_key: Callable[[], _crypto.ServerKey],
        count: Callable[..., None],
        ceiling: int,
        margin: float,
    ) -> None:
        self._http = http
        self._wire = wire
        self._server_key = server_key
        self._count = count
        self.ceiling = max(1, int(ceiling))
        self.margin = float(margin)
        self._lock = threading.Lock()
        # Held by the thread opening a batch for an empty pool (v1.1): threads that
        # arrive meanwhile take that batch's sessions instead of opening their own.
        self._refill = threading.Lock()
        self.sessions: Deque[Session] = collections.deque()
        #: Sessions the next batch asks for.
        self.batch = min(INITIAL_BATCH, self.ceiling)
        self._opened_before = False
        # Whether a session expired unused since the last batch was opened.
        self._expired_unused = False

    def __len__(self) -> int:
        with self._lock:
            return len(self.sessions)

    def clear(self) -> None:
        with self._lock:
            self.sessions.clear()

    def give_back(self, session: Session) -> None:
        """Puts back, first in line, a session a refused request did not use."""
        with self._lock:
            self.sessions.appendleft(session)

    def _pop_live(self) -> Optional[Session]:
        """The oldest pooled session not about to expire; those about to are dropped."""
        now = time.time()
        with self._lock:
            while self.sessions:
                session = self.sessions.popleft()
                if session.expires_at > now + self.margin:
                    return session
                self._expired_unused = True
        return None

    def take(self) -> Session:
        """The oldest pooled session not about to expire, else one of a batch opened now
        (by this thread, or by the one already opening a batch: v1.1 threads that find
        the pool empty at once share one batch)."""
        session = self._pop_live()
        if session is not None:
            return session
        if self._wire is Wire.V1:
            return self.fresh()
        with self._refill:
            session = self._pop_live()
            if session is not None:
                return session
            self._resize_for_refill()
            return self.fresh()

    def _resize_for_refill(self) -> None:
        """The pool ran dry: the next batch doubles if every session was used, and
        halves if some expired unused."""
        with self._lock:
            if self._opened_before:
                if self._expired_unused:
                    self.batch = max(1, self.batch // 2)
                else:
                    self.batch = min(self.ceiling, self.batch * 2)
            self._expired_unused = False

    def fresh(self) -> Session:
        """Opens sessions now, keeps all but the first and returns it."""
        opened = self._open()
        with self._lock:
            self._opened_before = True
            self.sessions.extend(opened[1:])
        return opened[0]

    def _open(self) -> List[Session]:
        key = self._server_key()
        if self._wire is Wire.V1:
            self._count("session_requests")
            doc = self._http.json("POST", "/sessions", authorized=True, idempotent=True)
            if not isinstance(doc, dict):
                raise ProtocolError("the session is not a JSON object")
            if doc.get("suite") != _crypto.SUITE:
                raise ProtocolError(f"unexpected cipher suite {doc.get('suite')!r}")
            session_id = uuid_text(doc.get("session_id"), "session_id")
            public_key = b64(doc.get("public_key"), "public_key", _crypto.POINT_LEN)
            if not key.verify(_crypto.session_message(session_id, public_key), b64(doc.get("signature"), "signature")):
                raise SessionSignatureError()
            sessions = [Session(session_id, public_key, expiry(doc.get("expires_at")))]
        else:
            asked, doc = self._post_batch()
            if not isinstance(doc, dict) or not isinstance(doc.get("sessions"), list):
                raise ProtocolError("the session batch is not a JSON object with `sessions`")
            if doc.get("suite") != _crypto.SUITE:
                raise ProtocolError(f"unexpected cipher suite {doc.get('suite')!r}")
            sessions = []
            for item in doc["sessions"]:
                if not isinstance(item, dict):
                    raise ProtocolError("a session of the batch is not an object")
                sessions.append(
                    Session(
                        uuid_text(item.get("session_id"), "session_id"),
                        b64(item.get("public_key"), "public_key", _crypto.POINT_LEN),
                        expiry(item.get("expires_at")),
                    )
                )
            if len(sessions) != asked:
                raise ProtocolError(f"asked for {asked} sessions, got {len(sessions)}")
            message = _crypto.sessions_message([(s.session_id, s.public_key) for s in sessions])
            if not key.verify(message, b64(doc.get("signature"), "signature")):
                raise SessionSignatureError()
        self._count("sessions_opened", len(sessions))
        return sessions

    def _post_batch(self) -> Tuple[int, Any]:
        """``POST /sessions {"count": N}`` at the pool's batch size, halved (down to
        one) while the server refuses the batch for its pending bounds. Returns the
        count asked for and the answer."""
        while True:
            count = self.batch
            self._count("session_requests")

            def retry_if(error: ResponseError, count: int = count) -> bool:
                # Over a pending bound, a smaller batch now beats the same one later.
                return count == 1 or error.code not in PENDING_BOUNDS

            try:
                doc = self._http.json(
                    "POST",
                    "/sessions",
                    body=json.dumps({"count": count}).encode(),
                    headers={"Content-Type": "application/json"},
                    authorized=True,
                    idempotent=True,
                    retry_if=retry_if,
                )
            except ResponseError as error:
                if count > 1 and error.code in PENDING_BOUNDS:
                    with self._lock:
                        self.batch = max(1, count // 2)
                    continue
                raise
            return count, doc

    def _post_execute(
        self, session: Session, plaintext: bytes, asynchronous: bool
    ) -> Tuple[Sent, int, Mapping[str, str], bytes]:
        sent, body, content_type = seal(session.session_id, session.public_key, plaintext, self._wire)
        headers = {"Content-Type": content_type}
        if asynchronous:
            headers["Prefer"] = "respond-async"
        status, answer_headers, data = self._http.request("POST", "/execute", body=body, headers=headers, authorized=True)
        return sent, status, answer_headers, data

    def send(self, plaintext: bytes, asynchronous: bool) -> Tuple[Sent, int, Mapping[str, str], bytes]:
        """``POST /execute`` on a pooled session; after ``session_not_found`` (nothing
        ran) the pool is emptied and the request goes once more on a fresh session.
        An ``/execute`` is never retried otherwise: it uses its session."""
        session = self.take()
        sent, status, headers, data = self._post_execute(session, plaintext, asynchronous)
        if status == 404:
            error = response_error(status, headers, data)
            if error.code in ("session_not_found", "session_expired"):
                self.clear()
                self._count("session_retries")
                session = self.fresh()
                sent, status, headers, data = self._post_execute(session, plaintext, asynchronous)
        if status in (429, 503) and response_error(status, headers, data).code in SESSION_UNUSED:
            # Refused before the session was used: it serves the next request.
            self.give_back(session)
        return sent, status, headers, data
