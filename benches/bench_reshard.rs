//! Resharding on real redis-server 7.0.15 processes on loopback, no Kubernetes (issue 23): how
//! fast slots move, and how long a node stops answering while they do, for the operator's
//! `redis::ops` reshard beside `redis-cli --cluster rebalance` on the same cluster and data.
//!
//! One 3 × 1 cluster (AOF everysec, no replica migration: like the operator's members) with three empty masters
//! joined, loaded with `BENCH_RESHARD_KEYS` keys of 16 bytes (default 1,000,000) and
//! `BENCH_RESHARD_BIG` values of 1 MiB (default 20). Each step moves slots and back:
//!
//! - **one pair**: the one-pair MIGRATE bound. A quarter of leader 0's slots are opened
//!   (IMPORTING/MIGRATING in one pipeline each), their keys listed, and then sent by one
//!   connection as `MIGRATE … KEYS` of at most 1,000 keys of one slot, 4 in flight; keys/s of
//!   the transfer alone, without the per-slot SETSLOT and GETKEYSINSLOT round trips.
//! - **ops 3→4 / 4→3 / 3→6 / 6→3**: `ClusterAdmin::reshard` with the options the operator
//!   uses; the 3→6 has nine (source, target) pairs.
//! - **redis-cli 3→4 / 4→3**: `redis-cli --cluster rebalance --cluster-use-empty-masters` (the
//!   two other empty masters weighted 0), and back with the fourth master weighted 0 too.
//!
//! During each step a probe sends `PING` to every master every millisecond and records its
//! latency (and to an idle redis-server outside the cluster, the control: what any process
//! waits for a CPU on this machine meanwhile): the longest is how long that node stopped answering clients (a MIGRATE blocks its
//! source until the target restored the batch, and the target while it restores). Printed per
//! step: wall time, keys moved, keys/s, the longest and the 99th-percentile PING latency over
//! the nodes. Timings are printed, never asserted; every step asserts the slots ended where
//! they should and every key reads back. `make bench-reshard` (about 5 minutes).
//! `BENCH_RESHARD_DIAG=1` prints each master's latency monitor and slow log per step;
//! `BENCH_RESHARD_AOF=no` runs the members without their AOF.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../tests/support"]
mod support {
    pub mod redis_cluster;
    pub mod redis_data;
    pub mod redis_procs;
}

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_operator::redis::client::Client;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::ops::distribution::plan_slot_distribution;
use redis_operator::redis::ops::migrate::Progress;
use redis_operator::redis::ops::reshard::ReshardOptions;
use redis_operator::redis::{AdminOptions, NodeId, reply};
use support::redis_cluster::{TestCluster, build_with_spares};
use support::redis_data::{DataClient, bench_dataset, env_usize};
use support::redis_procs::RedisProcs;

const LEADERS: usize = 3;
const SPARES: usize = 3;
/// Upper bound for one step (the probes stop with it).
const STEP: Duration = Duration::from_secs(300);

/// The data set, `BENCH_RESHARD_KEYS` small keys and `BENCH_RESHARD_BIG` values of 1 MiB.
fn dataset() -> Vec<(Bytes, Bytes)> {
    bench_dataset(
        env_usize("BENCH_RESHARD_KEYS", 1_000_000),
        env_usize("BENCH_RESHARD_BIG", 20),
    )
}

/// A redis-server outside the cluster, idle, probed like the masters: how long any process on
/// this machine waits for a CPU while a step runs. A master that answers later than it did
/// is blocked by its own work (a MIGRATE, a fork); the part both share is the machine.
static IDLE: OnceLock<SocketAddr> = OnceLock::new();

/// (longest, p99) PING latency of the masters, and of the idle control server.
#[derive(Clone, Copy, Default)]
struct Stall {
    masters: (Duration, Duration),
    idle: (Duration, Duration),
}

/// PING latencies of the masters and of the idle server while a step runs.
struct Probe {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>,
    idle: Option<tokio::task::JoinHandle<Vec<Duration>>>,
}

impl Probe {
    fn start(addrs: &[SocketAddr], options: &AdminOptions) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = addrs
            .iter()
            .map(|addr| ping_every_ms(*addr, options.clone(), stop.clone()))
            .collect();
        let idle = IDLE
            .get()
            .map(|addr| ping_every_ms(*addr, options.clone(), stop.clone()));
        Self { stop, tasks, idle }
    }

    async fn finish(self) -> Stall {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap_or_default());
        }
        let idle = match self.idle {
            Some(t) => t.await.unwrap_or_default(),
            None => Vec::new(),
        };
        Stall {
            masters: longest_and_p99(all),
            idle: longest_and_p99(idle),
        }
    }
}

