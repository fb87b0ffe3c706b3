//! The one fixture of the plan tests: an [`Observed`] built from a table of members (Pods,
//! PVCs, Nodes and every member's CLUSTER NODES / INFO replication as Redis would answer).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use redis_scheduler::{Capacity, Node, NodeStatus, Request, Topology};

use crate::controller::observe::passwords::{AuthState, Password};
use crate::controller::observe::pods::Member;
use crate::controller::observe::{Claim, NodeInfo, Observed, Shape};
use crate::controller::plan::*;
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
    /// More annotations on its Pod.
    pub(super) annotations: BTreeMap<&'static str, String>,
    /// Seconds its redis container has been running.
    pub(super) running_for: i64,
}

impl M {
    /// A member whose Pod runs and whose Redis answers, in sync (offset 1000, 100 keys): a
    /// leader of `slots` (`master` None) or a follower of `master`.
    fn in_sync(
        id: String,
        ip: &str,
        node: &'static str,
        (shard, member): (usize, usize),
        slots: &'static str,
        master: Option<String>,
    ) -> Self {
        M {
            id,
            ip: ip.into(),
            node,
            shard,
            member,
            slots,
            master,
            offset: 1000,
            keys: 100,
            pod: Some(PodState::Running),
            answers: true,
            rev: REV,
            annotations: BTreeMap::new(),
            running_for: 30,
        }
    }

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

/// The fixture's clock: `Observed::now`, in Unix seconds.
const NOW: i64 = 1_000_000;

/// The revision of the fixture's spec (and of its members unless a test says otherwise).
pub(super) const REV: &str = "rev-1";

pub(super) fn id(c: char) -> String {
    std::iter::repeat_n(c, 40).collect()
}

/// A healthy 3×1 cluster: leaders a (zone-a), b (zone-b), c (zone-c); followers d (of a, in
/// zone-b), e (of b, zone-c), f (of c, zone-a).
pub(super) fn healthy() -> Fx {
    let leader =
        |c, ip: &str, node, shard, slots| M::in_sync(id(c), ip, node, (shard, 0), slots, None);
    let follower =
        |c, ip: &str, node, shard, of| M::in_sync(id(c), ip, node, (shard, 1), "", Some(id(of)));
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
        unheard_roles: Vec::new(),
        link_down_since: 1,
        not_ready: Vec::new(),
        cordoned: Vec::new(),
        storage: false,
        claims: Vec::new(),
        break_glass: crate::controller::observe::break_glass::BreakGlass::default(),
        target: crate::controller::observe::revision::Target {
            revision: REV.into(),
            rolling: true,
            aof: true,
            ..Default::default()
        },
        disk_failing: Vec::new(),
        aof_off: Vec::new(),
        unlinked: Vec::new(),
        cut_off: Vec::new(),
        black_holed: false,
        certs: crate::controller::observe::certs::Certs::default(),
        leaders: 3,
        followers: 1,
        nodes_per_zone: 3,
    }
}

/// A healthy `leaders`×`followers` cluster of any size (the cost benchmark's 10×2 and 50×2):
/// shard `s`'s member `k` in zone `(s + k) % 3`, one member per node, leaders holding the
/// even ranges, ids and addresses numbered.
pub(super) fn sized(leaders: usize, followers: usize) -> Fx {
    let mut fx = healthy();
    let members = leaders * (1 + followers);
    fx.leaders = leaders;
    fx.followers = followers;
    fx.nodes_per_zone = members.div_ceil(3) + 1;
    fx.members.clear();
    let mut used = [0usize; 3];
    let ranges = crate::redis::ids::even_ranges(leaders);
    for (s, range) in ranges.iter().enumerate() {
        for k in 0..=followers {
            let zone = (s + k) % 3;
            used[zone] += 1;
            let n = s * (1 + followers) + k;
            // The table's fields are 'static for the hand-written tests; a benchmark's few
            // strings may live as long as the test process.
            let node: &'static str = format!("n-{}{}", ["a", "b", "c"][zone], used[zone]).leak();
            let slots: &'static str = if k == 0 { range.to_string().leak() } else { "" };
            fx.members.push(M::in_sync(
                numbered_id(n + 1),
                &format!("10.0.{}.{}", n / 250, n % 250 + 1),
                node,
                (s, k),
                slots,
                (k > 0).then(|| numbered_id(s * (1 + followers) + 1)),
            ));
        }
    }
    fx
}

