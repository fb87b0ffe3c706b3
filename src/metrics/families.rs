//! The metric families, their label sets, and their names and help texts as registered
//! (prefix `redis_operator_`, units in the names, `_total` on counters).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// `namespace`, `cluster`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ClusterLabels {
    /// The RedisCluster's namespace.
    pub namespace: String,
    /// Its name.
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct ZoneLabels {
    pub(super) namespace: String,
    pub(super) cluster: String,
    pub(super) zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct KindLabels {
    pub(super) namespace: String,
    pub(super) cluster: String,
    pub(super) kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct ConditionLabels {
    pub(super) namespace: String,
    pub(super) cluster: String,
    pub(super) r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct ProblemLabels {
    pub(super) namespace: String,
    pub(super) cluster: String,
    pub(super) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct MemberLabels {
    pub(super) namespace: String,
    pub(super) cluster: String,
    pub(super) shard: String,
    pub(super) member: String,
    pub(super) pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ActionLabels {
    pub(super) kind: String,
    pub(super) outcome: String,
}

pub(super) type FloatGauge = Gauge<f64, AtomicU64>;

/// The families. Per-cluster ones are keyed by [`ClusterLabels`] (plus a bounded label).
pub(super) struct Families {
    pub(super) reconcile_duration: Histogram,
    pub(super) reconcile_errors: Family<ReasonLabels, Counter>,
    pub(super) actions: Family<ActionLabels, Counter>,
    pub(super) is_leader: Gauge,
    pub(super) members_desired: Family<ClusterLabels, Gauge>,
    pub(super) members_ready: Family<ClusterLabels, Gauge>,
    pub(super) members_updated: Family<ClusterLabels, Gauge>,
    pub(super) slots_served: Family<ClusterLabels, Gauge>,
    pub(super) zone_loss_safe: Family<ClusterLabels, Gauge>,
    pub(super) reshard_slots_to_move: Family<ClusterLabels, Gauge>,
    pub(super) reshard_slots_moved: Family<ClusterLabels, Gauge>,
    pub(super) reshard_keys_moved: Family<ClusterLabels, Gauge>,
    pub(super) recovery_started: Family<ClusterLabels, FloatGauge>,
    pub(super) recovery_ended: Family<ClusterLabels, FloatGauge>,
    pub(super) certificate_expiry: Family<ClusterLabels, Gauge>,
    pub(super) leaders: Family<ZoneLabels, Gauge>,
    pub(super) failovers: Family<KindLabels, Counter>,
    pub(super) condition: Family<ConditionLabels, Gauge>,
    pub(super) problems: Family<ProblemLabels, Gauge>,
    pub(super) member_used_memory: Family<MemberLabels, Gauge>,
    pub(super) member_maxmemory: Family<MemberLabels, Gauge>,
    pub(super) member_clients: Family<MemberLabels, Gauge>,
    pub(super) member_lag: Family<MemberLabels, Gauge>,
    pub(super) member_is_leader: Family<MemberLabels, Gauge>,
}

pub(super) fn register(r: &mut Registry, f: &Families) {
    r.register_with_unit(
        "reconcile_duration",
        "Duration of one reconcile of one RedisCluster (observe, plan, one step, status)",
        Unit::Seconds,
        f.reconcile_duration.clone(),
    );
    r.register(
        "reconcile_errors",
        "Reconciles that failed (reason: the error's category) and steps that failed (reason: the step's CamelCase reason)",
        f.reconcile_errors.clone(),
    );
    r.register(
        "actions",
        "Steps taken, by kind (the plan's action) and outcome (succeeded, failed, skipped)",
        f.actions.clone(),
    );
    r.register(
        "is_leader",
        "1 while this replica holds the leader Lease and may act (always 1 with leader election off)",
        f.is_leader.clone(),
    );
    let per_cluster: [(&str, &str, &Family<ClusterLabels, Gauge>); 8] = [
        (
            "cluster_members_desired",
            "Members the spec asks for (leaders x (1 + followers per leader))",
            &f.members_desired,
        ),
        (
            "cluster_members_ready",
            "Live members whose Pod is Ready",
            &f.members_ready,
        ),
        (
            "cluster_members_updated",
            "Live members on the spec's current revision (rolling update progress, out of members_desired)",
            &f.members_updated,
        ),
        (
            "cluster_slots_served",
            "Hash slots (of 16384) owned by a leader that answered this pass",
            &f.slots_served,
        ),
        (
            "cluster_zone_loss_safe",
            "1 when losing any single zone leaves a majority of leaders and every shard an in-sync follower elsewhere",
            &f.zone_loss_safe,
        ),
        (
            "cluster_reshard_slots_to_move",
            "Slots the current or last reshard had to move",
            &f.reshard_slots_to_move,
        ),
        (
            "cluster_reshard_slots_moved",
            "Slots the current or last reshard has moved",
            &f.reshard_slots_moved,
        ),
        (
            "cluster_reshard_keys_moved",
            "Keys the current or last reshard has moved",
            &f.reshard_keys_moved,
        ),
    ];
    for (name, help, fam) in per_cluster {
        r.register(name, help, fam.clone());
    }
    r.register_with_unit(
        "cluster_recovery_started_timestamp",
        "When the last recovery (Degraded=True) began, Unix time; seconds since: time() - this",
        Unit::Seconds,
        f.recovery_started.clone(),
    );
    r.register_with_unit(
        "cluster_recovery_ended_timestamp",
        "When the last recovery (Degraded=True) ended, Unix time; seconds since: time() - this",
        Unit::Seconds,
        f.recovery_ended.clone(),
    );
    r.register_with_unit(
        "cluster_certificate_expiry_timestamp",
        "When the TLS Secret's certificate (the first in tls.crt) expires, Unix time; absent without spec.tls",
        Unit::Seconds,
        f.certificate_expiry.clone(),
    );
    r.register(
        "cluster_leaders",
        "Serving leaders per zone (zones holding members; 0 for a zone without a leader)",
        f.leaders.clone(),
    );
    r.register(
        "cluster_failovers",
        "Shard leader changes: kind graceful, force, takeover or stalled_election (a TAKEOVER of a shard's only follower after its election was denied) for the operator's verified CLUSTER FAILOVER commands, automatic for changes it did not command (Redis's own election, the member's preStop handover)",
        f.failovers.clone(),
    );
    r.register(
        "cluster_condition",
        "Status of each condition type (1 True, 0 False)",
        f.condition.clone(),
    );
    r.register(
        "cluster_problems",
        "Problems found this pass, by reason (DataLoss, QuorumLost, DataUnavailable, ...)",
        f.problems.clone(),
    );
    r.register_with_unit(
        "member_used_memory",
        "used_memory less mem_not_counted_for_evict (what maxmemory limits), from INFO memory",
        Unit::Bytes,
        f.member_used_memory.clone(),
    );
    r.register_with_unit(
        "member_maxmemory",
        "maxmemory (0: unlimited), from INFO memory",
        Unit::Bytes,
        f.member_maxmemory.clone(),
    );
    r.register(
        "member_connected_clients",
        "connected_clients, from INFO clients",
        f.member_clients.clone(),
    );
    r.register_with_unit(
        "member_replication_lag",
        "A follower's lag behind its leader: the leader's master_repl_offset minus the follower's slave_repl_offset",
        Unit::Bytes,
        f.member_lag.clone(),
    );
    r.register(
        "member_is_leader",
        "1 when the member's Redis reports itself a master, 0 for a replica",
        f.member_is_leader.clone(),
    );
}
