//! The registry: every metric family, what each reconcile records into them, and the label
//! sets each cluster owns, so that a deleted cluster's series (and a replaced Pod's, a zone
//! without members any more, a problem that went away) disappear instead of piling up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::cluster::{CONDITION_TYPES, ClusterSample, FAILOVER_KINDS, Recovery};
pub use super::families::ClusterLabels;
use super::families::{
    ActionLabels, ConditionLabels, Families, FloatGauge, KindLabels, MemberLabels, ProblemLabels,
    ReasonLabels, ZoneLabels, register,
};
use super::member::MemberSample;

/// The metric name prefix.
pub const PREFIX: &str = "redis_operator";

/// What this process remembers of one cluster between passes: the label sets it wrote, the
/// leaders it saw, the failovers it commanded, the recovery times.
#[derive(Default)]
struct ClusterMemory {
    zones: BTreeSet<ZoneLabels>,
    problems: BTreeSet<ProblemLabels>,
    members: BTreeSet<MemberLabels>,
    leaders: BTreeMap<usize, String>,
    commanded: BTreeMap<usize, String>,
    recovery: Recovery,
}

struct Inner {
    registry: Registry,
    f: Families,
    clusters: Mutex<Clusters>,
    /// The clusters listed by the RedisCluster watch's current re-list, while it runs.
    relist: Mutex<Option<BTreeSet<ClusterLabels>>>,
}

/// The clusters, under one lock so that a pass finishing after its cluster was deleted cannot
/// write its series back.
#[derive(Default)]
struct Clusters {
    /// The clusters the RedisCluster watch holds now: only those are recorded.
    watched: BTreeSet<ClusterLabels>,
    /// What is remembered of each cluster with series.
    memory: BTreeMap<ClusterLabels, ClusterMemory>,
}

