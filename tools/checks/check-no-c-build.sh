#!/usr/bin/env bash
# Checks that the server builds as a reviewer without a C compiler would build it:
# `--no-default-features --features rustcrypto` (no aws-lc, no mimalloc, no TLS in
# the client), with CC and CXX set to tools/checks/no-c-compiler, which refuses all C but
# Wasmtime's own helper (see there). It fails if any crate in it needs C.
#
# `cargo check` rather than `cargo build`: every build script still runs (and C is
# only ever compiled by build scripts), without the code generation and linking of
# the whole server, which took minutes of CI. The check shares the target directory, so first every package of that build
# whose build script calls a C compiler (a direct dependent of `cc` or `cmake`) is
# cleaned: its build script must run again, under the refusing compiler, instead
# of reusing an earlier result.
set -euo pipefail
cd "$(dirname "$0")/../.."
features=(-p wasm-hypervisor --no-default-features --features rustcrypto)

mapfile -t c_builders < <(
    for tool in cc cmake; do
        cargo tree --locked "${features[@]}" -e normal,build -i "$tool" --depth 1 \
            --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | grep -vx "$tool" || true
    done | sort -u
)
echo "check-no-c-build: packages whose build calls a C compiler: ${c_builders[*]:-none}"
for package in "${c_builders[@]}"; do
    cargo clean -p "$package"
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
NO_C_LOG="$log" CC="$PWD/tools/checks/no-c-compiler" CXX="$PWD/tools/checks/no-c-compiler" \
    cargo check --locked "${features[@]}"
# cc-rs also runs the compiler to probe its family; refused, it assumes GCC.
echo "check-no-c-build: the check succeeded; C compiler calls:"
sed 's/^/  /' "$log"
if grep '^compiled ' "$log" | grep -qv '/src/runtime/vm/helpers\.c$'; then
    echo "check-no-c-build: C other than Wasmtime's helper was compiled" >&2
    exit 1
fi
