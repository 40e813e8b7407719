"""HTTP for the client: one urllib3 connection pool per client (released by
:meth:`Http.close`), the protocol's error shape turned into :class:`RequestError`
(4xx) or :class:`ServerError` (5xx), idempotent calls retried after the server's
``Retry-After`` within :class:`Retries`, and JSON bodies read strictly."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import urllib3

from .errors import ConnectionFailedError, ProtocolError, RequestError, ResponseError, ServerError
from .options import Retries

Answer = Tuple[int, Mapping[str, str], bytes]

#: Statuses after which an idempotent call is tried again, if the server sent
#: ``Retry-After``: 429 (a client's limit) and 503 (the server's).
RETRIED_STATUSES = (429, 503)


class Http:
    def __init__(
        self,
        base: str,
        token: Optional[str],
        timeout: float,
        retries: Retries,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.retries = retries
        self.on_retry = on_retry
        self.closed = False
        self.pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10.0, read=timeout),
            # A refused connection is tried once more; a request that may have
            # reached the server never is (an /execute uses its session). Answers
            # are never retried here: urllib3 would retry a GET's 429 or 503 with
            # Retry-After and then raise a transport error for it; `request` does
            # that, within `Retries`, and raises the typed error.
            retries=urllib3.Retry(
                total=1,
                connect=1,
                read=0,
                redirect=0,
                status=0,
                other=0,
                respect_retry_after_header=False,
                raise_on_status=False,
            ),
        )

    def close(self) -> None:
        """Closes every pooled connection; later requests raise ``RuntimeError``."""
        self.closed = True
        self.pool.clear()

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        headers: Optional[Dict[str, str]] = None,
        authorized: bool = False,
        idempotent: bool = False,
        retry_if: Callable[[ResponseError], bool] = lambda _: True,
        retry_statuses: Tuple[int, ...] = RETRIED_STATUSES,
    ) -> Answer:
        """One request; an ``idempotent`` one answered one of ``retry_statuses`` (429
        or 503) with ``Retry-After`` (and ``retry_if`` the error) is made again as
        :class:`Retries` allows. The last answer is returned whatever its status."""
        started = time.monotonic()
        tries = 1
        while True:
            status, answer_headers, data = self._once(method, path, body, headers, authorized)
            if not idempotent or status not in retry_statuses or tries >= self.retries.tries:
                return status, answer_headers, data
            wait = retry_after(answer_headers)
            if wait is None or time.monotonic() - started + wait > self.retries.within:
                return status, answer_headers, data
            if not retry_if(response_error(status, answer_headers, data)):
                return status, answer_headers, data
            self.on_retry()
            time.sleep(wait)
            tries += 1

    def _once(
        self, method: str, path: str, body: Optional[bytes], headers: Optional[Dict[str, str]], authorized: bool
    ) -> Answer:
        if self.closed:
            raise RuntimeError("the client is closed")
        all_headers = dict(headers or {})
        if authorized and self.token is not None:
            all_headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.pool.request(
                method, self.base + path, body=body, headers=all_headers, redirect=False, preload_content=True
            )
        except urllib3.exceptions.HTTPError as error:
            raise ConnectionFailedError(f"cannot reach the server: {error}") from error
        response_headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status, response_headers, response.data

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose success is a JSON document; errors raise."""
        status, headers, data = self.request(method, path, **kwargs)
        if not 200 <= status < 300:
            raise response_error(status, headers, data)
        return parse_json(data)


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise ProtocolError(f"unexpected answer: {error}") from None


def retry_after(headers: Mapping[str, str]) -> Optional[int]:
    value = headers.get("retry-after", "").strip()
    return int(value) if value.isdigit() else None


def response_error(status: int, headers: Mapping[str, str], data: bytes) -> ResponseError:
    """The error an unsuccessful answer says, in the protocol's error shape if it is
    one: a :class:`RequestError` for a 4xx, else a :class:`ServerError`."""
    kind = RequestError if 400 <= status < 500 else ServerError
    try:
        error = json.loads(data)["error"]
        code, message = error["code"], error["message"]
        if isinstance(code, str) and isinstance(message, str):
            return kind(status, code, message, retry_after(headers))
    except (ValueError, KeyError, TypeError):
        pass
    text = data.decode("utf-8", "replace")[:200]
    return kind(status, "unknown", text, retry_after(headers))
