//! Recovery: members that lost each other, leaders that died, leaders being deleted, and
//! identities that are gone for good. Runs once the cluster has served slots; a cluster still
//! being built is the bootstrap's.
//!
//! Order matters and follows the peers' lessons: a dead leader's slots go to its best follower
//! before anything else, and a dead identity is forgotten only once it owns nothing and nobody
//! follows it (forgetting it first leaves its follower never promoted, valkey-operator #43).

use std::time::Duration;

use super::health::{Gone, in_sync};
use super::{Action, FailoverKind, Plan};
use crate::controller::observe::Observed;
use crate::controller::observe::redis::NodeView;

/// How long after its followers lost a leader that Redis already flagged FAIL the operator
/// lets Redis's own election run before it forces one: 2 × node timeout + 3 s (reference S3).
/// Two elections for one shard at once only disturb each other's votes (S23).
pub const ELECTION_GRACE: Duration =
    Duration::from_millis(2 * crate::controller::config::NODE_TIMEOUT_MS + 3000);

/// How long a Terminating leader's own preStop hook gets to hand over before the operator
/// does it: both at once would be two manual failovers racing for one shard (S23).
pub const HANDOVER_GRACE: Duration = Duration::from_secs(5);

/// The serving leader of a shard, as its own member reports it.
pub fn shard_leader(obs: &Observed, shard: usize) -> Option<&NodeView> {
    obs.members
        .iter()
        .filter(|m| m.shard == shard && !m.finished())
        .filter_map(|m| obs.view_of(m))
        .find(|v| v.is_serving_master())
}

/// The next recovery step, if any.
pub fn plan(obs: &Observed, gone: &[Gone]) -> Option<Plan> {
    if obs.view.voting_masters().is_empty() {
        return None;
    }
    // Members that do not know each other, or not each other's current address (every Pod
    // restarted with a new IP, S17): nothing else can be judged until they do.
    let unknown = obs.view.unknown_pairs();
    if !unknown.is_empty() {
        return Some(Plan::step(
            Action::Meet,
            "JoiningMembers",
            format!(
                "{} member pair(s) do not know each other's current address (CLUSTER MEET)",
                unknown.len()
            ),
        ));
    }
    force_failover(obs, gone)
        .or_else(|| handover(obs))
        .or_else(|| repoint(obs, gone))
        .or_else(|| forget(obs, gone))
}

/// A leader whose death is confirmed, with a follower that has its data: FORCE the follower
/// with the highest offset instead of waiting for Redis's node timeout plus election. Once
/// the cluster has flagged the leader FAIL, Redis is electing a follower itself; the operator
/// steps in only if that has not happened [`ELECTION_GRACE`] after the follower lost its
/// leader (the follower's own `master_link_down_since_seconds` is the clock).
fn force_failover(obs: &Observed, gone: &[Gone]) -> Option<Plan> {
    for g in gone.iter().filter(|g| g.slots > 0 && g.confirmed()) {
        let Some((best, shard)) = g.best_follower(obs) else {
            continue;
        };
        let orphaned_for = Duration::from_secs(
            best.replication
                .replica_link()
                .and_then(|l| l.link_down_since_seconds)
                .unwrap_or(0),
        );
        if g.flagged_fail && orphaned_for < ELECTION_GRACE {
            continue;
        }
        return Some(Plan::step(
            Action::Failover {
                shard,
                to: best.id().clone(),
                kind: FailoverKind::Force,
                reason: format!(
                    "leader {} of shard {shard} is gone: {}; promoting {}, its most up-to-date follower (offset {})",
                    g.id.short(),
                    g.describe(),
                    best.id().short(),
                    best.replication.master_repl_offset
                ),
            },
            "FailingOver",
            format!(
                "shard {shard}: promoting {} (its leader is gone)",
                best.id().short()
            ),
        ));
    }
    None
}

