# The two entry points are `make demo` and `make test`; everything else is a building block.
SHELL := /bin/bash
CARGO ?= cargo
CRD := crds/redisclusters.redis.redis-operator.dev.yaml
BACKUP_CRD := crds/redisclusterbackups.redis.redis-operator.dev.yaml
SCHEDULE_CRD := crds/redisclusterbackupschedules.redis.redis-operator.dev.yaml
LOCAL_CLUSTER := hack/local-cluster
# Built by `cargo build --workspace --bins` (see build), not `cargo run --bin crdgen`, whose
# package-only feature resolution would build the operator's library a second time.
CRDGEN := $(or $(CARGO_TARGET_DIR),target)/debug/crdgen
# The test cluster: 21 nodes, so that three 3x1 clusters of the recovery suite (one member per
# node, 2 nodes per zone each) run side by side with a spare node per zone, and a 4x2 fits
# beside a 3x1 in the operator suite.
TEST_ZONES ?= 3
TEST_NODES_PER_ZONE ?= 7

# make e2e's short soak (tests/e2e_soak.rs): the faults confined to its own namespace, so it
# runs beside the rolling-update and scaling suites; the seed is the date (printed).
SHORT_SOAK_ROUNDS ?= 8
SHORT_SOAK_FAULTS ?= pod-delete,pod-force-delete,redis-sigkill,redis-sigstop,operator-sigkill,operator-sigstop,disk-full

# Seconds between the starts of the suites that run side by side after the rolling updates:
# started in the same second, their clusters' Pods all started at once, and on two cores the
# node agent and the API server fell behind (nodes turned NotReady, bootstraps timed out).
E2E_STAGGER ?= 20

ZONE ?= zone-a
MODE ?=

.PHONY: demo demo-down demo-zone-down test deps build crds check-crds lint unit e2e bench bench-e2e bench-recovery bench-backup cluster-up cluster-down

demo: deps build image
	hack/demo.sh

demo-down:
	hack/demo.sh down
	hack/s3 down >/dev/null 2>&1 || true

# Back the demo cluster up to a local S3 server (hack/s3) and restore it into a 4-shard cluster.
.PHONY: demo-backup
demo-backup:
	hack/demo-backup.sh

# Kill a zone of the demo (MODE=--partition to cut it off instead) and watch it heal.
demo-zone-down: build
	hack/demo-zone-down.sh $(ZONE) $(MODE)

# On a fresh machine the control plane builds from source (about 40 core-minutes, cached under
# ~/.cache/redis-operator): it builds in the background from the start. Once the binaries are
# built (check-crds), the image and the fuzzer build in the background while the unit tests
# build and run, which wait on redis-server much of the time. Background builds run at a lower
# priority, so tests waiting on timeouts keep their CPU. Each phase prints its end time since
# the start, so a slow CI run says where the time went.
test:
	@start=$$(date +%s); mkdir -p target; bg=(); \
	stamp() { echo "[make test] $$1 done at $$(( $$(date +%s) - start )) s"; }; \
	fail() { for p in "$${bg[@]}"; do kill -- -$$p 2>/dev/null; done; echo "[make test] $$1 failed"; exit 1; }; \
	later() { setsid nice -n 10 $(MAKE) --no-print-directory $$1 >target/make-$$1.log 2>&1 & bg+=($$!); }; \
	join() { wait $$2 || { cat target/make-$$1.log; fail $$1; }; cat target/make-$$1.log; stamp $$1; }; \
	setsid nice -n 10 hack/build-control-plane.sh >target/make-control-plane.log 2>&1 & cp=$$!; bg+=($$cp); \
	for phase in deps lint check-crds; do \
	  $(MAKE) --no-print-directory $$phase || fail $$phase; stamp $$phase; \
	done; \
	later image; image=$$!; later fuzz-codec; fuzz=$$!; \
	$(MAKE) --no-print-directory unit || fail unit; stamp unit; \
	join fuzz-codec $$fuzz; join image $$image; join control-plane $$cp; \
	$(MAKE) --no-print-directory e2e; status=$$?; stamp e2e; exit $$status

