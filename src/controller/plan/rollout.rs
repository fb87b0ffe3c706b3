//! Rollout: members built from an older revision are replaced one at a time, one shard at a
//! time, and runtime-settable config is applied live. Only ever asked for a step when the
//! cluster is healthy (every slot served, every member present and in sync, no open slots, no
//! zone missing): recovery always comes first, and a rollout pauses by itself while anything
//! is wrong and resumes when it is whole again.
//!
//! Inside a shard: outdated followers first (the replacement reuses the member's volume on the
//! same node and resyncs), then a graceful `CLUSTER FAILOVER` to an updated, in-sync follower,
//! then the old leader is replaced and rejoins as a follower. Nothing is remembered between
//! steps: the shard in progress is the lowest-index shard with an outdated member, which is
//! what an operator restarted mid-rollout sees too.

use std::collections::BTreeMap;

use super::health::in_sync;
use super::recovery::shard_leader;
use super::{Action, FailoverKind, Plan};
use crate::controller::observe::Observed;
use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::addr_of;
use crate::controller::observe::revision::{needs_live_config, outdated};

/// Where the rollout stands, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Live members running the current revision.
    pub updated: usize,
    /// Members wanted.
    pub desired: usize,
    /// `RollingUpdate`, `RolloutPaused`, `RolloutWaiting`, `RolloutBlocked` or `OnDelete`;
    /// `None` when every member is current.
    pub reason: Option<&'static str>,
    /// In words.
    pub message: String,
}

impl Rollout {
    /// Whether the rollout is moving (as opposed to done, paused, waiting or blocked).
    pub fn active(&self) -> bool {
        self.reason == Some("RollingUpdate")
    }
}

/// Live members whose revision is not the spec's.
fn outdated_members(obs: &Observed) -> Vec<&Member> {
    obs.live().filter(|m| outdated(m, &obs.target)).collect()
}

/// Whether a rolling update is under way and allowed to move: the members planner then
/// leaves leadership alone on members about to be replaced.
pub fn rolling(obs: &Observed) -> bool {
    obs.target.rolling && !obs.target.paused && !outdated_members(obs).is_empty()
}

/// Applies runtime-settable config to every up-to-date member that answers and lacks it.
/// Not disruptive, so it needs no health gate.
pub fn live_config(obs: &Observed) -> Option<Plan> {
    let pending: Vec<(String, std::net::SocketAddr, i32)> = obs
        .live()
        .filter(|m| !outdated(m, &obs.target) && needs_live_config(m, &obs.target))
        .filter(|m| obs.view_of(m).is_some())
        .filter_map(|m| Some((m.name().to_string(), addr_of(m)?, m.restart_count())))
        .collect();
    if pending.is_empty() {
        return None;
    }
    let keys: Vec<&str> = obs.target.live.keys().map(String::as_str).collect();
    let n = pending.len();
    Some(Plan::step(
        Action::ApplyConfig {
            members: pending,
            config: obs.target.live.clone(),
        },
        "ApplyingConfig",
        format!(
            "applying {} live on {n} member(s) (CONFIG SET, no restart)",
            if keys.is_empty() {
                "the config".to_string()
            } else {
                keys.join(", ")
            }
        ),
    ))
}

/// The rollout's state and, when `unhealthy` is `None` (the cluster is whole), its next step.
pub fn plan(obs: &Observed, unhealthy: Option<&str>) -> (Option<Plan>, Rollout) {
    let outdated = outdated_members(obs);
    let desired = obs.shape.members();
    let live = obs.live().count();
    let mut status = Rollout {
        updated: live - outdated.len(),
        desired,
        reason: None,
        message: String::new(),
    };
    if outdated.is_empty() {
        return (None, status);
    }
    let names: Vec<&str> = outdated.iter().map(|m| m.name()).collect();
    let (reason, message) = if !obs.target.rolling {
        (
            "OnDelete",
            format!(
                "{} member(s) run an older revision and are replaced when their pods are deleted (updateStrategy OnDelete): {}",
                names.len(),
                names.join(", ")
            ),
        )
    } else if obs.target.paused {
        (
            "RolloutPaused",
            format!(
                "rolling update paused (updateStrategy.paused) with {} member(s) outdated",
                names.len()
            ),
        )
    } else if let Some(why) = unhealthy {
        (
            "RolloutWaiting",
            format!("rolling update waits until the cluster is healthy again: {why}"),
        )
    } else {
        let step = next_step(obs, &outdated);
        status.reason = Some(step.reason);
        status.message = step.message.clone();
        let step = step.action.is_change().then_some(step);
        return (step, status);
    };
    status.reason = Some(reason);
    status.message = message;
    (None, status)
}

