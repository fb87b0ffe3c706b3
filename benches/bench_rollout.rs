//! Rolling-update benchmark (issue 11): a new image tag (`redis:7.0` → `redis:7.2`) rolled over
//! a fresh 3 × 1 and a fresh 5 × 2 RedisCluster with 1Gi PVCs and about 100 MB per shard, with
//! two writers on every shard: the acknowledged writer (`SET` + `WAIT 1 1000`, every
//! acknowledged key read back at the end) and a plain one (`SET` only).
//!
//! **Operator**: `spec.updateStrategy` RollingUpdate (the default, surge: a replacement per
//! member that syncs before the old one retires), and again with `maxSurge: 0` (restarts in
//! place); the benchmark patches `spec.image` and waits, then prints the operator's Events as a
//! timeline (seconds since the patch). **Naive** (what a StatefulSet rollout does): the same cluster with
//! `updateStrategy: {type: OnDelete}`; after the patch the benchmark itself deletes every member
//! Pod in (shard, member) order, each time waiting for the replacement to be Ready on the new
//! revision and for the cluster to be Ready and whole (`check_recovered`) before the next.
//!
//! Per run: the time from the spec patch until every member runs the new revision and the
//! cluster is `Ready` with the recovery invariants; per shard the longest gap between two
//! successful writes of the tags its leader owned at the start (the p50 / p99 / max over the
//! shards, for `SET` and for `SET` + `WAIT 1`); acknowledged writes lost, asserted 0. Timings
//! are printed, never asserted. Each test appends its rows to `BENCH_ROLLOUT_OUT` (default
//! `target/bench-rollout.md`). `BENCH_ROLLOUT_MODES` picks the rollouts (`surge,in-place,naive`,
//! the default). `BENCH_ROLLOUT_KEYS_PER_SHARD` (default 100000 keys of 1 KiB)
//! shrinks the preload for development.
//!
//! Runs alone on the local cluster (one member per node, 5 × 2 needs 15 nodes):
//! `make bench-rollout`.

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

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_support::*;
use redis_operator::crd::RedisCluster;
use serde_json::{Value, json};
use support::ack_writer::{AckWriter, AckWriterHandle, AckWriterOptions, ReadBackOptions, Report};
use support::chaos::{acked_at_least, print_roles};

const NAME: &str = "bench";
const REVISION: &str = "redis.redis-operator.dev/revision";
/// Creating a cluster, preloading it, waiting for it to be Ready and in sync.
const SETUP: Duration = Duration::from_secs(300);
/// The whole rollout (operator or naive).
const ROLLOUT: Duration = Duration::from_secs(1200);
/// One member of the naive rollout: its replacement Ready and the cluster whole again.
const NAIVE_STEP: Duration = Duration::from_secs(300);
const FROM_IMAGE: &str = "redis:7.0";
const TO_IMAGE: &str = "redis:7.2";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The default: a surge replacement per outdated member (`maxSurge: 1`).
    Operator,
    /// Restarts in place on the members' volumes (`maxSurge: 0`).
    InPlace,
    Naive,
}

impl Mode {
    fn describe(self) -> &'static str {
        match self {
            Mode::Operator => "operator (RollingUpdate, surge: the default)",
            Mode::InPlace => "operator (RollingUpdate, maxSurge 0: in place)",
            Mode::Naive => "naive: OnDelete, each Pod deleted in (shard, member) order",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Mode::Operator => "",
            Mode::InPlace => "-inplace",
            Mode::Naive => "-naive",
        }
    }
}