deps:
	hack/install-deps.sh

# --workspace: every dev build (this, the node agent's in hack/local-cluster) resolves features
# alike, so none rebuilds the dependencies another built with other features.
build:
	$(CARGO) build --workspace --bins

# manifests/crds/ holds a copy for kustomize (which loads nothing outside manifests/).
crds:
	$(CARGO) build -q --workspace --bins
	$(CRDGEN) redisclusters > $(CRD)
	$(CRDGEN) redisclusterbackups > $(BACKUP_CRD)
	$(CRDGEN) redisclusterbackupschedules > $(SCHEDULE_CRD)
	cp $(CRD) manifests/$(CRD)
	cp $(BACKUP_CRD) manifests/$(BACKUP_CRD)
	cp $(SCHEDULE_CRD) manifests/$(SCHEDULE_CRD)

# CI fails when crds/ (or its copy in manifests/crds/) does not match the Rust types.
check-crds:
	@$(CARGO) build -q --workspace --bins
	@$(CRDGEN) | diff -u $(CRD) - || { echo "crds/ is stale: run 'make crds'"; exit 1; }
	@$(CRDGEN) redisclusterbackups | diff -u $(BACKUP_CRD) - || { echo "crds/ is stale: run 'make crds'"; exit 1; }
	@$(CRDGEN) redisclusterbackupschedules | diff -u $(SCHEDULE_CRD) - || { echo "crds/ is stale: run 'make crds'"; exit 1; }
	@diff -u $(CRD) manifests/$(CRD) || { echo "manifests/crds/ is stale: run 'make crds'"; exit 1; }
	@diff -u $(BACKUP_CRD) manifests/$(BACKUP_CRD) || { echo "manifests/crds/ is stale: run 'make crds'"; exit 1; }
	@diff -u $(SCHEDULE_CRD) manifests/$(SCHEDULE_CRD) || { echo "manifests/crds/ is stale: run 'make crds'"; exit 1; }

lint:
	$(CARGO) fmt --all -- --check
	hack/check-feature-unification.sh
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Pure logic, parsers, the Redis library against real redis-server processes, the plan CLI.
unit:
	$(CARGO) test --workspace

# The RESP codec's fuzz target under libFuzzer for FUZZ_SECONDS (about 3 minutes with the first
# build; fuzz/run.sh falls back to the same property on stable where no nightly can be had).
FUZZ_SECONDS ?= 60
.PHONY: fuzz-codec
fuzz-codec:
	fuzz/run.sh $(FUZZ_SECONDS)