/// The next rolling step in the lowest-index shard with an outdated member.
fn next_step(obs: &Observed, outdated: &[&Member]) -> Plan {
    let Some(shard) = outdated.iter().map(|m| m.shard).min() else {
        return Plan::wait("RollingUpdate", "nothing outdated");
    };
    let Some(leader) = shard_leader(obs, shard) else {
        return Plan::wait(
            "RolloutWaiting",
            format!("shard {shard} has no serving leader"),
        );
    };
    let is_leader = |m: &Member| obs.view_of(m).is_some_and(|v| v.id() == leader.id());
    let mine: Vec<&&Member> = outdated.iter().filter(|m| m.shard == shard).collect();
    let done = obs.live().count() - outdated.len();
    let of = obs.shape.members();
    if let Some(f) = mine.iter().find(|m| !is_leader(m)) {
        return Plan::step(
            Action::Restart(vec![(
                f.name().to_string(),
                format!("rolling update of shard {shard}: follower first ({done}/{of} updated)"),
            )]),
            "RollingUpdate",
            format!(
                "shard {shard}: replacing follower {} ({done}/{of} members updated)",
                f.name()
            ),
        );
    }
    let Some(old) = mine.first() else {
        return Plan::wait("RollingUpdate", "nothing outdated");
    };
    // Hand over to an updated, in-sync follower, preferring one in the zone with the fewest
    // leaders so the spread is kept (or restored by the members planner afterwards).
    let leaders_in = leader_zones(obs);
    let best = obs
        .live()
        .filter(|m| m.shard == shard && !is_leader(m) && !mine.iter().any(|o| o.name() == m.name()))
        .filter_map(|m| Some((m, obs.view_of(m)?)))
        .filter(|(_, v)| in_sync(v, leader))
        .min_by_key(|(m, v)| {
            let zone = m.node().map_or("", |n| obs.zone_of(n));
            (
                leaders_in.get(zone).copied().unwrap_or(0),
                std::cmp::Reverse(v.replication.master_repl_offset),
            )
        });
    if let Some((m, v)) = best {
        return Plan::step(
            Action::Failover {
                shard,
                to: v.id().clone(),
                kind: FailoverKind::Graceful,
                reason: format!(
                    "rolling update: leader {} hands over to updated follower {} before it restarts",
                    old.name(),
                    m.name()
                ),
            },
            "RollingUpdate",
            format!(
                "shard {shard}: handing over from {} to {} ({done}/{of} members updated)",
                old.name(),
                m.name()
            ),
        );
    }
    if obs.shape.followers > 0 {
        return Plan::wait(
            "RolloutWaiting",
            format!("shard {shard}: no updated follower in sync to hand over to yet"),
        );
    }
    if !obs.shape.storage {
        return Plan::wait(
            "RolloutBlocked",
            format!(
                "shard {shard} has no follower and no volume: restarting its leader {} would lose its data; set followersPerLeader ≥ 1 or delete the pod yourself to accept it",
                old.name()
            ),
        );
    }
    Plan::step(
        Action::Restart(vec![(
            old.name().to_string(),
            format!(
                "rolling update of shard {shard}: no follower to hand over to; its volume keeps the data, its slots pause while it restarts"
            ),
        )]),
        "RollingUpdate",
        format!(
            "shard {shard}: restarting leader {} (no follower) ({done}/{of} members updated)",
            old.name()
        ),
    )
}

/// Serving leaders per zone.
fn leader_zones(obs: &Observed) -> BTreeMap<&str, usize> {
    let mut out = BTreeMap::new();
    for m in obs.live() {
        if obs.view_of(m).is_some_and(|v| v.is_serving_master()) {
            let zone = m.node().map_or("", |n| obs.zone_of(n));
            *out.entry(zone).or_insert(0) += 1;
        }
    }
    out
}
