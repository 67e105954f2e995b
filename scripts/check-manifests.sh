#!/usr/bin/env bash
# Checks the operator's Helm chart and the plain manifests, offline.
#
#   scripts/check-manifests.sh           check; exits non-zero and says what is wrong
#   scripts/check-manifests.sh --write   re-render manifests/operator/ from the chart
#
# The check:
#   - helm lint --strict of charts/aadb-operator, with the default values and with a
#     namespaced, single-participant operator (participant=east, watchNamespace=db,
#     rbac.clusterScoped=false), and with the ServiceMonitor on;
#   - renders the chart with those values, checks the arguments and RBAC objects each one must
#     have, and checks that value combinations the chart refuses are refused;
#   - checks that manifests/operator/ is what --write would produce;
#   - validates the rendered chart, manifests/operator, manifests/samples and the CRDs with
#     kubeconform in strict mode (unknown fields and duplicate keys are errors). Schemas come
#     from disk, never from the network (scripts/kube-json-schemas.py): the
#     ActiveActiveDatabase schema from the CRD's openAPIV3Schema, and the built-in kinds from
#     the OpenAPI document in the k8s.io/kubernetes module that `make k8s-bins` downloads
#     (K8S_OPENAPI=path/to/swagger.json overrides it; without it built-in kinds are only
#     parsed). Every sample must validate against the CRD; CEL rules are not evaluated.
#
# Needs helm, kubeconform and kubectl from target/k8s/bin (`make k8s-bins`) and python3.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bin=target/k8s/bin
chart=charts/aadb-operator
crd=manifests/crd/activeactivedatabases.yaml
chart_crd=$chart/crds/activeactivedatabases.yaml
operator_manifest=manifests/operator/operator.yaml
samples=manifests/samples
release=aadb
namespace=aadb-system
namespaced_values=(--set participant=east --set watchNamespace=db --set rbac.clusterScoped=false)

die() {
    echo "check-manifests: $*" >&2
    exit 1
}

for tool in helm kubeconform kubectl; do
    [ -x "$bin/$tool" ] || die "$bin/$tool is missing: run make k8s-bins"
done
command -v python3 >/dev/null || die "python3 is not installed"
helm=$bin/helm
kubeconform=$bin/kubeconform
kubectl=$bin/kubectl

# Prints manifests/operator/operator.yaml as the chart renders it with its default values.
render_operator_manifest() {
    cat <<EOF
# Rendered from charts/aadb-operator with its default values by
# \`scripts/check-manifests.sh --write\`; do not edit: change the chart and re-run that.
# Installs the operator in namespace $namespace, together with the CRD:
#
#   kubectl apply -f manifests/crd/ -f manifests/operator/
---
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    app.kubernetes.io/part-of: aadb
    # The operator pods meet the restricted Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
EOF
    "$helm" template "$release" "$chart" --namespace "$namespace"
}

case "${1:-}" in
--write)
    mkdir -p "$(dirname "$operator_manifest")"
    render_operator_manifest >"$operator_manifest.tmp"
    mv "$operator_manifest.tmp" "$operator_manifest"
    echo "check-manifests: wrote $operator_manifest"
    exit 0
    ;;
"") ;;
*)
    echo "usage: $0 [--write]" >&2
    exit 2
    ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

problems=()
problem() {
    problems+=("$*")
    echo "FAIL: $*" >&2
}

# run DESCRIPTION COMMAND...: runs the command, showing its output when it fails.
run() {
    local what=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then
        echo "ok: $what"
    else
        cat "$tmp/out" >&2
        problem "$what"
        return 1
    fi
}

echo "== helm lint"
run "helm lint, default values" "$helm" lint --strict "$chart" || true
run "helm lint, ${namespaced_values[*]}" "$helm" lint --strict "$chart" "${namespaced_values[@]}" || true
run "helm lint, --set serviceMonitor.enabled=true" "$helm" lint --strict "$chart" --set serviceMonitor.enabled=true || true