# Everything that needs the local Kubernetes: one cluster for the whole suite.
e2e: build image
	$(LOCAL_CLUSTER) up --zones $(TEST_ZONES) --nodes-per-zone $(TEST_NODES_PER_ZONE)
	set -o pipefail; status=0; t0=$$(date +%s); \
	stamp() { echo "[e2e] $$1 done at $$(( $$(date +%s) - t0 )) s"; }; \
	export LOCAL_CLUSTER_ZONES=$(TEST_ZONES) LOCAL_CLUSTER_NODES_PER_ZONE=$(TEST_NODES_PER_ZONE); \
	eval "$$($(LOCAL_CLUSTER) env)"; \
	kubectl delete namespace -l e2e.redis-operator.dev/test --timeout=120s >/dev/null 2>&1 || true; \
	$(CARGO) test --workspace --test local_cluster -- --ignored --test-threads=1 || status=$$?; stamp 'local_cluster'; \
	if [ $$status -eq 0 ]; then \
	  kubectl apply -f crds/ -f manifests/namespace.yaml -f manifests/rbac.yaml >/dev/null && \
	  kubectl wait --for=condition=Established crd/redisclusters.redis.redis-operator.dev --timeout=60s >/dev/null && \
	  hack/operator-kubeconfig.sh target/operator.kubeconfig && \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e -- --ignored --test-threads=4 || status=$$?; stamp 'e2e'; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_recovery -- --ignored --test-threads=3 --skip serial_ || status=$$?; stamp 'e2e_recovery (parallel)'; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_recovery -- --ignored --test-threads=1 serial_ || status=$$?; stamp 'e2e_recovery (serial)'; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_zones -- --ignored --test-threads=2 --skip serial_ || status=$$?; stamp 'e2e_zones (parallel)'; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_metrics -- --ignored >target/e2e_metrics.log 2>&1 & metrics_pid=$$!; \
	  SOAK_ROUNDS=$(SHORT_SOAK_ROUNDS) SOAK_CLUSTERS=pvc SOAK_FAULTS=$(SHORT_SOAK_FAULTS) \
	    OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_soak -- --ignored --nocapture soak >target/e2e_soak.log 2>&1 & soak_pid=$$!; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_rollout -- --ignored --test-threads=2 || status=$$?; stamp 'e2e_rollout'; \
	  wait $$metrics_pid || status=$$?; cat target/e2e_metrics.log; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_scale -- --ignored --test-threads=2 >target/e2e_scale.log 2>&1 & scale_pid=$$!; \
	  sleep $(E2E_STAGGER); OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_bad_specs -- --ignored >target/e2e_bad_specs.log 2>&1 & bad_specs_pid=$$!; \
	  sleep $(E2E_STAGGER); OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_tls -- --ignored >target/e2e_tls.log 2>&1 & tls_pid=$$!; \
	  sleep $(E2E_STAGGER); OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_auth -- --ignored >target/e2e_auth.log 2>&1 & auth_pid=$$!; \
	  sleep $(E2E_STAGGER); OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_backup -- --ignored --nocapture >target/e2e_backup.log 2>&1 & backup_pid=$$!; \
	  sleep $(E2E_STAGGER); OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_tls_chaos -- --ignored --test-threads=1 --skip serial_ >target/e2e_tls_chaos.log 2>&1 & tls_chaos_pid=$$!; \
	  wait $$scale_pid || status=$$?; cat target/e2e_scale.log; stamp 'e2e_scale'; \
	  wait $$bad_specs_pid || status=$$?; cat target/e2e_bad_specs.log; \
	  wait $$tls_pid || status=$$?; cat target/e2e_tls.log; \
	  wait $$auth_pid || status=$$?; cat target/e2e_auth.log; \
	  wait $$backup_pid || status=$$?; cat target/e2e_backup.log; \
	  wait $$tls_chaos_pid || status=$$?; cat target/e2e_tls_chaos.log; \
	  wait $$soak_pid || status=$$?; cat target/e2e_soak.log; stamp 'the parallel suites'; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_operator_ha -- --ignored --test-threads=4 --skip bench_ || status=$$?; stamp 'e2e_operator_ha'; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_zones -- --ignored --test-threads=1 serial_ || status=$$?; stamp 'e2e_zones (serial)'; \
	  OPERATOR_KUBECONFIG=$$PWD/target/operator.kubeconfig $(CARGO) test --workspace --test e2e_tls_chaos -- --ignored --test-threads=1 serial_ || status=$$?; stamp 'e2e_tls_chaos (serial)'; \
	fi; \
	agent_log="$$(dirname "$$KUBECONFIG")/logs/node-agent.log"; \
	echo "[e2e] node agent: $$(grep -c 'lease renewal slow' "$$agent_log" 2>/dev/null || true) slow Lease renewals, $$(grep -c 'renewing lease: timed out' "$$agent_log" 2>/dev/null || true) timed out (the local_cluster suite stops the API server on purpose)"; \
	hack/s3 down >/dev/null 2>&1 || true; \
	$(LOCAL_CLUSTER) down || status=$$?; \
	if [ $$status -eq 0 ]; then $(CARGO) test --workspace --test local_cluster_down -- --ignored || status=$$?; fi; \
	exit $$status

