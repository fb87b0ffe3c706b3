//! Plan: pure decisions from one [`Observed`]. Each concern is a module tried in a fixed order
//! (repair → recovery → loss → members → bootstrap, then live config, scaling and the rolling
//! update only when nothing else is to be done); the first with work decides the one step this
//! reconcile takes. What is wrong right now (the `Degraded` condition) is computed once, from
//! the observation, independently of which step is taken.

pub mod bootstrap;
pub mod health;
pub mod loss;
pub mod members;
pub mod recovery;
pub mod repair;
pub mod rollout;
pub mod scale;

use std::net::SocketAddr;

use redis_scheduler::Placement;

use super::observe::Observed;
use crate::redis::ids::{NodeId, SlotRange};

/// A member to create: where, with which identity and volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    /// Shard index.
    pub shard: usize,
    /// Member ordinal.
    pub member: usize,
    /// Node the placement chose.
    pub node: String,
    /// Its zone.
    pub zone: String,
    /// An existing PVC to reuse (identity and data), or `None` for a new one.
    pub reuse_claim: Option<String>,
    /// Why (for the Event).
    pub reason: String,
}

/// How a failover is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverKind {
    /// `CLUSTER FAILOVER`: the leader is alive and hands over with no write lost.
    Graceful,
    /// `CLUSTER FAILOVER FORCE`: the leader's death is confirmed by Kubernetes and by a
    /// majority of the voting masters.
    Force,
    /// `CLUSTER FAILOVER TAKEOVER`: no majority is left to vote; only with the user's
    /// explicit acceptance ([`loss::ACCEPT_TAKEOVER`]).
    Takeover,
}

/// The one step a reconcile takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to change: the cluster is healthy, or it converges by itself, or it waits on
    /// something outside the operator's reach (the message says what).
    Wait,
    /// Create member Pods (and PVCs).
    CreateMembers(Vec<NewMember>),
    /// Delete member Pods: (pod, why).
    DeletePods(Vec<(String, String)>),
    /// Replace outdated member Pods (rolling update): delete them, so they come back from the
    /// current spec (on their volume's node when they have one): (pod, why).
    Restart(Vec<(String, String)>),
    /// Apply runtime-settable config (`CONFIG SET`) and record it on each Pod:
    /// (pod, address, container restart count).
    ApplyConfig {
        /// Members to apply it to.
        members: Vec<(String, SocketAddr, i32)>,
        /// The settings.
        config: std::collections::BTreeMap<String, String>,
    },
    /// Delete PVCs no member uses any more (retention policy Delete): (claim, why).
    DeleteClaims(Vec<(String, String)>),
    /// Promote `to` (a follower of `shard`).
    Failover {
        /// Shard.
        shard: usize,
        /// The follower to promote.
        to: NodeId,
        /// Graceful or FORCE.
        kind: FailoverKind,
        /// Why, for the Event.
        reason: String,
    },
    /// Forget identities that are gone for good, on every member.
    Forget(Vec<(NodeId, String)>),
    /// Forget leaders lost with their data, releasing their slots to be served empty (only
    /// with the user's explicit acceptance, [`loss::ACCEPT_DATA_LOSS`]).
    ReleaseSlots(Vec<(NodeId, String)>),
    /// Introduce members that do not know each other (or each other's current address).
    Meet,
    /// Assign slot ranges to shard leaders: (leader address, shard, ranges).
    AddSlots(Vec<(SocketAddr, usize, Vec<SlotRange>)>),
    /// Attach followers: (follower address, shard, leader id).
    Replicate(Vec<(SocketAddr, usize, NodeId)>),
    /// Close slots left open by an interrupted migration.
    FixOpenSlots,
    /// Move a batch of slots (scaling): the moves, and how many remain including them.
    Reshard {
        /// This step's moves.
        moves: Vec<crate::redis::ops::distribution::SlotMove>,
        /// Slots still to move before this step.
        remaining: usize,
        /// The number of shards the slots are spread over when done.
        to_leaders: usize,
    },
    /// Record each member's Redis identity on its PVC: (claim, id).
    RecordIdentities(Vec<(String, NodeId)>),
}

