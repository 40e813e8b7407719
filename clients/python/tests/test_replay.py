"""Reproducible executions (protocol v1.2 §R) and usage (§U) against a real server:
``run(deterministic=True, seed=...)``, the replay bundle in the CLI's format,
``replay`` through the ``wasm-hypervisor`` program (the tests' server binary),
and ``usage()`` with a quota.

``reproducible.wasm`` is ``tests/fixtures/reproducible.wat`` of the repository
assembled (``cargo run --example wat2wasm``): it writes 60 raw bytes, the
realtime clock (8), the monotonic clock (8), 32 random bytes, the f32 bits of
0/0 (4) and the f64 bits of sqrt(-1) (8)."""

from __future__ import annotations

import base64
import json
import os
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import BINARY

from wasm_hypervisor import (
    Client,
    ReplayBundle,
    ReplayError,
    ReplayToolMissingError,
    RequestError,
    replay,
)

MODULE = (Path(__file__).parent / "reproducible.wasm").read_bytes()
#: 2024-01-01T00:00:00Z in ns, plus the 1 µs step of the first read.
FIRST_REALTIME_NS = 1_704_067_200_000_000_000 + 1_000


def realtime(stdout: bytes) -> int:
    return int(struct.unpack_from("<Q", stdout, 0)[0])


def random_bytes(stdout: bytes) -> bytes:
    return stdout[16:48]


@pytest.mark.parametrize("wire", ["v1.1", "v1"])
def test_two_deterministic_runs_agree_to_the_byte_and_a_normal_run_does_not(server, wire):
    client = Client(server.url, wire=wire)
    first = client.run(MODULE, deterministic=True)
    second = client.run(MODULE, deterministic=True)
    assert first.status == "completed", first.error
    assert first.deterministic and second.deterministic
    assert first.stdout == second.stdout
    assert first.fuel_consumed == second.fuel_consumed
    assert len(first.stdout) == 60
    assert realtime(first.stdout) == FIRST_REALTIME_NS
    # Canonical NaNs whatever the CPU's default.
    assert first.stdout[48:60] == struct.pack("<IQ", 0x7FC0_0000, 0x7FF8_0000_0000_0000)
    published = client._http.json("GET", "/fuel-costs")
    assert first.engine_sha256 == published["deterministic_engine_sha256"]
    assert first.replay_bundle is not None

    # The seed picks the random bytes, as bytes or as hex; nothing else changes.
    seeded = client.run(MODULE, seed=bytes([1]) * 32)
    assert seeded.deterministic
    assert random_bytes(seeded.stdout) != random_bytes(first.stdout)
    assert client.run(MODULE, seed="01" * 32).stdout == seeded.stdout
    assert realtime(seeded.stdout) == FIRST_REALTIME_NS

    normal = client.run(MODULE)
    assert normal.status == "completed"
    assert not normal.deterministic
    assert normal.engine_sha256 is None and normal.replay_bundle is None
    assert realtime(normal.stdout) != FIRST_REALTIME_NS


def test_a_seed_that_is_not_32_bytes_is_refused_before_sending(server):
    client = Client(server.url)
    for seed in (b"short", "zz" * 32, "01" * 31):
        with pytest.raises(ValueError):
            client.run(MODULE, seed=seed)


def test_a_deterministic_run_sends_its_module_by_bytes_even_when_the_server_has_it(server):
    # Padded past the 4 KiB under which modules always go by bytes.
    padded = MODULE + bytes([0, 0x88, 0x27, 3]) + b"pad" + bytes(5000 - 4)
    client = Client(server.url)
    client.run(padded)
    assert client.run(padded).sent_by_reference, "a normal run names it by hash"
    result = client.run(padded, deterministic=True)
    assert result.sent_by_reference == []
    assert result.status == "completed", result.error
    client.replay(result)


def test_a_saved_bundle_is_the_clis_format_and_replays_online_and_offline(server, tmp_path):
    client = Client(server.url)
    result = client.run(MODULE, stdin=b"the replayed stdin", deterministic=True)
    assert result.replay_bundle is not None
    path = tmp_path / "bundle.json"
    result.replay_bundle.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["format"] == "wasm-hypervisor replay bundle v1"
    assert saved["receipt"] == result.receipt.to_dict()
    assert ReplayBundle.load(path) == result.replay_bundle

    # The CLI reads the SDK's bundle as its own.
    done = subprocess.run(
        [str(BINARY), "replay", "--server", server.url, str(path)], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"replayed: every output is identical" in done.stdout

    passed = client.replay(result)
    assert passed.checks == [
        "request plaintext",
        "result plaintext",
        "receipt key",
        "leaf signature",
        "leaf contents",
        "commitment opening",
        "checkpoint signature",
        "inclusion proof",
    ]
    assert replay(path, server=server.url).checks == passed.checks
    # Offline, from the receipt's tlog-proof under the log's note key.
    assert result.receipt.tlog_proof is not None, result.tlog_proof_error
    client.replay(path, note_key=client.identity().note_key)


def test_a_tampered_bundle_and_a_missing_program_raise_typed_errors(server, tmp_path, monkeypatch):
    client = Client(server.url)
    result = client.run(MODULE, deterministic=True)
    bundle = result.replay_bundle
    assert bundle is not None
    changed = bytearray(bundle.result_plaintext)
    at = bytes(changed).find(result.stdout[:8])
    if at < 0:  # JSON plaintexts carry base64
        at = bytes(changed).find(base64.b64encode(result.stdout)[:8])
    changed[at] ^= 1
    tampered = ReplayBundle(bundle.receipt, bundle.request_plaintext, bytes(changed))
    with pytest.raises(ReplayError) as refused:
        client.replay(tampered)
    assert refused.value.reason == "check_failed" and refused.value.exit_code == 1
    assert "FAILED  result plaintext" in refused.value.output

    with pytest.raises(ReplayToolMissingError):
        client.replay(result, binary=tmp_path / "no-such-program")
    monkeypatch.delenv("WASM_HYPERVISOR_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ReplayToolMissingError):
        client.replay(result)
    with pytest.raises(ValueError):
        client.replay(client.run(MODULE))


def test_usage_shows_this_clients_executions_and_a_quota_refuses_the_next(make_server):
    server = make_server(WASM_HYPERVISOR_QUOTAS__PER_HOUR__EXECUTIONS="2")
    client = Client(server.url)
    before = client.usage()
    assert before["total"]["executions"] == 0
    assert before["hour"]["quota"]["executions"] == 2
    assert before["day"]["quota"]["executions"] is None
    first = client.run(MODULE, deterministic=True)
    second = client.run(MODULE)
    after = client.usage()
    assert after["hour"]["used"]["executions"] == 2
    assert after["total"]["fuel"] == first.fuel_consumed + second.fuel_consumed
    assert after["total"]["bytes_in"] > 0 and after["total"]["bytes_out"] > 0
    with pytest.raises(RequestError) as refused:
        client.run(MODULE)
    assert refused.value.status == 429 and refused.value.code == "quota_exceeded"
    assert refused.value.retry_after is not None and refused.value.retry_after >= 1
