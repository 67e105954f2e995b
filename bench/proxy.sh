#!/usr/bin/env bash
# Benchmark of the routing proxy `shard-node proxy` (`make bench-proxy`, part of `make bench`).
#
# Configurations, everything on 127.0.0.1, every shard-node server with `--appendonly no`:
#   (a)   direct: redis-benchmark straight at one shard-node without a shard map
#   (b1)  shard-node proxy over one shard-node that owns every slot ("0-16383=HOST:PORT")
#   (b3)  shard-node proxy over three shard-nodes with the map 0-5460 / 5461-10922 / 10923-16383
#   (c)   twemproxy (nutcracker) over three shard-nodes WITHOUT a shard map: twemproxy hashes
#         keys itself (fnv1a_64, ketama), and shard-nodes with a map would answer -MOVED
#   (c')  twemproxy over three redis-servers, for reference (needs redis-server)
# Before any measurement each configuration must store and return 200 keys, and the three
# shards behind (b3) and (c) must each hold some of them.
#
# 1. Memory per idle client connection: growth of the process's VmRSS while BENCH_IDLE_CONNS
#    connections that each did one PING stay open; measured first, on the fresh processes.
# 2. Throughput: `redis-benchmark -c 50 -n REQUESTS -r 100000 -t set,get --csv` without
#    pipelining and with -P 16, the configurations interleaved in BENCH_ROUNDS rounds (the
#    order reversed every other round); the median rps of the rounds, and its ratio to (a)
#    and to (c).
# 3. Added latency: `redis-benchmark -c 1 -n 20000 -r 100000 -t get --csv`, median over the
#    rounds of the p50; the headline is p50(b1) - p50(a) in µs.
#
# twemproxy is Debian's package nutcracker, installed when missing (as root, or with `sudo -n`);
# when it cannot be installed (c) and (c') are skipped with a note.
#
# Settings (environment):
#   BENCH_ROUNDS=3  BENCH_REQUESTS=100000  BENCH_CLIENTS=50  BENCH_PIPELINES="1 16"
#   BENCH_KEYSPACE=100000 (-r)  BENCH_LATENCY_REQUESTS=20000  BENCH_IDLE_CONNS=2000 (0 skips)
#   BENCH_SHARD_NODE_BIN=target/release/shard-node  BENCH_SKIP_BUILD=1 (use the binary as is)
#   BENCH_OUT=target/bench
# The summary is printed and written as markdown to $BENCH_OUT/proxy.md, ready to paste into
# bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${BENCH_ROUNDS:-3}
REQUESTS=${BENCH_REQUESTS:-100000}
CLIENTS=${BENCH_CLIENTS:-50}
PIPELINES=${BENCH_PIPELINES:-"1 16"}
KEYSPACE=${BENCH_KEYSPACE:-100000}
LAT_REQUESTS=${BENCH_LATENCY_REQUESTS:-20000}
IDLE_CONNS=${BENCH_IDLE_CONNS:-2000}
BIN=${BENCH_SHARD_NODE_BIN:-target/release/shard-node}
OUT_DIR=${BENCH_OUT:-target/bench}

die() {
    echo "bench-proxy: $*" >&2
    exit 1
}
note() { echo "bench-proxy: $*" >&2; }

for tool in redis-cli redis-benchmark python3 awk; do
    command -v "$tool" >/dev/null || die "$tool is not installed (Debian packages redis-tools, python3)"
done

# Flags only: SHARD_NODE_* variables of the caller must not change the configuration.
for v in $(compgen -e | grep '^SHARD_NODE_' || true); do
    unset "$v"
done

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "building shard-node (release)..."
    cargo build --release -p shard-node --bin shard-node
fi
[ -x "$BIN" ] || die "no shard-node binary at $BIN (run without BENCH_SKIP_BUILD=1, or make build)"
if ! "$BIN" proxy --help >/dev/null 2>&1; then
    die "$BIN has no \`proxy\` subcommand (\`$BIN proxy --help\` fails): this benchmark needs a" \
        "shard-node built with the routing proxy; rebuild (without BENCH_SKIP_BUILD=1)"
