#!/usr/bin/env bash
# The measurements behind issue 15's goals (BENCHMARKS.md, "One round trip and the
# floor"), in one run on this machine:
#   1. the OpenSSL floor of one v1.1 execution: one key generation + one ECDH + one
#      leaf signature (`openssl speed ecdhp256 ecdsap256`; a key generation counted
#      as one signature, both one fixed-base scalar multiplication), and the per-byte
#      floor: AES-256-GCM + SHA-256 of 16 KiB blocks (`openssl speed -evp`);
#   2. a release server (per-client limits off), with loadgen:
#      - a cached 64 KB module by reference, v1.1 (batches of 32, binary body, CBOR)
#        against v1 JSON, at 1 and 32 clients;
#      - tiny.wasm with stdin of 0, 1 MiB and 16 MiB, v1.1, by reference;
#      - tiny.wasm at 32 clients (p99), inline and by reference (issue 30);
#   3. through tools/bench/delay-proxy.py adding 20 ms each way: v1 (a session per
#      execution: two round trips) against v1.1 with a session pool (one).
# Needs `cargo build --release --bins`.   Usage: tools/bench/bench-speed.sh [seconds per run]
# ISSUE30_ONLY=1 runs the floor and issue 30's three goal rows only. BIN=DIR takes the
# server and loadgen from DIR instead of target/release (e.g. a copy of an earlier build).
# With ISSUE30_ONLY=1, BEFORE=DIR also starts DIR/wasm-hypervisor beside it and runs each
# goal row ROUNDS times (default 2) against each server in turn ("before", then
# "after"), so that the ratio between two builds comes from one run; the loadgen is
# always $BIN's.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-10}
PORT=${PORT:-18310}
PROXY_PORT=$((PORT + 1))
BIN=${BIN:-target/release}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%FT%TZ)"
echo "== OpenSSL P-256 floor ($(openssl version))"
openssl speed -seconds 3 ecdhp256 ecdsap256 2>/dev/null | grep -E "nistp256"
echo "== OpenSSL per-byte floor, 16 KiB blocks"
openssl speed -seconds 3 -bytes 16384 -evp aes-256-gcm 2>/dev/null | grep -E "^aes-256-gcm|^AES-256-GCM"
openssl speed -seconds 3 -bytes 16384 -evp sha256 2>/dev/null | grep -E "^sha256|^SHA256"

work=$(mktemp -d)
trap 'kill $server $proxy $before_server 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
# RUST_BACKTRACE makes every dropped component store walk the stack (BENCHMARKS.md).
env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND=0 WASM_HYPERVISOR_CLIENTS__MAX_CONCURRENT_EXECUTIONS=0 \
WASM_HYPERVISOR_HTTP__MAX_CONNECTIONS_PER_ADDRESS=1000000 \
WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT=0 \
    $BIN/wasm-hypervisor serve --listen "127.0.0.1:$PORT" --data-dir "$work/data" 2>"$work/server.log" &
server=$!
before_server=
if [ -n "${BEFORE:-}" ]; then
    env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
    WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND=0 WASM_HYPERVISOR_CLIENTS__MAX_CONCURRENT_EXECUTIONS=0 \
    WASM_HYPERVISOR_HTTP__MAX_CONNECTIONS_PER_ADDRESS=1000000 \
    WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT=0 \
        "$BEFORE/wasm-hypervisor" serve --listen "127.0.0.1:$((PORT + 2))" --data-dir "$work/before" \
        2>"$work/before.log" &
    before_server=$!
    until curl -sf "127.0.0.1:$((PORT + 2))/health" >/dev/null; do sleep 0.1; done
fi
python3 tools/bench/delay-proxy.py --listen "127.0.0.1:$PROXY_PORT" --to "127.0.0.1:$PORT" --delay-ms 20 \
    >"$work/proxy.log" 2>&1 &
proxy=$!
until curl -sf "127.0.0.1:$PORT/health" >/dev/null; do sleep 0.1; done
loadgen() {
    echo "### loadgen $*"
    $BIN/loadgen --server-pid "$server" --duration "$SECONDS_EACH" --warmup 2 "$@" \
        | grep -E "executions:|latency:|server CPU|completed"
}
# One goal row against the server before, then the one after, ROUNDS times.
alternate() {
    for round in $(seq "${ROUNDS:-2}"); do
        echo "### before, round $round, load $(cut -d' ' -f1 /proc/loadavg): loadgen $*"
        $BIN/loadgen --server "http://127.0.0.1:$((PORT + 2))" --server-pid "$before_server" \
            --duration "$SECONDS_EACH" --warmup 2 "$@" | grep -E "executions:|latency:|server CPU"
        echo "### after, round $round, load $(cut -d' ' -f1 /proc/loadavg): loadgen $*"
        $BIN/loadgen "${direct[@]}" --server-pid "$server" \
            --duration "$SECONDS_EACH" --warmup 2 "$@" | grep -E "executions:|latency:|server CPU"
    done
}
direct=(--server "http://127.0.0.1:$PORT")
HELLO=(--module examples/hello.component.wasm --by-reference)

if [ -n "${ISSUE30_ONLY:-}" ]; then
    # Issue 30's goal rows only (BENCHMARKS.md, "Near the floor"): the component by
    # reference at 1 and 32 clients, tiny by reference at 32, against the floor above.
    if [ -n "$before_server" ]; then
        alternate -c 1 "${HELLO[@]}" --wire v1.1
        alternate -c 32 "${HELLO[@]}" --wire v1.1
        alternate -c 32 --by-reference --wire v1.1
        exit 0
    fi
    loadgen "${direct[@]}" -c 1 "${HELLO[@]}" --wire v1.1
    loadgen "${direct[@]}" -c 32 "${HELLO[@]}" --wire v1.1
    loadgen "${direct[@]}" -c 32 --by-reference --wire v1.1
    exit 0
fi
for clients in 1 32; do
    loadgen "${direct[@]}" -c $clients "${HELLO[@]}" --wire v1.1
    loadgen "${direct[@]}" -c $clients "${HELLO[@]}" --wire v1
done
for bytes in 0 1048576 16777216; do
    loadgen "${direct[@]}" -c 1 --by-reference --wire v1.1 --stdin-bytes $bytes
done
loadgen "${direct[@]}" -c 32 --wire v1.1
loadgen "${direct[@]}" -c 32 --wire v1
# Issue 30's 32-client row for tiny: by reference, as the component's above.
loadgen "${direct[@]}" -c 32 --by-reference --wire v1.1
echo "== through a proxy adding 20 ms each way"
loadgen --server "http://127.0.0.1:$PROXY_PORT" -c 1 --by-reference --wire v1
loadgen --server "http://127.0.0.1:$PROXY_PORT" -c 1 --by-reference --wire v1.1
