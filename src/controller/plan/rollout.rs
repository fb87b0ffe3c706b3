//! Rollout: members built from an older revision are replaced one at a time, one shard at a
//! time. Gate: a healthy cluster (every slot served, every member present and in sync, no open
//! slots, no zone missing): recovery always comes first, and a rollout pauses by itself while
//! anything is wrong and resumes when it is whole again. Gossip about a follower's role still
//! spreading (after a handover, or a new member's) does not hold it (`Gate::Movable`): a
//! follower's restart or replacement needs no vote, and the handover waits for the majority
//! that votes to know its target.
//!
//! Inside a shard: outdated followers first, then a graceful `CLUSTER FAILOVER` to an updated,
//! in-sync follower, then the old leader is replaced as a follower. Each is replaced by a
//! surge member that syncs before it retires (`plan::surge`, `updateStrategy.maxSurge`), or,
//! without room or with `maxSurge: 0`, restarted in place on its volume (and resyncs). Nothing is remembered between
//! steps: the shard in progress is the lowest-index shard with an outdated member, which is
//! what an operator restarted mid-rollout sees too.

use super::facts::promotion::{Why, follower_to_promote};
use super::facts::{Facts, in_sync};
use super::step::{Action, FailoverKind, Step};
use super::surge;
use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::NodeView;

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

/// The rollout's next step (the gate is checked by the plan).
pub fn step(f: &Facts<'_>) -> Option<Step> {
    if !f.rolling() {
        return None;
    }
    let step = next_step(f);
    step.action.is_change().then_some(step)
}

/// Where the rollout stands; `blocked` says why it may not move now, if it may not.
pub fn state(f: &Facts<'_>, blocked: Option<&str>) -> Rollout {
    let (updated, desired) = done(f);
    let mut status = Rollout {
        updated,
        desired,
        reason: None,
        message: String::new(),
    };
    if f.outdated.is_empty() {
        return status;
    }
    let names: Vec<&str> = f.outdated.iter().map(|m| m.name()).collect();
    let (reason, message) = if !f.obs.target.rolling {
        (
            "OnDelete",
            format!(
                "{} member(s) run an older revision and are replaced when their pods are deleted (updateStrategy OnDelete): {}",
                names.len(),
                names.join(", ")
            ),
        )
    } else if f.obs.target.paused {
        (
            "RolloutPaused",
            format!(
                "rolling update paused (updateStrategy.paused) with {} member(s) outdated",
                names.len()
            ),
        )
    } else if let Some(why) = blocked
        && f.surges.is_empty()
    {
        (
            "RolloutWaiting",
            format!("rolling update waits until the cluster is healthy again: {why}"),
        )
    } else {
        // A surge pair under way is what the rollout does, even while its replacement's sync
        // keeps the cluster short of healthy.
        let step = next_step(f);
        (step.reason, step.message)
    };
    status.reason = Some(reason);
    status.message = message;
    status
}

