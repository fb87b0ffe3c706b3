//! Pure: the two conditions GitOps tools read (the kstatus rules of Flux, Argo CD and kpt):
//! `Reconciling=True` while the operator is still moving the cluster towards its spec, and
//! `Stalled=True` when it cannot without a human. Both False means the spec is reached (with
//! `status.observedGeneration` equal to `metadata.generation`).

use super::conditions::{Desired, types};
use crate::controller::plan::{PlacementState, Plan};

/// `Reconciling` and `Stalled`, from the plan and the conditions already made from it.
pub fn kstatus(plan: &Plan, made: &[Desired]) -> [Desired; 2] {
    if let Some((reason, message)) = stalled(plan) {
        return [
            Desired::new(types::RECONCILING, false, reason, "stalled: see Stalled"),
            Desired::new(types::STALLED, true, reason, message),
        ];
    }
    let not_stalled = Desired::new(types::STALLED, false, "NotStalled", "");
    let Some((reason, message)) = reconciling(plan, made) else {
        return [
            Desired::new(
                types::RECONCILING,
                false,
                "Reconciled",
                "the spec is reached",
            ),
            not_stalled,
        ];
    };
    [
        Desired::new(types::RECONCILING, true, &reason, message),
        not_stalled,
    ]
}

/// What needs a human: a refused spec (InvalidSpec, ScaleInRefused, AuthMismatch, ...), a
/// placement no node set can meet, a rollout that cannot go on safely.
fn stalled(plan: &Plan) -> Option<(&'static str, String)> {
    if plan.refused {
        return Some((plan.reason, plan.message.clone()));
    }
    if let PlacementState::Unsatisfiable(why) = &plan.placement {
        return Some(("PlacementUnsatisfiable", why.clone()));
    }
    plan.rollout
        .as_ref()
        .filter(|r| r.reason == Some("RolloutBlocked"))
        .map(|r| ("RolloutBlocked", r.message.clone()))
}

/// Why the spec is not reached yet, or None when it is: every slot served with the asked
/// redundancy and nothing left to do (no step, no slot to move, no member to update).
fn reconciling(plan: &Plan, made: &[Desired]) -> Option<(String, String)> {
    let progressing = made
        .iter()
        .find(|d| d.type_ == types::PROGRESSING && d.status);
    if let Some(r) = &plan.reshard {
        let message = progressing.map_or_else(
            || format!("{} slots still to move", r.remaining),
            |p| p.message.clone(),
        );
        return Some(("Resharding".to_string(), message));
    }
    // A rolling update moving or waiting for health is the operator's work; paused or
    // OnDelete waits for the user (Current: a pipeline must not hang on it).
    let rolling = plan
        .rollout
        .as_ref()
        .is_some_and(|r| matches!(r.reason, Some("RollingUpdate" | "RolloutWaiting")));
    // A scale-in grace period under way is the operator's work too: the drained shards' Pods
    // are still to be removed when it ends (`wake_in`).
    if plan.ready && !plan.action.is_change() && !rolling && plan.wake_in.is_none() {
        return None;
    }
    Some(match progressing {
        Some(p) => (p.reason.clone(), p.message.clone()),
        None => (plan.reason.to_string(), plan.message.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::plan::Action;
    use crate::controller::plan::rollout::Rollout;
    use crate::controller::plan::scale::Reshard;

    fn plan(ready: bool) -> Plan {
        Plan {
            concern: None,
            action: Action::Wait,
            reason: "ClusterReady",
            message: String::new(),
            problems: Vec::new(),
            ready,
            serving: ready,
            placement: PlacementState::Unknown,
            orphaned_claims: Vec::new(),
            refused: false,
            rollout: None,
            reshard: None,
            wake_in: None,
        }
    }

    fn states(p: &Plan) -> (bool, bool, String) {
        let [r, s] = kstatus(p, &[]);
        (
            r.status,
            s.status,
            if s.status { s.reason } else { r.reason },
        )
    }

    #[test]
    fn a_ready_idle_cluster_is_current() {
        assert_eq!(states(&plan(true)), (false, false, "Reconciled".into()));
    }

    #[test]
    fn recovery_reshard_and_rollout_are_reconciling_even_when_ready() {
        let mut p = plan(false);
        p.reason = "MembersMissing";
        assert_eq!(states(&p), (true, false, "MembersMissing".into()));
        let mut p = plan(true);
        p.reshard = Some(Reshard {
            to_leaders: 5,
            remaining: 1,
            blocked: None,
        });
        assert_eq!(states(&p), (true, false, "Resharding".into()));
        let mut p = plan(true);
        p.rollout = Some(Rollout {
            updated: 2,
            desired: 6,
            reason: Some("RollingUpdate"),
            message: String::new(),
        });
        assert!(states(&p).0);
        p.rollout.as_mut().unwrap().reason = Some("RolloutWaiting");
        assert!(states(&p).0);
        p.rollout.as_mut().unwrap().reason = Some("RolloutPaused");
        assert!(!states(&p).0);
        // OnDelete waits for the user's deletions: the operator has done what it will.
        p.rollout.as_mut().unwrap().reason = Some("OnDelete");
        assert!(!states(&p).0);
        // Drained shards waiting out their scale-in grace period are still to be removed.
        let mut p = plan(true);
        p.reason = "ScaleInGrace";
        p.wake_in = Some(std::time::Duration::from_secs(20));
        assert_eq!(states(&p), (true, false, "ScaleInGrace".into()));
    }

    #[test]
    fn refusals_and_blocks_are_stalled_not_reconciling() {
        let mut p = plan(false);
        p.refused = true;
        p.reason = "ScaleInRefused";
        assert_eq!(states(&p), (false, true, "ScaleInRefused".into()));
        let mut p = plan(false);
        p.placement = PlacementState::Unsatisfiable("2 zones for 3 members".into());
        assert_eq!(states(&p), (false, true, "PlacementUnsatisfiable".into()));
        let mut p = plan(true);
        p.rollout = Some(Rollout {
            updated: 0,
            desired: 3,
            reason: Some("RolloutBlocked"),
            message: "F=0 without storage".into(),
        });
        assert_eq!(states(&p), (false, true, "RolloutBlocked".into()));
    }
}
