#!/usr/bin/env bash
# The randomized fault soak (tests/e2e_soak.rs) against the local cluster, alone on it.
#
#   hack/soak.sh ROUNDS SEED [CLUSTERS] [FAULTS]
#
# Uses the local cluster if it is up (and leaves it up), else starts a TEST_ZONES x
# TEST_NODES_PER_ZONE one and tears it down after. The whole output also goes to
# target/soak-SEED.log; the report's last line is the README table's row.
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-100} seed=${2:-$(date -u +%Y%m%d)} clusters=${3:-pvc,cache} faults=${4:-}
cluster=hack/local-cluster
status=0 started=
components="$($cluster status 2>/dev/null || true)"
case "$components" in
  *'kube-apiserver running'*) echo "using the running local cluster (left up)" ;;
  *) $cluster up --zones "${TEST_ZONES:-3}" --nodes-per-zone "${TEST_NODES_PER_ZONE:-7}" && started=1 || exit 1 ;;
esac
eval "$($cluster env)"
mkdir -p target
if kubectl apply -f crds/ -f manifests/namespace.yaml -f manifests/rbac.yaml >/dev/null &&
  kubectl wait --for=condition=Established crd/redisclusters.redis.redis-operator.dev --timeout=60s >/dev/null &&
  hack/operator-kubeconfig.sh target/operator.kubeconfig; then
  SOAK_ROUNDS=$rounds SOAK_SEED=$seed SOAK_CLUSTERS=$clusters SOAK_FAULTS=$faults \
    OPERATOR_KUBECONFIG="$PWD/target/operator.kubeconfig" \
    "${CARGO:-cargo}" test --test e2e_soak -- --ignored --nocapture --test-threads=1 soak \
    2>&1 | tee "target/soak-$seed.log"
  status=${PIPESTATUS[0]}
else
  status=1
fi
echo "soak: $(date -u +%F), $(nproc) cores, $(free -h | awk '/^Mem:/ {print $2}') RAM, make soak ROUNDS=$rounds SEED=$seed, exit $status"
if [ -n "$started" ]; then $cluster down || status=$?; fi
exit "$status"
