#!/usr/bin/env bash
# The operator on Kind (https://kind.sigs.k8s.io): 3 zones x 2 workers, the image built by
# `make image`, the kustomize install, and zone failures made with Docker.
#
#   hack/kind/kind.sh up                  create the cluster (hack/kind/kind-config.yaml)
#   hack/kind/kind.sh install             load target/oci/redis-operator.oci.tar, apply -k manifests/,
#                                         wait for the Deployment and a leader, create a 3x1 cluster
#   hack/kind/kind.sh zone-down ZONE      crash a zone: `docker pause` its worker containers
#   hack/kind/kind.sh zone-up ZONE        `docker unpause` them
#   hack/kind/kind.sh partition ZONE      cut a zone off: `docker network disconnect kind` its workers
#   hack/kind/kind.sh heal ZONE           reconnect them with the addresses they had
#   hack/kind/kind.sh status              nodes, operator Pods, Lease holder, RedisClusters
#   hack/kind/kind.sh down                delete the cluster
#
# Needs docker, kind (>= 0.20, for node labels in the config) and kubectl. Not run on the
# development VM of this repository (it has no Docker daemon); `make demo` is the equivalent there.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER=redis-operator
CONTEXT="kind-$CLUSTER"
ARCHIVE="${IMAGE_ARCHIVE:-$REPO/target/oci/redis-operator.oci.tar}"
STATE="${XDG_STATE_HOME:-$HOME/.local/state}/redis-operator/kind"
ZONE_KEY=topology.kubernetes.io/zone
k() { kubectl --context "$CONTEXT" "$@"; }

# The Docker containers of a zone's workers (a Kind node's container is named after the node).
zone_nodes() {
  local zone=${1:?zone, e.g. zone-a}
  local nodes
  nodes=$(k get nodes -l "$ZONE_KEY=$zone" -o jsonpath='{.items[*].metadata.name}')
  [[ -n "$nodes" ]] || { echo "no nodes in zone $zone" >&2; exit 1; }
  echo "$nodes"
}

case "${1:-}" in
  up)
    kind create cluster --config "$REPO/hack/kind/kind-config.yaml"
    k get nodes -L "$ZONE_KEY"
    ;;
  install)
    [[ -f "$ARCHIVE" ]] || { echo "$ARCHIVE is missing: run make image" >&2; exit 1; }
    # The archive's index names the image docker.io/library/redis-operator:latest
    # (io.containerd.image.name), which is what the Deployment asks for.
    kind load image-archive "$ARCHIVE" --name "$CLUSTER"
    k apply -k "$REPO/manifests/"
    k wait --for=condition=Established crd/redisclusters.redis.redis-operator.dev --timeout=60s
    k -n redis-operator rollout status deployment/redis-operator --timeout=180s
    until holder=$(k -n redis-operator get lease redis-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null) && [[ -n "$holder" ]]; do
      sleep 1
    done
    echo "leader: $holder"
    k create namespace demo --dry-run=client -o yaml | k apply -f -
    k -n demo apply -f "$REPO/manifests/samples/redis-cluster-3x1.yaml"
    k -n demo wait rediscluster/demo --for=condition=Ready --timeout=300s
    k -n demo get redisclusters -o wide
    ;;
  zone-down)
    # Every container of the zone's nodes freezes: kubelet heartbeats stop (NotReady after the
    # node monitor grace period), Redis stops answering; nothing is deleted.
    for n in $(zone_nodes "${2:-}"); do docker pause "$n"; done
    ;;
  zone-up)
    for n in $(zone_nodes "${2:-}"); do docker unpause "$n"; done
    ;;
  partition)
    # The zone keeps running but reaches no one, and no one reaches it.
    mkdir -p "$STATE"
    for n in $(zone_nodes "${2:-}"); do
      docker inspect -f '{{(index .NetworkSettings.Networks "kind").IPAddress}}' "$n" >"$STATE/$n.ip"
      docker network disconnect kind "$n"
    done
    ;;
  heal)
    # Back on the kind network with the same IPv4 address (the node's InternalIP and its Pods'
    # routes depend on it).
    for n in $(zone_nodes "${2:-}"); do
      docker network connect --ip "$(cat "$STATE/$n.ip")" kind "$n"
    done
    ;;
  status)
    k get nodes -L "$ZONE_KEY"
    k -n redis-operator get pods -o wide
    echo "leader: $(k -n redis-operator get lease redis-operator -o jsonpath='{.spec.holderIdentity}')"
    k get redisclusters -A -o wide
    ;;
  down)
    kind delete cluster --name "$CLUSTER"
    ;;
  *)
    sed -n '2,17p' "$0"
    exit 2
    ;;
esac
