# --- a follower restarts from its shutdown RDB, for a partial resync (issue 23) ---
# With `appendonly yes` Redis loads only the AOF at start, and the AOF holds no replication id
# or offset, so a restarted follower always full-syncs its whole dataset. A graceful stop
# (SIGTERM) fsyncs the AOF and then, as save points are set, writes dump.rdb, whose aux fields
# hold the replication id and offset of the exact point its dataset was taken. A follower that
# loads it is consistent as of that offset and asks its leader for a partial resync from there:
# the leader re-streams the rest from its backlog, or full-syncs it if the backlog no longer
# covers it. So it starts without the AOF (runtime.conf is included last and overrides
# redis.conf); the operator turns the AOF back on (CONFIG SET appendonly yes, a rewrite of
# the synced dataset) once the replication link is up (plan::config).
# Only a follower: a leader loads its AOF, its newest writes. Only when no AOF file is newer
# than the RDB: after a crash (SIGKILL, no final RDB) the AOF has the newer writes. A tie at
# the file system's timestamp resolution goes to the RDB, which is consistent in any case.
# The older dataset is never served as a leader's: a follower that has not reached its leader
# since it started cannot win a Redis election (repl_down_since is 0, so its data age exceeds
# cluster-replica-validity-factor 10), and the operator does not promote it either
# (plan::facts::promotion). Each dump.rdb is tried once: if the previous start tried this very
# file (the marker is not older than it) and the AOF is not back on, Redis may have failed to
# load it, so the AOF is loaded instead of crash-looping on a file it cannot read.
conf_value() {
  awk -v key="$1" -v def="$2" '$1 == key { v = $2 } END { gsub(/["\047]/, "", v); print (v == "" ? def : v) }' /etc/redis/redis.conf
}
if [ "$(conf_value appendonly no)" = yes ] && [ -f /data/nodes.conf ] \
  && awk '$3 ~ /myself/ && $3 ~ /slave/ { found = 1 } END { exit !found }' /data/nodes.conf; then
  rdb="/data/$(conf_value dbfilename dump.rdb)"
  aofdir="/data/$(conf_value appenddirname appendonlydir)"
  marker=/data/resume-rdb.tried
  why=""
  newer=""
  if [ ! -s "$rdb" ]; then
    why="there is no RDB"
  elif [ -d "$aofdir" ] && ! newer=$(find "$aofdir" -type f -newer "$rdb" 2>/dev/null); then
    why="the AOF could not be compared with the RDB"
  elif [ -n "${newer:-}" ]; then
    why="the AOF is newer than the RDB"
  elif [ -e "$marker" ] && [ -z "$(find "$rdb" -newer "$marker" 2>/dev/null)" ]; then
    why="the previous start already tried this RDB"
  fi
  if [ -z "$why" ]; then
    echo "resume: a follower whose shutdown RDB is not older than its AOF; loading the RDB for a partial resync (the AOF is turned back on once the link is up)"
    touch "$marker"
    printf 'appendonly no\n' >> /run/redis/runtime.conf
  else
    echo "resume: loading the AOF ($why)"
  fi
fi
