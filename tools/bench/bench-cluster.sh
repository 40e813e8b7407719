#!/usr/bin/env bash
# Cluster mode against file mode on this machine, with loadgen (BENCHMARKS.md,
# "Cluster mode"): file mode (one server, no database), then cluster mode with 1, 2
# and 3 replica processes sharing a private PostgreSQL, for the built-in tiny module
# and examples/hello.component.wasm by reference, protocol v1.1. Prints throughput,
# latency p50/p99 and CPU per execution: the replicas', PostgreSQL's (postmaster and
# backends) and their sum.
#
#   tools/bench/bench-cluster.sh [SECONDS] [CLIENTS]     # defaults 10 s, 32 clients
#
# Environment:
#   REPLICAS="1 2 3"  the cluster sizes measured (default all three);
#   BEFORE=DIR        also measure DIR/wasm-hypervisor (e.g. main's release binary
#                     copied aside), interleaved with $BIN's, each mode and size
#                     the before binary first (one loadgen, $BIN's, for both);
#   PROFILE=1         PostgreSQL with pg_stat_statements: after each cluster run,
#                     per logged execution, the statements (calls and rows of
#                     each), the transactions, the WAL records and flushes
#                     (pg_stat_wal), from the statistics reset before the run;
#   PERF=1            each cluster run sampled with `perf record -a` over its
#                     measured seconds: the samples by process and object, and
#                     PostgreSQL's top symbols.
#
# Needs `cargo build --release --bins` first (BIN=target/debug to try the script
# itself) and Debian's postgresql (apt-get install postgresql). PostgreSQL runs
# from a temporary directory on a unix socket only, as tests/api/postgres.rs runs
# it (as the user postgres when root), with its default durability (fsync on), as
# the file log syncs its appends. The loadgen clients are spread over the replicas
# (client i pinned to replica i mod n); this machine runs the replicas, PostgreSQL
# and loadgen on the same cores, so CPU per execution is the figure to compare.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-10}
CLIENTS=${2:-32}
BIN=${BIN:-target/release}
BASE_PORT=${BASE_PORT:-18320}
for program in wasm-hypervisor loadgen; do
    [ -x "$BIN/$program" ] || { echo "no $BIN/$program: cargo build --release --bins" >&2; exit 1; }