/// A task sending `PING` to `addr` every millisecond until `stop`: each reply's latency.
fn ping_every_ms(
    addr: SocketAddr,
    options: AdminOptions,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let started = Instant::now();
        let Ok(mut c) = Client::connect(addr, &options).await else {
            return samples;
        };
        let ping = Cmd::new("PING");
        // Bounded by the flag, the step deadline and a sample count.
        while !stop.load(Ordering::Relaxed) && started.elapsed() < STEP && samples.len() < 2_000_000
        {
            let t = Instant::now();
            if c.call(&ping).await.is_err() {
                break;
            }
            samples.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples
    })
}

fn longest_and_p99(mut all: Vec<Duration>) -> (Duration, Duration) {
    all.sort();
    let max = all.last().copied().unwrap_or_default();
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or_default();
    (max, p99)
}

/// With `BENCH_RESHARD_DIAG=1`: what each master's latency monitor and slow log saw during a
/// step (events and commands over 5 ms), then both reset.
async fn diagnose(cluster: &TestCluster, label: &str) {
    if std::env::var("BENCH_RESHARD_DIAG").is_err() {
        return;
    }
    for addr in masters(cluster) {
        let mut c = Client::connect(addr, cluster.admin.options())
            .await
            .expect("connect");
        let cmds = [
            Cmd::new("LATENCY").arg("LATEST"),
            Cmd::new("SLOWLOG").arg("GET").arg_int(8),
            Cmd::new("LATENCY").arg("RESET"),
            Cmd::new("SLOWLOG").arg("RESET"),
            Cmd::new("CONFIG")
                .arg("SET")
                .arg("latency-monitor-threshold")
                .arg_int(5),
            Cmd::new("CONFIG")
                .arg("SET")
                .arg("slowlog-log-slower-than")
                .arg_int(5000),
        ];
        let replies = c.pipeline(&cmds).await.expect("diagnostics");
        let show = |r: &Result<_, _>| {
            let s = format!("{r:?}");
            s.chars().take(1500).collect::<String>()
        };
        println!("  [{label}] {addr} latency: {}", show(&replies[0]));
        println!("  [{label}] {addr} slowlog: {}", show(&replies[1]));
    }
}

struct Row {
    step: String,
    elapsed: Duration,
    keys: u64,
    stall: Stall,
}

impl Row {
    fn print(&self) {
        println!(
            "| {} | {:.2} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} |",
            self.step,
            self.elapsed.as_secs_f64(),
            self.keys,
            self.keys as f64 / self.elapsed.as_secs_f64().max(1e-3),
            self.stall.masters.0.as_secs_f64(),
            self.stall.masters.1.as_secs_f64(),
            self.stall.idle.0.as_secs_f64(),
            self.stall.idle.1.as_secs_f64(),
        );
    }
}

fn masters(cluster: &TestCluster) -> Vec<SocketAddr> {
    cluster.procs.nodes[..LEADERS]
        .iter()
        .chain(&cluster.procs.nodes[2 * LEADERS..])
        .map(|n| n.addr())
        .collect()
}

fn master_ids(cluster: &TestCluster, count: usize) -> Vec<NodeId> {
    let mut ids = cluster.leaders.clone();
    ids.extend(
        cluster.ids[2 * LEADERS..2 * LEADERS + count - LEADERS]
            .iter()
            .cloned(),
    );
    ids
}

async fn ops_step(cluster: &TestCluster, to: usize, label: &str, options: &ReshardOptions) -> Row {
    let view = cluster.admin.observe().await;
    let targets = master_ids(cluster, to);
    let moves = plan_slot_distribution(&view.slot_owners(), &targets);
    let probe = Probe::start(&masters(cluster), cluster.admin.options());
    let progress = Progress::default();
    let started = Instant::now();
    let report = match cluster
        .admin
        .reshard(&moves, options, Some(&progress))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let mut c = Client::connect(cluster.procs.nodes[0].addr(), cluster.admin.options())
                .await
                .expect("connect");
            let nodes = c.call(&Cmd::new("CLUSTER").arg("NODES")).await;
            panic!("{label}: reshard: {e}\n{nodes:?}");
        }
    };
    let elapsed = started.elapsed();
    let stall = probe.finish().await;
    diagnose(cluster, label).await;
    settle(cluster, to).await;
    Row {
        step: label.to_owned(),
        elapsed,
        keys: report.keys_moved,
        stall,
    }
}

