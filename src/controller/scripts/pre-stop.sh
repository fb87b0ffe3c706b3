REDISCLI_AUTH=$(cat /etc/redis-auth/password 2>/dev/null || printf %s "$REDIS_PASSWORD")
export REDISCLI_AUTH
cli() { timeout 2 redis-cli --no-auth-warning -p 6379 "$@"; }
line=$(cli cluster nodes | grep myself) || exit 0
set -- $line
case "$3" in *master*) ;; *) exit 0 ;; esac
[ $# -gt 8 ] || exit 0
best=$(cli info replication | tr -d '\r' | awk -F'[:,=]' '/^slave[0-9]+:/ && $7 == "online" && $11 <= 1 { if (ip == "" || $9 > max) { max = $9; ip = $3; port = $5 } } END { if (ip != "") print ip, port }')
[ -n "$best" ] || exit 0
set -- $best
# A config epoch above every one it knows first: Redis 7.0 lets a follower that won an election
# less than 2 x cluster-node-timeout ago "win" again at its old epoch, which the other nodes rank
# below this leader's, so the handover would not happen (see the operator's failover).
timeout 2 redis-cli --no-auth-warning -h "$1" -p "$2" cluster bumpepoch >/dev/null || true
timeout 2 redis-cli --no-auth-warning -h "$1" -p "$2" cluster failover >/dev/null || exit 0
i=0
while [ "$i" -lt 100 ]; do
  [ "$(cli role | head -n 1)" = slave ] && exit 0
  sleep 0.1
  i=$((i + 1))
done
exit 0
