//! Plan-level table tests: an [`Observed`] fixture in (Pods, PVCs, Nodes and every member's
//! CLUSTER NODES / INFO replication as Redis would answer), the step and conditions out.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use redis_scheduler::{Capacity, Node, NodeStatus, Request, Topology};

use super::*;
use crate::controller::act::Executed;
use crate::controller::observe::pods::Member;
use crate::controller::observe::{Claim, NodeInfo, Observed, Shape};
use crate::controller::status::{conditions, types};
use crate::crd::PvcRetentionPolicy;
use crate::redis::model::{ClusterView, NodeObservation};

/// One member of the fixture cluster.
#[derive(Clone)]
pub(super) struct M {
    pub(super) id: String,
    pub(super) ip: String,
    pub(super) node: &'static str,
    pub(super) shard: usize,
    pub(super) member: usize,
    /// Slots if a leader; the leader's id if a follower.
    pub(super) slots: &'static str,
    pub(super) master: Option<String>,
    pub(super) offset: u64,
    pub(super) keys: u64,
    /// The Pod: None = deleted.
    pub(super) pod: Option<PodState>,
    /// Redis answers.
    pub(super) answers: bool,
    /// The revision its Pod was built from.
    pub(super) rev: &'static str,
}

impl M {
    /// Forgotten by the cluster: the Pod may linger, no member lists it.
    pub(super) fn forgotten(&self) -> bool {
        self.offset == u64::MAX
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum PodState {
    Running,
    /// Container restarted and not ready (killed and restarting, held by the start gate).
    Down,
    /// The container keeps crashing.
    CrashLoop,
    /// Deletion requested this many seconds ago.
    Deleting(i64),
}

/// The revision of the fixture's spec (and of its members unless a test says otherwise).
pub(super) const REV: &str = "rev-1";

pub(super) fn id(c: char) -> String {
    std::iter::repeat_n(c, 40).collect()
}

/// A healthy 3×1 cluster: leaders a (zone-a), b (zone-b), c (zone-c); followers d (of a, in
/// zone-b), e (of b, zone-c), f (of c, zone-a).
pub(super) fn healthy() -> Fx {
    let leader = |c, ip: &str, node, shard, slots| M {
        id: id(c),
        ip: ip.into(),
        node,
        shard,
        member: 0,
        slots,
        master: None,
        offset: 1000,
        keys: 100,
        pod: Some(PodState::Running),
        answers: true,
        rev: REV,
    };
    let follower = |c, ip: &str, node, shard, of| M {
        id: id(c),
        ip: ip.into(),
        node,
        shard,
        member: 1,
        slots: "",
        master: Some(id(of)),
        offset: 1000,
        keys: 100,
        pod: Some(PodState::Running),
        answers: true,
        rev: REV,
    };
    Fx {
        members: vec![
            leader('a', "10.0.0.1", "n-a1", 0, "0-5461"),
            leader('b', "10.0.0.2", "n-b1", 1, "5462-10922"),
            leader('c', "10.0.0.3", "n-c1", 2, "10923-16383"),
            follower('d', "10.0.0.4", "n-b2", 0, 'a'),
            follower('e', "10.0.0.5", "n-c2", 1, 'b'),
            follower('f', "10.0.0.6", "n-a2", 2, 'c'),
        ],
        link_down: Vec::new(),
        failed: Vec::new(),
        link_down_since: 1,
        not_ready: Vec::new(),
        storage: false,
        claims: Vec::new(),
        break_glass: loss::BreakGlass::default(),
        target: crate::controller::observe::revision::Target {
            revision: REV.into(),
            rolling: true,
            ..Default::default()
        },
    }
}

pub(super) struct Fx {
    pub(super) members: Vec<M>,
    /// (observer, target): the observer's bus link to the target is down.
    pub(super) link_down: Vec<(String, String)>,
    /// Ids every member flags `fail` (the cluster agreed they failed).
    pub(super) failed: Vec<String>,
    /// Seconds followers report their link to their leader down.
    pub(super) link_down_since: u64,
    pub(super) not_ready: Vec<&'static str>,
    pub(super) storage: bool,
    /// Extra PVCs: (name, shard, member, node, recorded id).
    pub(super) claims: Vec<Claim>,
    pub(super) break_glass: loss::BreakGlass,
    /// What the spec asks members to run.
    pub(super) target: crate::controller::observe::revision::Target,
}

impl Fx {
    pub(super) fn get(&mut self, c: char) -> &mut M {
        let want = id(c);
        self.members.iter_mut().find(|m| m.id == want).unwrap()
    }

    /// Member `c` stops answering, its Pod in `pod` state (None: deleted), and every other
    /// member's bus link to it is down.
    pub(super) fn lose(&mut self, c: char, pod: Option<PodState>) {
        let m = self.get(c);
        m.pod = pod;
        m.answers = false;
        self.unreachable(c);
    }

    /// Every answering member's link to `c` is down (its process is gone).
    pub(super) fn unreachable(&mut self, c: char) {
        let target = id(c);
        for m in &self.members {
            if m.id != target {
                self.link_down.push((m.id.clone(), target.clone()));
            }
        }
    }

    /// A new member `c` answering on `node`: a follower of `master` in sync, or (None) an
    /// empty master without slots.
    pub(super) fn add(
        &mut self,
        c: char,
        node: &'static str,
        shard: usize,
        member: usize,
        master: Option<char>,
    ) {
        let synced = master.is_some();
        self.members.push(M {
            id: id(c),
            ip: format!("10.0.0.{}", self.members.len() + 1),
            node,
            shard,
            member,
            slots: "",
            master: master.map(id),
            offset: if synced { 1000 } else { 0 },
            keys: if synced { 100 } else { 0 },
            pod: Some(PodState::Running),
            answers: true,
            rev: REV,
        });
    }

    /// PVCs for every member, recording its identity, each on its member's node.
    pub(super) fn with_storage(mut self) -> Self {
        self.storage = true;
        for m in &self.members {
            self.claims.push(Claim {
                name: format!("data-s{}-m{}", m.shard, m.member),
                shard: m.shard,
                member: m.member,
                node: Some(m.node.to_string()),
                node_id: Some(m.id.parse().unwrap()),
                deleting: false,
            });
        }
        self
    }

    pub(super) fn line(&self, observer: &M, m: &M) -> String {
        let myself = observer.id == m.id;
        let role = if m.master.is_some() {
            "slave"
        } else {
            "master"
        };
        let flags = if myself {
            format!("myself,{role}")
        } else if self.failed.contains(&m.id) {
            format!("{role},fail")
        } else {
            role.to_string()
        };
        let link = if self
            .link_down
            .iter()
            .any(|(o, t)| *o == observer.id && *t == m.id)
        {
            "disconnected"
        } else {
            "connected"
        };
        format!(
            "{} {}:6379@16379 {flags} {} 0 0 1 {link} {}",
            m.id,
            m.ip,
            m.master.as_deref().unwrap_or("-"),
            m.slots
        )
    }

    pub(super) fn observed(&self) -> Observed {
        let mut view = ClusterView::default();
        for o in self.members.iter().filter(|m| m.answers) {
            let mut lines = vec![self.line(o, o)];
            lines.extend(
                self.members
                    .iter()
                    .filter(|m| m.id != o.id && !m.forgotten())
                    .map(|m| self.line(o, m)),
            );
            let replication = match &o.master {
                None => format!(
                    "role:master\r\nmaster_replid:x\r\nmaster_repl_offset:{}\r\n",
                    o.offset
                ),
                Some(master) => {
                    let leader = self.members.iter().find(|m| &m.id == master).unwrap();
                    format!(
                        "role:slave\r\nmaster_host:{}\r\nmaster_port:6379\r\nmaster_link_status:{}\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:{}\r\nmaster_replid:x\r\nmaster_repl_offset:{}\r\n{}",
                        leader.ip,
                        if leader.answers { "up" } else { "down" },
                        o.offset,
                        o.offset,
                        if leader.answers {
                            String::new()
                        } else {
                            format!(
                                "master_link_down_since_seconds:{}\r\n",
                                self.link_down_since
                            )
                        }
                    )
                }
            };
            view.nodes.push(
                NodeObservation::from_replies(
                    format!("{}:6379", o.ip).parse().unwrap(),
                    &lines.join("\n"),
                    "cluster_state:ok\r\n",
                    &replication,
                    Some(o.keys),
                )
                .unwrap(),
            );
        }
        let zones = ["a", "b", "c"];
        let node_names: Vec<String> = zones
            .iter()
            .flat_map(|z| (1..=3).map(move |i| format!("n-{z}{i}")))
            .collect();
        let nodes: BTreeMap<String, NodeInfo> = node_names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    NodeInfo {
                        zone: format!("zone-{}", &n[2..3]),
                        ready: !self.not_ready.contains(&n.as_str()),
                    },
                )
            })
            .collect();
        let topology = Topology {
            nodes: nodes
                .iter()
                .map(|(name, info)| Node {
                    name: name.clone(),
                    zone: Some(info.zone.clone()),
                    status: if info.ready {
                        NodeStatus::Schedulable
                    } else {
                        NodeStatus::NotReady
                    },
                    capacity: Capacity {
                        pods: 10,
                        cpu_millis: 10_000,
                        memory_bytes: 1 << 34,
                    },
                })
                .collect(),
        };
        let members = self
            .members
            .iter()
            .filter_map(|m| {
                let state = m.pod?;
                let claim = self
                    .storage
                    .then(|| format!("data-s{}-m{}", m.shard, m.member));
                Some(pod(m, state, claim))
            })
            .collect();
        Observed {
            name: "demo".into(),
            break_glass: self.break_glass.clone(),
            shape: Shape {
                leaders: 3,
                followers: 1,
                storage: self.storage,
                retention: PvcRetentionPolicy::Retain,
            },
            members,
            claims: self.claims.clone(),
            nodes,
            topology,
            request: Request::new(3, 1),
            view,
            target: self.target.clone(),
            now: jiff::Timestamp::from_second(1_000_000).unwrap(),
        }
    }
}