/// The operator's metrics; cheap to clone (one registry per process).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it leaves consistent data (every update is a plain assignment).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// A registry with every family registered.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix(PREFIX);
        let f = Families {
            // 5 ms .. 41 s: a quiet pass takes milliseconds, a reshard batch seconds.
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            reconcile_errors: Family::default(),
            actions: Family::default(),
            is_leader: Gauge::default(),
            members_desired: Family::default(),
            members_ready: Family::default(),
            members_updated: Family::default(),
            slots_served: Family::default(),
            zone_loss_safe: Family::default(),
            reshard_slots_to_move: Family::default(),
            reshard_slots_moved: Family::default(),
            reshard_keys_moved: Family::default(),
            recovery_started: Family::default(),
            recovery_ended: Family::default(),
            certificate_expiry: Family::default(),
            leaders: Family::default(),
            failovers: Family::default(),
            condition: Family::default(),
            problems: Family::default(),
            member_used_memory: Family::default(),
            member_maxmemory: Family::default(),
            member_clients: Family::default(),
            member_lag: Family::default(),
            member_is_leader: Family::default(),
        };
        register(&mut r, &f);
        Self(Arc::new(Inner {
            registry: r,
            f,
            clusters: Mutex::new(Clusters::default()),
            relist: Mutex::new(None),
        }))
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.0.registry) {
            tracing::warn!(error = %e, "metrics: encoding failed");
        }
        out
    }

    /// Whether this replica acts now (the Lease holder; always with leader election off).
    pub fn set_leader(&self, leads: bool) {
        self.0.f.is_leader.set(i64::from(leads));
    }

    /// One reconcile that ran (a standby's, which does nothing, is not recorded): its
    /// duration, and the error category when it failed.
    pub fn record_reconcile(&self, took: Duration, error: Option<&'static str>) {
        self.0.f.reconcile_duration.observe(took.as_secs_f64());
        if let Some(reason) = error {
            self.count_error(reason);
        }
    }

    fn count_error(&self, reason: &str) {
        self.0
            .f
            .reconcile_errors
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// The step a pass took: its kind and outcome, and the reason when it failed.
    pub fn record_step(&self, kind: &str, outcome: &str, failed: Option<&str>) {
        if kind != "wait" {
            self.0
                .f
                .actions
                .get_or_create(&ActionLabels {
                    kind: kind.into(),
                    outcome: outcome.into(),
                })
                .inc();
        }
        if let Some(reason) = failed {
            self.count_error(reason);
        }
    }

    /// One pass over one cluster: its sample, its answering members, the failovers it
    /// commanded (kind, shard, promoted id), the `Degraded` condition it started from
    /// (status, lastTransitionTime), and the time.
    pub fn record_cluster(
        &self,
        key: &ClusterLabels,
        sample: &ClusterSample,
        members: &[MemberSample],
        commanded: Vec<(&'static str, usize, String)>,
        recorded_degraded: Option<(bool, f64)>,
        now: f64,
    ) {
        let f = &self.0.f;
        let mut clusters = lock(&self.0.clusters);
        // A reconcile that began before its cluster was deleted may end after the deletion
        // removed the series: it must not write them back.
        if !clusters.watched.contains(key) {
            return;
        }
        let first = !clusters.memory.contains_key(key);
        let memory = clusters.memory.entry(key.clone()).or_default();
        let kind = |k: &str| KindLabels {
            namespace: key.namespace.clone(),
            cluster: key.cluster.clone(),
            kind: k.into(),
        };
        if first {
            // Every kind from 0, so an increase shows in PromQL from the first failover on.
            for k in FAILOVER_KINDS {
                f.failovers.get_or_create(&kind(k)).inc_by(0);
            }
        }
        let automatic =
            super::cluster::automatic_changes(&memory.leaders, &sample.leaders, &memory.commanded);
        f.failovers
            .get_or_create(&kind("automatic"))
            .inc_by(automatic as u64);
        // A commanded promotion stays expected until that leader is seen (or another one).
        memory
            .commanded
            .retain(|shard, id| sample.leaders.get(shard).is_none_or(|l| l != id));
        for (k, shard, to) in commanded {
            f.failovers.get_or_create(&kind(k)).inc();
            memory.commanded.insert(shard, to);
        }
        // A shard without a serving leader this pass keeps its last one: the change counts
        // when the new leader serves.
        for (shard, id) in &sample.leaders {
            memory.leaders.insert(*shard, id.clone());
        }

        set(&f.members_desired, key, Some(sample.members_desired));
        set(&f.members_ready, key, Some(sample.members_ready));
        set(&f.members_updated, key, Some(sample.members_updated));
        set(&f.slots_served, key, Some(sample.slots_served));
        set(&f.zone_loss_safe, key, sample.zone_loss_safe.map(i64::from));
        set(&f.reshard_slots_to_move, key, sample.reshard.map(|r| r.0));
        set(&f.reshard_slots_moved, key, sample.reshard.map(|r| r.1));
        set(&f.reshard_keys_moved, key, sample.reshard.map(|r| r.2));
        set(&f.certificate_expiry, key, sample.certificate_expiry);
        for t in CONDITION_TYPES {
            let labels = ConditionLabels {
                namespace: key.namespace.clone(),
                cluster: key.cluster.clone(),
                r#type: t.into(),
            };
            match sample.conditions.iter().find(|c| c.0 == t) {
                Some((_, status)) => {
                    f.condition.get_or_create(&labels).set(i64::from(*status));
                }
                None => {
                    f.condition.remove(&labels);
                }
            }
        }
        let degraded = sample
            .conditions
            .iter()
            .any(|c| c.0 == crate::crd::conditions::DEGRADED && c.1);
        memory.recovery = memory.recovery.next(degraded, recorded_degraded, now);
        set_float(&f.recovery_started, key, memory.recovery.started);
        set_float(&f.recovery_ended, key, memory.recovery.ended);

        let zones = sample
            .leaders_per_zone
            .iter()
            .map(|(zone, n)| {
                let l = ZoneLabels {
                    namespace: key.namespace.clone(),
                    cluster: key.cluster.clone(),
                    zone: zone.clone(),
                };
                f.leaders.get_or_create(&l).set(*n);
                l
            })
            .collect();
        replace(&f.leaders, &mut memory.zones, zones);
        let problems = sample
            .problems
            .iter()
            .map(|(reason, n)| {
                let l = ProblemLabels {
                    namespace: key.namespace.clone(),
                    cluster: key.cluster.clone(),
                    reason: (*reason).into(),
                };
                f.problems.get_or_create(&l).set(*n);
                l
            })
            .collect();
        replace(&f.problems, &mut memory.problems, problems);
        self.record_members(key, memory, members);
    }

    fn record_members(&self, key: &ClusterLabels, memory: &mut ClusterMemory, ms: &[MemberSample]) {
        let f = &self.0.f;
        let mut seen = BTreeSet::new();
        for m in ms {
            let l = MemberLabels {
                namespace: key.namespace.clone(),
                cluster: key.cluster.clone(),
                shard: m.shard.to_string(),
                member: m.member.to_string(),
                pod: m.pod.clone(),
            };
            f.member_used_memory
                .get_or_create(&l)
                .set(int(m.used_memory));
            f.member_maxmemory.get_or_create(&l).set(int(m.maxmemory));
            f.member_is_leader
                .get_or_create(&l)
                .set(i64::from(m.leader));
            set_member(&f.member_clients, &l, m.connected_clients);
            set_member(&f.member_lag, &l, m.replication_lag);
            seen.insert(l);
        }
        for gone in memory.members.difference(&seen) {
            for fam in self.member_families() {
                fam.remove(gone);
            }
        }
        memory.members = seen;
    }

    fn member_families(&self) -> [&Family<MemberLabels, Gauge>; 5] {
        let f = &self.0.f;
        [
            &f.member_used_memory,
            &f.member_maxmemory,
            &f.member_clients,
            &f.member_lag,
            &f.member_is_leader,
        ]
    }

    /// Removes every series of a cluster (it was deleted, or this replica stopped managing
    /// it), so that the number of series stays bounded by the clusters that exist.
    pub fn forget(&self, key: &ClusterLabels) {
        let mut clusters = lock(&self.0.clusters);
        clusters.watched.remove(key);
        let Some(memory) = clusters.memory.remove(key) else {
            return;
        };
        let f = &self.0.f;
        for fam in [
            &f.members_desired,
            &f.members_ready,
            &f.members_updated,
            &f.slots_served,
            &f.zone_loss_safe,
            &f.reshard_slots_to_move,
            &f.reshard_slots_moved,
            &f.reshard_keys_moved,
            &f.certificate_expiry,
        ] {
            fam.remove(key);
        }
        f.recovery_started.remove(key);
        f.recovery_ended.remove(key);
        for k in FAILOVER_KINDS {
            f.failovers.remove(&KindLabels {
                namespace: key.namespace.clone(),
                cluster: key.cluster.clone(),
                kind: k.into(),
            });
        }
        for t in CONDITION_TYPES {
            f.condition.remove(&ConditionLabels {
                namespace: key.namespace.clone(),
                cluster: key.cluster.clone(),
                r#type: t.into(),
            });
        }
        for z in &memory.zones {
            f.leaders.remove(z);
        }
        for p in &memory.problems {
            f.problems.remove(p);
        }
        for m in &memory.members {
            for fam in self.member_families() {
                fam.remove(m);
            }
        }
    }

    /// The clusters with series now.
    pub fn clusters(&self) -> Vec<ClusterLabels> {
        lock(&self.0.clusters).memory.keys().cloned().collect()
    }

    /// The RedisCluster watch holds this cluster (added or changed, or listed): its passes
    /// are recorded from now on.
    pub fn watched(&self, key: ClusterLabels) {
        if let Some(set) = lock(&self.0.relist).as_mut() {
            set.insert(key.clone());
        }
        lock(&self.0.clusters).watched.insert(key);
    }

    /// A (re-)list of the RedisCluster watch begins.
    pub fn relist_started(&self) {
        *lock(&self.0.relist) = Some(BTreeSet::new());
    }

    /// The re-list is complete: clusters it did not return were deleted while the watch was
    /// down; their series go.
    pub fn relist_done(&self) {
        let Some(listed) = lock(&self.0.relist).take() else {
            return;
        };
        let known: Vec<ClusterLabels> = {
            let clusters = lock(&self.0.clusters);
            clusters
                .watched
                .iter()
                .chain(clusters.memory.keys())
                .cloned()
                .collect()
        };
        for key in known {
            if !listed.contains(&key) {
                self.forget(&key);
            }
        }
    }
}

fn set(fam: &Family<ClusterLabels, Gauge>, key: &ClusterLabels, v: Option<i64>) {
    match v {
        Some(v) => {
            fam.get_or_create(key).set(v);
        }
        None => {
            fam.remove(key);
        }
    }
}

fn set_member(fam: &Family<MemberLabels, Gauge>, l: &MemberLabels, v: Option<u64>) {
    match v {
        Some(v) => {
            fam.get_or_create(l).set(int(v));
        }
        None => {
            fam.remove(l);
        }
    }
}

fn set_float(fam: &Family<ClusterLabels, FloatGauge>, key: &ClusterLabels, v: Option<f64>) {
    match v {
        Some(v) => {
            fam.get_or_create(key).set(v);
        }
        None => {
            fam.remove(key);
        }
    }
}

/// Keeps `now` as the cluster's label sets of `fam`, removing those it no longer has.
fn replace<L>(fam: &Family<L, Gauge>, old: &mut BTreeSet<L>, now: BTreeSet<L>)
where
    L: Clone + std::hash::Hash + Eq + Ord + EncodeLabelSet + std::fmt::Debug,
{
    for gone in old.difference(&now) {
        fam.remove(gone);
    }
    *old = now;
}
