#!/usr/bin/env bash
# Runs the Python package's tests against a real server: makes a virtualenv in
# <repo>/target/py-venv (once), installs ./clients/python with its test extra, and
# runs pytest. The server binary is $WASM_HYPERVISOR_BIN, else
# <repo>/target/debug/wasm-hypervisor (which `cargo build` or `cargo test` makes).
# Needs only python3 (3.9 or later) with venv and pip, and the package registry.
# Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/target/py-venv"
python="${PYTHON:-python3}"
export WASM_HYPERVISOR_BIN="${WASM_HYPERVISOR_BIN:-$repo/target/debug/wasm-hypervisor}"

if [ ! -x "$WASM_HYPERVISOR_BIN" ]; then
    echo "run-tests.sh: no server binary at $WASM_HYPERVISOR_BIN (run cargo build, or set WASM_HYPERVISOR_BIN)" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$repo/target"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here[test]"
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
