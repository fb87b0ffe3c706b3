//! Members: the scheduler's placement and its `changes` (create / failover / remove), carried
//! out with the members' real health. A member whose Pod is gone but whose PVC is intact on a
//! usable node is still a member: it is recreated on that node with its identity and data.

use redis_scheduler::{Change, CurrentMember, Placement, Role};

use super::health::{Gone, in_sync};
use super::loss::Awaited;
use super::recovery::shard_leader;
use super::{Action, FailoverKind, NewMember, Plan};
use crate::controller::observe::pods::Member;
use crate::controller::observe::{Claim, Observed};
use crate::crd::PvcRetentionPolicy;
use crate::redis::ids::NodeId;

/// The placement over the nodes as they are now.
///
/// # Errors
/// The solver's explanation when no placement exists.
pub fn placement(obs: &Observed) -> Result<Placement, String> {
    redis_scheduler::solve(&obs.topology, &obs.request, &current_members(obs))
        .map_err(|e| e.to_string())
}

/// PVCs that stand for a member whose Pod is gone (or still stopping): intact, bound to a
/// node, recording an identity the cluster still knows (or none yet), in a shard that misses
/// members. At most one per node and no more than the shard misses.
pub fn held_claims(obs: &Observed) -> Vec<&Claim> {
    let per_shard = 1 + obs.shape.followers;
    let known = obs.view.known_ids();
    let mut out: Vec<&Claim> = Vec::new();
    for c in &obs.claims {
        let Some(node) = c.node.as_deref() else {
            continue;
        };
        if c.deleting
            || c.shard >= obs.shape.leaders
            || obs.live().any(|m| m.claim() == Some(c.name.as_str()))
        {
            continue;
        }
        if let Some(id) = &c.node_id
            && !obs.view.nodes.is_empty()
            && !known.contains(id)
        {
            // Its identity was forgotten: the member was re-placed elsewhere.
            continue;
        }
        let live_in_shard = obs.live().filter(|m| m.shard == c.shard).count();
        let held_in_shard = out.iter().filter(|h| h.shard == c.shard).count();
        let node_taken = obs
            .live()
            .any(|m| m.shard == c.shard && m.node() == Some(node))
            || out
                .iter()
                .any(|h| h.shard == c.shard && h.node.as_deref() == Some(node));
        if live_in_shard + held_in_shard < per_shard && !node_taken {
            out.push(c);
        }
    }
    out
}

/// Members as the scheduler sees them: live Pods and held claims. The role is what Redis
/// reports; a shard with no serving leader has its lowest-ordinal member stand for the leader
/// it is about to have. A member whose container cannot start is unhealthy, so the scheduler
/// replaces it; one that is merely restarting or held by the start gate is not (replacing it
/// would throw away a member that is about to serve).
fn current_members(obs: &Observed) -> Vec<CurrentMember> {
    let owners: std::collections::BTreeSet<NodeId> = obs.view.voting_masters();
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
    for c in held_claims(obs) {
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

/// The next membership step, if any.
pub fn plan(obs: &Observed, placement: &Placement, gone: &[Gone]) -> Option<Plan> {
    revive(obs).or_else(|| next_change(obs, placement, &super::loss::awaited(obs, gone)))
}

/// Held claims without a Pod get one on their node, once no stopping Pod still uses them
/// (two redis-servers on one data directory would corrupt it).
fn revive(obs: &Observed) -> Option<Plan> {
    let revive: Vec<NewMember> = held_claims(obs)
        .into_iter()
        .filter(|c| {
            !obs.members
                .iter()
                .any(|m| !m.finished() && m.claim() == Some(c.name.as_str()))
        })
        .filter(|c| c.node.as_deref().is_some_and(|n| obs.node_ready(n)))
        .filter_map(|c| {
            let node = c.node.clone()?;
            Some(NewMember {
                shard: c.shard,
                member: c.member,
                zone: obs.zone_of(&node).to_string(),
                reason: format!(
                    "recreated on {node} with its volume {} (same identity and data)",
                    c.name
                ),
                node,
                reuse_claim: Some(c.name.clone()),
            })
        })
        .collect();
    (!revive.is_empty()).then(|| {
        Plan::step(
            Action::CreateMembers(revive.clone()),
            "ReplacingMembers",
            format!(
                "recreating {} member pod(s) on their volumes' nodes",
                revive.len()
            ),
        )
    })
}

/// Whether no member of `shard` is a master holding slots or keys (or not answering).
fn drained(obs: &Observed, shard: usize) -> bool {
    obs.live().filter(|m| m.shard == shard).all(|m| {
        obs.view_of(m).is_some_and(|v| {
            !v.myself.is_master() || (v.myself.slot_count() == 0 && v.keys == Some(0))
        })
    })
}

/// The live member of `shard` on `node`.
fn member_on<'a>(obs: &'a Observed, shard: u32, node: &str) -> Option<&'a Member> {
    obs.live()
        .find(|m| u32::try_from(m.shard).ok() == Some(shard) && m.node() == Some(node))
}