pub(super) fn pod(m: &M, state: PodState, claim: Option<String>) -> Member {
    let running = !matches!(state, PodState::Down | PodState::CrashLoop);
    let mut json = serde_json::json!({
        "metadata": {
            "name": format!("p-s{}-m{}-{}", m.shard, m.member, &m.id[..1]),
            "namespace": "ns",
            "labels": {"redis.redis-operator.dev/shard": m.shard.to_string(), "redis.redis-operator.dev/member": m.member.to_string()},
            "annotations": {"redis.redis-operator.dev/revision": m.rev},
        },
        "spec": {"nodeName": m.node, "containers": [{"name": "redis"}]},
        "status": {
            "podIP": m.ip,
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": if running { "True" } else { "False" }}],
            "containerStatuses": [{
                "name": "redis", "image": "redis", "imageID": "", "ready": running,
                "restartCount": if running { 0 } else { 1 },
                "state": if state == PodState::CrashLoop { serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}}) } else { serde_json::json!({"running": {}}) },
            }],
        },
    });
    if let PodState::Deleting(secs) = state {
        json["metadata"]["deletionTimestamp"] = serde_json::json!(
            jiff::Timestamp::from_second(1_000_000 - secs)
                .unwrap()
                .to_string()
        );
    }
    if let Some(c) = claim {
        json["spec"]["volumes"] =
            serde_json::json!([{"name": "data", "persistentVolumeClaim": {"claimName": c}}]);
    }
    let pod: Pod = serde_json::from_value(json).unwrap();
    Member {
        shard: m.shard,
        member: m.member,
        pod: Arc::new(pod),
    }
}

