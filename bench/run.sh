#!/usr/bin/env bash
# Side-by-side benchmark of shard-node against redis-server on this machine (`make bench`).
#
# 1. Memory per key: loads BENCH_MEMORY_KEYS distinct small string keys (`SET key:N val`)
#    into each fresh server with `redis-cli --pipe` and reports the growth of `used_memory`
#    (INFO memory) and of the process RSS per key.
# 2. Throughput: redis-benchmark -c CLIENTS -n REQUESTS for SET GET INCR LPUSH SADD HSET
#    ZADD XADD (MAXLEN ~ 100000) PFADD EVALSHA (a small INCR/EXPIRE script), without and with pipelining, the two servers interleaved (redis, shard-node,
#    then shard-node, redis in the next round, ...) for BENCH_ROUNDS rounds; the table shows
#    the MEDIAN requests per second of the rounds.
#
# Both servers run without durability by default: redis-server with `--save "" --appendonly
# no`, shard-node with `--appendfsync no`. BENCH_FSYNC=everysec|always runs both with that
# fsync policy instead (redis-server with `--appendonly yes`). The results are printed and written as markdown to
# $BENCH_OUT/results.md, ready to paste into bench/RESULTS.md.
#
# Settings (environment):
#   BENCH_REQUESTS=200000  BENCH_CLIENTS=50  BENCH_ROUNDS=3  BENCH_PIPELINES="1 16"
#   BENCH_TESTS="set get incr lpush sadd hset zadd xadd pfadd evalsha"  BENCH_KEYSPACE=100000 (-r)
#   BENCH_MEMORY_KEYS=1000000 (0 skips the memory test)  BENCH_FSYNC=no (everysec, always)
#   BENCH_SHARD_NODE_BIN=target/release/shard-node  BENCH_SKIP_BUILD=1 (use the binary as is)
#   BENCH_SELF_CHECK=1  a second redis-server stands in for shard-node (checks this script;
#                       the ratios should be close to 1)
#   BENCH_OUT=target/bench
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REQUESTS=${BENCH_REQUESTS:-200000}
CLIENTS=${BENCH_CLIENTS:-50}
ROUNDS=${BENCH_ROUNDS:-3}
PIPELINES=${BENCH_PIPELINES:-"1 16"}
TESTS=${BENCH_TESTS:-"set get incr lpush sadd hset zadd xadd pfadd evalsha"}
KEYSPACE=${BENCH_KEYSPACE:-100000}
MEMORY_KEYS=${BENCH_MEMORY_KEYS:-1000000}
SHARD_BIN=${BENCH_SHARD_NODE_BIN:-target/release/shard-node}
SELF_CHECK=${BENCH_SELF_CHECK:-0}
OUT_DIR=${BENCH_OUT:-target/bench}
FSYNC=${BENCH_FSYNC:-no}
case "$FSYNC" in
    no) REDIS_AOF=(--appendonly no) ;;
    everysec | always) REDIS_AOF=(--appendonly yes --appendfsync "$FSYNC") ;;
    *) echo "bench: BENCH_FSYNC must be no, everysec or always (got $FSYNC)" >&2; exit 1 ;;
esac

die() {
    echo "bench: $*" >&2
    exit 1
}

for tool in redis-server redis-cli redis-benchmark awk; do
    command -v "$tool" >/dev/null || die "$tool is not installed (Debian packages redis-server, redis-tools)"
done

if [ "$SELF_CHECK" = 1 ]; then
    SECOND="redis-server (self-check)"
    SECOND_CONFIG="a second redis-server (${REDIS_AOF[*]}) stands in for shard-node"
else
    SECOND="shard-node"
    SECOND_CONFIG="shard-node $( [ -d .git ] && git describe --always --dirty 2>/dev/null || true) with \`--appendfsync $FSYNC\`"
    if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
        echo "building shard-node (release)..."
        cargo build --release -p shard-node --bin shard-node
    fi
    [ -x "$SHARD_BIN" ] || die "no shard-node binary at $SHARD_BIN"
fi

