//! A reconcile pass's view as metric values: the one place the metrics read the controller's
//! types (the facts, the plan, the executed step, the built status, the RedisCluster watch).
//! The registry itself ([`super::registry`]) knows none of them, so the controller's context
//! can hold it without an import circle.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::watcher;

use super::cluster::{self, ClusterSample};
use super::member::{self, MemberSample};
use super::registry::{ClusterLabels, Metrics};
use crate::controller::act::Executed;
use crate::controller::error::Error;
use crate::controller::observe::Observed;
use crate::controller::plan::facts::Facts;
use crate::controller::plan::{Action, FailoverKind, Plan, Problem};
use crate::controller::status::Desired;
use crate::crd::{RedisCluster, RedisClusterStatus};

impl Metrics {
    /// Records one pass over `rc`: the step and its outcome, the cluster's and its members'
    /// values. Called once per pass, after the status is built.
    pub fn record_pass(
        &self,
        rc: &RedisCluster,
        facts: &Facts<'_>,
        plan: &Plan,
        executed: &Executed,
        status: &RedisClusterStatus,
        desired: &[Desired],
    ) {
        let failed = match executed {
            Executed::Failed { reason, .. } => Some(*reason),
            _ => None,
        };
        self.record_step(action_kind(&plan.action), outcome(executed), failed);
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        self.record_cluster(
            &key_of(rc),
            &cluster_sample(facts, plan, status, desired),
            &member_samples(facts.obs),
            commanded_failovers(&plan.action, executed),
            recorded_degraded(rc),
            now,
        );
    }

    /// Times one reconcile that acted (or tried to). A namespace being deleted is no error
    /// (the reconcile ends quietly).
    pub fn record_reconcile_result<T>(&self, took: Duration, result: &Result<T, Error>) {
        let error = result
            .as_ref()
            .err()
            .filter(|e| !e.is_namespace_terminating())
            .map(|e| e.category());
        self.record_reconcile(took, error);
    }

    /// Follows the RedisCluster watch: only clusters it holds are recorded; a deleted
    /// cluster's series go at once; after a re-list (the watch restarted), those of clusters it
    /// no longer returns go too.
    pub fn cluster_event(&self, event: &watcher::Event<RedisCluster>) {
        match event {
            watcher::Event::Delete(rc) => self.forget(&key_of(rc)),
            watcher::Event::Init => self.relist_started(),
            watcher::Event::InitApply(rc) | watcher::Event::Apply(rc) => self.watched(key_of(rc)),
            watcher::Event::InitDone => self.relist_done(),
        }
    }
}

/// The labels of a cluster's series.
pub fn key_of(rc: &RedisCluster) -> ClusterLabels {
    ClusterLabels {
        namespace: rc.namespace().unwrap_or_default(),
        cluster: rc.name_any(),
    }
}

/// The `Degraded` condition of the status the pass started from: its status and when it last
/// changed (Unix seconds).
fn recorded_degraded(rc: &RedisCluster) -> Option<(bool, f64)> {
    let c = rc
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == crate::crd::conditions::DEGRADED)?;
    Some((
        c.status == "True",
        c.last_transition_time.0.as_millisecond() as f64 / 1000.0,
    ))
}

