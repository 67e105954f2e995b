#!/usr/bin/env bash
# The local active-active demo: three local clusters, the operator, a three-region database,
# writes in every region converging.
#
#   scripts/demo.sh up     (make demo)  build, start everything, show convergence, leave it running
#   scripts/demo.sh down   (make down)  stop everything `up` started; succeeds when nothing runs
#
# `up`:
#   1. builds shard-node, aadb-operator and aadb-e2e (debug) and the Kubernetes binaries
#      (scripts/k8s-bins.sh, cached);
#   2. starts clusters east, west and central (three zones each) with
#      `aadb-e2e up --clusters 3 --zones 3 --dir target/demo/fleet` (cluster indexes 0-2: pod
#      networks 10.128-130.0.0/16, or loopback 127.10-12.0.0/16 without CAP_NET_ADMIN) and
#      copies their kubeconfigs to target/demo/<cluster>.kubeconfig;
#   3. installs the CRD in every cluster; creates the Secrets west-kubeconfig and
#      central-kubeconfig (key `kubeconfig`) in namespace default of east;
#   4. runs aadb-operator against east in its own session (it outlives the calling shell):
#      pid in target/demo/operator.pid, log in target/demo/operator.log;
#   5. applies manifests/samples/three-regions.yaml (database `demo`), waits until it is Ready,
#      writes target/demo/endpoints (one `REGION HOST:PORT` line per region, the LoadBalancer
#      ingress of Service demo-<region>);
#   6. in every region INCRBY demo:visits by a different amount, SADD the region to
#      demo:regions and SET demo:greeting, then polls every region until all return the same
#      values and prints them;
#   7. writes 300 keys through each region endpoint (the proxies), prints how many keys each
#      shard of each region holds (they spread over both shards) and waits until every region
#      holds all of them.
#   A demo that is already fully running is left alone (`up` says so and exits 0); the remains
#   of a broken or interrupted one are stopped first. A failing step prints one sentence and
#   exits non-zero after stopping what this run started, unless AADB_DEMO_KEEP=1.
#
# `down` stops the operator (SIGTERM, SIGKILL after AADB_DEMO_STOP_GRACE seconds, default 20),
# runs `aadb-e2e down --dir target/demo/fleet` and removes the state under target/demo except
# the logs (*.log, kept for reading until the next `up` replaces them).
#
# Environment: CARGO (default cargo), LOCKED (e.g. --locked, as the Makefile passes under CI),
# AADB_DEMO_KEEP=1, AADB_DEMO_METRICS_PORT (operator /metrics port; default a free one),
# AADB_DEMO_READY_TIMEOUT (seconds, default 180). Needs redis-cli (redis-tools), curl, python3.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

demo="$root/target/demo"
fleet="$demo/fleet"
bin="$root/target/debug"
kubectl="$root/target/k8s/bin/kubectl"
sample="$root/manifests/samples/three-regions.yaml"
crd="$root/manifests/crd/activeactivedatabases.yaml"
db=demo
ns=default
regions=(east west central)
# INCRBY amounts per region (in the order of `regions`): the converged sum shows each one.
amounts=(100 20 3)
ready_timeout=${AADB_DEMO_READY_TIMEOUT:-180}
stop_grace=${AADB_DEMO_STOP_GRACE:-20}

cargo=${CARGO:-cargo}
locked=${LOCKED:-}

# --- helpers ---------------------------------------------------------------------------------

# Each step's line ends with how long the previous step took and the time since the start.
demo_t0=$(date +%s)
say_t0=$demo_t0
say() {
    local now
    now=$(date +%s)
    if [ "$say_t0" != "$demo_t0" ] || [ "$now" != "$demo_t0" ]; then
        printf '    (%ss; %ss in all)\n' "$((now - say_t0))" "$((now - demo_t0))"
    fi
    say_t0=$now
    printf '==> %s\n' "$*"
}

# What the run is doing, for the message when something fails without a message of its own.
step="starting"
# Set once this run has started clusters or the operator, so a failure stops them.
started_something=""
failed_message=""
# A background `kubectl wait`, stopped when the script exits.
waiter=""

fail() {
    failed_message="$*"
    echo "demo: $*" >&2
    exit 1
}