tmp=$(mktemp -d -t aadb-bench.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port below the ephemeral range with nothing listening on it.
free_port() {
    local p _
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 10000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

# wait_ready PORT PID LOG
wait_ready() {
    local deadline=$((SECONDS + 60))
    until redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null | grep -q PONG; do
        if ! kill -0 "$2" 2>/dev/null; then
            cat "$3" >&2
            die "server on port $1 exited during start-up (log above)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "server on port $1 not ready after 60s"
        sleep 0.1
    done
}

# start_redis NAME PORT: sets LAST_PID
start_redis() {
    mkdir -p "$tmp/$1"
    redis-server --port "$2" --bind 127.0.0.1 --save "" "${REDIS_AOF[@]}" --daemonize no \
        --dir "$tmp/$1" --logfile "$tmp/$1.log" &
    LAST_PID=$!
    pids+=("$LAST_PID")
    wait_ready "$2" "$LAST_PID" "$tmp/$1.log"
}

start_shard_node() {
    mkdir -p "$tmp/shard-node/data"
    # Flags only: environment variables of the caller must not change the configuration.
    env $(env | awk -F= '/^SHARD_NODE_/ {printf "-u %s ", $1}') \
        "$SHARD_BIN" server --bind 127.0.0.1 --port "$1" --dir "$tmp/shard-node/data" \
        --participant bench --shard 0 --appendfsync "$FSYNC" >"$tmp/shard-node.log" 2>&1 &
    LAST_PID=$!
    pids+=("$LAST_PID")
    wait_ready "$1" "$LAST_PID" "$tmp/shard-node.log"
}

REDIS_PORT=$(free_port)
start_redis redis "$REDIS_PORT"
REDIS_PID=$LAST_PID
SECOND_PORT=$(free_port)
while [ "$SECOND_PORT" = "$REDIS_PORT" ]; do SECOND_PORT=$(free_port); done
if [ "$SELF_CHECK" = 1 ]; then
    start_redis redis-2 "$SECOND_PORT"
else
    start_shard_node "$SECOND_PORT"
fi
SECOND_PID=$LAST_PID

info_field() { # PORT SECTION FIELD
    { redis-cli -h 127.0.0.1 -p "$1" INFO "$2" || true; } | tr -d '\r' | awk -F: -v f="$3" '$1 == f {print $2}'
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b != "") printf "%.2f", b / a; else print "n/a" }'; }

# ---------------------------------------------------------------- memory per key
MEM_ROWS=()
MEM_NOTE=""
if [ "$MEMORY_KEYS" -gt 0 ]; then
    echo "generating $MEMORY_KEYS SET commands..."
    awk -v n="$MEMORY_KEYS" 'BEGIN {
        for (i = 0; i < n; i++) {
            k = "key:" i
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$3\r\nval\r\n", length(k), k
        }
    }' >"$tmp/keys.resp"
    declare -A MEM
    for side in redis second; do
        if [ "$side" = redis ]; then port=$REDIS_PORT pid=$REDIS_PID; else port=$SECOND_PORT pid=$SECOND_PID; fi
        before=$(info_field "$port" memory used_memory)
        rss_before=$(rss_kb "$pid")
        out=$(redis-cli -h 127.0.0.1 -p "$port" --pipe <"$tmp/keys.resp" 2>&1)
        echo "$out" | grep -q "errors: 0, replies: $MEMORY_KEYS" ||
            die "loading keys into port $port failed: $out"
        keys=$(redis-cli -h 127.0.0.1 -p "$port" DBSIZE)
        [ "$keys" = "$MEMORY_KEYS" ] || die "DBSIZE on port $port is $keys, expected $MEMORY_KEYS"
        after=$(info_field "$port" memory used_memory)
        rss_after=$(rss_kb "$pid")
        MEM[$side.rss]=$(awk -v a="$rss_before" -v b="$rss_after" -v n="$MEMORY_KEYS" 'BEGIN { printf "%.1f", (b - a) * 1024 / n }')
        if [ -n "$before" ] && [ -n "$after" ]; then
            MEM[$side.used]=$(awk -v a="$before" -v b="$after" -v n="$MEMORY_KEYS" 'BEGIN { printf "%.1f", (b - a) / n }')
        else
            MEM[$side.used]=""
        fi
        redis-cli -h 127.0.0.1 -p "$port" FLUSHALL >/dev/null
    done
    if [ -z "${MEM[second.used]}" ]; then
        MEM_NOTE="$SECOND's INFO memory does not report used_memory yet: only RSS is compared."
    fi
    MEM_ROWS+=("used_memory bytes/key|${MEM[redis.used]:-n/a}|${MEM[second.used]:-n/a}|$(ratio "${MEM[redis.used]}" "${MEM[second.used]}")")
    MEM_ROWS+=("RSS bytes/key|${MEM[redis.rss]}|${MEM[second.rss]}|$(ratio "${MEM[redis.rss]}" "${MEM[second.rss]}")")
    rm -f "$tmp/keys.resp"
fi