/// The `kind` label of an action: its variant, in snake case.
pub fn action_kind(action: &Action) -> &'static str {
    match action {
        Action::Wait => "wait",
        Action::CreateAuthSecret => "create_auth_secret",
        Action::CreateAuthState(_) => "create_auth_state",
        Action::SetPasswords(_) => "set_passwords",
        Action::SetMasterauth { .. } => "set_masterauth",
        Action::RecordRotation { .. } => "record_rotation",
        Action::ForgetPreviousPassword => "forget_previous_password",
        Action::CreateMembers(_) => "create_members",
        Action::DeletePods(_) => "delete_pods",
        Action::Restart(_) => "restart",
        Action::ApplyConfig { .. } => "apply_config",
        Action::ReloadTls { .. } => "reload_tls",
        Action::ResumeAof(_) => "resume_aof",
        Action::DeleteClaims(_) => "delete_claims",
        Action::Failover { .. } => "failover",
        Action::StalledElections(_) => "stalled_elections",
        Action::Forget(_) => "forget",
        Action::ReleaseSlots(_) => "release_slots",
        Action::Meet(_) => "meet",
        Action::AddSlots(_) => "add_slots",
        Action::Replicate(_) => "replicate",
        Action::FixOpenSlots => "fix_open_slots",
        Action::Reshard { .. } => "reshard",
        Action::RecordIdentities(_) => "record_identities",
        Action::MarkDrained { .. } => "mark_drained",
        Action::ClearDrained(_) => "clear_drained",
    }
}

/// The `outcome` label of what a step did.
pub fn outcome(executed: &Executed) -> &'static str {
    match executed {
        Executed::Applied(_) | Executed::Resharded { .. } => "succeeded",
        Executed::Failed { .. } => "failed",
        // Refused spec, unsatisfiable placement: the action was not attempted.
        Executed::Nothing => "skipped",
    }
}