# The pid in file $1 if it names a live process whose command line contains $2.
live_pid() {
    local file=$1 name=$2 pid
    [ -f "$file" ] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
    echo "$pid"
}

operator_pid() { live_pid "$demo/operator.pid" aadb-operator; }
fleet_pid() { live_pid "$fleet/aadb-e2e.pid" aadb-e2e; }

kc() {
    local cluster=$1
    shift
    "$kubectl" --kubeconfig "$demo/$cluster.kubeconfig" "$@"
}

# Waits until pid $1 exits, at most $2 seconds; fails if it is still alive.
wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

stop_operator() {
    local pid
    pid=$(operator_pid) || {
        rm -f "$demo/operator.pid"
        return 0
    }
    echo "stopping aadb-operator (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "$stop_grace"; then
        echo "aadb-operator (pid $pid) did not stop in ${stop_grace}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" 10 || return 1
    fi
    rm -f "$demo/operator.pid"
}

stop_fleet() {
    if [ -x "$bin/aadb-e2e" ]; then
        "$bin/aadb-e2e" down --dir "$fleet" </dev/null
        return
    fi
    # Without the binary (deleted target/debug) stop the serving process by its pid; it stops
    # the control planes and every pod.
    local pid
    pid=$(fleet_pid) || return 0
    echo "stopping the clusters (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" 60; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" 10 || return 1
    fi
}

# Processes still running from the demo (pods, control-plane components, the operator): one of
# the programs the demo runs, whose working directory or command line is under target/demo.
leftover_pids() {
    local d p cwd
    for d in /proc/[0-9]*; do
        p=${d#/proc/}
        case "$(cat "$d/comm" 2>/dev/null)" in
        shard-node | etcd | kube-apiserver | kube-controll* | kube-scheduler | aadb-e2e | aadb-operator | setpriv) ;;
        *) continue ;;
        esac
        cwd=$(readlink "$d/cwd" 2>/dev/null) || continue
        if [[ "$cwd" == "$demo"/* ]] || tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -q -- "$demo/"; then
            echo "$p"
        fi
    done
}

# Removes everything under target/demo except the logs.
clean_state() {
    [ -d "$demo" ] || return 0
    # Pod volumes hold data (shard-node's effect logs), not logs.
    rm -rf "$fleet"/*/agent/volumes
    find "$demo" -mindepth 1 \( -type f -o -type l -o -type s -o -type p \) ! -name '*.log' -delete 2>/dev/null || true
    find "$demo" -mindepth 1 -depth -type d -empty -delete 2>/dev/null || true
}

teardown() {
    local ok=0 left
    stop_operator || ok=1
    stop_fleet || ok=1
    left=$(leftover_pids)
    if [ -n "$left" ]; then
        echo "stopping processes left from the demo: $(echo $left)"
        # shellcheck disable=SC2086
        kill -TERM $left 2>/dev/null || true
        for p in $left; do wait_exit "$p" 10 || kill -KILL "$p" 2>/dev/null || true; done
        left=$(leftover_pids)
        [ -z "$left" ] || ok=1
    fi
    clean_state
    return $ok
}

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$waiter" ]; then kill "$waiter" 2>/dev/null || true; fi
    [ "$rc" -ne 0 ] || return 0
    if [ -z "$failed_message" ]; then
        echo "demo: $step failed (exit $rc)." >&2
    fi
    if [ -n "$started_something" ]; then
        if [ "${AADB_DEMO_KEEP:-}" = 1 ]; then
            echo "demo: AADB_DEMO_KEEP=1: leaving it running; logs in $demo; stop it with 'make down'." >&2
        else
            echo "demo: stopping what this run started (AADB_DEMO_KEEP=1 keeps it); logs stay in $demo." >&2
            teardown >&2 || true
        fi
    fi
    exit "$rc"
}