/// A duration as the tables print it: two decimals below 10 s, one above.
fn secs(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// One benchmark's world: a namespace with its own operator and an L × F cluster.
struct World {
    client: Client,
    ns: TestNamespace,
    operator: Operator,
    pass: String,
    shape: (usize, usize),
    _cleanup: DeleteOnPanic,
}

impl World {
    async fn create(prefix: &str, shape: (usize, usize), extra: Value) -> (Self, Members) {
        let client = client().await;
        let ns = TestNamespace::new(&client, prefix).await;
        let cleanup = DeleteOnPanic(ns.name.clone());
        let operator = Operator::start(&ns.name);
        let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
        api.create(
            &PostParams::default(),
            &cluster(NAME, shape.0 as i32, shape.1 as i32, extra),
        )
        .await
        .unwrap();
        wait_ready(&api, NAME, SETUP).await;
        let pass = password(&client, &ns.name, NAME).await;
        let world = Self {
            client,
            ns,
            operator,
            pass,
            shape,
            _cleanup: cleanup,
        };
        let members = world.recovered(SETUP, |_| {}).await;
        (world, members)
    }

    fn api(&self) -> Api<RedisCluster> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    async fn rc(&self) -> RedisCluster {
        self.api().get(NAME).await.unwrap()
    }

    async fn patch_spec(&self, spec: Value) {
        self.api()
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .unwrap();
    }

    async fn recovered(&self, timeout: Duration, on_poll: impl FnMut(Vec<SocketAddr>)) -> Members {
        wait_recovered(
            &self.client,
            &self.ns.name,
            NAME,
            self.shape,
            timeout,
            on_poll,
        )
        .await
    }

    fn desired(&self) -> usize {
        self.shape.0 * (1 + self.shape.1)
    }

    /// Stops the operator, deletes the namespace and waits (≤ 180 s) until it is gone, so the
    /// next run finds its nodes free.
    async fn cleanup(self) {
        drop(self.operator);
        support::bench::delete_namespace_and_wait(&self.client, self.ns).await;
    }
}

/// Where each shard's longest gap was, as offsets from `patched` (the writer's offset at the
/// spec patch): e.g. `s0 0.41 s at +12.3 s`.
fn where_pauses(report: &Report, leaders: &[SocketAddr], patched: Duration) -> String {
    leaders
        .iter()
        .enumerate()
        .filter_map(|(s, leader)| {
            let gap = report
                .tags
                .iter()
                .filter(|t| t.first_owner == *leader)
                .filter_map(|t| t.outage.longest)
                .max_by_key(|g| g.len())?;
            let at = gap.from.as_secs_f64() - patched.as_secs_f64();
            Some(format!("s{s} {} at {at:+.1} s", secs(gap.len())))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Nearest-rank percentile of `values` (p in 0..=100).
fn percentile(values: &[Duration], p: usize) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * v.len()).div_ceil(100).clamp(1, v.len());
    v[rank - 1]
}

fn p50_p99_max(values: &[Duration]) -> String {
    format!(
        "{} / {} / {}",
        secs(percentile(values, 50)),
        secs(percentile(values, 99)),
        secs(percentile(values, 100))
    )
}

/// What one run measured.
struct Outcome {
    /// Patch → every member updated, Ready and whole; `None`: not within [`ROLLOUT`].
    total: Option<Duration>,
    set_pauses: Vec<Duration>,
    acked_pauses: Vec<Duration>,
    lost: u64,
    acknowledged: u64,
    indeterminate: u64,
}

impl Outcome {
    fn row(&self, shape: (usize, usize), mode: Mode) -> String {
        format!(
            "| {}×{} | {} | {} | {} | {} | {} | {} / {} |",
            shape.0,
            shape.1,
            mode.describe(),
            match self.total {
                Some(d) => secs(d),
                None => format!("not within {} s", ROLLOUT.as_secs()),
            },
            p50_p99_max(&self.set_pauses),
            p50_p99_max(&self.acked_pauses),
            self.lost,
            self.acknowledged,
            self.indeterminate,
        )
    }
}

/// Whether `p` is Ready by its own condition.
fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn revision_of(p: &Pod) -> Option<&String> {
    p.metadata.annotations.as_ref()?.get(REVISION)
}

/// The new target revision once the operator has computed it (other than `old`).
async fn new_revision(world: &World, old: &str) -> String {
    wait_for(
        "the new revision in status",
        Duration::from_secs(60),
        || async {
            let r = world.rc().await.status?.revision?;
            (r != old).then_some(r)
        },
    )
    .await
}

/// Operator rollout: waits until every member Pod carries `revision`, status says all are
/// updated, and the cluster is Ready with the recovery invariants; prints a timeline of what
/// status said meanwhile. `None` at the deadline.
async fn wait_rolled(
    world: &World,
    writers: &[&AckWriterHandle],
    revision: &str,
    begun: Instant,
) -> Option<Duration> {
    let desired = world.desired();
    let all = format!("{desired}/{desired}");
    let mut last = String::new();
    let mut timeline = Vec::new();
    while begun.elapsed() < ROLLOUT {
        let addrs = member_addrs(&world.client, &world.ns.name, NAME).await;
        for w in writers {
            w.add_seeds(addrs.clone());
        }
        let rc = world.rc().await;
        let status = rc.status.clone().unwrap_or_default();
        let ready = condition(&rc, "Ready").map(|c| c.0).unwrap_or_default();
        let progressing = condition(&rc, "Progressing").unwrap_or_default();
        let now = format!(
            "updated {} ready {} Ready={ready} Progressing={} {}",
            status.updated_members.clone().unwrap_or_default(),
            status.ready_members.clone().unwrap_or_default(),
            progressing.1,
            progressing.2
        );
        if now != last {
            timeline.push(format!("  +{:.1} s {now}", begun.elapsed().as_secs_f64()));
            last = now;
        }
        let pods = member_pods(&world.client, &world.ns.name, NAME)
            .await
            .unwrap_or_default();
        let current = pods
            .iter()
            .filter(|p| revision_of(p).map(String::as_str) == Some(revision) && pod_ready(p))
            .count();
        if status.updated_members.as_deref() == Some(all.as_str())
            && current == desired
            && ready == "True"
            && check_recovered(
                &world.client,
                &world.ns.name,
                NAME,
                world.shape.0,
                world.shape.1,
            )
            .await
            .is_ok()
        {
            let took = begun.elapsed();
            println!(
                "{} rollout timeline:\n{}",
                world.ns.name,
                timeline.join("\n")
            );
            return Some(took);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "{} rollout timeline (not done):\n{}",
        world.ns.name,
        timeline.join("\n")
    );
    None
}

/// The live Pod of member (`shard`, `member`), if any.
async fn member_pod(world: &World, shard: usize, member: usize) -> Option<Pod> {
    let pods: Api<Pod> = Api::namespaced(world.client.clone(), &world.ns.name);
    let selector = format!("{CLUSTER_LABEL}={NAME},{SHARD_LABEL}={shard},{MEMBER_LABEL}={member}");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .ok()?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
}

/// Naive rollout: every member Pod deleted in (shard, member) order, each time waiting for its
/// replacement to be Ready on `revision` and for the cluster to be Ready and whole. `None`
/// when a step did not finish within [`NAIVE_STEP`].
async fn naive_rollout(
    world: &World,
    writers: &[&AckWriterHandle],
    revision: &str,
    begun: Instant,
) -> Option<Duration> {
    let pods: Api<Pod> = Api::namespaced(world.client.clone(), &world.ns.name);
    let mut steps = Vec::new();
    for shard in 0..world.shape.0 {
        for member in 0..=world.shape.1 {
            let step = Instant::now();
            let Some(old) = member_pod(world, shard, member).await else {
                println!("s{shard} m{member}: no pod to delete");
                return None;
            };
            let old_name = old.metadata.name.clone().unwrap_or_default();
            let was_leader = members_now(world)
                .await
                .and_then(|m| m.pod(&old_name).map(|m| m.leader))
                .unwrap_or(false);
            pods.delete(&old_name, &DeleteParams::default())
                .await
                .unwrap();
            let mut replaced = None;
            while step.elapsed() < NAIVE_STEP {
                let addrs = member_addrs(&world.client, &world.ns.name, NAME).await;
                for w in writers {
                    w.add_seeds(addrs.clone());
                }
                if let Some(p) = member_pod(world, shard, member).await
                    && p.metadata.name.as_deref() != Some(old_name.as_str())
                    && revision_of(&p).map(String::as_str) == Some(revision)
                    && pod_ready(&p)
                {
                    replaced = Some(step.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let Some(pod_ready_after) = replaced else {
                println!("s{shard} m{member}: replacement not Ready within {NAIVE_STEP:?}");
                return None;
            };
            let until = Recovery {
                timeout: NAIVE_STEP.saturating_sub(step.elapsed()),
                poll: Duration::from_millis(250),
                require_ready: true,
            };
            let recovered = until_recovered(
                &world.client,
                &world.ns.name,
                NAME,
                world.shape,
                until,
                |addrs| {
                    for w in writers {
                        w.add_seeds(addrs.clone());
                    }
                },
            )
            .await;
            if let Err(e) = recovered {
                println!("s{shard} m{member}: {e}");
                return None;
            }
            steps.push(format!(
                "  s{shard} m{member} ({}): pod Ready after {}, cluster whole after {} (+{:.1} s)",
                if was_leader { "leader" } else { "follower" },
                secs(pod_ready_after),
                secs(step.elapsed()),
                begun.elapsed().as_secs_f64()
            ));
        }
    }
    println!(
        "{} naive rollout steps:\n{}",
        world.ns.name,
        steps.join("\n")
    );
    Some(begun.elapsed())
}

/// The members as `check_recovered` sees them now, if it passes.
async fn members_now(world: &World) -> Option<Members> {
    check_recovered(
        &world.client,
        &world.ns.name,
        NAME,
        world.shape.0,
        world.shape.1,
    )
    .await
    .ok()
}

/// The rollouts to run: `BENCH_ROLLOUT_MODES`, a comma-separated list of `surge`, `in-place`
/// and `naive` (default all three).
fn modes() -> Vec<Mode> {
    let wanted = std::env::var("BENCH_ROLLOUT_MODES").unwrap_or_default();
    let all = [
        ("surge", Mode::Operator),
        ("in-place", Mode::InPlace),
        ("naive", Mode::Naive),
    ];
    all.into_iter()
        .filter(|(name, _)| wanted.is_empty() || wanted.split(',').any(|w| w.trim() == *name))
        .map(|(_, mode)| mode)
        .collect()
}

fn keys_per_shard() -> usize {
    std::env::var("BENCH_ROLLOUT_KEYS_PER_SHARD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// One run: a fresh cluster on `FROM_IMAGE`, the preload, both writers, the patch to
/// `TO_IMAGE`, the rollout (by the operator or by hand), the read-back.
async fn run(shape: (usize, usize), mode: Mode) -> Outcome {
    let prefix = format!("bench-roll-{}x{}{}", shape.0, shape.1, mode.suffix());
    let mut extra = json!({"image": FROM_IMAGE, "storage": {"size": "1Gi"}});
    match mode {
        Mode::Naive => extra["updateStrategy"] = json!({"type": "OnDelete"}),
        Mode::InPlace => extra["updateStrategy"] = json!({"maxSurge": 0}),
        Mode::Operator => {}
    }
    let (world, members) = World::create(&prefix, shape, extra).await;
    support::bench::preload_keys(&members, shape.0, &world.pass, keys_per_shard() * shape.0);
    // The followers have caught up with the preload (Ready needs them in sync).
    let members = world.recovered(SETUP, |_| {}).await;
    print_roles(&world.ns.name, "before", &members);
    let leaders: Vec<SocketAddr> = (0..shape.0).map(|s| members.leader(s).addr()).collect();
    let old = world.rc().await.status.unwrap().revision.unwrap();

    let limits = AckWriterOptions {
        max_duration: ROLLOUT + Duration::from_secs(300),
        max_writes: 20_000_000,
        ..AckWriterOptions::default()
    };
    let acked = AckWriter::start(members.addrs(), world.pass.clone(), limits.clone())
        .await
        .expect("acknowledged writer starts");
    assert!(
        acked_at_least(&acked, 200, Duration::from_secs(30)).await,
        "no acknowledged writes before the rollout"
    );
    let plain = support::bench::plain_writer(members.addrs(), world.pass.clone(), limits).await;

    println!(
        "{}: image {FROM_IMAGE} -> {TO_IMAGE} at {} ({})",
        world.ns.name,
        jiff::Timestamp::now(),
        mode.describe()
    );
    let (acked_patched, plain_patched) = (acked.elapsed(), plain.elapsed());
    let begun = Instant::now();
    world.patch_spec(json!({"image": TO_IMAGE})).await;
    let revision = new_revision(&world, &old).await;
    let patched_at = jiff::Timestamp::now();
    let total = match mode {
        Mode::Operator | Mode::InPlace => {
            wait_rolled(&world, &[&acked, &plain], &revision, begun).await
        }
        Mode::Naive => naive_rollout(&world, &[&acked, &plain], &revision, begun).await,
    };
    if mode != Mode::Naive {
        timeline(&world, patched_at).await;
    }
    match total {
        Some(d) => println!("{}: rolled out in {:.1} s", world.ns.name, d.as_secs_f64()),
        None => println!("{}: rollout not done within {ROLLOUT:?}", world.ns.name),
    }
    // A little more traffic after the rollout, so a pause has its end.
    let now = acked.acknowledged();
    acked_at_least(&acked, now + 300, Duration::from_secs(30)).await;
    let plain_report = plain.stop().await;
    let mut report = acked.stop().await;
    let addrs = member_addrs(&world.client, &world.ns.name, NAME).await;
    report
        .read_back(
            &addrs,
            &world.pass,
            &ReadBackOptions {
                deadline: Duration::from_secs(300),
                ..ReadBackOptions::default()
            },
        )
        .await;
    println!(
        "{} ({}):\n{report}writes without WAIT:\n{plain_report}",
        world.ns.name,
        mode.describe()
    );
    println!(
        "{}: longest pause per shard (SET): {}; (SET + WAIT 1): {}",
        world.ns.name,
        where_pauses(&plain_report, &leaders, plain_patched),
        where_pauses(&report, &leaders, acked_patched)
    );
    if let Some(after) = members_now(&world).await {
        print_roles(&world.ns.name, "after", &after);
    }
    let outcome = Outcome {
        total,
        set_pauses: support::bench::shard_pauses(&plain_report, &leaders),
        acked_pauses: support::bench::shard_pauses(&report, &leaders),
        lost: report.lost().unwrap_or(u64::MAX),
        acknowledged: report.acknowledged(),
        indeterminate: report.indeterminate(),
    };
    let verified = report.verify();
    world.cleanup().await;
    if let Err(e) = verified {
        panic!("{e}");
    }
    assert_eq!(report.lost(), Some(0), "acknowledged writes lost");
    outcome
}

/// Where the seconds went: the operator's Events of the run, in order, as seconds since the
/// spec patch (each names its shard).
async fn timeline(world: &World, patched_at: jiff::Timestamp) {
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(world.client.clone(), &world.ns.name);
    let Ok(list) = events.list(&ListParams::default()).await else {
        return;
    };
    let mut lines: Vec<(f64, String)> = list
        .items
        .into_iter()
        .filter_map(|e| {
            let at = e
                .event_time
                .map(|t| t.0)
                .or(e.last_timestamp.map(|t| t.0))?;
            let since = at.duration_since(patched_at).as_secs_f64();
            (since >= -1.0).then(|| {
                (
                    since,
                    format!(
                        "{} {}",
                        e.reason.unwrap_or_default(),
                        e.message.unwrap_or_default()
                    ),
                )
            })
        })
        .collect();
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!(
        "{}: timeline (s since the patch, the operator's Events):",
        world.ns.name
    );
    for (at, line) in lines {
        println!("  {at:7.2}  {line}");
    }
}

/// The operator's rollouts (surge, in place) and the naive one of an L × F cluster; appends
/// the rows.
async fn bench(shape: (usize, usize)) {
    let mut rows = Vec::new();
    for mode in modes() {
        let row = run(shape, mode).await.row(shape, mode);
        println!("{row}");
        rows.push(row);
    }
    support::bench::append_rows("bench_rollout", &rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark on the local cluster, alone: make bench-rollout"]
async fn bench_1_rollout_3x1() {
    bench((3, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark on the local cluster, alone: make bench-rollout"]
async fn bench_2_rollout_5x2() {
    bench((5, 2)).await;
}
