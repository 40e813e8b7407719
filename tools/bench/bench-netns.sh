#!/usr/bin/env bash
# Cluster mode across hosts on one machine (BENCHMARKS.md, "Cluster mode across
# network namespaces"): PostgreSQL, 1, 2 and 3 replicas and the load generator each
# in a network namespace of its own, joined by veth pairs to a bridge that lives in a
# namespace of its own too (nothing is added to the root namespace), so that every
# byte between loadgen, the replicas and PostgreSQL crosses a real TCP/IP link.
# Prints, per replica count: throughput, latency p50/p99, the replicas' and
# PostgreSQL's CPU per execution, and what PostgreSQL did per execution
# (transactions, packets on its link, the statements from pg_stat_statements with
# calls and mean time per execution), and how busy the machine's cores were; then
# all of it again as one Markdown table (BENCHMARKS.md's).
#
#   tools/bench/bench-netns.sh [SECONDS] [CLIENTS]     # defaults 10 s, "1 32" clients
#
# CLIENTS is a list: each count is measured in turn with the same replicas.
#
# Environment:
#   BIN=target/release     the wasm-hypervisor and loadgen to measure (any build)
#   DELAY_MS=1             one-way delay added on each link
#   DELAYS="none <mode>"   the passes, each with 1, 2, 3 replicas: `none` (veth only),
#                          `netem` (`tc qdisc … netem delay DELAY_MS` on the egress of
#                          every host's link: DELAY_MS each way, 2×DELAY_MS round trip
#                          between any two hosts) or `proxy` (no netem in the kernel:
#                          tools/bench/delay-proxy.py in PostgreSQL's namespace delays
#                          each direction between the replicas and PostgreSQL by
#                          DELAY_MS; loadgen↔replica links are not delayed). The
#                          default's <mode> is netem where the kernel has it, else proxy.
#   REPLICAS="1 2 3"       the replica counts
#   FILE_MODE=yes          measure file mode first (one server, no database)
#   GUESTS=tiny            tiny and/or hello.component (examples/hello.component.wasm)
#   SUBNET=10.203.0        the /24 of the namespaces' links (never routed anywhere:
#                          the bridge's namespace has no other link)
#   PG_OPTIONS=            more `postgres` options, e.g. "-c log_min_duration_statement=0
#                          -c log_line_prefix='%m [%p] '" to see each execution's statements
#   LOGS=DIR               keep PostgreSQL's and the replicas' logs in DIR
#
# Needs root (ip netns), iproute2, Debian's postgresql (pg_stat_statements ships in
# it) and a build of the two binaries (`cargo build --release --bins`). PostgreSQL
# runs from a temporary directory as the user postgres with fsync on, as in
# bench-cluster.sh, listening on TCP in its namespace; the loadgen clients are spread
# over the replicas (client i pinned to replica i mod n). Everything runs on the same
# cores, so CPU per execution is the figure to compare; every namespace, process and
# file it made is removed on exit, failure or interrupt included.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-10}
CLIENTS=${2:-1 32}
BIN=${BIN:-target/release}
DELAY_MS=${DELAY_MS:-1}
REPLICAS=${REPLICAS:-1 2 3}
GUESTS=${GUESTS:-tiny}
SUBNET=${SUBNET:-10.203.0}
PORT=8080
[ "$(id -u)" = 0 ] || { echo "needs root (ip netns)" >&2; exit 1; }
for program in wasm-hypervisor loadgen; do
    [ -x "$BIN/$program" ] || { echo "no $BIN/$program: cargo build --release --bins" >&2; exit 1; }
done
BIN=$(cd "$BIN" && pwd)
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PG_BIN/initdb" ] || { echo "no PostgreSQL server programs: apt-get install postgresql" >&2; exit 1; }
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
    echo "no iproute2: apt-get install iproute2" >&2; exit 1
fi

