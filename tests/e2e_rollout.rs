//! Rolling updates end to end, under the acknowledged-write checker on a Ready 3 × 1 cluster
//! with PVCs: in place (`maxSurge: 0`), a new image tag, then a restart-requiring config key
//! with the operator killed mid-rollout, then a runtime-settable key (applied live, nothing
//! restarted); a rollout started while a follower is missing, which waits for that follower to
//! be back first; and the default surge rollout, which never leaves a shard without its
//! follower in sync (sampled from the members' own replication reports) and whose operator is
//! killed mid-surge.
//! Assertions: 0 acknowledged writes lost, every member on the current revision, the full
//! placement invariants (leaders ≤ ⌈L/Z⌉ per zone) at the end. Durations are printed, never
//! asserted.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;
mod support {
    pub mod ack_writer;
    pub mod chaos;
}

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use kube_support::*;
use serde_json::json;
use support::chaos::*;

const ROLLOUT: Duration = Duration::from_secs(300);
const REVISION: &str = "redis.redis-operator.dev/revision";

/// Members updated so far, from status (`k/6` → k).
async fn updated(chaos: &Chaos) -> Option<usize> {
    let rc = chaos.resource().await;
    let s = rc.status?;
    s.updated_members?.split('/').next()?.parse().ok()
}

/// Waits until every member Pod carries the status' current revision (a revision other than
/// `old`), the status says all are updated and the cluster is Ready with the recovery
/// invariants; hands the writer the members' addresses meanwhile. Returns the revision.
async fn wait_rolled(
    chaos: &Chaos,
    writer: &support::ack_writer::AckWriterHandle,
    old: &str,
) -> (String, Members) {
    let begun = Instant::now();
    let revision = wait_for("every member on the new revision", ROLLOUT, || async {
        writer.add_seeds(member_addrs(&chaos.client, &chaos.ns.name, NAME).await);
        let rc = chaos.resource().await;
        let status = rc.status.clone()?;
        let revision = status.revision.clone()?;
        if revision == old || status.updated_members.as_deref() != Some("6/6") {
            return None;
        }
        let pods = member_pods(&chaos.client, &chaos.ns.name, NAME)
            .await
            .ok()?;
        let current = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REVISION))
                    == Some(&revision)
            })
            .count();
        (current == 6).then_some(revision)
    })
    .await;
    let members = chaos
        .recovered(ROLLOUT, |addrs| writer.add_seeds(addrs))
        .await;
    println!(
        "{}: rolled to {revision} in {:.1} s",
        chaos.ns.name,
        begun.elapsed().as_secs_f64()
    );
    (revision, members)
}

