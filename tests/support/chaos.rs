//! One chaos test's world, shared by the recovery suite (`e2e_recovery.rs`) and the recovery
//! benchmark (`bench_recovery.rs`): a namespace with its own operator process and a Ready
//! 3 × 1 RedisCluster, the acknowledged-write checker (`ack_writer.rs`) against it, and the
//! faults (Pods deleted, a redis process SIGKILLed, a node or a zone down). The cluster may be
//! a TLS one ([`Chaos::start_tls`]): the writer, its read-back and the recovery checks then
//! speak TLS to the members.
//!
//! Declared by a test crate as `mod support { pub mod ack_writer; pub mod chaos; }` next to
//! `mod kube_support;`.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use redis_operator::crd::RedisCluster;
use redis_operator::redis::model::observe_node;
use redis_operator::redis::{AdminOptions, TlsOptions};
use serde_json::{Value, json};

use super::ack_writer::{AckWriter, AckWriterHandle, AckWriterOptions, ReadBackOptions, TagReport};
use crate::kube_support::*;

pub const NAME: &str = "chaos";
pub const LEADERS: usize = 3;
pub const FOLLOWERS: usize = 1;
pub const RECOVERY: Duration = Duration::from_secs(240);
/// The `kubernetes.io/tls` Secret of a TLS cluster ([`Setup::tls`]).
pub const TLS_SECRET: &str = "chaos-tls";

/// How [`Chaos::create_with`] makes the cluster.
#[derive(Clone, Copy, Debug, Default)]
pub struct Setup {
    /// Confined to the Nodes that run no Pod ([`Chaos::create_on_free_nodes`]).
    pub free_nodes: bool,
    /// Encrypted: a fresh CA and member certificate (for the headless Service's names) in
    /// [`TLS_SECRET`], and `spec.tls` with `serverName` and `clientAuth`.
    pub tls: bool,
    /// Leaders and followers per leader; `None`: [`LEADERS`] × [`FOLLOWERS`].
    pub shape: Option<(usize, usize)>,
}

/// One test's world: namespace (deleted at the end, or on a panic), operator, a Ready 3 × 1
/// cluster (or the shape [`Setup::shape`] asked for) and its password.
pub struct Chaos {
    pub client: Client,
    /// Leaders and followers per leader.
    pub shape: (usize, usize),
    pub ns: TestNamespace,
    pub operator: Operator,
    pub pass: String,
    /// The TLS settings for the members (from the cluster's Secret); `None`: plaintext.
    pub tls: Option<Arc<TlsOptions>>,
    _cleanup: DeleteOnPanic,
    _pool: Option<NodePool>,
}

impl Chaos {
    /// Namespace, operator, the cluster (with `extra` spec fields), Ready and healthy, and
    /// the writer running with acknowledged writes on every shard.
    pub async fn start(prefix: &str, extra: Value) -> (Self, Members, AckWriterHandle) {
        let (chaos, members) = Self::create(prefix, extra).await;
        print_roles(&chaos.ns.name, "before", &members);
        let writer = chaos.writer().await;
        (chaos, members, writer)
    }

    /// [`Chaos::start`] on nodes that run no Pod at the start ([`Chaos::create_on_free_nodes`]).
    pub async fn start_on_free_nodes(
        prefix: &str,
        extra: Value,
    ) -> (Self, Members, AckWriterHandle) {
        let (chaos, members) = Self::create_on_free_nodes(prefix, extra).await;
        print_roles(&chaos.ns.name, "before", &members);
        let writer = chaos.writer().await;
        (chaos, members, writer)
    }

    /// [`Chaos::start`] on a TLS cluster ([`Setup::tls`]).
    pub async fn start_tls(prefix: &str, extra: Value) -> (Self, Members, AckWriterHandle) {
        let setup = Setup {
            tls: true,
            ..Setup::default()
        };
        let (chaos, members) = Self::create_with(prefix, extra, setup).await;
        print_roles(&chaos.ns.name, "before", &members);
        let writer = chaos.writer().await;
        (chaos, members, writer)
    }

