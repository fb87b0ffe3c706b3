//! Solver timings: a fresh plan for 1,000 shards × 3 members on 5,000 nodes, a re-plan after
//! losing a zone, and how time grows with nodes and shards. Run with
//! `cargo bench -p redis-scheduler`; docs/benchmarks.md keeps the results.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use redis_scheduler::{
    Capacity, CurrentMember, Node, NodeStatus, Placement, Request, Topology, solve,
};

/// `nodes` schedulable nodes spread round-robin over `zones` zones.
fn topology(nodes: usize, zones: usize) -> Topology {
    Topology {
        nodes: (0..nodes)
            .map(|i| Node {
                name: format!("node-{i:05}"),
                zone: Some(format!("zone-{}", i % zones)),
                status: NodeStatus::Schedulable,
                capacity: Capacity {
                    pods: 110,
                    cpu_millis: 16_000,
                    memory_bytes: 64 << 30,
                },
            })
            .collect(),
    }
}

fn as_current(placement: &Placement) -> Vec<CurrentMember> {
    placement
        .shards
        .iter()
        .flat_map(|s| {
            s.members.iter().map(move |m| CurrentMember {
                shard: s.index,
                role: m.role,
                node: m.node.clone(),
                healthy: true,
            })
        })
        .collect()
}

/// The topology and members right after `zone-0` goes down.
fn after_zone_loss(
    topology: &Topology,
    request: &Request,
) -> Option<(Topology, Vec<CurrentMember>)> {
    let running = as_current(&solve(topology, request, &[]).ok()?);
    let mut down = topology.clone();
    let mut lost = std::collections::HashSet::new();
    for n in down
        .nodes
        .iter_mut()
        .filter(|n| n.zone.as_deref() == Some("zone-0"))
    {
        n.status = NodeStatus::NotReady;
        lost.insert(n.name.clone());
    }
    let current = running
        .into_iter()
        .map(|mut m| {
            m.healthy = !lost.contains(&m.node);
            m
        })
        .collect();
    Some((down, current))
}

fn targets(c: &mut Criterion) {
    let request = Request::new(1000, 2);
    let mut group = c.benchmark_group("target");
    for zones in [3, 6] {
        let t = topology(5000, zones);
        group.bench_with_input(BenchmarkId::new("fresh_5000n_1000x3", zones), &t, |b, t| {
            b.iter(|| solve(black_box(t), &request, &[]))
        });
        // With F = 2 a zone loss needs a fourth zone to stay Required; 3 zones lose one and
        // keep 2, so that re-plan uses F = 1.
        let replan = if zones == 3 {
            Request::new(1000, 1)
        } else {
            request.clone()
        };
        if let Some((down, current)) = after_zone_loss(&t, &replan) {
            group.bench_with_input(
                BenchmarkId::new(
                    format!("zone_loss_5000n_1000x{}", replan.members_per_shard()),
                    zones,
                ),
                &(down.clone(), current.clone()),
                |b, (down, current)| b.iter(|| solve(black_box(down), &replan, black_box(current))),
            );
            // The zone comes back: members move back and leaders rebalance.
            if let Ok(degraded) = solve(&down, &replan, &current) {
                let settled = as_current(&degraded);
                group.bench_with_input(
                    BenchmarkId::new(
                        format!("zone_return_5000n_1000x{}", replan.members_per_shard()),
                        zones,
                    ),
                    &settled,
                    |b, settled| b.iter(|| solve(black_box(&t), &replan, black_box(settled))),
                );
            }
        }
    }
    group.finish();
}

fn growth(c: &mut Criterion) {
    let mut group = c.benchmark_group("growth");
    let request = Request::new(1000, 2);
    for nodes in [5_000, 10_000, 20_000] {
        let t = topology(nodes, 3);
        group.bench_with_input(BenchmarkId::new("nodes_1000x3_3z", nodes), &t, |b, t| {
            b.iter(|| solve(black_box(t), &request, &[]))
        });
    }
    let t = topology(10_000, 3);
    for shards in [250u32, 500, 1000, 2000, 3000] {
        let request = Request::new(shards, 2);
        group.bench_with_input(
            BenchmarkId::new("shards_x3_10000n_3z", shards),
            &request,
            |b, r| b.iter(|| solve(&t, black_box(r), &[])),
        );
    }
    for shards in [250u32, 1000, 2000] {
        let request = Request::new(shards, 2);
        let t6 = topology(10_000, 6);
        if let Some((down, current)) = after_zone_loss(&t6, &request) {
            group.bench_with_input(
                BenchmarkId::new("zone_loss_x3_10000n_6z", shards),
                &(down, current),
                |b, (down, current)| {
                    b.iter(|| solve(black_box(down), &request, black_box(current)))
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = targets, growth
}
criterion_main!(benches);