/// A leader Pod being deleted that still leads after [`HANDOVER_GRACE`]: its preStop hook did
/// not hand over, so the operator does, gracefully, to its best in-sync follower.
fn handover(obs: &Observed) -> Option<Plan> {
    for m in obs.members.iter().filter(|m| m.terminating()) {
        let Some(leader) = obs.view_of(m).filter(|v| v.is_serving_master()) else {
            continue;
        };
        let waited = m
            .deleting_since()
            .and_then(|t| obs.now.duration_since(t).try_into().ok())
            .unwrap_or(Duration::ZERO);
        if waited < HANDOVER_GRACE {
            continue;
        }
        let best = obs
            .view
            .replicas_of(leader.id())
            .filter(|f| in_sync(f, leader))
            .filter(|f| obs.member_at(f.addr).is_some_and(|fm| !fm.terminating()))
            .max_by_key(|f| f.replication.master_repl_offset)?;
        return Some(Plan::step(
            Action::Failover {
                shard: m.shard,
                to: best.id().clone(),
                kind: FailoverKind::Graceful,
                reason: format!(
                    "pod {} (leader of shard {}) is being deleted and still leads after {}s; handing over to {}",
                    m.name(),
                    m.shard,
                    HANDOVER_GRACE.as_secs(),
                    best.id().short()
                ),
            },
            "FailingOver",
            format!(
                "shard {}: handing over from the deleted pod {}",
                m.shard,
                m.name()
            ),
        ));
    }
    None
}

/// Followers still attached to an identity that is gone and owns no slots (a chain to a dead
/// leader that was already replaced): re-point them at their shard's leader.
fn repoint(obs: &Observed, gone: &[Gone]) -> Option<Plan> {
    let mut attach = Vec::new();
    for g in gone.iter().filter(|g| g.slots == 0) {
        for id in &g.followers {
            let Some(f) = obs.view.node(id) else { continue };
            let Some(m) = obs.member_at(f.addr) else {
                continue;
            };
            if let Some(leader) = shard_leader(obs, m.shard) {
                attach.push((f.addr, m.shard, leader.id().clone()));
            }
        }
    }
    (!attach.is_empty()).then(|| {
        Plan::step(
            Action::Replicate(attach),
            "AttachingFollowers",
            "re-pointing followers of a gone member at their shard's leader",
        )
    })
}

/// Identities gone for good: nothing owned, nobody following, death confirmed, and no volume
/// that could bring them back. Forgotten on every member within the ban window. A follower
/// lost together with its leader is kept while its volume exists: with the leader's, it is
/// what may bring the shard's data back (`loss::awaited`), even from a node that is down now.
/// A member of a shard beyond `spec.leaders` whose Pod is gone or going: the members planner
/// deletes those only once drained (no slot, no key), so it is gone for good and is forgotten
/// at once, without waiting a node timeout for the masters to report it.
fn removed_by_scale_in(obs: &Observed, g: &Gone) -> bool {
    let shard = g
        .addr
        .and_then(|a| obs.member_at(a))
        .map(|m| m.shard)
        .or_else(|| super::health::shard_of(obs, &g.id));
    g.k8s.is_some() && shard.is_some_and(|s| s >= obs.shape.leaders)
}

fn forget(obs: &Observed, gone: &[Gone]) -> Option<Plan> {
    let awaited: Vec<_> = super::loss::awaited(obs, gone)
        .into_iter()
        .flat_map(|a| a.ids)
        .collect();
    let ids: Vec<_> = gone
        .iter()
        .filter(|g| g.slots == 0 && g.followers.is_empty())
        .filter(|g| g.confirmed() || removed_by_scale_in(obs, g))
        .filter(|g| g.may_return.is_none() && !awaited.contains(&g.id))
        .map(|g| (g.id.clone(), g.describe()))
        .collect();
    (!ids.is_empty()).then(|| {
        Plan::step(
            Action::Forget(ids),
            "ForgettingMembers",
            "removing identities of members that are gone from every member's node table",
        )
    })
}
