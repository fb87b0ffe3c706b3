//! Chaos end-to-end: faults injected into a Ready 3 × 1 RedisCluster while an
//! acknowledged-write checker (`support/ack_writer.rs`) writes to every shard. Each test has
//! its own namespace and operator process, waits (up to 240 s) for `Ready=True` together with
//! the recovery invariants ([`check_recovered`]), then reads every acknowledged write back:
//! none may be lost. The writer's outage numbers are printed as benchmarks, never asserted.
//!
//! Needs the local cluster, the CRD and the RBAC: run through `make test`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;
mod support {
    pub mod ack_writer;
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use kube_support::*;
use redis_operator::crd::RedisCluster;
use redis_operator::redis::model::observe_node;
use serde_json::{Value, json};
use support::ack_writer::{AckWriter, AckWriterHandle, AckWriterOptions, ReadBackOptions};

const NAME: &str = "chaos";
const LEADERS: usize = 3;
const FOLLOWERS: usize = 1;
const RECOVERY: Duration = Duration::from_secs(240);

/// One test's world: namespace (deleted at the end, or on a panic), operator, a Ready 3 × 1
/// cluster and its password.
struct Chaos {
    client: Client,
    ns: TestNamespace,
    operator: Operator,
    pass: String,
    _cleanup: DeleteOnPanic,
}

impl Chaos {
    /// Namespace, operator, the cluster (with `extra` spec fields), Ready and healthy, and
    /// the writer running with acknowledged writes on every shard.
    async fn start(prefix: &str, extra: Value) -> (Self, Members, AckWriterHandle) {
        let client = client().await;
        let ns = TestNamespace::new(&client, prefix).await;
        let cleanup = DeleteOnPanic(ns.name.clone());
        let operator = Operator::start(&ns.name);
        let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
        api.create(
            &PostParams::default(),
            &cluster(NAME, LEADERS as i32, FOLLOWERS as i32, extra),
        )
        .await
        .unwrap();
        wait_ready(&api, NAME, RECOVERY).await;
        let pass = password(&client, &ns.name, NAME).await;
        let chaos = Self {
            client,
            ns,
            operator,
            pass,
            _cleanup: cleanup,
        };
        let members = chaos.recovered(Duration::from_secs(120), |_| {}).await;
        print_roles(&chaos.ns.name, "before", &members);
        let writer = chaos.writer(&members).await;
        (chaos, members, writer)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Starts the writer against the members and waits until it has acknowledged writes.
    async fn writer(&self, members: &Members) -> AckWriterHandle {
        let writer = AckWriter::start(
            members.addrs(),
            self.pass.clone(),
            AckWriterOptions {
                // Setup and the 240 s recovery deadline fit; the writer stops by itself after.
                max_duration: Duration::from_secs(480),
                ..AckWriterOptions::default()
            },
        )
        .await
        .expect("ack writer starts");
        if !acked_at_least(&writer, 200, Duration::from_secs(30)).await {
            return fail(writer, "no acknowledged writes before the fault").await;
        }
        writer
    }

    /// [`wait_recovered`] for this cluster.
    async fn recovered(&self, timeout: Duration, on_poll: impl FnMut(Vec<SocketAddr>)) -> Members {
        wait_recovered(
            &self.client,
            &self.ns.name,
            NAME,
            (LEADERS, FOLLOWERS),
            timeout,
            on_poll,
        )
        .await
    }

    /// Waits for recovery while handing the writer the members' current addresses, checks
    /// that writes still get acknowledged, stops the writer, reads back and asserts that no
    /// acknowledged write was lost; then stops the operator and deletes the namespace.
    /// Returns the recovered members.
    async fn finish(self, writer: AckWriterHandle) -> Members {
        let begun = Instant::now();
        let members = self
            .recovered(RECOVERY, |addrs| writer.add_seeds(addrs))
            .await;
        let recovered_after = begun.elapsed();
        let now = writer.acknowledged();
        if !acked_at_least(&writer, now + 300, Duration::from_secs(60)).await {
            return fail(writer, "writes are not acknowledged after the recovery").await;
        }
        let mut report = writer.stop().await;
        report
            .read_back(&members.addrs(), &self.pass, &ReadBackOptions::default())
            .await;
        // One print per test, so that parallel tests' reports do not interleave.
        println!(
            "{}: Ready and recovered {:.1} s after the fault\n{report}",
            self.ns.name,
            recovered_after.as_secs_f64()
        );
        if let Err(e) = report.verify() {
            panic!("{e}");
        }
        assert_eq!(report.lost(), Some(0));
        assert!(report.acknowledged() > 0);
        print_roles(&self.ns.name, "after", &members);
        drop(self.operator);
        self.ns.cleanup().await;
        members
    }

    async fn delete_pods(&self, names: &[&str]) {
        let pods = self.pods();
        let deletes = names
            .iter()
            .map(|n| {
                let pods = pods.clone();
                async move { pods.delete(n, &DeleteParams::default()).await }
            })
            .collect::<Vec<_>>();
        for (name, r) in names.iter().zip(futures::future::join_all(deletes).await) {
            r.unwrap_or_else(|e| panic!("delete pod {name}: {e}"));
        }
        println!("deleted {names:?}");
    }

    /// SIGKILLs the redis process of `pod` and waits until its container runs again.
    async fn kill_redis(&self, pod: &str) {
        let pods = self.pods();
        let before = pods.get(pod).await.unwrap();
        let pid = container_pid(&before).expect("containerID with a pid");
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -KILL {pid}");
        println!("killed redis of {pod} (pid {pid})");
        wait_for(
            &format!("{pod} restarted after SIGKILL"),
            Duration::from_secs(90),
            || async {
                let p = pods.get_opt(pod).await.ok().flatten()?;
                let now = container_pid(&p)?;
                (now != pid && pod_ip(&p).is_some()).then_some(())
            },
        )
        .await;
    }
}

/// Waits until the writer has acknowledged `n` writes in all; false at the deadline.
async fn acked_at_least(writer: &AckWriterHandle, n: u64, timeout: Duration) -> bool {
    let begun = Instant::now();
    while writer.acknowledged() < n {
        if begun.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Stops the writer and fails the test with its report.
async fn fail<T>(writer: AckWriterHandle, why: &str) -> T {
    let report = writer.stop().await;
    panic!("{why}\n{report}")
}

/// Polls one member's role every 200 ms in the background (for at most 10 minutes) and
/// remembers whether it was ever a master serving slots.
struct LeadershipWatch {
    seen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeadershipWatch {
    fn start(member: &Member, pass: &str) -> Self {
        let seen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, admin) = (member.addr(), member_admin(pass));
        let task = tokio::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            async move {
                let begun = Instant::now();
                while !stop.load(Ordering::Relaxed) && begun.elapsed() < Duration::from_secs(600) {
                    if let Ok(o) = observe_node(addr, &admin).await
                        && o.is_serving_master()
                    {
                        seen.store(true, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Self { seen, stop, task }
    }

    /// Stops polling; whether the member was seen leading.
    async fn finish(self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.seen.load(Ordering::Relaxed)
    }
}

fn shard_of(members: &Members, pod: &str) -> (String, String) {
    let m = members.pod(pod).unwrap();
    (m.shard.clone(), m.ordinal.clone())
}

fn same_member<'a>(members: &'a Members, identity: &(String, String)) -> &'a Member {
    members
        .0
        .iter()
        .find(|m| (&m.shard, &m.ordinal) == (&identity.0, &identity.1))
        .unwrap()
}

fn print_roles(ns: &str, when: &str, members: &Members) {
    let mut out = String::new();
    for m in &members.0 {
        out.push_str(&format!(
            "{ns} {when}: s{} m{} {} {} on {} ({}) {}\n",
            m.shard,
            m.ordinal,
            if m.leader { "leader  " } else { "follower" },
            m.pod,
            m.node,
            m.zone,
            &m.id[..8]
        ));
    }
    print!("{out}");
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn follower_pod_deleted_returns_with_its_identity() {
    let (chaos, before, writer) = Chaos::start("rec-follower", json!({})).await;
    let victim = before.followers(1)[0].clone();
    chaos.delete_pods(&[&victim.pod]).await;
    let after = chaos.finish(writer).await;
    let back = same_member(&after, &shard_of(&before, &victim.pod));
    assert_ne!(back.pod, victim.pod, "a replacement pod");
    assert_eq!(
        back.node, victim.node,
        "the replacement runs where its PVC is"
    );
    assert_eq!(
        back.id, victim.id,
        "with a PVC the member keeps its node id"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_pod_deleted_gracefully_fails_over() {
    let (chaos, before, writer) = Chaos::start("rec-leader", json!({})).await;
    let victim = before.leader(0).clone();
    let follower = LeadershipWatch::start(before.followers(0)[0], &chaos.pass);
    chaos.delete_pods(&[&victim.pod]).await;
    chaos.finish(writer).await;
    assert!(
        follower.finish().await,
        "the follower of shard 0 never took over from its deleted leader"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_process_killed_recovers() {
    let (chaos, before, writer) = Chaos::start("rec-kill", json!({})).await;
    chaos.kill_redis(&before.leader(1).pod).await;
    chaos.finish(writer).await;
}

/// Without persistence a restarted leader comes back empty with its nodes.conf; if it kept
/// its slots, its follower would sync the empty dataset and every write of the shard would be
/// gone (reference §7 S4).
#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_restarted_empty_loses_no_acknowledged_write() {
    let (chaos, before, writer) = Chaos::start(
        "rec-empty",
        json!({"storage": null, "config": {"appendonly": "no", "save": "\"\""}}),
    )
    .await;
    let claims =
        count::<PersistentVolumeClaim>(&chaos.client, &chaos.ns.name, &ListParams::default()).await;
    assert_eq!(claims, Some(0), "a cluster without storage has no PVCs");
    chaos.kill_redis(&before.leader(2).pod).await;
    chaos.finish(writer).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn every_member_pod_deleted_returns_with_the_same_ids() {
    let (chaos, before, writer) = Chaos::start("rec-all", json!({})).await;
    let names: Vec<&str> = before.0.iter().map(|m| m.pod.as_str()).collect();
    chaos.delete_pods(&names).await;
    let after = chaos.finish(writer).await;
    assert_eq!(after.ids(), before.ids(), "every member keeps its node id");
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn follower_and_another_shards_leader_deleted_together() {
    let (chaos, before, writer) = Chaos::start("rec-combo", json!({})).await;
    let follower = before.followers(0)[0].pod.clone();
    let leader = before.leader(1).pod.clone();
    chaos.delete_pods(&[&follower, &leader]).await;
    chaos.finish(writer).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn all_but_one_member_per_shard_deleted() {
    let (chaos, before, writer) = Chaos::start("rec-most", json!({})).await;
    // Survivors: the leader of shard 0, the follower of shard 1, the leader of shard 2.
    let victims = [
        before.followers(0)[0].pod.clone(),
        before.leader(1).pod.clone(),
        before.followers(2)[0].pod.clone(),
    ];
    let names: Vec<&str> = victims.iter().map(String::as_str).collect();
    chaos.delete_pods(&names).await;
    chaos.finish(writer).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn operator_killed_mid_recovery_converges() {
    let (mut chaos, before, writer) = Chaos::start("rec-opkill", json!({})).await;
    let victim = before.leader(2).clone();
    chaos.delete_pods(&[&victim.pod]).await;
    // Kill the operator as soon as it acts on the loss (a replacement pod exists), or after
    // 30 s if it does not; then a new one must finish the recovery.
    let identity = shard_of(&before, &victim.pod);
    let pods = chaos.pods();
    let begun = Instant::now();
    let replaced = loop {
        let found = member_pods(&chaos.client, &chaos.ns.name, NAME)
            .await
            .unwrap_or_default()
            .iter()
            .any(|p| {
                p.metadata.name.as_deref() != Some(victim.pod.as_str())
                    && (label(p, SHARD_LABEL), label(p, MEMBER_LABEL)) == identity
            });
        if found || begun.elapsed() > Duration::from_secs(30) {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    chaos.operator.kill();
    println!(
        "operator killed {:.1} s after the deletion (replacement pod created: {replaced}; old pod still present: {})",
        begun.elapsed().as_secs_f64(),
        pods.get_opt(&victim.pod).await.ok().flatten().is_some()
    );
    chaos.operator = Operator::start(&chaos.ns.name);
    chaos.finish(writer).await;
}
