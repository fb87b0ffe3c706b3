//! The rolling update's surge (`updateStrategy.maxSurge`, on by default): an outdated member
//! is not restarted in place; a replacement of the current revision is created beside it (on
//! another node, in a zone the shard's spread allows, [`facts::surge::seat`]), full-syncs, and
//! only then does the old member retire. The shard never runs below its followers in sync,
//! and a shard without followers hands over to its replacement gracefully instead of
//! restarting its only member. The pair is recorded on the replacement's Pod, so this is
//! level-triggered: an operator restarted anywhere in it takes the same next step.
//!
//! Retiring deletes the old member's volume first, then its Pod: its data lives on in the
//! replacement, which the leader's own replication report shows in sync (`in_sync`), and a
//! volume kept would only pile up one orphan per member per rollout.

use super::facts::surge::{Surge, seat};
use super::facts::{Facts, in_sync};
use super::members::new_member;
use super::step::{Action, NewMember, Step};
use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::NodeView;
use crate::controller::observe::revision::outdated;

/// Progress through the rollout, for messages: (members updated, members wanted).
pub type Done = (usize, usize);

/// Replacements no longer wanted go, whatever else is under way (they are the operator's own
/// unfinished work, and nothing waits on them): one built from an older revision than the
/// spec's now (the spec changed again mid-surge: a new replacement follows), or one not yet
/// in sync once `maxSurge` is 0 (the old member restarts in place instead).
pub fn drop_unwanted(f: &Facts<'_>) -> Option<Step> {
    let target = &f.obs.target;
    let unwanted: Vec<(String, String)> = f
        .surges
        .iter()
        .filter(|p| {
            outdated(p.replacement, target)
                || (!target.surge
                    && !f
                        .leader(p.shard)
                        .is_some_and(|l| ready_copy(f, p.replacement, l)))
        })
        .map(|p| {
            (
                p.replacement.name().to_string(),
                format!(
                    "rolling update of shard {}: replacement for {} no longer wanted (the spec changed since it was made)",
                    p.shard,
                    p.retiring.name()
                ),
            )
        })
        .collect();
    (!unwanted.is_empty()).then(|| {
        let names: Vec<&str> = unwanted.iter().map(|(p, _)| p.as_str()).collect();
        let message = format!(
            "dropping replacement(s) made for an earlier spec: {}",
            names.join(", ")
        );
        Step::new(Action::DeletePods(unwanted), "RollingUpdate", message)
    })
}

/// The step of a surge pair in `shard`, if one is under way: wait for the replacement to
/// sync, then retire the old member (volume, then Pod). `None` when no pair is under way, or
/// when the old member still leads: the handover to an updated in-sync follower (the
/// replacement, once it is in sync) comes first (`rollout`).
pub fn progress(f: &Facts<'_>, shard: usize, leader: &NodeView, done: Done) -> Option<Step> {
    let pair = f.surges.iter().find(|p| p.shard == shard)?;
    let (new, old) = (pair.replacement, pair.retiring);
    let (updated, of) = done;
    if f.obs.view_of(old).is_some_and(NodeView::is_serving_master) {
        return None;
    }
    if !retirable(f, pair, leader) {
        return Some(waiting(f, pair, done));
    }
    if let Some(claim) = old.claim()
        && f.obs.claims.iter().any(|c| c.name == claim && !c.deleting)
    {
        return Some(Step::new(
            Action::DeleteClaims(vec![(
                claim.to_string(),
                format!(
                    "rolling update of shard {shard}: {} retires, its replacement {} is in sync with the leader",
                    old.name(),
                    new.name()
                ),
            )]),
            "RollingUpdate",
            format!(
                "shard {shard}: retiring {} (its volume first; {updated}/{of} members updated)",
                old.name()
            ),
        ));
    }
    Some(Step::new(
        Action::DeletePods(vec![(
            old.name().to_string(),
            format!(
                "rolling update of shard {shard}: retired, its replacement {} is in sync with the leader",
                new.name()
            ),
        )]),
        "RollingUpdate",
        format!(
            "shard {shard}: retiring {} now that {} is in sync ({updated}/{of} members updated)",
            old.name(),
            new.name()
        ),
    ))
}

/// Whether the shard keeps its leader and its followers in sync without the retiring member:
/// the replacement is Pod-ready and serves or is in sync, and the shard's other members hold
/// a serving leader and `followersPerLeader` followers in sync, as the leader reports them.
fn retirable(f: &Facts<'_>, pair: &Surge<'_>, leader: &NodeView) -> bool {
    let obs = f.obs;
    if !ready_copy(f, pair.replacement, leader) {
        return false;
    }
    let synced = obs
        .live()
        .filter(|m| m.shard == pair.shard && m.name() != pair.retiring.name())
        .filter_map(|m| obs.view_of(m))
        .filter(|v| v.id() != leader.id() && in_sync(v, leader))
        .count();
    synced >= obs.shape.followers
}

/// The replacement is Pod-ready and leads or is in sync with the leader.
fn ready_copy(f: &Facts<'_>, new: &Member, leader: &NodeView) -> bool {
    new.ready()
        && f.obs
            .view_of(new)
            .is_some_and(|v| v.id() == leader.id() || in_sync(v, leader))
}

/// What the pair waits for, in words.
fn waiting(f: &Facts<'_>, pair: &Surge<'_>, (updated, of): Done) -> Step {
    let (new, old) = (pair.replacement.name(), pair.retiring.name());
    let shard = pair.shard;
    if let Some(why) = pair.replacement.unschedulable() {
        return Step::new(
            Action::Wait,
            "RolloutWaiting",
            format!(
                "shard {shard}: replacement {new} for {old} cannot be scheduled ({why}); it starts once there is room, or set updateStrategy.maxSurge to 0 to restart members in place instead"
            ),
        );
    }
    let what = if f.obs.view_of(pair.replacement).is_none() {
        "starting"
    } else {
        "syncing"
    };
    Step::new(
        Action::Wait,
        "RollingUpdate",
        format!(
            "shard {shard}: replacement {new} {what}; {old} retires once it is in sync ({updated}/{of} members updated)"
        ),
    )
}

/// A replacement for the outdated member `old` of `shard`, when surging is on and there is
/// room; `Err` says why there is none (the caller restarts `old` in place, and says so).
///
/// # Errors
/// No room for one more member ([`seat`]).
pub fn replace(f: &Facts<'_>, shard: usize, old: &Member, done: Done) -> Result<Step, String> {
    let (node, zone) = seat(f.obs, old)?;
    let (member, reuse_claim) = new_member(f, shard, &node, &[]);
    let (updated, of) = done;
    Ok(Step::new(
        Action::CreateMembers(vec![NewMember {
            shard,
            member,
            node: node.clone(),
            zone,
            reuse_claim,
            replaces: Some((
                old.name().to_string(),
                f.obs.view_of(old).map(|v| v.id().clone()),
            )),
            reason: format!(
                "rolling update of shard {shard}: replacement for {}, which retires once this one is in sync",
                old.name()
            ),
        }]),
        "RollingUpdate",
        format!(
            "shard {shard}: creating a replacement for {} on {node} ({updated}/{of} members updated)",
            old.name()
        ),
    ))
}