/// The scheduler's next changes. A shard awaiting its volumes (S6 with PVCs, [`Awaited`]) is
/// left alone except for members recreated on those volumes: a new empty member would take the
/// seat its volume needs to come back to, and removing its members could lose the data.
fn next_change(obs: &Observed, placement: &Placement, awaited: &[Awaited<'_>]) -> Option<Plan> {
    let waits = |shard: usize| awaited.iter().any(|a| a.shard == shard);
    let awaited_claim = |claim: Option<&str>| {
        awaited
            .iter()
            .flat_map(|a| a.claims.iter())
            .any(|c| Some(c.name.as_str()) == claim)
    };
    let mut creates: Vec<NewMember> = Vec::new();
    let mut deletes: Vec<(String, String)> = Vec::new();
    for change in &placement.changes {
        match change {
            Change::Create {
                shard,
                node,
                zone,
                reason,
                ..
            } => {
                if !deletes.is_empty() {
                    break;
                }
                let shard = usize::try_from(*shard).unwrap_or(usize::MAX);
                let member = new_member(obs, shard, node, &creates);
                if waits(shard) && !awaited_claim(member.1.as_deref()) {
                    continue;
                }
                creates.push(NewMember {
                    shard,
                    member: member.0,
                    node: node.clone(),
                    zone: zone.clone(),
                    reuse_claim: member.1,
                    reason: reason.clone(),
                });
            }
            Change::Remove {
                shard,
                node,
                reason,
                ..
            } => {
                if !creates.is_empty() {
                    break;
                }
                let Some(m) = member_on(obs, *shard, node) else {
                    // A held claim the placement drops: it becomes an orphan (status).
                    continue;
                };
                if waits(m.shard) {
                    continue;
                }
                // A shard beyond spec.leaders leaves whole, and only once the scale concern
                // drained it: its master holds no slot and no key.
                if m.shard >= obs.shape.leaders && !drained(obs, m.shard) {
                    continue;
                }
                let serving = obs.view_of(m).is_some_and(|v| v.is_serving_master());
                if serving && m.node().is_some_and(|n| obs.node_ready(n)) {
                    // A leader leaves only after its failover (ordered earlier) happened.
                    continue;
                }
                deletes.push((m.name().to_string(), reason.clone()));
            }
            Change::Failover {
                shard, to, reason, ..
            } => {
                if !creates.is_empty() || !deletes.is_empty() {
                    break;
                }
                let shard = usize::try_from(*shard).unwrap_or(usize::MAX);
                // A planned leader move needs every shard led: while one is not, the
                // majority that must vote for it may not exist, and recovery comes first.
                if (0..obs.shape.leaders).any(|s| shard_leader(obs, s).is_none()) {
                    break;
                }
                let Some(leader) = shard_leader(obs, shard) else {
                    continue;
                };
                let Some(target_member) =
                    member_on(obs, u32::try_from(shard).unwrap_or(u32::MAX), to)
                else {
                    continue;
                };
                // A member about to be replaced by the rolling update does not take the lead:
                // it would hand it straight back. The move happens once it is updated.
                if super::rollout::rolling(obs)
                    && crate::controller::observe::revision::outdated(target_member, &obs.target)
                {
                    break;
                }
                let Some(target) = obs.view_of(target_member) else {
                    continue;
                };
                if !in_sync(target, leader) {
                    // The target must first be attached and synced: the bootstrap's steps.
                    return None;
                }
                return Some(Plan::step(
                    Action::Failover {
                        shard,
                        to: target.id().clone(),
                        kind: FailoverKind::Graceful,
                        reason: reason.clone(),
                    },
                    "RebalancingLeaders",
                    format!("shard {shard}: {reason}"),
                ));
            }
        }
    }
    if !creates.is_empty() {
        let n = creates.len();
        return Some(Plan::step(
            Action::CreateMembers(creates),
            "CreatingMembers",
            format!("creating {n} member pod(s)"),
        ));
    }
    if !deletes.is_empty() {
        let n = deletes.len();
        return Some(Plan::step(
            Action::DeletePods(deletes),
            "RemovingMembers",
            format!("removing {n} member pod(s) the placement drops"),
        ));
    }
    None
}

/// Ordinal (and claim to reuse) of a new member of `shard` on `node`: an intact claim of the
/// shard on that node whose identity is still known keeps its ordinal; otherwise the lowest
/// ordinal no live member, held claim or other new member has.
fn new_member(
    obs: &Observed,
    shard: usize,
    node: &str,
    pending: &[NewMember],
) -> (usize, Option<String>) {
    let known = obs.view.known_ids();
    let held = held_claims(obs);
    let reusable = obs.claims.iter().find(|c| {
        c.shard == shard
            && !c.deleting
            && c.node.as_deref() == Some(node)
            && c.node_id.as_ref().is_none_or(|id| known.contains(id))
            && !obs
                .members
                .iter()
                .any(|m| m.claim() == Some(c.name.as_str()))
            && !pending
                .iter()
                .any(|p| p.reuse_claim.as_deref() == Some(c.name.as_str()))
    });
    if let Some(c) = reusable {
        return (c.member, Some(c.name.clone()));
    }
    let mut used: Vec<usize> = obs
        .live()
        .filter(|m| m.shard == shard)
        .map(|m| m.member)
        .chain(held.iter().filter(|c| c.shard == shard).map(|c| c.member))
        .chain(
            pending
                .iter()
                .filter(|p| p.shard == shard)
                .map(|p| p.member),
        )
        .collect();
    used.sort_unstable();
    let member = (0..=used.len())
        .find(|o| !used.contains(o))
        .unwrap_or(used.len());
    (member, None)
}

/// PVCs of members that are gone and that no member will use again.
pub fn orphaned_claims(obs: &Observed) -> Vec<String> {
    let held = held_claims(obs);
    obs.claims
        .iter()
        .filter(|c| !c.deleting)
        .filter(|c| {
            !obs.members
                .iter()
                .any(|m| !m.finished() && m.claim() == Some(c.name.as_str()))
        })
        .filter(|c| !held.iter().any(|h| h.name == c.name))
        .map(|c| c.name.clone())
        .collect()
}

/// Orphans to delete under `pvcRetentionPolicy: Delete`.
pub fn deletable_claims(obs: &Observed, orphans: &[String]) -> Vec<(String, String)> {
    if obs.shape.retention != PvcRetentionPolicy::Delete {
        return Vec::new();
    }
    orphans
        .iter()
        .map(|c| {
            (
                c.clone(),
                "its member was re-placed and the cluster is healthy again".to_string(),
            )
        })
        .collect()
}

/// Claims whose recorded identity differs from what their member answers as now.
pub fn unrecorded_identities(obs: &Observed) -> Vec<(String, NodeId)> {
    obs.live()
        .filter_map(|m| {
            let claim = m.claim()?;
            let id = obs.view_of(m)?.id();
            let recorded = obs.claims.iter().find(|c| c.name == claim)?;
            (recorded.node_id.as_ref() != Some(id)).then(|| (claim.to_string(), id.clone()))
        })
        .collect()
}
