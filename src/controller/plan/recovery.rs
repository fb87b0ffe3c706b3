//! Recovery: members that lost each other, leaders that died, leaders being deleted, and
//! identities that are gone for good. Gate: the cluster has served slots (a cluster still
//! being built is the bootstrap's).
//!
//! Order matters and follows the peers' lessons: a dead leader's slots go to its best follower
//! before anything else, and a dead identity is forgotten only once it owns nothing and nobody
//! follows it (forgetting it first leaves its follower never promoted, valkey-operator #43).

use std::time::Duration;

use super::facts::Facts;
use super::facts::gone::Gone;
use super::facts::promotion::{Why, follower_to_promote};
use super::step::{Action, FailoverKind, Promotion, Step};
use crate::controller::observe::redis::NodeView;
use crate::redis::ops::failover::{LeaderGone, rivals};
use crate::redis::ops::meet::pairs_to_introduce;
use crate::redis::parse::info::ReplicaLink;

/// How long after its followers last heard from a leader that Redis already flagged FAIL the
/// operator lets Redis's own election run before it forces one: 2 × node timeout + 3 s (reference S3).
/// Two elections for one shard at once only disturb each other's votes (S23).
pub const ELECTION_GRACE: Duration =
    Duration::from_millis(2 * crate::controller::config::NODE_TIMEOUT_MS + 3000);

/// How long after its follower last heard from a leader the majority flags FAIL the operator
/// lets that follower's own election run before it takes over without one, when no other node
/// could stand for the shard: 1.5 × node timeout + 1.5 s (9 s). A node pings each peer within
/// node timeout / 2 of its last pong and flags it PFAIL once a ping has gone unanswered for
/// node timeout, so FAIL can come 1.5 × node timeout after the silence began (7.4 s in a 10×1
/// zone crash); a follower ranked first stands 0.5–1 s after FAIL, and the votes come back
/// within a round trip. Past this, an election that has not promoted it was denied (a split
/// vote), and Redis 7.0 stands again only 4 × node timeout after its first attempt (20 s: the
/// 24.5 s write outage of a 10×1 zone crash). The clock is the follower's
/// ([`ReplicaLink::silent_for`]); in a shard idle before the crash it may run up to 10 s
/// ahead, and the TAKEOVER then merely comes before the election it would have won.
pub const ELECTION_SETTLE: Duration =
    Duration::from_millis(crate::controller::config::NODE_TIMEOUT_MS * 3 / 2 + 1500);

/// How long a Terminating leader's own preStop hook gets to hand over before the operator
/// does it: both at once would be two manual failovers racing for one shard (S23).
pub const HANDOVER_GRACE: Duration = Duration::from_secs(5);

/// The next recovery step, if any.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    // Members that do not know each other, or not each other's current address (every Pod
    // restarted with a new IP, S17): nothing else can be judged until they do.
    let unknown = obs.view.unknown_pairs();
    if !unknown.is_empty() {
        let nodes: Vec<_> = obs.view.nodes.iter().collect();
        return Some(Step::new(
            Action::Meet(pairs_to_introduce(&nodes)),
            "JoiningMembers",
            format!(
                "{} member pair(s) do not know each other's current address (CLUSTER MEET)",
                unknown.len()
            ),
        ));
    }
    force_failover(f)
        .or_else(|| handover(f))
        .or_else(|| disk_handover(f))
        .or_else(|| repoint(f))
        .or_else(|| forget(f))
}