done
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PG_BIN/initdb" ] || { echo "no PostgreSQL server programs: apt-get install postgresql" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-cluster.XXXXXX")
chmod 0755 "$WORK"
PIDS=()
stop_replicas() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGDIR=$WORK/pg
cleanup() {
    stop_replicas
    if [ -f "$PGDIR/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" stop -m fast -w -D "$PGDIR/data" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- PostgreSQL -----------------------------------------------------------------
mkdir -p "$PGDIR"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
as_pg "$PG_BIN/initdb" -U postgres --auth=trust -E UTF8 -D "$PGDIR/data" >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log"; exit 1; }
PG_OPTIONS="-k $PGDIR -c listen_addresses='' -c max_connections=200"
[ -z "${PROFILE:-}" ] || PG_OPTIONS+=" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
as_pg "$PG_BIN/pg_ctl" start -w -D "$PGDIR/data" -l "$PGDIR/postgres.log" -o "$PG_OPTIONS" >/dev/null
PG_PID=$(head -1 "$PGDIR/data/postmaster.pid")
psql() { as_pg "$PG_BIN/psql" -X -q -h "$PGDIR" -U postgres -d "${2:-postgres}" -v ON_ERROR_STOP=1 -c "$1"; }
[ -z "${PROFILE:-}" ] || psql "CREATE EXTENSION pg_stat_statements" >/dev/null
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') (pid $PG_PID), fsync on"

# One key for every replica of every run; a fresh database per cluster run.
"$BIN/wasm-hypervisor" key new "$WORK/signing_key.pem" >/dev/null 2>&1
export XDG_CACHE_HOME=$WORK/cache

# start_replicas N DATABASE [SERVER_BIN]: N servers on BASE_PORT.., in file mode
# when DATABASE is empty; fills PIDS and SERVERS.
start_replicas() {
    local n=$1 database=$2 server_bin=${3:-$BIN} i
    SERVERS=()
    for i in $(seq 1 "$n"); do
        local port=$((BASE_PORT + i)) data=$WORK/data-$database-$i
        mkdir -p "$data"
        env WASM_HYPERVISOR_DATA_DIR="$data" WASM_HYPERVISOR_LISTEN=127.0.0.1:$port \
            WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND=0 \
            WASM_HYPERVISOR_CLIENTS__MAX_CONCURRENT_EXECUTIONS=0 \
            WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT=0 \
            WASM_HYPERVISOR_SIGNING_KEY_FILE="$WORK/signing_key.pem" \
            WASM_HYPERVISOR_CLUSTER__DATABASE_URL="${database:+postgresql://postgres@/$database?host=$PGDIR&port=5432}" \
            "$server_bin/wasm-hypervisor" serve >"$WORK/server-$database-$i.log" 2>&1 &
        PIDS+=($!)
        SERVERS+=("http://127.0.0.1:$port")
    done
    for server in "${SERVERS[@]}"; do
        local deadline=$((SECONDS + 60))
        until curl -sf "$server/health" >/dev/null; do
            if [ $SECONDS -gt $deadline ]; then
                echo "$server did not start:" >&2; tail -5 "$WORK"/server-"$database"-*.log >&2; exit 1
            fi
            sleep 0.2
        done
        # Compile the guests once, so that no measured run includes a compilation.
        "$BIN/wasm-hypervisor" run --server "$server" examples/hello.component.wasm </dev/null >/dev/null 2>&1
    done
}

# profile_start DATABASE / profile_end DATABASE: with PROFILE, what PostgreSQL did
# per logged execution in between (module comment).
profile_start() {
    [ -n "${PROFILE:-}" ] || return 0
    psql "SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal'), pg_stat_reset()" "$1" >/dev/null
    LEAVES_BEFORE=$(psql_value "SELECT size FROM log_head" "$1")
}
psql_value() { as_pg "$PG_BIN/psql" -X -q -A -t -h "$PGDIR" -U postgres -d "$2" -c "$1"; }
profile_end() {
    [ -n "${PROFILE:-}" ] || return 0
    local leaves
    leaves=$(( $(psql_value "SELECT size FROM log_head" "$1") - LEAVES_BEFORE ))
    [ "$leaves" -gt 0 ] || { echo "  (no execution logged)"; return 0; }
    echo "  PostgreSQL per logged execution ($leaves logged):"
    # Wait for the statistics of the backends' last transactions.
    sleep 2
    psql "SELECT to_char(sum(calls)::numeric / $leaves, '990.99') AS statements,
                 to_char(sum(total_exec_time)::numeric * 1000 / $leaves, '99990.9') AS exec_us
          FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$1')" "$1"
    psql "SELECT to_char(calls::numeric / $leaves, '990.999') AS per_execution,
                 to_char(rows::numeric / greatest(calls, 1), '99990.9') AS rows_per_call,
                 to_char(total_exec_time * 1000 / greatest(calls, 1), '99990.9') AS us_per_call,
                 left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement
          FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$1')
          AND calls::numeric / $leaves >= 0.001 ORDER BY calls DESC" "$1"
    psql "SELECT to_char((xact_commit + xact_rollback)::numeric / $leaves, '990.99') AS transactions,
                 to_char(wal_records::numeric / $leaves, '990.99') AS wal_records,
                 to_char(wal_bytes::numeric / $leaves, '99990') AS wal_bytes,
                 to_char(wal_write::numeric / $leaves, '990.999') AS wal_writes,
                 to_char(wal_sync::numeric / $leaves, '990.999') AS wal_flushes
          FROM pg_stat_wal, pg_stat_database WHERE datname = '$1'" "$1"
}

measure() {  # measure LABEL DATABASE EXTRA_PID...: loadgen over SERVERS, both guests
    local label=$1 database=$2 args=() server pid
    shift 2
    for server in "${SERVERS[@]}"; do args+=(--server "$server"); done
    for pid in "${PIDS[@]}"; do args+=(--server-pid "$pid"); done
    for pid in "$@"; do args+=(--extra-pid "$pid"); done
    for guest in tiny hello.component; do
        local module=()
        [ $guest = tiny ] || module=(--module examples/hello.component.wasm)
        echo "### $label, $guest, $CLIENTS clients, by reference, v1.1 (load average $(cut -d' ' -f1 /proc/loadavg))"
        [ -z "$database" ] || profile_start "$database"
        local perf=""
        if [ -n "${PERF:-}" ] && [ -n "$database" ]; then
            # Sampled over the measured seconds only (after the warm-up).
            (sleep 2; exec perf record -q -a -F 999 -o "$WORK/perf.data" -- sleep "$SECONDS_EACH") \
                >/dev/null 2>&1 &
            perf=$!
        fi
        "$BIN/loadgen" "${args[@]}" -c "$CLIENTS" --duration "$SECONDS_EACH" --warmup 2 \
            --by-reference "${module[@]}" \
            | grep -E "executions:|latency:|server CPU:.*all threads|extra CPU|total CPU|http|client error" || true
        [ -z "$database" ] || profile_end "$database"
        if [ -n "$perf" ]; then
            wait "$perf" || true
            echo "  perf: samples by process and object (the whole machine, every process)"
            perf report -q -i "$WORK/perf.data" --no-children --sort comm,dso --percent-limit 1.5 2>/dev/null \
                | sed 's/^/  /' | head -25
            echo "  perf: PostgreSQL's top symbols (% of its samples)"
            perf report -q -i "$WORK/perf.data" --no-children --comm postgres --sort dso,sym \
                --percentage relative --percent-limit 1 2>/dev/null | sed 's/^/  /' | head -30
            echo "  perf: the replicas' top symbols (% of their samples)"
            perf report -q -i "$WORK/perf.data" --no-children --pid "$(IFS=,; echo "${PIDS[*]}")" \
                --sort dso,sym --percentage relative --percent-limit 1 2>/dev/null \
                | sed 's/^/  /' | head -30
        fi
    done
}

# The binaries measured: BEFORE's first (if given), then $BIN's.
VERSIONS=()
[ -z "${BEFORE:-}" ] || VERSIONS+=("before:$BEFORE")
VERSIONS+=("$( [ -n "${BEFORE:-}" ] && echo after || echo this):$BIN")
for version in "${VERSIONS[@]}"; do
    start_replicas 1 "" "${version#*:}"
    measure "file mode, 1 server (${version%%:*})" ""
    stop_replicas
done
for n in ${REPLICAS:-1 2 3}; do
    for version in "${VERSIONS[@]}"; do
        database=bench_${n}_${version%%:*}
        psql "CREATE DATABASE $database" >/dev/null
        [ -z "${PROFILE:-}" ] || psql "CREATE EXTENSION pg_stat_statements" "$database" >/dev/null
        start_replicas "$n" "$database" "${version#*:}"
        measure "cluster mode, $n replica(s) (${version%%:*})" "$database" "$PG_PID"
        stop_replicas
    done
done
