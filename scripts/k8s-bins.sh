#!/usr/bin/env bash
# Builds the pinned upstream Kubernetes binaries and tools the end-to-end tests run, and links
# them at target/k8s/bin/ (a path scripts and tests rely on):
#
#   kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl
#                                                                  e2e/k8s/kubernetes/go.mod
#   etcd                                                           e2e/k8s/etcd/go.mod
#   helm kubeconform                                               go install <pkg>@<version>
#
# The binaries live in a cache outside the repository keyed by the Kubernetes version
# ($AADB_CACHE_DIR, default ~/.cache/aadb, then k8s-<version>/bin). Each group is rebuilt only
# when its inputs change (go.mod, go.sum, versions, flags, Go version), so a second run only
# checks stamps and links. Concurrent runs serialize on a lock in the cache directory.
#
# Environment: GOFLAGS is honoured (e.g. GOFLAGS=-p=1 to build with one job); AADB_CACHE_DIR
# moves the cache; K8S_BINS_LINK_DIR moves the links (default <repo>/target/k8s/bin);
# K8S_BINS_CLUSTER_ONLY=1 builds only what local clusters need (everything but helm and
# kubeconform, which the chart checks use): what `make demo` asks for, so a first demo
# starts sooner; `make test` builds the rest.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
k8s_mod="$root/e2e/k8s/kubernetes"
etcd_mod="$root/e2e/k8s/etcd"
helm_version=v3.22.0
kubeconform_version=v0.8.0
# Bump when the build flags below change, so every cached binary is rebuilt.
recipe=1

die() {
    echo "k8s-bins: $*" >&2
    exit 1
}

command -v go >/dev/null || die "go is not installed (Go 1.26 or later is needed)"
command -v flock >/dev/null || die "flock (util-linux) is not installed"

# The pinned versions come from the wrapper modules: their go.mod files are the truth.
mod_version() {
    awk -v m="$2" '$1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' "$1/go.mod"
}
k8s_version=$(mod_version "$k8s_mod" k8s.io/kubernetes)
etcd_version=$(mod_version "$etcd_mod" go.etcd.io/etcd/server/v3)
[ -n "$k8s_version" ] || die "no k8s.io/kubernetes version in $k8s_mod/go.mod"
[ -n "$etcd_version" ] || die "no go.etcd.io/etcd/server/v3 version in $etcd_mod/go.mod"

cache_root=${AADB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aadb}
cache="$cache_root/k8s-$k8s_version"
bin="$cache/bin"
link_dir=${K8S_BINS_LINK_DIR:-$root/target/k8s/bin}
mkdir -p "$bin" "$cache/stamps" "$link_dir"

exec 9>"$cache/.lock"
flock 9

go_version=$(go env GOVERSION)

# stamp NAME INPUT... prints the hash of the inputs (file contents or literal strings).
stamp_of() {
    local x
    for x in "$@"; do
        if [ -f "$x" ]; then cat "$x"; else printf '%s\n' "$x"; fi
    done | sha256sum | cut -d' ' -f1
}

# up_to_date NAME HASH BIN...: the stamp matches and every binary is present.
up_to_date() {
    local name=$1 hash=$2 b
    shift 2
    [ "$(cat "$cache/stamps/$name" 2>/dev/null)" = "$hash" ] || return 1
    for b in "$@"; do
        [ -x "$bin/$b" ] || return 1
    done
}

# Progress of a cold build: which component, how many remain, and the time so far. A ticker
# prints the elapsed time every 30 s while a component builds (Go prints nothing meanwhile).
total_steps=0
done_steps=0
build_t0=$(date +%s)
ticker=""
stop_ticker() {
    if [ -n "$ticker" ]; then
        kill "$ticker" 2>/dev/null || true
        wait "$ticker" 2>/dev/null || true
        ticker=""
    fi
}
trap stop_ticker EXIT

timed() {
    local what=$1 t0
    shift
    t0=$(date +%s)
    done_steps=$((done_steps + 1))
    echo "k8s-bins: [$done_steps/$total_steps] building $what ($(($(date +%s) - build_t0))s so far)"
    (
        while sleep 30; do
            echo "k8s-bins: [$done_steps/$total_steps] still building $what: $(($(date +%s) - t0))s"
        done
    ) &
    ticker=$!
    "$@"
    stop_ticker
    echo "k8s-bins: [$done_steps/$total_steps] built $what in $(($(date +%s) - t0))s"
}

# Kubernetes: the version is stamped the way hack/lib/version.sh does, or the server reports
# v0.0.0 and charts with a kubeVersion refuse to install.
kube_cmds=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)