impl Action {
    /// Whether the step changes anything.
    pub fn is_change(&self) -> bool {
        !matches!(self, Action::Wait)
    }
}

/// Whether and how the placement constraints can be met.
#[derive(Debug, Clone)]
pub enum PlacementState {
    /// Not computed (the spec was refused first).
    Unknown,
    /// The solver's placement.
    Satisfied(Placement),
    /// Why no placement exists.
    Unsatisfiable(String),
}

/// What one reconcile decided.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The step to take.
    pub action: Action,
    /// CamelCase reason of the step (or of what is awaited).
    pub reason: &'static str,
    /// What the step does or what is awaited, for humans.
    pub message: String,
    /// What is wrong right now; empty when nothing is.
    pub problems: Vec<Problem>,
    /// Every slot served, every member present, answering and in sync, all pods ready.
    pub ready: bool,
    /// Placement.
    pub placement: PlacementState,
    /// PVCs of members that are gone and that no member will use again.
    pub orphaned_claims: Vec<String>,
    /// The spec cannot be carried out as it is: nothing is done about it until it changes
    /// (`Progressing=False` with the reason, a Warning Event once).
    pub refused: bool,
    /// The rolling update's state (members updated, what it does or waits for).
    pub rollout: Option<rollout::Rollout>,
    /// The reshard's state while slots are to move (scaling).
    pub reshard: Option<scale::Reshard>,
}

/// One thing that is wrong, with a CamelCase reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Reason for the Degraded condition when this is the most severe problem.
    pub reason: &'static str,
    /// In words.
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl Plan {
    fn step(action: Action, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            action,
            reason,
            message: message.into(),
            problems: Vec::new(),
            ready: false,
            placement: PlacementState::Unknown,
            orphaned_claims: Vec::new(),
            refused: false,
            rollout: None,
            reshard: None,
        }
    }

    fn wait(reason: &'static str, message: impl Into<String>) -> Self {
        Self::step(Action::Wait, reason, message)
    }
}

/// Decides the next step.
pub fn plan(obs: &Observed) -> Plan {
    let placement = match members::placement(obs) {
        Ok(p) => p,
        Err(reason) => {
            let mut plan = Plan::wait("PlacementUnsatisfiable", reason.clone());
            plan.placement = PlacementState::Unsatisfiable(reason.clone());
            if obs.live().next().is_some() {
                plan.problems
                    .push(Problem::new("PlacementUnsatisfiable", reason));
            }
            return plan;
        }
    };
    let gone = health::gone_identities(obs);
    let mut plan = repair::plan(obs)
        .or_else(|| recovery::plan(obs, &gone))
        .or_else(|| loss::plan(obs, &gone))
        .or_else(|| members::plan(obs, &placement, &gone))
        .unwrap_or_else(|| bootstrap::plan(obs, &placement));
    // Losses only a human can accept come first: they are the Degraded reason.
    let mut all = loss::problems(obs, &gone, &obs.name);
    all.append(&mut plan.problems);
    all.extend(problems(obs, &gone, &loss::covered(obs, &gone)));
    plan.problems = all;
    plan.orphaned_claims = members::orphaned_claims(obs);
    // A zone without ready nodes is worth saying (Degraded) but does not make a cluster that
    // is whole again in the surviving zones un-ready.
    plan.ready = plan.ready && plan.problems.iter().all(|p| p.reason == "ZoneUnavailable");
    if plan.action == Action::Wait {
        // Bookkeeping is the lowest priority: only when nothing else is to be done.
        let unrecorded = members::unrecorded_identities(obs);
        if !unrecorded.is_empty() {
            plan.action = Action::RecordIdentities(unrecorded);
        }
    }
    if plan.action == Action::Wait
        && let Some(live) = rollout::live_config(obs)
    {
        plan.action = live.action;
        plan.reason = live.reason;
        plan.message = live.message;
    }
    // The rollout moves only when nothing else is to be done and nothing is wrong (a zone
    // down included): recovery always comes first.
    let unhealthy = if !plan.ready {
        Some(plan.message.clone())
    } else if let Some(p) = plan.problems.first() {
        Some(p.message.clone())
    } else if plan.action != Action::Wait {
        Some(plan.message.clone())
    } else {
        None
    };
    // Scaling first (an explicit change of shape), then the rolling update.
    let (scale_step, reshard) = scale::plan(obs, unhealthy.as_deref());
    plan.reshard = reshard;
    let (step, state) = if scale_step.is_some() {
        (
            scale_step,
            rollout::plan(obs, Some("slots are being moved")).1,
        )
    } else {
        rollout::plan(obs, unhealthy.as_deref())
    };
    if let Some(mut step) = step {
        plan.action = step.action;
        plan.reason = step.reason;
        plan.message = step.message;
        plan.refused = step.refused;
        plan.problems.append(&mut step.problems);
    }
    plan.rollout = Some(state);
    if let (Action::Wait, true) = (&plan.action, plan.ready) {
        let orphans = members::deletable_claims(obs, &plan.orphaned_claims);
        if !orphans.is_empty() {
            plan.action = Action::DeleteClaims(orphans);
            plan.ready = false;
            plan.reason = "ReleasingVolumes";
            plan.message =
                "deleting PVCs of members that were re-placed (pvcRetentionPolicy Delete)".into();
        }
    }
    plan.placement = PlacementState::Satisfied(placement);
    plan
}

