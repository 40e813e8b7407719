#!/usr/bin/env bash
# End-to-end check of deploy/compose.yaml with podman: nginx, three replicas,
# PostgreSQL and the witness, brought up as a user would, then driven through nginx only.
#
#   tools/checks/check-compose.sh [--rebuild] [LOAD_SECONDS]
#
# 1. Builds what is missing: the stand-ins for postgres:15-bookworm and
#    nginx:1.27-bookworm (deploy/standins/, from Debian's packages, for machines
#    without a registry) and the project's image wasm-hypervisor:latest (`podman
#    build` when it is missing or was built from another revision of this checkout,
#    or always with --rebuild), and the witness's image wasm-hypervisor-witness:latest
#    (deploy/witness/Containerfile) the same way. podman-compose (pinned below) goes
#    into a venv under target/.
# 2. A fresh signing key made with the image's `key new` (owner uid 10001, 0600) and a
#    random database password; `podman-compose up -d` under the project name
#    wh-check, with nginx on 127.0.0.1:$WH_PORT (default 18480).
# 3. Waits until every replica's health check passes and nginx answers /health.
# 4. Across replicas: /keys is the same on every replica; `run` executions through
#    nginx (a session opened on one replica and used on another); `verify` of each.
#    The witness pinned that key with no manual step, and its client.policy passes
#    `log monitor` through nginx once the executions are cosigned.
# 5. Under load (4 loops of `run` for LOAD_SECONDS, default 20, each receipt kept),
#    `podman kill` of replica-2 after a quarter of it: /health through nginx is
#    probed all along; afterwards every acknowledged execution is verified through
#    nginx, that is on any replica. Prints acknowledged / failed / lost.
# 6. `podman-compose down -v`, always.
#
# The client is $WH_CLIENT, else target/release/wasm-hypervisor or
# target/debug/wasm-hypervisor if built after every source file, else the image's
# binary (`podman run --network host`): never a build older than this checkout,
# whose `verify` might not retry a 429 after its Retry-After (all three replicas
# see one client here, nginx's address, and rate-limit it).
# Exits 0 when no acknowledged execution is lost and everything else held. No
# assertion depends on timing: a run refused under load (429, 503) is "failed",
# not lost, and a faster machine only makes more of both.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PODMAN_COMPOSE_VERSION=1.6.0
PROJECT=wh-check
export WH_PORT=${WH_PORT:-18480}
REBUILD=0
if [ "${1:-}" = --rebuild ]; then REBUILD=1; shift; fi
LOAD_SECONDS=${1:-20}
NGINX=http://127.0.0.1:$WH_PORT

