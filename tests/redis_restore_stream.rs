//! Backup and restore against real redis-server 7.0.15 processes: a shard snapshot counts
//! its keys while it streams (from a master and from a replica that reached the master's
//! offset), and the RDB restored into clusters of 3 and 5 masters holds every key on its
//! slot's owner with the same value (`DEBUG DIGEST-VALUE`) and TTL. A fresh restore into a
//! cluster holding one of its keys stops on that key; a resumed one replaces what an earlier
//! attempt wrote.

#![allow(clippy::unwrap_used, clippy::panic)]

mod support {
    pub mod redis_cluster;
    pub mod redis_procs;
}

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::RngCore;
use redis_operator::redis::client::Frame;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::ids::even_ranges;
use redis_operator::redis::ops::backup::{ShardSnapshot, snapshot_shard, wait_replica_offset};
use redis_operator::redis::ops::reshard::MoveOptions;
use redis_operator::redis::ops::restore::BatchLimits;
use redis_operator::redis::ops::restore::key_slot;
use redis_operator::redis::ops::restore_stream::{
    RestoreError, RestoreLimits, RestoreMode, RestoreProgress, RestoreSummary, cluster_key_count,
    restore_rdb,
};
use redis_operator::redis::ops::snapshot::SnapshotLimits;
use redis_operator::redis::parse::info::parse_replication_info;
use redis_operator::redis::rdb::{RdbKey, RdbReader, ReaderLimits};
use redis_operator::redis::{AdminOptions, Client, reply};
use support::redis_cluster::{TestCluster, build};
use support::redis_procs::RedisProcs;

macro_rules! cmd {
    ($name:expr $(, $arg:expr)* $(,)?) => { Cmd::new($name)$(.arg($arg))* };
}

/// The snapshot source: a standalone server streaming diskless RDBs at once.
const SOURCE_ARGS: &[&str] = &[
    "--cluster-enabled",
    "no",
    "--enable-debug-command",
    "yes",
    "--repl-diskless-sync",
    "yes",
    "--repl-diskless-sync-delay",
    "0",
];
const CLUSTER_ARGS: &[&str] = &["--enable-debug-command", "yes"];
/// Keys with a TTL long enough to outlive the test.
const LONG_TTL_MS: u64 = 3_600_000;
/// Keys that expire between the snapshot and the restore.
const SHORT_TTL_MS: u64 = 2_500;

fn options() -> AdminOptions {
    AdminOptions::default()
}

async fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr, &options()).await.expect("connect")
}