/// The next rolling step in the lowest-index shard with an outdated member.
fn next_step(f: &Facts<'_>) -> Step {
    let obs = f.obs;
    let Some(shard) = f.outdated.iter().map(|m| m.shard).min() else {
        return Step::new(Action::Wait, "RollingUpdate", "nothing outdated");
    };
    let Some(leader) = f.leader(shard) else {
        return Step::new(
            Action::Wait,
            "RolloutWaiting",
            format!("shard {shard} has no serving leader"),
        );
    };
    let is_leader = |m: &Member| obs.view_of(m).is_some_and(|v| v.id() == leader.id());
    let mine: Vec<&&Member> = f.outdated.iter().filter(|m| m.shard == shard).collect();
    let (done, of) = done(f);
    if let Some(step) = surge::progress(f, shard, leader, (done, of)) {
        return step;
    }
    if let Some(m) = mine.iter().find(|m| !is_leader(m)) {
        let no_room = match surge_or_why(f, shard, m, (done, of)) {
            Ok(step) => return step,
            Err(why) => why,
        };
        return Step::new(
            Action::Restart(vec![(
                m.name().to_string(),
                format!("rolling update of shard {shard}: follower first ({done}/{of} updated)"),
            )]),
            "RollingUpdate",
            format!(
                "shard {shard}: replacing follower {} ({done}/{of} members updated){no_room}",
                m.name()
            ),
        );
    }
    let Some(old) = mine.first() else {
        return Step::new(Action::Wait, "RollingUpdate", "nothing outdated");
    };
    let why = Why::Rollout {
        leader,
        shard,
        outdated: &f.outdated,
    };
    if let Some((v, m)) = follower_to_promote(obs, why) {
        return Step::new(
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
    if let Some(m) = unheard_follower(f, shard, leader) {
        return Step::new(
            Action::Wait,
            "RollingUpdate",
            format!(
                "shard {shard}: {} hands over to {} once a majority of the masters knows it as its follower (gossip, within half the node timeout)",
                old.name(),
                m.name()
            ),
        );
    }
    if f.surges.iter().any(|p| p.shard == shard) {
        return Step::new(
            Action::Wait,
            "RollingUpdate",
            format!(
                "shard {shard}: {} hands over to its replacement once it is in sync",
                old.name()
            ),
        );
    }
    if obs.shape.followers > 0 {
        return Step::new(
            Action::Wait,
            "RolloutWaiting",
            format!("shard {shard}: no updated follower in sync to hand over to yet"),
        );
    }
    let no_room = match surge_or_why(f, shard, old, (done, of)) {
        Ok(step) => return step,
        Err(why) => why,
    };
    if !obs.shape.storage {
        return Step::new(
            Action::Wait,
            "RolloutBlocked",
            format!(
                "shard {shard} has no follower and no volume: restarting its leader {} would lose its data; set followersPerLeader ≥ 1 or delete the pod yourself to accept it{no_room}",
                old.name()
            ),
        );
    }
    Step::new(
        Action::Restart(vec![(
            old.name().to_string(),
            format!(
                "rolling update of shard {shard}: no follower to hand over to; its volume keeps the data, its slots pause while it restarts"
            ),
        )]),
        "RollingUpdate",
        format!(
            "shard {shard}: restarting leader {} (no follower) ({done}/{of} members updated){no_room}",
            old.name()
        ),
    )
}

/// An updated follower of `shard` in sync with `leader` that too few masters know as its
/// follower yet to vote for it (what alone keeps it from taking the lead).
fn unheard_follower<'a>(f: &Facts<'a>, shard: usize, leader: &NodeView) -> Option<&'a Member> {
    let obs = f.obs;
    obs.live()
        .filter(|m| m.shard == shard && !f.outdated.iter().any(|o| o.name() == m.name()))
        .find(|m| {
            obs.view_of(m).is_some_and(|v| {
                v.id() != leader.id()
                    && in_sync(v, leader)
                    && obs.view.masters_aware_of_follower(v.id(), leader.id()) < obs.view.quorum()
            })
        })
}

/// Members updated and wanted. A surge member counts once its predecessor retired: until
/// then the pair holds one seat (as `status.updatedMembers` says).
fn done(f: &Facts<'_>) -> (usize, usize) {
    (f.updated(), f.obs.shape.members())
}

/// A surge replacement for `old` when `maxSurge` allows one and there is room; otherwise why
/// not, as a suffix for the restart's message (empty when surging is off).
fn surge_or_why(
    f: &Facts<'_>,
    shard: usize,
    old: &Member,
    done: surge::Done,
) -> Result<Step, String> {
    if !f.obs.target.surge {
        return Err(String::new());
    }
    surge::replace(f, shard, old, done)
        .map_err(|why| format!("; restarted in place, as with updateStrategy.maxSurge 0: {why}"))
}
