"""HTTP for the client: one urllib3 connection pool per client, the protocol's error
shape turned into :class:`ServerError`, and JSON bodies read strictly."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Tuple

import urllib3

from .errors import ProtocolViolation, ServerError, WasmHypervisorError

Answer = Tuple[int, Mapping[str, str], bytes]


class ConnectionFailed(WasmHypervisorError):
    """The server could not be reached, or the connection broke."""


class Http:
    def __init__(self, base: str, token: Optional[str], timeout: float) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10.0, read=timeout),
            # A refused connection is tried once more; a request that may have
            # reached the server never is (an /execute uses its session).
            retries=urllib3.Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0),
        )

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        headers: Optional[Dict[str, str]] = None,
        authorized: bool = False,
    ) -> Answer:
        all_headers = dict(headers or {})
        if authorized and self.token is not None:
            all_headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.pool.request(
                method, self.base + path, body=body, headers=all_headers, redirect=False, preload_content=True
            )
        except urllib3.exceptions.HTTPError as error:
            raise ConnectionFailed(f"cannot reach the server: {error}") from error
        response_headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status, response_headers, response.data

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose success is a JSON document; errors raise."""
        status, headers, data = self.request(method, path, **kwargs)
        if not 200 <= status < 300:
            raise server_error(status, headers, data)
        return parse_json(data)


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise ProtocolViolation(f"unexpected answer: {error}") from None


def retry_after(headers: Mapping[str, str]) -> Optional[int]:
    value = headers.get("retry-after", "").strip()
    return int(value) if value.isdigit() else None


def server_error(status: int, headers: Mapping[str, str], data: bytes) -> ServerError:
    """The error an unsuccessful answer says, in the protocol's error shape if it is one."""
    try:
        error = json.loads(data)["error"]
        code, message = error["code"], error["message"]
        if isinstance(code, str) and isinstance(message, str):
            return ServerError(status, code, message, retry_after(headers))
    except (ValueError, KeyError, TypeError):
        pass
    text = data.decode("utf-8", "replace")[:200]
    return ServerError(status, "unknown", text, retry_after(headers))
