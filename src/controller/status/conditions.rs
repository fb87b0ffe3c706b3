//! Pure: the conditions (standard shape) and the fields derived from them, and the reshard's
//! progress. Used by [`super::build`], the one place a status is made.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::controller::act::Executed;
use crate::controller::plan::{PlacementState, Plan, Problem};
use crate::crd::{Phase, RedisClusterStatus, ReshardStatus};

/// Condition types (defined with the API, [`crate::crd::conditions`]).
pub use crate::crd::conditions as types;

/// A condition as the reconcile wants it now (transition time is decided against the old one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Condition type.
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Desired {
    /// Shorthand constructor.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// The conditions of a reconcile, from one place: what the plan found and decided, and what
/// its step did. A failed step is a `Degraded=True` condition until a later pass succeeds.
pub fn conditions(plan: &Plan, executed: &Executed) -> Vec<Desired> {
    let ready = if plan.ready {
        Desired::new(
            types::READY,
            true,
            "ClusterReady",
            "all slots served, every follower in sync",
        )
    } else if plan.serving {
        // A planned scale-out: the cluster serves as asked; Reconciling says what moves.
        Desired::new(
            types::READY,
            true,
            "ClusterReady",
            format!(
                "all slots served, every follower of a serving shard in sync; members joining: {}",
                plan.message
            ),
        )
    } else {
        Desired::new(types::READY, false, plan.reason, plan.message.clone())
    };
    let mut out = vec![ready, progressing(plan), degraded(plan, executed)];
    out.extend(placement(plan));
    out
}

/// `PlacementSatisfied`, once the placement was computed.
fn placement(plan: &Plan) -> Option<Desired> {
    match &plan.placement {
        PlacementState::Unknown => None,
        PlacementState::Unsatisfiable(reason) => Some(Desired::new(
            types::PLACEMENT_SATISFIED,
            false,
            "Unsatisfiable",
            reason.clone(),
        )),
        PlacementState::Satisfied(p) if p.zone_loss_safe => Some(Desired::new(
            types::PLACEMENT_SATISFIED,
            true,
            "Satisfied",
            "every shard's members are in distinct zones; losing any one zone leaves a majority of leaders",
        )),
        PlacementState::Satisfied(p) => Some(Desired::new(
            types::PLACEMENT_SATISFIED,
            true,
            "SatisfiedNotZoneLossSafe",
            p.zone_loss_reason.clone(),
        )),
    }
}

/// `Progressing`: False with the reason for a refusal or a placement that cannot be met; a
/// rolling update of a ready cluster says how far it is; otherwise what the step does.
fn progressing(plan: &Plan) -> Desired {
    if plan.refused {
        Desired::new(types::PROGRESSING, false, plan.reason, plan.message.clone())
    } else if matches!(plan.placement, PlacementState::Unsatisfiable(_)) {
        Desired::new(
            types::PROGRESSING,
            false,
            plan.reason,
            "waiting for nodes or a spec change",
        )
    } else if let Some(r) = plan.rollout.as_ref().filter(|r| r.reason.is_some())
        && plan.ready
    {
        // A rolling update of a ready cluster is progress (True) while it moves, and says why
        // when it does not (paused, OnDelete, blocked). While the cluster is not ready, what
        // the operator does about that is the progress shown.
        Desired::new(
            types::PROGRESSING,
            r.active(),
            r.reason.unwrap_or("RollingUpdate"),
            format!("{}/{} members updated: {}", r.updated, r.desired, r.message),
        )
    } else if plan.ready && !plan.action.is_change() && plan.concern.is_some() {
        // A concern with work that waits for something the operator started (a member's
        // mounted TLS files after a reload) says what: the work is not done.
        Desired::new(types::PROGRESSING, true, plan.reason, plan.message.clone())
    } else if plan.ready && !plan.action.is_change() {
        Desired::new(types::PROGRESSING, false, "Idle", "nothing to do")
    } else {
        Desired::new(types::PROGRESSING, true, plan.reason, plan.message.clone())
    }
}

/// `Degraded`: the failed step first, then the plan's problems, most severe first.
fn degraded(plan: &Plan, executed: &Executed) -> Desired {
    let mut problems: Vec<Problem> = Vec::new();
    if let Executed::Failed {
        reason, message, ..
    } = executed
    {
        problems.push(Problem::new(reason, message.clone()));
    }
    problems.extend(plan.problems.iter().cloned());
    match problems.first() {
        Some(first) => Desired::new(
            types::DEGRADED,
            true,
            first.reason,
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None if plan.ready => Desired::new(types::DEGRADED, false, "Healthy", ""),
        None => Desired::new(types::DEGRADED, false, plan.reason, ""),
    }
}

/// The reshard's progress: the total is fixed when it begins (carried over in the previous
/// status while the target is the same), moved = total - still to move, keys add up per batch.
/// The last finished reshard stays as a record until the next one begins.
pub fn reshard_status(
    prev: Option<&ReshardStatus>,
    now: Option<&crate::controller::plan::scale::Reshard>,
    executed: &Executed,
) -> Option<ReshardStatus> {
    let (slots, keys) = match executed {
        Executed::Resharded { slots, keys, .. } => (*slots, *keys),
        _ => (0, 0),
    };
    let Some(now) = now else {
        return prev.map(|p| ReshardStatus {
            slots_moved: p.slots_to_move,
            progress: "100%".into(),
            waiting: None,
            ..p.clone()
        });
    };
    let to_leaders = i32::try_from(now.to_leaders).unwrap_or(i32::MAX);
    let same = prev.filter(|p| p.under_way_to(to_leaders));
    let remaining = i32::try_from(now.remaining.saturating_sub(slots)).unwrap_or(i32::MAX);
    let total = same
        .map_or(0, |p| p.slots_to_move)
        .max(i32::try_from(now.remaining).unwrap_or(i32::MAX));
    let moved = total - remaining;
    let keys_moved = same.map_or(0, |p| p.keys_moved) + i64::try_from(keys).unwrap_or(i64::MAX);
    Some(ReshardStatus {
        to_leaders,
        slots_to_move: total,
        slots_moved: moved,
        keys_moved,
        progress: format!(
            "{}%",
            if total == 0 {
                100
            } else {
                i64::from(moved) * 100 / i64::from(total)
            }
        ),
        waiting: now.blocked.clone(),
    })
}

/// Appends the reshard's progress to a `Progressing=True` condition.
pub fn with_reshard_progress(conditions: &mut [Desired], r: &ReshardStatus) {
    if let Some(p) = conditions
        .iter_mut()
        .find(|d| d.type_ == types::PROGRESSING && d.status)
    {
        p.message = format!(
            "{} ({} done: {}/{} slots, {} keys moved)",
            p.message, r.progress, r.slots_moved, r.slots_to_move, r.keys_moved
        );
    }
}

/// Merges desired conditions into the previous ones, keeping `lastTransitionTime` unless the
/// status flips (so `kubectl describe` shows how long a condition has held).
pub fn merge_conditions(
    old: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_string();
            let last_transition_time = old
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_string(),
                status,
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The phase implied by the conditions.
pub fn phase(desired: &[Desired]) -> Phase {
    let get = |t: &str| desired.iter().find(|d| d.type_ == t);
    let ready = get(types::READY).is_some_and(|d| d.status);
    let degraded = get(types::DEGRADED).is_some_and(|d| d.status);
    let placement_ok = get(types::PLACEMENT_SATISFIED).is_none_or(|d| d.status);
    let ready_reason = get(types::READY)
        .map(|d| d.reason.as_str())
        .unwrap_or_default();
    if ready {
        Phase::Ready
    } else if ready_reason == "InvalidSpec" {
        Phase::Failed
    } else if !placement_ok {
        Phase::Pending
    } else if degraded {
        Phase::Degraded
    } else if ready_reason == "CreatingMembers" {
        Phase::Creating
    } else {
        Phase::Bootstrapping
    }
}

/// Compact zone label for the placement column: the last dash-separated part (`zone-a` → `a`,
/// `us-east-1b` → `1b`).
pub fn short_zone(zone: &str) -> &str {
    zone.rsplit('-').next().unwrap_or(zone)
}

/// True when nothing but timestamps would change.
pub fn same_ignoring_time(a: &RedisClusterStatus, b: &RedisClusterStatus) -> bool {
    let strip = |s: &RedisClusterStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_kept_until_status_flips() {
        let d = [Desired::new(
            types::READY,
            false,
            "Bootstrapping",
            "joining",
        )];
        let first = merge_conditions(&[], &d, Some(1), t(10));
        let again = merge_conditions(&first, &d, Some(2), t(20));
        assert_eq!(again[0].last_transition_time, t(10));
        assert_eq!(again[0].observed_generation, Some(2));
        let flipped = merge_conditions(
            &again,
            &[Desired::new(types::READY, true, "Ready", "ok")],
            Some(2),
            t(30),
        );
        assert_eq!(flipped[0].last_transition_time, t(30));
    }

    #[test]
    fn phase_follows_conditions() {
        let unsat = [
            Desired::new(types::READY, false, "PlacementUnsatisfiable", ""),
            Desired::new(types::PLACEMENT_SATISFIED, false, "Unsatisfiable", ""),
        ];
        assert_eq!(phase(&unsat), Phase::Pending);
        assert_eq!(
            phase(&[Desired::new(types::READY, true, "Ready", "")]),
            Phase::Ready
        );
        assert_eq!(
            phase(&[Desired::new(types::READY, false, "InvalidSpec", "")]),
            Phase::Failed
        );
    }

    #[test]
    fn short_zone_names() {
        assert_eq!(short_zone("zone-a"), "a");
        assert_eq!(short_zone("us-east-1b"), "1b");
        assert_eq!(short_zone("rack7"), "rack7");
    }
}
