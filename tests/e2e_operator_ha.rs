//! Issue 17 §3: two operator replicas, one actor. Leader election on a real API server (the
//! local cluster's): two electors in this process on one Lease, then pairs of real operator
//! processes (`run --leader-election`) managing a Ready 3 × 1 RedisCluster under the
//! acknowledged-write checker (`support/ack_writer.rs`):
//!
//! * the leader SIGKILLed in the middle of a leader recovery, and in the middle of a reshard:
//!   the standby takes the Lease over within the lease duration and finishes, 0 writes lost;
//! * the leader SIGSTOPped past its lease, then SIGCONTed: it does not act again (no Event
//!   from it after the takeover; it exits by itself), 0 writes lost.
//!
//! The replicas are the operator image (`make image`) run by the node agent as a Deployment
//! made from `manifests/operator/deployment.yaml` (2 replicas, probes, downward-API identity),
//! one per test in the operator's namespace with its Lease in the test's namespace: SIGKILL and
//! SIGSTOP go to the container's process, which the node agent restarts as a kubelet would.
//! `HA_OPERATORS=host` runs them as host processes instead (no image needed; same signals).
//! `bench_operator_failover` measures leader SIGKILL → the standby's first action and the
//! replicas' RSS (make bench-operator-ha).
//!
//! Needs the local cluster, the CRD and the RBAC: run through `make test`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;
mod support {
    pub mod ack_writer;
    pub mod chaos;
}

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use kube_support::*;
use redis_operator::crd::RedisCluster;
use redis_operator::leader::{Elector, Leadership, Timing};
use serde_json::json;
use support::chaos::*;
use tokio_util::sync::CancellationToken;

/// The operator's defaults (`run --help`): lease 15 s, renew deadline 10 s, retry 2 s.
const LEASE: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(2);
/// The Lease the replicas share, in the test's namespace.
const LEASE_NAME: &str = "redis-operator";

// ---------------------------------------------------------------------------------------------
// Two electors in this process.

/// Samples both handles every 10 ms until `until` returns true or `timeout` passes; panics if
/// both ever may act at once.
async fn never_both(
    a: &Leadership,
    b: &Leadership,
    timeout: Duration,
    mut until: impl FnMut() -> bool,
) -> Duration {
    let begun = Instant::now();
    loop {
        assert!(
            !(a.may_act() && b.may_act()),
            "{} and {} may act at the same time",
            a.identity(),
            b.identity()
        );
        if until() {
            return begun.elapsed();
        }
        assert!(begun.elapsed() < timeout, "timed out after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn lease_one_leader_takeover_after_a_crash_and_after_a_release() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "ha-lease").await;
    let _guard = DeleteOnPanic(ns.name.clone());
    let timing = Timing {
        lease_duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        retry_period: Duration::from_millis(500),
    };
    let start = |id: &str| {
        let (elector, leadership) = Elector::new(client.clone(), &ns.name, "lease", id, timing);
        let stop = CancellationToken::new();
        let task = tokio::spawn(elector.run(stop.clone()));
        (leadership, stop, task)
    };
    let (la, stop_a, task_a) = start("a");
    let (lb, stop_b, task_b) = start("b");

    // Exactly one leads, and keeps leading (renewals), for 5 s.
    never_both(&la, &lb, Duration::from_secs(10), || {
        la.may_act() || lb.may_act()
    })
    .await;
    let watch = Instant::now();
    never_both(&la, &lb, Duration::from_secs(10), || {
        watch.elapsed() > Duration::from_secs(5)
    })
    .await;
    assert!(la.may_act() ^ lb.may_act(), "exactly one leader");
    let (leader, standby, stop_standby, task_leader, task_standby) = if la.may_act() {
        (la, lb, stop_b, task_a, task_b)
    } else {
        (lb, la, stop_a, task_b, task_a)
    };
    println!(
        "leader {}, standby {}",
        leader.identity(),
        standby.identity()
    );

    // The leader crashes (its task is dropped, no release): its handle stays valid until its
    // renew deadline, and the standby leads within a lease duration, never both at once.
    task_leader.abort();
    let took = never_both(&leader, &standby, Duration::from_secs(20), || {
        standby.may_act()
    })
    .await;
    println!("crash: the standby leads {:.1} s later", took.as_secs_f64());
    assert!(took <= timing.lease_duration + timing.retry_period + Duration::from_secs(1));
    assert!(!leader.may_act(), "the crashed leader's deadline passed");

    // A graceful stop releases the Lease: a third elector leads within about a retry period.
    let (lc, stop_c, task_c) = start("c");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!lc.may_act(), "c stands by while the Lease is held");
    stop_standby.cancel();
    let released = Instant::now();
    assert!(
        task_standby.await.unwrap().is_ok(),
        "a released Lease is no loss"
    );
    assert!(!standby.may_act(), "stops acting before it releases");
    let took = never_both(&standby, &lc, Duration::from_secs(10), || lc.may_act()).await;
    println!(
        "release: c leads {:.1} s after the stop",
        released.elapsed().as_secs_f64()
    );
    assert!(took <= timing.retry_period + Duration::from_secs(2));

    // Someone else writes the Lease: the holder stops acting and its elector reports the loss.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let mut lease = leases.get("lease").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    leases
        .replace("lease", &PostParams::default(), &lease)
        .await
        .unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), task_c)
        .await
        .expect("c notices the loss within a retry period")
        .unwrap();
    assert!(lost.is_err(), "c reports the loss: {lost:?}");
    assert!(!lc.may_act());
    drop(stop_c);
    ns.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Real operator processes: the operator image as a Deployment of 2 replicas in the local
