//! Reshard throughput of the library next to Debian's `redis-cli --cluster`, on identical data
//! in the same run. Not a test: run it by hand (see docs/benchmarks.md, "Reshard benchmark").
//!
//! ```text
//! cargo run --release --example reshard_bench -- [--keys 1000000] [--big 32] [--only small|big]
//! ```
//!
//! Scenarios, each on a fresh set of redis-server processes on loopback:
//! * (a) one source to one target, half the slots: ours, `redis-cli --cluster reshard` with
//!   default settings, and with `--cluster-pipeline 1000`;
//! * (b) scale-out rebalance 3→4 leaders: ours, `redis-cli --cluster rebalance
//!   --cluster-use-empty-masters`.
//!
//! Every run ends by reading every key back and comparing its value: zero lost keys or the
//! benchmark fails.

// The test helpers are shared with the integration tests.
#[path = "../tests/support"]
mod support {
    pub mod redis_data;
    pub mod redis_procs;
}

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::ids::even_ranges;
use redis_operator::redis::ops::distribution::{SlotMove, plan_slot_distribution};
use redis_operator::redis::ops::reshard::ReshardOptions;
use redis_operator::redis::{AdminOptions, ClusterAdmin, NodeId, SLOT_COUNT, reply};
use support::redis_data::DataClient;
use support::redis_procs::RedisProcs;

/// The data set of one family of runs.
#[derive(Clone, Copy)]
struct Dataset {
    name: &'static str,
    small_keys: usize,
    big_keys: usize,
}

impl Dataset {
    fn pairs(&self) -> Vec<(Bytes, Bytes)> {
        let mut out = Vec::with_capacity(self.small_keys + self.big_keys);
        for i in 0..self.small_keys {
            out.push((
                Bytes::from(format!("key:{i}")),
                Bytes::from(format!("{i:016}")),
            ));
        }
        for i in 0..self.big_keys {
            let mut v = vec![b'a' + (i % 26) as u8; 1024 * 1024];
            v[..8].copy_from_slice(&(i as u64).to_be_bytes());
            out.push((Bytes::from(format!("big:{i}")), Bytes::from(v)));
        }
        out
    }
}

/// One measured run.
struct Run {
    label: String,
    keys_moved: u64,
    elapsed: Duration,
    /// MIGRATE cost per key on the source(s), from INFO commandstats.
    migrate_usec_per_key: Option<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.keys_moved as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Reshard options, overridable with `--streams N` and `--group N` for tuning runs.
fn reshard_options() -> ReshardOptions {
    let mut o = ReshardOptions::default();
    if let Some(n) = arg("--streams").and_then(|v| v.parse().ok()) {
        o.streams_per_pair = n;
    }
    if let Some(n) = arg("--group").and_then(|v| v.parse().ok()) {
        o.slots_per_group = n;
    }
    o
}

fn options() -> AdminOptions {
    AdminOptions {
        timeouts: redis_operator::redis::Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(30),
            migrate: Duration::from_secs(30),
            ..redis_operator::redis::Timeouts::default()
        },
        ..AdminOptions::default()
    }
}

async fn ids(admin: &ClusterAdmin, procs: &RedisProcs) -> Vec<NodeId> {
    let mut out = Vec::new();
    for addr in procs.addrs() {
        out.push(
            admin
                .observe_node(addr)
                .await
                .expect("observe")
                .id()
                .clone(),
        );
    }
    out
}

/// Starts `nodes` masters; the first `with_slots` share the slots evenly; loads the data.
async fn setup(
    name: &str,
    base: u16,
    nodes: usize,
    with_slots: usize,
    data: &[(Bytes, Bytes)],
) -> (RedisProcs, ClusterAdmin, Vec<NodeId>) {
    let procs = RedisProcs::start(name, base, nodes, &[], &options()).await;
    let admin =
        ClusterAdmin::new(procs.addrs(), options()).with_poll_interval(Duration::from_millis(50));
    admin
        .meet_and_wait(Duration::from_secs(30))
        .await
        .expect("meet");
    let ids = ids(&admin, &procs).await;
    for (i, range) in even_ranges(with_slots).into_iter().enumerate() {
        admin
            .add_slot_ranges(procs.nodes[i].addr(), &[range])
            .await
            .expect("slots");
    }
    admin
        .wait_cluster_settled(Duration::from_secs(60))
        .await
        .expect("settled");
    let mut client = DataClient::new(procs.addrs(), options()).await;
    for chunk in data.chunks(100_000) {
        client.load(chunk, 1000).await.expect("load");
    }
    (procs, admin, ids)
}

async fn dbsize(addr: SocketAddr) -> u64 {
    let mut c = redis_operator::redis::Client::connect(addr, &options())
        .await
        .expect("connect");
    let cmd = Cmd::dbsize();
    reply::count(&cmd, c.call(&cmd).await.expect("dbsize")).expect("count")
}

