//! Plan: pure decisions from one observation. The shared facts are computed once
//! ([`facts::Facts`]); then each concern of [`CONCERNS`] is asked in priority order, behind its
//! gate, and the first with work decides the one step this reconcile takes. Nothing overrides
//! that decision afterwards. What is wrong right now (the `Degraded` condition) and whether
//! the cluster is Ready come from the facts, whichever step is taken.

pub mod bootstrap;
pub mod certs;
pub mod config;
pub mod drain;
pub mod facts;
pub mod loss;
pub mod members;
pub mod passwords;
pub mod recovery;
pub mod repair;
pub mod rollout;
pub mod scale;
pub mod spec;
pub mod step;
pub mod surge;
pub mod volumes;

use redis_scheduler::Placement;

use crate::controller::observe::Observed;
use facts::Facts;
pub use step::{Action, FailoverKind, NewMember, PasswordChange, Problem, Promotion, Step};

/// When a concern may be asked at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Always.
    Always,
    /// Once a placement exists (every concern that creates, moves or judges members).
    Placed,
    /// Once the cluster has served slots (a cluster still being built is the bootstrap's).
    Formed,
    /// The cluster is Ready (a zone may be down).
    Ready,
    /// A healthy cluster: Ready and nothing wrong, a zone down included.
    Healthy,
    /// [`Gate::Healthy`], or healthy but for gossip about a new follower's role
    /// ([`facts::health::Health::settling`]): moving a slot needs every member to agree on
    /// the slots and the leaders, which they do; a follower's role reaches every master
    /// within node-timeout/2 by its own pings, before a failover could need their votes.
    /// Scale-out would otherwise wait up to node-timeout/2 before the first slot moves, and a
    /// rollout as long after every handover and every new member (its own handover waits
    /// for what the vote needs: a majority of the masters knowing the follower,
    /// [`facts::promotion::follower_to_promote`]).
    Movable,
}

/// One concern: its name, its gate, whether its step keeps a Ready cluster Ready (work on a
/// whole cluster, as opposed to healing), and the decision.
pub struct Concern {
    /// For logs and the controller map (docs/architecture.md).
    pub name: &'static str,
    /// When it may be asked.
    pub gate: Gate,
    /// Its step leaves `Ready` as the facts say (else a pass it decides is not Ready).
    pub keeps_ready: bool,
    /// The decision.
    pub decide: fn(&Facts<'_>) -> Option<Step>,
}

/// The concerns, in priority order: the first with work decides.
#[rustfmt::skip]
pub const CONCERNS: &[Concern] = &[
    Concern { name: "spec", gate: Gate::Always, keeps_ready: false, decide: spec::validate },
    Concern { name: "auth", gate: Gate::Always, keeps_ready: false, decide: spec::auth_secret },
    Concern { name: "password", gate: Gate::Always, keeps_ready: false, decide: spec::auth_mismatch },
    Concern { name: "auth-state", gate: Gate::Always, keeps_ready: false, decide: spec::auth_state },
    Concern { name: "repair", gate: Gate::Placed, keeps_ready: false, decide: repair::step },
    Concern { name: "recovery", gate: Gate::Formed, keeps_ready: false, decide: recovery::step },
    Concern { name: "loss", gate: Gate::Placed, keeps_ready: false, decide: loss::step },
    Concern { name: "drain", gate: Gate::Placed, keeps_ready: true, decide: drain::step },
    Concern { name: "surge", gate: Gate::Placed, keeps_ready: false, decide: surge::drop_unwanted },
    Concern { name: "members", gate: Gate::Placed, keeps_ready: false, decide: members::step },
    Concern { name: "bootstrap", gate: Gate::Placed, keeps_ready: false, decide: bootstrap::step },
    Concern { name: "certificates", gate: Gate::Placed, keeps_ready: true, decide: certs::step },
    Concern { name: "passwords", gate: Gate::Placed, keeps_ready: true, decide: passwords::step },
    Concern { name: "identities", gate: Gate::Placed, keeps_ready: true, decide: volumes::record_identities },
    Concern { name: "config", gate: Gate::Placed, keeps_ready: true, decide: config::step },
    Concern { name: "scale", gate: Gate::Movable, keeps_ready: true, decide: scale::step },
    Concern { name: "rollout", gate: Gate::Movable, keeps_ready: true, decide: rollout::step },
    Concern { name: "volumes", gate: Gate::Ready, keeps_ready: false, decide: volumes::delete_orphans },
    Concern { name: "scale-in-grace", gate: Gate::Ready, keeps_ready: true, decide: drain::wait },
];

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
    /// The concern that decided (`None` when none had work).
    pub concern: Option<&'static str>,
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
    /// `ready`, or every slot served with the asked redundancy while a scale-out's new shards
    /// join ([`facts::health::Health::serving`]): what the `Ready` condition says.
    pub serving: bool,
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
    /// How soon a period the plan waits on is over (a scale-in grace period): the pass that
    /// acts on it must run then.
    pub wake_in: Option<std::time::Duration>,
}

impl Plan {
    /// Whether the spec was refused as invalid, its TLS Secret included (nothing is created,
    /// changed or deleted).
    pub fn invalid_spec(&self) -> bool {
        self.refused && [spec::INVALID_SPEC, spec::TLS_SECRET_INVALID].contains(&self.reason)
    }

    /// Whether the support objects (ConfigMap, Services, PDB) are applied before the step:
    /// not for a spec that was refused, and not while no placement exists.
    pub fn applies_support_objects(&self) -> bool {
        !self.refused
            && !matches!(self.placement, PlacementState::Unsatisfiable(_))
            && self.action != Action::CreateAuthSecret
            && !matches!(self.action, Action::CreateAuthState(_))
    }

