#!/usr/bin/env bash
# Server CPU per execution, module sent by bytes vs by reference (protocol v1.1 §D),
# for guests of 153 B, 64 KB and 20 MB (+ a 12 MB library mount), with loadgen
# against a release server. The numbers in BENCHMARKS.md ("Blobs by reference")
# come from this script. Needs `cargo build --release --bins` and
# tools/third-party/fetch-cpython.sh first.
#
#   tools/bench/bench-by-reference.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-10}
BIN=target/release
PORT=18300
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
WASM_HYPERVISOR_DATA_DIR=$WORK/data WASM_HYPERVISOR_LISTEN=127.0.0.1:$PORT \
WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND=0 WASM_HYPERVISOR_CLIENTS__MAX_CONCURRENT_EXECUTIONS=0 \
WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT=0 \
  $BIN/wasm-hypervisor serve > "$WORK/server.log" 2>&1 &
PID=$!
until curl -sf 127.0.0.1:$PORT/health >/dev/null; do sleep 0.2; done
CPY=(--module target/third-party/cpython/python3.11.wasm
     --dir target/third-party/cpython/lib::/usr/local/lib --env PYTHONHOME=/usr/local
     --arg -c --arg pass)
# Compile every guest once, so that no measured run includes a compilation.
export XDG_CACHE_HOME=$WORK/cache
$BIN/wasm-hypervisor run --server http://127.0.0.1:$PORT examples/hello.component.wasm >/dev/null
$BIN/wasm-hypervisor run --server http://127.0.0.1:$PORT examples/sleep.wasm 1 >/dev/null
$BIN/wasm-hypervisor run --server http://127.0.0.1:$PORT --env PYTHONHOME=/usr/local \
    --dir target/third-party/cpython/lib::/usr/local/lib \
    target/third-party/cpython/python3.11.wasm -c pass </dev/null
run() {
    echo "### loadgen $*"
    $BIN/loadgen --server http://127.0.0.1:$PORT --server-pid $PID \
        --duration "$SECONDS_EACH" --warmup 2 "$@" \
        | grep -E "executions:|latency:|server CPU|completed"
}
for clients in 1 8; do
    for mode in "" --by-reference; do
        run -c $clients $mode
        run -c $clients --module examples/hello.component.wasm $mode
        run -c $clients "${CPY[@]}" $mode
    done
done
# The same server work at the rate CPython runs at (a guest that sleeps 50 ms):
# at low rates every hand-off wakes a sleeping thread, which costs CPU of its own.
run -c 1 --module examples/sleep.wasm --arg 50 --by-reference