# Namespace names carry this shell's pid, so that two runs never share one.
NS=whb$$
HOSTS=(pg lg r1 r2 r3)
declare -A ADDR=([pg]=$SUBNET.2 [lg]=$SUBNET.100 [r1]=$SUBNET.11 [r2]=$SUBNET.12 [r3]=$SUBNET.13)
in_ns() { local host=$1; shift; ip netns exec "$NS-$host" "$@"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-netns.XXXXXX")
chmod 0755 "$WORK"
PGDIR=$WORK/pg
PIDS=()
PROXY_PID=
stop_replicas() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
stop_proxy() {
    if [ -n "$PROXY_PID" ]; then
        kill "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
        PROXY_PID=
    fi
}
cleanup() {
    stop_replicas
    stop_proxy
    if [ -f "$PGDIR/data/postmaster.pid" ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" stop -m fast -w -D "$PGDIR/data" >/dev/null 2>&1 || true
    fi
    local ns pid
    for ns in "${HOSTS[@]}" br; do
        [ -e "/run/netns/$NS-$ns" ] || continue
        # Whatever still runs in one of our namespaces was started by this script.
        for pid in $(ip netns pids "$NS-$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$NS-$ns" 2>/dev/null || true
    done
    if [ -n "${LOGS:-}" ]; then
        mkdir -p "$LOGS" && cp "$WORK"/*.log "$PGDIR/postgres.log" "$LOGS"/ 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the network: one bridge, one veth pair per host ------------------------------
ip netns add "$NS-br"
ip -n "$NS-br" link add br0 type bridge
ip -n "$NS-br" link set br0 up
for host in "${HOSTS[@]}"; do
    ip netns add "$NS-$host"
    ip link add eth0 netns "$NS-$host" type veth peer name "$host" netns "$NS-br"
    ip -n "$NS-br" link set "$host" master br0 up
    ip -n "$NS-$host" addr add "${ADDR[$host]}/24" dev eth0
    ip -n "$NS-$host" link set lo up
    ip -n "$NS-$host" link set eth0 up
done
NETEM=no
if in_ns pg tc qdisc add dev eth0 root netem delay "${DELAY_MS}ms" 2>/dev/null; then
    in_ns pg tc qdisc del dev eth0 root
    NETEM=yes
fi
if [ -z "${DELAYS:-}" ]; then
    if [ $NETEM = yes ]; then DELAYS="none netem"; else DELAYS="none proxy"; fi
fi
echo "network: namespaces $NS-{$(IFS=,; echo "${HOSTS[*]}"),br}, $SUBNET.0/24 over a bridge;" \
    "netem in this kernel: $NETEM; passes: $DELAYS (DELAY_MS=$DELAY_MS)"
case " $DELAYS " in *" netem "*) [ $NETEM = yes ] || {
    echo "no netem qdisc in this kernel (sch_netem): use DELAYS='none proxy'" >&2; exit 1; } ;; esac
# set_delay MODE: netem on (or off) the egress of every host's link.
set_delay() {
    local host
    for host in "${HOSTS[@]}"; do
        in_ns "$host" tc qdisc del dev eth0 root 2>/dev/null || true
        [ "$1" = netem ] && in_ns "$host" tc qdisc add dev eth0 root netem delay "${DELAY_MS}ms"
    done
    return 0
}
pg_rtt() {  # median of 50 `SELECT 1` from r1's namespace to PostgreSQL on PORT, in ms
    local args=(-c '\timing on') i
    for i in $(seq 50); do args+=(-c 'SELECT 1'); done
    in_ns r1 runuser -u postgres -- "$PG_BIN/psql" -X -q -A -t -h "${ADDR[pg]}" -p "$1" -U postgres \
        -d postgres "${args[@]}" | awk '/^Time:/ {print $2}' | sort -g | awk '{t[NR] = $1}
        END {printf "%.2f", t[int((NR + 1) / 2)]}'
}

# ---- PostgreSQL, on TCP in its namespace ------------------------------------------
mkdir -p "$PGDIR"
chown postgres:postgres "$PGDIR"
runuser -u postgres -- "$PG_BIN/initdb" -U postgres --auth=trust -E UTF8 -D "$PGDIR/data" \
    >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log"; exit 1; }
echo "host all all $SUBNET.0/24 trust" >>"$PGDIR/data/pg_hba.conf"
in_ns pg runuser -u postgres -- "$PG_BIN/pg_ctl" start -w -D "$PGDIR/data" -l "$PGDIR/postgres.log" \
    -o "-k $PGDIR -c listen_addresses='${ADDR[pg]},127.0.0.1' -c max_connections=200 \
        -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all ${PG_OPTIONS:-}" >/dev/null
PG_PID=$(head -1 "$PGDIR/data/postmaster.pid")
# psql over the unix socket (a file: reachable from any namespace).
psql() { runuser -u postgres -- "$PG_BIN/psql" -X -q -A -t -h "$PGDIR" -U postgres -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE EXTENSION pg_stat_statements" >/dev/null
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') (pid $PG_PID) on ${ADDR[pg]}:5432, fsync on"

# One key for every replica of every run; a fresh database per cluster run.
"$BIN/wasm-hypervisor" key new "$WORK/signing_key.pem" >/dev/null 2>&1
export XDG_CACHE_HOME=$WORK/cache

# start_replicas N DATABASE PG_PORT: replicas r1..rN, each in its namespace (file
# mode, no database, when DATABASE is empty).
start_replicas() {
    local n=$1 database=$2 pg_port=$3 i
    SERVERS=()
    for i in $(seq 1 "$n"); do
        local data=$WORK/data-$database-$i
        mkdir -p "$data"
        # `ip netns exec` execs the command: $! is the server's own pid (not so
        # through a shell function, which would run in a subshell).
        ip netns exec "$NS-r$i" env WASM_HYPERVISOR_DATA_DIR="$data" \
            WASM_HYPERVISOR_LISTEN="${ADDR[r$i]}:$PORT" \
            WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND=0 \
            WASM_HYPERVISOR_CLIENTS__MAX_CONCURRENT_EXECUTIONS=0 \
            WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT=0 \
            WASM_HYPERVISOR_SIGNING_KEY_FILE="$WORK/signing_key.pem" \
            WASM_HYPERVISOR_CLUSTER__DATABASE_URL="${database:+postgresql://postgres@${ADDR[pg]}:$pg_port/$database}" \
            "$BIN/wasm-hypervisor" serve >"$WORK/server-$database-$i.log" 2>&1 &
        PIDS+=($!)
        SERVERS+=("http://${ADDR[r$i]}:$PORT")
    done
    for server in "${SERVERS[@]}"; do
        local deadline=$((SECONDS + 60))
        until in_ns lg curl -sf "$server/health" >/dev/null; do
            if [ $SECONDS -gt $deadline ]; then
                echo "$server did not start:" >&2; tail -5 "$WORK"/server-"$database"-*.log >&2; exit 1
            fi
            sleep 0.2
        done
        # Compile the guests once, so that no measured run includes a compilation.
        in_ns lg "$BIN/wasm-hypervisor" run --server "$server" examples/hello.component.wasm \
            </dev/null >/dev/null 2>&1
    done
}

cpu_jiffies() {  # busy and total jiffies of the whole machine
    awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat
}
proc_ticks() {  # utime+stime of one process, 0 when none
    [ -n "$1" ] && awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
pg_packets() {  # packets PostgreSQL's link received and sent
    in_ns pg cat /sys/class/net/eth0/statistics/rx_packets /sys/class/net/eth0/statistics/tx_packets \
        | paste -sd' '
}
db_counters() {  # the log's size and the database's commits
    psql -d "$1" -F' ' -c "SELECT (SELECT size FROM log_head), xact_commit FROM pg_stat_database \
        WHERE datname = current_database()"
}

# One row of the closing table: DELAY REPLICAS CLIENTS GUEST, the loadgen report in
# $WORK/loadgen.out, then "TRANSACTIONS PACKETS GROUP LOCK PROXY" per execution ("-"
# where not measured).
SUMMARY=$WORK/summary.md
summary_row() {
    awk -v head="$1 | $2 | $3 | $4" -v rest="$5" '
        function commas(v,   s) { s = sprintf("%d", v + 0.5)
            while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); return s }
        function us(v) { return v == "" ? "—" : commas(v) " µs" }
        /^executions:/ { sub(/^\(/, "", $3); rate = $3 + 0 }
        /^latency:/ { p50 = $3 / 1000; p99 = $9 / 1000 }
        /^server CPU:.*all threads/ { server = $3 }
        /^extra CPU:/ { extra = $3 }
        /^total CPU:/ { total = $3 }
        END {
            split(rest, r, " ")
            printf "| %s | **%s** | %.1f ms | %.1f ms | %s | %s | **%s** |", head, commas(rate), p50, p99,
                us(server), us(extra), us(total == "" ? server : total)
            printf " %s | %s | %s | %s | %s |\n", r[1], r[2], r[3], (r[4] == "-" ? "—" : r[4] " ms"),
                (r[5] == "-" ? "—" : us(r[5]))
        }' "$WORK/loadgen.out" | sed 's/| - |/| — |/g; s/| - |/| — |/g' >>"$SUMMARY"
}

measure() {  # measure DELAY REPLICAS [DATABASE]: loadgen over SERVERS, then what it cost PostgreSQL
    local delay=$1 n=$2 database=${3:-} args=() server pid guest label
    if [ -z "$database" ]; then
        label="file mode, 1 server in its namespace"
    else
        label="cluster mode across namespaces, delay $delay, $n replica(s)"
    fi
    for server in "${SERVERS[@]}"; do args+=(--server "$server"); done
    for pid in "${PIDS[@]}"; do args+=(--server-pid "$pid"); done
    [ -z "$database" ] || args+=(--extra-pid "$PG_PID")
    for clients in $CLIENTS; do for guest in $GUESTS; do
        local module=()
        [ "$guest" = tiny ] || module=(--module "examples/$guest.wasm")
        if [ -z "$database" ]; then
            echo "### $label, $guest, $clients client(s), by reference, v1.1"
            in_ns lg "$BIN/loadgen" "${args[@]}" -c "$clients" --duration "$SECONDS_EACH" --warmup 2 \
                --by-reference "${module[@]}" >"$WORK/loadgen.out" 2>&1 || { cat "$WORK/loadgen.out"; exit 1; }
            grep -E "executions:|latency:|server CPU:.*all threads" "$WORK/loadgen.out" || true
            summary_row "file mode" 1 "$clients" "$guest" "- - - - -"
            continue
        fi
        psql -d "$database" -c "SELECT pg_stat_statements_reset()" >/dev/null
        psql -d "$database" -c "SELECT pg_stat_reset()" >/dev/null
        read -r size0 commits0 < <(db_counters "$database")
        read -r rx0 tx0 < <(pg_packets)
        read -r busy0 total0 < <(cpu_jiffies)
        local proxy0; proxy0=$(proc_ticks "$PROXY_PID")
        echo "### $label, $guest, $clients client(s), by reference, v1.1"
        in_ns lg "$BIN/loadgen" "${args[@]}" -c "$clients" --duration "$SECONDS_EACH" --warmup 2 \
            --by-reference "${module[@]}" >"$WORK/loadgen.out" 2>&1 || { cat "$WORK/loadgen.out"; exit 1; }
        grep -E "executions:|latency:|server CPU:.*all threads|extra CPU|total CPU|http|client error" \
            "$WORK/loadgen.out" || true
        read -r busy1 total1 < <(cpu_jiffies)
        read -r rx1 tx1 < <(pg_packets)
        read -r size1 commits1 < <(db_counters "$database")
        local proxy1; proxy1=$(proc_ticks "$PROXY_PID")
        # Over warm-up + measured load alike: every execution appends one leaf.
        local executions=$((size1 - size0)) hz; hz=$(getconf CLK_TCK)
        awk -v e="$executions" -v c=$((commits1 - commits0)) -v rx=$((rx1 - rx0)) -v tx=$((tx1 - tx0)) \
            -v busy=$((busy1 - busy0)) -v total=$((total1 - total0)) -v p=$((proxy1 - proxy0)) \
            -v hz="$hz" -v proxy="$PROXY_PID" 'BEGIN {
            printf "  per execution (%d appended, warm-up included): %.2f transactions, PostgreSQL link %.1f packets in + %.1f out\n", e, c / e, rx / e, tx / e
            printf "  machine: cores %.0f%% busy", 100 * busy / total
            if (proxy != "") printf "; delay proxy %.0f us CPU / execution", p / hz * 1e6 / e
            printf "\n"
        }'
        echo "  statements per execution (pg_stat_statements: calls, mean ms, rows):"
        psql -d "$database" -F' ' -c "SELECT calls, round(mean_exec_time::numeric, 3), rows, \
            regexp_replace(left(query, 110), '\s+', ' ', 'g') FROM pg_stat_statements \
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            ORDER BY calls DESC LIMIT 12" \
            | awk -v e="$executions" '{ calls = $1; mean = $2; rows = $3; $1 = $2 = $3 = "";
                sub(/^ +/, ""); printf "    %6.3f  %7s ms  %6.2f rows  %s\n", calls / e, mean, rows / e, $0 }'
        # Appends per group (executions over append transactions) and the mean wait
        # of the advisory lock statement (the log's; the session issuer's shares it).
        local group_lock
        group_lock=$(psql -d "$database" -F' ' -c "SELECT \
            coalesce(sum(calls) FILTER (WHERE query LIKE 'WITH head AS%'), 0), \
            coalesce(round(max(mean_exec_time) FILTER (WHERE query LIKE 'SELECT pg_advisory_xact_lock%')::numeric, 3), 0) \
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())" \
            | awk -v e="$executions" '{ printf("%s %s", ($1 > 0 ? sprintf("%.1f", e / $1) : "-"), $2) }')
        summary_row "$delay" "$n" "$clients" "$guest" "$(awk -v e="$executions" \
            -v c=$((commits1 - commits0)) -v pk=$((rx1 - rx0 + tx1 - tx0)) -v p=$((proxy1 - proxy0)) \
            -v hz="$hz" -v proxy="$PROXY_PID" -v gl="$group_lock" 'BEGIN {
            printf "%.2f %.1f %s %s", c / e, pk / e, gl, proxy == "" ? "-" : sprintf("%.0f", p / hz * 1e6 / e) }')"
    done; done
}

# File mode first, one server in r1's namespace, as the yardstick of the same run.
if [ "${FILE_MODE:-yes}" = yes ]; then
    start_replicas 1 "" ""
    measure file 1
    stop_replicas
fi
for delay in $DELAYS; do
    pg_port=5432
    set_delay none
    case $delay in
        netem) set_delay netem ;;
        proxy)
            pg_port=5433
            ip netns exec "$NS-pg" python3 tools/bench/delay-proxy.py --listen "${ADDR[pg]}:$pg_port" \
                --to 127.0.0.1:5432 --delay-ms "$DELAY_MS" >"$WORK/proxy.log" 2>&1 &
            PROXY_PID=$!
            for _ in $(seq 100); do grep -q delaying "$WORK/proxy.log" && break; sleep 0.1; done
            grep -q delaying "$WORK/proxy.log" || { cat "$WORK/proxy.log" >&2; exit 1; } ;;
        none) ;;
        *) echo "unknown delay $delay (none, netem, proxy)" >&2; exit 1 ;;
    esac
    echo "## delay: $delay; round trip replica -> PostgreSQL: $(pg_rtt "$pg_port") ms (median)"
    for n in $REPLICAS; do
        database=bench_${delay}_$n
        psql -d postgres -c "CREATE DATABASE $database" >/dev/null
        psql -d "$database" -c "CREATE EXTENSION pg_stat_statements" >/dev/null
        start_replicas "$n" "$database" "$pg_port"
        measure "$delay" "$n" "$database"
        stop_replicas
    done
    stop_proxy
done

echo
echo "## Summary (counts per appended leaf, warm-up included; lock: mean of its statement)"
echo "| delay | replicas | clients | guest | executions/s | p50 | p99 | replicas' CPU / execution" \
    "| PostgreSQL's | total | PG transactions / execution | packets on PG's link / execution" \
    "| appends per group | lock wait (mean) | proxy CPU / execution |"
echo "|$(printf ' --- |%.0s' $(seq 15))"
cat "$SUMMARY"
