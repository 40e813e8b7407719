#!/usr/bin/env python3
"""Compute the fixed-key known-answer vector tests/vectors/protocol_v1.json for the
wasm-hypervisor wire protocol v1 (shared/spec/protocol-v1.md), using Python libraries
only: pyhpke (HPKE), cryptography (ECDSA P-256, AES-256-GCM), hashlib (SHA-256).

Everything is deterministic except the three ECDSA signatures (randomized k), which
any verifier accepts. Prints only the output path; run tools/vectors/check_protocol_vector.py
afterwards to cross-check the file.
"""
import base64
import hashlib
import json
import os
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "vectors", "protocol_v1.json")
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

SESSION_ID = "0b1e8f4e-2c1a-4d6b-9b51-5f3b2f6d7a10"
EXECUTION_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
IKM_R = bytes(range(0x01, 0x21))
IKM_E = bytes(range(0x21, 0x41))
REQUEST_PLAINTEXT = b'{"module":"AGFzbQEAAAA=","args":["a","b"],"env":{"K":"V"},"stdin":"aGk="}'
RESULT_PLAINTEXT = ('{"execution_id":"' + EXECUTION_ID + '","status":"completed","exit_code":0}').encode()
TIMESTAMP_MS = 1795000000000
ORIGIN = "wasm-hypervisor.test"
SIGNING_KEY_SEED_LABEL = b"wasm-hypervisor test signing key"

L_INFO = b"wasm-hypervisor v1 request "
L_KEY = b"wasm-hypervisor v1 response key"
L_NONCE = b"wasm-hypervisor v1 response nonce"
L_SALT = b"wasm-hypervisor v1 commitment salt"
L_COMMIT = b"wasm-hypervisor v1 commitment"
L_SESSION = b"wasm-hypervisor v1 session "

DESCRIPTION = (
    "Known-answer vector for wasm-hypervisor wire protocol v1 (shared/spec/protocol-v1.md), computed by "
    "tools/vectors/protocol_vector.py with pyhpke (HPKE), cryptography (ECDSA P-256, AES-256-GCM) and hashlib. "
    "All binary values are lowercase hex. Suite: HPKE RFC 9180 mode_base, KEM 0x0010 DHKEM(P-256, HKDF-SHA256), "
    "KDF 0x0001 HKDF-SHA256, AEAD 0x0002 AES-256-GCM. "
    "Recipe: (skR, pkR) = DeriveKeyPair(ikmR = 01..20), (skE, pkE) = DeriveKeyPair(ikmE = 21..40); "
    "info = 'wasm-hypervisor v1 request ' || session_id (ASCII); enc, ctx = SetupBaseS(pkR, info) with the "
    "ephemeral (skE, pkE), so enc = pkE; ciphertext = ctx.Seal(aad = empty, request_plaintext) (sequence 0); "
    "response_key = ctx.Export('wasm-hypervisor v1 response key', 32), response_nonce = "
    "ctx.Export('wasm-hypervisor v1 response nonce', 12), commitment_salt = "
    "ctx.Export('wasm-hypervisor v1 commitment salt', 32); result_ciphertext = AES-256-GCM(response_key, "
    "response_nonce, aad = execution_id as 36 ASCII bytes, result_plaintext) = ciphertext || 16-byte tag; "
    "commitment = SHA-256('wasm-hypervisor v1 commitment' || commitment_salt || SHA-256(request_plaintext) || "
    "SHA-256(result_plaintext)); leaf = 0x01 || execution_id as 16 raw UUID bytes || timestamp_ms u64 "
    "big-endian || commitment (57 bytes); leaf_hash = SHA-256(0x00 || leaf). Signing key: d = "
    "SHA-256('wasm-hypervisor test signing key') as a big-endian integer (0 < d < n), public key as SPKI DER, "
    "key_id = hex SHA-256(SPKI DER). session_signature_message = 'wasm-hypervisor v1 session ' || session_id "
    "(ASCII) || pkR (65 bytes). Checkpoint of the one-leaf tree: root_hash = leaf_hash, body = origin '\\n' "
    "'1' '\\n' base64(root_hash) '\\n'. The *_signature_der values are DER ECDSA P-256 SHA-256 signatures "
    "with randomized nonces (they differ on every run; verify them, do not compare them) over "
    "session_signature_message, leaf and the body bytes respectively."
)


