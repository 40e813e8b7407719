"""The package's surface as its ecosystem expects it: PEP 8 error names in one
hierarchy (the old names kept, deprecated), typed options that still take the old
strings, a client that closes (and is a context manager), and idempotent calls
retried after a 429's ``Retry-After`` within a bound."""

from __future__ import annotations

import urllib.error
import urllib.request
import warnings

import pytest

import wasm_hypervisor
from wasm_hypervisor import (
    Client,
    ConnectionFailedError,
    KeyMismatchError,
    Limits,
    ProtocolError,
    References,
    RequestError,
    ResponseError,
    Retries,
    ServerError,
    SessionSignatureError,
    VerificationError,
    WasmHypervisorError,
    Wire,
)


def test_errors_form_one_hierarchy_with_4xx_and_5xx_apart():
    for error in (ConnectionFailedError, ProtocolError, ResponseError, KeyMismatchError, SessionSignatureError, VerificationError):
        assert issubclass(error, WasmHypervisorError)
    assert issubclass(RequestError, ResponseError) and issubclass(ServerError, ResponseError)
    assert not issubclass(RequestError, ServerError) and not issubclass(ServerError, RequestError)


@pytest.mark.parametrize(
    "old, new",
    [
        ("KeyMismatch", KeyMismatchError),
        ("BadSessionSignature", SessionSignatureError),
        ("ProtocolViolation", ProtocolError),
        ("VerificationFailed", VerificationError),
        ("ConnectionFailed", ConnectionFailedError),
    ],
)
def test_release_0_1_error_names_still_import_with_a_deprecation_warning(old, new):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert getattr(wasm_hypervisor, old) is new
        assert getattr(wasm_hypervisor.errors, old) is new
    assert [w.category for w in caught] == [DeprecationWarning, DeprecationWarning]
    assert new.__name__ in str(caught[0].message)
    assert old not in wasm_hypervisor.__all__


def test_a_5xx_answer_raises_server_error_and_a_4xx_request_error():
    from wasm_hypervisor._http import response_error

    body = b'{"error": {"code": "overloaded", "message": "busy"}}'
    overloaded = response_error(503, {"retry-after": "2"}, body)
    assert type(overloaded) is ServerError and (overloaded.status, overloaded.code, overloaded.retry_after) == (503, "overloaded", 2)
    limited = response_error(429, {}, b'{"error": {"code": "rate_limited", "message": "slow down"}}')
    assert type(limited) is RequestError and limited.code == "rate_limited"
    assert type(response_error(502, {}, b"<html>bad gateway</html>")) is ServerError


def test_options_are_typed_and_still_take_release_0_1_strings(server, examples):
    assert Client(server.url, wire="v1").wire is Wire.V1
    assert Client(server.url, wire=Wire.V1_1).wire == "v1.1"
    assert Client(server.url, references="never").references is References.NEVER
    with pytest.raises(ValueError, match="unknown wire version"):
        Client(server.url, wire="v2")
    with pytest.raises(ValueError, match="unknown references policy"):
        Client(server.url, references="sometimes")
    client = Client(server.url, wire=Wire.V1_1, references=References.ALWAYS)
    by_dataclass = client.run(examples / "sleep.wasm", args=["10000"], limits=Limits(timeout_ms=200))
    by_dict = client.run(examples / "sleep.wasm", args=["10000"], limits={"timeout_ms": 200})
    assert by_dataclass.status == by_dict.status == "timeout"
    assert by_dataclass.limits["timeout_ms"] == by_dict.limits["timeout_ms"] == 200
    with pytest.raises(ValueError, match="unknown limit"):
        Limits.parse({"gas": 1})


def test_a_closed_client_has_released_its_connections_and_refuses_calls(server, examples):
    with Client(server.url) as client:
        assert client.run(examples / "tiny.wasm").status == "completed"
        assert len(client._http.pool.pools) == 1  # one keep-alive pool to the server
    assert len(client._http.pool.pools) == 0
    assert client.pooled_sessions == 0
    with pytest.raises(RuntimeError, match="closed"):
        client.run(examples / "tiny.wasm")


def _empty_the_bucket(url: str) -> None:
    """Requests ``/keys`` until the server answers 429 (this address's bucket is empty)."""
    while True:
        try:
            urllib.request.urlopen(url + "/keys").close()
        except urllib.error.HTTPError as error:
            if error.code == 429:
                return
            raise


@pytest.fixture
def slow_server(make_server):
    """One request a second per client, in bursts of four: a run fits, then 429s."""
    return make_server(WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND="1", WASM_HYPERVISOR_CLIENTS__BURST="4")


def test_verify_answered_429_is_retried_after_retry_after_and_succeeds(slow_server, examples):
    client = Client(slow_server.url)
    result = client.run(examples / "tiny.wasm")
    _empty_the_bucket(slow_server.url)
    checks = client.verify(result.receipt)
    assert all(check.ok for check in checks)
    assert client.stats["retries"] >= 1


def test_retries_stop_at_their_bound_and_raise_the_typed_error(slow_server, examples):
    client = Client(slow_server.url, retries=Retries(tries=1))
    result = client.run(examples / "tiny.wasm")
    _empty_the_bucket(slow_server.url)
    with pytest.raises(RequestError) as refused:
        client.verify(result.receipt)
    assert refused.value.code == "rate_limited" and refused.value.retry_after is not None
    assert client.stats["retries"] == 0
    # A wait longer than the time left for retries is not waited for.
    impatient = Client(slow_server.url, retries=Retries(tries=5, within=0.5))
    _empty_the_bucket(slow_server.url)
    with pytest.raises(RequestError):
        impatient.checkpoint()
    assert impatient.stats["retries"] == 0