/// MIGRATE time per key on `sources`, from `INFO commandstats` (`usec` covers the whole
/// synchronous MIGRATE, including the target's RESTORE).
async fn migrate_usec_per_key(sources: &[SocketAddr], keys: u64) -> Option<f64> {
    let mut usec = 0u64;
    for addr in sources {
        let mut c = redis_operator::redis::Client::connect(*addr, &options())
            .await
            .ok()?;
        let cmd = Cmd::info("commandstats");
        let text = reply::text(&cmd, c.call(&cmd).await.ok()?).ok()?;
        let line = text.lines().find(|l| l.starts_with("cmdstat_migrate:"))?;
        let field = line.split(',').find_map(|f| f.strip_prefix("usec="))?;
        usec += field.parse::<u64>().ok()?;
    }
    (keys > 0).then(|| usec as f64 / keys as f64)
}

async fn reset_commandstats(addrs: &[SocketAddr]) {
    for addr in addrs {
        let mut c = redis_operator::redis::Client::connect(*addr, &options())
            .await
            .expect("connect");
        c.call(&Cmd::new("CONFIG").arg("RESETSTAT"))
            .await
            .expect("resetstat");
    }
}

/// Reads every key back; panics on any missing or different value.
async fn verify(procs: &RedisProcs, data: &[(Bytes, Bytes)]) {
    let mut client = DataClient::new(procs.addrs(), options()).await;
    let mut lost = 0usize;
    for chunk in data.chunks(50_000) {
        let keys: Vec<Bytes> = chunk.iter().map(|(k, _)| k.clone()).collect();
        let values = client.get_many(&keys, 1000).await.expect("read back");
        lost += chunk
            .iter()
            .zip(values)
            .filter(|((_, v), got)| got.as_ref() != Some(v))
            .count();
    }
    let total: u64 = {
        let mut t = 0;
        for addr in procs.addrs() {
            t += dbsize(addr).await;
        }
        t
    };
    assert_eq!(lost, 0, "keys lost or changed");
    assert_eq!(
        total,
        data.len() as u64,
        "keys duplicated or lost (DBSIZE sum)"
    );
}

fn redis_cli(args: &[String]) -> Duration {
    let started = Instant::now();
    let status = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run redis-cli");
    assert!(status.success(), "redis-cli {args:?} failed");
    started.elapsed()
}

async fn scenario_a_ours(ds: Dataset, data: &[(Bytes, Bytes)], base: u16) -> Run {
    let (procs, admin, ids) = setup(&format!("a-ours-{}", ds.name), base, 2, 1, data).await;
    let moves: Vec<SlotMove> = (0..SLOT_COUNT / 2)
        .map(|slot| SlotMove {
            slot,
            from: Some(ids[0].clone()),
            to: ids[1].clone(),
        })
        .collect();
    reset_commandstats(&procs.addrs()).await;
    let report = admin
        .reshard(&moves, &reshard_options(), None)
        .await
        .expect("reshard");
    let per_key = migrate_usec_per_key(&[procs.nodes[0].addr()], report.keys_moved).await;
    verify(&procs, data).await;
    Run {
        label: "ours".into(),
        keys_moved: report.keys_moved,
        elapsed: report.elapsed,
        migrate_usec_per_key: per_key,
    }
}

async fn scenario_a_cli(
    ds: Dataset,
    data: &[(Bytes, Bytes)],
    base: u16,
    pipeline: Option<u32>,
) -> Run {
    let (procs, _admin, ids) =
        setup(&format!("a-cli-{}-{pipeline:?}", ds.name), base, 2, 1, data).await;
    let mut args: Vec<String> = vec![
        "--cluster".into(),
        "reshard".into(),
        procs.nodes[0].addr().to_string(),
        "--cluster-from".into(),
        ids[0].to_string(),
        "--cluster-to".into(),
        ids[1].to_string(),
        "--cluster-slots".into(),
        (SLOT_COUNT / 2).to_string(),
        "--cluster-yes".into(),
    ];
    if let Some(p) = pipeline {
        args.push("--cluster-pipeline".into());
        args.push(p.to_string());
    }
    reset_commandstats(&procs.addrs()).await;
    let elapsed = redis_cli(&args);
    let moved = dbsize(procs.nodes[1].addr()).await;
    let per_key = migrate_usec_per_key(&[procs.nodes[0].addr()], moved).await;
    verify(&procs, data).await;
    let label = match pipeline {
        None => "redis-cli reshard (default, pipeline 10)".to_owned(),
        Some(p) => format!("redis-cli reshard --cluster-pipeline {p}"),
    };
    Run {
        label,
        keys_moved: moved,
        elapsed,
        migrate_usec_per_key: per_key,
    }
}

