#!/usr/bin/env bash
# `make demo`: local multi-zone cluster, the operator installed from its image with
# `kubectl apply -k manifests/` (2 replicas, leader election), and a 3x1 RedisCluster; waits for a
# leader and for Ready and shows the placement.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if [[ "${1:-}" == "down" ]]; then
  hack/local-cluster down
  exit 0
fi

# Three nodes per zone: a 3x1 cluster uses two, and the third lets a lost zone's members be
# re-placed in the surviving zones (make demo-zone-down).
hack/local-cluster up --zones 3 --nodes-per-zone 3
eval "$(hack/local-cluster env)"
# The operator's image (make image) on every node, then the kustomize install: two replicas,
# one of which takes the Lease and acts.
IMAGE="${IMAGE_ARCHIVE:-target/oci/redis-operator.oci.tar}"
[[ -f "$IMAGE" ]] || hack/image/build.sh
hack/local-cluster load-image "$IMAGE"
existed=$(kubectl -n redis-operator get deployment redis-operator -o name 2>/dev/null || true)
kubectl apply -k manifests/ >/dev/null
kubectl wait --for=condition=Established crd/redisclusters.redis.redis-operator.dev --timeout=60s >/dev/null
# A re-run with a rebuilt image (same tag): new Pods.
[[ -z "$existed" ]] || kubectl -n redis-operator rollout restart deployment/redis-operator >/dev/null
if ! kubectl -n redis-operator rollout status deployment/redis-operator --timeout=180s; then
  kubectl -n redis-operator get pods -o wide
  exit 1
fi
start=$SECONDS
# The holder is the leading process: its Pod's name and a suffix unique to the process.
until holder=$(kubectl -n redis-operator get lease redis-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null) &&
  leader=${holder%_*} && [[ -n "$leader" ]] && kubectl -n redis-operator get pod "$leader" >/dev/null 2>&1; do
  (( SECONDS - start < 60 )) || { echo "no replica took the Lease"; kubectl -n redis-operator logs -l app.kubernetes.io/name=redis-operator --tail=20; exit 1; }
  sleep 1
done
echo "operator: $(kubectl -n redis-operator get pods -l app.kubernetes.io/name=redis-operator -o jsonpath='{range .items[*]}{.metadata.name} on {.spec.nodeName}  {end}')"
echo "leader (Lease redis-operator/redis-operator): $holder"

kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n demo apply -f manifests/samples/redis-cluster-3x1.yaml >/dev/null
start=$SECONDS
echo "waiting for RedisCluster demo/demo to become Ready (operator log: kubectl -n redis-operator logs $leader) ..."
if ! kubectl -n demo wait rediscluster/demo --for=condition=Ready --timeout=300s >/dev/null; then
  kubectl -n demo get rediscluster demo -o yaml
  kubectl -n redis-operator logs "$leader" --tail=30
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
Which replica acts, and the Events it wrote:
  kubectl -n redis-operator get lease redis-operator -o jsonpath='{.spec.holderIdentity}'
  kubectl -n demo get events.events.k8s.io -o custom-columns=REASON:.reason,BY:.reportingInstance,NOTE:.note
Back it up to a local S3 server and restore it into a 4-shard cluster:
  make demo-backup
Kill a zone while writes run and watch it heal (MODE=--partition to cut it off instead):
  make demo-zone-down ZONE=zone-a
Stop everything:
  make demo-down
EOT
