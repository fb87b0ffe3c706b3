#!/usr/bin/env bash
# Measurements of the local cluster itself: warm `up` (binaries built, cluster down), node agent
# memory, and how long a crashed or partitioned zone takes to show NotReady/Unknown and to come
# back Ready. Takes the cluster down at the end.
#
#   hack/bench-local-cluster.sh [--runs N]   (default 3)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
RUNS=3
[[ "${1:-}" == "--runs" ]] && RUNS="$2"
trap 'hack/local-cluster down >/dev/null 2>&1 || true' EXIT
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {printf "median %.1f s (min %.1f, max %.1f, %d runs)", a[int((NR+1)/2)], a[1], a[NR], NR}'; }

# Everything built once, outside the measurement.
hack/local-cluster up >/dev/null
hack/local-cluster down >/dev/null

ups=()
for _ in $(seq 1 "$RUNS"); do
  t0=$(now)
  hack/local-cluster up >/dev/null
  ups+=("$(echo "$(now) - $t0" | bc)")
  hack/local-cluster down >/dev/null
done

hack/local-cluster up >/dev/null
eval "$(hack/local-cluster env)"
STATE="${LOCAL_CLUSTER_DIR:-$HOME/.local/state/redis-operator/local-cluster}"
agent_pid=$(cat "$STATE/pids/node-agent")
agent_idle=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$agent_pid/status")

zone_ready() { # zone -> prints the Ready statuses of its nodes, space-separated
  kubectl get nodes -l "topology.kubernetes.io/zone=$1" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}'
}
wait_zone() { # zone want(True|notTrue) start-time -> seconds since start-time
  local t0=$3 deadline=$((SECONDS + 120))
  while ((SECONDS < deadline)); do
    local s; s=$(zone_ready "$1")
    if [[ "$2" == True && "$s" != *Unknown* && "$s" != *False* && -n "$s" ]] ||
       [[ "$2" == notTrue && "$s" != *True* && -n "$s" ]]; then
      echo "$(now) - $t0" | bc; return 0
    fi
    sleep 0.1
  done
  echo "timeout"; return 1
}

declare -A R
for mode in crash partition; do
  downs=(); backs=()
  for _ in $(seq 1 "$RUNS"); do
    flag=""; [[ $mode == partition ]] && flag="--partition"
    t0=$(now)
    hack/local-cluster zone-down zone-a $flag >/dev/null
    downs+=("$(wait_zone zone-a notTrue "$t0")")
    t0=$(now)
    hack/local-cluster zone-up zone-a >/dev/null
    backs+=("$(wait_zone zone-a True "$t0")")
  done
  R["$mode-down"]=$(printf '%s\n' "${downs[@]}" | median)
  R["$mode-up"]=$(printf '%s\n' "${backs[@]}" | median)
done

echo
echo "| measurement | result |"
echo "|---|---|"
echo "| warm \`up\` (3 zones × 2 nodes, from down, binaries built) | $(printf '%s\n' "${ups[@]}" | median) |"
echo "| node agent RSS, 6 nodes, no pods | ${agent_idle} MiB |"
echo "| \`zone-down\` (crash) → every node of the zone NotReady/Unknown | ${R[crash-down]} |"
echo "| \`zone-up\` after a crash → Ready | ${R[crash-up]} |"
echo "| \`zone-down --partition\` → NotReady/Unknown | ${R[partition-down]} |"
echo "| \`zone-up\` after a partition → Ready | ${R[partition-up]} |"
