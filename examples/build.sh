#!/usr/bin/env bash
# Build the C guest programs in this directory into WASI preview1 command
# modules (examples/<name>.wasm). The built .wasm files are committed, so CI
# and the Rust tests need no C toolchain; run this only after changing a .c.
#
# Needs these Debian (bookworm) packages:
#   apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32
# (clang-14 is bookworm's default clang; its wasm32 compiler-rt builtins come
# from libclang-rt-14-dev-wasm32, so the compiler is called as clang-14.)
#
# Usage: examples/build.sh            (from any directory)
#        WASI_CC=clang-16 examples/build.sh   (other clang, with its
#                                     matching libclang-rt-16-dev-wasm32)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

CC="${WASI_CC:-clang-14}"
# Debian's wasi-libc installs into /usr (headers in /usr/include/wasm32-wasi,
# libc.a and crt1*.o in /usr/lib/wasm32-wasi), so the sysroot is /usr.
SYSROOT="${WASI_SYSROOT:-/usr}"
CFLAGS=(--target=wasm32-wasi --sysroot="$SYSROOT" -std=c11 -O2 -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--strip-all)

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "build.sh: $CC not found; apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32" >&2
    exit 1
fi

for src in *.c; do
    out="${src%.c}.wasm"
    echo "$CC ${CFLAGS[*]} ${LDFLAGS[*]} -o $out $src"
    "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$out" "$src"
    chmod 644 "$out"
done

ls -l ./*.wasm

# The components are made from committed sources with the crate's own examples
# (no C toolchain needed): the calc component from its WAT, and hello.wasm and
# files.wasm wrapped as WASI preview2 commands with the preview1 adapter.
cargo run -q --example wat2wasm -- calc.wat calc.component.wasm
cargo run -q --example componentize -- hello.wasm hello.component.wasm
cargo run -q --example componentize -- files.wasm files.component.wasm
ls -l ./*.component.wasm
