# --- start gate: a leader without its data waits for a follower to take over (S4) ---
conf=/data/nodes.conf
myid=""
[ -f "$conf" ] && myid=$(awk '$3 ~ /myself/ && $3 ~ /master/ && NF > 8 {print $1}' "$conf")
has_data() {
  [ -s /data/dump.rdb ] && return 0
  for f in /data/appendonlydir/*.aof; do [ -s "$f" ] && return 0; done
  return 1
}
if [ -n "$myid" ] && ! has_data; then
  REDISCLI_AUTH=$(cat /etc/redis-auth/password 2>/dev/null || printf %s "$REDIS_PASSWORD")
  export REDISCLI_AUTH
  echo "start gate: node $myid led slots and restarted without its data; holding the start until a follower has taken over"
  while :; do
    released=""
    holding=""
    answered=0
    listed=0
    for entry in $(awk '$1 != "vars" && $3 !~ /myself/ && $3 !~ /handshake/ {split($2, a, "@"); print $1 "/" $4 "/" a[1]}' "$conf"); do
      id=${entry%%/*}; rest=${entry#*/}; master=${rest%%/*}; addr=${rest#*/}
      ip=${addr%:*}; port=${addr##*:}
      { [ -n "$ip" ] && [ "$port" != 0 ]; } || continue
      # What the peer says about this node now: demoted or without slots means taken over.
      nodes=$(timeout 2 redis-cli --no-auth-warning -h "$ip" -p "$port" cluster nodes 2>/dev/null || true)
      case "$nodes" in *myself*) answered=$((answered + 1)) ;; esac
      line=$(printf '%s\n' "$nodes" | grep "^$myid " || true)
      if [ -n "$line" ]; then
        listed=$((listed + 1))
        set -- $line
        case "$3" in *slave*) released="a follower took over" ;; esac
        [ $# -le 8 ] && released="its slots moved to another node"
      fi
      if [ "$master" = "$myid" ]; then
        keys=$(timeout 2 redis-cli --no-auth-warning -h "$ip" -p "$port" dbsize 2>/dev/null || true)
        case "$keys" in
          0) ;;
          ''|*[!0-9]*) holding="follower $id at $ip is not answering" ;;
          *) holding="follower $id at $ip holds $keys keys" ;;
        esac
      fi
    done
    [ -z "$released" ] && [ -z "$holding" ] && released="no follower holds data"
    if [ -z "$released" ] && [ "$answered" -gt 0 ] && [ "$listed" -eq 0 ]; then
      # The cluster already forgot this identity (its slots went to a follower): start as a
      # new, empty node; the operator attaches it as a follower.
      mv "$conf" "$conf.forgotten"
      released="the cluster forgot node $myid; starting with a new identity"
    fi
    if [ -n "$released" ]; then
      echo "start gate: starting ($released)"
      break
    fi
    sleep 1
  done
fi
