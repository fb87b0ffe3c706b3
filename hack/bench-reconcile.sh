#!/usr/bin/env bash
# Reconcile cost (issue 23), no Kubernetes: the operator's CPU per pure pass (facts, plan,
# status) for 3x1, 10x2 and 50x2, then the observation's wall time per pass with one member's
# node dead. For the dead node: a network namespace of its own (not the local cluster's) whose
# nftables rule drops every packet to 127.0.0.1:7999, so a connect there times out like a SYN
# to a dead node (nothing answers, not even a reset); five redis-servers (cluster mode, a
# password) answer on its loopback. Needs root (ip netns), nft and redis-server. Everything it
# starts is removed on exit.
#
#   hack/bench-reconcile.sh        (make bench-reconcile)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CARGO="${CARGO:-cargo}"
NS="redis-operator-cost-bench-$$"
DIR="$(mktemp -d)"
PASSWORD=bench

cleanup() {
  for pidfile in "$DIR"/*.pid; do
    [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

"$CARGO" test --release --lib reconcile_cost -- --ignored --nocapture --test-threads 1 2>&1 |
  grep -E '^\|'

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" nft -f - <<'NFT'
table inet costbench {
  chain input { type filter hook input priority 0; tcp dport 7999 drop; }
}
NFT
live=()
for port in 7101 7102 7103 7104 7105; do
  ip netns exec "$NS" redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$DIR/nodes-$port.conf" --dir "$DIR" --requirepass "$PASSWORD" \
    --save '' --appendonly no --daemonize yes --pidfile "$DIR/$port.pid" --logfile "$DIR/$port.log"
  live+=("127.0.0.1:$port")
done
for port in 7101 7102 7103 7104 7105; do
  for _ in $(seq 50); do
    ip netns exec "$NS" redis-cli -p "$port" -a "$PASSWORD" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
done
ip netns exec "$NS" env COST_LIVE="$(IFS=,; echo "${live[*]}")" COST_DEAD=127.0.0.1:7999 \
  COST_PASSWORD="$PASSWORD" "$CARGO" test --release --lib connect_wall -- --ignored --nocapture 2>&1 |
  grep -E '^\|'