fi

# Idle-connection test: the proxies started below inherit this limit.
if [ "$IDLE_CONNS" -gt 0 ]; then
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 256)) ]; then
        ulimit -n $((IDLE_CONNS + 256)) 2>/dev/null || ulimit -n 8192 2>/dev/null ||
            ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    fi
    limit=$(ulimit -n)
    if [ "$limit" != unlimited ] && [ "$limit" -lt $((IDLE_CONNS + 256)) ]; then
        note "open-file limit is $limit: using $((limit - 256)) idle connections instead of $IDLE_CONNS"
        IDLE_CONNS=$((limit - 256))
        [ "$IDLE_CONNS" -gt 0 ] || IDLE_CONNS=0
    fi
fi

mkdir -p "$OUT_DIR"
tmp=$(mktemp -d -t aadb-proxy-bench.XXXXXX)
pids=()
policy_rc_created=""
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$policy_rc_created" ]; then
        rm -f /usr/sbin/policy-rc.d 2>/dev/null || sudo -n rm -f /usr/sbin/policy-rc.d 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- twemproxy
# Installs Debian's nutcracker when missing; fails (status 1) with a note when it cannot.
ensure_nutcracker() {
    command -v nutcracker >/dev/null 2>&1 && return 0
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    if [ -x /usr/sbin/nutcracker ]; then
        PATH=$PATH:/usr/sbin
        return 0
    fi
    local as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            as_root=(sudo -n)
        else
            note "nutcracker (twemproxy) is not installed and this is neither root nor passwordless sudo"
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        note "nutcracker (twemproxy) is not installed and there is no apt-get to install it"
        return 1
    fi
    echo "installing nutcracker (twemproxy) with apt-get..."
    # Keep the package's own service from being started by the install (policy-rc.d exit 101
    # means "not allowed"), as scripts/setup.sh does.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null &&
            "${as_root[@]}" chmod 755 /usr/sbin/policy-rc.d && policy_rc_created=1
    fi
    local apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
    if ! "${apt[@]}" install -y -q --no-install-recommends nutcracker >"$tmp/apt.log" 2>&1; then
        # The package lists may be missing or stale.
        "${apt[@]}" update -q >>"$tmp/apt.log" 2>&1 || true
        "${apt[@]}" install -y -q --no-install-recommends nutcracker >>"$tmp/apt.log" 2>&1 || true
    fi
    if [ -n "$policy_rc_created" ]; then
        "${as_root[@]}" rm -f /usr/sbin/policy-rc.d
        policy_rc_created=""
    fi
    if ! command -v nutcracker >/dev/null 2>&1; then
        tail -n 5 "$tmp/apt.log" >&2
        note "could not install nutcracker (apt-get output above)"
        return 1
    fi
}

HAVE_TWEM=1
TWEM_NOTE=""
if ! ensure_nutcracker; then
    HAVE_TWEM=0
    TWEM_NOTE="twemproxy (nutcracker) was not available: configurations (c) and (c') were skipped."
    note "skipping (c) and (c'): ${TWEM_NOTE%%:*}"
fi
HAVE_REDIS=0
if [ "$HAVE_TWEM" = 1 ]; then
    if command -v redis-server >/dev/null 2>&1; then
        HAVE_REDIS=1
    else
        TWEM_NOTE="redis-server is not installed: configuration (c') was skipped."
        note "$TWEM_NOTE"
    fi
fi

# ---------------------------------------------------------------- processes
# Distinct loopback ports below the ephemeral range, all free at the same time.
read -r -a PORTS <<<"$(python3 - 24 <<'EOF'
import random, socket, sys
want = int(sys.argv[1])
candidates = list(range(27000, 32000))
random.shuffle(candidates)
held = []
for port in candidates:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    held.append(s)
    if len(held) == want:
        break
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
)"
[ "${#PORTS[@]}" -eq 24 ] || die "could not find 24 free ports in 27000-31999"
port_i=0
next_port() { # VAR
    printf -v "$1" %s "${PORTS[$port_i]}"
    port_i=$((port_i + 1))
}