pub(super) fn cond<'a>(
    c: &'a [crate::controller::status::Desired],
    t: &str,
) -> &'a crate::controller::status::Desired {
    c.iter().find(|d| d.type_ == t).unwrap()
}

#[test]
fn healthy_cluster_is_ready_and_idle() {
    let plan = plan(&healthy().observed());
    assert_eq!(plan.action, Action::Wait, "{plan:?}");
    assert!(plan.ready, "{plan:?}");
    let c = conditions(&plan, &Executed::Nothing);
    assert!(cond(&c, types::READY).status);
    assert!(!cond(&c, types::DEGRADED).status);
    assert!(!cond(&c, types::PROGRESSING).status);
}

#[test]
fn deleted_follower_with_pvc_comes_back_on_its_node_with_its_volume() {
    let mut fx = healthy().with_storage();
    fx.lose('e', None);
    let p0 = super::plan(&fx.observed());
    match &p0.action {
        Action::CreateMembers(news) => {
            assert_eq!(news.len(), 1);
            assert_eq!((news[0].shard, news[0].member), (1, 1));
            assert_eq!(news[0].node, "n-c2");
            assert_eq!(news[0].reuse_claim.as_deref(), Some("data-s1-m1"));
        }
        other => panic!("expected CreateMembers, got {other:?}"),
    }
    // The identity is not forgotten: its volume brings it back.
    let c = conditions(&p0, &Executed::Nothing);
    assert!(cond(&c, types::DEGRADED).status);
    assert!(!cond(&c, types::READY).status);
}