// cluster (default), or host processes (`HA_OPERATORS=host`, where the image is not built).

/// Where the replicas run.
enum Kind {
    /// A host process we started (`--identity` given, `/readyz` on a free port).
    Host { child: Child, http: u16 },
    /// A Pod of the test's Deployment: its container process as the host sees it.
    Pod { name: String, pid: u32 },
}

/// One operator replica.
struct Replica {
    /// The Lease identity when known exactly (a host process's; a Pod's once it held the
    /// Lease), else the Pod name followed by `_` (a Pod's identity is its name and a random
    /// suffix).
    identity: String,
    exact: bool,
    kind: Kind,
}

impl Replica {
    fn host(ns: &str, identity: &str) -> Self {
        let kubeconfig =
            std::env::var("OPERATOR_KUBECONFIG").expect("OPERATOR_KUBECONFIG (set by make e2e)");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!("redis-operator-{identity}.log")))
            .expect("log file");
        // A free port for its /readyz (several replicas on one host).
        let http = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_redis-operator"))
            .args(["run", "--namespace", ns, "--leader-election"])
            .args(["--leader-election-namespace", ns, "--identity", identity])
            .args(["--http-address", &format!("127.0.0.1:{http}")])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,redis_operator=debug,kube=warn")
            .env("NO_COLOR", "1")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start operator");
        println!("started {identity} (pid {})", child.id());
        Self {
            identity: identity.into(),
            exact: true,
            kind: Kind::Host { child, http },
        }
    }

    fn pod(p: &Pod) -> Self {
        let name = p.metadata.name.clone().unwrap();
        Self {
            identity: format!("{name}_"),
            exact: false,
            kind: Kind::Pod {
                pid: container_pid(p).expect("a running container"),
                name,
            },
        }
    }

    /// Whether `instance` (a Lease holder, an Event's reportingInstance) is this replica.
    fn is(&self, instance: &str) -> bool {
        if self.exact {
            instance == self.identity
        } else {
            instance.starts_with(&self.identity)
        }
    }

    fn learn(&mut self, identity: &str) {
        assert!(self.is(identity), "{identity} is not {}", self.identity);
        self.identity = identity.into();
        self.exact = true;
    }

    fn pid(&self) -> u32 {
        match &self.kind {
            Kind::Host { child, .. } => child.id(),
            Kind::Pod { pid, .. } => *pid,
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {}", self.pid());
        println!("{sig} {} (pid {})", self.identity, self.pid());
    }

    /// SIGKILL, as the container runtime delivers it (a Pod's container is then restarted by
    /// the node agent, as a kubelet would: a new process with a new identity).
    fn kill(&mut self) {
        match &mut self.kind {
            Kind::Host { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Kind::Pod { .. } => self.signal("KILL"),
        }
    }

    /// Whether the process has ended.
    fn exited(&mut self) -> bool {
        match &mut self.kind {
            Kind::Host { child, .. } => child.try_wait().ok().flatten().is_some(),
            Kind::Pod { pid, .. } => std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat.split_whitespace().nth(2) == Some("Z")),
        }
    }

    /// `/readyz` answers 200 (a host process), or the Pod is Ready (the kubelet's readiness
    /// probe on `/readyz`).
    async fn ready(&self, client: &Client, ns: &str) -> bool {
        match &self.kind {
            Kind::Host { http, .. } => {
                use std::io::{Read, Write};
                let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", *http)) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .is_err()
                {
                    return false;
                }
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                out.starts_with("HTTP/1.1 200")
            }
            Kind::Pod { name, .. } => {
                let _ = ns;
                Api::<Pod>::namespaced(client.clone(), OPERATOR_NS)
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|p| pod_ready(&p))
            }
        }
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        kib / 1024.0
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Kind::Host { child, .. } = &mut self.kind {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The namespace of the operator's ServiceAccount (manifests/), where the test Deployments run.
const OPERATOR_NS: &str = "redis-operator";

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Lets the operator's ServiceAccount keep its Lease in `ns` (manifests/rbac.yaml grants it
/// only in the operator's own namespace).
async fn grant_lease(client: &Client, ns: &str) {
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "redis-operator-leader-election"},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                   "verbs": ["get", "create", "update"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("redis-operator-leader-election".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "redis-operator-leader-election".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "redis-operator".into(),
            namespace: Some(OPERATOR_NS.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// The Lease holder, if any.
async fn holder(client: &Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(LEASE_NAME)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

fn in_cluster() -> bool {
    std::env::var("HA_OPERATORS").as_deref() != Ok("host")
}

/// The operator image (`make image`) given to every node, once per test process.
fn load_image() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let archive = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| repo().join("target"), std::path::PathBuf::from)
            .join("oci/redis-operator.oci.tar");
        assert!(
            archive.exists(),
            "{} is missing: run `make image` (or HA_OPERATORS=host)",
            archive.display()
        );
        local_cluster(&["load-image", archive.to_str().unwrap()]);
    });
}

/// manifests/operator/deployment.yaml, as a test's own Deployment `op-<ns>` in the operator's
/// namespace: the same image, probes, security context and downward-API env, managing only
/// `ns` with its Lease there.
fn test_deployment(ns: &str) -> Deployment {
    let text = std::fs::read_to_string(repo().join("manifests/operator/deployment.yaml")).unwrap();
    let mut d: Deployment = serde_yaml::from_str(&text).unwrap();
    d.metadata.name = Some(format!("op-{ns}"));
    d.metadata.namespace = Some(OPERATOR_NS.into());
    let spec = d.spec.as_mut().unwrap();
    let test_label = ("test.redis-operator.dev/ha".to_string(), ns.to_string());
    spec.selector
        .match_labels
        .get_or_insert_default()
        .insert(test_label.0.clone(), test_label.1.clone());
    let template = &mut spec.template;
    template
        .metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default()
        .insert(test_label.0, test_label.1);
    let pod = template.spec.as_mut().unwrap();
    pod.termination_grace_period_seconds = Some(5);
    let c = &mut pod.containers[0];
    c.args = Some(
        [
            "run",
            "--leader-election",
            "--namespace",
            ns,
            "--leader-election-namespace",
            ns,
        ]
        .map(String::from)
        .to_vec(),
    );
    for e in c.env.get_or_insert_default() {
        if e.name == "RUST_LOG" {
            e.value = Some("info,redis_operator=debug,kube=warn".into());
        }
    }
    d
}

/// Two replicas of the operator for `ns`; `leader` holds the Lease and both are ready.
struct Pair {
    leader: Replica,
    standby: Replica,
    deployment: Option<String>,
}

impl Pair {
    async fn start(client: &Client, ns: &str) -> Self {
        let begun = Instant::now();
        let (a, b, deployment) = if in_cluster() {
            load_image();
            let d = test_deployment(ns);
            let name = d.metadata.name.clone().unwrap();
            Api::<Deployment>::namespaced(client.clone(), OPERATOR_NS)
                .create(&PostParams::default(), &d)
                .await
                .unwrap();
            let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
            let selector = format!("test.redis-operator.dev/ha={ns}");
            let ready = wait_for(
                "both operator Pods ready",
                Duration::from_secs(120),
                || async {
                    let list = pods
                        .list(&ListParams::default().labels(&selector))
                        .await
                        .ok()?
                        .items;
                    let ready: Vec<Pod> = list.into_iter().filter(pod_ready).collect();
                    (ready.len() == 2).then_some(ready)
                },
            )
            .await;
            (Replica::pod(&ready[0]), Replica::pod(&ready[1]), Some(name))
        } else {
            (
                Replica::host(ns, &format!("{ns}-a")),
                Replica::host(ns, &format!("{ns}-b")),
                None,
            )
        };
        let lead = wait_for("one replica leads", Duration::from_secs(60), || async {
            holder(client, ns).await
        })
        .await;
        let mut pair = if a.is(&lead) {
            Self {
                leader: a,
                standby: b,
                deployment,
            }
        } else {
            Self {
                leader: b,
                standby: a,
                deployment,
            }
        };
        pair.leader.learn(&lead);
        wait_for("both replicas ready", Duration::from_secs(60), || async {
            (pair.leader.ready(client, ns).await && pair.standby.ready(client, ns).await)
                .then_some(())
        })
        .await;
        println!(
            "{ns}: {lead} leads, {} stands by, both ready after {:.1} s",
            pair.standby.identity,
            begun.elapsed().as_secs_f64()
        );
        pair
    }

    /// Waits until the standby holds the Lease; the time it took since `since`.
    async fn takeover(
        &mut self,
        client: &Client,
        ns: &str,
        since: Instant,
        timeout: Duration,
    ) -> Duration {
        let (took, by) = wait_for(
            &format!("{} takes the Lease over", self.standby.identity),
            timeout,
            || async {
                let h = holder(client, ns).await?;
                (self.standby.is(&h) || !self.leader.is(&h)).then(|| (since.elapsed(), h))
            },
        )
        .await;
        assert!(
            self.standby.is(&by),
            "{by} took the Lease, not the standby {}",
            self.standby.identity
        );
        self.standby.learn(&by);
        took
    }

    /// After the leader was SIGKILLed: the standby leads; the killed replica (a host process
    /// started again, or the Pod whose container the node agent restarted) stands by.
    async fn promote(&mut self, client: &Client, ns: &str, name: &str) {
        let fresh = match &self.leader.kind {
            Kind::Host { .. } => Replica::host(ns, name),
            Kind::Pod { name, pid } => {
                let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
                let (name, old) = (name.clone(), *pid);
                let p = wait_for(
                    "the killed container restarted and ready",
                    Duration::from_secs(120),
                    || async {
                        let p = pods.get_opt(&name).await.ok().flatten()?;
                        (container_pid(&p)? != old && pod_ready(&p)).then_some(p)
                    },
                )
                .await;
                Replica::pod(&p)
            }
        };
        let old = std::mem::replace(&mut self.leader, fresh);
        drop(old);
        std::mem::swap(&mut self.leader, &mut self.standby);
        wait_for("the new standby ready", Duration::from_secs(60), || async {
            self.standby.ready(client, ns).await.then_some(())
        })
        .await;
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Some(name) = &self.deployment {
            let _ = Command::new("kubectl")
                .args([
                    "-n",
                    OPERATOR_NS,
                    "delete",
                    "deployment",
                    name,
                    "--wait=false",
                ])
                .output();
        }
    }
}

/// When an Event last happened (its series' last observation, else its time).
fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
}

/// Events in `ns` reported by `replica` that happened at or after `after`, as "reason: note".
async fn events_by(
    client: &Client,
    ns: &str,
    replica: &Replica,
    after: jiff::Timestamp,
) -> Vec<(jiff::Timestamp, String)> {
    let mut found: Vec<(jiff::Timestamp, String)> = Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| {
            e.reporting_instance
                .as_deref()
                .is_some_and(|i| replica.is(i))
        })
        .filter_map(|e| {
            let t = event_time(e)?;
            (t >= after).then(|| {
                (
                    t,
                    format!(
                        "{} by {}: {}",
                        e.reason.clone().unwrap_or_default(),
                        e.reporting_instance.clone().unwrap_or_default(),
                        e.note.clone().unwrap_or_default()
                    ),
                )
            })
        })
        .collect();
    found.sort();
    found
}