/// A leader whose death is confirmed, with a follower that has its data: FORCE the follower
/// with the highest offset instead of waiting for Redis's node timeout plus election. Once
/// the cluster has flagged the leader FAIL, Redis is electing a follower itself; the operator
/// steps in only if that has not happened [`ELECTION_GRACE`] after the follower last heard
/// from its leader ([`ReplicaLink::silent_for`]: a dead node's leader keeps its followers'
/// links "up" until `repl-timeout`), or, for a stalled election, after [`ELECTION_SETTLE`].
/// The stalled election's TAKEOVER does not wait for Kubernetes: the voting majority's FAIL
/// is the agreement Redis's own election acts on, and Kubernetes reports a dead node only
/// after its node-monitor grace (40 s by default), later than Redis's retry. Every shard whose
/// election stalled goes in one step ([`Action::StalledElections`]).
fn force_failover(f: &Facts<'_>) -> Option<Step> {
    let mut stalled = Vec::new();
    for g in f.gone.iter().filter(|g| g.slots > 0) {
        let Some((best, member)) = follower_to_promote(f.obs, Why::LeaderGone(g)) else {
            continue;
        };
        let shard = member.shard;
        let silent = best
            .replication
            .replica_link()
            .map_or(Duration::ZERO, ReplicaLink::silent_for);
        if !g.confirmed() || (g.flagged_fail && silent < ELECTION_GRACE) {
            if g.flagged_fail && silent >= ELECTION_SETTLE && election_stalled(f, g, best) {
                stalled.push(Promotion {
                    shard,
                    to: best.id().clone(),
                    reason: reason(g, (shard, best), STALLED),
                });
            }
            continue;
        }
        // A FORCE keeps an election: it goes alone, and the stalled ones next pass.
        return Some(promotion(
            g,
            (shard, best),
            FailoverKind::Force,
            "its most up-to-date follower",
            "its leader is gone",
        ));
    }
    stalled_elections(stalled)
}

/// What a stalled election's follower is to its shard, in the reason.
const STALLED: &str = "its only follower, not elected although the voting majority flags the leader FAIL (a split vote, retried by Redis only after 4 × node timeout), with a TAKEOVER";

/// Whether `best`'s own election for the gone leader `g` was denied and nothing else could
/// stand: a majority of the voting masters flags the leader FAIL (the agreement the votes
/// would check), and no other node could claim its slots (one definition with the check
/// `redis::ops` repeats right before the TAKEOVER).
fn election_stalled(f: &Facts<'_>, g: &Gone, best: &NodeView) -> bool {
    LeaderGone::establish(&f.obs.view, &g.id).is_ok_and(|p| p.failed_for_majority())
        && rivals(&f.obs.view, best.id(), &g.id).is_empty()
}

/// One step for every shard whose election stalled: a zone's crash stalls several at once.
fn stalled_elections(stalled: Vec<Promotion>) -> Option<Step> {
    let first = stalled.first()?;
    let message = if stalled.len() == 1 {
        format!(
            "shard {}: promoting {} (its leader is gone and its election stalled)",
            first.shard,
            first.to.short()
        )
    } else {
        let each: Vec<String> = stalled
            .iter()
            .map(|p| format!("shard {}: {}", p.shard, p.to.short()))
            .collect();
        format!(
            "promoting {} followers whose leaders are gone and whose elections stalled ({})",
            stalled.len(),
            each.join(", ")
        )
    };
    Some(Step::new(
        Action::StalledElections(stalled),
        "FailingOver",
        message,
    ))
}

/// The step promoting `best`, of `shard`, over the gone leader `g` by `kind`; `who` says what
/// `best` is to the shard, `status` why, in the condition.
fn promotion(
    g: &Gone,
    (shard, best): (usize, &NodeView),
    kind: FailoverKind,
    who: &str,
    status: &str,
) -> Step {
    Step::new(
        Action::Failover {
            shard,
            to: best.id().clone(),
            kind,
            reason: reason(g, (shard, best), who),
        },
        "FailingOver",
        format!("shard {shard}: promoting {} ({status})", best.id().short()),
    )
}

/// Why `best` is promoted over the gone leader `g`, for the Event.
fn reason(g: &Gone, (shard, best): (usize, &NodeView), who: &str) -> String {
    format!(
        "leader {} of shard {shard} is gone: {}; promoting {}, {who} (offset {})",
        g.id.short(),
        g.describe(),
        best.id().short(),
        best.replication.master_repl_offset
    )
}