#[test]
fn deleted_follower_without_storage_is_replaced_in_its_zone_then_forgotten() {
    let mut fx = healthy();
    fx.lose('e', None);
    let p0 = super::plan(&fx.observed());
    match &p0.action {
        // The dead identity owns nothing and nobody follows it: it is forgotten first.
        Action::Forget(ids) => assert_eq!(ids[0].0.as_str(), id('e')),
        other => panic!("expected Forget, got {other:?}"),
    }
    // Once forgotten, the replacement is created in zone c (shard 1's other member is in b).
    fx.members.retain(|m| m.id != id('e'));
    fx.link_down.clear();
    let p0 = super::plan(&fx.observed());
    match &p0.action {
        Action::CreateMembers(news) => {
            assert_eq!(news[0].shard, 1);
            assert_eq!(news[0].zone, "zone-c");
            assert_eq!(news[0].reuse_claim, None);
        }
        other => panic!("expected CreateMembers, got {other:?}"),
    }
}

#[test]
fn follower_on_a_lost_node_is_re_placed_and_its_volume_reported() {
    let mut fx = healthy().with_storage();
    fx.not_ready.push("n-c2");
    let e = fx.get('e');
    e.answers = false;
    e.pod = Some(PodState::Deleting(40));
    fx.unreachable('e');
    let obs = fx.observed();
    let p0 = super::plan(&obs);
    match &p0.action {
        Action::Forget(ids) => assert_eq!(ids[0].0.as_str(), id('e')),
        other => panic!("expected Forget of the lost identity, got {other:?}"),
    }
    // After the FORGET: a new member (new PVC) on another node of zone c; the old PVC is
    // an orphan, listed in status.
    fx.members.retain(|m| m.id != id('e'));
    fx.link_down.clear();
    let p0 = super::plan(&fx.observed());
    match &p0.action {
        Action::CreateMembers(news) => {
            assert_eq!(news[0].zone, "zone-c");
            assert_ne!(news[0].node, "n-c2");
            assert_eq!(news[0].reuse_claim, None);
        }
        other => panic!("expected CreateMembers, got {other:?}"),
    }
    assert_eq!(p0.orphaned_claims, vec!["data-s1-m1".to_string()]);
}