async fn scenario_b_ours(ds: Dataset, data: &[(Bytes, Bytes)], base: u16) -> Run {
    let (procs, admin, ids) = setup(&format!("b-ours-{}", ds.name), base, 4, 3, data).await;
    let view = admin.observe().await;
    let moves = plan_slot_distribution(&view.slot_owners(), &ids);
    reset_commandstats(&procs.addrs()).await;
    let report = admin
        .reshard(&moves, &reshard_options(), None)
        .await
        .expect("reshard");
    let sources: Vec<SocketAddr> = procs.addrs()[..3].to_vec();
    let per_key = migrate_usec_per_key(&sources, report.keys_moved).await;
    verify(&procs, data).await;
    Run {
        label: "ours".into(),
        keys_moved: report.keys_moved,
        elapsed: report.elapsed,
        migrate_usec_per_key: per_key,
    }
}

async fn scenario_b_cli(ds: Dataset, data: &[(Bytes, Bytes)], base: u16) -> Run {
    let (procs, _admin, _ids) = setup(&format!("b-cli-{}", ds.name), base, 4, 3, data).await;
    let args: Vec<String> = vec![
        "--cluster".into(),
        "rebalance".into(),
        procs.nodes[0].addr().to_string(),
        "--cluster-use-empty-masters".into(),
        "--cluster-yes".into(),
    ];
    reset_commandstats(&procs.addrs()).await;
    let elapsed = redis_cli(&args);
    let moved = dbsize(procs.nodes[3].addr()).await;
    let per_key = migrate_usec_per_key(&procs.addrs()[..3], moved).await;
    verify(&procs, data).await;
    Run {
        label: "redis-cli rebalance --cluster-use-empty-masters".into(),
        keys_moved: moved,
        elapsed,
        migrate_usec_per_key: per_key,
    }
}

fn print_runs(title: &str, runs: &[Run]) {
    println!("\n### {title}");
    println!("| run | keys moved | seconds | keys/s | MIGRATE µs/key on source(s) |");
    println!("|---|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {} | {:.2} | {:.0} | {} |",
            r.label,
            r.keys_moved,
            r.elapsed.as_secs_f64(),
            r.rate(),
            r.migrate_usec_per_key
                .map_or("-".to_owned(), |u| format!("{u:.2}"))
        );
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let keys: usize = arg("--keys")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let big: usize = arg("--big").and_then(|v| v.parse().ok()).unwrap_or(32);
    let only = arg("--only");
    let skip_cli = std::env::args().any(|a| a == "--ours-only");
    let datasets = [
        Dataset {
            name: "small",
            small_keys: keys,
            big_keys: 0,
        },
        Dataset {
            name: "big",
            small_keys: keys / 5,
            big_keys: big,
        },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut base = 26000u16;
        let mut next_base = || {
            base += 20;
            base
        };
        for ds in datasets {
            if only.as_deref().is_some_and(|o| o != ds.name) {
                continue;
            }
            let data = ds.pairs();
            let title = format!(
                "{}: {} keys with 16-byte values{}",
                ds.name,
                ds.small_keys,
                if ds.big_keys > 0 { format!(" + {} keys of 1 MB", ds.big_keys) } else { String::new() }
            );
            let mut a = vec![scenario_a_ours(ds, &data, next_base()).await];
            if !skip_cli {
                a.push(scenario_a_cli(ds, &data, next_base(), None).await);
                a.push(scenario_a_cli(ds, &data, next_base(), Some(1000)).await);
            }
            print_runs(&format!("(a) one source → one target, half the slots — {title}"), &a);
            let mut b = vec![scenario_b_ours(ds, &data, next_base()).await];
            if !skip_cli {
                b.push(scenario_b_cli(ds, &data, next_base()).await);
            }
            print_runs(&format!("(b) rebalance 3→4 — {title}"), &b);
            if let Some(us) = a[0].migrate_usec_per_key {
                println!(
                    "\none-pair bound ({}): MIGRATE {us:.2} µs/key ⇒ {:.0} keys/s; ours reaches {:.0}% of it",
                    ds.name,
                    1e6 / us,
                    100.0 * a[0].rate() / (1e6 / us)
                );
            }
            if let [ours, cli_default, cli_best] = a.as_slice() {
                let best = cli_default.rate().max(cli_best.rate());
                println!(
                    "reshard 1→1 ({}): {:.0} keys/s vs redis-cli {:.0} keys/s ({:.1}× redis-cli best; {:.1}× default)",
                    ds.name,
                    ours.rate(),
                    best,
                    ours.rate() / best,
                    ours.rate() / cli_default.rate()
                );
            }
            if let [ours, cli] = b.as_slice() {
                println!(
                    "rebalance 3→4 ({}): {:.0} keys/s vs redis-cli {:.0} keys/s ({:.1}× redis-cli)",
                    ds.name,
                    ours.rate(),
                    cli.rate(),
                    ours.rate() / cli.rate()
                );
            }
        }
    });
}
