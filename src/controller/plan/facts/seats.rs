//! Members as the scheduler and the formation see them: live Pods and held claims, grouped by
//! shard, with the placement over the nodes as they are now.

use std::collections::BTreeSet;

use redis_scheduler::{CurrentMember, Placement, Role};

use super::formation::{Seat, ShardSeats};
use crate::controller::observe::{Claim, Observed};
use crate::redis::ids::NodeId;

/// The placement over the nodes as they are now (a not-Ready node whose member answers and is
/// vouched for keeps it: [`super::unready`]).
///
/// # Errors
/// The solver's explanation when no placement exists.
pub fn placement(obs: &Observed, held: &[&Claim]) -> Result<Placement, String> {
    let topology = super::unready::topology(obs);
    redis_scheduler::solve(&topology, &obs.request, &current_members(obs, held))
        .map_err(|e| e.to_string())
}

/// Members as the scheduler sees them: live Pods and held claims. The role is what Redis
/// reports; a shard with no serving leader has its lowest-ordinal member stand for the leader
/// it is about to have. A member whose container cannot start is unhealthy, so the scheduler
/// replaces it; one that is merely restarting or held by the start gate is not (replacing it
/// would throw away a member that is about to serve).
fn current_members(obs: &Observed, held: &[&Claim]) -> Vec<CurrentMember> {
    let owners: BTreeSet<NodeId> = obs.view.voting_masters();
    // (shard, member, node, leads, healthy)
    let mut seats: Vec<(usize, usize, String, bool, bool)> = obs
        .live()
        .filter_map(|m| {
            let leads = obs.view_of(m).is_some_and(|v| v.is_serving_master());
            Some((
                m.shard,
                m.member,
                m.node()?.to_string(),
                leads,
                !m.crash_looping(),
            ))
        })
        .collect();
    for c in held {
        let leads = c.node_id.as_ref().is_some_and(|id| owners.contains(id));
        if let Some(node) = &c.node {
            seats.push((c.shard, c.member, node.clone(), leads, true));
        }
    }
    seats
        .iter()
        .filter_map(|(shard, member, node, leads, healthy)| {
            let shard_led = seats.iter().any(|s| s.0 == *shard && s.3);
            let first = seats.iter().filter(|s| s.0 == *shard).map(|s| s.1).min() == Some(*member);
            let leader = *leads || (!shard_led && first);
            Some(CurrentMember {
                shard: u32::try_from(*shard).ok()?,
                role: if leader { Role::Leader } else { Role::Follower },
                node: node.clone(),
                healthy: *healthy,
            })
        })
        .collect()
}

/// The live members grouped by shard for the formation, placement's leader as the preferred
/// one. Shards beyond `spec.leaders` (being drained by a scale-in) are still members: their
/// masters own slots until drained, and their followers keep following.
pub fn shards<'a>(obs: &'a Observed, placement: &Placement) -> Vec<ShardSeats<'a>> {
    let live: Vec<_> = obs.live().collect();
    let shard = |index: usize, leader_node: Option<&str>| {
        let mut in_shard: Vec<_> = live.iter().filter(|m| m.shard == index).collect();
        in_shard.sort_by_key(|m| m.member);
        ShardSeats {
            index,
            preferred_leader: leader_node
                .and_then(|n| in_shard.iter().position(|m| m.node() == Some(n))),
            seats: in_shard
                .iter()
                .map(|m| Seat {
                    pod: m.name(),
                    view: obs.view_of(m),
                })
                .collect(),
        }
    };
    let mut shards: Vec<ShardSeats<'_>> = placement
        .shards
        .iter()
        .map(|sp| {
            let leader_node = sp
                .members
                .iter()
                .find(|pm| pm.role == Role::Leader)
                .map(|pm| pm.node.as_str());
            shard(sp.index as usize, leader_node)
        })
        .collect();
    let beyond: BTreeSet<usize> = live
        .iter()
        .map(|m| m.shard)
        .filter(|s| *s >= placement.shards.len())
        .collect();
    shards.extend(beyond.into_iter().map(|index| shard(index, None)));
    shards
}
