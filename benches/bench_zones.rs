//! Zone benchmark (issue 10 §4): a fresh 3 × 1 RedisCluster with 1Gi PVCs and about 100 MB
//! per shard (and, for issue 23's zone loss at scale, a 10 × 1 with the same data), writes
//! running, loses the zone of shard 0's leader — crashed (`zone-down`) or
//! cut off (`zone-down --partition`) — which returns once the cluster is whole again in the
//! surviving zones (or after a deadline). Once with the operator acting, once with the
//! operator process killed 2 s before the fault (Redis's own failover only).
//!
//! Per run: how long after the fault every shard's slots accept writes again (`SET`, and
//! acknowledged `SET` + `WAIT 1`), when the zone's nodes turned NotReady, when every shard
//! had full redundancy again in the surviving zones (`check_recovered` minus the zone, plus
//! `Ready=True` with the operator), how long after `zone-up` the even spread was back
//! (`check_recovered` over all zones, plus `Ready`, `Degraded=False` and `zoneLossSafe`
//! with the operator), and the acknowledged writes lost (every one read back). Nothing is
//! asserted: a baseline that never recovers is a result. Each test appends its rows to
//! `BENCH_ZONES_OUT` (default `target/bench-zones.md`); `BENCH_RUNS` (1–3, default 1)
//! repeats each run.
//!
//! Takes whole zones down (every Pod in them, other namespaces' too): run alone, with nothing
//! else on the local cluster, through `make bench-zones`.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../tests/kube_support/mod.rs"]
mod kube_support;
#[path = "../tests/support"]
mod support {
    pub mod ack_writer;
    pub mod bench;
    pub mod chaos;
}

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use kube_support::*;
use redis_operator::crd::RedisCluster;
use serde_json::json;
use support::ack_writer::{AckWriterOptions, ReadBackOptions};
use support::bench::{PRELOAD_KEYS, ms, pause, preload_keys, resumed_after};
use support::chaos::*;

/// How long a run with the operator waits for each of redundancy and the spread.
const OPERATOR_DEADLINE: Duration = Duration::from_secs(180);
/// How long a baseline run waits for each of them to come back by itself.
const BASELINE_DEADLINE: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Crash,
    Partition,
    /// A crash whose lost leaders' followers never stand for election by themselves
    /// (`cluster-replica-no-failover yes`, set on them right before): the worst case of split
    /// votes, where every promotion is the operator's stalled-election TAKEOVER.
    CrashElectionsDenied,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::Crash => "zone of shard 0's leader crashed",
            Fault::CrashElectionsDenied => {
                "zone of shard 0's leader crashed, its leaders' followers never standing for election"
            }
            Fault::Partition => "zone of shard 0's leader partitioned",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Fault::Crash => "bz-crash",
            Fault::CrashElectionsDenied => "bz-deny",
            Fault::Partition => "bz-part",
        }
    }
}

/// Leaders and followers per leader of the benchmarked cluster.
type Shape = (usize, usize);

/// What one run measured.
struct Outcome {
    /// Fault → every tag's plain `SET`s succeed again; `Err`: some never resumed.
    writable: Result<Duration, Duration>,
    /// The same for acknowledged writes (`SET` + `WAIT 1`).
    acked: Result<Duration, Duration>,
    /// Fault → every node of the zone NotReady.
    not_ready: Option<Duration>,
    /// Fault → full redundancy in the surviving zones; `None`: not within the deadline.
    redundancy: Option<Duration>,
    /// `zone-up` → the even spread (and, with the operator, Ready and settled).
    spread: Option<Duration>,
    deadline: Duration,
    lost: Option<u64>,
    unverified: Option<u64>,
    acknowledged: u64,
    indeterminate: u64,
}