/// The cluster's sample of a pass.
pub fn cluster_sample(
    facts: &Facts<'_>,
    plan: &Plan,
    status: &RedisClusterStatus,
    desired: &[Desired],
) -> ClusterSample {
    let obs = facts.obs;
    let live: Vec<_> = obs.live().collect();
    let leaders = (0..obs.shape.leaders)
        .filter_map(|s| facts.leader(s).map(|v| (s, v.id().as_str().to_string())))
        .collect();
    let slots_served = obs
        .view
        .nodes
        .iter()
        .filter(|n| n.is_serving_master())
        .flat_map(|n| n.slots().iter())
        .map(|r| i64::from(r.end) - i64::from(r.start) + 1)
        .sum();
    ClusterSample {
        members_desired: count(obs.shape.members()),
        members_ready: count(live.iter().filter(|m| m.ready()).count()),
        members_updated: count(live.len().saturating_sub(facts.outdated.len())),
        slots_served,
        leaders_per_zone: cluster::leaders_per_zone(&status.shards),
        zone_loss_safe: status.zone_loss_safe,
        reshard: status.reshard.as_ref().map(|r| {
            (
                i64::from(r.slots_to_move),
                i64::from(r.slots_moved),
                r.keys_moved,
            )
        }),
        conditions: condition_statuses(desired),
        problems: problem_counts(&plan.problems),
        leaders,
        certificate_expiry: obs.certs.secret.as_ref().map(|c| c.not_after.as_second()),
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Every member that answered this pass.
pub fn member_samples(obs: &Observed) -> Vec<MemberSample> {
    obs.view
        .nodes
        .iter()
        .filter_map(|n| {
            let m = obs.member_at(n.addr)?;
            Some(member::sample(m.shard, m.member, m.name(), n, &obs.view))
        })
        .collect()
}

/// The status of each condition type the pass set.
pub fn condition_statuses(desired: &[Desired]) -> Vec<(&'static str, bool)> {
    cluster::CONDITION_TYPES
        .iter()
        .filter_map(|t| {
            desired
                .iter()
                .find(|d| d.type_ == *t)
                .map(|d| (*t, d.status))
        })
        .collect()
}

/// How many problems of each reason.
pub fn problem_counts(problems: &[Problem]) -> BTreeMap<&'static str, i64> {
    let mut out = BTreeMap::new();
    for p in problems {
        *out.entry(p.reason).or_default() += 1;
    }
    out
}

/// The failovers the operator commanded and verified this pass: each one's kind label, shard
/// and promoted node id. Of stalled elections promoted side by side, none counts when one
/// failed (the step failed): the others then count as `automatic` when their leaders show.
pub fn commanded_failovers(
    action: &Action,
    executed: &Executed,
) -> Vec<(&'static str, usize, String)> {
    if !matches!(executed, Executed::Applied(_)) {
        return Vec::new();
    }
    match action {
        Action::Failover {
            shard, to, kind, ..
        } => vec![(kind_label(*kind), *shard, to.as_str().to_string())],
        Action::StalledElections(promotions) => promotions
            .iter()
            .map(|p| {
                (
                    kind_label(FailoverKind::StalledElection),
                    p.shard,
                    p.to.as_str().to_string(),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The `kind` label of a failover.
fn kind_label(kind: FailoverKind) -> &'static str {
    match kind {
        FailoverKind::Graceful => "graceful",
        FailoverKind::Force => "force",
        FailoverKind::Takeover => "takeover",
        FailoverKind::StalledElection => "stalled_election",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::plan::Promotion;
    use crate::crd::conditions;
    use crate::redis::ids::NodeId;

    #[test]
    fn conditions_in_fixed_order_and_problems_counted_by_reason() {
        let desired = vec![
            Desired::new(conditions::DEGRADED, true, "DataLoss", "x"),
            Desired::new(conditions::READY, false, "DataLoss", "x"),
        ];
        assert_eq!(
            condition_statuses(&desired),
            vec![(conditions::READY, false), (conditions::DEGRADED, true)]
        );
        let problems = vec![
            Problem::new("DataLoss", "a"),
            Problem::new("MemberMissing", "b"),
            Problem::new("DataLoss", "c"),
        ];
        assert_eq!(
            problem_counts(&problems),
            BTreeMap::from([("DataLoss", 2), ("MemberMissing", 1)])
        );
    }

    fn id(c: char) -> NodeId {
        c.to_string().repeat(40).parse().unwrap()
    }

    #[test]
    fn a_failover_counts_by_its_kind_only_once_verified() {
        let failed = Executed::Failed {
            reason: "FailoverFailed",
            message: String::new(),
            transient: true,
            retry_after: std::time::Duration::ZERO,
            error: None,
        };
        for (kind, label) in [
            (FailoverKind::Graceful, "graceful"),
            (FailoverKind::Force, "force"),
            (FailoverKind::Takeover, "takeover"),
            (FailoverKind::StalledElection, "stalled_election"),
        ] {
            let action = Action::Failover {
                shard: 2,
                to: id('a'),
                kind,
                reason: String::new(),
            };
            assert_eq!(
                commanded_failovers(&action, &Executed::Applied("ok".into())),
                vec![(label, 2, "a".repeat(40))]
            );
            assert_eq!(commanded_failovers(&action, &Executed::Nothing), vec![]);
            assert_eq!(commanded_failovers(&action, &failed), vec![]);
        }
        // Stalled elections promoted side by side count one each, and none if the step failed.
        let promotion = |shard, c| Promotion {
            shard,
            to: id(c),
            reason: String::new(),
        };
        let side_by_side = Action::StalledElections(vec![promotion(0, 'a'), promotion(3, 'b')]);
        assert_eq!(
            commanded_failovers(&side_by_side, &Executed::Applied("ok".into())),
            vec![
                ("stalled_election", 0, "a".repeat(40)),
                ("stalled_election", 3, "b".repeat(40))
            ]
        );
        assert_eq!(commanded_failovers(&side_by_side, &failed), vec![]);
        assert_eq!(
            commanded_failovers(&Action::Wait, &Executed::Applied("ok".into())),
            vec![]
        );
    }

    #[test]
    fn action_kinds_and_outcomes_are_fixed_words() {
        assert_eq!(action_kind(&Action::Wait), "wait");
        assert_eq!(action_kind(&Action::FixOpenSlots), "fix_open_slots");
        assert_eq!(outcome(&Executed::Nothing), "skipped");
        assert_eq!(outcome(&Executed::Applied(String::new())), "succeeded");
    }
}