/// The `n`th id of a generated cluster: 40 hex digits.
pub(super) fn numbered_id(n: usize) -> String {
    format!("{n:040x}")
}

pub(super) struct Fx {
    pub(super) members: Vec<M>,
    /// (observer, target): the observer's bus link to the target is down.
    pub(super) link_down: Vec<(String, String)>,
    /// Ids every member flags `fail` (the cluster agreed they failed).
    pub(super) failed: Vec<String>,
    /// (observer, subject): the observer has not heard yet what became of the subject since
    /// it joined, and lists it as the empty master it joined as.
    pub(super) unheard_roles: Vec<(String, String)>,
    /// Seconds followers report their link to their leader down.
    pub(super) link_down_since: u64,
    pub(super) not_ready: Vec<&'static str>,
    /// Ready nodes with `spec.unschedulable` (`kubectl cordon`, a drain).
    pub(super) cordoned: Vec<&'static str>,
    pub(super) storage: bool,
    /// Extra PVCs: (name, shard, member, node, recorded id).
    pub(super) claims: Vec<Claim>,
    pub(super) break_glass: crate::controller::observe::break_glass::BreakGlass,
    /// What the spec asks members to run.
    pub(super) target: crate::controller::observe::revision::Target,
    /// Ids whose last AOF write failed (`INFO persistence`: a full disk).
    pub(super) disk_failing: Vec<String>,
    /// Ids running without their AOF (`aof_enabled:0`: started from their shutdown RDB).
    pub(super) aof_off: Vec<String>,
    /// Followers that have not reached their leader since they started: link down, and
    /// `master_link_down_since_seconds:-1`.
    pub(super) unlinked: Vec<String>,
    /// Followers whose link to their answering leader has been down for
    /// [`Fx::link_down_since`] seconds.
    pub(super) cut_off: Vec<String>,
    /// A leader that does not answer black-holes its packets (its node died): its followers'
    /// links stay up, and their last I/O is [`Fx::link_down_since`] seconds old.
    pub(super) black_holed: bool,
    /// With TLS: the Secret's certificate and what each member presents (by Pod name).
    pub(super) certs: crate::controller::observe::certs::Certs,
    /// The spec's shape (3×1 unless [`sized`]).
    pub(super) leaders: usize,
    pub(super) followers: usize,
    /// Kubernetes nodes per zone (`n-a1`, `n-a2`, …).
    pub(super) nodes_per_zone: usize,
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
            annotations: BTreeMap::new(),
            running_for: 30,
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
        let unheard = self
            .unheard_roles
            .iter()
            .any(|(o, s)| *o == observer.id && *s == m.id);
        let master = if unheard { None } else { m.master.as_deref() };
        let role = if master.is_some() { "slave" } else { "master" };
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
            master.unwrap_or("-"),
            if unheard { "" } else { m.slots }
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
                    let unlinked = self.unlinked.contains(&o.id);
                    let black_holed = self.black_holed && !leader.answers;
                    let up = (leader.answers || black_holed)
                        && !unlinked
                        && !self.cut_off.contains(&o.id);
                    format!(
                        "role:slave\r\nmaster_host:{}\r\nmaster_port:6379\r\nmaster_link_status:{}\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:{}\r\nmaster_replid:x\r\nmaster_repl_offset:{}\r\n{}",
                        leader.ip,
                        if up { "up" } else { "down" },
                        o.offset,
                        o.offset,
                        if black_holed && up {
                            format!("master_last_io_seconds_ago:{}\r\n", self.link_down_since)
                        } else if up {
                            String::new()
                        } else if unlinked {
                            "master_link_down_since_seconds:-1\r\n".to_string()
                        } else {
                            format!(
                                "master_link_down_since_seconds:{}\r\n",
                                self.link_down_since
                            )
                        }
                    )
                }
            };
            let mut observation = NodeObservation::from_replies(
                format!("{}:6379", o.ip).parse().unwrap(),
                &lines.join("\n"),
                "cluster_state:ok\r\n",
                &replication,
                Some(o.keys),
            )
            .unwrap();
            let aof = if self.disk_failing.contains(&o.id) {
                "err"
            } else {
                "ok"
            };
            let enabled = u8::from(!self.aof_off.contains(&o.id));
            observation.persistence = crate::redis::model::PersistenceInfo::parse(&format!(
                "aof_enabled:{enabled}\r\naof_last_write_status:{aof}\r\n"
            ));
            view.nodes.push(observation);
        }
        let zones = ["a", "b", "c"];
        let node_names: Vec<String> = zones
            .iter()
            .flat_map(|z| (1..=self.nodes_per_zone).map(move |i| format!("n-{z}{i}")))
            .collect();
        let nodes: BTreeMap<String, NodeInfo> = node_names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    NodeInfo {
                        zone: format!("zone-{}", &n[2..3]),
                        ready: !self.not_ready.contains(&n.as_str()),
                        // Not Ready since 10 s ago: the members (running for 30 s unless a
                        // test says otherwise) started before that.
                        ready_changed: Some(jiff::Timestamp::from_second(NOW - 10).unwrap()),
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
                    status: if !info.ready {
                        NodeStatus::NotReady
                    } else if self.cordoned.contains(&name.as_str()) {
                        NodeStatus::Cordoned
                    } else {
                        NodeStatus::Schedulable
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
            missing_storage_class: None,
            auth: crate::controller::observe::auth::Auth::Ready {
                secret: crate::controller::observe::auth::SecretRef::default(),
                password: "secret".into(),
                tls: None,
            },
            config: BTreeMap::new(),
            // The last status recorded every member of the table in its shard.
            recorded_shards: self
                .members
                .iter()
                .filter_map(|m| Some((m.id.parse().ok()?, m.shard)))
                .collect(),
            shape: Shape {
                leaders: self.leaders,
                followers: self.followers,
                storage: self.storage,
                retention: PvcRetentionPolicy::Retain,
                scale_in_grace: crate::controller::plan::drain::DEFAULT_GRACE,
            },
            members,
            claims: self.claims.clone(),
            nodes,
            topology,
            request: Request::new(
                u32::try_from(self.leaders).unwrap(),
                u32::try_from(self.followers).unwrap(),
            ),
            view,
            target: self.target.clone(),
            certs: self.certs.clone(),
            // The record holds the Secret's password: no rotation under way.
            credentials: crate::controller::observe::passwords::Credentials {
                wanted: Some(Password::new("secret")),
                state: Some(AuthState {
                    active: Password::new("secret"),
                    previous: None,
                    previous_until: None,
                    rotated_at: None,
                }),
                grace: crate::controller::observe::passwords::DEFAULT_GRACE,
                members: BTreeMap::new(),
            },
            now: jiff::Timestamp::from_second(NOW).unwrap(),
        }
    }
}

