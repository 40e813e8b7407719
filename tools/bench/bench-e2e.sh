#!/usr/bin/env bash
# End-to-end measurements for BENCHMARKS.md, in one run on this machine:
#   1. the P-256 floor from OpenSSL (`openssl speed ecdhp256 ecdsap256`);
#   2. a release server on a fresh data directory, driven by the load generator
#      with the tiny module at concurrency 1 and 32, reporting the server's CPU
#      time per execution (durable log, warm cache);
#   3. boolector.wasm (fetched by tools/third-party/fetch-boolector.sh) at concurrency 4;
#   4. `wasmtime run` as a process per request on the same tiny module, if a
#      wasmtime binary is on PATH or in $WASMTIME.
# Usage: tools/bench/bench-e2e.sh [seconds per load run, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-10}
PORT=${PORT:-18080}

cargo build --release --bins
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%FT%TZ)"

echo "== OpenSSL P-256 floor"
openssl speed -seconds 3 ecdhp256 ecdsap256 2>/dev/null | grep -E "nistp256"

data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
# One load generator on loopback is one client: per-client limits off for the run.
WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND=0 WASM_HYPERVISOR_CLIENTS__MAX_CONCURRENT_EXECUTIONS=0 \
WASM_HYPERVISOR_HTTP__MAX_CONNECTIONS_PER_ADDRESS=1000000 \
WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT=0 \
./target/release/wasm-hypervisor serve --listen "127.0.0.1:$PORT" --data-dir "$data" 2>"$data.log" &
server=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.1
done
loadgen() { ./target/release/loadgen --server "http://127.0.0.1:$PORT" --server-pid "$server" --duration "$SECONDS_PER_RUN" "$@"; }

echo "== tiny module, concurrency 1"
loadgen --concurrency 1
echo "== tiny module, concurrency 32"
loadgen --concurrency 32
if [ -f target/third-party/boolector.wasm ]; then
    echo "== boolector.wasm (1.26 MB), a bit-vector problem, concurrency 4"
    loadgen --concurrency 4 --module target/third-party/boolector.wasm \
        --stdin-file benches/fixtures/bv.smt2
fi
kill "$server"; wait "$server" || true
echo "server log: $(wc -l < "$data.log") lines"; rm -f "$data.log"

WASMTIME=${WASMTIME:-$(command -v wasmtime || true)}
if [ -n "$WASMTIME" ]; then
    echo "== $("$WASMTIME" --version) run, one process per request, 200 runs"
    python3 - "$WASMTIME" <<'PY'
import resource, subprocess, sys, time
wasmtime, runs = sys.argv[1], 200
subprocess.run([wasmtime, "run", "examples/tiny.wasm"], check=True, capture_output=True)
before = resource.getrusage(resource.RUSAGE_CHILDREN)
started = time.perf_counter()
for _ in range(runs):
    subprocess.run([wasmtime, "run", "examples/tiny.wasm"], check=True, capture_output=True)
wall = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(f"CPU per run: {cpu / runs * 1e6:.0f} µs; wall per run: {wall / runs * 1e6:.0f} µs")
PY
fi