declare -A PID_OF
# spawn NAME COMMAND...: runs it in the background, output appended to $tmp/NAME.log
spawn() {
    local name=$1
    shift
    "$@" >>"$tmp/$name.log" 2>&1 &
    PID_OF[$name]=$!
    pids+=("$!")
}

# wait_ready NAME PORT: until PING answers PONG, with a deadline
wait_ready() {
    local name=$1 port=$2 deadline=$((SECONDS + 60))
    until redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; do
        if ! kill -0 "${PID_OF[$name]}" 2>/dev/null; then
            cat "$tmp/$name.log" >&2
            die "$name (port $port) exited during start-up (log above)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            cat "$tmp/$name.log" >&2
            die "$name (port $port) does not answer PING after 60s (log above)"
        fi
        sleep 0.05
    done
}

# start_server NAME PORT [FLAGS...]
start_server() {
    local name=$1 port=$2
    shift 2
    mkdir -p "$tmp/$name"
    spawn "$name" "$BIN" server --bind 127.0.0.1 --port "$port" --dir "$tmp/$name" \
        --appendonly no "$@"
}

# start_twemproxy NAME LISTEN_PORT STATS_PORT BACKEND_PORTS...
start_twemproxy() {
    local name=$1 listen=$2 stats=$3 i=1 p
    shift 3
    {
        echo "bench:"
        echo "  listen: 127.0.0.1:$listen"
        echo "  hash: fnv1a_64"
        echo "  distribution: ketama"
        echo "  redis: true"
        echo "  server_connections: 1"
        echo "  auto_eject_hosts: false"
        echo "  preconnect: true"
        echo "  servers:"
        # Named servers: ketama hashes the names, so the key distribution does not depend on
        # the ports picked.
        for p in "$@"; do
            echo "    - 127.0.0.1:$p:1 server$i"
            i=$((i + 1))
        done
    } >"$tmp/$name.yml"
    nutcracker --test-conf --conf-file "$tmp/$name.yml" >"$tmp/$name.test.log" 2>&1 || {
        cat "$tmp/$name.yml" "$tmp/$name.test.log" >&2
        die "nutcracker rejects its configuration (above)"
    }
    # Debian's nutcracker logs to /var/log/nutcracker unless told otherwise.
    spawn "$name" nutcracker --conf-file "$tmp/$name.yml" --output "$tmp/$name.log" \
        --stats-addr 127.0.0.1 --stats-port "$stats" --pid-file "$tmp/$name.pid"
}

next_port P_DIRECT
next_port P_SINGLE
next_port P_SHARD0
next_port P_SHARD1
next_port P_SHARD2
next_port P_PROXY1
next_port P_PROXY3
MAP1="0-16383=127.0.0.1:$P_SINGLE"
MAP3="0-5460=127.0.0.1:$P_SHARD0,5461-10922=127.0.0.1:$P_SHARD1,10923-16383=127.0.0.1:$P_SHARD2"

CONFIGS=(direct proxy1 proxy3)
declare -A LABEL PORT_OF BACKENDS
LABEL[direct]="(a) direct shard-node"
LABEL[proxy1]="(b1) shard-node proxy, 1 shard"
LABEL[proxy3]="(b3) shard-node proxy, 3 shards"
LABEL[twem_sn]="(c) twemproxy, 3 shard-nodes"
LABEL[twem_redis]="(c') twemproxy, 3 redis-servers"
PORT_OF[direct]=$P_DIRECT
PORT_OF[proxy1]=$P_PROXY1
PORT_OF[proxy3]=$P_PROXY3
BACKENDS[proxy3]="$P_SHARD0 $P_SHARD1 $P_SHARD2"