# ---------------------------------------------------------------- throughput
# EVALSHA runs a small rate-limiter-like script (INCR, then EXPIRE on the first hit), loaded on
# both servers first.
BENCH_SCRIPT="local n = redis.call('incr', KEYS[1]) if n == 1 then redis.call('expire', KEYS[1], 60) end return n"
SCRIPT_SHA=$(redis-cli -p "$REDIS_PORT" script load "$BENCH_SCRIPT")
[ "$(redis-cli -p "$SECOND_PORT" script load "$BENCH_SCRIPT")" = "$SCRIPT_SHA" ] ||
    die "SCRIPT LOAD gave different hashes on the two servers"
# bench_rps PORT TEST PIPELINE: prints requests per second, or "error"
bench_rps() {
    local args=(-h 127.0.0.1 -p "$1" -c "$CLIENTS" -n "$REQUESTS" -P "$3" -r "$KEYSPACE" -q --csv)
    case "$2" in
        # Commands that are not in redis-benchmark 7.0's -t list.
        zadd) args+=(zadd bench:zset __rand_int__ element:__rand_int__) ;;
        xadd) args+=(xadd bench:stream MAXLEN '~' 100000 '*' field __rand_int__) ;;
        pfadd) args+=(pfadd bench:hll element:__rand_int__) ;;
        evalsha) args+=(evalsha "$SCRIPT_SHA" 1 bench:rate:__rand_int__) ;;
        *) args+=(-t "$2") ;;
    esac
    local out rps
    out=$(redis-benchmark "${args[@]}" 2>&1) || true
    rps=$(printf '%s\n' "$out" | tr '\r' '\n' | awk -F'","' 'NF > 1 && $1 != "\"test" { print $2; exit }')
    if [ -z "$rps" ] || printf '%s\n' "$out" | grep -qiE 'error|ERR '; then
        echo "redis-benchmark $2 -P $3 on port $1 failed: $out" >&2
        echo error
    else
        echo "$rps"
    fi
}

median() {
    tr ' ' '\n' | awk 'NF' | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "n/a"; exit }
            for (i = 1; i <= NR; i++) if (v[i] == "error") { print "error"; exit }
            if (NR % 2) printf "%.0f", v[(NR + 1) / 2]
            else printf "%.0f", (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

declare -A RUNS
echo "throughput: $ROUNDS rounds of [$TESTS] x pipeline [$PIPELINES], -c $CLIENTS -n $REQUESTS"
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="redis second"; else order="second redis"; fi
    for t in $TESTS; do
        for p in $PIPELINES; do
            for side in $order; do
                if [ "$side" = redis ]; then port=$REDIS_PORT; else port=$SECOND_PORT; fi
                rps=$(bench_rps "$port" "$t" "$p")
                RUNS[$side.$t.$p]="${RUNS[$side.$t.$p]:-} $rps"
                printf '  round %d  %-6s -P %-3s %-26s %s\n' "$round" "$t" "$p" \
                    "$([ "$side" = redis ] && echo redis-server || echo "$SECOND")" "$rps"
            done
        done
    done
done

# ---------------------------------------------------------------- report
mkdir -p "$OUT_DIR"
report="$OUT_DIR/results.md"
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -q . && echo "+dirty" || true)
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
    echo "### $(date -u +%Y-%m-%d) — commit ${rev}${dirty}"
    echo
    echo "Machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)." \
        "$(redis-server --version | awk '{print $1, $2, $3}'), ${REDIS_AOF[*]};" \
        "$SECOND_CONFIG."
    echo "\`redis-benchmark -c $CLIENTS -n $REQUESTS -r $KEYSPACE\`, median of $ROUNDS interleaved rounds."
    echo
    echo "| test | pipeline | redis-server rps | $SECOND rps | $SECOND / redis |"
    echo "|---|---:|---:|---:|---:|"
    for t in $TESTS; do
        for p in $PIPELINES; do
            r=$(echo "${RUNS[redis.$t.$p]}" | median)
            s=$(echo "${RUNS[second.$t.$p]}" | median)
            echo "| ${t^^} | $p | $r | $s | $(ratio "$r" "$s") |"
        done
    done
    if [ "${#MEM_ROWS[@]}" -gt 0 ]; then
        echo
        echo "Memory, $MEMORY_KEYS keys \`SET key:N val\` loaded with \`redis-cli --pipe\`:"
        echo
        echo "| measure | redis-server | $SECOND | $SECOND / redis |"
        echo "|---|---:|---:|---:|"
        for row in "${MEM_ROWS[@]}"; do
            echo "| ${row//|/ | } |"
        done
        if [ -n "$MEM_NOTE" ]; then
            echo
            echo "$MEM_NOTE"
        fi
    fi
} >"$report"

echo
cat "$report"
echo
echo "(markdown written to $report)"