print_usage_hints() {
    echo
    local secret
    secret=$(cat "$demo/password-secret" 2>/dev/null || echo "default/demo")
    echo "The password is generated by the operator in Secret $secret (key password):"
    echo "  export REDISCLI_AUTH=\$(target/k8s/bin/kubectl --kubeconfig target/demo/east.kubeconfig -n ${secret%/*} get secret ${secret#*/} -o jsonpath='{.data.password}' | base64 -d)"
    echo "Connect to a region:"
    while read -r region addr; do
        printf '  %-8s redis-cli -h %s -p %s\n' "$region" "${addr%:*}" "${addr##*:}"
    done <"$demo/endpoints"
    echo "Watch the database:"
    echo "  target/k8s/bin/kubectl --kubeconfig target/demo/east.kubeconfig get aadb -w"
    echo "Operator: log target/demo/operator.log, metrics http://$(cat "$demo/operator.addr")/metrics"
    echo "Stop everything:"
    echo "  make down"
}

# --- down ------------------------------------------------------------------------------------

cmd_down() {
    if ! operator_pid >/dev/null && ! fleet_pid >/dev/null && [ -z "$(leftover_pids)" ]; then
        clean_state
        echo "no demo running"
        return 0
    fi
    if ! teardown; then
        echo "demo: some processes of the demo did not stop: $(echo $(leftover_pids))" >&2
        return 1
    fi
    echo "demo stopped; logs kept in target/demo"
}

# --- up --------------------------------------------------------------------------------------

redis() {
    # One command to one region; prints the reply; fails on a connection or error reply.
    local addr=$1
    shift
    timeout 5 redis-cli -e -h "${addr%:*}" -p "${addr##*:}" "$@" </dev/null 2>&1
}