/// Waits until the cluster agrees and the first `to` masters hold the slots evenly.
async fn settle(cluster: &TestCluster, to: usize) {
    let view = cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(120))
        .await
        .expect("settled");
    let counts = view.slot_counts();
    let ids = master_ids(cluster, to);
    for id in &ids {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!(
            n.abs_diff(16384 / to) <= 1,
            "{} holds {n} slots, not {}",
            id.short(),
            16384 / to
        );
    }
}

async fn redis_cli(args: &[String]) -> Duration {
    let started = Instant::now();
    let out = tokio::process::Command::new("redis-cli")
        .args(args)
        .output()
        .await
        .expect("run redis-cli");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

async fn keys_on(cluster: &TestCluster, addr: SocketAddr) -> u64 {
    let mut c = Client::connect(addr, cluster.admin.options())
        .await
        .expect("connect");
    let cmd = Cmd::new("DBSIZE");
    reply::count(&cmd, c.call(&cmd).await.expect("DBSIZE")).expect("integer")
}

async fn cli_step(cluster: &TestCluster, to: usize) -> Row {
    let seed = cluster.procs.nodes[0].addr().to_string();
    let fourth = cluster.procs.nodes[2 * LEADERS].addr();
    let mut args = vec!["--cluster".to_owned(), "rebalance".to_owned(), seed];
    // Only the fourth master takes part: the other two empty ones weigh nothing.
    args.push("--cluster-weight".to_owned());
    for spare in 2 * LEADERS..3 * LEADERS {
        if spare > 2 * LEADERS || to == 3 {
            args.push(format!("{}=0", cluster.ids[spare].as_str()));
        }
    }
    if to == 4 {
        args.push("--cluster-use-empty-masters".to_owned());
    }
    let before = keys_on(cluster, fourth).await;
    let probe = Probe::start(&masters(cluster), cluster.admin.options());
    let elapsed = redis_cli(&args).await;
    let stall = probe.finish().await;
    let after = keys_on(cluster, fourth).await;
    settle(cluster, to).await;
    Row {
        step: format!("redis-cli {}", if to == 4 { "3→4" } else { "4→3" }),
        elapsed,
        keys: after.abs_diff(before),
        stall,
    }
}

/// The one-pair MIGRATE bound: a quarter of leader 0's slots opened towards the fourth master
/// at once, their keys sent by one connection in MIGRATEs of 1,000 keys, then handed over.
async fn one_pair(cluster: &TestCluster) -> Row {
    let view = cluster.admin.observe().await;
    let (from, to) = (&cluster.leaders[0], &cluster.ids[2 * LEADERS]);
    let slots: Vec<u16> = (0..16384u16)
        .filter(|s| view.slot_owner(*s).as_ref() == Some(from))
        .take(16384 / 4 / LEADERS)
        .collect();
    let options = cluster.admin.options();
    let (source, target) = (cluster.addr(from), cluster.addr(to));
    let mut src = Client::connect(source, options).await.expect("source");
    let mut dst = Client::connect(target, options).await.expect("target");
    let ok = |r: Vec<Result<_, _>>| r.into_iter().for_each(|r| drop(r.expect("SETSLOT")));
    ok(dst
        .pipeline(
            &slots
                .iter()
                .map(|s| Cmd::setslot_importing(*s, from))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("importing"));
    ok(src
        .pipeline(
            &slots
                .iter()
                .map(|s| Cmd::setslot_migrating(*s, to))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("migrating"));
    // The keys are listed before the clock starts: the bound is the transfer itself.
    let mut per_slot: Vec<Vec<Bytes>> = Vec::new();
    for chunk in slots.chunks(64) {
        let gets: Vec<Cmd> = chunk
            .iter()
            .map(|s| Cmd::getkeysinslot(*s, 100_000))
            .collect();
        for (get, r) in gets
            .iter()
            .zip(src.pipeline(&gets).await.expect("GETKEYSINSLOT"))
        {
            per_slot.push(reply::bytes_array(get, r.expect("keys")).expect("keys"));
        }
    }
    let migrates: Vec<Cmd> = per_slot
        .iter()
        .flat_map(|keys| keys.chunks(1000))
        .map(|batch| {
            batch.iter().cloned().fold(
                Cmd::new("MIGRATE")
                    .arg(target.ip().to_string())
                    .arg_int(target.port())
                    .arg("")
                    .arg_int(0)
                    .arg_int(60_000)
                    .arg("KEYS"),
                |c, k| c.arg_bytes(k),
            )
        })
        .collect();
    let keys: u64 = per_slot.iter().map(|k| k.len() as u64).sum();
    let probe = Probe::start(&masters(cluster), options);
    let started = Instant::now();
    // One connection, a few MIGRATEs in flight so the round trip is hidden, as the operator's
    // streams do.
    for window in migrates.chunks(4) {
        for r in src
            .pipeline_with_timeout(window, Duration::from_secs(120))
            .await
            .expect("MIGRATE")
        {
            r.expect("MIGRATE ok");
        }
    }
    let elapsed = started.elapsed();
    let stall = probe.finish().await;
    for c in [&mut dst, &mut src] {
        ok(c.pipeline(
            &slots
                .iter()
                .map(|s| Cmd::setslot_node(*s, to))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("node"));
    }
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(60))
        .await
        .expect("settled");
    Row {
        step: "one pair: MIGRATEs of ≤1,000 keys of a slot, 4 in flight (transfer only)".into(),
        elapsed,
        keys,
        stall,
    }
}

async fn read_back(cluster: &TestCluster, data: &[(Bytes, Bytes)]) {
    let mut client = DataClient::new(cluster.procs.addrs(), cluster.admin.options().clone()).await;
    let keys: Vec<Bytes> = data.iter().map(|(k, _)| k.clone()).collect();
    let values = client.get_many(&keys, 500).await.expect("read back");
    let lost = data
        .iter()
        .zip(values)
        .filter(|((_, v), got)| got.as_ref() != Some(v))
        .count();
    assert_eq!(lost, 0, "keys lost or changed");
}

/// The operator's reshard options, with `BENCH_RESHARD_STREAMS` (per pair), `_MAX_STREAMS`,
/// `_GROUP` (slots per group), `_TARGET_MS` (MIGRATE target time), `_DEPTH` (pipeline
/// depth) and `_MAX_BATCH` (keys per MIGRATE at most) overriding them for tuning.
fn options_from_env() -> ReshardOptions {
    let mut o = ReshardOptions::default();
    o.streams_per_pair = env_usize("BENCH_RESHARD_STREAMS", o.streams_per_pair);
    o.max_streams = env_usize("BENCH_RESHARD_MAX_STREAMS", o.max_streams);
    o.slots_per_group = env_usize("BENCH_RESHARD_GROUP", o.slots_per_group);
    let target = o.moves.batch.target_time.as_millis() as usize;
    o.moves.batch.target_time =
        Duration::from_millis(env_usize("BENCH_RESHARD_TARGET_MS", target) as u64);
    o.moves.batch.pipeline_depth = env_usize("BENCH_RESHARD_DEPTH", o.moves.batch.pipeline_depth);
    o.moves.batch.max = env_usize("BENCH_RESHARD_MAX_BATCH", o.moves.batch.max);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-reshard"]
async fn bench_reshard() {
    // As the operator configures its members: an emptied master stays a master.
    // `BENCH_RESHARD_AOF=no` turns the AOF off, to tell its cost (writes, fsyncs, rewrites'
    // forks) from the moves' own.
    let aof = if std::env::var("BENCH_RESHARD_AOF").as_deref() == Ok("no") {
        "no"
    } else {
        "yes"
    };
    let args = [
        "--appendonly",
        aof,
        "--appendfsync",
        "everysec",
        "--cluster-allow-replica-migration",
        "no",
    ];
    let options = support::redis_cluster::quick();
    let cluster = build_with_spares("reshard", 23400, LEADERS, 1, SPARES, &args, options).await;
    let idle = RedisProcs::start("reshard-idle", 23950, 1, &[], cluster.admin.options()).await;
    let _ = IDLE.set(idle.nodes[0].addr());
    let data = dataset();
    let mut client = DataClient::new(cluster.procs.addrs(), cluster.admin.options().clone()).await;
    client.load(&data, 500).await.expect("load");
    println!(
        "{} keys loaded; one row per step\n\n| step | s | keys moved | keys/s | longest PING (any master) | PING p99 | idle server: longest PING | idle p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|",
        data.len()
    );
    diagnose(&cluster, "after load").await;
    let ops = options_from_env();
    println!("reshard options: {ops:?}");
    let mut rows = Vec::new();
    rows.push(one_pair(&cluster).await);
    rows.last().unwrap().print();
    // Back to three even shards before the timed steps.
    ops_step(&cluster, LEADERS, "(untimed: back to 3)", &ops).await;
    for (to, label) in [
        (4, "ops 3→4"),
        (3, "ops 4→3"),
        (6, "ops 3→6"),
        (3, "ops 6→3"),
    ] {
        rows.push(ops_step(&cluster, to, label, &ops).await);
        rows.last().unwrap().print();
    }
    rows.push(cli_step(&cluster, 4).await);
    rows.last().unwrap().print();
    rows.push(cli_step(&cluster, 3).await);
    rows.last().unwrap().print();
    read_back(&cluster, &data).await;
    println!("\nevery key read back");
}