/// A leader Pod being deleted that still leads after [`HANDOVER_GRACE`]: its preStop hook did
/// not hand over, so the operator does, gracefully, to its best in-sync follower.
fn handover(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
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
        let (best, _) = follower_to_promote(obs, Why::LeaderDeleted(leader))?;
        return Some(Step::new(
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

/// A serving leader that cannot write to its disk refuses every write (`MISCONF`) for as long
/// as that lasts (a full volume: found by the soak, 33 s of refused writes with a follower in
/// sync next to it). A graceful failover to an in-sync follower whose disk works loses nothing
/// and ends the outage; the rebalance does not hand the lead back while the disk still fails.
fn disk_handover(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    for m in obs.live() {
        let Some(leader) = obs.view_of(m).filter(|v| v.is_serving_master()) else {
            continue;
        };
        let Some(failure) = leader.persistence.failure() else {
            continue;
        };
        let Some((best, _)) = follower_to_promote(obs, Why::LeaderCannotPersist(leader)) else {
            continue;
        };
        return Some(Step::new(
            Action::Failover {
                shard: m.shard,
                to: best.id().clone(),
                kind: FailoverKind::Graceful,
                reason: format!(
                    "leader {} of shard {} cannot write to its disk: {failure}; it refuses writes until it hands over to {}, in sync and writing",
                    m.name(),
                    m.shard,
                    best.id().short()
                ),
            },
            "FailingOver",
            format!(
                "shard {}: handing over from {}, which cannot write to its disk",
                m.shard,
                m.name()
            ),
        ));
    }
    None
}

/// Followers still attached to an identity that is gone and owns no slots (a chain to a dead
/// leader that was already replaced): re-point them at their shard's leader.
fn repoint(f: &Facts<'_>) -> Option<Step> {
    let mut attach = Vec::new();
    for g in f.gone.iter().filter(|g| g.slots == 0) {
        for id in &g.followers {
            let Some(v) = f.obs.view.node(id) else {
                continue;
            };
            let Some(m) = f.obs.member_at(v.addr) else {
                continue;
            };
            if let Some(leader) = f.leader(m.shard) {
                attach.push((v.addr, m.shard, leader.id().clone()));
            }
        }
    }
    (!attach.is_empty()).then(|| {
        Step::new(
            Action::Replicate(attach),
            "AttachingFollowers",
            "re-pointing followers of a gone member at their shard's leader",
        )
    })
}

/// A member of a shard beyond `spec.leaders` whose Pod is gone or going: the members planner
/// deletes those only once drained (no slot, no key), so it is gone for good and is forgotten
/// at once, without waiting a node timeout for the masters to report it.
fn removed_by_scale_in(f: &Facts<'_>, g: &Gone) -> bool {
    let shard = g
        .addr
        .and_then(|a| f.obs.member_at(a))
        .map(|m| m.shard)
        .or_else(|| super::facts::shard_of(f.obs, &g.id));
    g.k8s.is_some() && shard.is_some_and(|s| s >= f.obs.shape.leaders)
}

/// A member a rolling update retired (its replacement's Pod names its identity): it left on
/// purpose once its replacement was in sync, and its Pod is gone or going, so it is forgotten
/// at once rather than after a node timeout of `StaleIdentity`.
fn retired(f: &Facts<'_>, g: &Gone) -> bool {
    g.k8s.is_some() && f.retired.contains(&g.id)
}

/// Identities gone for good: nothing owned, nobody following, death confirmed, and no volume
/// that could bring them back. Forgotten on every member within the ban window. A follower
/// lost together with its leader is kept while its volume exists: with the leader's, it is
/// what may bring the shard's data back (awaited shards), even from a node that is down now.
fn forget(f: &Facts<'_>) -> Option<Step> {
    let awaited: Vec<_> = f.awaited.iter().flat_map(|a| a.ids.iter()).collect();
    let ids: Vec<_> = f
        .gone
        .iter()
        .filter(|g| g.slots == 0 && g.followers.is_empty())
        .filter(|g| g.confirmed() || removed_by_scale_in(f, g) || retired(f, g))
        .filter(|g| g.may_return.is_none() && !awaited.contains(&&g.id))
        .map(|g| (g.id.clone(), g.describe()))
        .collect();
    (!ids.is_empty()).then(|| {
        Step::new(
            Action::Forget(ids),
            "ForgettingMembers",
            "removing identities of members that are gone from every member's node table",
        )
    })
}
