#!/usr/bin/env bash
# `make demo-backup`: backs up the demo cluster to a local S3 server (hack/s3, versitygw) and
# restores it into a new cluster of 4 shards, then compares the keys.
#
# Needs `make demo` first. Every loop is bounded in time; traffic goes only to loopback, the
# local cluster's bridge and the demo's pod addresses.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
NS=demo
RC=demo
KEYS=${KEYS:-2000}
eval "$(hack/local-cluster env)"
kubectl -n "$NS" get rediscluster "$RC" >/dev/null 2>&1 || { echo "run 'make demo' first" >&2; exit 1; }
eval "$(hack/s3 up)"
echo "S3: $S3_ENDPOINT bucket $S3_BUCKET (versitygw, hack/s3)"

export REDISCLI_AUTH
REDISCLI_AUTH=$(kubectl -n "$NS" get secret "$RC-auth" -o jsonpath='{.data.password}' | base64 -d)
ip=$(kubectl -n "$NS" get pods -l "redis.redis-operator.dev/cluster=$RC" -o jsonpath='{.items[0].status.podIP}')
echo "writing $KEYS keys into $NS/$RC ..."
for i in $(seq 1 "$KEYS"); do echo "SET demo:key:$i value-$i"; done | timeout 120 redis-cli -c -h "$ip" >/dev/null
timeout 30 redis-cli -c -h "$ip" HSET demo:hash a 1 b 2 >/dev/null
timeout 30 redis-cli -c -h "$ip" SET demo:ttl soon EX 3600 >/dev/null

total() { # keys over the masters of cluster $1
  local pass ips n=0
  pass=$(kubectl -n "$NS" get secret "$1-auth" -o jsonpath='{.data.password}' | base64 -d)
  ips=$(kubectl -n "$NS" get pods -l "redis.redis-operator.dev/cluster=$1" -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}')
  for a in $ips; do
    if REDISCLI_AUTH=$pass timeout 5 redis-cli -h "$a" role 2>/dev/null | head -1 | grep -q master; then
      n=$((n + $(REDISCLI_AUTH=$pass timeout 5 redis-cli -h "$a" dbsize)))
    fi
  done
  echo "$n"
}
echo "$NS/$RC holds $(total "$RC") keys"

kubectl -n "$NS" create secret generic s3-creds --from-literal=accessKeyId="$S3_ACCESS_KEY" \
  --from-literal=secretAccessKey="$S3_SECRET_KEY" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
backup=demo-$(date -u +%H%M%S)
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: redis.redis-operator.dev/v1alpha1
kind: RedisClusterBackup
metadata: {name: $backup}
spec:
  cluster: $RC
  destination:
    s3: {endpoint: "$S3_ENDPOINT", bucket: "$S3_BUCKET", prefix: demo/, credentialsSecret: s3-creds}
EOF
echo "RedisClusterBackup $backup created; waiting for it ..."
start=$SECONDS
until phase=$(kubectl -n "$NS" get redisclusterbackup "$backup" -o jsonpath='{.status.phase}') &&
  [[ $phase == Completed || $phase == Failed ]]; do
  (( SECONDS - start < 300 )) || { echo "the backup did not finish in 5 minutes"; break; }
  sleep 2
done
kubectl -n "$NS" get redisclusterbackups -o wide
[[ ${phase:-} == Completed ]] || { kubectl -n "$NS" get redisclusterbackup "$backup" -o yaml; exit 1; }

restored=demo-restored
kubectl -n "$NS" delete rediscluster "$restored" --ignore-not-found --wait=true >/dev/null
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: redis.redis-operator.dev/v1alpha1
kind: RedisCluster
metadata: {name: $restored}
spec:
  leaders: 4
  followersPerLeader: 1
  resources: {requests: {cpu: 50m, memory: 32Mi}}
  restoreFrom: {backup: $backup}
EOF
echo "RedisCluster $restored (4 shards) created with restoreFrom: {backup: $backup}; waiting for the restore ..."
start=$SECONDS
until phase=$(kubectl -n "$NS" get rediscluster "$restored" -o jsonpath='{.status.restore.phase}') &&
  [[ $phase == Completed || $phase == Failed ]]; do
  (( SECONDS - start < 600 )) || { echo "the restore did not finish in 10 minutes"; break; }
  sleep 2
done
kubectl -n "$NS" get rediscluster "$restored" -o jsonpath='{.status.restore}'; echo
[[ ${phase:-} == Completed ]] || exit 1
echo "$NS/$RC holds $(total "$RC") keys (writes may have continued); $NS/$restored holds $(total "$restored")"
cat <<EOT
Look around:
  kubectl -n $NS get redisclusterbackups,redisclusters -o wide
  kubectl -n $NS get events.events.k8s.io --field-selector regarding.name=$backup -o custom-columns=REASON:.reason,NOTE:.note
Stop the S3 server: hack/s3 down
EOT