    /// Namespace, operator and the cluster (with `extra` spec fields), Ready and healthy;
    /// no writer yet.
    pub async fn create(prefix: &str, extra: Value) -> (Self, Members) {
        Self::create_with(prefix, extra, Setup::default()).await
    }

    /// [`Chaos::create`] confined (`spec.pod.nodeSelector`) to the Nodes that run no Pod at
    /// all now, so that crashing one of its nodes hurts no one else: those Nodes get the label
    /// `pool.test.redis-operator.dev/<namespace>=yes`, removed when the test ends.
    pub async fn create_on_free_nodes(prefix: &str, extra: Value) -> (Self, Members) {
        let setup = Setup {
            free_nodes: true,
            ..Setup::default()
        };
        Self::create_with(prefix, extra, setup).await
    }

    /// [`Chaos::create`] as `setup` says.
    pub async fn create_with(prefix: &str, mut extra: Value, setup: Setup) -> (Self, Members) {
        let client = client().await;
        let ns = TestNamespace::new(&client, prefix).await;
        let cleanup = DeleteOnPanic(ns.name.clone());
        if setup.tls {
            // Pod IPs are not known in advance: the certificate names the headless Service.
            let headless = format!("{NAME}-headless.{}.svc", ns.name);
            let dir = crate::kube_support::tls::pki(&headless, &ns.name);
            crate::kube_support::tls::create_tls_secret(&client, &ns.name, TLS_SECRET, &dir).await;
            let _ = std::fs::remove_dir_all(&dir);
            extra["tls"] =
                json!({"secretName": TLS_SECRET, "serverName": headless, "clientAuth": true});
        }
        let pool = if setup.free_nodes {
            let pool = NodePool::label_free_nodes(&client, &ns.name).await;
            extra["pod"] = json!({"nodeSelector": {pool.key.clone(): "yes"}});
            Some(pool)
        } else {
            None
        };
        let operator = Operator::start(&ns.name);
        let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
        let shape = setup.shape.unwrap_or((LEADERS, FOLLOWERS));
        let replicas = |n: usize| i32::try_from(n).unwrap();
        api.create(
            &PostParams::default(),
            &cluster(NAME, replicas(shape.0), replicas(shape.1), extra),
        )
        .await
        .unwrap();
        wait_ready(&api, NAME, RECOVERY).await;
        let pass = password(&client, &ns.name, NAME).await;
        let tls = crate::kube_support::tls::member_tls(&client, &ns.name, NAME)
            .await
            .unwrap();
        assert_eq!(tls.is_some(), setup.tls, "TLS settings for the members");
        let chaos = Self {
            client,
            shape,
            ns,
            operator,
            pass,
            tls,
            _cleanup: cleanup,
            _pool: pool,
        };
        let members = chaos.recovered(RECOVERY, |_| {}).await;
        (chaos, members)
    }

    /// The RedisCluster as the API server has it now.
    pub async fn resource(&self) -> RedisCluster {
        let api: Api<RedisCluster> = Api::namespaced(self.client.clone(), &self.ns.name);
        api.get(NAME).await.unwrap()
    }