/// Syncs the members served while it runs (issue 23, restart cost): every member's
/// `sync_full` and `sync_partial_ok` (INFO stats, counted by the serving side), sampled every
/// 500 ms and kept per process (`run_id`: a restarted process counts from 0 again). Printed,
/// never asserted.
struct SyncCounter {
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl SyncCounter {
    fn start(chaos: &Chaos) -> Self {
        let seen: Seen = Arc::default();
        let (client, ns, pass) = (
            chaos.client.clone(),
            chaos.ns.name.clone(),
            chaos.pass.clone(),
        );
        let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let into = seen.clone();
        let task = tokio::spawn(async move {
            let options = redis_operator::redis::AdminOptions {
                auth: Some(redis_operator::redis::Auth {
                    username: None,
                    password: pass,
                }),
                ..Default::default()
            };
            loop {
                let initial = first.swap(false, std::sync::atomic::Ordering::Relaxed);
                for addr in member_addrs(&client, &ns, NAME).await {
                    if let Some((run, counts)) = sync_counts(addr, &options).await {
                        let mut seen = into.lock().unwrap();
                        // A process first seen after the start was started since: from 0.
                        let base = if initial { counts } else { (0, 0) };
                        seen.entry(run).or_insert([base, counts])[1] = counts;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Self { seen, task }
    }

    /// (full, partial) syncs served since the start.
    async fn finish(self) -> (u64, u64) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.task.abort();
        let seen = self.seen.lock().unwrap();
        seen.values().fold((0, 0), |(f, p), [base, last]| {
            (f + last.0 - base.0, p + last.1 - base.1)
        })
    }
}

/// run_id → (full, partial) when first seen, and the latest.
type Seen = Arc<Mutex<BTreeMap<String, [(u64, u64); 2]>>>;

/// A member's run_id and (sync_full, sync_partial_ok), if it answers.
async fn sync_counts(
    addr: std::net::SocketAddr,
    options: &redis_operator::redis::AdminOptions,
) -> Option<(String, (u64, u64))> {
    use redis_operator::redis::command::Cmd;
    let mut c = redis_operator::redis::Client::connect(addr, options)
        .await
        .ok()?;
    let cmds = [Cmd::info("server"), Cmd::info("stats")];
    let mut text = String::new();
    for (cmd, r) in cmds.iter().zip(c.pipeline(&cmds).await.ok()?) {
        text.push_str(&redis_operator::redis::reply::text(cmd, r.ok()?).ok()?);
    }
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
            .map(str::to_string)
    };
    let num = |name: &str| field(name)?.parse::<u64>().ok();
    Some((
        field("run_id")?,
        (num("sync_full")?, num("sync_partial_ok")?),
    ))
}

fn config_get(m: &Member, pass: &str, key: &str) -> String {
    cli(&m.ip, pass, &["config", "get", key])
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Image, then a restart-requiring key with the operator killed mid-rollout, then a live key,
/// in place (`maxSurge: 0`).
#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn rolling_update_of_image_and_config_loses_no_write() {
    // In place (maxSurge 0): each member restarts on its PVC and keeps its identity.
    let (mut chaos, before, writer) =
        Chaos::start("roll", json!({"updateStrategy": {"maxSurge": 0}})).await;
    let first = chaos.resource().await.status.unwrap().revision.unwrap();

    // 1. A new image tag: every member replaced, followers first, leaders by handover.
    // Watched as GitOps tools do (kstatus): never Current before every member is updated.
    let watch = kstatus::Watch::start(Api::namespaced(chaos.client.clone(), &chaos.ns.name), NAME);
    let syncs = SyncCounter::start(&chaos);
    chaos.patch_spec(json!({"image": "redis:7.0"})).await;
    let generation = chaos.resource().await.metadata.generation.unwrap();
    let (second, members) = wait_rolled(&chaos, &writer, &first).await;
    // Followers restarted from their shutdown RDB get their AOF back once resynced.
    wait_for("the AOF on everywhere", ROLLOUT, || async {
        let on = members
            .0
            .iter()
            .all(|m| config_get(m, &chaos.pass, "appendonly") == "yes");
        on.then_some(())
    })
    .await;
    let (full, partial) = syncs.finish().await;
    println!(
        "{}: image rollout: syncs served {full} full, {partial} partial",
        chaos.ns.name
    );
    let seen = watch.finish().await;
    kstatus::assert_current_only_when(&seen, generation, "image rollout", |rc| {
        rc.status.as_ref().is_some_and(|s| {
            s.updated_members.as_deref() == Some("6/6") && s.ready_members.as_deref() == Some("6/6")
        })
    });
    for p in member_pods(&chaos.client, &chaos.ns.name, NAME)
        .await
        .unwrap()
    {
        let image = p.spec.as_ref().unwrap().containers[0].image.clone();
        assert_eq!(image.as_deref(), Some("redis:7.0"), "{:?}", p.metadata.name);
    }
    for m in &members.0 {
        let was = before
            .0
            .iter()
            .find(|b| b.shard == m.shard && b.ordinal == m.ordinal);
        assert_eq!(
            was.map(|b| (&b.id, &b.node)),
            Some((&m.id, &m.node)),
            "a replaced member keeps its node id and node (its PVC)"
        );
    }

    // 2. A restart-requiring key; the operator is killed once the rollout has begun and a
    //    new one resumes it.
    let syncs = SyncCounter::start(&chaos);
    chaos
        .patch_spec(json!({"config": {"tcp-backlog": "256"}}))
        .await;
    wait_for("the rollout to begin", ROLLOUT, || async {
        writer.add_seeds(member_addrs(&chaos.client, &chaos.ns.name, NAME).await);
        let rc = chaos.resource().await;
        let begun = rc.status.as_ref()?.revision.as_deref() != Some(second.as_str());
        (begun && updated(&chaos).await.is_some_and(|u| (1..6).contains(&u))).then_some(())
    })
    .await;
    chaos.operator.kill();
    println!("{}: operator killed mid-rollout", chaos.ns.name);
    tokio::time::sleep(Duration::from_secs(3)).await;
    chaos.operator = Operator::start(&chaos.ns.name);
    let (_third, members) = wait_rolled(&chaos, &writer, &second).await;
    let (full, partial) = syncs.finish().await;
    println!(
        "{}: config rollout (operator killed once): syncs served {full} full, {partial} partial",
        chaos.ns.name
    );
    for m in &members.0 {
        assert_eq!(config_get(m, &chaos.pass, "tcp-backlog"), "256");
    }

    // 3. A runtime-settable key: applied live on every member, nothing restarted.
    let pods_before: BTreeMap<String, String> = members
        .0
        .iter()
        .map(|m| (m.pod.clone(), m.id.clone()))
        .collect();
    chaos
        .patch_spec(json!({"config": {"tcp-backlog": "256", "maxmemory-policy": "allkeys-lru"}}))
        .await;
    wait_for(
        "maxmemory-policy applied live everywhere",
        ROLLOUT,
        || async {
            let ok = members
                .0
                .iter()
                .all(|m| config_get(m, &chaos.pass, "maxmemory-policy") == "allkeys-lru");
            ok.then_some(())
        },
    )
    .await;
    let after = chaos.finish(writer).await;
    let pods_after: BTreeMap<String, String> = after
        .0
        .iter()
        .map(|m| (m.pod.clone(), m.id.clone()))
        .collect();
    assert_eq!(
        pods_before, pods_after,
        "a live config change restarts nothing (same pods, same node ids)"
    );
}

/// A rollout that starts while a follower is missing: the follower comes back first (built
/// from the new spec), and no member is restarted for the rollout before that.
#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn rollout_waits_for_a_missing_follower() {
    // In place (maxSurge 0), so that the rollout's first step is a restart Event.
    let (mut chaos, before, writer) =
        Chaos::start("roll-wait", json!({"updateStrategy": {"maxSurge": 0}})).await;
    let first = chaos.resource().await.status.unwrap().revision.unwrap();
    chaos.operator.kill();
    let victim = before.followers(1)[0].clone();
    let pods: Api<Pod> = chaos.pods();
    pods.delete(&victim.pod, &Default::default()).await.unwrap();
    wait_for("the follower pod gone", Duration::from_secs(60), || async {
        pods.get_opt(&victim.pod)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    chaos.patch_spec(json!({"image": "redis:7.0"})).await;
    chaos.operator = Operator::start(&chaos.ns.name);
    wait_rolled(&chaos, &writer, &first).await;

    let events: Api<Event> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    let mut at: BTreeMap<String, Vec<jiff::Timestamp>> = BTreeMap::new();
    for e in events.list(&ListParams::default()).await.unwrap().items {
        let when = e
            .event_time
            .map(|t| t.0)
            .or(e.last_timestamp.map(|t| t.0))
            .or(e.first_timestamp.map(|t| t.0));
        if let (Some(reason), Some(when)) = (e.reason, when) {
            at.entry(reason).or_default().push(when);
        }
    }
    let replaced = at
        .get("MemberReplaced")
        .and_then(|v| v.iter().min())
        .copied();
    let restarted = at
        .get("MemberRestarted")
        .and_then(|v| v.iter().min())
        .copied();
    assert!(
        replaced.is_some() && restarted.is_some(),
        "expected the missing follower recreated and a rollout: {at:?}"
    );
    assert!(
        replaced < restarted,
        "the missing follower must be back before the rollout restarts anything: {at:?}"
    );
    chaos.finish(writer).await;
}

/// The default rollout (maxSurge 1): every member replaced by a new one that synced before the
/// old one retired. Sampled from the members' own INFO replication, no shard has fewer than
/// `followersPerLeader` followers in sync at any time, but for the moment of a handover (a
/// leader change seen in the shard: its old leader reattaches). The operator is killed once a
/// replacement exists, and the new one finishes the pair. At the end: 0 lost, new identities
/// everywhere, no volume left behind, no pair left open.
#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn surge_rollout_keeps_every_follower_in_sync_and_loses_no_write() {
    let (mut chaos, before, writer) = Chaos::start("surge", json!({})).await;
    let first = chaos.resource().await.status.unwrap().revision.unwrap();
    let watch = kstatus::Watch::start(Api::namespaced(chaos.client.clone(), &chaos.ns.name), NAME);
    let redundancy = Redundancy::start(&chaos);
    chaos.patch_spec(json!({"image": "redis:7.0"})).await;
    let generation = chaos.resource().await.metadata.generation.unwrap();
    wait_for("a replacement created", ROLLOUT, || async {
        writer.add_seeds(member_addrs(&chaos.client, &chaos.ns.name, NAME).await);
        let pods = member_pods(&chaos.client, &chaos.ns.name, NAME)
            .await
            .ok()?;
        pods.iter()
            .any(|p| p.annotations().contains_key(REPLACES))
            .then_some(())
    })
    .await;
    chaos.operator.kill();
    println!("{}: operator killed mid-surge", chaos.ns.name);
    tokio::time::sleep(Duration::from_secs(3)).await;
    chaos.operator = Operator::start(&chaos.ns.name);
    let (_, members) = wait_rolled(&chaos, &writer, &first).await;
    let report = redundancy.finish().await;
    println!("{}: surge rollout: {report}", chaos.ns.name);
    let seen = watch.finish().await;
    kstatus::assert_current_only_when(&seen, generation, "surge rollout", |rc| {
        rc.status.as_ref().is_some_and(|s| {
            s.updated_members.as_deref() == Some("6/6") && s.ready_members.as_deref() == Some("6/6")
        })
    });
    assert!(
        report.samples > 0,
        "the members' replication was sampled: {report}"
    );
    assert!(
        report.below.is_empty(),
        "a shard had fewer than {FOLLOWERS} follower(s) in sync outside a handover: {report}"
    );
    let old: Vec<&String> = before.0.iter().map(|m| &m.id).collect();
    for m in &members.0 {
        assert!(
            !old.contains(&&m.id),
            "{} kept an old identity: every member is a replacement",
            m.pod
        );
    }
    // Each retired member's volume went with it; no pair is left open.
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    wait_for("one volume per member", ROLLOUT, || async {
        let live = claims.list(&ListParams::default()).await.ok()?;
        let live = live
            .items
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .count();
        (live == members.0.len()).then_some(())
    })
    .await;
    let rc = chaos.resource().await;
    let status = rc.status.unwrap();
    assert!(
        status.orphaned_claims.is_empty(),
        "{:?}",
        status.orphaned_claims
    );
    chaos.finish(writer).await;
}

const REPLACES: &str = "redis.redis-operator.dev/replaces";

/// Every shard's followers in sync, sampled every 250 ms from the members' own
/// `INFO replication` while it runs: a follower counts when its link to its master is up and no
/// sync is in progress. A sample within 5 s of a leader change in its shard (the old leader
/// reattaching to the new one) is not judged.
struct Redundancy {
    state: Arc<Mutex<RedundancyReport>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default, Clone)]
struct RedundancyReport {
    samples: usize,
    /// Samples below F within 5 s of a handover in their shard (before or after it: a sample
    /// taken while the old leader reattaches precedes the one that shows the new leader).
    exempt: usize,
    /// (shard, seconds since the start, followers in sync) of the samples below F, the
    /// handovers' moments left out once the run is over.
    below: Vec<(String, f64, usize)>,
    /// Leader changes seen per shard (seconds since the start).
    handovers: BTreeMap<String, Vec<f64>>,
}

impl RedundancyReport {
    /// Leaves out the samples below F within 5 s of a handover in their shard.
    fn judge(mut self) -> Self {
        let near = |shard: &str, at: f64| {
            self.handovers
                .get(shard)
                .is_some_and(|hs| hs.iter().any(|h| (h - at).abs() < 5.0))
        };
        let (exempt, below): (Vec<_>, Vec<_>) = self
            .below
            .iter()
            .cloned()
            .partition(|(shard, at, _)| near(shard, *at));
        self.exempt = exempt.len();
        self.below = below;
        self
    }
}

impl std::fmt::Display for RedundancyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} samples ({} below {FOLLOWERS} around handovers), {} below {FOLLOWERS} follower(s) in sync otherwise {:?}, handovers at {:?}",
            self.samples,
            self.exempt,
            self.below.len(),
            self.below,
            self.handovers
        )
    }
}

