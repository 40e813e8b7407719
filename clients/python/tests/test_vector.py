"""The package's labels and byte layouts against the repository's known-answer
vector tests/vectors/protocol_v1.json (no server needed)."""

from __future__ import annotations

import base64
import json

import pytest

from conftest import REPO
from wasm_hypervisor import Receipt, VerificationError, verify_receipt
from wasm_hypervisor import _crypto
from wasm_hypervisor.receipt import check_checkpoint

VECTOR = json.loads((REPO / "tests" / "vectors" / "protocol_v1.json").read_text())


def h(name: str) -> bytes:
    value = VECTOR
    for part in name.split("."):
        value = value[part]
    return bytes.fromhex(value)


def checkpoint_doc() -> dict:
    checkpoint = VECTOR["checkpoint"]
    return {
        "origin": checkpoint["origin"],
        "tree_size": checkpoint["tree_size"],
        "root_hash": checkpoint["root_hash_b64"],
        "body": checkpoint["body"],
        "signature": base64.b64encode(h("checkpoint.signature_der")).decode(),
    }


def test_sealing_matches_the_vector_byte_for_byte():
    enc, ciphertext, keys = _crypto.seal_request(
        VECTOR["session_id"], h("hpke.pkR"), h("request_plaintext"), _ephemeral_ikm=h("hpke.ikmE")
    )
    assert enc == h("hpke.enc")
    assert ciphertext == h("ciphertext")
    assert keys.key == h("exports.response_key")
    assert keys.nonce == h("exports.response_nonce")
    assert keys.salt == h("exports.commitment_salt")
    assert keys.open_result(VECTOR["execution_id"], h("result_ciphertext")) == h("result_plaintext")
    assert keys.commitment(h("request_plaintext"), h("result_plaintext")) == h("commitment")


def test_signatures_leaf_and_checkpoint_match_the_vector():
    key = _crypto.ServerKey(h("signing_key.spki_der"))
    assert key.key_id == VECTOR["signing_key"]["key_id"]
    message = _crypto.session_message(VECTOR["session_id"], h("hpke.pkR"))
    assert message == h("session_signature_message")
    assert key.verify(message, h("session_signature_der"))
    assert not key.verify(message + b"x", h("session_signature_der"))
    assert key.verify(h("leaf"), h("leaf_signature_der"))
    assert _crypto.parse_leaf(h("leaf")) == (VECTOR["execution_id"], VECTOR["timestamp_ms"], h("commitment"))
    assert _crypto.leaf_hash(h("leaf")) == h("leaf_hash")
    assert check_checkpoint(checkpoint_doc(), key) == ("wasm-hypervisor.test", 1, h("checkpoint.root_hash"))


@pytest.mark.parametrize("tamper, check", [(None, None), ("tree_size", "checkpoint signature")])
def test_a_receipt_built_from_the_vector_verifies_offline(tamper, check):
    receipt = Receipt(
        version=1,
        server="http://wasm-hypervisor.test",
        origin="wasm-hypervisor.test",
        key_id=VECTOR["signing_key"]["key_id"],
        public_key=VECTOR["signing_key"]["spki_der_b64"],
        execution_id=VECTOR["execution_id"],
        log_index=0,
        status="completed",
        commitment=VECTOR["commitment"],
        salt=VECTOR["exports"]["commitment_salt"],
        request_sha256=VECTOR["request_plaintext_sha256"],
        result_sha256=VECTOR["result_plaintext_sha256"],
        module_sha256=None,
        leaf_signature=base64.b64encode(h("leaf_signature_der")).decode(),
    )
    answer = {
        "execution_id": VECTOR["execution_id"],
        "log_index": 0,
        "timestamp_ms": VECTOR["timestamp_ms"],
        "commitment": VECTOR["commitment"],
        "leaf": base64.b64encode(h("leaf")).decode(),
        "leaf_signature": receipt.leaf_signature,
        "inclusion_proof": [],
        "checkpoint": checkpoint_doc(),
    }
    if tamper is None:
        assert all(c.ok for c in verify_receipt(receipt, answer, key_id=receipt.key_id))
        return
    answer["checkpoint"][tamper] = 2
    with pytest.raises(VerificationError) as failure:
        verify_receipt(receipt, answer)
    assert failure.value.check == check
    assert [c.name for c in failure.value.failed] == ["checkpoint signature", "inclusion proof"]
