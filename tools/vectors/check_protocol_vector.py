#!/usr/bin/env python3
"""Cross-check tests/vectors/protocol_v1.json, recomputing every value from the spec's
fixed inputs instead of trusting the file:
- key pairs re-derived from ikmR/ikmE with tools/vectors/hpke_ref.py (independent RFC 9180
  code, itself checked against the official vector by check_rfc9180_vector.py);
- the request ciphertext opened with a pyhpke *recipient* context (skR, enc) and with
  hpke_ref's receiver context; exports recomputed on the receiver side with both;
- result_ciphertext decrypted with AES-256-GCM (aad = execution_id) and re-encrypted;
- commitment, leaf, leaf_hash, key_id, SPKI and checkpoint body recomputed;
- the three DER ECDSA P-256 SHA-256 signatures verified with the public key parsed
  from the SPKI DER (and a tampered message must fail).
Prints one line per check group and an 'N passed, N failed' line; exits non-zero on failure.
"""
import base64
import hashlib
import json
import os
import sys
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hpke_ref  # noqa: E402

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "vectors", "protocol_v1.json")
H = bytes.fromhex
results = []


def check(name, cond):
    results.append((name, bool(cond)))


def main() -> int:
    v = json.load(open(PATH))
    hp = v["hpke"]
    session_id = "0b1e8f4e-2c1a-4d6b-9b51-5f3b2f6d7a10"
    execution_id = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    req_pt = b'{"module":"AGFzbQEAAAA=","args":["a","b"],"env":{"K":"V"},"stdin":"aGk="}'
    res_pt = b'{"execution_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7","status":"completed","exit_code":0}'

    # fixed inputs
    check("suite", v["suite"] == {"mode": 0, "kem_id": 16, "kdf_id": 1, "aead_id": 2})
    check("session_id", v["session_id"] == session_id and H(v["session_id_ascii_hex"]) == session_id.encode())
    check("ikmR", H(hp["ikmR"]) == bytes(range(1, 33)))
    check("ikmE", H(hp["ikmE"]) == bytes(range(33, 65)))
    check("request_plaintext", H(v["request_plaintext"]) == req_pt
          and v["request_plaintext_text"].encode("utf-8") == req_pt)
    check("result_plaintext", H(v["result_plaintext"]) == res_pt
          and v["result_plaintext_text"].encode("utf-8") == res_pt)
    info = b"wasm-hypervisor v1 request " + session_id.encode("ascii")
    check("info", H(hp["info"]) == info and hp["info_text"].encode() == info)

    # key pairs (independent implementation)
    skR, pkR = hpke_ref.derive_key_pair(H(hp["ikmR"]))
    skE, pkE = hpke_ref.derive_key_pair(H(hp["ikmE"]))
    check("skR/pkR from ikmR", skR == H(hp["skR"]) and pkR == H(hp["pkR"]) and len(pkR) == 65 and pkR[0] == 4)
    check("skE/pkE/enc from ikmE", skE == H(hp["skE"]) and pkE == H(hp["pkE"]) and pkE == H(hp["enc"]))
    enc = H(hp["enc"])
    ct = H(v["ciphertext"])
    check("request_aad empty", v["request_aad"] == "")

    # open with pyhpke recipient context
    suite = CipherSuite.new(KEMId(16), KDFId(1), AEADId(2))
    sk_obj = suite.kem.deserialize_private_key(skR)
    rctx = suite.create_recipient_context(enc, sk_obj, info)
    check("pyhpke recipient open(ciphertext)", rctx.open(ct, b"") == req_pt)
    ex = v["exports"]
    key_l = b"wasm-hypervisor v1 response key"
    nonce_l = b"wasm-hypervisor v1 response nonce"
    salt_l = b"wasm-hypervisor v1 commitment salt"
    check("export labels", H(ex["response_key_label"]) == key_l and H(ex["response_nonce_label"]) == nonce_l
          and H(ex["commitment_salt_label"]) == salt_l)
    key = rctx.export(key_l, 32)
    nonce = rctx.export(nonce_l, 12)
    salt = rctx.export(salt_l, 32)
    check("pyhpke recipient exports", key == H(ex["response_key"]) and nonce == H(ex["response_nonce"])
          and salt == H(ex["commitment_salt"]))

    # open with the independent implementation, and re-seal deterministically
    r = hpke_ref.Context(hpke_ref.decap(enc, skR), info)
    check("hpke_ref receiver open(ciphertext)", r.open(b"", ct) == req_pt)
    check("hpke_ref receiver exports", r.export(key_l, 32) == key and r.export(nonce_l, 12) == nonce
          and r.export(salt_l, 32) == salt)
    ss, enc2 = hpke_ref.encap_deterministic(pkR, skE)
    s = hpke_ref.Context(ss, info)
    check("hpke_ref sender seal == ciphertext", enc2 == enc and s.seal(b"", req_pt) == ct)
    check("ciphertext length = pt + 16", len(ct) == len(req_pt) + 16)

    # result encryption
    aad = execution_id.encode("ascii")
    rct = H(v["result_ciphertext"])
    check("result_aad", H(v["result_aad"]) == aad and len(aad) == 36)
    check("AES-256-GCM decrypt result_ciphertext", AESGCM(key).decrypt(nonce, rct, aad) == res_pt)
    check("AES-256-GCM re-encrypt", AESGCM(key).encrypt(nonce, res_pt, aad) == rct)
    try:
        AESGCM(key).decrypt(nonce, rct, b"")
        check("AES-GCM wrong aad rejected", False)
    except Exception:
        check("AES-GCM wrong aad rejected", True)

    # commitment, leaf
    rq = hashlib.sha256(req_pt).digest()
    rs = hashlib.sha256(res_pt).digest()
    check("plaintext hashes", rq == H(v["request_plaintext_sha256"]) and rs == H(v["result_plaintext_sha256"]))
    cin = b"wasm-hypervisor v1 commitment" + salt + rq + rs
    commitment = hashlib.sha256(cin).digest()
    check("commitment", H(v["commitment_input"]) == cin and H(v["commitment"]) == commitment)
    check("execution_id bytes", v["execution_id"] == execution_id
          and H(v["execution_id_uuid_bytes"]) == uuid.UUID(execution_id).bytes)
    ts = 1795000000000
    leaf = bytes([1]) + uuid.UUID(execution_id).bytes + ts.to_bytes(8, "big") + commitment
    check("timestamp", v["timestamp_ms"] == ts and H(v["timestamp_ms_u64_be"]) == ts.to_bytes(8, "big"))
    check("leaf (57 bytes)", H(v["leaf"]) == leaf and len(leaf) == 57)
    leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
    check("leaf_hash", H(v["leaf_hash"]) == leaf_hash)

    # signing key
    sk = v["signing_key"]
    d_bytes = hashlib.sha256(b"wasm-hypervisor test signing key").digest()
    d = int.from_bytes(d_bytes, "big")
    check("d", H(sk["d"]) == d_bytes and 0 < d < hpke_ref.P256_N)
    priv = ec.derive_private_key(d, ec.SECP256R1())
    spki = priv.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    check("spki_der (91 bytes)", H(sk["spki_der"]) == spki and len(spki) == 91
          and base64.b64decode(sk["spki_der_b64"]) == spki)
    check("public_key_sec1", H(sk["public_key_sec1"]) == spki[-65:])
    check("key_id", sk["key_id"] == hashlib.sha256(spki).hexdigest())
    pub = serialization.load_der_public_key(H(sk["spki_der"]))

    def verify(sig_hex, msg):
        try:
            pub.verify(H(sig_hex), msg, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        try:  # a changed message must not verify
            pub.verify(H(sig_hex), msg + b"x", ec.ECDSA(hashes.SHA256()))
            return False
        except InvalidSignature:
            return True

    smsg = b"wasm-hypervisor v1 session " + session_id.encode("ascii") + pkR
    check("session_signature_message", H(v["session_signature_message"]) == smsg)
    check("session_signature_der verifies", verify(v["session_signature_der"], smsg))
    check("leaf_signature_der verifies", verify(v["leaf_signature_der"], leaf))

    # checkpoint
    cp = v["checkpoint"]
    body = "wasm-hypervisor.test\n1\n" + base64.b64encode(leaf_hash).decode() + "\n"
    check("checkpoint fields", cp["origin"] == "wasm-hypervisor.test" and cp["tree_size"] == 1
          and H(cp["root_hash"]) == leaf_hash and base64.b64decode(cp["root_hash_b64"]) == leaf_hash)
    check("checkpoint body", cp["body"] == body and H(cp["body_hex"]) == body.encode())
    check("checkpoint signature_der verifies", verify(cp["signature_der"], body.encode()))

    for name, ok in results:
        print(("ok   " if ok else "FAIL ") + name)
    failed = sum(1 for _, ok in results if not ok)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