echo "starting shard-node servers..."
start_server direct "$P_DIRECT"
start_server single "$P_SINGLE" --shard 0 --shard-map "$MAP1"
start_server shard0 "$P_SHARD0" --shard 0 --shard-map "$MAP3"
start_server shard1 "$P_SHARD1" --shard 1 --shard-map "$MAP3"
start_server shard2 "$P_SHARD2" --shard 2 --shard-map "$MAP3"
backend_names=(direct single shard0 shard1 shard2)
if [ "$HAVE_TWEM" = 1 ]; then
    CONFIGS+=(twem_sn)
    next_port P_TWEM_SN
    next_port P_TWEM_SN_STATS
    PORT_OF[twem_sn]=$P_TWEM_SN
    sn_ports=()
    for i in 0 1 2; do
        next_port p
        start_server "plain$i" "$p"
        backend_names+=("plain$i")
        PORT_OF[plain$i]=$p
        sn_ports+=("$p")
    done
    BACKENDS[twem_sn]="${sn_ports[*]}"
fi
if [ "$HAVE_REDIS" = 1 ]; then
    CONFIGS+=(twem_redis)
    next_port P_TWEM_REDIS
    next_port P_TWEM_REDIS_STATS
    PORT_OF[twem_redis]=$P_TWEM_REDIS
    rp=()
    for i in 0 1 2; do
        next_port p
        mkdir -p "$tmp/redis$i"
        spawn "redis$i" redis-server --bind 127.0.0.1 --port "$p" --save '' --appendonly no \
            --daemonize no --dir "$tmp/redis$i"
        backend_names+=("redis$i")
        PORT_OF[redis$i]=$p
        rp+=("$p")
    done
    BACKENDS[twem_redis]="${rp[*]}"
fi
PORT_OF[single]=$P_SINGLE
PORT_OF[shard0]=$P_SHARD0
PORT_OF[shard1]=$P_SHARD1
PORT_OF[shard2]=$P_SHARD2
for name in "${backend_names[@]}"; do
    wait_ready "$name" "${PORT_OF[$name]}"
done

echo "starting proxies..."
spawn proxy1 "$BIN" proxy --bind 127.0.0.1 --port "$P_PROXY1" --shard-map "$MAP1"
spawn proxy3 "$BIN" proxy --bind 127.0.0.1 --port "$P_PROXY3" --shard-map "$MAP3"
if [ "$HAVE_TWEM" = 1 ]; then
    # shellcheck disable=SC2086
    start_twemproxy twem_sn "$P_TWEM_SN" "$P_TWEM_SN_STATS" ${BACKENDS[twem_sn]}
fi
if [ "$HAVE_REDIS" = 1 ]; then
    # shellcheck disable=SC2086
    start_twemproxy twem_redis "$P_TWEM_REDIS" "$P_TWEM_REDIS_STATS" ${BACKENDS[twem_redis]}
fi
for c in "${CONFIGS[@]}"; do
    [ "$c" = direct ] || wait_ready "$c" "${PORT_OF[$c]}"
done

