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
//! The replicas are host processes with the operator ServiceAccount's kubeconfig, like the
//! rest of the suite's operators, each with its own Lease in the test's namespace; the pause
//! and kill semantics are those of a container's process. `bench_operator_failover` measures
//! leader SIGKILL → the standby's first action and the replicas' RSS (make bench-operator-ha).
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

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
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
// Real operator processes.

/// One operator process with leader election; killed on drop.
struct Replica {
    identity: String,
    child: Child,
    http: u16,
}

impl Replica {
    fn start(ns: &str, identity: &str) -> Self {
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
            child,
            http,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {}", self.pid());
        println!("{sig} {} (pid {})", self.identity, self.pid());
    }

    /// SIGKILL, as the kubelet's container runtime would deliver it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status if the process has ended.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `GET /readyz` → whether 200.
    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.http)) else {
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
        self.kill();
    }
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
            namespace: Some("redis-operator".into()),
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

/// Two replicas of the operator in `ns`; the leader first once one leads and both are ready.
struct Pair {
    leader: Replica,
    standby: Replica,
}

impl Pair {
    async fn start(client: &Client, ns: &str) -> Self {
        let a = Replica::start(ns, &format!("{ns}-a"));
        let b = Replica::start(ns, &format!("{ns}-b"));
        let begun = Instant::now();
        let lead = wait_for("one replica leads", Duration::from_secs(60), || async {
            holder(client, ns).await
        })
        .await;
        wait_for(
            "both replicas ready (/readyz)",
            Duration::from_secs(60),
            || async { (a.ready() && b.ready()).then_some(()) },
        )
        .await;
        println!(
            "{ns}: {lead} leads, both ready after {:.1} s",
            begun.elapsed().as_secs_f64()
        );
        let (leader, standby) = if lead == a.identity { (a, b) } else { (b, a) };
        assert_eq!(leader.identity, lead);
        Self { leader, standby }
    }

    /// Waits until the standby holds the Lease; the time it took since `since`.
    async fn takeover(
        &self,
        client: &Client,
        ns: &str,
        since: Instant,
        timeout: Duration,
    ) -> Duration {
        wait_for(
            &format!("{} takes the Lease over", self.standby.identity),
            timeout,
            || async {
                (holder(client, ns).await.as_deref() == Some(self.standby.identity.as_str()))
                    .then(|| since.elapsed())
            },
        )
        .await
    }
}

/// When an Event last happened (its series' last observation, else its time).
fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
}

/// Events in `ns` reported by `instance` that happened at or after `after`, as "reason: note".
async fn events_by(
    client: &Client,
    ns: &str,
    instance: &str,
    after: jiff::Timestamp,
) -> Vec<(jiff::Timestamp, String)> {
    let mut found: Vec<(jiff::Timestamp, String)> = Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.reporting_instance.as_deref() == Some(instance))
        .filter_map(|e| {
            let t = event_time(e)?;
            (t >= after).then(|| {
                (
                    t,
                    format!(
                        "{}: {}",
                        e.reason.clone().unwrap_or_default(),
                        e.note.clone().unwrap_or_default()
                    ),
                )
            })
        })
        .collect();
    found.sort();
    found
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

