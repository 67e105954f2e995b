# Every task a person or CI runs is a target here; `make help` lists them.

CARGO ?= cargo
# CI builds exactly what Cargo.lock says.
LOCKED := $(if $(CI),--locked,)
# Integration tests spawn the shard-node binary of the same profile. A debug build compiles
# much faster than a release build of the whole workspace and is fast enough for the
# correctness tests; `make test TEST_PROFILE=--release` runs them against optimized code.
TEST_PROFILE ?=
# Generated CRD manifest (written by the `crdgen` binary of aadb-crd once it exists).
CRD_OUT ?= manifests/crd/activeactivedatabases.yaml
CHART_CRD_OUT ?= charts/aadb-operator/crds/activeactivedatabases.yaml

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Release build of shard-node (target/release/shard-node)
	$(CARGO) build $(LOCKED) --release -p shard-node --bin shard-node

.PHONY: setup
setup: ## Install the system packages the tests and the demo need (Debian/Ubuntu; scripts/setup.sh)
	@bash scripts/setup.sh

# CI requires the local clusters' pod network (a machine without it fails instead of falling
# back to the shared-host mode); elsewhere the harness picks what the machine allows.
export AADB_E2E_NETWORK ?= $(if $(CI),pods,)

.PHONY: test
test: setup k8s-bins ## All unit, property, integration and end-to-end tests (installs what they need first)
	rc=0; $(CARGO) test $(LOCKED) --workspace $(TEST_PROFILE) || rc=$$?; \
		$(CARGO) run $(LOCKED) -q -p aadb-e2e -- sweep; exit $$rc

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## cargo fmt --check, clippy with warnings as errors, chart and manifest checks
	$(CARGO) fmt --all -- --check $(if $(CI),--color never,)
	$(CARGO) clippy $(LOCKED) --workspace --all-targets -- -D warnings
	bash scripts/check-manifests.sh

.PHONY: generate
generate: ## Regenerate generated files: the CRD manifest and the chart's copy of it
	@mkdir -p $(dir $(CRD_OUT)) $(dir $(CHART_CRD_OUT))
	$(CARGO) run $(LOCKED) -q -p aadb-crd --bin crdgen > $(CRD_OUT).tmp && mv $(CRD_OUT).tmp $(CRD_OUT)
	cp $(CRD_OUT) $(CHART_CRD_OUT)

.PHONY: check-manifests
check-manifests: ## Lint the chart, check manifests/operator is rendered from it, validate chart, manifests and samples offline (needs make k8s-bins)
	bash scripts/check-manifests.sh

.PHONY: manifests
manifests: ## Re-render manifests/operator/ from charts/aadb-operator
	bash scripts/check-manifests.sh --write

.PHONY: check-generated
check-generated: generate ## Fail if generated files differ from the committed ones
	@if [ -n "$$(git status --porcelain -- manifests/crd charts/aadb-operator/crds)" ]; then \
		git status --short -- manifests/crd charts/aadb-operator/crds; git diff -- manifests/crd charts/aadb-operator/crds; \
		echo "generated files are out of date: run 'make generate' and commit the result"; \
		exit 1; \
	fi

.PHONY: ci
ci: lint check-generated test ## Lint, generated files, tests (.ci/run runs these steps)

.PHONY: bench-codec
bench-codec: ## Request parser against the redis-protocol crate's decoder (bench/codec)
	CARGO_TARGET_DIR=target/codec $(CARGO) run --release --manifest-path bench/codec/Cargo.toml

.PHONY: bench
bench: ## Throughput and memory against redis-server, replication lag, the routing proxy, operator apply-to-Ready and failover (needs make k8s-bins)
	bash bench/run.sh
	BENCH_SKIP_BUILD=1 bash bench/replication.sh
	BENCH_SKIP_BUILD=1 bash bench/proxy.sh
	bash bench/operator.sh

.PHONY: bench-proxy
bench-proxy: ## shard-node proxy against direct access and twemproxy: throughput, added latency, memory per idle connection (bench/proxy.sh)
	bash bench/proxy.sh

.PHONY: demo
demo: setup ## Three local clusters, the operator and a three-region database; writes converge; left running (scripts/demo.sh)
	@CARGO="$(CARGO)" LOCKED="$(LOCKED)" bash scripts/demo.sh up

.PHONY: down
down: ## Stop everything make demo started; keeps the logs in target/demo
	@bash scripts/demo.sh down

# Local Kubernetes control plane (e2e/, scripts/k8s-bins.sh).
E2E_CLUSTERS ?= 3
E2E_ZONES ?= 3
E2E_DIR ?= target/e2e-up

.PHONY: k8s-bins
k8s-bins: ## Build the pinned kube-apiserver/-controller-manager/-scheduler, kubectl, etcd, helm, kubeconform into target/k8s/bin (cached)
	bash scripts/k8s-bins.sh

.PHONY: e2e-up
e2e-up: k8s-bins ## Start local clusters in the background (E2E_CLUSTERS=3 E2E_ZONES=3 E2E_DIR=target/e2e-up)
	$(CARGO) build $(LOCKED) -p aadb-e2e --bin aadb-e2e
	target/debug/aadb-e2e up --clusters $(E2E_CLUSTERS) --zones $(E2E_ZONES) --dir $(E2E_DIR)

.PHONY: e2e-down
e2e-down: ## Stop the clusters that e2e-up started
	$(CARGO) build $(LOCKED) -p aadb-e2e --bin aadb-e2e
	target/debug/aadb-e2e down --dir $(E2E_DIR)

.PHONY: kind-e2e
kind-e2e: ## Multi-cluster e2e on kind (needs docker or podman, kind, helm; see e2e/kind/README.md)
	bash e2e/kind/run.sh
