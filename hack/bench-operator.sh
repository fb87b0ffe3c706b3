#!/usr/bin/env bash
# Benchmark of the operator on the local cluster: time from `kubectl apply` of a RedisCluster to
# its Ready condition (3x1 and 10x2), and the operator's resident memory idle and with 10
# clusters. Starts its own 3-zone x 10-node local cluster (10x2 needs 30 nodes: one member of a
# cluster per node) and takes it down at the end.
#
#   hack/bench-operator.sh [--runs N]      (default 5 runs per size)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
RUNS=5
[[ "${1:-}" == "--runs" ]] && RUNS="$2"
WORK="$(mktemp -d)"
OP_PID=""
cleanup() {
  [[ -n "$OP_PID" ]] && kill "$OP_PID" 2>/dev/null || true
  hack/local-cluster down >/dev/null 2>&1 || true
}
trap cleanup EXIT

cargo build -q --release --bin redis-operator
hack/local-cluster down >/dev/null 2>&1 || true
hack/local-cluster up --zones 3 --nodes-per-zone 10
eval "$(hack/local-cluster env)"
kubectl apply -f crds/ -f manifests/namespace.yaml -f manifests/rbac.yaml >/dev/null
kubectl wait --for=condition=Established crd/redisclusters.redis.redis-operator.dev --timeout=60s >/dev/null
hack/operator-kubeconfig.sh "$WORK/operator.kubeconfig"
KUBECONFIG="$WORK/operator.kubeconfig" RUST_LOG=info NO_COLOR=1 \
  target/release/redis-operator run >"$WORK/operator.log" 2>&1 </dev/null &
OP_PID=$!

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$OP_PID/status"; }
now() { date +%s.%N; }

cluster_yaml() { # name leaders followers
  cat <<EOT
apiVersion: redis.redis-operator.dev/v1alpha1
kind: RedisCluster
metadata: {name: $1}
spec:
  leaders: $2
  followersPerLeader: $3
  storage: {size: 100Mi}
  resources: {requests: {cpu: 10m, memory: 16Mi}}
EOT
}

# Applies one cluster in a fresh namespace and prints seconds until Ready.
apply_and_time() { # ns leaders followers
  kubectl create namespace "$1" >/dev/null
  local t0; t0=$(now)
  cluster_yaml bench "$2" "$3" | kubectl -n "$1" apply -f - >/dev/null
  kubectl -n "$1" wait rediscluster/bench --for=condition=Ready --timeout=600s >/dev/null
  echo "$(now) - $t0" | bc
}

sleep 10
IDLE_RSS=$(rss_mib)

declare -A RESULTS
for size in "3 1" "10 2"; do
  read -r l f <<<"$size"
  times=()
  for i in $(seq 1 "$RUNS"); do
    t=$(apply_and_time "bench-${l}x${f}-$i" "$l" "$f")
    times+=("$t")
    echo "  ${l}x${f} run $i: ${t}s"
    kubectl delete namespace "bench-${l}x${f}-$i" --wait=true --timeout=300s >/dev/null
  done
  RESULTS["${l}x${f}"]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %.1f s (min %.1f, max %.1f, %d runs)", a[int((NR+1)/2)], a[1], a[NR], NR}')
done

# Ten 3x1 clusters at once.
t0=$(now)
for i in $(seq 1 10); do
  kubectl create namespace "bench-many-$i" >/dev/null
  cluster_yaml bench 3 1 | kubectl -n "bench-many-$i" apply -f - >/dev/null
done
for i in $(seq 1 10); do
  kubectl -n "bench-many-$i" wait rediscluster/bench --for=condition=Ready --timeout=900s >/dev/null
done
MANY_TIME=$(echo "$(now) - $t0" | bc)
sleep 30
MANY_RSS=$(rss_mib)

echo
echo "| measurement | result |"
echo "|---|---|"
echo "| apply → Ready, 3 leaders × 1 follower | ${RESULTS[3x1]} |"
echo "| apply → Ready, 10 leaders × 2 followers | ${RESULTS[10x2]} |"
printf '| ten 3x1 clusters applied at once → all Ready | %.1f s |\n' "$MANY_TIME"
echo "| operator RSS idle (no clusters) | ${IDLE_RSS} MiB |"
echo "| operator RSS with 10 Ready clusters (60 members), 30 s after | ${MANY_RSS} MiB |"