def main() -> None:
    suite = CipherSuite.new(KEMId.DHKEM_P256_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
    kp_r = suite.kem.derive_key_pair(IKM_R)
    kp_e = suite.kem.derive_key_pair(IKM_E)
    # pyhpke 0.6.5's EC to_private_bytes() pads to key_size bits (256 bytes); take the scalar directly.
    sk_r = kp_r.private_key.raw.private_numbers().private_value.to_bytes(32, "big")
    sk_e = kp_e.private_key.raw.private_numbers().private_value.to_bytes(32, "big")
    pk_r = kp_r.public_key.to_public_bytes()
    pk_e = kp_e.public_key.to_public_bytes()
    assert len(pk_r) == 65 and pk_r[0] == 4 and len(pk_e) == 65 and pk_e[0] == 4

    info = L_INFO + SESSION_ID.encode("ascii")
    enc, sender = suite.create_sender_context(kp_r.public_key, info, eks=kp_e)
    assert enc == pk_e
    ciphertext = sender.seal(REQUEST_PLAINTEXT, b"")
    response_key = sender.export(L_KEY, 32)
    response_nonce = sender.export(L_NONCE, 12)
    salt = sender.export(L_SALT, 32)

    result_aad = EXECUTION_ID.encode("ascii")
    assert len(result_aad) == 36
    result_ciphertext = AESGCM(response_key).encrypt(response_nonce, RESULT_PLAINTEXT, result_aad)

    req_hash = hashlib.sha256(REQUEST_PLAINTEXT).digest()
    res_hash = hashlib.sha256(RESULT_PLAINTEXT).digest()
    commitment_input = L_COMMIT + salt + req_hash + res_hash
    commitment = hashlib.sha256(commitment_input).digest()

    exec_uuid = uuid.UUID(EXECUTION_ID).bytes
    ts_be = TIMESTAMP_MS.to_bytes(8, "big")
    leaf = b"\x01" + exec_uuid + ts_be + commitment
    assert len(leaf) == 57
    leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()

    d_bytes = hashlib.sha256(SIGNING_KEY_SEED_LABEL).digest()
    d = int.from_bytes(d_bytes, "big")
    assert 0 < d < P256_N
    signing_key = ec.derive_private_key(d, ec.SECP256R1())
    pub = signing_key.public_key()
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pub_sec1 = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    key_id = hashlib.sha256(spki).hexdigest()

    def sign(msg: bytes) -> bytes:
        return signing_key.sign(msg, ec.ECDSA(hashes.SHA256()))

    session_msg = L_SESSION + SESSION_ID.encode("ascii") + pk_r
    root_hash = leaf_hash
    body = ORIGIN + "\n" + "1" + "\n" + base64.b64encode(root_hash).decode("ascii") + "\n"

    doc = {
        "description": DESCRIPTION,
        "suite": {"mode": 0, "kem_id": 16, "kdf_id": 1, "aead_id": 2},
        "session_id": SESSION_ID,
        "session_id_ascii_hex": SESSION_ID.encode("ascii").hex(),
        "hpke": {
            "ikmR": IKM_R.hex(),
            "skR": sk_r.hex(),
            "pkR": pk_r.hex(),
            "ikmE": IKM_E.hex(),
            "skE": sk_e.hex(),
            "pkE": pk_e.hex(),
            "enc": enc.hex(),
            "info": info.hex(),
            "info_text": info.decode("ascii"),
        },
        "request_plaintext": REQUEST_PLAINTEXT.hex(),
        "request_plaintext_text": REQUEST_PLAINTEXT.decode("utf-8"),
        "request_aad": "",
        "ciphertext": ciphertext.hex(),
        "exports": {
            "response_key_label": L_KEY.hex(),
            "response_key": response_key.hex(),
            "response_nonce_label": L_NONCE.hex(),
            "response_nonce": response_nonce.hex(),
            "commitment_salt_label": L_SALT.hex(),
            "commitment_salt": salt.hex(),
        },
        "execution_id": EXECUTION_ID,
        "execution_id_uuid_bytes": exec_uuid.hex(),
        "result_plaintext": RESULT_PLAINTEXT.hex(),
        "result_plaintext_text": RESULT_PLAINTEXT.decode("utf-8"),
        "result_aad": result_aad.hex(),
        "result_ciphertext": result_ciphertext.hex(),
        "request_plaintext_sha256": req_hash.hex(),
        "result_plaintext_sha256": res_hash.hex(),
        "commitment_input": commitment_input.hex(),
        "commitment": commitment.hex(),
        "timestamp_ms": TIMESTAMP_MS,
        "timestamp_ms_u64_be": ts_be.hex(),
        "leaf": leaf.hex(),
        "leaf_hash": leaf_hash.hex(),
        "signing_key": {
            "seed_label": SIGNING_KEY_SEED_LABEL.hex(),
            "d": d_bytes.hex(),
            "public_key_sec1": pub_sec1.hex(),
            "spki_der": spki.hex(),
            "spki_der_b64": base64.b64encode(spki).decode("ascii"),
            "key_id": key_id,
        },
        "session_signature_message": session_msg.hex(),
        "session_signature_der": sign(session_msg).hex(),
        "leaf_signature_der": sign(leaf).hex(),
        "checkpoint": {
            "origin": ORIGIN,
            "tree_size": 1,
            "root_hash": root_hash.hex(),
            "root_hash_b64": base64.b64encode(root_hash).decode("ascii"),
            "body": body,
            "body_hex": body.encode("ascii").hex(),
            "signature_der": sign(body.encode("ascii")).hex(),
        },
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