echo "== render the chart"
renders=()
render() { # NAME VALUES...
    local name=$1
    shift
    if "$helm" template "$release" "$chart" --namespace "$namespace" "$@" >"$tmp/$name.yaml" 2>"$tmp/out"; then
        echo "ok: helm template ${*:-(default values)} > $name.yaml"
        renders+=("$tmp/$name.yaml")
    else
        cat "$tmp/out" >&2
        problem "helm template ${*:-(default values)} fails"
        rm -f "$tmp/$name.yaml"
    fi
}
render default
render namespaced "${namespaced_values[@]}"
render servicemonitor --set serviceMonitor.enabled=true

# expect RENDER DESCRIPTION PATTERN: the render has a line matching the extended regex.
expect() {
    [ -f "$tmp/$1.yaml" ] || return 0
    if grep -Eq -- "$3" "$tmp/$1.yaml"; then
        echo "ok: $1 render: $2"
    else
        problem "$1 render: $2 (no line matches '$3')"
    fi
}
# expect_not RENDER DESCRIPTION PATTERN: no line of the render matches.
expect_not() {
    [ -f "$tmp/$1.yaml" ] || return 0
    if grep -Eq -- "$3" "$tmp/$1.yaml"; then
        problem "$1 render: $2 (a line matches '$3')"
    else
        echo "ok: $1 render: $2"
    fi
}
# expect_arg RENDER FLAG VALUE: the flag and its value are consecutive items of the args.
expect_arg() {
    [ -f "$tmp/$1.yaml" ] || return 0
    if awk -v flag="$2" -v value="$3" '
        { sub(/^ */, "") }
        after && ($0 == "- " value || $0 == "- \"" value "\"") { found = 1 }
        { after = ($0 == "- " flag) }
        END { exit !found }' "$tmp/$1.yaml"; then
        echo "ok: $1 render: $2 $3"
    else
        problem "$1 render: the operator is not started with $2 $3"
    fi
}
expect default "the operator is started with --leader-election" '^ *- --leader-election$'
expect_arg default --lease-namespace '$(POD_NAMESPACE)'
expect_arg default --identity '$(POD_NAME)'
expect_arg default --log-format json
expect_arg default --metrics-addr 0.0.0.0:8080
expect default "2 replicas" '^  replicas: 2$'
expect default "image ghcr.io/aadb/aadb-operator:0.1.0" '^ *image: "ghcr\.io/aadb/aadb-operator:0\.1\.0"$'
expect default "a ClusterRole" '^kind: ClusterRole$'
expect default "a ClusterRoleBinding" '^kind: ClusterRoleBinding$'
expect_not default "no --participant" '--participant'
expect_not default "no --watch-namespace" '--watch-namespace'
expect_not default "no ServiceMonitor" '^kind: ServiceMonitor$'
expect_arg namespaced --participant east
expect_arg namespaced --watch-namespace db
expect namespaced "a Role" '^kind: Role$'
expect namespaced "a RoleBinding" '^kind: RoleBinding$'
expect namespaced "objects in the watched namespace db" '^  namespace: db$'
expect servicemonitor "a ServiceMonitor" '^kind: ServiceMonitor$'

# refused DESCRIPTION VALUES...: the chart refuses to render with these values.
refused() {
    local what=$1
    shift
    if "$helm" template "$release" "$chart" --namespace "$namespace" "$@" >/dev/null 2>&1; then
        problem "the chart renders $what ($*); it must refuse"
    else
        echo "ok: refuses $what"
    fi
}
refused "namespaced RBAC without a watched namespace" --set rbac.clusterScoped=false
refused "several replicas without leader election" --set leaderElection.enabled=false
refused "a participant name that is not a DNS label" --set participant=East

echo "== $operator_manifest"
if [ ! -f "$operator_manifest" ]; then
    problem "$operator_manifest is missing: run scripts/check-manifests.sh --write"