cmd_up() {
    local t0=$SECONDS r i ip out

    if operator_pid >/dev/null && fleet_pid >/dev/null && [ -f "$demo/ready" ] && [ -f "$demo/endpoints" ]; then
        echo "a demo is already running (operator pid $(operator_pid), clusters pid $(fleet_pid)); 'make down' stops it"
        print_usage_hints
        return 0
    fi
    if operator_pid >/dev/null || fleet_pid >/dev/null || [ -n "$(leftover_pids)" ]; then
        say "stopping the remains of an earlier demo"
        teardown || fail "could not stop the remains of an earlier demo; run 'make down' and look at target/demo/*.log."
    fi

    for tool in redis-cli curl python3 setsid; do
        command -v "$tool" >/dev/null || fail "$tool is not installed (the demo needs redis-cli from redis-tools, curl, python3 and setsid from util-linux)."
    done

    step="building"
    say "building shard-node, aadb-operator and aadb-e2e"
    # shellcheck disable=SC2086
    "$cargo" build $locked -p shard-node -p aadb-operator -p aadb-e2e </dev/null ||
        fail "building shard-node, aadb-operator and aadb-e2e failed (see the compiler output above)."
    say "Kubernetes binaries (make k8s-bins, cached)"
    K8S_BINS_CLUSTER_ONLY=1 bash "$root/scripts/k8s-bins.sh" </dev/null ||
        fail "building the Kubernetes binaries (scripts/k8s-bins.sh) failed."
    echo

    mkdir -p "$demo"
    rm -rf "$fleet"
    rm -f "$demo/ready" "$demo/endpoints" "$demo/operator.pid" "$demo/operator.addr" "$demo"/*.kubeconfig

    step="starting the clusters"
    say "starting clusters ${regions[*]} (three zones each)"
    started_something=1
    # The pods run the binaries just built (a stale target/release/shard-node would otherwise win).
    AADB_SHARD_NODE_BIN="$bin/shard-node" AADB_OPERATOR_BIN="$bin/aadb-operator" AADB_E2E_BIN="$bin/aadb-e2e" \
        "$bin/aadb-e2e" up --clusters "${#regions[@]}" --zones 3 --dir "$fleet" --timeout 300 </dev/null ||
        fail "the local clusters did not start (log: target/demo/fleet/aadb-e2e.log)."
    [ -f "$fleet/ready" ] || fail "aadb-e2e up returned but $fleet/ready is missing."
    for r in "${regions[@]}"; do
        [ -f "$fleet/$r.kubeconfig" ] || fail "aadb-e2e up wrote no kubeconfig for cluster $r."
        cp "$fleet/$r.kubeconfig" "$demo/$r.kubeconfig"
    done

    step="installing the CRD"
    say "installing the CRD in every cluster"
    for r in "${regions[@]}"; do
        # (kubectl's warnings about integer formats of the schema are noise here.)
        out=$(kc "$r" apply -f "$crd" 2>&1) || {
            echo "$out" >&2
            fail "applying the CRD in cluster $r failed."
        }
    done
    for r in "${regions[@]}"; do
        kc "$r" wait --for condition=established --timeout=60s crd/activeactivedatabases.aadb.dev >/dev/null ||
            fail "the CRD did not become established in cluster $r within 60s."
    done

    step="creating the kubeconfig Secrets"
    say "Secrets west-kubeconfig and central-kubeconfig in east (namespace $ns)"
    for r in "${regions[@]:1}"; do
        kc east -n "$ns" create secret generic "$r-kubeconfig" --from-file=kubeconfig="$demo/$r.kubeconfig" \
            --dry-run=client -o yaml | kc east apply -f - >/dev/null ||
            fail "creating Secret $r-kubeconfig in east failed."
    done

    step="starting the operator"
    local port=${AADB_DEMO_METRICS_PORT:-}
    if [ -z "$port" ]; then
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') ||
            fail "could not find a free port for the operator's metrics."
    fi
    local addr="127.0.0.1:$port"
    echo "$addr" >"$demo/operator.addr"
    say "starting aadb-operator against east (metrics $addr, log target/demo/operator.log)"
    echo "--- $(date -u +%FT%TZ) started by scripts/demo.sh" >"$demo/operator.log"
    # Its own session, so that it outlives make and the terminal; setsid execs in place (the
    # background subshell is not a group leader), so $! is the operator's pid.
    (
        RUST_LOG=${RUST_LOG:-info,aadb_operator=debug,kube_client=warn,kube_runtime=warn} \
            exec setsid "$bin/aadb-operator" --kubeconfig "$demo/east.kubeconfig" --metrics-addr "$addr" \
            --identity demo-operator
    ) </dev/null >>"$demo/operator.log" 2>&1 &
    echo $! >"$demo/operator.pid"
    local deadline=$((SECONDS + 60))
    until curl -fsS -m 2 "http://$addr/readyz" >/dev/null 2>&1; do
        if ! operator_pid >/dev/null; then
            tail -n 20 "$demo/operator.log" >&2 || true
            fail "aadb-operator exited right after starting (log: target/demo/operator.log)."
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "aadb-operator did not become ready within 60s (log: target/demo/operator.log)."
        sleep 0.3
    done

    step="applying the database"
    say "applying manifests/samples/three-regions.yaml (database $db)"
    kc east apply -f "$sample" || fail "applying manifests/samples/three-regions.yaml in east failed."

    step="waiting for the database"
    say "waiting until $db is Ready (at most ${ready_timeout}s)"
    local wait_started=$SECONDS
    kc east -n "$ns" wait --for=condition=Ready "aadb/$db" --timeout="${ready_timeout}s" >/dev/null 2>&1 &
    waiter=$!
    # The columns of `kubectl get aadb` (without AGE) and the Ready condition, printed whenever
    # they change.
    local fields='{.status.phase}|{.status.regions}|{.spec.shards}|{.status.readyShards}|{range .status.conditions[?(@.type=="Ready")]}{.status}|{.message}{end}'
    local last="" line phase nregions nshards readyshards ready message
    printf '  %5s  %-13s %-8s %-7s %-13s %-6s %s\n' TIME PHASE REGIONS SHARDS "READY SHARDS" READY MESSAGE
    while kill -0 "$waiter" 2>/dev/null; do
        line=$(kc east -n "$ns" get aadb "$db" -o jsonpath="$fields" 2>/dev/null) || line=""
        if [ -n "$line" ] && [ "$line" != "$last" ]; then
            IFS='|' read -r phase nregions nshards readyshards ready message <<<"$line"
            printf '  %4ss  %-13s %-8s %-7s %-13s %-6s %s\n' "$((SECONDS - wait_started))" "${phase:--}" "${nregions:--}" \
                "${nshards:--}" "${readyshards:--}" "${ready:--}" "${message:-}"
            last=$line
        fi
        operator_pid >/dev/null || fail "aadb-operator exited while the database was starting (log: target/demo/operator.log)."
        sleep 0.5
    done
    wait "$waiter" || {
        waiter=""
        kc east -n "$ns" get aadb "$db" -o jsonpath='{range .status.conditions[*]}  {.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 || true
        fail "database $db was not Ready within ${ready_timeout}s (conditions above; operator log: target/demo/operator.log)."
    }
    waiter=""
    kc east -n "$ns" get aadb "$db"
    echo "Ready after $((SECONDS - wait_started))s"

    step="reading the password"
    # No spec.auth in the sample: the operator generated the password of the default user in
    # the Secret the status names.
    local secret key
    secret=$(kc east -n "$ns" get aadb "$db" -o jsonpath='{.status.passwordSecretRef.name}')
    key=$(kc east -n "$ns" get aadb "$db" -o jsonpath='{.status.passwordSecretRef.key}')
    [ -n "$secret" ] || fail "the status of $db does not name its password Secret."
    REDISCLI_AUTH=$(kc east -n "$ns" get secret "$secret" -o jsonpath="{.data.${key:-password}}" | base64 -d) ||
        fail "cannot read the password from Secret $ns/$secret."
    [ -n "$REDISCLI_AUTH" ] || fail "Secret $ns/$secret holds no password under '${key:-password}'."
    export REDISCLI_AUTH
    echo "$ns/$secret" >"$demo/password-secret"
    echo "the password of the default user is in Secret $ns/$secret (key ${key:-password})"

    step="reading the endpoints"
    local -a addrs=()
    : >"$demo/endpoints.tmp"
    for r in "${regions[@]}"; do
        deadline=$((SECONDS + 60))
        until ip=$(kc "$r" -n "$ns" get service "$db-$r" -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null) && [ -n "$ip" ]; do
            [ "$SECONDS" -lt "$deadline" ] || fail "Service $db-$r in cluster $r has no LoadBalancer address after 60s."
            sleep 0.5
        done
        addrs+=("$ip:6379")
        echo "$r $ip:6379" >>"$demo/endpoints.tmp"
    done
    mv "$demo/endpoints.tmp" "$demo/endpoints"
    echo
    say "endpoints (target/demo/endpoints)"
    sed 's/^/  /' "$demo/endpoints"

    step="writing in every region"
    echo
    say "writing in every region at the same time"
    local expect_sum=0
    local -a writers=()
    for i in "${!regions[@]}"; do
        r=${regions[$i]}
        expect_sum=$((expect_sum + amounts[i]))
        printf 'INCRBY demo:visits %s\nSADD demo:regions %s\nSET demo:greeting "hello from %s"\n' "${amounts[$i]}" "$r" "$r" |
            timeout 10 redis-cli -h "${addrs[$i]%:*}" -p "${addrs[$i]##*:}" >"$demo/write-$r.out" 2>&1 &
        writers+=($!)
    done
    for i in "${!regions[@]}"; do
        r=${regions[$i]}
        wait "${writers[$i]}" || true
        local -a reply=()
        mapfile -t reply <"$demo/write-$r.out"
        rm -f "$demo/write-$r.out"
        # redis-cli reading commands from stdin exits 0 even on errors: check every reply.
        if ! [[ "${reply[0]:-}" =~ ^[0-9]+$ && "${reply[1]:-}" =~ ^[01]$ && "${reply[2]:-}" == OK ]]; then
            fail "writing in region $r (${addrs[$i]}) failed: $(echo "${reply[@]}")"
        fi
        printf '  %-8s INCRBY demo:visits %-3s -> %-4s SADD demo:regions %-7s -> %s   SET demo:greeting "hello from %s" -> %s\n' \
            "$r" "${amounts[$i]}" "${reply[0]}" "$r" "${reply[1]}" "$r" "${reply[2]}"
    done

    step="waiting for convergence"
    echo
    say "waiting until every region returns the same values (at most 60s)"
    local conv_started=$SECONDS expect_set
    expect_set=$(printf '%s\n' "${regions[@]}" | sort | paste -sd, -)
    local -a visits=() members=() greeting=()
    deadline=$((SECONDS + 60))
    while :; do
        local same=1
        for i in "${!regions[@]}"; do
            visits[i]=$(redis "${addrs[$i]}" GET demo:visits) || visits[i]="?"
            members[i]=$(redis "${addrs[$i]}" SMEMBERS demo:regions | sort | paste -sd, -) || members[i]="?"
            greeting[i]=$(redis "${addrs[$i]}" GET demo:greeting) || greeting[i]="?"
        done
        for i in "${!regions[@]}"; do
            if [ "${visits[$i]}" != "$expect_sum" ] || [ "${members[$i]}" != "$expect_set" ] || [ "${greeting[$i]}" != "${greeting[0]}" ]; then
                same=""
            fi
        done
        [ -z "$same" ] || break
        if [ "$SECONDS" -ge "$deadline" ]; then
            for i in "${!regions[@]}"; do
                printf '  %-8s visits=%s regions=%s greeting=%s\n' "${regions[$i]}" "${visits[$i]}" "${members[$i]}" "${greeting[$i]}" >&2
            done
            fail "the regions did not converge within 60s (values above; pod logs under target/demo/fleet/<cluster>/)."
        fi
        sleep 0.2
    done
    echo "converged after $((SECONDS - conv_started))s: every region read back the same values"
    echo
    printf '  %-8s %-18s %-12s %-20s %s\n' REGION ENDPOINT demo:visits demo:regions demo:greeting
    for i in "${!regions[@]}"; do
        printf '  %-8s %-18s %-12s %-20s %s\n' "${regions[$i]}" "${addrs[$i]}" "${visits[$i]}" "${members[$i]}" "${greeting[$i]}"
    done
    echo "  (counter: $(IFS=+; echo "${amounts[*]}") = $expect_sum from concurrent INCRBYs; set: union of the SADDs; string: one write wins everywhere)"

    step="writing keys over the shards"
    echo
    local per_region=300
    say "writing $per_region keys through each region endpoint (the proxies route them by hash slot)"
    for i in "${!regions[@]}"; do
        r=${regions[$i]}
        out=$(for ((k = 1; k <= per_region; k++)); do echo "SET demo:key:$r:$k $k"; done |
            timeout 20 redis-cli -h "${addrs[$i]%:*}" -p "${addrs[$i]##*:}" 2>&1) || true
        local oks
        oks=$(grep -c '^OK$' <<<"$out" || true)
        [ "$oks" = "$per_region" ] || fail "writing keys in region $r (${addrs[$i]}): $oks of $per_region answered OK: $(grep -v '^OK$' <<<"$out" | head -3 | paste -sd' ' -)"
    done
    local expect_keys=$((3 + per_region * ${#regions[@]})) shards
    shards=$(kc east -n "$ns" get aadb "$db" -o jsonpath='{.spec.shards}')
    deadline=$((SECONDS + 60))
    local -a totals=()
    while :; do
        local all=1
        for i in "${!regions[@]}"; do
            totals[i]=$(redis "${addrs[$i]}" DBSIZE) || totals[i]="?"
            [ "${totals[$i]}" = "$expect_keys" ] || all=""
        done
        [ -z "$all" ] || break
        if [ "$SECONDS" -ge "$deadline" ]; then
            fail "the regions do not all hold $expect_keys keys after 60s: $(IFS=' '; echo "${totals[*]}") (${regions[*]})"
        fi
        sleep 0.2
    done
    echo "every region holds all $expect_keys keys; keys per shard (DBSIZE of each shard's primary):"
    for r in "${regions[@]}"; do
        local line="" s sip n
        for ((s = 0; s < shards; s++)); do
            sip=$(kc "$r" -n "$ns" get service "$db-$r-$s" -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null) || sip=""
            n=$( [ -n "$sip" ] && redis "$sip:6379" DBSIZE || echo "?")
            line+=$(printf '  shard %s: %-5s' "$s" "$n")
        done
        printf '  %-8s%s\n' "$r" "$line"
    done

    echo ready >"$demo/ready"
    started_something=""
    step="done"
    echo
    say "demo running (started in $((SECONDS - t0))s)"
    print_usage_hints
}

trap on_exit EXIT
trap 'fail "interrupted."' INT TERM

case "${1:-up}" in
up) cmd_up ;;
down) cmd_down ;;
*)
    echo "usage: $0 [up|down]" >&2
    exit 2
    ;;
esac