/// Zones that hold (or held) members of this cluster and have no ready node now.
fn unavailable_zones(obs: &Observed) -> Vec<String> {
    let mut zones: Vec<String> = obs
        .members
        .iter()
        .filter_map(|m| m.node())
        .chain(obs.claims.iter().filter_map(|c| c.node.as_deref()))
        .map(|n| obs.zone_of(n).to_string())
        .filter(|z| !z.is_empty())
        .filter(|z| !obs.nodes.values().any(|n| n.ready && &n.zone == z))
        .collect();
    zones.sort();
    zones.dedup();
    zones
}

/// Everything that is wrong now, computed from the observation alone.
fn problems(obs: &Observed, gone: &[health::Gone], covered: &[NodeId]) -> Vec<Problem> {
    let mut out = Vec::new();
    // A cluster still being built is not degraded; one that served slots (or whose volumes
    // carry identities) and lost something is.
    let formed =
        !obs.view.voting_masters().is_empty() || obs.claims.iter().any(|c| c.node_id.is_some());
    if !formed {
        return out;
    }
    let live: Vec<_> = obs.live().collect();
    let want = obs.shape.members();
    if live.len() < want && !live.is_empty() {
        out.push(Problem::new(
            "MembersMissing",
            format!("{} of {want} members exist", live.len()),
        ));
    }
    for zone in unavailable_zones(obs) {
        out.push(Problem::new(
            "ZoneUnavailable",
            format!("zone {zone} has no ready node; its members are re-placed in the other zones"),
        ));
    }
    for g in gone.iter().filter(|g| !covered.contains(&g.id)) {
        if g.slots > 0 {
            out.push(Problem::new(
                "LeaderLost",
                format!(
                    "leader {} of {} slots is not answering: {}",
                    g.id.short(),
                    g.slots,
                    g.describe()
                ),
            ));
        } else {
            out.push(Problem::new(
                "StaleIdentity",
                format!("gone member still listed by the cluster: {}", g.describe()),
            ));
        }
    }
    let silent: Vec<&str> = live
        .iter()
        .filter(|m| obs.view_of(m).is_none())
        .map(|m| m.name())
        .collect();
    if !silent.is_empty() {
        out.push(Problem::new(
            "MembersNotAnswering",
            format!("not answering: {}", silent.join(", ")),
        ));
    }
    let open = obs.view.open_slots();
    if !open.is_empty() {
        out.push(Problem::new(
            "OpenSlots",
            format!("{} slot(s) left migrating or importing", open.len()),
        ));
    }
    out
}

#[cfg(test)]
mod rollout_tests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod tests;