impl Redundancy {
    fn start(chaos: &Chaos) -> Self {
        let state: Arc<Mutex<RedundancyReport>> = Arc::default();
        let (client, ns, pass) = (
            chaos.client.clone(),
            chaos.ns.name.clone(),
            chaos.pass.clone(),
        );
        let into = state.clone();
        let task = tokio::spawn(async move {
            let begun = Instant::now();
            let mut leaders: BTreeMap<String, String> = BTreeMap::new();
            for _ in 0..4800 {
                let pods = member_pods(&client, &ns, NAME).await.unwrap_or_default();
                // shard -> (the masters its followers in sync follow, followers in sync)
                let mut shards: BTreeMap<String, (Vec<String>, usize)> = BTreeMap::new();
                for p in pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    let shard = p
                        .labels()
                        .get("redis.redis-operator.dev/shard")
                        .cloned()
                        .unwrap_or_default();
                    let entry = shards.entry(shard).or_default();
                    let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
                        continue;
                    };
                    let Some(info) = replication(&ip, &pass).await else {
                        continue;
                    };
                    let field = |k: &str| {
                        info.lines().find_map(|l| {
                            l.trim_end()
                                .strip_prefix(k)?
                                .strip_prefix(':')
                                .map(str::to_string)
                        })
                    };
                    if field("role").as_deref() == Some("slave")
                        && field("master_link_status").as_deref() == Some("up")
                        && field("master_sync_in_progress").as_deref() == Some("0")
                    {
                        entry.1 += 1;
                        entry.0.extend(field("master_host"));
                    }
                }
                let at = begun.elapsed().as_secs_f64();
                {
                    let mut report = into.lock().unwrap();
                    for (shard, (masters, synced)) in shards {
                        // The master its followers in sync point at; a change is a handover.
                        if let Some(master) = masters.first() {
                            let changed = leaders.get(&shard).is_some_and(|m| m != master);
                            if changed {
                                report.handovers.entry(shard.clone()).or_default().push(at);
                            }
                            leaders.insert(shard.clone(), master.clone());
                        }
                        report.samples += 1;
                        if synced < FOLLOWERS {
                            report.below.push((shard, at, synced));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self { state, task }
    }

    async fn finish(self) -> RedundancyReport {
        self.task.abort();
        self.state.lock().unwrap().clone().judge()
    }
}

/// `INFO replication` of the member at `ip`, if it answers within a second.
async fn replication(ip: &str, pass: &str) -> Option<String> {
    use redis_operator::redis::command::Cmd;
    let addr = format!("{ip}:6379").parse().ok()?;
    let options = redis_operator::redis::AdminOptions {
        auth: Some(redis_operator::redis::Auth {
            username: None,
            password: pass.to_string(),
        }),
        ..Default::default()
    };
    let mut c = tokio::time::timeout(
        Duration::from_secs(1),
        redis_operator::redis::Client::connect(addr, &options),
    )
    .await
    .ok()?
    .ok()?;
    let cmd = Cmd::info("replication");
    let reply = tokio::time::timeout(
        Duration::from_secs(1),
        c.pipeline(std::slice::from_ref(&cmd)),
    )
    .await
    .ok()?
    .ok()?
    .pop()?
    .ok()?;
    redis_operator::redis::reply::text(&cmd, reply).ok()
}
