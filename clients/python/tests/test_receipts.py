"""Receipts: the one JSON format of PROTOCOL.md "Receipts", verified crosswise with
the CLI (`wasm-hypervisor run --receipt`, `wasm-hypervisor verify`)."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from conftest import BINARY
from wasm_hypervisor import Client, Receipt, VerificationError, verify_receipt

CHECKS = ["receipt key", "leaf signature", "leaf contents", "commitment opening", "checkpoint signature", "inclusion proof"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_python_receipt_verifies_with_every_check(server, examples):
    client = Client(server.url)
    result = client.run(examples / "hello.wasm")
    checks = client.verify(result.receipt)
    assert [check.name for check in checks] == CHECKS
    assert all(check.ok for check in checks)


def test_receipt_json_round_trips_in_the_cli_field_order(server, examples, tmp_path):
    receipt = Client(server.url).run(examples / "tiny.wasm").receipt
    assert Receipt.from_json(receipt.to_json()) == receipt
    receipt.save(tmp_path / "r.json")
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o600
    # Over a file readable by others, too: the salt it holds is private.
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "old.json").chmod(0o644)
    receipt.save(tmp_path / "old.json")
    assert (tmp_path / "old.json").stat().st_mode & 0o777 == 0o600
    assert Receipt.load(tmp_path / "old.json") == receipt
    cli_run = cli("run", "--server", server.url, "--no-references", "--receipt", str(tmp_path / "cli.json"), str(examples / "tiny.wasm"))
    assert cli_run.returncode == 0, cli_run.stderr
    cli_doc = json.loads((tmp_path / "cli.json").read_text())
    assert list(cli_doc) == list(receipt.to_dict())


@pytest.mark.parametrize("wire", ["v1.1", "v1"])
def test_cli_receipt_verifies_with_python(server, examples, tmp_path, wire):
    path = tmp_path / "cli.json"
    run = cli("run", "--server", server.url, "--wire", wire, "--no-references", "--receipt", str(path), str(examples / "hello.wasm"), "a")
    assert run.returncode == 0, run.stderr
    receipt = Receipt.load(path)
    checks = Client(server.url, key_id=server.key_id()).verify(receipt)
    assert [check.name for check in checks] == CHECKS


@pytest.mark.parametrize("wire", ["v1.1", "v1"])
def test_python_receipt_verifies_with_the_cli(server, examples, tmp_path, wire):
    receipt = Client(server.url, wire=wire).run(examples / "hello.wasm", stdin=b"x").receipt
    receipt.save(tmp_path / "py.json")
    verify = cli("verify", str(tmp_path / "py.json"), "--server", server.url, "--key-id", server.key_id())
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"verified: execution {receipt.execution_id}" in verify.stdout
    for name in CHECKS:
        assert f"ok      {name}\n" in verify.stdout


def flip_hex(text: str) -> str:
    return ("1" if text[0] == "0" else "0") + text[1:]


@pytest.mark.parametrize(
    "field, failed",
    [
        ("salt", ["commitment opening"]),
        ("result_sha256", ["commitment opening"]),
        ("commitment", ["leaf contents", "commitment opening"]),
        ("log_index", ["leaf contents"]),
        ("key_id", ["receipt key"]),
        ("leaf_signature", ["leaf signature"]),
    ],
)
def test_tampered_receipt_fails_naming_the_check_in_python_and_the_cli(server, examples, tmp_path, field, failed):
    client = Client(server.url)
    receipt = client.run(examples / "tiny.wasm").receipt
    doc = receipt.to_dict()
    if field == "log_index":
        doc[field] += 1
    elif field == "leaf_signature":
        # Another execution's valid signature: well-formed, not over this leaf.
        doc[field] = client.run(examples / "tiny.wasm").receipt.leaf_signature
    else:
        doc[field] = flip_hex(doc[field])
    with pytest.raises(VerificationError) as failure:
        client.verify(doc)
    assert failure.value.check == failed[0]
    assert [check.name for check in failure.value.failed] == failed
    assert failed[0] in str(failure.value)

    (tmp_path / "bad.json").write_text(json.dumps(doc))
    verify = cli("verify", str(tmp_path / "bad.json"), "--server", server.url)
    assert verify.returncode != 0
    for name in CHECKS:
        marker = "FAILED  " if name in failed else "ok      "
        assert f"{marker}{name}" in verify.stdout, verify.stdout


def test_receipt_verifies_offline_against_a_saved_proof(server, examples, tmp_path):
    result = Client(server.url).run(examples / "tiny.wasm")
    saved = tmp_path / "proof.json"
    cli_verify = cli("verify", "--server", server.url, "--save-proof", str(saved), str(_write(tmp_path, result.receipt)))
    assert cli_verify.returncode == 0, cli_verify.stdout + cli_verify.stderr
    answer = json.loads(saved.read_text())
    assert [c.name for c in verify_receipt(result.receipt, answer, key_id=server.key_id())] == CHECKS
    answer["inclusion_proof"] = [base64.b64encode(b"\x00" * 32).decode()] * (len(answer["inclusion_proof"]) + 1)
    with pytest.raises(VerificationError) as failure:
        verify_receipt(result.receipt, answer)
    assert failure.value.check == "inclusion proof"


def _write(tmp_path, receipt: Receipt):
    path = tmp_path / "receipt.json"
    receipt.save(path)
    return path


def test_malformed_receipt_is_refused_naming_the_field():
    doc = {name: "x" for name in CHECKS}
    with pytest.raises(ValueError, match="version"):
        Receipt.from_dict(doc)
