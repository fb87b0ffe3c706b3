//! Elections after several leaders die at once (issue 23, "zone loss at scale"), on real
//! redis-server 7.0.15 processes on loopback: no Kubernetes, no operator process.
//!
//! A 10 × 1 cluster (node timeout 5 s) loses, at one instant, what one zone of three holds:
//! three leaders (shards 0, 3, 6) and the followers of three other shards (1, 4, 7). Each of
//! the three orphaned followers must become its shard's master. Measured per strategy, from the
//! SIGKILL until every surviving master routes the three shards' slots to their new masters:
//!
//! - **redis**: nothing is done; Redis's own elections. A master votes once per epoch, so
//!   followers that stand at the same moment split the votes, and a loser tries again only
//!   2 × 2 × node timeout after it started (Redis 7.0 `clusterHandleSlaveFailover`).
//! - **force**: `redis::ops` FORCE (BUMPEPOCH, `CLUSTER FAILOVER FORCE`), one shard at a time,
//!   as soon as the cluster flags the dead leader FAIL.
//! - **takeover**: `redis::ops` TAKEOVER, one shard at a time, as soon as the cluster flags the
//!   dead leader FAIL.
//!
//! Timings are printed, never asserted; each run asserts only that every shard got its new
//! master (within 90 s).
//! `make bench-elections` (about 5 minutes).

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../tests/support"]
mod support {
    pub mod redis_cluster;
    pub mod redis_data;
    pub mod redis_procs;
}

use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_operator::redis::ids::even_ranges;
use redis_operator::redis::ops::failover::{AcceptedRisk, FailoverMode, LeaderGone, RiskKind};
use redis_operator::redis::{ClusterAdmin, NodeId};
use support::redis_cluster::{TestCluster, build, quick};
use support::redis_data::DataClient;

const LEADERS: usize = 10;
/// Shards whose leader dies.
const LOST_LEADERS: [usize; 3] = [0, 3, 6];
/// Shards whose follower dies with them (same zone).
const LOST_FOLLOWERS: [usize; 3] = [1, 4, 7];
const DEADLINE: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug)]
enum Strategy {
    Redis,
    Force,
    Takeover,
}

/// Seconds after the kill at which each lost shard's follower was routed to by every surviving
/// master, and what the strategy did.
struct Run {
    promoted: Vec<f64>,
    actions: Vec<(f64, String)>,
}

/// Whether every answering master routes `slot` to `to`.
fn routed(view: &redis_operator::redis::model::ClusterView, slot: u16, to: &NodeId) -> bool {
    let mut masters = view
        .masters()
        .filter(|m| !m.myself.slots.is_empty())
        .peekable();
    masters.peek().is_some()
        && masters.all(|m| {
            m.peers
                .iter()
                .chain(std::iter::once(&m.myself))
                .any(|e| &e.id == to && e.slots.iter().any(|r| r.contains(slot)))
        })
}

async fn act(admin: &ClusterAdmin, strategy: Strategy, dead: &NodeId, to: &NodeId) -> String {
    let view = admin.observe().await;
    if !view.flagged_fail(dead) {
        return String::new();
    }
    let Ok(proof) = LeaderGone::establish(&view, dead) else {
        return String::new();
    };
    let mode = match strategy {
        Strategy::Redis => return String::new(),
        Strategy::Force => FailoverMode::Force {
            proof,
            risk: AcceptedRisk {
                kind: RiskKind::LoseUnreplicatedWrites,
                reason: "benchmark: the leader is flagged FAIL".into(),
            },
        },
        Strategy::Takeover => FailoverMode::Takeover {
            proof,
            risk: AcceptedRisk {
                kind: RiskKind::SplitBrainAndEpochCollision,
                reason: "benchmark: the leader is flagged FAIL".into(),
            },
        },
    };
    match admin.failover(to, mode).await {
        Ok(o) => format!("{} {:?}", to.short(), o.step),
        Err(e) => format!("{} failed: {e}", to.short()),
    }
}

async fn run(cluster: &mut TestCluster, strategy: Strategy) -> Run {
    let ranges = even_ranges(LEADERS);
    for s in LOST_LEADERS {
        cluster.procs.nodes[s].kill();
    }
    for s in LOST_FOLLOWERS {
        cluster.procs.nodes[LEADERS + s].kill();
    }
    let killed = Instant::now();
    let survivors: Vec<_> = (0..2 * LEADERS)
        .filter(|i| !LOST_LEADERS.contains(i) && !LOST_FOLLOWERS.iter().any(|s| LEADERS + s == *i))
        .map(|i| cluster.procs.nodes[i].addr())
        .collect();
    let admin = ClusterAdmin::new(survivors, quick()).with_poll_interval(Duration::from_millis(50));
    let mut promoted: Vec<Option<f64>> = vec![None; LOST_LEADERS.len()];
    let mut actions = Vec::new();
    while promoted.iter().any(Option::is_none) {
        assert!(
            killed.elapsed() < DEADLINE,
            "{strategy:?}: not every shard got a master within {DEADLINE:?}: {promoted:?}"
        );
        let view = admin.observe().await;
        for (i, s) in LOST_LEADERS.iter().enumerate() {
            let to = &cluster.followers[*s][0];
            if promoted[i].is_none() && routed(&view, ranges[*s].start, to) {
                promoted[i] = Some(killed.elapsed().as_secs_f64());
            }
        }
        // One shard at a time: the first not yet promoted whose leader the cluster failed.
        if let Some(i) = promoted.iter().position(Option::is_none) {
            let s = LOST_LEADERS[i];
            let did = act(
                &admin,
                strategy,
                &cluster.leaders[s],
                &cluster.followers[s][0],
            )
            .await;
            if !did.is_empty() && actions.last().is_none_or(|(_, last)| *last != did) {
                actions.push((killed.elapsed().as_secs_f64(), did));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Run {
        promoted: promoted.into_iter().flatten().collect(),
        actions,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-elections"]
async fn bench_elections() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut rows = Vec::new();
    let mut port = 22100;
    for strategy in [Strategy::Redis, Strategy::Force, Strategy::Takeover] {
        for n in 1..=runs {
            let mut cluster = build(
                &format!("elections-{strategy:?}-{n}").to_lowercase(),
                port,
                LEADERS,
                1,
                &["--cluster-node-timeout", "5000"],
                quick(),
            )
            .await;
            port += 40;
            // Data in every shard, replicated: a follower that never synced is not promoted.
            let mut data = DataClient::new(cluster.procs.addrs(), quick()).await;
            let keys: Vec<(Bytes, Bytes)> = (0..2000)
                .map(|i| (Bytes::from(format!("k:{i}")), Bytes::from(format!("{i}"))))
                .collect();
            data.load(&keys, 200).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let r = run(&mut cluster, strategy).await;
            let mut times = r.promoted.clone();
            times.sort_by(f64::total_cmp);
            let row = format!(
                "| {strategy:?} | {n} | {} | {:.1} s |",
                times
                    .iter()
                    .map(|t| format!("{t:.1} s"))
                    .collect::<Vec<_>>()
                    .join(", "),
                times.last().copied().unwrap_or(f64::NAN)
            );
            println!("{row}");
            for (at, a) in &r.actions {
                println!("    {at:.1} s: {a}");
            }
            rows.push(row);
            // Dropping the cluster stops its processes.
            drop(cluster);
        }
    }
    println!("\n| strategy | run | the three shards routed to their new masters | last |");
    println!("|---|---:|---|---:|");
    for r in rows {
        println!("{r}");
    }
}