#[test]
fn leader_being_deleted_is_handed_over_gracefully_after_its_hook_had_its_chance() {
    let mut fx = healthy();
    fx.get('a').pod = Some(PodState::Deleting(1));
    let plan1 = plan(&fx.observed());
    assert!(
        !matches!(plan1.action, Action::Failover { .. }),
        "the preStop hook hands over first: {plan1:?}"
    );
    fx.get('a').pod = Some(PodState::Deleting(6));
    let plan2 = plan(&fx.observed());
    assert_eq!(
        plan2.action,
        Action::Failover {
            shard: 0,
            to: id('d').parse().unwrap(),
            kind: FailoverKind::Graceful,
            reason: plan_reason(&plan2),
        }
    );
}

/// (shard, promoted id, kind) of a failover step; panics on any other step.
pub(super) fn failover_of(p: &Plan) -> (usize, String, FailoverKind) {
    match &p.action {
        Action::Failover {
            shard, to, kind, ..
        } => (*shard, to.as_str().to_string(), *kind),
        other => panic!("expected a failover, got {other:?}"),
    }
}

pub(super) fn plan_reason(plan: &Plan) -> String {
    match &plan.action {
        Action::Failover { reason, .. } => reason.clone(),
        _ => String::new(),
    }
}

#[test]
fn crashed_leader_confirmed_by_kubernetes_and_the_majority_is_forced_over() {
    let mut fx = healthy();
    fx.lose('a', Some(PodState::Down));
    let p0 = super::plan(&fx.observed());
    match &p0.action {
        Action::Failover {
            shard, to, kind, ..
        } => {
            assert_eq!(
                (*shard, to.as_str(), *kind),
                (0, id('d').as_str(), FailoverKind::Force)
            );
        }
        other => panic!("expected FORCE failover, got {other:?}"),
    }
    let c = conditions(&p0, &Executed::Nothing);
    let degraded = cond(&c, types::DEGRADED);
    assert!(
        degraded.status && degraded.reason == "LeaderLost",
        "{degraded:?}"
    );
}