/// Waits for the first Event `replica` reports at or after `after`.
async fn first_event(
    client: &Client,
    ns: &str,
    replica: &Replica,
    after: jiff::Timestamp,
    timeout: Duration,
) -> (jiff::Timestamp, String) {
    wait_for(
        &format!("an Event from {}", replica.identity),
        timeout,
        || async {
            events_by(client, ns, replica, after)
                .await
                .into_iter()
                .next()
        },
    )
    .await
}

/// A Ready 3 × 1 cluster with the writer running (made by the suite's single operator, which
/// then hands over to a pair with leader election).
async fn ha_world(prefix: &str) -> (Chaos, Members, support::ack_writer::AckWriterHandle, Pair) {
    let (mut chaos, members, writer) = Chaos::start(prefix, json!({})).await;
    chaos.operator.kill();
    grant_lease(&chaos.client, &chaos.ns.name).await;
    let pair = Pair::start(&chaos.client, &chaos.ns.name).await;
    (chaos, members, writer, pair)
}

fn secs(d: jiff::Span) -> f64 {
    d.total(jiff::Unit::Second).unwrap_or(f64::NAN)
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_killed_mid_leader_recovery_standby_finishes() {
    let (chaos, before, writer, mut pair) = ha_world("ha-kill-rec").await;
    let ns = chaos.ns.name.clone();
    // A leader's Pod is force-deleted (no preStop handover): the operator must re-place it and
    // restore the leader spread. The leading operator is SIGKILLed as soon as it has acted on
    // it (its first Event after the fault); the standby must finish.
    let fault = jiff::Timestamp::now();
    chaos.force_delete_pods(&[&before.leader(1).pod]).await;
    let (_, what) = first_event(
        &chaos.client,
        &ns,
        &pair.leader,
        fault,
        Duration::from_secs(60),
    )
    .await;
    let killed = Instant::now();
    let killed_wall = jiff::Timestamp::now();
    pair.leader.kill();
    println!(
        "{ns}: leader SIGKILLed {:.1} s after the fault, after its Event {what:?}",
        secs(killed_wall - fault)
    );
    let took = pair
        .takeover(&chaos.client, &ns, killed, LEASE + RETRY * 3)
        .await;
    println!(
        "{ns}: the standby holds the Lease {:.1} s after the kill",
        took.as_secs_f64()
    );
    chaos
        .recovered(RECOVERY, |addrs| writer.add_seeds(addrs))
        .await;
    let acted = events_by(&chaos.client, &ns, &pair.standby, killed_wall).await;
    println!("{ns}: the standby's Events: {acted:#?}");
    chaos.finish(writer).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_killed_mid_reshard_standby_finishes() {
    let (chaos, _before, writer, mut pair) = ha_world("ha-kill-reshard").await;
    let ns = chaos.ns.name.clone();
    let rcs: Api<RedisCluster> = Api::namespaced(chaos.client.clone(), &ns);
    chaos.patch_spec(json!({"leaders": 4})).await;
    wait_for("slots moving", Duration::from_secs(300), || async {
        writer.add_seeds(member_addrs(&chaos.client, &ns, NAME).await);
        let r = rcs.get(NAME).await.ok()?.status?.reshard?;
        (r.to_leaders == 4 && r.slots_moved > 0).then_some(())
    })
    .await;
    let killed = Instant::now();
    let killed_wall = jiff::Timestamp::now();
    pair.leader.kill();
    println!("{ns}: leader SIGKILLed mid-reshard");
    let took = pair
        .takeover(&chaos.client, &ns, killed, LEASE + RETRY * 3)
        .await;
    println!(
        "{ns}: the standby holds the Lease {:.1} s after the kill",
        took.as_secs_f64()
    );
    // The standby finishes the reshard: 4 × 1, every slot moved.
    wait_recovered(
        &chaos.client,
        &ns,
        NAME,
        (4, 1),
        Duration::from_secs(300),
        |addrs| writer.add_seeds(addrs),
    )
    .await;
    wait_for("the reshard done", Duration::from_secs(300), || async {
        writer.add_seeds(member_addrs(&chaos.client, &ns, NAME).await);
        let r = rcs.get(NAME).await.ok()?.status?.reshard?;
        (r.to_leaders == 4 && r.progress == "100%").then_some(())
    })
    .await;
    let acted = events_by(&chaos.client, &ns, &pair.standby, killed_wall).await;
    println!("{ns}: reshard to 4 finished by the standby: {acted:#?}");
    assert!(!acted.is_empty(), "the standby acted");
    // And back to 3 (the chaos world's shape), by the same replica.
    chaos.patch_spec(json!({"leaders": 3})).await;
    chaos.finish(writer).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_paused_past_its_lease_does_not_act_after_resuming() {
    let (chaos, before, writer, mut pair) = ha_world("ha-pause").await;
    let ns = chaos.ns.name.clone();
    tokio::time::sleep(RETRY * 2).await;
    let stopped = Instant::now();
    pair.leader.signal("STOP");
    // Work for whoever leads: a follower Pod deleted.
    chaos.delete_pods(&[&before.followers(0)[0].pod]).await;
    let took = pair
        .takeover(&chaos.client, &ns, stopped, LEASE + RETRY * 3)
        .await;
    let takeover = jiff::Timestamp::now();
    println!(
        "{ns}: the standby holds the Lease {:.1} s after SIGSTOP",
        took.as_secs_f64()
    );
    // Paused well past its lease; more work just before it resumes, so that its watches have
    // something to react to at once.
    let pause = LEASE + Duration::from_secs(10);
    tokio::time::sleep(pause.saturating_sub(stopped.elapsed())).await;
    chaos.delete_pods(&[&before.followers(1)[0].pod]).await;
    pair.leader.signal("CONT");
    // It sees its deadline passed at once (monotonic clock) and exits to restart as a standby.
    wait_for(
        "the resumed old leader exits",
        Duration::from_secs(30),
        || {
            let exited = pair.leader.exited();
            async move { exited.then_some(()) }
        },
    )
    .await;
    println!("{ns}: the old leader exited after SIGCONT");
    chaos
        .recovered(RECOVERY, |addrs| writer.add_seeds(addrs))
        .await;
    let by_old = events_by(&chaos.client, &ns, &pair.leader, takeover).await;
    assert!(
        by_old.is_empty(),
        "the old leader acted after the takeover: {by_old:#?}"
    );
    let by_new = events_by(&chaos.client, &ns, &pair.standby, takeover).await;
    println!("{ns}: the new leader's Events: {by_new:#?}");
    assert!(
        !by_new.is_empty(),
        "the new leader replaced the deleted followers"
    );
    match &pair.leader.kind {
        Kind::Host { .. } => {
            let log = std::fs::read_to_string(
                std::env::temp_dir().join(format!("redis-operator-{}.log", pair.leader.identity)),
            )
            .unwrap_or_default();
            assert!(
                log.contains("lost the lease"),
                "the old leader logs why it stopped"
            );
        }
        Kind::Pod { name, .. } => {
            // The container ended with status 1 (lost the Lease) and was restarted.
            let pods: Api<Pod> = Api::namespaced(chaos.client.clone(), OPERATOR_NS);
            let code = wait_for(
                "the old leader's exit code",
                Duration::from_secs(30),
                || async {
                    let p = pods.get_opt(name).await.ok().flatten()?;
                    let cs = p.status?.container_statuses?.into_iter().next()?;
                    cs.last_state?.terminated.map(|t| t.exit_code)
                },
            )
            .await;
            assert_eq!(code, 1, "a lost lease is a failure exit");
        }
    }
    chaos.finish(writer).await;
}

/// Leader SIGKILL → the standby's first action (its first Event; a follower Pod is deleted
/// right after the kill so that there is work), 5 runs; then RSS of the leader and the
/// standby with one Ready 3 × 1 cluster, idle, and with no cluster. Rows for the README.
#[tokio::test]
#[ignore = "benchmark; run by make bench-operator-ha"]
async fn bench_operator_failover() {
    let (chaos, _before, writer, mut pair) = ha_world("ha-bench").await;
    let ns = chaos.ns.name.clone();
    let mut firsts = Vec::new();
    let mut leases = Vec::new();
    for run in 1..=5 {
        let members = chaos
            .recovered(RECOVERY, |addrs| writer.add_seeds(addrs))
            .await;
        tokio::time::sleep(RETRY * 2).await;
        let victim = members.followers(run % LEADERS)[0].pod.clone();
        let killed = Instant::now();
        let killed_wall = jiff::Timestamp::now();
        pair.leader.kill();
        chaos.delete_pods(&[&victim]).await;
        let took = pair
            .takeover(&chaos.client, &ns, killed, LEASE + RETRY * 3)
            .await;
        let (t, what) = first_event(
            &chaos.client,
            &ns,
            &pair.standby,
            killed_wall,
            Duration::from_secs(60),
        )
        .await;
        let first = secs(t - killed_wall);
        println!(
            "run {run}: Lease taken over after {:.1} s, first action after {first:.1} s ({what})",
            took.as_secs_f64()
        );
        leases.push(took.as_secs_f64());
        firsts.push(first);
        pair.promote(&chaos.client, &ns, &format!("{ns}-r{run}"))
            .await;
    }
    chaos
        .recovered(RECOVERY, |addrs| writer.add_seeds(addrs))
        .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        format!(
            "min {:.1} s / median {:.1} s / max {:.1} s",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        )
    };
    let mode = if in_cluster() {
        "Deployment in the local cluster"
    } else {
        "host processes"
    };
    row(&format!(
        "| leader SIGKILL → the standby holds the Lease (5 runs, {mode}) | {} |",
        stats(&mut leases)
    ));
    row(&format!(
        "| leader SIGKILL → the standby's first action, an Event (5 runs, {mode}) | {} |",
        stats(&mut firsts)
    ));
    row(&format!(
        "| RSS with one Ready 3x1 cluster, idle: leader / standby | {:.1} / {:.1} MiB |",
        pair.leader.rss_mib(),
        pair.standby.rss_mib()
    ));
    chaos.finish(writer).await;
    drop(pair);
    // Idle: a namespace without clusters.
    let client = client().await;
    let empty = TestNamespace::new(&client, "ha-idle").await;
    grant_lease(&client, &empty.name).await;
    let idle = Pair::start(&client, &empty.name).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    row(&format!(
        "| RSS idle (no clusters): leader / standby | {:.1} / {:.1} MiB |",
        idle.leader.rss_mib(),
        idle.standby.rss_mib()
    ));
    drop(idle);
    empty.cleanup().await;
}

/// Prints a benchmark row and appends it to `E2E_OPERATOR_HA_OUT` (hack/bench-on-local-cluster.sh).
fn row(line: &str) {
    println!("{line}");
    if let Some(path) = std::env::var_os("E2E_OPERATOR_HA_OUT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
}
