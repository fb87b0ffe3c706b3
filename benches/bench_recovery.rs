//! Recovery benchmark: each fault on a fresh 3 × 1 RedisCluster with PVCs and about 100 MB per
//! shard, once with the operator acting and once with the operator process killed before the
//! fault (Redis's own failover only; the Pods' preStop hook is part of the Pod and still runs).
//!
//! Per run: the write pause of the affected shard (longest gap between two successful `SET`s,
//! `WAIT 0`), the pause of acknowledged writes (`SET` + `WAIT 1 1000`, the recovery suite's
//! checker), the time from the fault until every member is back and every follower in sync
//! (`check_recovered`, plus `Ready=True` when the operator runs), and the acknowledged writes
//! lost (every one read back). Nothing is asserted but the fault itself: a baseline that never
//! recovers is a result. Each test appends its rows to `BENCH_RECOVERY_OUT` (default
//! `target/bench-recovery.md`); `BENCH_RUNS` (1–3, default 1) repeats each run.
//!
//! Runs alone on the local cluster (one node is crashed): `make bench-recovery`.

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

use kube_support::*;
use serde_json::json;
use support::ack_writer::{AckWriterOptions, ReadBackOptions};
use support::bench::{ms, pause, preload, shard_pause};
use support::chaos::*;

/// How long a baseline run waits for redundancy to come back by itself.
const BASELINE_DEADLINE: Duration = Duration::from_secs(120);
/// How long a run with the operator waits for Ready and recovered.
const OPERATOR_DEADLINE: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    FollowerDeleted,
    LeaderDeleted,
    LeaderKilled,
    LeaderNodeCrashed,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::FollowerDeleted => "follower Pod deleted",
            Fault::LeaderDeleted => "leader Pod deleted (graceful)",
            Fault::LeaderKilled => "leader process SIGKILLed",
            Fault::LeaderNodeCrashed => "leader's node crashed",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Fault::FollowerDeleted => "bench-follower",
            Fault::LeaderDeleted => "bench-leader",
            Fault::LeaderKilled => "bench-kill",
            Fault::LeaderNodeCrashed => "bench-node",
        }
    }
}

/// What one run measured.
struct Outcome {
    /// Longest gap between successful SETs on the affected shard; `Err(d)` when none succeeded
    /// in the writer's last `d` (writes never resumed).
    write_pause: Result<Duration, Duration>,
    /// The same for acknowledged writes (SET + WAIT 1).
    acked_pause: Result<Duration, Duration>,
    /// Fault → recovered; `None`: not within the deadline.
    redundancy: Option<Duration>,
    deadline: Duration,
    lost: Option<u64>,
    unverified: Option<u64>,
    acknowledged: u64,
    indeterminate: u64,
}

