//! Backup building blocks against real redis-server 7.0.15 processes: a snapshot taken over
//! `SYNC` (from a master and from a replica) parses into one `DUMP` payload per key that is
//! byte-identical to the server's own `DUMP`, for every type in its small and large
//! encodings, and `RESTORE`d into an empty server gives the same `DEBUG DIGEST`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod support {
    pub mod redis_procs;
}

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use redis_operator::redis::client::Frame;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::ops::restore::{BatchLimits, RestoreBatcher, restore_cmd};
use redis_operator::redis::ops::snapshot::{Snapshot, SnapshotLimits, fetch_rdb};
use redis_operator::redis::parse::info::{ReplicationInfo, parse_replication_info};
use redis_operator::redis::rdb::{RdbKey, RdbReader, ReaderLimits};
use redis_operator::redis::{AdminOptions, Client, reply};
use support::redis_procs::RedisProcs;

macro_rules! cmd {
    ($name:expr $(, $arg:expr)* $(,)?) => { Cmd::new($name)$(.arg($arg))* };
}

/// Standalone servers (the parser must see several databases), streaming diskless RDBs at
/// once, compressing quicklist nodes (so LZF blobs appear inside list payloads too).
const ARGS: &[&str] = &[
    "--cluster-enabled",
    "no",
    "--enable-debug-command",
    "yes",
    "--repl-diskless-sync",
    "yes",
    "--repl-diskless-sync-delay",
    "0",
    "--list-compress-depth",
    "1",
];

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