    /// Merges `spec` into the RedisCluster's spec (as `kubectl patch --type merge` would).
    pub async fn patch_spec(&self, spec: Value) {
        let api: Api<RedisCluster> = Api::namespaced(self.client.clone(), &self.ns.name);
        api.patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": spec })),
        )
        .await
        .unwrap();
    }

    /// Options for test connections to the members: [`member_admin`], over TLS on a TLS
    /// cluster.
    pub fn admin(&self) -> AdminOptions {
        AdminOptions {
            tls: self.tls.clone(),
            ..member_admin(&self.pass)
        }
    }

    /// A [`LeadershipWatch`] on `member`, over TLS on a TLS cluster.
    pub fn watch_leadership(&self, member: &Member) -> LeadershipWatch {
        LeadershipWatch::start_with(member, self.admin())
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Starts the writer against the members and waits until it has acknowledged writes.
    pub async fn writer(&self) -> AckWriterHandle {
        self.writer_with(AckWriterOptions {
            // Setup and the 240 s recovery deadline fit; the writer stops by itself after.
            max_duration: Duration::from_secs(480),
            ..AckWriterOptions::default()
        })
        .await
    }

    /// [`Chaos::writer`] with other options.
    ///
    /// The writer starts, as an application would, from the client Service's name
    /// (`chaos.<namespace>.svc.cluster.local`, resolved by the cluster DNS, routed by
    /// kube-proxy), and learns the members from the cluster itself: no pod IP is handed to it,
    /// so nothing it starts from goes stale when members are re-placed. On a TLS cluster it
    /// speaks TLS (unless `opts.tls` says otherwise): the certificate names the headless
    /// Service and `serverName` is checked, so dialling the client Service's IP is fine.
    pub async fn writer_with(&self, mut opts: AckWriterOptions) -> AckWriterHandle {
        if opts.tls.is_none() {
            opts.tls = self.tls.clone();
        }
        let service = crate::kube_support::dns::service_addr(
            NAME,
            &self.ns.name,
            6379,
            Duration::from_secs(60),
        )
        .await;
        println!(
            "{}: writer starts from {NAME}.{}.svc.cluster.local ({service})",
            self.ns.name, self.ns.name
        );
        let writer = AckWriter::start(vec![service], self.pass.clone(), opts)
            .await
            .expect("ack writer starts");
        if !acked_at_least(&writer, 200, Duration::from_secs(30)).await {
            return fail(writer, "no acknowledged writes before the fault").await;
        }
        writer
    }

    /// [`wait_recovered`] for this cluster.
    pub async fn recovered(
        &self,
        timeout: Duration,
        on_poll: impl FnMut(Vec<SocketAddr>),
    ) -> Members {
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

    /// Waits for recovery while handing the writer the members' current addresses, checks
    /// that writes still get acknowledged, stops the writer, reads back and asserts that no
    /// acknowledged write was lost; then stops the operator and deletes the namespace.
    /// Returns the recovered members.
    pub async fn finish(self, writer: AckWriterHandle) -> Members {
        self.finish_accepting_loss(writer, |_| false).await
    }

    /// [`Chaos::finish`] after a loss the user accepted: the writer's tags for which `lost` is
    /// true (keys of slots served again empty) are read back and printed apart, with no
    /// assertion; every other tag must have lost nothing.
    pub async fn finish_accepting_loss(
        self,
        writer: AckWriterHandle,
        lost: impl Fn(&TagReport) -> bool,
    ) -> Members {
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
        let (gone, kept): (Vec<TagReport>, Vec<TagReport>) = std::mem::take(&mut report.tags)
            .into_iter()
            .partition(&lost);
        report.tags = kept;
        report
            .read_back(&members.addrs(), &self.pass, &ReadBackOptions::default())
            .await;
        let accepted = if gone.is_empty() {
            String::new()
        } else {
            let mut gone_report = report.clone();
            gone_report.tags = gone;
            gone_report
                .read_back(&members.addrs(), &self.pass, &ReadBackOptions::default())
                .await;
            format!("tags whose loss was accepted (not asserted):\n{gone_report}")
        };
        // One print per test, so that parallel tests' reports do not interleave.
        println!(
            "{}: Ready and recovered {:.1} s after the fault\n{report}{accepted}",
            self.ns.name,
            recovered_after.as_secs_f64()
        );
        if let Err(e) = report.verify() {
            panic!("{e}\n{}", operator_log_tail(&self.ns.name, 150));
        }
        assert_eq!(report.lost(), Some(0));
        assert!(report.acknowledged() > 0);
        print_roles(&self.ns.name, "after", &members);
        self.cleanup().await;
        members
    }

    /// Stops the operator and deletes the namespace.
    pub async fn cleanup(self) {
        drop(self.operator);
        self.ns.cleanup().await;
    }

    pub async fn delete_pods(&self, names: &[&str]) {
        self.delete_pods_with(names, &DeleteParams::default()).await;
        println!("deleted {names:?}");
    }

    /// Deletes the Pods at once with grace period 0 (`kubectl delete --force
    /// --grace-period=0`): the objects are gone at once, no preStop hook hands anything over.
    pub async fn force_delete_pods(&self, names: &[&str]) {
        self.delete_pods_with(names, &DeleteParams::default().grace_period(0))
            .await;
        println!("force-deleted {names:?}");
    }

    async fn delete_pods_with(&self, names: &[&str], params: &DeleteParams) {
        let pods = self.pods();
        let deletes = names
            .iter()
            .map(|n| {
                let pods = pods.clone();
                async move { pods.delete(n, params).await }
            })
            .collect::<Vec<_>>();
        for (name, r) in names.iter().zip(futures::future::join_all(deletes).await) {
            r.unwrap_or_else(|e| panic!("delete pod {name}: {e}"));
        }
    }

    /// SIGKILLs the redis process of `pod`; returns its pid.
    pub async fn sigkill_redis(&self, pod: &str) -> u32 {
        let before = self.pods().get(pod).await.unwrap();
        let pid = container_pid(&before).expect("containerID with a pid");
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -KILL {pid}");
        println!("killed redis of {pod} (pid {pid})");
        pid
    }

    /// SIGKILLs the redis process of `pod` and waits until its container runs again.
    pub async fn kill_redis(&self, pod: &str) {
        let pid = self.sigkill_redis(pod).await;
        let pods = self.pods();
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

    /// Pods of other namespaces on `node` (`namespace/name`).
    pub async fn foreign_pods(&self, node: &str) -> Vec<String> {
        Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() != Some(self.ns.name.as_str()))
            .map(|p| {
                format!(
                    "{}/{}",
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Crashes `node` (`hack/local-cluster node-down`: its pods are SIGKILLed, its heartbeats
    /// stop) after checking that no Pod of another namespace runs there; the returned guard
    /// brings the node up again when dropped, also when the test fails.
    pub async fn crash_node(&self, node: &str) -> NodeDown {
        let foreign = self.foreign_pods(node).await;
        assert!(
            foreign.is_empty(),
            "refusing to crash {node}: it also runs {foreign:?}"
        );
        let guard = NodeDown(node.to_owned());
        local_cluster(&["node-down", node]);
        println!("node {node} down");
        guard
    }

    /// Takes `zone` down (`hack/local-cluster zone-down`): crashed (every process of its nodes
    /// SIGKILLed, heartbeats stopped) or, with `partition`, cut off (processes running, no
    /// traffic in or out). Every Pod in the zone is hit, other namespaces' too: only for tests
    /// that run alone. The returned guard runs `zone-up` when dropped, also when the test fails.
    pub fn zone_down(&self, zone: &str, partition: bool) -> ZoneDown {
        let guard = ZoneDown(zone.to_owned());
        let mut args = vec!["zone-down", zone];
        if partition {
            args.push("--partition");
        }
        local_cluster(&args);
        println!("{}: {args:?}", self.ns.name);
        guard
    }
}

/// Nodes labelled for one test's cluster; dropping it removes the label.
pub struct NodePool {
    pub key: String,
    pub nodes: Vec<String>,
}

impl NodePool {
    /// Labels every schedulable Node that runs no Pod now with `pool.test.redis-operator.dev/<ns>`.
    async fn label_free_nodes(client: &Client, ns: &str) -> Self {
        let busy: std::collections::BTreeSet<String> = Api::<Pod>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(node_of)
            .collect();
        let nodes: Vec<String> = node_zones(client)
            .await
            .unwrap()
            .into_keys()
            .filter(|n| !busy.contains(n))
            .collect();
        let pool = NodePool {
            key: format!("pool.test.redis-operator.dev/{ns}"),
            nodes,
        };
        let label = format!("{}=yes", pool.key);
        for node in &pool.nodes {
            kubectl(&["label", "node", node, &label, "--overwrite"]);
        }
        println!("{ns}: confined to the free nodes {:?}", pool.nodes);
        pool
    }
}

impl Drop for NodePool {
    fn drop(&mut self) {
        let unlabel = format!("{}-", self.key);
        for node in &self.nodes {
            kubectl(&["label", "node", node, &unlabel]);
        }
    }
}

/// Runs kubectl (KUBECONFIG from the environment); failures are printed, not fatal.
fn kubectl(args: &[&str]) {
    match std::process::Command::new("kubectl").args(args).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("kubectl {args:?}: {e}"),
    }
}

/// A node crashed by [`Chaos::crash_node`]; dropping it runs `hack/local-cluster node-up`.
pub struct NodeDown(pub String);

impl Drop for NodeDown {
    fn drop(&mut self) {
        bring_up("node-up", &self.0);
    }
}

/// A zone taken down by [`Chaos::zone_down`]; dropping it runs `hack/local-cluster zone-up`.
pub struct ZoneDown(pub String);

impl Drop for ZoneDown {
    fn drop(&mut self) {
        bring_up("zone-up", &self.0);
    }
}

/// `hack/local-cluster node-up|zone-up NAME` from a drop guard: failures are printed, never a
/// panic (the guard may run while a test is already panicking).
fn bring_up(command: &str, name: &str) {
    let out = std::process::Command::new(repo().join("hack/local-cluster"))
        .args([command, name])
        .output();
    match out {
        Ok(o) if o.status.success() => println!("{command} {name} done"),
        Ok(o) => eprintln!(
            "hack/local-cluster {command} {name} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("hack/local-cluster {command} {name}: {e}"),
    }
}

/// Waits until the writer has acknowledged `n` writes in all; false at the deadline.
pub async fn acked_at_least(writer: &AckWriterHandle, n: u64, timeout: Duration) -> bool {
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
/// The last `lines` lines of the namespace's operator log (every test's operator appends to
/// it), for a failure message: CI prints only the test's output.
pub fn operator_log_tail(ns: &str, lines: usize) -> String {
    let path = std::env::temp_dir().join(format!("redis-operator-{ns}.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let all: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("redis_operator::controller: reconciled"))
        .collect();
    // Plan lines carry whole actions; their first 400 characters say what was decided.
    let tail: Vec<String> = all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.chars().take(400).collect())
        .collect();
    let tail = tail.join("\n");
    format!(
        "operator log ({}), last {lines} lines:\n{tail}",
        path.display()
    )
}

pub async fn fail<T>(writer: AckWriterHandle, why: &str) -> T {
    let report = writer.stop().await;
    panic!("{why}\n{report}")
}

/// Polls one member's role every 200 ms in the background (for at most 10 minutes) and
/// remembers whether it was ever a master serving slots.
pub struct LeadershipWatch {
    seen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeadershipWatch {
    pub fn start(member: &Member, pass: &str) -> Self {
        Self::start_with(member, member_admin(pass))
    }

    /// [`LeadershipWatch::start`] connecting with `admin` (e.g. over TLS).
    pub fn start_with(member: &Member, admin: AdminOptions) -> Self {
        let seen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let addr = member.addr();
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
    pub async fn finish(self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.seen.load(Ordering::Relaxed)
    }
}

pub fn shard_of(members: &Members, pod: &str) -> (String, String) {
    let m = members.pod(pod).unwrap();
    (m.shard.clone(), m.ordinal.clone())
}

pub fn same_member<'a>(members: &'a Members, identity: &(String, String)) -> &'a Member {
    members
        .0
        .iter()
        .find(|m| (&m.shard, &m.ordinal) == (&identity.0, &identity.1))
        .unwrap()
}

pub fn print_roles(ns: &str, when: &str, members: &Members) {
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