async fn run(client: &mut Client, cmds: Vec<Cmd>) -> Vec<Frame> {
    let mut out = Vec::new();
    for chunk in cmds.chunks(1000) {
        let replies = client.pipeline(chunk).await.expect("pipeline");
        for (cmd, r) in chunk.iter().zip(replies) {
            out.push(r.unwrap_or_else(|e| panic!("{cmd:?}: {e}")));
        }
    }
    out
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

fn random(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// `count` keys cycling through every type (small and large encodings), every 7th with a
/// long TTL, plus five 1 MiB strings. Returns how many have a TTL.
async fn fill(addr: SocketAddr, count: usize) -> u64 {
    let mut cmds = Vec::with_capacity(count + 2000);
    let mut with_ttl = 0;
    for i in 0..count {
        let key = format!("k:{i}");
        cmds.push(match i % 6 {
            0 => cmd!("SET", &key, format!("value {i}")),
            1 if i % 600 == 1 => {
                let mut c = cmd!("HSET", &key);
                for f in 0..300 {
                    c = c.arg(format!("f{f}")).arg(format!("v{f}"));
                }
                c
            }
            1 => cmd!("HSET", &key, "a", i.to_string(), "b", "x"),
            2 => cmd!("RPUSH", &key, "a", "b", i.to_string()),
            3 if i % 600 == 3 => {
                let mut c = cmd!("SADD", &key);
                for m in 0..300 {
                    c = c.arg(format!("member{m}"));
                }
                c
            }
            3 => cmd!("SADD", &key, "1", "2", i.to_string()),
            4 => cmd!("ZADD", &key, "1.5", "a", i.to_string(), "b"),
            _ => cmd!("XADD", &key, "*", "field", i.to_string()),
        });
        if i % 7 == 0 {
            cmds.push(cmd!("PEXPIRE", &key, LONG_TTL_MS.to_string()));
            with_ttl += 1;
        }
    }
    for i in 0..5 {
        cmds.push(cmd!("SET", format!("big:{i}"), random(1 << 20)));
    }
    run(&mut connect(addr).await, cmds).await;
    with_ttl
}

/// Keys that expire shortly after the snapshot (so the restore skips them).
async fn add_short_lived(addr: SocketAddr, count: usize) {
    let cmds = (0..count)
        .map(|i| {
            cmd!(
                "SET",
                format!("short:{i}"),
                "v",
                "PX",
                SHORT_TTL_MS.to_string()
            )
        })
        .collect();
    run(&mut connect(addr).await, cmds).await;
}

async fn dbsize(addr: SocketAddr) -> u64 {
    let cmd = Cmd::dbsize();
    reply::count(&cmd, connect(addr).await.call(&cmd).await.expect("dbsize")).expect("count")
}

async fn repl_offset(addr: SocketAddr) -> (u64, bool) {
    let cmd = cmd!("INFO", "replication");
    let text =
        reply::text(&cmd, connect(addr).await.call(&cmd).await.expect("info")).expect("text");
    let info = parse_replication_info(&text).expect("parse");
    let up = info.replica_link().is_some_and(|l| l.link_up);
    (info.master_repl_offset, up)
}

async fn snapshot(addr: SocketAddr) -> (ShardSnapshot, Vec<u8>) {
    let mut rdb = Vec::new();
    let shard = snapshot_shard(
        addr,
        &options(),
        &mut rdb,
        SnapshotLimits::default(),
        ReaderLimits::default(),
    )
    .await
    .expect("snapshot");
    (shard, rdb)
}

async fn parse_all(rdb: &[u8]) -> Vec<RdbKey> {
    let mut reader = RdbReader::open(rdb, ReaderLimits::default())
        .await
        .expect("header");
    let mut keys = Vec::new();
    while let Some(key) = reader.next_key().await.expect("parse") {
        keys.push(key);
    }
    keys
}

fn log_progress() -> impl FnMut(&RestoreProgress) + Send {
    let mut calls = 0u64;
    move |p: &RestoreProgress| {
        calls += 1;
        if calls % 5 == 1 {
            eprintln!("  progress: {p:?}");
        }
    }
}

async fn restore(
    rdb: &[u8],
    cluster: &TestCluster,
    mode: RestoreMode,
) -> Result<RestoreSummary, RestoreError> {
    let mut progress = log_progress();
    restore_rdb(
        rdb,
        &cluster.procs.addrs()[..1],
        &options(),
        mode,
        RestoreLimits::default(),
        &mut progress,
    )
    .await
}

/// The master of `cluster` (built with even ranges) that owns `key`.
fn owner(cluster: &TestCluster, key: &[u8]) -> SocketAddr {
    let slot = key_slot(key);
    let ranges = even_ranges(cluster.leaders.len());
    let i = ranges
        .iter()
        .position(|r| r.contains(slot))
        .expect("covered");
    cluster.addr(&cluster.leaders[i])
}

/// Every live key of `keys` is on its owner (by even ranges, but `moved` slots on
/// `moved_to`) with the source's value digest and its TTL.
async fn verify(
    cluster: &TestCluster,
    source: SocketAddr,
    keys: &[RdbKey],
    moved: (&[u16], Option<SocketAddr>),
) {
    let mut by_owner: BTreeMap<SocketAddr, Vec<&RdbKey>> = BTreeMap::new();
    for key in keys {
        let addr = match moved {
            (slots, Some(to)) if slots.contains(&key_slot(&key.key)) => to,
            _ => owner(cluster, &key.key),
        };
        by_owner.entry(addr).or_default().push(key);
    }
    let mut src = connect(source).await;
    for (addr, keys) in by_owner {
        let mut target = connect(addr).await;
        for chunk in keys.chunks(500) {
            let digests = |k: &&RdbKey| cmd!("DEBUG", "DIGEST-VALUE", &k.key);
            let want = run(&mut src, chunk.iter().map(digests).collect()).await;
            let mut cmds = Vec::new();
            for k in chunk {
                cmds.push(digests(k));
                cmds.push(cmd!("PTTL", &k.key));
            }
            let got = run(&mut target, cmds).await;
            let now = now_ms();
            for (i, k) in chunk.iter().enumerate() {
                let name = String::from_utf8_lossy(&k.key);
                assert_eq!(got[2 * i], want[i], "{name}: value differs on {addr}");
                let pttl = reply::int(&Cmd::new("PTTL"), got[2 * i + 1].clone()).expect("pttl");
                match k.expire_at_ms {
                    None => assert_eq!(pttl, -1, "{name} has no TTL in the file"),
                    Some(at) => assert!(
                        (at - (now + pttl)).abs() <= 2_000,
                        "{name}: expiry {at}, PTTL {pttl} at {now}"
                    ),
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_counts_keys_and_restores_into_3_and_5_masters() {
    const KEYS: usize = 50_000;
    const SHORT: usize = 20;
    let master = RedisProcs::start("restore-src", 27600, 1, SOURCE_ARGS, &options()).await;
    let source = master.nodes[0].addr();
    let port = master.nodes[0].port.to_string();
    let mut replica_args = SOURCE_ARGS.to_vec();
    replica_args.extend(["--replicaof", "127.0.0.1", &port]);
    let replica = RedisProcs::start("restore-rep", 27610, 1, &replica_args, &options()).await;
    let replica_addr = replica.nodes[0].addr();
    // Attached before the writes, so they reach it over the replication stream.
    let started = Instant::now();
    while !repl_offset(replica_addr).await.1 {
        assert!(started.elapsed() < Duration::from_secs(30), "replica link");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let with_ttl = fill(source, KEYS).await;
    add_short_lived(source, SHORT).await;
    let (shard, rdb) = snapshot(source).await;
    let snapshot_at = now_ms();
    let total = dbsize(source).await;
    eprintln!(
        "source: {} keys ({} with TTL), RDB {} bytes in {:?}, types {:?}",
        shard.keys,
        shard.keys_with_ttl,
        shard.snapshot.bytes,
        shard.snapshot.elapsed,
        shard.keys_by_type
    );
    assert_eq!(shard.keys, total);
    assert_eq!(shard.keys, (KEYS + SHORT + 5) as u64);
    assert_eq!(shard.keys_with_ttl, with_ttl + SHORT as u64);
    assert_eq!(shard.snapshot.bytes, rdb.len() as u64);
    assert_eq!(shard.redis_version.as_deref(), Some("7.0.15"));
    assert_eq!(shard.rdb_version, 10);
    assert!(shard.checksum.is_some());
    for t in ["string", "hash", "list", "set", "zset", "stream"] {
        assert!(shard.keys_by_type.get(t).is_some_and(|n| *n > 0), "{t}");
    }

    // The replica, once it holds everything the master wrote, gives the same count.
    let (master_offset, _) = repl_offset(source).await;
    let seen = wait_replica_offset(
        replica_addr,
        &options(),
        master_offset,
        Duration::from_secs(30),
    )
    .await
    .expect("replica catches up");
    assert!(seen >= master_offset);
    let (from_replica, _) = snapshot(replica_addr).await;
    assert_eq!(from_replica.keys, shard.keys);
    assert!(from_replica.snapshot.repl_offset_before() >= master_offset);

    let keys = parse_all(&rdb).await;
    let live: Vec<RdbKey> = keys
        .into_iter()
        .filter(|k| !k.key.starts_with(b"short:"))
        .collect();
    // Let the short-lived keys expire: the restore must skip them.
    let wait = (snapshot_at + SHORT_TTL_MS as i64 + 200 - now_ms()).max(0);
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    for (masters, base) in [(3usize, 27620u16), (5, 27650)] {
        let cluster = build(
            &format!("restore-{masters}"),
            base,
            masters,
            0,
            CLUSTER_ARGS,
            options(),
        )
        .await;
        let seeds = cluster.procs.addrs();
        assert_eq!(
            cluster_key_count(&seeds, &options()).await.expect("count"),
            0
        );
        let summary = restore(&rdb, &cluster, RestoreMode::Fresh)
            .await
            .expect("restore");
        eprintln!(
            "restore into {masters} masters: {} keys in {:?} = {:.0} keys/s, {:.1} MB/s; per master {:?}",
            summary.restored,
            summary.elapsed,
            summary.restored as f64 / summary.elapsed.as_secs_f64(),
            summary.bytes as f64 / 1e6 / summary.elapsed.as_secs_f64(),
            summary.per_master
        );
        assert_eq!(summary.keys_read, shard.keys);
        assert_eq!(summary.expired_skipped, SHORT as u64);
        assert_eq!(summary.restored, live.len() as u64);
        assert_eq!(summary.replaced, 0);
        assert_eq!(summary.bytes, rdb.len() as u64);
        assert_eq!(summary.per_master.len(), masters);
        assert_eq!(summary.per_master.values().sum::<u64>(), summary.restored);
        assert_eq!(
            cluster_key_count(&seeds, &options()).await.expect("count"),
            live.len() as u64
        );
        verify(&cluster, source, &live, (&[], None)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_stops_on_an_existing_key_and_resume_replaces() {
    let procs = RedisProcs::start("restore-src2", 27700, 1, SOURCE_ARGS, &options()).await;
    let source = procs.nodes[0].addr();
    fill(source, 6_000).await;
    let (shard, rdb) = snapshot(source).await;
    let cluster = build("restore-resume", 27710, 3, 0, CLUSTER_ARGS, options()).await;
    let seeds = cluster.procs.addrs();

    // Someone else wrote one of the backup's keys: a fresh restore names it.
    let victim = b"k:4242";
    let victim_owner = owner(&cluster, victim);
    run(
        &mut connect(victim_owner).await,
        vec![cmd!("SET", &victim[..], "written by someone else")],
    )
    .await;
    match restore(&rdb, &cluster, RestoreMode::Fresh).await {
        Err(RestoreError::Busy { key, addr }) => {
            assert_eq!(key, "\"k:4242\"");
            assert_eq!(addr, victim_owner);
        }
        other => panic!("expected BUSYKEY on k:4242, got {other:?}"),
    }

    // An interrupted attempt: some keys written, one master's lost. Resume completes.
    let first = restore(&rdb, &cluster, RestoreMode::Resume)
        .await
        .expect("resume");
    assert_eq!(first.restored + first.replaced, shard.keys);
    let flushed = cluster.addr(&cluster.leaders[1]);
    let lost = dbsize(flushed).await;
    run(&mut connect(flushed).await, vec![cmd!("FLUSHALL")]).await;
    let summary = restore(&rdb, &cluster, RestoreMode::Resume)
        .await
        .expect("resume");
    eprintln!("resume: {summary:?}");
    assert_eq!(summary.keys_read, shard.keys);
    assert_eq!(summary.restored, lost);
    assert_eq!(summary.replaced, shard.keys - lost);
    assert_eq!(
        cluster_key_count(&seeds, &options()).await.expect("count"),
        shard.keys
    );
    verify(&cluster, source, &parse_all(&rdb).await, (&[], None)).await;
    let got = run(
        &mut connect(victim_owner).await,
        vec![cmd!("GET", &victim[..])],
    )
    .await;
    assert_eq!(got[0], Frame::BulkString(Bytes::from_static(b"value 4242")));
}

/// While the restore is paused (its progress callback blocks), every connection to one master
/// is killed, ten slots move to another master and ten more are left half-moved: the restore
/// re-sends the cut batches (replacing what they had written), follows MOVED and ASK, and
/// every key ends up on its slot's final owner.
#[tokio::test(flavor = "multi_thread")]
async fn restore_survives_killed_connections_and_moving_slots() {
    let procs = RedisProcs::start("restore-src3", 27800, 1, SOURCE_ARGS, &options()).await;
    let source = procs.nodes[0].addr();
    fill(source, 30_000).await;
    let (shard, rdb) = snapshot(source).await;
    let cluster = build("restore-moves", 27810, 3, 0, CLUSTER_ARGS, options()).await;
    let (from, to) = (cluster.leaders[1].clone(), cluster.leaders[2].clone());
    let (from_addr, to_addr) = (cluster.addr(&from), cluster.addr(&to));
    let start = even_ranges(3)[1].start;
    let moved: Vec<u16> = (start..start + 10).collect();
    let opened: Vec<u16> = (start + 10..start + 20).collect();
    let killed_addr = cluster.addr(&cluster.leaders[0]);

    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let admin = cluster.admin.clone();
    let (moving, opening, ids) = (moved.clone(), opened.clone(), (from.clone(), to.clone()));
    let disruptor = tokio::spawn(async move {
        go_rx.await.expect("go");
        let kill = cmd!("CLIENT", "KILL", "TYPE", "normal");
        let killed = run(&mut connect(killed_addr).await, vec![kill]).await;
        eprintln!("killed {killed:?} connection(s) on {killed_addr}");
        for slot in moving {
            admin
                .move_slot(slot, &ids.0, &ids.1, &MoveOptions::default(), None)
                .await
                .expect("move slot");
        }
        for slot in opening {
            let importing = Cmd::setslot_importing(slot, &ids.0);
            run(&mut connect(to_addr).await, vec![importing]).await;
            let migrating = Cmd::setslot_migrating(slot, &ids.1);
            run(&mut connect(from_addr).await, vec![migrating]).await;
        }
        done_tx.send(()).expect("done");
    });
    let mut go = Some(go_tx);
    let mut progress = move |_: &RestoreProgress| {
        if let Some(go) = go.take() {
            go.send(()).expect("disruptor waits");
            done_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("disruption done");
        }
    };
    let limits = RestoreLimits {
        batch: BatchLimits {
            max_commands: 100,
            max_bytes: 1 << 20,
        },
        pipelines_per_master: 1,
        progress_keys: 3_000,
        progress_interval: Duration::from_secs(3600),
        ..RestoreLimits::default()
    };
    let seeds = cluster.procs.addrs();
    let summary = restore_rdb(
        &rdb[..],
        &seeds[..1],
        &options(),
        RestoreMode::Fresh,
        limits,
        &mut progress,
    )
    .await
    .expect("restore");
    disruptor.await.expect("disruptor");
    eprintln!("restore with disruptions: {summary:?}");
    assert_eq!(summary.restored + summary.replaced, shard.keys);
    assert!(summary.retried_batches >= 1, "{summary:?}");
    assert!(summary.redirected >= 1, "{summary:?}");
    for slot in &opened {
        cluster
            .admin
            .move_slot(*slot, &from, &to, &MoveOptions::default(), None)
            .await
            .expect("finish the move");
    }
    assert_eq!(
        cluster_key_count(&seeds, &options()).await.expect("count"),
        shard.keys
    );
    let all: Vec<u16> = moved.iter().chain(&opened).copied().collect();
    verify(
        &cluster,
        source,
        &parse_all(&rdb).await,
        (&all, Some(to_addr)),
    )
    .await;
}

/// Throughput against `redis-cli --cluster import` (run with `-- --ignored --nocapture`,
/// best with `--release`): the same 100,000 keys of every type from a standalone server into
/// a fresh 3-master cluster, once as snapshot + streamed restore, once with redis-cli (which
/// `MIGRATE`s key by key). Prints both rates; asserts only that both copies are complete.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "throughput comparison; runs redis-cli --cluster import"]
async fn throughput_against_redis_cli_cluster_import() {
    let procs = RedisProcs::start("restore-bench-src", 27900, 1, SOURCE_ARGS, &options()).await;
    let source = procs.nodes[0].addr();
    fill(source, 100_000).await;
    let total = dbsize(source).await;

    let ours = build("restore-bench-a", 27910, 3, 0, CLUSTER_ARGS, options()).await;
    let started = Instant::now();
    let (_, rdb) = snapshot(source).await;
    let summary = restore(&rdb, &ours, RestoreMode::Fresh)
        .await
        .expect("restore");
    let ours_took = started.elapsed();
    assert_eq!(summary.restored, total);

    let theirs = build("restore-bench-b", 27930, 3, 0, CLUSTER_ARGS, options()).await;
    let started = Instant::now();
    let status = tokio::process::Command::new("redis-cli")
        .arg("--cluster")
        .arg("import")
        .arg(theirs.procs.addrs()[0].to_string())
        .arg("--cluster-from")
        .arg(source.to_string())
        .arg("--cluster-copy")
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .expect("run redis-cli");
    let theirs_took = started.elapsed();
    assert!(status.success(), "redis-cli --cluster import failed");
    let seeds = theirs.procs.addrs();
    assert_eq!(
        cluster_key_count(&seeds, &options()).await.expect("count"),
        total
    );
    let rate = |took: Duration| total as f64 / took.as_secs_f64();
    eprintln!(
        "{total} keys: snapshot + restore_rdb {ours_took:?} ({:.0} keys/s; restore alone {:?}), \
         redis-cli --cluster import {theirs_took:?} ({:.0} keys/s): {:.1}x",
        rate(ours_took),
        summary.elapsed,
        rate(theirs_took),
        theirs_took.as_secs_f64() / ours_took.as_secs_f64()
    );
}
