"""Receipts: the one JSON format of PROTOCOL.md "Receipts", verified crosswise with
the CLI (`wasm-hypervisor run --receipt`, `wasm-hypervisor verify`)."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import urllib.request
import uuid

import pytest

from conftest import BINARY
from wasm_hypervisor import (
    Client,
    KeyMismatchError,
    Policy,
    ProtocolError,
    Receipt,
    VerificationError,
    VerifierKey,
    verify_receipt,
)
from wasm_hypervisor._proofs import PROOF_RETRIED_STATUSES, fetch_tlog_proof
from wasm_hypervisor.tlog import TlogProof, key_id
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat



def ed25519_vkey(name: str, signature_type: int) -> str:
    """The vkey of a fresh Ed25519 key that never signed anything here."""
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"{name}+{key_id(name, signature_type, public):08x}+{base64.b64encode(bytes([signature_type]) + public).decode()}"

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
    # Both carry the proof, last.
    assert list(cli_doc) == list(receipt.to_dict())
    assert list(cli_doc)[-1] == "tlog_proof"


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


# -- protocol v1.2: the receipt carries its tlog-proof, verified offline -----


def note_key(server) -> str:
    with urllib.request.urlopen(server.url + "/keys", timeout=5) as response:
        return str(json.load(response)["note_verifier_key"])


def test_a_receipt_carries_the_servers_tlog_proof_last_and_verifies_offline_with_the_server_stopped(make_server, examples, tmp_path):
    server = make_server()
    vkey = note_key(server)
    result = Client(server.url).run(examples / "hello.wasm")
    receipt = result.receipt
    assert result.tlog_proof_error is None
    assert receipt.tlog_proof is not None and receipt.tlog_proof.startswith("c2sp.org/tlog-proof@v1\nextra ")
    with urllib.request.urlopen(f"{server.url}/tlog/proof/{receipt.execution_id}", timeout=5) as response:
        served = response.read().decode()
    assert TlogProof.parse(served).index == receipt.log_index
    assert list(receipt.to_dict())[-1] == "tlog_proof"
    receipt.save(tmp_path / "r.json")
    assert Receipt.load(tmp_path / "r.json") == receipt
    assert json.loads((tmp_path / "r.json").read_text())["tlog_proof"] == receipt.tlog_proof
    server.stop()
    # No network: a client of the stopped server, and the module-level function.
    offline = Client(server.url, key_id=receipt.key_id)
    assert [c.name for c in offline.verify(receipt, note_key=vkey)] == CHECKS
    assert [c.name for c in verify_receipt(Receipt.load(tmp_path / "r.json"), note_key=vkey)] == CHECKS
    policy = f"# this log, unwitnessed\nlog {vkey} {server.url}\nquorum none\n"
    assert [c.name for c in verify_receipt(receipt, policy=policy, key_id=receipt.key_id)] == CHECKS
    assert [c.name for c in verify_receipt(receipt, policy=Policy.parse(policy.encode()))] == CHECKS
    with pytest.raises(KeyMismatchError):
        verify_receipt(receipt, note_key=vkey, key_id="00" * 32)
    with pytest.raises(ValueError, match="not both"):
        verify_receipt(receipt, note_key=vkey, policy=policy)


@pytest.mark.parametrize(
    "field, failed",
    [
        ("salt", ["commitment opening"]),
        ("commitment", ["leaf contents", "commitment opening"]),
        ("log_index", ["leaf contents"]),
        ("key_id", ["receipt key"]),
        ("leaf_signature", ["leaf signature"]),
        ("origin", ["receipt key", "checkpoint signature", "inclusion proof"]),
        ("execution_id", ["leaf contents"]),
    ],
)
def test_a_tampered_receipt_fails_offline_naming_the_check(server, examples, field, failed):
    client = Client(server.url)
    receipt = client.run(examples / "tiny.wasm").receipt
    doc = receipt.to_dict()
    if field == "log_index":
        doc[field] += 1
    elif field == "leaf_signature":
        doc[field] = client.run(examples / "tiny.wasm").receipt.leaf_signature
    elif field == "origin":
        doc[field] += "x"
    elif field == "execution_id":
        doc[field] = str(uuid.uuid4())
    else:
        doc[field] = flip_hex(doc[field])
    with pytest.raises(VerificationError) as failure:
        verify_receipt(doc, note_key=note_key(server))
    assert [check.name for check in failure.value.failed] == failed


def test_a_tampered_or_foreign_tlog_proof_fails_offline(server, examples):
    client = Client(server.url)
    receipt = client.run(examples / "tiny.wasm").receipt
    other = client.run(examples / "tiny.wasm").receipt
    vkey = note_key(server)
    proof = receipt.tlog_proof
    lines = proof.split("\n")
    assert lines[3], "the shared server's log holds more than one leaf, so the proof has hashes"
    flipped = base64.b64encode(bytes([base64.b64decode(lines[3])[0] ^ 1]) + base64.b64decode(lines[3])[1:]).decode()
    for tlog_proof, first in [
        (other.tlog_proof, "leaf signature"),  # another execution's valid proof
        (proof.replace(lines[1], "extra " + other.tlog_proof.split("\n")[1][6:]), "leaf signature"),
        (proof.replace(f"index {receipt.log_index}\n", f"index {receipt.log_index + 1}\n"), "leaf contents"),
        (proof.replace(lines[3], flipped), "inclusion proof"),
        (proof.replace(lines[3], lines[3][::-1]), "receipt key"),  # malformed: every check needing it fails
        (proof.rsplit("\u2014", 1)[0], "receipt key"),  # the P-256 line cut off
    ]:
        doc = {**receipt.to_dict(), "tlog_proof": tlog_proof}
        with pytest.raises(VerificationError) as failure:
            verify_receipt(doc, note_key=vkey)
        assert failure.value.check == first, (tlog_proof, failure.value.checks)
    # Another key of the same name; a policy that wants a witness's cosignature.
    for policy in [
        f"log {ed25519_vkey(receipt.origin, 1)}\nquorum none\n",
        f"log {vkey}\nwitness W {ed25519_vkey('w.example', 4)}\nquorum W\n",
    ]:
        with pytest.raises(VerificationError) as failure:
            verify_receipt(receipt, policy=policy)
        assert [check.name for check in failure.value.failed] == ["checkpoint signature", "inclusion proof"]
    with pytest.raises(ValueError, match="verifier key"):
        verify_receipt(receipt, note_key=vkey.replace("+", "+x", 1))


def test_a_receipt_without_tlog_proof_says_so_offline_and_verifies_online(server, examples):
    client = Client(server.url)
    doc = client.run(examples / "tiny.wasm").receipt.to_dict()
    del doc["tlog_proof"]
    with pytest.raises(VerificationError) as failure:
        verify_receipt(doc, note_key=note_key(server))
    assert [check.name for check in failure.value.failed] == [n for n in CHECKS if n != "commitment opening"]
    assert "the receipt carries no tlog_proof; verify it online" in str(failure.value)
    assert failure.value.failed[-1].error == "the receipt carries no tlog_proof; verify it online"
    assert [check.name for check in client.verify(doc)] == CHECKS


class _Answers:
    """An ``Http`` stand-in answering ``GET /tlog/proof/...`` from a list."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = []

    def request(self, method, path, **kwargs):
        self.asked.append((method, path, kwargs.get("retry_statuses")))
        return self.answers.pop(0)