# The operator's OCI image archive, built without a container daemon: target/oci/redis-operator.oci.tar
# (IMAGE_REF=... to name it). image-check builds it twice and fails unless the digests match and
# it stays within 20 MB. `hack/local-cluster load-image` gives it to the local cluster.
.PHONY: image image-check
image:
	hack/image/build.sh

image-check:
	hack/image/build.sh --check

bench:
	$(CARGO) bench -p redis-scheduler

# Reconcile cost (issue 23): the operator's CPU per pure pass (facts, plan, status) for 3x1,
# 10x2 and 50x2 from in-memory observations, and the observation's wall time per pass with one
# member's node dead (a network namespace of its own with a black hole and local redis-servers;
# no Kubernetes). Release build; about a minute once built. Needs root and redis-server.
.PHONY: bench-reconcile
bench-reconcile:
	CARGO=$(CARGO) hack/bench-reconcile.sh

# Elections after three leaders and three followers of a 10x1 die at once (a zone's share), on
# real redis-server processes on loopback, no Kubernetes: Redis's own elections vs the
# operator's FORCE and TAKEOVER, one shard at a time, once the cluster flags a leader FAIL
# (issue 23; about 3 minutes, BENCH_RUNS=3 runs of each).
.PHONY: bench-elections
bench-elections: deps
	BENCH_RUNS=$${BENCH_RUNS:-3} $(CARGO) test --workspace --test bench_elections -- --ignored --nocapture bench_elections

# Slot moves on real redis-server processes on loopback, no Kubernetes: the one-pair MIGRATE
# bound, the operator's reshard 3->4->3 and 3->6->3, redis-cli's rebalance 3->4->3, each with
# the longest time a master stopped answering PING (issue 23; about 4 minutes).
.PHONY: bench-reshard
bench-reshard: deps
	$(CARGO) test --release --test bench_reshard -- --ignored --nocapture bench_reshard

# Local-cluster and operator timings for docs/benchmarks.md (about 11 minutes; uses the local cluster).
bench-e2e: deps
	hack/bench-local-cluster.sh
	hack/bench-operator.sh --runs 5

# A benchmark crate against the local cluster, its table printed (hack/bench-on-local-cluster.sh).
BENCH = TEST_ZONES=$(TEST_ZONES) TEST_NODES_PER_ZONE=$(TEST_NODES_PER_ZONE) CARGO=$(CARGO) hack/bench-on-local-cluster.sh

# Recovery of a 3x1 cluster with ~100 MB per shard, operator vs Redis alone (about 15 minutes).
# Uses the local cluster if it is up (and leaves it up), else starts one and tears it down after.
# Crashes one of its own nodes: run nothing else on the cluster meanwhile.
bench-recovery: build
	$(BENCH) bench_recovery "Recovery benchmark" \
	  '| fault | mode | run | write pause (SET) | acknowledged-write pause (SET + WAIT 1) | fault → full redundancy | acknowledged writes lost | acknowledged / indeterminate |'

cluster-up:
	$(LOCAL_CLUSTER) up

cluster-down:
	$(LOCAL_CLUSTER) down

# Zone loss of a 3x1 cluster with ~100 MB per shard (crash and partition), and of a 10x1 with the
# same data (crash: issue 23's zone loss at scale), operator vs Redis alone (about 30 minutes).
# Like bench-recovery: uses the running local cluster if it is up (and leaves it up), else starts
# a 3 x 10 one (a member per node: the 10x1's 20 members need 20 nodes in two zones; on a smaller
# cluster its row says "not run") and tears it down after. Takes whole zones down: run nothing
# else meanwhile.
.PHONY: bench-zones
bench-zones: TEST_NODES_PER_ZONE = 10
bench-zones: build
	$(BENCH) bench_zones "Zone benchmark" \
	  '| cluster | fault | mode | run | all slots accept writes (SET) | acknowledged writes on every shard (SET + WAIT 1) | zone NotReady | full redundancy in the surviving zones | even spread after zone-up | acknowledged writes lost | acknowledged / indeterminate |'