/// Waits for the first Event `instance` reports at or after `after`.
async fn first_event(
    client: &Client,
    ns: &str,
    instance: &str,
    after: jiff::Timestamp,
    timeout: Duration,
) -> (jiff::Timestamp, String) {
    wait_for(&format!("an Event from {instance}"), timeout, || async {
        events_by(client, ns, instance, after)
            .await
            .into_iter()
            .next()
    })
    .await
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_killed_mid_leader_recovery_standby_finishes() {
    let (chaos, before, writer, mut pair) = ha_world("ha-kill-rec").await;
    let ns = chaos.ns.name.clone();
    // A leader's Pod is force-deleted (no preStop handover): the operator must confirm its
    // death, FORCE its follower over and re-place it. The leading operator is SIGKILLed as soon
    // as it has acted on it (its first Event after the fault).
    let fault = jiff::Timestamp::now();
    chaos.force_delete_pods(&[&before.leader(1).pod]).await;
    let (_, what) = first_event(
        &chaos.client,
        &ns,
        &pair.leader.identity,
        fault,
        Duration::from_secs(60),
    )
    .await;
    let killed = Instant::now();
    let killed_wall = jiff::Timestamp::now();
    pair.leader.kill();
    println!(
        "{ns}: leader SIGKILLed {:.1} s after the fault, after its Event {what:?}",
        (killed_wall - fault).get_milliseconds() as f64 / 1000.0
    );
    let took = pair
        .takeover(&chaos.client, &ns, killed, LEASE + RETRY * 3)
        .await;
    println!(
        "{ns}: the standby holds the Lease {:.1} s after the kill",
        took.as_secs_f64()
    );
    let members = chaos
        .recovered(RECOVERY, |addrs| writer.add_seeds(addrs))
        .await;
    drop(members);
    let acted = events_by(&chaos.client, &ns, &pair.standby.identity, killed_wall).await;
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
    println!("{ns}: reshard to 4 finished by the standby");
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
    let exited = wait_for(
        "the resumed old leader exits",
        Duration::from_secs(30),
        || {
            let status = pair.leader.exited();
            async move { status }
        },
    )
    .await;
    println!("{ns}: the old leader exited after SIGCONT: {exited}");
    assert!(!exited.success(), "a lost lease is a failure exit");
    let members = chaos
        .recovered(RECOVERY, |addrs| writer.add_seeds(addrs))
        .await;
    drop(members);
    let by_old = events_by(&chaos.client, &ns, &pair.leader.identity, takeover).await;
    assert!(
        by_old.is_empty(),
        "the old leader acted after the takeover: {by_old:#?}"
    );
    let by_new = events_by(&chaos.client, &ns, &pair.standby.identity, takeover).await;
    println!("{ns}: the new leader's Events: {by_new:#?}");
    assert!(
        !by_new.is_empty(),
        "the new leader replaced the deleted followers"
    );
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("redis-operator-{}.log", pair.leader.identity)),
    )
    .unwrap_or_default();
    assert!(
        log.contains("lost the lease"),
        "the old leader logs why it stopped"
    );
    chaos.finish(writer).await;
}

/// Leader SIGKILL → the standby's first action (its first Event; a follower Pod is deleted
/// right after the kill so that there is work), 5 runs; then RSS of the leader and the
/// standby with one Ready 3 × 1 cluster, idle. Prints a table row per measurement.
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
            &pair.standby.identity,
            killed_wall,
            Duration::from_secs(60),
        )
        .await;
        let first = (t - killed_wall).get_milliseconds() as f64 / 1000.0;
        println!(
            "run {run}: Lease taken over after {:.1} s, first action after {first:.1} s ({what})",
            took.as_secs_f64()
        );
        leases.push(took.as_secs_f64());
        firsts.push(first);
        // The killed replica comes back as the standby (a kubelet would restart it).
        let back = Replica::start(&ns, &format!("{ns}-r{run}"));
        let old = std::mem::replace(&mut pair.leader, back);
        drop(old);
        std::mem::swap(&mut pair.leader, &mut pair.standby);
        wait_for("the new standby ready", Duration::from_secs(60), || async {
            pair.standby.ready().then_some(())
        })
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
    row(&format!(
        "| leader SIGKILL → standby holds the Lease (5 runs) | {} |",
        stats(&mut leases)
    ));
    row(&format!(
        "| leader SIGKILL → standby's first action (5 runs) | {} |",
        stats(&mut firsts)
    ));
    row(&format!(
        "| RSS with one Ready 3x1 cluster, idle: leader / standby | {:.1} / {:.1} MiB |",
        pair.leader.rss_mib(),
        pair.standby.rss_mib()
    ));
    chaos.finish(writer).await;
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
