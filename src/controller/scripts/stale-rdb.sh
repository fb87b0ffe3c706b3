# --- without persistence, an RDB in /data is never this node's dataset (reference §2.5, S4) ---
# A follower keeps the RDB its full sync wrote (rdb-del-sync-files is off by default), and
# redis-server loads dump.rdb at start even with `save ""` and `appendonly no`. A member that
# leads after such a sync would come back as the leader of its slots with the dataset as of that
# sync, and its followers would copy it: every write acknowledged since the sync would be gone
# (found by the soak on a cache mid-rollout). So the file goes, and the gate below sees no data.
if awk '$1 == "appendonly" { aof = $2 } $1 == "save" { save = $2 }
  END { exit !(aof == "no" && (save == "\"\"" || save == "\047\047")) }' /etc/redis/redis.conf; then
  rdb=$(awk '$1 == "dbfilename" { f = $2 } END { print (f == "" ? "dump.rdb" : f) }' /etc/redis/redis.conf)
  rdb=${rdb#\"}; rdb=${rdb%\"}
  if [ -f "/data/$rdb" ]; then
    echo "start gate: persistence is off; removing /data/$rdb (a full sync's copy, not this node's data)"
    rm -f "/data/$rdb"
  fi
fi