# Rolling update (redis:7.0 -> redis:7.2) of a 3x1 and a 5x2 cluster with ~100 MB per shard under
# writes, the operator vs a naive OnDelete rollout that deletes each Pod in order (issue 11; about
# 8 minutes). Like bench-recovery: uses the running local cluster if it is up (and leaves it
# up), else starts one and tears it down after. Run nothing else on the cluster meanwhile.
.PHONY: bench-rollout
bench-rollout: build
	$(BENCH) bench_rollout "Rollout benchmark" \
	  '| cluster | rollout | spec patch → every member updated, Ready | longest write pause per shard, SET: p50 / p99 / max | acknowledged (SET + WAIT 1): p50 / p99 / max | acknowledged writes lost | acknowledged / indeterminate |'

# Operator failover (issue 17): leader SIGKILL -> the standby holds the Lease and acts (5 runs),
# RSS of the leader and the standby (about 6 minutes). Uses the running local cluster if it is
# up (and leaves it up), else starts one and tears it down after.
# What TLS costs: redis-benchmark SET/GET against one leader and the acknowledged writer over
# the cluster, a plaintext 3x1 and a TLS 3x1 (clientAuth) side by side (about 4 minutes).
# Like bench-recovery: uses the running local cluster if it is up (and leaves it up).
.PHONY: bench-tls
bench-tls: build
	$(BENCH) bench_tls "TLS benchmark" '| measurement | plaintext | TLS | TLS cost |'

.PHONY: bench-operator-ha
bench-operator-ha: build
	$(BENCH) e2e_operator_ha "Operator failover benchmark" '| measurement | result |' bench_operator_failover

# leaders 3 -> 4 -> 3 with 1,000,000 keys of 16 B and 20 values of 1 MiB, the operator vs
# redis-cli --cluster add-node/rebalance/del-node on an identical cluster (issue 12; about 3
# minutes after the release build, a throughput comparison with redis-cli). Uses the running
# local cluster if it is up (and leaves it up), else starts one and tears it down after.
# The randomized fault soak (tests/e2e_soak.rs, issue 20): ROUNDS rounds of one or two faults
# from SEED, under acknowledged writes and a redis-py client, 0 acknowledged writes lost. Runs
# alone on the local cluster (it crashes zones and stops the API server); hours for 100 rounds.
ROUNDS ?= 100
SEED ?= $(shell date -u +%Y%m%d)
CLUSTERS ?= pvc,cache
FAULTS ?=
.PHONY: soak
soak: deps build
	CARGO=$(CARGO) TEST_ZONES=$(TEST_ZONES) TEST_NODES_PER_ZONE=$(TEST_NODES_PER_ZONE) \
	  hack/soak.sh $(ROUNDS) $(SEED) $(CLUSTERS) '$(FAULTS)'

# Backup and restore (issue 22): per shard of a 3x1, take::snapshot from its follower into S3
# vs redis-cli --rdb; the backup restored from S3 into a 5x0 vs redis-cli --cluster import from a
# standalone server; the restore's peak RSS. No Kubernetes: local redis-server processes,
# versitygw (installed by deps) and redis-cli on loopback (about 5 minutes; ~1 GB with
# BENCH_BACKUP_VALUE_BYTES=1024). The table is printed and written to target/bench-backup.md.
.PHONY: bench-backup
bench-backup: deps
	$(CARGO) test --release --test bench_backup -- --ignored --nocapture

.PHONY: bench-scale
bench-scale:
	$(CARGO) build --release --bins
	$(BENCH) bench_scale "Scaling benchmark" \
	  '| leaders | by | wall time | of which moving slots | data keys moved | keys/s (wall) | keys/s (moving) | data keys lost | longest write stall per shard, max: SET / SET + WAIT 1 |' \
	  --release