# ---------------------------------------------------------------- routing check
# Every configuration stores and returns 200 keys; behind (b3) and (c) each of the three
# backends holds some of them (the backends start empty, so their key counts add up to 200).
# The keys look like redis-benchmark's (12 digits) and are spread over the digits: twemproxy's
# fnv1a_64 puts keys that differ only in their last digits on one server.
check_keys() { seq 200 | awk -v cmd="$1" '{printf "%s bench:check:%012d%s\n", cmd, $1 * 7919, (cmd == "SET" ? " v" $1 : "")}'; }
for c in "${CONFIGS[@]}"; do
    port=${PORT_OF[$c]}
    check_keys SET |
        redis-cli -h 127.0.0.1 -p "$port" >"$tmp/check-set.out" 2>&1 || true
    ok=$(grep -c '^OK$' "$tmp/check-set.out" || true)
    [ "$ok" = 200 ] || {
        grep -v '^OK$' "$tmp/check-set.out" | head -n 3 >&2
        die "${LABEL[$c]}: only $ok of 200 SETs answered OK (first other replies above)"
    }
    check_keys GET |
        redis-cli -h 127.0.0.1 -p "$port" >"$tmp/check-get.out" 2>&1 || true
    seq 200 | awk '{print "v" $1}' >"$tmp/check-want.out"
    cmp -s "$tmp/check-get.out" "$tmp/check-want.out" ||
        die "${LABEL[$c]}: GET did not return what SET stored: $(diff "$tmp/check-want.out" "$tmp/check-get.out" | head -n 4 | tr '\n' ' ')"
    if [ -n "${BACKENDS[$c]:-}" ]; then
        counts=()
        for b in ${BACKENDS[$c]}; do
            counts+=("$(redis-cli -h 127.0.0.1 -p "$b" DBSIZE 2>&1)")
        done
        total=0
        for n in "${counts[@]}"; do
            if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -eq 0 ]; then
                die "${LABEL[$c]}: a backend holds none of the 200 keys (DBSIZE: ${counts[*]})"
            fi
            total=$((total + n))
        done
        [ "$total" = 200 ] || die "${LABEL[$c]}: the backends hold $total keys, expected 200 (DBSIZE: ${counts[*]})"
        echo "  ${LABEL[$c]}: 200 keys stored and read back; per backend: ${counts[*]}"
    else
        echo "  ${LABEL[$c]}: 200 keys stored and read back"
    fi
done

# ---------------------------------------------------------------- helpers
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", b / a; else print "n/a" }'; }

