#!/usr/bin/env bash
# Replication benchmarks (part of `make bench`):
# 1. Write throughput of a primary alone versus the same primary with one replica and two
#    peer regions attached (redis-benchmark -t set,incr -c 50, median of rounds).
# 2. Replication lag between two regions while redis-benchmark writes into the first one:
#    bench/lag_probe.py publishes timestamps in region A and times their arrival in region B
#    (PUBLISH rides the same effect stream as the writes). Reports p50/p99/max in ms and the
#    write rate during the measurement.
# Settings: BENCH_REQUESTS (default 200000), BENCH_ROUNDS (3), BENCH_OUT (target/bench),
# BENCH_SHARD_NODE_BIN (target/release/shard-node). Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REQUESTS=${BENCH_REQUESTS:-200000}
ROUNDS=${BENCH_ROUNDS:-3}
OUT_DIR=${BENCH_OUT:-target/bench}
BIN=${BENCH_SHARD_NODE_BIN:-target/release/shard-node}
[ -x "$BIN" ] || { echo "bench: no shard-node binary at $BIN (run make build)" >&2; exit 1; }
mkdir -p "$OUT_DIR"
tmp=$(mktemp -d -t aadb-repl-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
    for _ in $(seq 1 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "bench: node on port $1 did not start" >&2; exit 1
}
start() { # NAME PORT ARGS...
    local name=$1 port=$2; shift 2
    "$BIN" server --bind 127.0.0.1 --port "$port" --dir "$tmp/$name" --appendfsync no "$@" >"$tmp/$name.log" 2>&1 &
    pids+=($!)
    wait_ready "$port"
}
rps() { # PORT TEST
    redis-benchmark -p "$1" -t "$2" -c 50 -n "$REQUESTS" -r 100000 -q --csv 2>/dev/null \
        | awk -F'","' 'NR==2 {gsub(/"/,"",$2); print $2}'
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else print a[int((NR+1)/2)]}'; }

pa=$(free_port); pr=$(free_port); pb=$(free_port); pc=$(free_port); ps=$(free_port)
start solo "$ps" --participant solo
start a "$pa" --participant a --peer "b=127.0.0.1:$pb" --peer "c=127.0.0.1:$pc"
start ar "$pr" --participant a --replicaof "127.0.0.1:$pa"
start b "$pb" --participant b --peer "a=127.0.0.1:$pa"
start c "$pc" --participant c --peer "a=127.0.0.1:$pa"

{
echo "## Replication ($(date -u +%Y-%m-%d), $(nproc) cores, -c 50 -n $REQUESTS, median of $ROUNDS rounds)"
echo
echo "| test | alone (rps) | with 1 replica + 2 peers (rps) | ratio |"
echo "|---|---:|---:|---:|"
for t in set incr; do
    solo=(); linked=()
    for _ in $(seq 1 "$ROUNDS"); do
        solo+=("$(rps "$ps" "$t")"); linked+=("$(rps "$pa" "$t")")
    done
    s=$(printf '%s\n' "${solo[@]}" | median); l=$(printf '%s\n' "${linked[@]}" | median)
    r=$(awk -v a="$s" -v b="$l" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }')
    echo "| ${t^^} | $s | $l | $r |"
done
echo
# Lag under load: a background write load on region a, the probe measures a -> b.
redis-benchmark -p "$pa" -t set -c 50 -n $((REQUESTS * 5)) -r 100000 -q >"$tmp/load.txt" 2>&1 &
load=$!
sleep 1
cmds() { redis-cli -p "$pa" info stats | awk -F: '/^total_commands_processed/ {print $2+0}'; }
c0=$(cmds); t0=$(date +%s%N)
read -r p50 p99 max got sent < <(python3 bench/lag_probe.py "$pa" "$pb" 5 5)
c1=$(cmds); t1=$(date +%s%N)
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true
rate=$(awk -v c="$((c1 - c0))" -v ns="$((t1 - t0))" 'BEGIN { printf "%d", c / (ns / 1e9) }')
echo "| replication lag a -> b under write load | p50 ms | p99 ms | max ms | probes |"
echo "|---|---:|---:|---:|---:|"
echo "| SET load at ${rate:-?} rps | $p50 | $p99 | $max | $got/$sent |"
echo
converged=NO
t0=$(date +%s%N)
for _ in $(seq 1 200); do
    if [ "$(for p in $pa $pr $pb $pc; do redis-cli -p "$p" aa.digest; done | sort -u | wc -l)" = 1 ]; then
        converged="yes, $(( ($(date +%s%N) - t0) / 1000000 )) ms after the load stopped"
        break
    fi
    sleep 0.05
done
echo "All four nodes (a, its replica, b, c) hold identical data: $converged"
} | tee "$OUT_DIR/replication.md"
