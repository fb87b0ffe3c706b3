//! Reconcile cost (issue 23): the operator's CPU per pass once the observation is in memory
//! (`Facts::of` → `plan::decide` → `status::build`) for 3×1, 10×2 and 50×2 healthy clusters,
//! and the same with one leader dead (its node lost: Kubernetes and every voting master say
//! so). `make bench-reconcile` runs it in release mode and prints the table; in `cargo test`
//! it is ignored (a debug build's figures mean little).

use std::time::{Duration, Instant};

use super::fixture::*;
use crate::controller::act::Executed;
use crate::controller::plan::decide;
use crate::controller::plan::facts::Facts;
use crate::controller::status;

/// CPU time this thread has run so far (`/proc/thread-self/schedstat`, first field, in ns):
/// time on a CPU, not time waiting for one, so a busy machine inflates it far less than the
/// wall clock.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// One pure pass: facts, plan, status. Returns the plan's reason (so nothing is optimised
/// away, and the table shows what the pass decided).
fn pass(obs: &crate::controller::observe::Observed, cluster: &crate::crd::RedisCluster) -> String {
    let facts = Facts::of(obs);
    let plan = decide(&facts);
    let (status, conditions) = status::build(cluster, &facts, &plan, &Executed::Nothing);
    assert!(!conditions.is_empty() && status.phase.is_some());
    format!(
        "{}{}",
        plan.reason,
        if plan.ready { " (ready)" } else { "" }
    )
}

/// Median CPU and wall time of `runs` passes.
fn measure(fx: &Fx, runs: usize) -> (Duration, Duration, String) {
    let obs = fx.observed();
    let spec = serde_json::json!({"leaders": fx.leaders, "followersPerLeader": fx.followers});
    let cluster = crate::crd::RedisCluster::new("demo", serde_json::from_value(spec).unwrap());
    let reason = pass(&obs, &cluster);
    let mut cpu = Vec::with_capacity(runs);
    let mut wall = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (c0, w0) = (thread_cpu(), Instant::now());
        std::hint::black_box(pass(&obs, &cluster));
        cpu.push(thread_cpu() - c0);
        wall.push(w0.elapsed());
    }
    cpu.sort();
    wall.sort();
    (cpu[runs / 2], wall[runs / 2], reason)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[test]
#[ignore = "a benchmark: make bench-reconcile"]
fn reconcile_cost() {
    println!("\n| cluster | state | CPU per pass (ms, median) | wall (ms, median) | plan |");
    println!("|---|---|---|---|---|");
    for (leaders, followers, runs) in [(3, 1, 50), (10, 2, 30), (50, 2, 11)] {
        let healthy = sized(leaders, followers);
        let mut dead = sized(leaders, followers);
        // Shard 0's leader lost with its node: no Pod holds its address, every member's bus
        // link to it is down and every one flags it fail.
        let leader = numbered_id(1);
        let node = dead.members[0].node;
        dead.members[0].pod = None;
        dead.members[0].answers = false;
        let others: Vec<String> = dead.members[1..].iter().map(|m| m.id.clone()).collect();
        for o in others {
            dead.link_down.push((o, leader.clone()));
        }
        dead.failed.push(leader);
        dead.not_ready.push(node);
        for (state, fx) in [("healthy", &healthy), ("leader's node dead", &dead)] {
            let (cpu, wall, reason) = measure(fx, runs);
            println!(
                "| {leaders}×{followers} | {state} | {} | {} | {reason} |",
                ms(cpu),
                ms(wall)
            );
        }
    }
}
