//! Backup and restore throughput (issue 22), side by side in one run, without Kubernetes:
//! local redis-server processes on loopback and a real S3 server (versitygw).
//!
//! 1. Backup, per shard of a 3×1 cluster (diskless replication, as the operator configures
//!    it): `take::snapshot` from the shard's follower into an S3 multipart upload, the same
//!    snapshot into `tokio::io::sink()` (Redis + parse, no upload), and `redis-cli --rdb` from
//!    the same follower into a file. MB/s (10^6 bytes) of RDB.
//! 2. Restore into an empty 5-master cluster (5×0): `redis-cli --cluster import --cluster-copy`
//!    from a standalone server holding the same data, then (after `FLUSHALL`) the backup's
//!    objects streamed from S3 through `restore_rdb`, shard files one after another as the
//!    restore loop does, then all at once. Keys/s.
//! 3. The restore's peak memory: it runs in a child process (this binary re-invoked with
//!    `BENCH_BACKUP_CHILD` set) whose `VmHWM` is read at its end.
//!
//! Data: `BENCH_BACKUP_KEYS` strings (default 1,000,000) of `BENCH_BACKUP_VALUE_BYTES`
//! (default 16) plus `BENCH_BACKUP_BIG` values of 1 MiB (default 20). About 1 GB:
//! `BENCH_BACKUP_KEYS=1000000 BENCH_BACKUP_VALUE_BYTES=1024`.
//!
//! `make bench-backup` (a few minutes); the table is printed and written to
//! `target/bench-backup.md`. Nothing is asserted but that every copy is complete.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../tests/support"]
mod support {
    pub mod redis_cluster;
    pub mod redis_data;
    pub mod redis_procs;
    pub mod s3_server;
}

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::RngCore;
use redis_operator::backup::shards::{self, Source};
use redis_operator::backup::store::{S3Location, Store, StoreTimeouts};
use redis_operator::backup::take;
use redis_operator::crd::backup::BackupShardStatus;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::model;
use redis_operator::redis::ops::backup::snapshot_shard;
use redis_operator::redis::ops::restore_stream::{RestoreMode, cluster_key_count, restore_rdb};
use redis_operator::redis::ops::snapshot::SnapshotLimits;
use redis_operator::redis::rdb::ReaderLimits;
use redis_operator::redis::{AdminOptions, Client, reply};
use support::redis_cluster::build;
use support::redis_data::DataClient;
use support::redis_procs::RedisProcs;
use support::s3_server::S3Server;

/// Diskless replication without delay, as the operator configures its members.
const ARGS: &[&str] = &[
    "--repl-diskless-sync",
    "yes",
    "--repl-diskless-sync-delay",
    "0",
];
const STANDALONE_ARGS: &[&str] = &["--cluster-enabled", "no"];
/// Keys generated and loaded per batch (the loader never holds the whole dataset).
const BATCH: usize = 10_000;
/// The longest any one external command (redis-cli, the restore child) may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(1800);
/// The child's environment: set, it runs the restore instead of the benchmark.
const CHILD: &str = "BENCH_BACKUP_CHILD";

