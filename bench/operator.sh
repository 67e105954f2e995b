#!/usr/bin/env bash
# Operator benchmarks (part of `make bench`; see docs/development.md; targets in
# bench/RESULTS.md), run by the example operator/examples/operator_bench.rs on three local
# clusters (loopback indexes 12-14):
# 1. apply to Ready of a new database, 3 regions x 3 shards x 1 replica and 1 x 1 x 1
#    (min/median/max over BENCH_READY_ROUNDS rounds, default 3);
# 2. failover: BENCH_FAILOVER_KILLS (default 20) kill -9 of a primary, time to the first write
#    through the region endpoint (p50/p90/p99/max), promotions versus restarts, and writes
#    acknowledged with WAIT 1 that were lost;
# 3. rolls: BENCH_ROLLS (default 10) cpu-request changes of a 1 x 1 x 1 database, each rolled by
#    the operator with a planned switchover: time to rolled, longest pause between writes the
#    primary answered OK, and those writes lost;
# 4. throughput (redis-benchmark SET/GET, without pipelining and -P 16) at the region endpoint
#    of a 1 x 1 x 1 database with 2 proxies, against its primary shard-node directly.
# Prints human-readable lines, then `RESULT <name> <value> <unit>` lines; the whole output is
# also written to $BENCH_OUT/operator.txt and the run's logs stay in $BENCH_OUT/operator-run.
# Needs the Kubernetes binaries (`make k8s-bins`). Builds shard-node, aadb-operator and the
# example in release mode unless BENCH_SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT_DIR=${BENCH_OUT:-target/bench}
K8S_BIN_DIR=${AADB_K8S_BIN_DIR:-target/k8s/bin}
for b in kube-apiserver kube-controller-manager kube-scheduler etcd; do
    [ -x "$K8S_BIN_DIR/$b" ] || {
        echo "bench: $K8S_BIN_DIR/$b is missing: run \`make k8s-bins\` first" >&2
        exit 1
    }
done
[ -f manifests/crd/activeactivedatabases.yaml ] || {
    echo "bench: manifests/crd/activeactivedatabases.yaml is missing: run \`make generate\`" >&2
    exit 1
}

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release -p shard-node -p aadb-operator
    cargo build --release -p aadb-operator --example operator_bench
fi

export AADB_SHARD_NODE_BIN=${AADB_SHARD_NODE_BIN:-$PWD/target/release/shard-node}
export AADB_OPERATOR_BIN=${AADB_OPERATOR_BIN:-$PWD/target/release/aadb-operator}
export BENCH_OUT=$OUT_DIR
for b in "$AADB_SHARD_NODE_BIN" "$AADB_OPERATOR_BIN" target/release/examples/operator_bench; do
    [ -x "$b" ] || { echo "bench: $b is missing (run without BENCH_SKIP_BUILD=1)" >&2; exit 1; }
done
mkdir -p "$OUT_DIR"
echo "operator benchmarks on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ)," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" | tee "$OUT_DIR/operator.txt"
target/release/examples/operator_bench 2>&1 | tee -a "$OUT_DIR/operator.txt"