#[test]
fn unreachable_leader_is_not_forced_without_kubernetes_and_majority_agreeing() {
    // Only the operator cannot reach it (S10): its Pod runs, the masters see it connected.
    let mut fx = healthy();
    fx.get('a').answers = false;
    let p = plan(&fx.observed());
    assert!(!matches!(p.action, Action::Failover { .. }), "{p:?}");
    // Kubernetes says it is down, but only one of the two other masters lost its link.
    fx.get('a').pod = Some(PodState::Down);
    fx.link_down.push((id('b'), id('a')));
    let p = plan(&fx.observed());
    assert!(!matches!(p.action, Action::Failover { .. }), "{p:?}");
    // Both masters agree: now it is forced.
    fx.link_down.push((id('c'), id('a')));
    let p = plan(&fx.observed());
    assert!(
        matches!(
            p.action,
            Action::Failover {
                kind: FailoverKind::Force,
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn a_follower_that_never_synced_is_never_promoted() {
    let mut fx = healthy();
    fx.lose('a', Some(PodState::Down));
    fx.get('d').offset = 0;
    let p = plan(&fx.observed());
    assert!(!matches!(p.action, Action::Failover { .. }), "{p:?}");
    assert!(p.problems.iter().any(|x| x.reason == "LeaderLost"), "{p:?}");
}

#[test]
fn leader_held_by_the_start_gate_is_forced_over() {
    // Restarted without its data (S4): the container runs the gate, Redis does not answer.
    let mut fx = healthy();
    fx.lose('a', Some(PodState::Down));
    let p = plan(&fx.observed());
    assert!(
        matches!(p.action, Action::Failover { kind: FailoverKind::Force, ref to, .. } if to.as_str() == id('d')),
        "{p:?}"
    );
}

#[test]
fn redis_already_promoted_the_follower_then_the_old_identity_is_forgotten() {
    let mut fx = healthy();
    fx.lose('a', None);
    fx.get('a').slots = "";
    let d = fx.get('d');
    d.master = None;
    d.slots = "0-5461";
    let p = plan(&fx.observed());
    match &p.action {
        Action::Forget(ids) => assert_eq!(ids[0].0.as_str(), id('a')),
        other => panic!("expected Forget, got {other:?}"),
    }
}

#[test]
fn promoted_leader_with_its_volume_comes_back_instead_of_being_forgotten() {
    let mut fx = healthy().with_storage();
    fx.lose('a', None);
    fx.get('a').slots = "";
    let d = fx.get('d');
    d.master = None;
    d.slots = "0-5461";
    let p = plan(&fx.observed());
    match &p.action {
        Action::CreateMembers(news) => {
            assert_eq!(news[0].node, "n-a1");
            assert_eq!(news[0].reuse_claim.as_deref(), Some("data-s0-m0"));
        }
        other => panic!("expected the member recreated on its volume, got {other:?}"),
    }
}

#[test]
fn leaders_piled_in_one_zone_are_spread_back_by_graceful_failover() {
    // After a failover shard 0 is led from zone b, which already leads shard 1.
    let mut fx = healthy();
    let a = fx.get('a');
    a.master = Some(id('d'));
    fx.get('a').slots = "";
    let d = fx.get('d');
    d.master = None;
    d.slots = "0-5461";
    let p = plan(&fx.observed());
    assert_eq!(
        failover_of(&p),
        (0, id('a'), FailoverKind::Graceful),
        "expected a graceful failover back to zone a"
    );
}

#[test]
fn every_pod_deleted_comes_back_on_its_volumes_then_meets_at_new_addresses() {
    let mut fx = healthy().with_storage();
    for m in &mut fx.members {
        m.pod = None;
        m.answers = false;
    }
    let p = plan(&fx.observed());
    match &p.action {
        Action::CreateMembers(news) => {
            assert_eq!(news.len(), 6);
            assert!(news.iter().all(|n| n.reuse_claim.is_some()), "{news:?}");
        }
        other => panic!("expected 6 members recreated, got {other:?}"),
    }
    // Back with new IPs; each still knows the others at their old addresses.
    let mut fx2 = healthy().with_storage();
    let obs_old = fx2.observed();
    for (i, m) in fx2.members.iter_mut().enumerate() {
        m.ip = format!("10.0.1.{}", i + 1);
    }
    let mut obs = fx2.observed();
    // Each member's peers keep their old addresses: rebuild the views from the old ones,
    // only each node's own address changed.
    for (new, old) in obs.view.nodes.iter_mut().zip(obs_old.view.nodes.iter()) {
        new.peers = old.peers.clone();
    }
    let p = plan(&obs);
    assert_eq!(p.action, Action::Meet, "{p:?}");
}

#[test]
fn combined_loss_forces_the_leader_first_then_replaces_the_follower() {
    let mut fx = healthy().with_storage();
    fx.lose('e', None);
    fx.lose('c', Some(PodState::Down));
    let p = plan(&fx.observed());
    assert_eq!(
        failover_of(&p),
        (2, id('f'), FailoverKind::Force),
        "expected FORCE for shard 2 first"
    );
}

#[test]
fn survivor_chained_to_a_dead_leader_is_promoted() {
    // Shard 0: leader a gone; d follows a; a new member 9 (empty, never synced) follows d.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.add('9', "n-c3", 0, 2, Some('d'));
    fx.get('9').offset = 0;
    let p = plan(&fx.observed());
    assert!(
        matches!(&p.action, Action::Failover { kind: FailoverKind::Force, to, .. } if to.as_str() == id('d')),
        "{p:?}"
    );
}

#[test]
fn a_failed_step_is_degraded_with_its_reason() {
    let p = plan(&healthy().observed());
    let c = conditions(
        &p,
        &Executed::Failed {
            reason: "FailoverFailed",
            message: "shard 0: boom".into(),
            transient: true,
            retry_after: std::time::Duration::ZERO,
        },
    );
    let d = cond(&c, types::DEGRADED);
    assert!(d.status && d.reason == "FailoverFailed" && d.message.contains("boom"));
}

#[test]
fn a_follower_that_cannot_start_is_replaced() {
    // Its container keeps crashing; the masters still see its bus link up (nothing confirms
    // its death yet), but the scheduler considers the member unhealthy and replaces it.
    let mut fx = healthy();
    let e = fx.get('e');
    e.pod = Some(PodState::CrashLoop);
    e.answers = false;
    let p = plan(&fx.observed());
    match &p.action {
        Action::DeletePods(pods) => {
            assert_eq!(pods.len(), 1);
            assert!(pods[0].0.contains("s1-m1"), "{pods:?}");
        }
        other => panic!("expected the crash-looping member removed, got {other:?}"),
    }
}

#[test]
fn a_leader_lost_with_its_data_is_data_loss_and_nothing_is_reassigned_until_accepted() {
    // Shard 0 lost leader a and follower d at once, without storage; d is already forgotten.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.members.retain(|m| m.id != id('d'));
    let p = plan(&fx.observed());
    let loss = p
        .problems
        .iter()
        .find(|x| x.reason == "DataLoss")
        .unwrap_or_else(|| panic!("{p:?}"));
    assert!(loss.message.contains("0-5461"), "{}", loss.message);
    assert!(loss.message.starts_with("shard 0 "), "{}", loss.message);
    assert!(
        loss.message.contains("accept-data-loss=aaaaaaaa"),
        "{}",
        loss.message
    );
    assert!(
        !matches!(p.action, Action::AddSlots(_) | Action::ReleaseSlots(_)),
        "{p:?}"
    );
    let c = conditions(&p, &Executed::Nothing);
    assert_eq!(cond(&c, types::DEGRADED).reason, "DataLoss");
    // The user names the lost node: its slots are released (then served empty).
    fx.break_glass.data_loss = vec!["aaaaaaaa".into()];
    let p = plan(&fx.observed());
    match &p.action {
        Action::ReleaseSlots(ids) => assert_eq!(ids[0].0.as_str(), id('a')),
        other => panic!("expected ReleaseSlots, got {other:?}"),
    }
    // An annotation naming another node accepts nothing.
    fx.break_glass.data_loss = vec!["bbbbbbbb".into()];
    let p = plan(&fx.observed());
    assert!(!matches!(p.action, Action::ReleaseSlots(_)), "{p:?}");
}

#[test]
fn a_leader_whose_volume_survives_is_awaited_not_data_loss() {
    let mut fx = healthy().with_storage();
    fx.lose('a', None);
    fx.lose('d', None);
    fx.not_ready.push("n-a1");
    let p = plan(&fx.observed());
    assert!(!p.problems.iter().any(|x| x.reason == "DataLoss"), "{p:?}");
}

#[test]
fn majority_of_leaders_lost_is_quorum_lost_and_takeover_needs_the_user() {
    let mut fx = healthy();
    fx.lose('a', Some(PodState::Down));
    fx.lose('b', Some(PodState::Down));
    let p = plan(&fx.observed());
    assert!(!matches!(p.action, Action::Failover { .. }), "{p:?}");
    let q = p
        .problems
        .iter()
        .find(|x| x.reason == "QuorumLost")
        .unwrap_or_else(|| panic!("{p:?}"));
    assert!(
        q.message.contains("accept-takeover=aaaaaaaa,bbbbbbbb"),
        "{}",
        q.message
    );
    fx.break_glass.takeover = vec!["aaaaaaaa".into(), "bbbbbbbb".into()];
    let p = plan(&fx.observed());
    match &p.action {
        Action::Failover { kind, to, .. } => {
            assert_eq!(*kind, FailoverKind::Takeover);
            assert_eq!(to.as_str(), id('d'));
        }
        other => panic!("expected TAKEOVER, got {other:?}"),
    }
}

#[test]
fn a_zone_without_ready_nodes_is_named() {
    let mut fx = healthy();
    fx.not_ready.extend(["n-c1", "n-c2", "n-c3"]);
    let p = plan(&fx.observed());
    assert!(
        p.problems
            .iter()
            .any(|x| x.reason == "ZoneUnavailable" && x.message.contains("zone-c")),
        "{p:?}"
    );
}

#[test]
fn redis_s_own_election_is_not_raced_until_it_had_its_time() {
    // The node died; the cluster already flagged it FAIL: Redis is electing d itself.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.failed.push(id('a'));
    fx.link_down_since = 6;
    let p = plan(&fx.observed());
    assert!(!matches!(p.action, Action::Failover { .. }), "{p:?}");
    // 2 x node timeout + 3 s later nobody was promoted: the operator forces it.
    fx.link_down_since = 14;
    let p = plan(&fx.observed());
    assert!(
        matches!(
            p.action,
            Action::Failover {
                kind: FailoverKind::Force,
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn a_cluster_whole_again_without_a_zone_is_ready_and_degraded() {
    // Zone a is gone; its members were re-placed: shard 0 led by d (zone b) with a new
    // follower on n-c3, shard 2's follower moved from n-a2 to n-b3.
    let mut fx = healthy();
    fx.not_ready.extend(["n-a1", "n-a2", "n-a3"]);
    // Their Pods linger Terminating on the dead nodes; the cluster forgot them.
    for c in ['a', 'f'] {
        let m = fx.get(c);
        m.pod = Some(PodState::Deleting(60));
        m.answers = false;
        m.offset = u64::MAX;
    }
    let d = fx.get('d');
    d.master = None;
    d.slots = "0-5461";
    fx.add('7', "n-c3", 0, 0, Some('d'));
    fx.add('8', "n-b3", 2, 1, Some('c'));
    let p = plan(&fx.observed());
    assert!(p.ready, "{p:?}");
    let c = conditions(&p, &Executed::Nothing);
    assert!(cond(&c, types::READY).status);
    let d = cond(&c, types::DEGRADED);
    assert!(d.status && d.reason == "ZoneUnavailable", "{d:?}");
}

#[test]
fn a_returning_volume_whose_shard_was_made_whole_elsewhere_is_forgotten() {
    // Follower e's node came back after e was re-placed (as 7 on n-c3): its volume is intact
    // but its shard needs nothing more, so its identity is forgotten, not revived.
    let mut fx = healthy().with_storage();
    fx.lose('e', None);
    fx.add('7', "n-c3", 1, 2, Some('b'));
    fx.storage = false; // the fixture's pods mount no claims; the PVCs stay listed
    let p = plan(&fx.observed());
    match &p.action {
        Action::Forget(ids) => assert_eq!(ids[0].0.as_str(), id('e')),
        other => panic!("expected Forget, got {other:?}"),
    }
}

#[test]
fn quorum_lost_is_the_degraded_reason_even_while_the_bootstrap_is_blocked() {
    // Leaders a and b are gone; their replacements (7, 8) answer as empty masters, so the
    // bootstrap is Blocked on slots owned by absent nodes: the loss still leads.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.lose('b', None);
    fx.add('7', "n-a3", 0, 2, None);
    fx.add('8', "n-b3", 1, 2, None);
    let p = plan(&fx.observed());
    assert!(p.problems.iter().any(|x| x.reason == "Blocked"), "{p:?}");
    let c = conditions(&p, &Executed::Nothing);
    assert_eq!(cond(&c, types::DEGRADED).reason, "QuorumLost", "{p:?}");
}
