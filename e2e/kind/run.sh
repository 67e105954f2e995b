#!/usr/bin/env bash
# Multi-cluster end-to-end run on kind, for machines with a container engine (docker, or
# podman with KIND_EXPERIMENTAL_PROVIDER=podman): creates one kind cluster per region with
# zone-labelled workers, builds and loads the images, installs the chart with helm when it
# exists, and runs the scenarios marked for kind with E2E_TARGET=kind.
#
#   REGIONS="east west central"  clusters to create (default)
#   KIND_NODE_IMAGE=kindest/node:vX  node image (default: kind's own)
#   KEEP=1                            leave the clusters running afterwards
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

REGIONS=${REGIONS:-"east west central"}
TAG=e2e
OUT=target/kind
ENGINE=docker
[ "${KIND_EXPERIMENTAL_PROVIDER:-}" = podman ] && ENGINE=podman

for tool in kind "$ENGINE"; do
    command -v "$tool" >/dev/null || { echo "kind-e2e needs $tool" >&2; exit 1; }
done
make k8s-bins
HELM=target/k8s/bin/helm

cargo build --release --locked -p shard-node -p aadb-e2e
[ -f operator/src/main.rs ] && cargo build --release --locked -p aadb-operator

build_image() { # name binary entry-args
    "$ENGINE" build -q -f e2e/kind/Dockerfile --build-arg BIN="$2" --build-arg ENTRY_ARGS="$3" -t "aadb/$1:$TAG" .
}
images=(shard-node aadb-e2e-testapp)
build_image shard-node shard-node ""
build_image aadb-e2e-testapp aadb-e2e testapp
if [ -x target/release/aadb-operator ]; then
    build_image aadb-operator aadb-operator ""
    images+=(aadb-operator)
fi

mkdir -p "$OUT"
cleanup() {
    if [ -z "${KEEP:-}" ]; then
        for r in $REGIONS; do kind delete cluster --name "aadb-$r" >/dev/null 2>&1 || true; done
    fi
}
trap cleanup EXIT

for r in $REGIONS; do
    kind delete cluster --name "aadb-$r" >/dev/null 2>&1 || true
    sed "s/REGION/$r/g" e2e/kind/cluster.yaml >"$OUT/$r-cluster.yaml"
    kind create cluster --name "aadb-$r" --config "$OUT/$r-cluster.yaml" \
        --kubeconfig "$OUT/$r.kubeconfig" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s
    for i in "${images[@]}"; do
        kind load docker-image "aadb/$i:$TAG" --name "aadb-$r"
    done
    # One operator per cluster, each owning its own region (per-cluster mode).
    "$HELM" upgrade --install aadb charts/aadb-operator --kubeconfig "$OUT/$r.kubeconfig" \
        --namespace aadb-system --create-namespace --wait \
        --set image.repository=aadb/aadb-operator --set image.tag="$TAG" --set participant="$r"
done

E2E_TARGET=kind E2E_KUBECONFIG_DIR="$PWD/$OUT" E2E_REGIONS="$REGIONS" E2E_IMAGE_TAG="$TAG" \
    cargo test --locked -p aadb-e2e --features kind --test kind -- --test-threads 1