elif render_operator_manifest >"$tmp/operator.yaml" 2>"$tmp/out"; then
    if diff -u "$operator_manifest" "$tmp/operator.yaml" >"$tmp/diff"; then
        echo "ok: $operator_manifest is rendered from the current chart"
    else
        cat "$tmp/diff" >&2
        problem "$operator_manifest is out of date with the chart (diff above): run scripts/check-manifests.sh --write"
    fi
else
    cat "$tmp/out" >&2
    problem "cannot render $operator_manifest from the chart"
fi
for f in manifests/operator/*; do
    [ "$f" = "$operator_manifest" ] || problem "$f is not rendered from the chart: manifests/operator/ holds only $(basename "$operator_manifest")"
done

echo "== schemas"
sample_files=("$samples"/*.yaml)
[ -e "${sample_files[0]}" ] || { problem "no samples in $samples"; sample_files=(); }
openapi=${K8S_OPENAPI:-}
if [ -z "$openapi" ]; then
    k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v[0-9]/ { print $2; exit }' e2e/k8s/kubernetes/go.mod)
    modcache=$(go env GOMODCACHE 2>/dev/null || true)
    modcache=${modcache:-${GOPATH:-$HOME/go}/pkg/mod}
    openapi=$modcache/k8s.io/kubernetes@$k8s_version/api/openapi-spec/swagger.json
fi
schema_args=()
if [ -f "$openapi" ]; then
    schema_args=(--openapi "$openapi")
else
    echo "note: no Kubernetes OpenAPI document at $openapi (run make k8s-bins, or set K8S_OPENAPI):" \
        "built-in kinds are only parsed, not validated" >&2
fi
to_validate=()
for f in "${renders[@]}" "$operator_manifest" "$crd" "$chart_crd"; do
    [ -f "$f" ] && to_validate+=("$f")
done
cmp -s "$crd" "$chart_crd" ||
    problem "$chart_crd differs from $crd: run make generate"
# kubectl reads YAML as the API server does (YAML 1.1) and prints JSON.
crd_jsons=()
if KUBECONFIG=/dev/null "$kubectl" patch --local -f "$crd" --type merge -p '{}' -o json >"$tmp/crd.json" 2>"$tmp/out"; then
    crd_jsons+=(--crd "$tmp/crd.json")
else
    cat "$tmp/out" >&2
    problem "$crd does not parse"
fi
scan_args=()
for f in "${to_validate[@]}" "${sample_files[@]}"; do scan_args+=(--scan "$f"); done
if python3 scripts/kube-json-schemas.py "$tmp/schemas" "${crd_jsons[@]}" "${schema_args[@]}" "${scan_args[@]}" >"$tmp/out" 2>&1; then
    echo "ok: $(grep -c '^schema ' "$tmp/out") schemas written"
else
    cat "$tmp/out" >&2
    if grep -q 'openAPIV3Schema' "$tmp/out"; then
        problem "$crd: its schema has values the API server would refuse or misread (above)"
    else
        problem "cannot build the JSON schemas (above)"
    fi
fi
location="$tmp/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json"

echo "== kubeconform: rendered chart (default.yaml, namespaced.yaml, servicemonitor.yaml above), manifests/operator, CRDs"
if [ "${#to_validate[@]}" -gt 0 ]; then
    "$kubeconform" -strict -ignore-missing-schemas -summary -schema-location "$location" "${to_validate[@]}" ||
        problem "kubeconform found invalid objects in the chart, manifests/operator or the CRDs (above)"
fi

echo "== kubeconform: samples against the CRD"
if [ "${#sample_files[@]}" -gt 0 ]; then
    # No -ignore-missing-schemas: every sample object must have a schema.
    "$kubeconform" -strict -summary -schema-location "$location" "${sample_files[@]}" ||
        problem "kubeconform found invalid samples in $samples (above)"
fi

echo
if [ "${#problems[@]}" -gt 0 ]; then
    echo "check-manifests: ${#problems[@]} problem(s):" >&2
    for p in "${problems[@]}"; do echo "  - $p" >&2; done
    exit 1
fi
echo "check-manifests: chart, manifests and samples are valid"
