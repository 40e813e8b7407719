#!/usr/bin/env bash
# API fuzzing: schemathesis (from PyPI) against GET /openapi.json and a running
# server. Builds the server (debug; PROFILE=release for a release build), starts it
# on a free loopback port with a temporary data directory, runs schemathesis with
# every check that applies, stops the server and exits with schemathesis's code.
#
#   tools/checks/schemathesis.sh                  # default budget: --max-examples 50
#   tools/checks/schemathesis.sh --max-time 300   # extra arguments go to `schemathesis run`
#
# Per-client rate limits and session shares are off for the run (every request comes from one
# address, and a run of 429s would test nothing else); the 429 answers have tests
# of their own. Excluded checks, because they assume what this API is not:
# - positive_data_acceptance: a body valid by the schema is still refused when it
#   names no live session or its ciphertext does not open (400/404 by design).
# - use_after_free, ensure_resource_availability: no operation deletes or creates
#   a resource that another operation then reads by id.
# One worker: with two, schemathesis 4.32.5 on Python 3.11 sometimes fails inside
# Hypothesis ("AST constructor recursion depth mismatch"), an error of the tool's.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=.venv
SCHEMATHESIS_VERSION=4.32.5
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

PROFILE=${PROFILE:-debug}
if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
BIN=target/$PROFILE/wasm-hypervisor

DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND=0 WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT=0 RUST_LOG=warn \
    "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA/data" 2> "$DATA/server.log" &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/health" > /dev/null && break
    sleep 0.1
done

status=0
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
    --url "http://127.0.0.1:$PORT" \
    --checks all \
    --exclude-checks positive_data_acceptance,use_after_free,ensure_resource_availability \
    --workers 1 \
    --max-examples 50 \
    "$@" || status=$?
if grep -qi "panicked" "$DATA/server.log"; then
    echo "the server panicked:" >&2
    grep -i -A5 "panicked" "$DATA/server.log" >&2
    status=1
fi
exit "$status"
