# The two entry points are `make demo` and `make test`; everything else is a building block.
SHELL := /bin/bash
CARGO ?= cargo
CRD := crds/redisclusters.redis.redis-operator.dev.yaml
LOCAL_CLUSTER := hack/local-cluster
# The test cluster: 21 nodes, so that three 3x1 clusters of the recovery suite (one member per
# node, 2 nodes per zone each) run side by side with a spare node per zone, and a 4x2 fits
# beside a 3x1 in the operator suite.
TEST_ZONES ?= 3
TEST_NODES_PER_ZONE ?= 7

.PHONY: demo demo-down test deps build crds check-crds lint unit e2e bench bench-e2e cluster-up cluster-down

demo: deps build
	hack/demo.sh

demo-down:
	hack/demo.sh down

test: deps lint check-crds unit e2e

deps:
	hack/install-deps.sh

build:
	$(CARGO) build --bins

crds:
	$(CARGO) run -q --bin crdgen > $(CRD)

# CI fails when crds/ does not match the Rust types.
check-crds:
	@$(CARGO) run -q --bin crdgen | diff -u $(CRD) - || { echo "crds/ is stale: run 'make crds'"; exit 1; }

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Pure logic, parsers, the Redis library against real redis-server processes, the plan CLI.
unit:
	$(CARGO) test --workspace

# Everything that needs the local Kubernetes: one cluster for the whole suite.
e2e: build
	$(LOCAL_CLUSTER) up --zones $(TEST_ZONES) --nodes-per-zone $(TEST_NODES_PER_ZONE)
	set -o pipefail; status=0; \
	export LOCAL_CLUSTER_ZONES=$(TEST_ZONES) LOCAL_CLUSTER_NODES_PER_ZONE=$(TEST_NODES_PER_ZONE); \
	eval "$$($(LOCAL_CLUSTER) env)"; \
	$(CARGO) test --test local_cluster -- --ignored --test-threads=1 || status=$$?; \
	if [ $$status -eq 0 ]; then \
	  kubectl apply -f crds/ -f manifests/namespace.yaml -f manifests/rbac.yaml >/dev/null && \
	  kubectl wait --for=condition=Established crd/redisclusters.redis.redis-operator.dev --timeout=60s >/dev/null && \
	  hack/operator-kubeconfig.sh target/operator.kubeconfig && \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --test e2e -- --ignored --test-threads=4 || status=$$?; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --test e2e_recovery -- --ignored --test-threads=3 || status=$$?; \
	fi; \
	$(LOCAL_CLUSTER) down || status=$$?; \
	if [ $$status -eq 0 ]; then $(CARGO) test --test local_cluster_down -- --ignored || status=$$?; fi; \
	exit $$status

bench:
	$(CARGO) bench -p redis-scheduler

# Local-cluster and operator timings for the README (about 11 minutes; uses the local cluster).
bench-e2e: deps
	hack/bench-local-cluster.sh
	hack/bench-operator.sh --runs 5

cluster-up:
	$(LOCAL_CLUSTER) up

cluster-down:
	$(LOCAL_CLUSTER) down
