//! "Which follower takes the lead": one chooser, with the reason as its argument, because the
//! answer rightly depends on why a leader must change.
//!
//! * After a crash ([`Why::LeaderGone`]) the leader cannot be asked anything, so no follower
//!   can be proven in sync with it: the follower with the highest offset wins, and never one
//!   that never synced (it would serve the slots empty, reference S19), nor one that has not
//!   reached its leader since it started (it holds only what it loaded from its disk: a
//!   follower that started from its shutdown RDB reports that RDB's offset, not 0).
//! * When the leader is alive ([`Why::LeaderDeleted`], [`Why::Rollout`], [`Why::Rebalance`])
//!   the handover is graceful and loses nothing only to a follower in sync now.
//!   - A rollout also needs the follower to be updated already (an outdated one would be
//!     replaced next and hand the lead straight back), and prefers the zone with the fewest
//!     leaders so the spread holds.
//!   - A rebalance has its target chosen by the placement (the zone that restores the spread).
//!   - Both wait until a majority of the masters knows the follower as the leader's (the
//!     graceful failover's precondition: they vote only for a follower they know). The
//!     rollout moves on while the rest of the cluster still learns a follower's role
//!     ([`crate::controller::plan::Gate::Movable`]), so this is what holds its handover.
//!   - Both planned moves wait for a follower that started from its shutdown RDB to have its
//!     AOF back on (`plan::config` does that first): as a leader it would keep its writes only
//!     in memory until the next RDB save.

use std::collections::BTreeMap;

use super::gone::Gone;
use super::shard::in_sync;
use crate::controller::observe::Observed;
use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::NodeView;
use crate::controller::observe::revision::aof_off;
use crate::redis::parse::info::ReplicaLink;

/// Why a shard's lead must change.
#[derive(Debug, Clone, Copy)]
pub enum Why<'a> {
    /// Its leader is gone (crashed, lost with its node).
    LeaderGone(&'a Gone),
    /// Its leader's Pod is being deleted and did not hand over by itself.
    LeaderDeleted(&'a NodeView),
    /// Its leader cannot write to its disk and refuses every write (`MISCONF`): the lead goes
    /// to an in-sync follower whose disk works.
    LeaderCannotPersist(&'a NodeView),
    /// The rolling update replaces the leader next; `outdated` are the members it replaces.
    Rollout {
        /// The serving leader.
        leader: &'a NodeView,
        /// Its shard.
        shard: usize,
        /// Members built from an older revision.
        outdated: &'a [&'a Member],
    },
    /// The placement wants the lead on the shard's member on `node` (the spread).
    Rebalance {
        /// The serving leader.
        leader: &'a NodeView,
        /// The member placement chose.
        target: &'a Member,
    },
}

/// The follower to promote, with the member it runs in, if there is one for this reason.
pub fn follower_to_promote<'a>(
    obs: &'a Observed,
    why: Why<'a>,
) -> Option<(&'a NodeView, &'a Member)> {
    let with_member = |v: &'a NodeView| Some((v, obs.member_at(v.addr)?));
    match why {
        Why::LeaderGone(g) => g
            .followers
            .iter()
            .filter_map(|id| obs.view.node(id))
            .filter(|f| {
                f.replication
                    .replica_link()
                    .is_none_or(ReplicaLink::linked_since_start)
            })
            .find(|f| f.replication.master_repl_offset > 0)
            .and_then(with_member),
        Why::LeaderDeleted(leader) => obs
            .view
            .replicas_of(leader.id())
            .filter(|f| in_sync(f, leader))
            .filter(|f| obs.member_at(f.addr).is_some_and(|m| !m.terminating()))
            .max_by_key(|f| f.replication.master_repl_offset)
            .and_then(with_member),
        Why::LeaderCannotPersist(leader) => obs
            .view
            .replicas_of(leader.id())
            .filter(|f| in_sync(f, leader) && f.persistence.failure().is_none())
            .filter(|f| obs.member_at(f.addr).is_some_and(|m| !m.terminating()))
            .max_by_key(|f| f.replication.master_repl_offset)
            .and_then(with_member),
        Why::Rollout {
            leader,
            shard,
            outdated,
        } => {
            let leaders_in = leader_zones(obs);
            obs.live()
                .filter(|m| m.shard == shard && !outdated.iter().any(|o| o.name() == m.name()))
                .filter_map(|m| Some((obs.view_of(m)?, m)))
                .filter(|(v, _)| v.id() != leader.id() && in_sync(v, leader))
                .filter(|(v, _)| !aof_off(v, &obs.target))
                .filter(|(v, _)| {
                    obs.view.masters_aware_of_follower(v.id(), leader.id()) >= obs.view.quorum()
                })
                .min_by_key(|(v, m)| {
                    let zone = m.node().map_or("", |n| obs.zone_of(n));
                    (
                        leaders_in.get(zone).copied().unwrap_or(0),
                        std::cmp::Reverse(v.replication.master_repl_offset),
                    )
                })
        }
        // A planned move waits until a majority of the masters knows the target as this
        // leader's follower: before, the graceful failover's own precondition refuses it
        // (seen in the soak as a string of FailoverFailed Events while the role spread).
        Why::Rebalance { leader, target } => obs
            .view_of(target)
            .filter(|v| in_sync(v, leader) && !aof_off(v, &obs.target))
            .filter(|v| {
                obs.view.masters_aware_of_follower(v.id(), leader.id()) >= obs.view.quorum()
            })
            .map(|v| (v, target)),
    }
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