say() { printf '== %s\n' "$*"; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/check-compose.XXXXXX")
VENV=$ROOT/target/compose-venv
COMPOSE=("$VENV/bin/podman-compose" -p "$PROJECT" -f deploy/compose.yaml)
cleanup() {
    local rc=$?
    if [ -x "$VENV/bin/podman-compose" ]; then
        say "podman-compose down -v"
        "${COMPOSE[@]}" down -v >"$WORK/down.log" 2>&1 || tail -5 "$WORK/down.log"
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

# ---- 1. what is missing --------------------------------------------------------
if ! "$VENV/bin/podman-compose" --version 2>/dev/null | grep -q "$PODMAN_COMPOSE_VERSION"; then
    say "podman-compose $PODMAN_COMPOSE_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION"
fi
build() {  # build TAG CONTEXT [OPTION...]: nice, never pulling, keeping HEALTHCHECK
    local started=$SECONDS tag=$1 context=$2
    shift 2
    nice -n 10 podman build --pull=never --format docker "$@" -t "$tag" "$context" >"$WORK/build.log" 2>&1 \
        || { tail -30 "$WORK/build.log"; exit 1; }
    say "built $tag in $((SECONDS - started)) s"
}
for standin in postgres:15-bookworm nginx:1.27-bookworm; do
    if ! podman image exists "docker.io/library/$standin"; then
        say "no $standin here: building the stand-in from Debian's packages"
        build "docker.io/library/$standin" "deploy/standins/${standin%%:*}"
    fi
done
IMAGE=localhost/wasm-hypervisor:latest
# This checkout's revision; a tree with changes is its own revision each time.
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- 2>/dev/null; then REVISION=$REVISION-dirty-$(date +%s); fi
built_from() { podman image inspect $IMAGE --format '{{index .Labels "wasm-hypervisor.revision"}}' 2>/dev/null; }
if [ $REBUILD = 1 ] || ! podman image exists $IMAGE || [ "$(built_from)" != "$REVISION" ]; then
    say "building $IMAGE from $REVISION (unchanged layers come from podman's cache)"
    build $IMAGE . --label "wasm-hypervisor.revision=$REVISION"
fi
say "image $IMAGE: $(podman image inspect $IMAGE --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
WITNESS_IMAGE=localhost/wasm-hypervisor-witness:latest
witness_built_from() { podman image inspect $WITNESS_IMAGE --format '{{index .Labels "wasm-hypervisor.revision"}}' 2>/dev/null; }
if [ $REBUILD = 1 ] || ! podman image exists $WITNESS_IMAGE || [ "$(witness_built_from)" != "$REVISION" ]; then
    say "building $WITNESS_IMAGE from $REVISION"
    build $WITNESS_IMAGE . -f deploy/witness/Containerfile --label "wasm-hypervisor.revision=$REVISION"
fi

current() {  # current BINARY: built, and after every source file it is made of
    [ -x "$1" ] && [ -z "$(find src crates Cargo.toml Cargo.lock -newer "$1" -print -quit)" ]
}
if [ -n "${WH_CLIENT:-}" ]; then
    CLIENT=("$WH_CLIENT")
elif current target/release/wasm-hypervisor; then
    CLIENT=(target/release/wasm-hypervisor)
elif current target/debug/wasm-hypervisor; then
    CLIENT=(target/debug/wasm-hypervisor)
else
    CLIENT=(podman run --rm -i --network host -v "$ROOT/examples:$ROOT/examples:ro"
            -v "$WORK:$WORK" -e XDG_CACHE_HOME="$WORK/cache" --user 0 $IMAGE)
fi
say "client: ${CLIENT[*]}"
export XDG_CACHE_HOME=$WORK/cache

# ---- 2. the key, the password, up ----------------------------------------------
mkdir -p "$WORK/secrets"
if ! podman run --rm --user 0 -v "$WORK/secrets:/secrets" --entrypoint sh $IMAGE -c \
    'wasm-hypervisor key new /secrets/signing_key.pem && chown 10001 /secrets/signing_key.pem' \
    >"$WORK/key_id" 2>"$WORK/key.log"; then
    # An image older than `key new`: the client's binary writes it (as root here).
    say "the image has no 'key new': the key is made with the client"
    rm -f "$WORK/secrets/signing_key.pem"
    "${CLIENT[@]}" key new "$WORK/secrets/signing_key.pem" >"$WORK/key_id" 2>"$WORK/key.log"
    chown 10001 "$WORK/secrets/signing_key.pem"
fi
KEY_ID=$(cat "$WORK/key_id")
say "signing key $KEY_ID ($(stat -c '%a, uid %u' "$WORK/secrets/signing_key.pem"))"
export WH_SIGNING_KEY_FILE=$WORK/secrets/signing_key.pem
WH_DB_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export WH_DB_PASSWORD
export WH_ORIGIN=check-compose.example/log
say "podman-compose up -d"
started=$SECONDS
# podman 4.3 may refuse to start nginx while a replica it depends on is being
# restarted ("depends on container ... not found in input list"): nginx is started
# again below, once the replicas are healthy.
"${COMPOSE[@]}" up -d >"$WORK/up.log" 2>&1 || say "podman-compose up -d: $(grep -m1 '^Error' "$WORK/up.log" || tail -1 "$WORK/up.log")"
container() { echo "${PROJECT}_$1_1"; }

# ---- 3. health -------------------------------------------------------------------
# podman-compose with podman < 4.6 ignores depends_on's service_healthy: the replicas
# start at once, exit while PostgreSQL is not yet up, and are restarted (counted below).
# podman runs no health checks on a schedule without systemd: run them here.
deadline=$((SECONDS + 180))
for replica in replica-1 replica-2 replica-3; do
    until podman healthcheck run "$(container $replica)" >/dev/null 2>&1; do
        if [ $SECONDS -gt $deadline ]; then
            say "$replica never became healthy"; podman logs --tail 20 "$(container $replica)"; exit 1
        fi
        sleep 1
    done
done
if [ "$(podman inspect "$(container nginx)" --format '{{.State.Running}}')" != true ]; then
    say "nginx is not running: podman start"
    podman start "$(container nginx)" >/dev/null
fi
until curl -sf "$NGINX/health" >/dev/null; do
    [ $SECONDS -gt $deadline ] && { say "nginx never answered /health"; exit 1; }
    sleep 0.5
done
say "all healthy $((SECONDS - started)) s after up (restarts while PostgreSQL started: \
$(for r in 1 2 3; do podman inspect "$(container replica-$r)" --format '{{.RestartCount}}'; done | awk '{s += $1} END {print s}'))"

# ---- 4. across replicas ------------------------------------------------------------
keys=$(for _ in 1 2 3 4 5 6; do curl -sf "$NGINX/keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])'; done | sort -u)
if [ "$keys" != "$KEY_ID" ]; then say "FAIL: /keys through nginx answered $keys, not $KEY_ID"; exit 1; fi
say "/keys: one key on every replica ($KEY_ID)"

run_one() {  # run_one RECEIPT: one execution through nginx, its receipt kept
    "${CLIENT[@]}" run --server "$NGINX" --key-id "$KEY_ID" --receipt "$1" \
        "$ROOT/examples/tiny.wasm" </dev/null >/dev/null 2>>"$WORK/run-errors.log"
}
verify_one() {  # verify_one RECEIPT: proven through nginx, i.e. by any replica
    "${CLIENT[@]}" verify --server "$NGINX" --key-id "$KEY_ID" "$1" >/dev/null 2>>"$WORK/verify-errors.log"
}
mkdir -p "$WORK/receipts/e2e" "$WORK/receipts/load"
ran=0
for i in $(seq 1 12); do
    if run_one "$WORK/receipts/e2e/$i.json"; then ran=$((ran + 1)); fi
done
verified=0
for receipt in "$WORK"/receipts/e2e/*.json; do
    if verify_one "$receipt"; then verified=$((verified + 1)); fi
done
say "end to end: $ran of 12 runs completed, $verified of $ran verified through nginx"
# The witness pinned the key clients see, wrote the clients' policy, and cosigns.
until podman exec "$(container witness)" test -s /policy/client.policy 2>/dev/null; do
    [ $SECONDS -gt $((deadline + 120)) ] && { say "FAIL: the witness never pinned the log's key"; exit 1; }
    sleep 1
done
podman exec "$(container witness)" cat /policy/client.policy >"$WORK/client.policy"
pinned=$(awk '$1 == "log" {print $2}' "$WORK/client.policy")
served=$(curl -sf "$NGINX/keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["note_verifier_key"])')
if [ "$pinned" != "$served" ]; then say "FAIL: the witness pinned $pinned, /keys says $served"; exit 1; fi
monitor_deadline=$((SECONDS + 120))
until "${CLIENT[@]}" log monitor "$NGINX" --policy "$WORK/client.policy" --state "$WORK/monitor" \
    >"$WORK/monitor.log" 2>&1; do
    [ $SECONDS -gt $monitor_deadline ] && { say "FAIL: log monitor: $(tail -1 "$WORK/monitor.log")"; exit 1; }
    sleep 1
done
say "witness: pinned the log's key; log monitor with its client.policy: $(tail -1 "$WORK/monitor.log")"
for replica in replica-1 replica-2 replica-3; do
    podman logs "$(container $replica)" 2>&1 | python3 -c '
import json, sys
sessions = executions = verifies = 0
for line in sys.stdin:
    try:
        event = json.loads(line)
    except ValueError:
        continue
    text = json.dumps(event)
    if "\"/sessions\"" in text and "\"POST\"" in text: sessions += 1
    if "execution_id" in text and "log_index" in text: executions += 1
    if "/verify/" in text: verifies += 1
print(f"   '"$replica"': sessions opened (POST /sessions) {sessions}, executions run {executions}, /verify answered {verifies}")'
done

# ---- 5. load, and a replica killed ---------------------------------------------------
say "load: 4 loops of run for $LOAD_SECONDS s; podman kill replica-2 after $((LOAD_SECONDS / 4)) s"
end=$((SECONDS + LOAD_SECONDS))
loop() {
    local n=0
    while [ $SECONDS -lt $end ]; do
        n=$((n + 1))
        local receipt=$WORK/receipts/load/$1-$n.json
        if run_one "$receipt"; then echo ok >>"$WORK/load-$1"; else echo failed >>"$WORK/load-$1"; rm -f "$receipt"; fi
    done
}
probe() {
    while [ $SECONDS -lt $end ]; do
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 5 "$NGINX/health" >>"$WORK/health-codes" || echo 000 >>"$WORK/health-codes"
        sleep 0.5
    done
}
pids=()
for l in 1 2 3 4; do loop $l & pids+=($!); done
probe & pids+=($!)
sleep $((LOAD_SECONDS / 4))
podman kill "$(container replica-2)" >/dev/null
say "killed replica-2"
wait "${pids[@]}"
acknowledged=$(cat "$WORK"/load-* | grep -c '^ok$' || true)
failed=$(cat "$WORK"/load-* | grep -c '^failed$' || true)
health_total=$(wc -l <"$WORK/health-codes")
health_ok=$(grep -c '^200$' "$WORK/health-codes" || true)
say "under load: $acknowledged acknowledged, $failed failed; /health through nginx: $health_ok of $health_total probes 200"
say "replica-2 after the kill: $(podman inspect "$(container replica-2)" --format '{{.State.Status}}, restarts {{.RestartCount}}')"
verified=0
lost=0
for receipt in "$WORK"/receipts/load/*.json; do
    [ -e "$receipt" ] || continue
    if verify_one "$receipt"; then verified=$((verified + 1)); else lost=$((lost + 1)); fi
done
say "acknowledged $acknowledged, failed $failed, verified $verified, lost $lost"
if [ -s "$WORK/run-errors.log" ]; then
    say "run errors (distinct):"; sort "$WORK/run-errors.log" | uniq -c | sort -rn | head -8
fi
if [ -s "$WORK/verify-errors.log" ]; then
    say "verify errors (distinct):"; sed 's/[0-9a-f]\{32,\}/<id>/g' "$WORK/verify-errors.log" | sort | uniq -c | sort -rn | head -8
fi
[ "$lost" = 0 ] && [ "$ran" = 12 ] && [ "$health_ok" -gt 0 ] && [ "$acknowledged" -gt 0 ]