build_kubernetes_ldflags() {
    local minor build_date key val
    minor=$(echo "$k8s_version" | cut -d. -f2)
    build_date=$(cd "$k8s_mod" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
    local flags=()
    for kv in "gitVersion=$k8s_version" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" \
        "buildDate=${build_date:-1970-01-01T00:00:00Z}"; do
        key=${kv%%=*}
        val=${kv#*=}
        flags+=("-X" "k8s.io/component-base/version.$key=$val" "-X" "k8s.io/client-go/pkg/version.$key=$val")
    done
    echo "-s -w ${flags[*]}"
}

# One component at a time, so progress can be shown; Go's build cache shares the packages
# they have in common, so this costs no more than one command building all four.
build_kube_cmd() {
    local cmd=$1 ldflags=$2 tmp
    tmp=$(mktemp -d "$cache/build.XXXXXX")
    (cd "$k8s_mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    mv -f "$tmp/$cmd" "$bin/$cmd"
    rmdir "$tmp"
}

build_etcd() {
    local tmp
    tmp=$(mktemp -d "$cache/build.XXXXXX")
    (cd "$etcd_mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
    mv -f "$tmp/etcd" "$bin/etcd"
    rmdir "$tmp"
}

# go install PKG@VERSION into a temporary GOBIN, then move the binary into place.
go_install() {
    local name=$1 pkg=$2 ldflags=$3 tmp
    tmp=$(mktemp -d "$cache/build.XXXXXX")
    (cd "$cache" && GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "$pkg")
    mv -f "$tmp/$name" "$bin/$name"
    rm -rf "$tmp"
}

k8s_hash=$(stamp_of "$recipe" "$go_version" "$k8s_mod/go.mod" "$k8s_mod/go.sum")
etcd_hash=$(stamp_of "$recipe" "$go_version" "$etcd_mod/go.mod" "$etcd_mod/go.sum")
helm_hash=$(stamp_of "$recipe" "$go_version" "helm $helm_version")
kubeconform_hash=$(stamp_of "$recipe" "$go_version" "kubeconform $kubeconform_version")
up_to_date kubernetes "$k8s_hash" "${kube_cmds[@]}" || total_steps=$((total_steps + ${#kube_cmds[@]}))
up_to_date etcd "$etcd_hash" etcd || total_steps=$((total_steps + 1))
tools=(helm kubeconform)
if [ "${K8S_BINS_CLUSTER_ONLY:-0}" = 1 ]; then
    tools=()
fi
for tool in "${tools[@]}"; do
    tool_hash=${tool}_hash
    up_to_date "$tool" "${!tool_hash}" "$tool" || total_steps=$((total_steps + 1))
done
if [ "$total_steps" -gt 0 ]; then
    echo "k8s-bins: $total_steps components to build with $(go version | cut -d' ' -f3) (a cold build takes 10-20 minutes on 2 cores)"
fi

h=$k8s_hash
if ! up_to_date kubernetes "$h" "${kube_cmds[@]}"; then
    ldflags=$(build_kubernetes_ldflags)
    for cmd in "${kube_cmds[@]}"; do
        timed "$cmd $k8s_version" build_kube_cmd "$cmd" "$ldflags"
    done
    echo "$h" >"$cache/stamps/kubernetes"
fi

h=$etcd_hash
if ! up_to_date etcd "$h" etcd; then
    timed "etcd $etcd_version" build_etcd
    echo "$h" >"$cache/stamps/etcd"
fi

h=$helm_hash
if [ ${#tools[@]} -gt 0 ] && ! up_to_date helm "$h" helm; then
    k8s_minor=$(echo "$k8s_version" | cut -d. -f2)
    timed "helm $helm_version" go_install helm "helm.sh/helm/v3/cmd/helm@$helm_version" \
        "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
    echo "$h" >"$cache/stamps/helm"
fi

h=$kubeconform_hash
if [ ${#tools[@]} -gt 0 ] && ! up_to_date kubeconform "$h" kubeconform; then
    timed "kubeconform $kubeconform_version" go_install kubeconform \
        "github.com/yannh/kubeconform/cmd/kubeconform@$kubeconform_version" \
        "-s -w -X main.version=$kubeconform_version"
    echo "$h" >"$cache/stamps/kubeconform"
fi

# Check what was built (cheap), then link it where scripts and tests look.
"$bin/kube-apiserver" --version | grep -x "Kubernetes $k8s_version" >/dev/null ||
    die "kube-apiserver does not report $k8s_version: $("$bin/kube-apiserver" --version)"
"$bin/etcd" --version | grep "etcd Version: ${etcd_version#v}" >/dev/null ||
    die "etcd does not report ${etcd_version#v}"

names=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl etcd "${tools[@]}")
for b in "${names[@]}"; do
    ln -sfn "$bin/$b" "$link_dir/$b"
done
{
    echo "K8S_VERSION=$k8s_version"
    echo "ETCD_VERSION=$etcd_version"
    echo "HELM_VERSION=$helm_version"
    echo "KUBECONFORM_VERSION=$kubeconform_version"
} >"$link_dir/../versions.env"
echo "k8s-bins: Kubernetes $k8s_version, etcd $etcd_version, helm $helm_version, kubeconform $kubeconform_version in $link_dir -> $bin"