impl Outcome {
    fn row(&self, fault: Fault, shape: Shape, operator: bool, run: usize) -> String {
        let within = |d: Option<Duration>| match d {
            Some(d) => ms(d),
            None => format!("not within {} s", self.deadline.as_secs()),
        };
        let redundancy = match (self.redundancy, self.not_ready) {
            (Some(r), Some(n)) => format!("{} ({} after NotReady)", ms(r), ms(r.saturating_sub(n))),
            (r, _) => within(r),
        };
        format!(
            "| {}×{} | {} | {} | {run} | {} | {} | {} | {redundancy} | {} | {} | {} / {} |",
            shape.0,
            shape.1,
            fault.describe(),
            if operator {
                "operator"
            } else {
                "baseline (operator killed)"
            },
            pause(self.writable),
            pause(self.acked),
            self.not_ready.map_or_else(|| "not seen".to_owned(), ms),
            within(self.spread),
            match (self.lost, self.unverified) {
                (Some(l), Some(0)) => l.to_string(),
                (Some(l), Some(u)) => format!("{l} ({u} unverified)"),
                _ => "not read back".to_owned(),
            },
            self.acknowledged,
            self.indeterminate,
        )
    }
}

/// Polls the zone's Nodes every 200 ms (for at most `limit`) until none is Ready; how long
/// that took from `since`.
fn watch_not_ready(
    client: kube::Client,
    zone: String,
    since: Instant,
    limit: Duration,
) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let nodes: Api<Node> = Api::all(client);
        let selector = ListParams::default().labels(&format!("{ZONE_LABEL}={zone}"));
        while since.elapsed() < limit {
            if let Ok(list) = nodes.list(&selector).await {
                let ready = list.items.iter().any(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                });
                if !list.items.is_empty() && !ready {
                    return Some(since.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    })
}

