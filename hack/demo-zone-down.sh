#!/usr/bin/env bash
# `make demo-zone-down [ZONE=zone-a] [MODE=--partition]`: kills one zone of the demo cluster
# (crash by default; --partition keeps its processes alive but unreachable) while a writer
# runs, and prints the timeline as it happens: writes failing and resuming, the members
# re-placed in the surviving zones, then the zone back and the leader spread restored.
#
# Needs `make demo` first. Every loop is bounded in time; traffic goes only to the demo's pod
# addresses (network namespaces of the local cluster).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
ZONE=${1:-zone-a}
MODE=${2:-}
NS=demo
RC=demo
eval "$(hack/local-cluster env)"
kubectl -n "$NS" get rediscluster "$RC" >/dev/null 2>&1 || { echo "run 'make demo' first" >&2; exit 1; }
export REDISCLI_AUTH
REDISCLI_AUTH=$(kubectl -n "$NS" get secret "$RC-auth" -o jsonpath='{.data.password}' | base64 -d)

t0=$(date +%s.%N)
since() { printf '%6.1fs' "$(echo "$(date +%s.%N) - $t0" | bc)"; }
state() {
  kubectl -n "$NS" get rediscluster "$RC" -o jsonpath='{.status.phase} {.status.readyMembers} {.status.placement} zoneLossSafe={.status.zoneLossSafe} | {.status.conditions[?(@.type=="Degraded")].reason}: {.status.conditions[?(@.type=="Degraded")].message}' 2>/dev/null | cut -c1-220
}
# Addresses of members on Ready nodes: where the writer may connect.
seeds() {
  kubectl -n "$NS" get pods -l "redis.redis-operator.dev/cluster=$RC" \
    -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}' 2>/dev/null | grep -v '^$' || true
}

# The writer: one SET per shard-spread key every 50 ms through any live member (redis-cli -c
# follows MOVED), reporting each change between succeeding and failing.
writer_log=$(mktemp)
(
  end=$((SECONDS + 600))
  i=0
  last=""
  while ((SECONDS < end)); do
    ok=fail
    for ip in $(seeds); do
      if [[ "$(timeout 1 redis-cli --no-auth-warning -c -h "$ip" set "zone-demo:$i" "$i" 2>/dev/null)" == OK ]]; then
        ok=ok
        break
      fi
    done
    if [[ "$ok" != "$last" ]]; then
      if [[ $ok == ok ]]; then echo "$(since) writes succeed" >>"$writer_log"; else echo "$(since) writes FAIL" >>"$writer_log"; fi
      last=$ok
    fi
    i=$((i + 1))
    sleep 0.05
  done
) &
writer=$!
trap 'kill $writer 2>/dev/null || true; rm -f "$writer_log"' EXIT

shown=0
timeline() { # print new writer lines and the cluster state when it changed
  local lines
  lines=$(wc -l <"$writer_log")
  if ((lines > shown)); then
    tail -n "+$((shown + 1))" "$writer_log"
    shown=$lines
  fi
  local s
  s=$(state)
  if [[ "$s" != "${last_state:-}" ]]; then
    echo "$(since) $s"
    last_state=$s
  fi
}
wait_until() { # description, max seconds, condition command
  local what=$1 max=$2
  shift 2
  local end=$((SECONDS + max))
  while ((SECONDS < end)); do
    timeline
    if "$@"; then
      echo "$(since) == $what"
      return 0
    fi
    sleep 0.5
  done
  echo "$(since) == NOT within ${max}s: $what"
  return 1
}
ready() { [[ "$(kubectl -n "$NS" get rediscluster "$RC" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
not_ready() { ! ready; }
ready_and_safe() { ready && [[ "$(kubectl -n "$NS" get rediscluster "$RC" -o jsonpath='{.status.zoneLossSafe}')" == true ]]; }

echo "$(since) $(state)"
sleep 2
echo "$(since) == hack/local-cluster zone-down $ZONE $MODE"
hack/local-cluster zone-down "$ZONE" $MODE
# A crashed node says nothing: Kubernetes notices when its heartbeats stop (NotReady after the
# node-monitor grace period), Redis when its peers time out.
wait_until "the loss is noticed (Ready=False)" 120 not_ready || true
wait_until "every shard again has a leader and an in-sync follower in the surviving zones (Ready)" 240 ready || true
sleep 3
timeline
echo "$(since) == hack/local-cluster zone-up $ZONE"
hack/local-cluster zone-up "$ZONE"
wait_until "zone back: Ready, leaders spread so that losing any zone keeps a majority" 240 ready_and_safe || true
timeline
kubectl -n "$NS" get rediscluster "$RC" -o wide