/// A PVC of `shard`'s member `member`, bound to `node`, recording identity `id` (a table id).
pub(super) fn claim(
    name: &str,
    (shard, member): (usize, usize),
    node: Option<&str>,
    id_char: Option<char>,
) -> Claim {
    Claim {
        name: name.into(),
        shard,
        member,
        node: node.map(str::to_string),
        node_id: id_char.map(|c| id(c).parse().unwrap()),
        deleting: false,
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
                "state": if state == PodState::CrashLoop { serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}}) } else { serde_json::json!({"running": {"startedAt": jiff::Timestamp::from_second(NOW - m.running_for).unwrap().to_string()}}) },
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
    for (k, v) in &m.annotations {
        json["metadata"]["annotations"][*k] = serde_json::json!(v);
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

/// (shard, promoted id, kind) of a failover step; panics on any other step.
pub(super) fn failover_of(p: &Plan) -> (usize, String, FailoverKind) {
    match &p.action {
        Action::Failover {
            shard, to, kind, ..
        } => (*shard, to.as_str().to_string(), *kind),
        other => panic!("expected a failover, got {other:?}"),
    }
}

/// Whether the plan promotes a follower, alone or side by side with others.
pub(super) fn promotes(p: &Plan) -> bool {
    matches!(
        p.action,
        Action::Failover { .. } | Action::StalledElections(_)
    )
}

/// (shard, promoted id) of each stalled election a step promotes; panics on any other step.
pub(super) fn stalled_of(p: &Plan) -> Vec<(usize, String)> {
    match &p.action {
        Action::StalledElections(each) => each
            .iter()
            .map(|e| (e.shard, e.to.as_str().to_string()))
            .collect(),
        other => panic!("expected stalled elections, got {other:?}"),
    }
}

pub(super) fn plan_reason(plan: &Plan) -> String {
    match &plan.action {
        Action::Failover { reason, .. } => reason.clone(),
        Action::StalledElections(each) => each
            .iter()
            .map(|e| e.reason.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    }
}