# median [DECIMALS]: of whitespace-separated numbers on stdin; "error" if any run failed
median() {
    tr ' ' '\n' | awk 'NF' | sort -g | awk -v d="${1:-0}" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "n/a"; exit }
            for (i = 1; i <= NR; i++) if (v[i] !~ /^[0-9.]+$/) { print "error"; exit }
            fmt = "%." d "f"
            if (NR % 2) printf fmt, v[(NR + 1) / 2]
            else printf fmt, (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

# bench_csv PORT REDIS-BENCHMARK-ARGS...: prints redis-benchmark's CSV; on failure (redis-benchmark
# 7 stops at the first error reply, e.g. -MOVED) prints nothing, says why and records it in
# $tmp/errors (it runs in a command substitution: a variable would not survive).
bench_csv() {
    local port=$1 out msg
    shift
    if out=$(redis-benchmark -h 127.0.0.1 -p "$port" --csv "$@" 2>"$tmp/rb.err"); then
        printf '%s\n' "$out"
    else
        msg="redis-benchmark -p $port $* failed: $(tr '\n' ' ' <"$tmp/rb.err" | cut -c1-300)"
        echo "$msg" >>"$tmp/errors"
        echo "bench-proxy: $msg" >&2
    fi
}

# csv_field TEST FIELD < CSV: the FIELD column (named in the header) of the row of TEST
csv_field() {
    tr -d '\r' | awk -F'","' -v t="$1" -v f="$2" '
        { sub(/^"/, ""); sub(/"$/, "") }
        $1 == "test" { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $1 == t && (f in col) { print $(col[f]); exit }'
}

# ---------------------------------------------------------------- memory per idle connection
cat >"$tmp/idle_conns.py" <<'EOF'
# idle_conns.py PORT PID N: VmRSS of PID before and after opening N connections to PORT that
# each send one PING and read +PONG (one at a time) and then stay open.
# Prints "RSS_BEFORE_KB RSS_AFTER_KB OPENED ERROR_OR_-".
import socket, sys, time

port, pid, want = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

time.sleep(0.2)
before = rss_kb()
conns, error = [], "-"
for i in range(want):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(64)
            if not chunk:
                raise OSError("closed by the server")
            reply += chunk
        if reply != b"+PONG\r\n":
            raise OSError(f"PING answered {reply!r}")
    except OSError as e:
        error = f"connection {i + 1}: {e}"
        break
    conns.append(s)
time.sleep(0.5)
after = rss_kb()
print(before, after, len(conns), error)
for s in conns:
    s.close()
EOF

MEM_ROWS=()
if [ "$IDLE_CONNS" -gt 0 ]; then
    echo "memory per idle connection: $IDLE_CONNS connections, one PING each..."
    for c in "${CONFIGS[@]}"; do
        pid=${PID_OF[$c]}
        before="" after=""
        read -r before after opened err < <(python3 "$tmp/idle_conns.py" "${PORT_OF[$c]}" "$pid" "$IDLE_CONNS") || true
        opened=${opened:-0} err=${err:-the measuring script failed}
        if [ "$opened" -gt 0 ]; then
            per=$(awk -v a="$before" -v b="$after" -v n="$opened" 'BEGIN { printf "%.2f", (b - a) / n }')
        else
            per=n/a
        fi
        [ "$err" = - ] || note "${LABEL[$c]}: stopped after $opened connections: $err"
        printf '  %-34s RSS %s -> %s KiB with %s connections: %s KiB/connection\n' \
            "${LABEL[$c]}" "$before" "$after" "$opened" "$per"
        MEM_ROWS+=("${LABEL[$c]}|$opened|$before|$after|$per")
    done
fi

# ---------------------------------------------------------------- throughput
declare -A RUNS
echo "throughput: $ROUNDS rounds of [set get] x pipeline [$PIPELINES], -c $CLIENTS -n $REQUESTS -r $KEYSPACE"
for round in $(seq "$ROUNDS"); do
    order=("${CONFIGS[@]}")
    if [ $((round % 2)) = 0 ]; then
        order=()
        for ((i = ${#CONFIGS[@]} - 1; i >= 0; i--)); do order+=("${CONFIGS[$i]}"); done
    fi
    for p in $PIPELINES; do
        for c in "${order[@]}"; do
            csv=$(bench_csv "${PORT_OF[$c]}" -c "$CLIENTS" -n "$REQUESTS" -r "$KEYSPACE" -P "$p" -t set,get)
            line="  round $round  -P $(printf '%-3s' "$p") $(printf '%-34s' "${LABEL[$c]}")"
            for t in SET GET; do
                v=$(csv_field "$t" rps <<<"$csv")
                RUNS[$c.$t.$p]="${RUNS[$c.$t.$p]:-} ${v:-error}"
                line+="  $t ${v:-error}"
            done
            echo "$line"
        done
    done
done

# ---------------------------------------------------------------- latency
declare -A LAT
echo "latency: $ROUNDS rounds of redis-benchmark -c 1 -n $LAT_REQUESTS -r $KEYSPACE -t get"
for round in $(seq "$ROUNDS"); do
    order=("${CONFIGS[@]}")
    if [ $((round % 2)) = 0 ]; then
        order=()
        for ((i = ${#CONFIGS[@]} - 1; i >= 0; i--)); do order+=("${CONFIGS[$i]}"); done
    fi
    for c in "${order[@]}"; do
        csv=$(bench_csv "${PORT_OF[$c]}" -c 1 -n "$LAT_REQUESTS" -r "$KEYSPACE" -t get)
        v=$(csv_field GET p50_latency_ms <<<"$csv")
        LAT[$c]="${LAT[$c]:-} ${v:-error}"
        printf '  round %d  %-34s p50 %s ms\n' "$round" "${LABEL[$c]}" "${v:-error}"
    done
done

# How the keys of the runs were spread over the backends of each multi-backend configuration.
SPREAD=""
for c in "${CONFIGS[@]}"; do
    [ -n "${BACKENDS[$c]:-}" ] || continue
    per_backend=""
    for b in ${BACKENDS[$c]}; do
        per_backend+="${per_backend:+ / }$(redis-cli -h 127.0.0.1 -p "$b" DBSIZE 2>&1)"
    done
    SPREAD+="${SPREAD:+; }${LABEL[$c]%% *} $per_backend"
done

# ---------------------------------------------------------------- report
report="$OUT_DIR/proxy.md"
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if git status --porcelain 2>/dev/null | grep -q .; then dirty="+dirty"; fi
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
twem_version=""
if [ "$HAVE_TWEM" = 1 ]; then
    twem_version=$(nutcracker --version 2>&1 | awk '{sub(/^nutcracker-/, "", $NF); print $NF; exit}')
fi
lat_a=$(echo "${LAT[direct]}" | median 3)
lat_b1=$(echo "${LAT[proxy1]}" | median 3)
added_us() { awk -v a="$lat_a" -v b="$1" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/) printf "%.0f", (b - a) * 1000; else print "n/a" }'; }
{
    echo "### $(date -u +%Y-%m-%d) — routing proxy, commit ${rev}${dirty}"
    echo
    echo "Machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo);" \
        "servers, proxies and redis-benchmark share it over loopback." \
        "$(date -u '+%Y-%m-%d %H:%M:%S UTC')."
    echo "shard-node servers with \`--appendonly no\`; the proxies are \`shard-node proxy --shard-map ...\`." \
        "$(if [ "$HAVE_TWEM" = 1 ]; then
            echo "twemproxy is nutcracker $twem_version (\`hash: fnv1a_64\`, \`distribution: ketama\`," \
                "\`server_connections: 1\`, default 16 KiB mbufs)."
        fi)" \
        "$(if [ "$HAVE_REDIS" = 1 ]; then echo "$(redis-server --version | awk '{print $1, $2, $3}') with \`--save '' --appendonly no\`."; fi)"
    if [ -n "$TWEM_NOTE" ]; then
        echo "$TWEM_NOTE"
    fi
    echo
    echo "Throughput: \`redis-benchmark -c $CLIENTS -n $REQUESTS -r $KEYSPACE -t set,get\`, median of $ROUNDS interleaved rounds."
    echo
    echo "| configuration | test | pipeline | rps | / (a) direct | / (c) twemproxy |"
    echo "|---|---|---:|---:|---:|---:|"
    for p in $PIPELINES; do
        for t in SET GET; do
            a=$(echo "${RUNS[direct.$t.$p]}" | median)
            c_rps=n/a
            if [ "$HAVE_TWEM" = 1 ]; then c_rps=$(echo "${RUNS[twem_sn.$t.$p]}" | median); fi
            for c in "${CONFIGS[@]}"; do
                v=$(echo "${RUNS[$c.$t.$p]}" | median)
                echo "| ${LABEL[$c]} | $t | $p | $v | $(ratio "$a" "$v") | $(ratio "$c_rps" "$v") |"
            done
        done
    done
    if [ -n "$SPREAD" ]; then
        echo
        echo "Keys per backend after the runs: $SPREAD."
    fi
    echo
    echo "Latency: \`redis-benchmark -c 1 -n $LAT_REQUESTS -r $KEYSPACE -t get\`, median of the p50 over $ROUNDS rounds."
    echo "Added p50 latency of \`shard-node proxy\` (b1 - a): **$(added_us "$lat_b1") µs**."
    echo
    echo "| configuration | p50 ms | added vs (a) µs |"
    echo "|---|---:|---:|"
    for c in "${CONFIGS[@]}"; do
        v=$(echo "${LAT[$c]}" | median 3)
        echo "| ${LABEL[$c]} | $v | $(if [ "$c" = direct ]; then echo -; else added_us "$v"; fi) |"
    done
    if [ "${#MEM_ROWS[@]}" -gt 0 ]; then
        echo
        echo "Memory per idle client connection: growth of the listening process's VmRSS while the" \
            "connections, each after one PING, stay open (measured before the throughput runs)."
        echo
        echo "| configuration | connections | RSS before KiB | RSS after KiB | KiB / connection |"
        echo "|---|---:|---:|---:|---:|"
        for row in "${MEM_ROWS[@]}"; do
            echo "| ${row//|/ | } |"
        done
    fi
} >"$report"

echo
cat "$report"
echo
echo "(markdown written to $report)"
if [ -s "$tmp/errors" ]; then
    die "$(wc -l <"$tmp/errors") redis-benchmark runs failed (messages above; their medians show as error)"
fi