impl Outcome {
    fn row(&self, fault: Fault, operator: bool, run: usize) -> String {
        format!(
            "| {} | {} | {run} | {} | {} | {} | {} | {} / {} |",
            fault.describe(),
            if operator {
                "operator"
            } else {
                "baseline (operator killed)"
            },
            pause(self.write_pause),
            pause(self.acked_pause),
            match self.redundancy {
                Some(d) => ms(d),
                None => format!("not within {} s", self.deadline.as_secs()),
            },
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

/// One run: a fresh cluster, preload, writers, the fault (with or without the operator), the
/// wait for redundancy, the read-back.
async fn run(fault: Fault, operator: bool) -> Outcome {
    let prefix = format!("{}{}", fault.prefix(), if operator { "" } else { "-base" });
    let (mut chaos, members) =
        Chaos::create_on_free_nodes(&prefix, json!({"storage": {"size": "1Gi"}})).await;
    preload(&members, &chaos.pass);
    // The followers have caught up with the preload (Ready needs them in sync).
    let members = chaos.recovered(Duration::from_secs(120), |_| {}).await;
    print_roles(&chaos.ns.name, "before", &members);

    // The shard hit and the member to fault. A node crash takes a leader whose node runs no
    // other namespace's Pod.
    let shard = match fault {
        Fault::LeaderNodeCrashed => {
            let mut clean = None;
            for s in 0..LEADERS {
                if chaos.foreign_pods(&members.leader(s).node).await.is_empty() {
                    clean = Some(s);
                    break;
                }
            }
            clean.expect("a leader on a node without other namespaces' Pods")
        }
        _ => 0,
    };
    let leader = members.leader(shard).clone();
    let victim = match fault {
        Fault::FollowerDeleted => members.followers(shard)[0].clone(),
        _ => leader.clone(),
    };

    let limits = AckWriterOptions {
        max_duration: Duration::from_secs(400),
        ..AckWriterOptions::default()
    };
    let acked = chaos.writer_with(limits.clone()).await;
    let plain = support::bench::plain_writer(members.addrs(), chaos.pass.clone(), limits).await;
    if !operator {
        chaos.operator.kill();
        println!("{}: operator killed before the fault", chaos.ns.name);
    }

    // UTC, to line up with the operator log (/tmp/redis-operator-<namespace>.log).
    println!(
        "{}: {} at {}",
        chaos.ns.name,
        fault.describe(),
        jiff::Timestamp::now()
    );
    let begun = Instant::now();
    let mut node_down = None;
    match fault {
        Fault::FollowerDeleted | Fault::LeaderDeleted => chaos.delete_pods(&[&victim.pod]).await,
        Fault::LeaderKilled => {
            chaos.sigkill_redis(&victim.pod).await;
        }
        Fault::LeaderNodeCrashed => node_down = Some(chaos.crash_node(&victim.node).await),
    }
    let deadline = if operator {
        OPERATOR_DEADLINE
    } else {
        BASELINE_DEADLINE
    };
    let until = Recovery {
        timeout: deadline,
        poll: Duration::from_millis(200),
        require_ready: operator,
    };
    let seeds = |addrs: Vec<SocketAddr>| {
        acked.add_seeds(addrs.clone());
        plain.add_seeds(addrs);
    };
    let recovered = until_recovered(
        &chaos.client,
        &chaos.ns.name,
        NAME,
        (LEADERS, FOLLOWERS),
        until,
        seeds,
    )
    .await;
    let redundancy = recovered.as_ref().ok().map(|_| begun.elapsed());
    match &recovered {
        Ok(_) => println!(
            "{}: recovered {:.2} s after the fault",
            chaos.ns.name,
            begun.elapsed().as_secs_f64()
        ),
        Err(e) => println!("{}: {e}", chaos.ns.name),
    }
    // A little more traffic after the recovery (or the deadline), so a pause has its end.
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
    if let Ok((after, _)) = &recovered {
        print_roles(&chaos.ns.name, "after", after);
    }
    drop(node_down);
    chaos.cleanup().await;
    Outcome {
        write_pause: shard_pause(&plain_report, leader.addr()),
        acked_pause: shard_pause(&report, leader.addr()),
        redundancy,
        deadline,
        lost: report.lost(),
        unverified: report.unverified(),
        acknowledged: report.acknowledged(),
        indeterminate: report.indeterminate(),
    }
}

/// Runs `fault` with and without the operator (`BENCH_RUNS` times each) and appends the rows.
async fn bench(fault: Fault) {
    support::bench::with_and_without_operator("bench_recovery", |i, operator| async move {
        run(fault, operator).await.row(fault, operator, i)
    })
    .await;
}

#[tokio::test]
#[ignore = "benchmark on the local cluster, alone: make bench-recovery"]
async fn bench_1_follower_pod_deleted() {
    bench(Fault::FollowerDeleted).await;
}

#[tokio::test]
#[ignore = "benchmark on the local cluster, alone: make bench-recovery"]
async fn bench_2_leader_pod_deleted() {
    bench(Fault::LeaderDeleted).await;
}

#[tokio::test]
#[ignore = "benchmark on the local cluster, alone: make bench-recovery"]
async fn bench_3_leader_process_killed() {
    bench(Fault::LeaderKilled).await;
}

#[tokio::test]
#[ignore = "benchmark on the local cluster, alone: make bench-recovery"]
async fn bench_4_leader_node_crashed() {
    bench(Fault::LeaderNodeCrashed).await;
}