fn options() -> AdminOptions {
    AdminOptions::default()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Data {
    keys: usize,
    value_bytes: usize,
    big: usize,
    /// Random bytes the values are cut from: incompressible, so the RDB (LZF) is as large as
    /// the data and the MB/s are the data's.
    pool: Bytes,
}

impl Data {
    fn from_env() -> Self {
        let mut pool = vec![0u8; 4 << 20];
        rand::rng().fill_bytes(&mut pool);
        Self {
            keys: env_usize("BENCH_BACKUP_KEYS", 1_000_000),
            value_bytes: env_usize("BENCH_BACKUP_VALUE_BYTES", 16),
            big: env_usize("BENCH_BACKUP_BIG", 20),
            pool: Bytes::from(pool),
        }
    }

    fn total(&self) -> u64 {
        (self.keys + self.big) as u64
    }

    /// `len` random bytes, a different slice of the pool for each `i`.
    fn value(&self, i: usize, len: usize) -> Bytes {
        let room = self.pool.len().saturating_sub(len).max(1);
        let at = i.wrapping_mul(7919) % room;
        self.pool.slice(at..(at + len).min(self.pool.len()))
    }

    /// Batch `b` of key/value pairs; the big values come in the last batch.
    fn batch(&self, b: usize) -> Vec<(Bytes, Bytes)> {
        let from = b * BATCH;
        let to = (from + BATCH).min(self.keys);
        let mut pairs: Vec<(Bytes, Bytes)> = (from..to)
            .map(|i| {
                (
                    Bytes::from(format!("key:{i}")),
                    self.value(i, self.value_bytes),
                )
            })
            .collect();
        if to == self.keys {
            pairs.extend((0..self.big).map(|i| {
                (
                    Bytes::from(format!("big:{i}")),
                    self.value(i * 104_729, 1 << 20),
                )
            }));
        }
        pairs
    }

    fn batches(&self) -> usize {
        self.keys.div_ceil(BATCH).max(1)
    }
}

/// `DBSIZE` summed over `addrs`.
async fn key_count(addrs: &[SocketAddr]) -> u64 {
    let mut sum = 0;
    for addr in addrs {
        let mut c = Client::connect(*addr, &options()).await.unwrap();
        let cmd = Cmd::dbsize();
        sum += reply::count(&cmd, c.call(&cmd).await.unwrap()).unwrap();
    }
    sum
}

/// Loads the dataset into a cluster (by slot) and into a standalone server, batch by batch.
async fn load(data: &Data, cluster: &mut DataClient, standalone: &mut Client) {
    for b in 0..data.batches() {
        let pairs = data.batch(b);
        cluster.load(&pairs, 1000).await.unwrap();
        for part in pairs.chunks(1000) {
            let cmds: Vec<Cmd> = part
                .iter()
                .map(|(k, v)| Cmd::new("SET").arg_bytes(k.clone()).arg_bytes(v.clone()))
                .collect();
            for r in standalone.pipeline(&cmds).await.unwrap() {
                r.unwrap();
            }
        }
    }
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// Runs a command within [`COMMAND_LIMIT`] (killed past it) and returns its stdout.
async fn run(cmd: &mut tokio::process::Command) -> String {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(COMMAND_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} took over {COMMAND_LIMIT:?}"))
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One shard's backup measurements.
struct ShardRow {
    index: usize,
    bytes: u64,
    keys: u64,
    to_s3: Duration,
    to_sink: Duration,
    redis_cli: Duration,
    redis_cli_bytes: u64,
}

/// Every shard of the 3×1 from its follower: into S3, into a sink, and with redis-cli --rdb.
async fn backup(store: &Store, seeds: &[SocketAddr], tmp: &std::path::Path) -> Vec<ShardRow> {
    let view = model::observe(seeds, &options()).await;
    assert_eq!(shards::not_startable(&view), None);
    let mut rows = Vec::new();
    for s in shards::shards_at_start(&view) {
        let recorded = BackupShardStatus {
            index: i32::try_from(s.index).unwrap(),
            slots: shards::slots_text(&s.slots),
            leader_id: s.leader.to_string(),
            leader_offset_at_start: i64::try_from(s.leader_offset).unwrap(),
            ..BackupShardStatus::default()
        };
        let Source::Follower(f) = shards::source_for(&view, &s, 1) else {
            panic!("shard {} has no in-sync follower", s.index);
        };
        let addr = f.addr;
        let begun = Instant::now();
        let done = take::snapshot(
            store,
            &options(),
            &recorded,
            (addr, addr.to_string(), "follower"),
            s.leader_offset,
        )
        .await
        .unwrap();
        let to_s3 = begun.elapsed();

        let begun = Instant::now();
        let sunk = snapshot_shard(
            addr,
            &options(),
            tokio::io::sink(),
            SnapshotLimits::default(),
            ReaderLimits::default(),
        )
        .await
        .unwrap();
        let to_sink = begun.elapsed();

        let file = tmp.join(format!("shard-{}.rdb", s.index));
        let begun = Instant::now();
        run(tokio::process::Command::new("redis-cli")
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .arg("--rdb")
            .arg(&file))
        .await;
        let redis_cli = begun.elapsed();
        let redis_cli_bytes = std::fs::metadata(&file).unwrap().len();
        std::fs::remove_file(&file).unwrap();

        assert_eq!(sunk.keys, u64::try_from(done.keys.unwrap()).unwrap());
        rows.push(ShardRow {
            index: s.index,
            bytes: u64::try_from(done.bytes.unwrap()).unwrap(),
            keys: sunk.keys,
            to_s3,
            to_sink,
            redis_cli,
            redis_cli_bytes,
        });
    }
    rows
}

async fn flush_all(targets: &[SocketAddr]) {
    for addr in targets {
        let mut c = Client::connect(*addr, &options()).await.unwrap();
        let cmd = Cmd::new("FLUSHALL").arg("SYNC");
        reply::ok(
            &cmd,
            c.call_with_timeout(&cmd, Duration::from_secs(120))
                .await
                .unwrap(),
        )
        .unwrap();
    }
    assert_eq!(cluster_key_count(targets, &options()).await.unwrap(), 0);
}

/// What the restore child reports.
struct ChildRun {
    restored: u64,
    took: Duration,
    rss_start_kb: u64,
    hwm_kb: u64,
}

/// Runs the restore in a child process (this binary, the `restore_child` test).
async fn restore_in_child(
    s3: &S3Server,
    prefix: &str,
    objects: &[String],
    targets: &[SocketAddr],
    parallel: bool,
) -> ChildRun {
    let exe = std::env::current_exe().unwrap();
    let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
    let out = run(tokio::process::Command::new(exe)
        .args(["restore_child", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD, "1")
        .env("BENCH_BACKUP_S3", s3.endpoint())
        .env("BENCH_BACKUP_PREFIX", prefix)
        .env("BENCH_BACKUP_OBJECTS", objects.join(","))
        .env("BENCH_BACKUP_TARGETS", targets.join(","))
        .env("BENCH_BACKUP_PARALLEL", if parallel { "1" } else { "0" }))
    .await;
    let line = out
        .lines()
        .find_map(|l| l.split_once("RESTORE-RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no result from the restore child:\n{out}"));
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    ChildRun {
        restored: v[0],
        took: Duration::from_micros(v[1]),
        rss_start_kb: v[2],
        hwm_kb: v[3],
    }
}

/// A `/proc/self/status` field in kB.
fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The restore, in the child: every object from S3 through `restore_rdb` into the targets,
/// one after another (as the restore loop does) or all at once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "the restore child of bench_backup (runs only with BENCH_BACKUP_CHILD set)"]
async fn restore_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let rss_start_kb = proc_status_kb("VmRSS");
    let var = |n: &str| std::env::var(n).unwrap();
    let location = S3Location {
        endpoint: Some(var("BENCH_BACKUP_S3")),
        bucket: support::s3_server::BUCKET.to_string(),
        prefix: var("BENCH_BACKUP_PREFIX"),
        region: support::s3_server::REGION.to_string(),
        ca_pem: None,
    };
    let store = Store::s3(
        &location,
        &S3Server::credentials(),
        StoreTimeouts::default(),
    )
    .unwrap();
    let objects: Vec<String> = var("BENCH_BACKUP_OBJECTS")
        .split(',')
        .map(String::from)
        .collect();
    let targets: Vec<SocketAddr> = var("BENCH_BACKUP_TARGETS")
        .split(',')
        .map(|a| a.parse().unwrap())
        .collect();
    let one = |object: String| {
        let (store, targets) = (store.clone(), targets.clone());
        async move {
            let reader = store.reader(&object).await.unwrap();
            restore_rdb(
                reader,
                &targets,
                &options(),
                RestoreMode::Fresh,
                Default::default(),
                &mut |_| {},
            )
            .await
            .unwrap()
            .restored
        }
    };
    let begun = Instant::now();
    let mut restored = 0;
    if var("BENCH_BACKUP_PARALLEL") == "1" {
        let tasks: Vec<_> = objects.into_iter().map(|o| tokio::spawn(one(o))).collect();
        for t in tasks {
            restored += t.await.unwrap();
        }
    } else {
        for o in objects {
            restored += one(o).await;
        }
    }
    let took = begun.elapsed();
    println!(
        "RESTORE-RESULT {restored} {} {rss_start_kb} {}",
        took.as_micros(),
        proc_status_kb("VmHWM")
    );
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kb: u64) -> String {
    format!("{:.0} MiB", kb as f64 / 1024.0)
}

/// The backup rows of the table: per shard, then all shards.
fn backup_rows(rows: &[ShardRow]) -> Vec<String> {
    let mut out = Vec::new();
    let line = |what: String,
                bytes: u64,
                keys: u64,
                s3: Duration,
                sink: Duration,
                cli: (Duration, u64)| {
        format!(
            "| backup {what}: {:.1} MB, {keys} keys | {:.1} MB/s ({}) into S3; {:.1} MB/s ({}) into a sink | {:.1} MB/s ({}) | {:.2}x |",
            bytes as f64 / 1e6,
            mb_per_s(bytes, s3),
            secs(s3),
            mb_per_s(bytes, sink),
            secs(sink),
            mb_per_s(cli.1, cli.0),
            secs(cli.0),
            mb_per_s(bytes, s3) / mb_per_s(cli.1, cli.0),
        )
    };
    for r in rows {
        out.push(line(
            format!("shard {}", r.index),
            r.bytes,
            r.keys,
            r.to_s3,
            r.to_sink,
            (r.redis_cli, r.redis_cli_bytes),
        ));
    }
    let sum = |f: fn(&ShardRow) -> Duration| rows.iter().map(f).sum::<Duration>();
    out.push(line(
        "3 shards one after another".into(),
        rows.iter().map(|r| r.bytes).sum(),
        rows.iter().map(|r| r.keys).sum(),
        sum(|r| r.to_s3),
        sum(|r| r.to_sink),
        (
            sum(|r| r.redis_cli),
            rows.iter().map(|r| r.redis_cli_bytes).sum(),
        ),
    ));
    out
}

/// Backup from a 3×1 against redis-cli --rdb; restore into a 5×0 against redis-cli --cluster
/// import; the restore's peak memory. Prints the table.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: local redis-server processes, versitygw and redis-cli (make bench-backup)"]
async fn bench_backup() {
    let data = Data::from_env();
    let total = data.total();
    let s3 = S3Server::start("bench-backup");
    let prefix = "bench/src/";
    let store = Store::s3(
        &s3.location(prefix),
        &S3Server::credentials(),
        StoreTimeouts::default(),
    )
    .unwrap();
    let src = build("bbench-src", 28200, 3, 1, ARGS, options()).await;
    let standalone = RedisProcs::start("bbench-one", 28240, 1, STANDALONE_ARGS, &options()).await;
    let one = standalone.nodes[0].addr();
    let begun = Instant::now();
    let mut cluster = DataClient::new(src.procs.addrs(), options()).await;
    let mut single = Client::connect(one, &options()).await.unwrap();
    load(&data, &mut cluster, &mut single).await;
    // The leaders come first in the build's processes.
    assert_eq!(key_count(&src.procs.addrs()[..3]).await, total);
    assert_eq!(key_count(&[one]).await, total);
    println!(
        "loaded {total} keys into the 3x1 and the standalone server in {}",
        secs(begun.elapsed())
    );

    let rows = backup(&store, &src.procs.addrs(), &s3.dir).await;
    let objects: Vec<String> = rows
        .iter()
        .map(|r| format!("shard-{}.rdb", r.index))
        .collect();
    drop(cluster);
    drop(src);

    let dst = build("bbench-dst", 28260, 5, 0, ARGS, options()).await;
    let targets = dst.procs.addrs();
    let begun = Instant::now();
    run(tokio::process::Command::new("redis-cli")
        .args(["--cluster", "import", &targets[0].to_string()])
        .args(["--cluster-from", &one.to_string(), "--cluster-copy"]))
    .await;
    let import = begun.elapsed();
    assert_eq!(
        cluster_key_count(&targets, &options()).await.unwrap(),
        total
    );
    drop(single);
    drop(standalone);

    let mut restores = Vec::new();
    for parallel in [false, true] {
        flush_all(&targets).await;
        let r = restore_in_child(&s3, prefix, &objects, &targets, parallel).await;
        assert_eq!(r.restored, total);
        assert_eq!(
            cluster_key_count(&targets, &options()).await.unwrap(),
            total
        );
        restores.push((parallel, r));
    }

    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    let mut table = vec![
        format!(
            "{total} keys: {} of {} B and {} of 1 MiB; Redis 7.0, loopback, MB = 10^6 bytes",
            data.keys, data.value_bytes, data.big
        ),
        String::new(),
        "| measurement | ours | redis-cli | ours / redis-cli |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    table.extend(backup_rows(&rows));
    for (parallel, r) in &restores {
        let how = if *parallel {
            "3 shard files at once"
        } else {
            "shard files one after another"
        };
        table.push(format!(
            "| restore into 5×0 from S3, {how} (ours) vs `--cluster import --cluster-copy` from a standalone server | {:.0} keys/s ({}) | {:.0} keys/s ({}) | {:.1}x |",
            rate(r.took),
            secs(r.took),
            rate(import),
            secs(import),
            rate(r.took) / rate(import),
        ));
    }
    for (parallel, r) in &restores {
        let how = if *parallel {
            "3 at once"
        } else {
            "one after another"
        };
        table.push(format!(
            "| restore peak RSS ({how}; its own process) | {} (at start {}) | - | - |",
            mib(r.hwm_kb),
            mib(r.rss_start_kb),
        ));
    }
    let text = table.join("\n");
    println!("\nBackup benchmark\n\n{text}\n");
    let _ = std::fs::create_dir_all("target");
    std::fs::write("target/bench-backup.md", format!("{text}\n")).unwrap();
}
