# --- start gate: a leader without its data waits for a follower to take over (S4) ---
conf=/data/nodes.conf
myid=""
[ -f "$conf" ] && myid=$(awk '$3 ~ /myself/ && $3 ~ /master/ && NF > 8 {print $1}' "$conf")
has_data() {
  [ -s /data/dump.rdb ] && return 0
  for f in /data/appendonlydir/*.aof; do [ -s "$f" ] && return 0; done
  return 1
}
# The config epoch of the node other than this one that serves slot $1 in the CLUSTER NODES
# text on stdin (nothing when no other node serves it).
owner_epoch() {
  awk -v s="$1" -v me="$myid" '$1 != me {
    for (i = 9; i <= NF; i++) {
      if ($i ~ /^\[/) continue
      n = split($i, r, "-"); lo = r[1]; hi = (n > 1 ? r[2] : r[1])
      if (s + 0 >= lo + 0 && s + 0 <= hi + 0) { print $7; exit }
    }
  }'
}
if [ -n "$myid" ] && ! has_data; then
  myepoch=$(awk '$3 ~ /myself/ {print $7 + 0}' "$conf")
  myslot=$(awk '$3 ~ /myself/ {split($9, r, "-"); print r[1]}' "$conf")
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
        # Taken over only when another node serves its slots at a higher config epoch: then
        # every node ranks that claim above this one's, and this node, restarted, follows. A
        # follower that "won" with its old epoch (a hollow promotion, see the operator's
        # failover) is ranked below this node, would follow it again and copy its empty data.
        if [ $# -le 8 ] || case "$3" in *slave*) true ;; *) false ;; esac; then
          epoch=$(printf '%s\n' "$nodes" | owner_epoch "$myslot")
          if [ -n "$epoch" ] && [ "$epoch" -gt "$myepoch" ]; then
            released="a follower took over (slot $myslot is served at config epoch $epoch, above this node's $myepoch)"
          fi
        fi
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
