#!/bin/bash
# usage: exp.sh MODE   MODE=aof (today) | rdbswitch (candidate a)
set -u
MODE=$1; M=28901; R=28902; D=/tmp/psx/$MODE; rm -rf $D; mkdir -p $D/m $D/r
common="--bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf --appendonly yes --appendfsync everysec --repl-backlog-size 64mb --repl-diskless-sync-delay 1 --shutdown-timeout 10 --enable-debug-command yes --daemonize no"
start() { redis-server --port $1 --dir $D/$2 --logfile $D/$2/redis.log $common "${@:3}" & echo $! > $D/$2/pid; }
start $M m; start $R r; sleep 0.5
c() { redis-cli -p "$@"; }
c $M cluster addslotsrange 0 16383 >/dev/null; c $M cluster meet 127.0.0.1 $R >/dev/null; sleep 1
c $R cluster replicate $(c $M cluster myid) >/dev/null
c $M debug populate 500000 key 100 >/dev/null
until c $R info replication | grep -q "master_link_status:up"; do sleep 0.2; done
sleep 2; c $M info stats | grep -E "sync_(full|partial)"
c $M info memory | grep used_memory_human
# writes during restart
( for i in $(seq 1 3000); do echo "SET w:$i $i"; done | c $M >/dev/null ) & W=$!
sleep 0.1
if [ $MODE = rdbswitch ]; then
  # preStop for a replica: final RDB with repl-id/offset, then SHUTDOWN with it
  c $R config set appendonly no >/dev/null; c $R shutdown save
else
  kill -TERM $(cat $D/r/pid)
fi
while kill -0 $(cat $D/r/pid) 2>/dev/null; do sleep 0.05; done
ls -la $D/r $D/r/appendonlydir 2>/dev/null | grep -v total
t0=$(date +%s.%N)
if [ $MODE = rdbswitch ]; then start $R r --appendonly no; else start $R r; fi
until c $R info replication 2>/dev/null | grep -q "master_link_status:up"; do sleep 0.05; done
t1=$(date +%s.%N); echo "restart->link up: $(echo "$t1 - $t0" | bc) s"
[ $MODE = rdbswitch ] && c $R config set appendonly yes
wait $W
c $M info stats | grep -E "sync_(full|partial)"
sleep 1; echo "master keys $(c $M dbsize) replica keys $(c $R dbsize)"
grep -iE "psync|sync|loaded|aof|rdb|cached|replication id" $D/r/redis.log | tail -30
c $M shutdown nosave >/dev/null 2>&1; c $R shutdown nosave >/dev/null 2>&1