def test_a_proof_not_published_or_refused_leaves_the_receipt_without_it_and_a_bad_one_is_an_error(server, examples):
    receipt = Client(server.url).run(examples / "tiny.wasm").receipt
    key = VerifierKey.parse(note_key(server))
    bare = dataclasses.replace(receipt, tlog_proof=None)
    not_yet = (404, {"retry-after": "1"}, b'{"error":{"code":"not_yet_published","message":"later"}}')
    http = _Answers(not_yet)
    proof, why = fetch_tlog_proof(http, bare, key)
    assert proof is None and "not_yet_published" in why
    assert http.asked[0][2] == (404, 429, 503)
    proof, why = fetch_tlog_proof(_Answers((503, {}, b"down")), bare, key)
    assert proof is None and "503" in why
    proof, why = fetch_tlog_proof(_Answers((200, {}, receipt.tlog_proof.encode())), bare, key)
    assert (proof, why) == (receipt.tlog_proof, None)
    tampered = receipt.tlog_proof.replace(f"index {receipt.log_index}\n", f"index {receipt.log_index + 1}\n")
    with pytest.raises(ProtocolError, match="tlog-proof does not verify: leaf contents"):
        fetch_tlog_proof(_Answers((200, {}, tampered.encode())), bare, key)


def test_a_proof_not_yet_published_is_asked_again_after_retry_after(server):
    # The real retry loop, against answers that publish on the third try.
    from wasm_hypervisor._http import Http
    from wasm_hypervisor.options import Retries

    http = Http(server.url, None, 5.0, Retries(tries=5, within=30.0))
    not_yet = (404, {"retry-after": "0"}, b'{"error":{"code":"not_yet_published","message":"later"}}')
    unknown = (404, {"retry-after": "0"}, b'{"error":{"code":"not_found","message":"no"}}')
    answers = [not_yet, not_yet, (200, {}, b"proof")]
    http._once = lambda *args: answers.pop(0)
    assert http.request("GET", "/tlog/proof/x", idempotent=True, retry_statuses=PROOF_RETRIED_STATUSES,
                        retry_if=lambda e: e.status != 404 or e.code == "not_yet_published")[0] == 200
    answers = [unknown, (200, {}, b"proof")]
    assert http.request("GET", "/tlog/proof/x", idempotent=True, retry_statuses=PROOF_RETRIED_STATUSES,
                        retry_if=lambda e: e.status != 404 or e.code == "not_yet_published")[0] == 404
