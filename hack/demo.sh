#!/usr/bin/env bash
# `make demo`: local multi-zone cluster, CRD and RBAC, the operator as a local process with its
# ServiceAccount's token, and a 3x1 RedisCluster; waits for Ready and shows the placement.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${LOCAL_CLUSTER_DIR:-$HOME/.local/state/redis-operator/local-cluster}"
DEMO="$STATE/demo"
cd "$REPO"

if [[ "${1:-}" == "down" ]]; then
  [[ -f "$DEMO/operator.pid" ]] && kill "$(cat "$DEMO/operator.pid")" 2>/dev/null || true
  hack/local-cluster down
  exit 0
fi

# Three nodes per zone: a 3x1 cluster uses two, and the third lets a lost zone's members be
# re-placed in the surviving zones (make demo-zone-down).
hack/local-cluster up --zones 3 --nodes-per-zone 3
eval "$(hack/local-cluster env)"
kubectl apply -f crds/ -f manifests/namespace.yaml -f manifests/rbac.yaml >/dev/null
kubectl wait --for=condition=Established crd/redisclusters.redis.redis-operator.dev --timeout=60s >/dev/null

mkdir -p "$DEMO"
hack/operator-kubeconfig.sh "$DEMO/operator.kubeconfig"
if [[ -f "$DEMO/operator.pid" ]] && kill -0 "$(cat "$DEMO/operator.pid")" 2>/dev/null; then
  kill "$(cat "$DEMO/operator.pid")"; sleep 1
fi
KUBECONFIG="$DEMO/operator.kubeconfig" setsid target/debug/redis-operator run >"$DEMO/operator.log" 2>&1 </dev/null &
echo $! >"$DEMO/operator.pid"

kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n demo apply -f manifests/samples/redis-cluster-3x1.yaml >/dev/null
start=$SECONDS
echo "waiting for RedisCluster demo/demo to become Ready (operator log: $DEMO/operator.log) ..."
if ! kubectl -n demo wait rediscluster/demo --for=condition=Ready --timeout=300s >/dev/null; then
  kubectl -n demo get rediscluster demo -o yaml
  tail -30 "$DEMO/operator.log"
  exit 1
fi
echo "Ready after $((SECONDS - start))s"
echo
kubectl -n demo get redisclusters -o wide
echo
target/debug/redis-operator plan --topology <(kubectl get nodes -o json) --leaders 3 --followers-per-leader 1 \
  --current <(kubectl -n demo get rediscluster demo -o json | python3 -c '
import json,sys
s=json.load(sys.stdin).get("status",{})
out=[]
for sh in s.get("shards",[]):
    if sh.get("leader"): out.append({"shard":sh["index"],"role":"leader","node":sh["leader"]["node"]})
    for f in sh.get("followers",[]): out.append({"shard":sh["index"],"role":"follower","node":f["node"]})
print(json.dumps(out))') || true
echo
ip=$(kubectl -n demo get pods -l redis.redis-operator.dev/cluster=demo -o jsonpath='{.items[0].status.podIP}')
cat <<EOT
Reach the cluster from this machine (pod IPs are routable here):
  eval "\$(hack/local-cluster env)"
  export REDISCLI_AUTH=\$(kubectl -n demo get secret demo-auth -o jsonpath='{.data.password}' | base64 -d)
  redis-cli -c -h $ip cluster nodes
Kill a zone while writes run and watch it heal (MODE=--partition to cut it off instead):
  make demo-zone-down ZONE=zone-a
Stop everything:
  make demo-down
EOT