/// With the operator: until one poll sees `Ready=True`, `Degraded=False`, `zoneLossSafe` and
/// [`check_recovered`]; without: [`check_recovered`] alone. Polls every 200 ms, handing the
/// writers the members' addresses.
async fn spread_again(
    chaos: &Chaos,
    operator: bool,
    deadline: Duration,
    mut seeds: impl FnMut(Vec<SocketAddr>),
) -> Option<Duration> {
    let rcs: Api<RedisCluster> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    let begun = Instant::now();
    let mut last = String::from("not checked yet");
    while begun.elapsed() < deadline {
        seeds(member_addrs(&chaos.client, &chaos.ns.name, NAME).await);
        let settled = if operator {
            match rcs.get_opt(NAME).await.ok().flatten() {
                Some(rc) => {
                    let ready = condition(&rc, "Ready").is_some_and(|c| c.0 == "True");
                    let calm = condition(&rc, "Degraded").is_some_and(|c| c.0 == "False");
                    let safe = rc.status.as_ref().and_then(|s| s.zone_loss_safe) == Some(true);
                    if !(ready && calm && safe) {
                        last = format!("Ready {ready}, Degraded=False {calm}, zoneLossSafe {safe}");
                    }
                    ready && calm && safe
                }
                None => false,
            }
        } else {
            true
        };
        if settled {
            let (leaders, followers) = chaos.shape;
            match check_recovered(&chaos.client, &chaos.ns.name, NAME, leaders, followers).await {
                Ok(_) => return Some(begun.elapsed()),
                Err(e) => last = e,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{}: spread not back: {last}", chaos.ns.name);
    None
}

/// One run: a fresh cluster, preload, writers, the zone down (with or without the operator),
/// the wait for redundancy, the zone back, the wait for the spread, the read-back.
async fn run(fault: Fault, shape: Shape, operator: bool) -> Outcome {
    let prefix = format!(
        "{}{}{}",
        fault.prefix(),
        if shape == (LEADERS, FOLLOWERS) {
            String::new()
        } else {
            format!("-{}x{}", shape.0, shape.1)
        },
        if operator { "" } else { "-base" }
    );
    let setup = Setup {
        shape: Some(shape),
        ..Setup::default()
    };
    let spec = json!({"storage": {"size": "1Gi"}});
    let (mut chaos, members) = Chaos::create_with(&prefix, spec, setup).await;
    // The same data in all: a 10×1 holds a third of a 3×1's per shard.
    preload_keys(
        &members,
        shape.0,
        &chaos.pass,
        PRELOAD_KEYS.parse().unwrap(),
    );
    // The followers have caught up with the preload (Ready needs them in sync).
    let members = chaos.recovered(Duration::from_secs(120), |_| {}).await;
    print_roles(&chaos.ns.name, "before", &members);
    let zone = members.leader(0).zone.clone();
    let held: Vec<usize> = (0..shape.0)
        .filter(|s| members.leader(*s).zone == zone)
        .collect();
    println!(
        "{}: {zone} holds {} of {} leaders",
        chaos.ns.name,
        held.len(),
        shape.0
    );
    if fault == Fault::CrashElectionsDenied {
        for s in &held {
            for f in members.followers(*s) {
                let set = ["config", "set", "cluster-replica-no-failover", "yes"];
                assert!(cli_soft(&f.ip, &chaos.pass, &set).is_some(), "{}", f.pod);
            }
        }
    }

    let limits = AckWriterOptions {
        max_duration: Duration::from_secs(900),
        ..AckWriterOptions::default()
    };
    let acked = chaos.writer_with(limits.clone()).await;
    let plain = support::bench::plain_writer(members.addrs(), chaos.pass.clone(), limits).await;
    if !operator {
        chaos.operator.kill();
        println!("{}: operator killed before the fault", chaos.ns.name);
    }
    let deadline = if operator {
        OPERATOR_DEADLINE
    } else {
        BASELINE_DEADLINE
    };

    // UTC, to line up with the operator log (/tmp/redis-operator-<namespace>.log).
    println!(
        "{}: {} ({zone}) at {}",
        chaos.ns.name,
        fault.describe(),
        jiff::Timestamp::now()
    );
    let (acked_at, plain_at) = (acked.elapsed(), plain.elapsed());
    let begun = Instant::now();
    let down = chaos.zone_down(&zone, fault == Fault::Partition);
    let not_ready = watch_not_ready(chaos.client.clone(), zone.clone(), begun, deadline);
    let seeds = |addrs: Vec<SocketAddr>| {
        acked.add_seeds(addrs.clone());
        plain.add_seeds(addrs);
    };
    let until = Recovery {
        timeout: deadline,
        poll: Duration::from_millis(200),
        require_ready: operator,
    };
    let lost = [zone.clone()];
    let recovered = until_recovered_without(
        &chaos.client,
        &chaos.ns.name,
        NAME,
        shape,
        &lost,
        until,
        seeds,
    )
    .await;
    let redundancy = recovered.as_ref().ok().map(|_| begun.elapsed());
    match &recovered {
        Ok((during, _)) => {
            println!(
                "{}: whole in the surviving zones {:.2} s after the fault",
                chaos.ns.name,
                begun.elapsed().as_secs_f64()
            );
            print_roles(&chaos.ns.name, "zone down", during);
        }
        Err(e) => println!("{}: {e}", chaos.ns.name),
    }
    let not_ready = not_ready.await.ok().flatten();

    drop(down);
    let returned = Instant::now();
    println!("{}: {zone} up at {}", chaos.ns.name, jiff::Timestamp::now());
    let spread = spread_again(&chaos, operator, deadline, |addrs| {
        acked.add_seeds(addrs.clone());
        plain.add_seeds(addrs);
    })
    .await;
    match spread {
        Some(d) => println!(
            "{}: spread again {:.2} s after zone-up",
            chaos.ns.name,
            d.as_secs_f64()
        ),
        None => println!(
            "{}: spread not back {:.0} s after zone-up",
            chaos.ns.name,
            returned.elapsed().as_secs_f64()
        ),
    }
    // A little more traffic, so a pause has its end.
    let now = acked.acknowledged();
    acked_at_least(&acked, now + 300, Duration::from_secs(10)).await;
    let plain_report = plain.stop().await;
    let mut report = acked.stop().await;
    let addrs = member_addrs(&chaos.client, &chaos.ns.name, NAME).await;
    report
        .read_back(&addrs, &chaos.pass, &ReadBackOptions::default())
        .await;
    println!(
        "{} ({}, {}):\n{report}writes without WAIT:\n{plain_report}",
        chaos.ns.name,
        fault.describe(),
        if operator { "operator" } else { "baseline" }
    );
    if let Ok(after) = check_recovered(&chaos.client, &chaos.ns.name, NAME, shape.0, shape.1).await
    {
        print_roles(&chaos.ns.name, "after", &after);
    }
    chaos.cleanup().await;
    Outcome {
        writable: resumed_after(&plain_report, plain_at),
        acked: resumed_after(&report, acked_at),
        not_ready,
        redundancy,
        spread,
        deadline,
        lost: report.lost(),
        unverified: report.unverified(),
        acknowledged: report.acknowledged(),
        indeterminate: report.indeterminate(),
    }
}

/// Why the local cluster cannot re-place a `shape` cluster's members after losing a zone:
/// the placement puts one member per node, so the two smallest zones must hold them all.
async fn too_small(shape: Shape) -> Option<String> {
    let nodes: Api<Node> = Api::all(client().await);
    let list = nodes.list(&ListParams::default()).await.ok()?;
    let mut per_zone = std::collections::BTreeMap::<String, usize>::new();
    for n in &list.items {
        if let Some(zone) = n.metadata.labels.as_ref().and_then(|l| l.get(ZONE_LABEL)) {
            *per_zone.entry(zone.clone()).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = per_zone.values().copied().collect();
    counts.sort_unstable();
    let surviving: usize = counts.iter().take(counts.len().saturating_sub(1)).sum();
    let members = shape.0 * (shape.1 + 1);
    (surviving < members).then(|| {
        format!(
            "not run: after losing a zone, {surviving} nodes for {members} members (one per node); \
             run on `hack/local-cluster up --zones 3 --nodes-per-zone {}`",
            members.div_ceil(2)
        )
    })
}

/// Runs `fault` on a `shape` cluster with and without the operator (`BENCH_RUNS` times
/// each) and appends the rows.
async fn bench(fault: Fault, shape: Shape) {
    if let Some(why) = too_small(shape).await {
        let row = format!("| {}×{} | {} | {why} |", shape.0, shape.1, fault.describe());
        println!("{row}");
        support::bench::append_rows("bench_zones", &[row]);
        return;
    }
    support::bench::with_and_without_operator("bench_zones", |i, operator| async move {
        run(fault, shape, operator)
            .await
            .row(fault, shape, operator, i)
    })
    .await;
}

#[tokio::test]
#[ignore = "benchmark on the local cluster, alone: make bench-zones"]
async fn bench_1_zone_crash() {
    bench(Fault::Crash, (LEADERS, FOLLOWERS)).await;
}

#[tokio::test]
#[ignore = "benchmark on the local cluster, alone: make bench-zones"]
async fn bench_2_zone_partition() {
    bench(Fault::Partition, (LEADERS, FOLLOWERS)).await;
}

/// Issue 23's zone loss at scale: a 10×1 loses three or four leaders at once, and their
/// followers, standing together, may split the masters' votes.
#[tokio::test]
#[ignore = "benchmark on the local cluster, alone: make bench-zones"]
async fn bench_3_zone_crash_10x1() {
    bench(Fault::Crash, (10, 1)).await;
}

/// The same with every election of the lost leaders' followers denied: only the operator's
/// stalled-election TAKEOVER promotes them (Redis alone never would, so no baseline).
#[tokio::test]
#[ignore = "benchmark on the local cluster, alone: make bench-zones"]
async fn bench_4_zone_crash_10x1_elections_denied() {
    let (fault, shape) = (Fault::CrashElectionsDenied, (10, 1));
    if let Some(why) = too_small(shape).await {
        let row = format!("| {}×{} | {} | {why} |", shape.0, shape.1, fault.describe());
        println!("{row}");
        support::bench::append_rows("bench_zones", &[row]);
        return;
    }
    let row = run(fault, shape, true).await.row(fault, shape, true, 1);
    println!("{row}");
    support::bench::append_rows("bench_zones", &[row]);
}