    fn from_step(step: Step, concern: Option<&'static str>) -> Self {
        Self {
            concern,
            action: step.action,
            reason: step.reason,
            message: step.message,
            problems: step.problem.into_iter().collect(),
            ready: false,
            serving: false,
            placement: PlacementState::Unknown,
            orphaned_claims: Vec::new(),
            refused: step.refused,
            rollout: None,
            reshard: None,
            wake_in: None,
        }
    }
}

/// Decides the next step from an observation.
pub fn plan(obs: &Observed) -> Plan {
    decide(&Facts::of(obs))
}

/// Whether a concern's gate is open, and if not, why (for the states that report it).
fn gate_open(gate: Gate, f: &Facts<'_>) -> bool {
    match gate {
        Gate::Always => true,
        Gate::Placed => f.placement.is_ok(),
        Gate::Formed => f.placement.is_ok() && !f.obs.view.voting_masters().is_empty(),
        Gate::Ready => f.placement.is_ok() && f.health.ready,
        Gate::Healthy => f.placement.is_ok() && unhealthy(f).is_none(),
        Gate::Movable => {
            f.placement.is_ok()
                && (f.health.ready || f.health.settling)
                && f.problems(false).is_empty()
        }
    }
}

/// Why the cluster is not healthy enough for planned changes (scale, rollout), if it is not.
fn unhealthy(f: &Facts<'_>) -> Option<String> {
    if !f.health.ready {
        Some(f.health.message.clone())
    } else {
        f.problems(false).first().map(|p| p.message.clone())
    }
}

/// Asks the concerns in order; the first with work decides.
pub fn decide(f: &Facts<'_>) -> Plan {
    let chosen = CONCERNS
        .iter()
        .enumerate()
        .filter(|(_, c)| gate_open(c.gate, f))
        .find_map(|(i, c)| Some((i, c, (c.decide)(f)?)));
    if let Some((_, c, step)) = &chosen
        && matches!(c.name, "spec" | "auth" | "password" | "auth-state")
    {
        return Plan::from_step(step.clone(), Some(c.name));
    }
    let placement = match &f.placement {
        Ok(p) => p.clone(),
        Err(reason) => return unsatisfiable(f, reason),
    };
    let bootstrap_at = CONCERNS.iter().position(|c| c.name == "bootstrap");
    let mut plan = match &chosen {
        Some((_, c, step)) => Plan::from_step(step.clone(), Some(c.name)),
        None => Plan::from_step(
            Step::new(Action::Wait, f.health.waiting, f.health.message.clone()),
            None,
        ),
    };
    // The formation's block is a problem once the bootstrap's turn came (an earlier concern
    // with work may be what resolves it).
    let reached_bootstrap = chosen
        .as_ref()
        .is_none_or(|(i, _, _)| Some(*i) >= bootstrap_at);
    let problems = f.problems(reached_bootstrap);
    let blocked = blocked(f, &chosen, &problems);
    plan.problems = problems.into_iter().chain(plan.problems).collect();
    plan.ready = f.health.ready && chosen.as_ref().is_none_or(|(_, c, _)| c.keeps_ready);
    plan.serving = plan.ready
        || (f.health.serving && plan.problems.iter().all(|p| p.reason == "ZoneUnavailable"));
    // Slots moving now are not blocked, even while the cluster is settling (`Gate::Movable`).
    let scaling = matches!(&chosen, Some((_, c, _)) if c.name == "scale");
    plan.reshard = scale::state(f, blocked.as_deref().filter(|_| !scaling));
    // Nor is a rollout while the cluster only settles: it moves on then (`Gate::Movable`).
    let rollout_blocked = match &chosen {
        Some((_, c, _)) if c.name == "scale" => Some("slots are being moved".to_string()),
        _ if gate_open(Gate::Movable, f) => None,
        _ => blocked,
    };
    plan.rollout = Some(rollout::state(f, rollout_blocked.as_deref()));
    plan.orphaned_claims = f.orphaned_claims.clone();
    plan.wake_in = drain::next_deadline(f);
    plan.placement = PlacementState::Satisfied(placement);
    plan
}

/// Why scale and the rollout do not move in this pass, for their states: the cluster is not
/// Ready (what it waits for, or what an earlier concern does about it), something is wrong,
/// or an earlier concern has work.
fn blocked(
    f: &Facts<'_>,
    chosen: &Option<(usize, &Concern, Step)>,
    problems: &[Problem],
) -> Option<String> {
    let earlier = chosen
        .as_ref()
        .filter(|(_, c, _)| !matches!(c.name, "scale" | "rollout" | "volumes" | "scale-in-grace"));
    let ready = f.health.ready && earlier.is_none_or(|(_, c, _)| c.keeps_ready);
    let message = earlier.map_or_else(|| f.health.message.clone(), |(_, _, s)| s.message.clone());
    if !ready {
        Some(message)
    } else if let Some(p) = problems.first() {
        Some(p.message.clone())
    } else {
        earlier.map(|_| message)
    }
}

/// No placement exists: nothing is created or moved; a formed cluster says so as a problem.
fn unsatisfiable(f: &Facts<'_>, reason: &str) -> Plan {
    let mut plan = Plan::from_step(
        Step::new(Action::Wait, "PlacementUnsatisfiable", reason),
        None,
    );
    plan.placement = PlacementState::Unsatisfiable(reason.to_string());
    if f.obs.live().next().is_some() {
        plan.problems
            .push(Problem::new("PlacementUnsatisfiable", reason));
    }
    plan
}

#[cfg(test)]
mod tests;
