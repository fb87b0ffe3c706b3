#!/usr/bin/env bash
# Runs one benchmark test crate against the local cluster and prints its table.
#
#   hack/bench-on-local-cluster.sh NAME TITLE HEADER [cargo test flags...]
#
# NAME is the test crate (tests/NAME.rs); its rows are written to target/NAME.md (with - for _)
# (or to $<NAME uppercased>_OUT when set, e.g. BENCH_ZONES_OUT; the test gets the path). Uses the
# local cluster if it is up (and leaves it up), else starts a TEST_ZONES x TEST_NODES_PER_ZONE
# one and tears it down after. The exit status is the test's (or the teardown's).
set -uo pipefail
cd "$(dirname "$0")/.."
name=$1 title=$2 header=$3
shift 3
cluster=hack/local-cluster
var=$(printf '%s_OUT' "$name" | tr '[:lower:]' '[:upper:]')
out=${!var:-$PWD/target/${name//_/-}.md}
status=0 started=
# The status is captured before matching: under pipefail `status | grep -q` fails by SIGPIPE
# when grep matches early.
components="$($cluster status 2>/dev/null || true)"
case "$components" in
  *'kube-apiserver running'*) echo "using the running local cluster (left up)" ;;
  *) $cluster up --zones "${TEST_ZONES:-3}" --nodes-per-zone "${TEST_NODES_PER_ZONE:-7}" && started=1 || exit 1 ;;
esac
eval "$($cluster env)"
if kubectl apply -f crds/ -f manifests/namespace.yaml -f manifests/rbac.yaml >/dev/null &&
  kubectl wait --for=condition=Established crd/redisclusters.redis.redis-operator.dev --timeout=60s >/dev/null &&
  hack/operator-kubeconfig.sh target/operator.kubeconfig; then
  rm -f "$out"
  env "$var=$out" OPERATOR_KUBECONFIG="$PWD/target/operator.kubeconfig" \
    "${CARGO:-cargo}" test "$@" --test "$name" -- --ignored --nocapture --test-threads=1 || status=$?
else
  status=1
fi
echo
echo "$title, $(date -u +%F), $(nproc) cores, $(free -h | awk '/^Mem:/ {print $2}') RAM, make ${name//_/-}"
echo
echo "$header"
# The separator row: one cell per column of the header.
cols=$(($(tr -cd '|' <<<"$header" | wc -c) - 1))
printf '|'; for ((i = 0; i < cols; i++)); do printf -- '---|'; done; echo
cat "$out" 2>/dev/null
if [ -n "$started" ]; then $cluster down || status=$?; fi
exit "$status"
