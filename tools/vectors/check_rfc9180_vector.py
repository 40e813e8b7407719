#!/usr/bin/env python3
"""Independently verify tests/vectors/rfc9180_base_p256_sha256_aes256gcm.json.

For every entry: (a) with pyhpke, derive both key pairs from ikmE/ikmR, set up
sender and recipient contexts with the derived keys, and check skRm, pkRm, skEm,
pkEm, enc, every encryption's ct (sealed in order, and opened back) and every
export; (b) with tools/vectors/hpke_ref.py (a second, from-the-RFC implementation), check
the same plus the intermediate values shared_secret, key_schedule_context, secret,
key, base_nonce, exporter_secret and each encryption's nonce. Exits non-zero on
any mismatch.
"""
import json
import os
import sys

from pyhpke import AEADId, CipherSuite, KDFId, KEMId

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hpke_ref  # noqa: E402

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "vectors",
                    "rfc9180_base_p256_sha256_aes256gcm.json")
H = bytes.fromhex


class Checker:
    def __init__(self):
        self.ok = 0
        self.failed = []

    def eq(self, name, got, want):
        if got == want:
            self.ok += 1
        else:
            self.failed.append(f"{name}: got {got.hex() if isinstance(got, bytes) else got}, "
                               f"want {want.hex() if isinstance(want, bytes) else want}")


def try_open(fn):
    try:
        return fn()
    except Exception as e:  # a failed open is a mismatch, not a crash
        return f"open failed: {type(e).__name__}"


def sk32(kem_key) -> bytes:
    # pyhpke 0.6.5's EC to_private_bytes() pads the scalar to key_size *bits* (256 bytes
    # for P-256), so serialize the underlying `cryptography` key's scalar ourselves.
    return kem_key.raw.private_numbers().private_value.to_bytes(32, "big")


def check_entry(i, v, c):
    assert (v["mode"], v["kem_id"], v["kdf_id"], v["aead_id"]) == (0, 16, 1, 2), "wrong suite"
    info = H(v["info"])

    # (a) pyhpke
    suite = CipherSuite.new(KEMId(v["kem_id"]), KDFId(v["kdf_id"]), AEADId(v["aead_id"]))
    kpR = suite.kem.derive_key_pair(H(v["ikmR"]))
    kpE = suite.kem.derive_key_pair(H(v["ikmE"]))
    c.eq(f"[{i}] pyhpke skRm", sk32(kpR.private_key), H(v["skRm"]))
    c.eq(f"[{i}] pyhpke pkRm", kpR.public_key.to_public_bytes(), H(v["pkRm"]))
    c.eq(f"[{i}] pyhpke skEm", sk32(kpE.private_key), H(v["skEm"]))
    c.eq(f"[{i}] pyhpke pkEm", kpE.public_key.to_public_bytes(), H(v["pkEm"]))
    enc, sender = suite.create_sender_context(kpR.public_key, info, eks=kpE)
    c.eq(f"[{i}] pyhpke enc", enc, H(v["enc"]))
    recipient = suite.create_recipient_context(enc, kpR.private_key, info)
    for j, e in enumerate(v["encryptions"]):
        ct = sender.seal(H(e["pt"]), H(e["aad"]))
        c.eq(f"[{i}] pyhpke encryptions[{j}].ct", ct, H(e["ct"]))
        c.eq(f"[{i}] pyhpke encryptions[{j}] open", try_open(lambda: recipient.open(H(e["ct"]), H(e["aad"]))), H(e["pt"]))
    for j, x in enumerate(v["exports"]):
        c.eq(f"[{i}] pyhpke exports[{j}] sender",
             sender.export(H(x["exporter_context"]), x["L"]), H(x["exported_value"]))
        c.eq(f"[{i}] pyhpke exports[{j}] recipient",
             recipient.export(H(x["exporter_context"]), x["L"]), H(x["exported_value"]))

    # (b) independent reference implementation
    skR, pkR = hpke_ref.derive_key_pair(H(v["ikmR"]))
    skE, pkE = hpke_ref.derive_key_pair(H(v["ikmE"]))
    c.eq(f"[{i}] ref skRm", skR, H(v["skRm"]))
    c.eq(f"[{i}] ref pkRm", pkR, H(v["pkRm"]))
    c.eq(f"[{i}] ref skEm", skE, H(v["skEm"]))
    c.eq(f"[{i}] ref pkEm", pkE, H(v["pkEm"]))
    ss, enc2 = hpke_ref.encap_deterministic(pkR, skE)
    c.eq(f"[{i}] ref enc", enc2, H(v["enc"]))
    c.eq(f"[{i}] ref shared_secret", ss, H(v["shared_secret"]))
    c.eq(f"[{i}] ref decap shared_secret", hpke_ref.decap(enc2, skR), H(v["shared_secret"]))
    s = hpke_ref.Context(ss, info)
    c.eq(f"[{i}] ref key_schedule_context", s.key_schedule_context, H(v["key_schedule_context"]))
    c.eq(f"[{i}] ref secret", s.secret, H(v["secret"]))
    c.eq(f"[{i}] ref key", s.key, H(v["key"]))
    c.eq(f"[{i}] ref base_nonce", s.base_nonce, H(v["base_nonce"]))
    c.eq(f"[{i}] ref exporter_secret", s.exporter_secret, H(v["exporter_secret"]))
    r = hpke_ref.Context(hpke_ref.decap(enc2, skR), info)
    for j, e in enumerate(v["encryptions"]):
        c.eq(f"[{i}] ref encryptions[{j}].nonce", s.nonce(j), H(e["nonce"]))
        c.eq(f"[{i}] ref encryptions[{j}].ct", s.seal(H(e["aad"]), H(e["pt"])), H(e["ct"]))
        c.eq(f"[{i}] ref encryptions[{j}] open", try_open(lambda: r.open(H(e["aad"]), H(e["ct"]))), H(e["pt"]))
    for j, x in enumerate(v["exports"]):
        c.eq(f"[{i}] ref exports[{j}]", s.export(H(x["exporter_context"]), x["L"]), H(x["exported_value"]))


def main() -> int:
    doc = json.load(open(PATH))
    print(f"source: {doc['source']}")
    c = Checker()
    for i, v in enumerate(doc["vectors"]):
        check_entry(i, v, c)
        print(f"entry {i}: mode={v['mode']} kem_id={v['kem_id']} kdf_id={v['kdf_id']} "
              f"aead_id={v['aead_id']}: {len(v['encryptions'])} encryptions, {len(v['exports'])} exports")
    for f in c.failed:
        print("MISMATCH " + f)
    print(f"{c.ok} passed, {len(c.failed)} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