fn random(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    rand::rng().fill_bytes(&mut buf);
    buf
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

/// Every type in small and large encodings, TTLs, three databases and a function library.
async fn fill(addr: SocketAddr) {
    let mut c = connect(addr).await;
    let mut cmds = vec![
        cmd!("SET", "str:int", "12345"),
        cmd!("SET", "str:neg", "-42"),
        cmd!("SET", "str:int64", "9999999999"),
        cmd!("SET", "str:short", "hello"),
        cmd!("SET", "str:empty", ""),
        cmd!("SET", "str:30", "abcdefghij".repeat(3)),
        cmd!("SET", "str:lzf-small", "ab".repeat(50)),
        cmd!("SET", "str:lzf-1mib", "a".repeat(1 << 20)),
        cmd!("SET", "str:random", random(100 * 1024)),
        cmd!("SET", format!("key:{}", "x".repeat(200)), "an LZF key"),
        cmd!("SET", "123", "an integer key"),
        cmd!("SET", "-7", "a negative integer key"),
        cmd!("SET", random(16), "a binary key"),
        cmd!(
            "HSET",
            "hash:small",
            "f1",
            "v1",
            "f2",
            "v2",
            "f3",
            "3",
            "f4",
            "v4",
            "f5",
            "v5"
        ),
        cmd!("HSET", "hash:longval", "f", "x".repeat(100)),
        cmd!("SADD", "set:int", "1", "2", "3", "-4", "100"),
        cmd!("SADD", "set:int64", "1", "5000000000", "-5000000000"),
        cmd!("SADD", "set:str", "a", "b", "c"),
        cmd!("ZADD", "zset:small", "1", "a", "2", "b", "3.5", "c"),
        cmd!("ZADD", "zset:inf", "+inf", "x", "-inf", "y", "0", "z"),
        cmd!("ZADD", "zset:longmember", "1", "m".repeat(100)),
        cmd!("RPUSH", "list:short", "a", "b", "c", "1", "2"),
        cmd!("SET", "ttl:str", "v", "PX", "600000"),
        cmd!("SET", "ttl:ex", "v", "EX", "100000"),
        cmd!("HSET", "ttl:hash", "f", "v"),
        cmd!("PEXPIRE", "ttl:hash", "3600000"),
        cmd!("RPUSH", "ttl:list", "a"),
        cmd!("PEXPIREAT", "ttl:list", (now_ms() + 7_200_000).to_string()),
    ];
    let mut big_hash = Cmd::new("HSET").arg("hash:big");
    let mut many_set = Cmd::new("SADD").arg("set:many");
    let mut big_zset = Cmd::new("ZADD").arg("zset:big");
    for i in 0..1000 {
        big_hash = big_hash.arg(format!("field:{i}")).arg(format!("value:{i}"));
        many_set = many_set.arg(format!("member:{i}"));
        big_zset = big_zset
            .arg(format!("{}", f64::from(i) / 7.0))
            .arg(format!("m{i}"));
    }
    cmds.extend([big_hash, many_set, big_zset]);
    let mut long_list = Cmd::new("RPUSH").arg("list:long");
    for i in 0..10_000 {
        long_list = long_list.arg(format!("item:{i}"));
    }
    cmds.push(long_list);
    for _ in 0..5 {
        cmds.push(cmd!("RPUSH", "list:big-elements", random(100 * 1024)));
    }
    cmds.push(cmd!(
        "RPUSH",
        "list:compressible",
        "y".repeat(20_000),
        "z".repeat(20_000),
        "w".repeat(20_000)
    ));
    run(&mut c, cmds).await;
    fill_streams(&mut c).await;
    let more = vec![
        cmd!("SELECT", "1"),
        cmd!("SET", "db1:a", "x"),
        cmd!("RPUSH", "db1:list", "a", "b"),
        cmd!("SET", "db1:ttl", "v", "PX", "500000"),
        cmd!("SELECT", "2"),
        cmd!("HSET", "db2:hash", "f", "v"),
        cmd!("SELECT", "0"),
        cmd!(
            "FUNCTION",
            "LOAD",
            "#!lua name=rdblib\nredis.register_function('rdbfn', function(keys, args) return 1 end)"
        ),
    ];
    run(&mut c, more).await;
}

/// Streams with entries, deletions, consumer groups, consumers and pending entries.
async fn fill_streams(c: &mut Client) {
    let mut cmds = Vec::new();
    for i in 1..=100 {
        cmds.push(cmd!(
            "XADD",
            "stream:s",
            format!("{i}-1"),
            "field",
            format!("value {i}"),
            "n",
            i.to_string()
        ));
    }
    for i in 1..=3000 {
        cmds.push(cmd!("XADD", "stream:big", "*", "k", format!("entry {i}")));
    }
    cmds.extend([
        cmd!("XDEL", "stream:s", "50-1"),
        cmd!("XGROUP", "CREATE", "stream:s", "g1", "0"),
        cmd!(
            "XREADGROUP",
            "GROUP",
            "g1",
            "c1",
            "COUNT",
            "10",
            "STREAMS",
            "stream:s",
            ">"
        ),
        cmd!(
            "XREADGROUP",
            "GROUP",
            "g1",
            "c2",
            "COUNT",
            "5",
            "STREAMS",
            "stream:s",
            ">"
        ),
        cmd!("XACK", "stream:s", "g1", "1-1", "12-1"),
        cmd!("XGROUP", "CREATE", "stream:s", "g2", "$"),
        cmd!(
            "XGROUP",
            "CREATECONSUMER",
            "stream:s",
            "g2",
            "idle-consumer"
        ),
        cmd!("XGROUP", "CREATE", "stream:empty", "g", "$", "MKSTREAM"),
        cmd!("XADD", "stream:emptied", "1-1", "a", "b"),
        cmd!("XDEL", "stream:emptied", "1-1"),
    ]);
    run(c, cmds).await;
}

/// The keys of every database, by db.
async fn dbsizes(addr: SocketAddr) -> BTreeMap<u64, u64> {
    let mut c = connect(addr).await;
    let mut out = BTreeMap::new();
    for db in 0..16u64 {
        let replies = run(&mut c, vec![cmd!("SELECT", db.to_string()), Cmd::dbsize()]).await;
        let n = reply::count(&Cmd::dbsize(), replies[1].clone()).expect("dbsize");
        if n > 0 {
            out.insert(db, n);
        }
    }
    out
}

async fn snapshot(addr: SocketAddr) -> (Snapshot, Vec<u8>) {
    let mut sink = Vec::new();
    let snap = fetch_rdb(addr, &options(), &SnapshotLimits::default(), &mut sink)
        .await
        .expect("snapshot");
    (snap, sink)
}

/// Parses `rdb` and checks every key against `DUMP` and `PTTL` on `addr`; returns the keys.
async fn verify_against(rdb: &[u8], addr: SocketAddr) -> Vec<RdbKey> {
    let mut reader = RdbReader::open(rdb, ReaderLimits::default())
        .await
        .expect("header");
    let mut keys = Vec::new();
    while let Some(key) = reader.next_key().await.expect("parse") {
        keys.push(key);
    }
    let summary = reader.summary();
    assert!(
        summary.finished && summary.checksum.is_some(),
        "{summary:?}"
    );
    assert_eq!(summary.version, 10);
    assert_eq!(summary.functions_skipped, 1);
    assert_eq!(summary.aux("redis-ver"), Some("7.0.15"));
    assert_eq!(summary.bytes_read, rdb.len() as u64);
    let mut per_db: BTreeMap<u64, u64> = BTreeMap::new();
    let mut c = connect(addr).await;
    let now = now_ms();
    for key in &keys {
        *per_db.entry(key.db).or_default() += 1;
        let dump = cmd!("DUMP", &key.key);
        let pttl = cmd!("PTTL", &key.key);
        let replies = run(
            &mut c,
            vec![
                cmd!("SELECT", key.db.to_string()),
                dump.clone(),
                pttl.clone(),
            ],
        )
        .await;
        let server = reply::opt_bytes(&dump, replies[1].clone())
            .expect("dump")
            .expect("key exists");
        assert!(
            server == key.payload,
            "key {:?} (type {}): payload differs ({} vs {} bytes)",
            String::from_utf8_lossy(&key.key),
            key.rdb_type,
            key.payload.len(),
            server.len()
        );
        let ttl = reply::int(&pttl, replies[2].clone()).expect("pttl");
        match key.expire_at_ms {
            None => assert_eq!(ttl, -1, "{:?} has no TTL in the file", key.key),
            Some(at) => assert!(
                (at - (now + ttl)).abs() < 5_000,
                "{:?}: expiry {at}, server PTTL {ttl}",
                key.key
            ),
        }
    }
    assert_eq!(per_db, dbsizes(addr).await, "key count per db");
    keys
}

/// RESTOREs `keys` into `addr` in pipelined batches, one target per database.
async fn restore_into(addr: SocketAddr, keys: &[RdbKey]) {
    let mut c = connect(addr).await;
    let mut batcher = RestoreBatcher::new(BatchLimits {
        max_commands: 50,
        max_bytes: 512 * 1024,
    });
    let mut batches = Vec::new();
    let now = now_ms();
    for key in keys {
        let cmd = restore_cmd(key, now).expect("no key expired during the test");
        if let Some(batch) = batcher.push(key.db, cmd) {
            batches.push((key.db, batch));
        }
    }
    batches.extend(batcher.drain());
    for (db, batch) in batches {
        let mut cmds = vec![cmd!("SELECT", db.to_string())];
        cmds.extend(batch);
        run(&mut c, cmds).await;
    }
}

async fn digest(addr: SocketAddr) -> String {
    let mut c = connect(addr).await;
    let cmd = cmd!("DEBUG", "DIGEST");
    let mut out = String::new();
    for db in 0..3 {
        let replies = run(&mut c, vec![cmd!("SELECT", db.to_string()), cmd.clone()]).await;
        out.push_str(&reply::text(&cmd, replies[1].clone()).expect("digest"));
        out.push(' ');
    }
    out
}

fn type_counts(keys: &[RdbKey]) -> BTreeMap<u8, usize> {
    let mut out = BTreeMap::new();
    for key in keys {
        *out.entry(key.rdb_type).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn snapshot_parses_to_dump_payloads_and_restores_identically() {
    let procs = RedisProcs::start("rdb", 27400, 2, ARGS, &options()).await;
    let (source, target) = (procs.nodes[0].addr(), procs.nodes[1].addr());
    fill(source).await;
    let (snap, rdb) = snapshot(source).await;
    assert!(snap.diskless && snap.rdb_only, "{snap:?}");
    assert_eq!(snap.bytes, rdb.len() as u64);
    let sha = ring::digest::digest(&ring::digest::SHA256, &rdb);
    assert_eq!(snap.sha256.as_slice(), sha.as_ref());
    let keys = verify_against(&rdb, source).await;
    let types = type_counts(&keys);
    eprintln!(
        "{} keys, RDB {} bytes, types {types:?}, sha256 {}",
        keys.len(),
        rdb.len(),
        snap.sha256_hex()
    );
    // Every type 7.0 writes: string, set, zset2, hash, intset, zset/hash listpack, quicklist2,
    // stream listpacks 2.
    for t in [0u8, 2, 4, 5, 11, 16, 17, 18, 19] {
        assert!(types.contains_key(&t), "no key of type {t}: {types:?}");
    }
    restore_into(target, &keys).await;
    assert_eq!(digest(source).await, digest(target).await);
    // And key by key, the restored server dumps the same bytes, except for hashtable-encoded
    // sets and hashes, whose DUMP follows the table's iteration order (the digest above
    // covers them).
    let mut c = connect(target).await;
    for key in keys.iter().filter(|k| !matches!(k.rdb_type, 2 | 4)) {
        let dump = cmd!("DUMP", &key.key);
        let replies = run(
            &mut c,
            vec![cmd!("SELECT", key.db.to_string()), dump.clone()],
        )
        .await;
        let got = reply::opt_bytes(&dump, replies[1].clone()).expect("dump");
        assert_eq!(got.as_ref(), Some(&key.payload), "{:?}", key.key);
    }
}

async fn repl_info(addr: SocketAddr) -> ReplicationInfo {
    let mut c = connect(addr).await;
    let info = cmd!("INFO", "replication");
    let text = reply::text(&info, c.call(&info).await.expect("info")).expect("text");
    parse_replication_info(&text).expect("parse")
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_from_an_in_sync_replica() {
    let master = RedisProcs::start("rdb-master", 27420, 1, ARGS, &options()).await;
    let master_addr = master.nodes[0].addr();
    fill(master_addr).await;
    let port = master.nodes[0].port.to_string();
    let mut args = ARGS.to_vec();
    args.extend(["--replicaof", "127.0.0.1", &port]);
    let replica = RedisProcs::start("rdb-replica", 27440, 1, &args, &options()).await;
    let replica_addr = replica.nodes[0].addr();
    // A write after the full sync moves the offsets; in sync = the replica has processed
    // everything the master has.
    let mut tries = 0;
    let master_offset = loop {
        tries += 1;
        assert!(tries < 300, "the replica did not catch up within 30 s");
        let (replica_info, master_info) =
            (repl_info(replica_addr).await, repl_info(master_addr).await);
        let synced = replica_info
            .replica_link()
            .is_some_and(|l| l.link_up && !l.sync_in_progress);
        if synced && master_info.master_repl_offset == 0 {
            run(
                &mut connect(master_addr).await,
                vec![cmd!("SET", "after-sync", "1")],
            )
            .await;
        } else if synced
            && replica_info.replica_link().map(|l| l.repl_offset)
                == Some(master_info.master_repl_offset)
        {
            break master_info.master_repl_offset;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (snap, rdb) = snapshot(replica_addr).await;
    assert!(snap.replication_before.replica_link().is_some());
    assert_eq!(
        snap.repl_offset_before(),
        master_offset,
        "{:?}",
        snap.replication_before.fields
    );
    let keys = verify_against(&rdb, replica_addr).await;
    // The replica's copy is the master's data (payloads of hashtable-encoded sets and hashes
    // may order differently on each, so the digest compares them).
    assert_eq!(digest(replica_addr).await, digest(master_addr).await);
    let total: u64 = dbsizes(master_addr).await.values().sum();
    assert_eq!(keys.len() as u64, total);
}

/// Throughput on a ~100 MB RDB (run with `--release -- --ignored --nocapture`): 100,000
/// random 1 KB strings (incompressible, so the file is as large as the data) plus 200 hashes
/// of 1,000 fields. Prints the fetch, parse and restore rates.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "throughput measurement; writes ~100 MB into a local redis-server"]
async fn throughput_on_a_100_mb_rdb() {
    let procs = RedisProcs::start("rdb-bench", 27460, 2, ARGS, &options()).await;
    let (source, target) = (procs.nodes[0].addr(), procs.nodes[1].addr());
    let mut c = connect(source).await;
    let mut cmds = Vec::new();
    for i in 0..100_000 {
        cmds.push(cmd!("SET", format!("bench:{i}"), random(1000)));
    }
    for i in 0..200 {
        let mut h = Cmd::new("HSET").arg(format!("bench:hash:{i}"));
        for f in 0..1000 {
            h = h.arg(format!("f{f}")).arg(format!("v{f}"));
        }
        cmds.push(h);
    }
    run(&mut c, cmds).await;
    let started = std::time::Instant::now();
    let (snap, rdb) = snapshot(source).await;
    let fetch = started.elapsed();
    let mb = rdb.len() as f64 / 1e6;
    let started = std::time::Instant::now();
    let mut reader = RdbReader::open(&rdb[..], ReaderLimits::default())
        .await
        .expect("header");
    let mut keys = Vec::new();
    while let Some(key) = reader.next_key().await.expect("parse") {
        keys.push(key);
    }
    let parse = started.elapsed();
    // Parse again without keeping the keys: the reader alone.
    let started = std::time::Instant::now();
    let mut reader = RdbReader::open(&rdb[..], ReaderLimits::default())
        .await
        .expect("header");
    let mut count = 0u64;
    while reader.next_key().await.expect("parse").is_some() {
        count += 1;
    }
    let parse_only = started.elapsed();
    let started = std::time::Instant::now();
    restore_into(target, &keys).await;
    let restore = started.elapsed();
    eprintln!(
        "RDB {mb:.1} MB, {count} keys, sha256 {}: fetch {:.0} MB/s ({fetch:?}), parse {:.0} MB/s \
         ({parse:?}; {:.0} MB/s discarding keys), restore {:.0} MB/s ({restore:?})",
        snap.sha256_hex(),
        mb / fetch.as_secs_f64(),
        mb / parse.as_secs_f64(),
        mb / parse_only.as_secs_f64(),
        mb / restore.as_secs_f64(),
    );
    assert_eq!(keys.len() as u64, count);
    assert_eq!(dbsizes(source).await, dbsizes(target).await);
    assert_eq!(digest(source).await, digest(target).await);
}
