#!/usr/bin/env bash
# Installs the system packages the tests and the demo need, once, on Debian or Ubuntu:
#
#   redis-server redis-tools   the reference server and the real clients the tests compare with
#   python3 curl               the demo's helpers and checks
#   python3-venv               a virtual environment for redis-py (the cluster-client test)
#   tmux                       the interactive redis-cli test
#   util-linux (flock, setsid) the Kubernetes-binaries cache lock and the demo's process groups
#   iproute2 nftables procps   the local clusters' pod network (namespaces, veths, kube-proxy's
#                              nftables rules, partitions) and its sysctls
#
# With everything present it only checks and prints one line. As root it installs with
# apt-get; as another user it uses `sudo -n` when that needs no password. Otherwise, or on
# another system, it says in one line what is missing and how to get it, and fails.
#
# Go, needed to build the Kubernetes binaries (`make k8s-bins`), is not installed here: it
# says so when it is missing.
set -euo pipefail

# command -> Debian package
wanted=(
    "redis-server:redis-server"
    "redis-cli:redis-tools"
    "redis-benchmark:redis-tools"
    "python3:python3"
    "curl:curl"
    "tmux:tmux"
    "flock:util-linux"
    "setsid:util-linux"
    "ip:iproute2"
    "nft:nftables"
    "sysctl:procps"
)

missing=()
for pair in "${wanted[@]}"; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    if ! command -v "$cmd" >/dev/null 2>&1; then
        case " ${missing[*]-} " in
            *" $pkg "*) ;;
            *) missing+=("$pkg") ;;
        esac
    fi
done

# Debian splits venv/ensurepip out of python3; other Pythons (pyenv, python.org) carry them.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

if ! command -v go >/dev/null 2>&1; then
    echo "setup: note: go is not installed; 'make k8s-bins' (and the end-to-end tests) need Go 1.26 or later from https://go.dev/dl/" >&2
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: system packages present (redis-server, redis-tools, python3 with venv, curl, tmux, util-linux, iproute2, nftables, procps)"
    exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "setup: missing packages: ${missing[*]}; install them (e.g. 'sudo apt-get install ${missing[*]}') and run again" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing: ${missing[*]} (Debian package names); install them with your system's package manager and run again" >&2
    exit 1
fi

echo "setup: installing ${missing[*]}"
# The tests start their own redis-server on free ports: keep the package's service from being
# started by the install (policy-rc.d exit 101 means "not allowed").
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${as_root[@]}" chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() {
    if [ -n "$created_policy" ]; then
        "${as_root[@]}" rm -f /usr/sbin/policy-rc.d
    fi
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: installed ${missing[*]}"
