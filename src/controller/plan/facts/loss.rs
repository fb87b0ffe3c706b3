//! The losses Redis itself cannot avoid (reference S6, S8), as facts: which shards wait for
//! their volumes, which leaders' data is gone for good, and whether the majority is lost.
//!
//! * **DataUnavailable** ([`awaited`]): a leader is gone with every follower that had its data
//!   while a volume that may hold the data still exists (its node is down, or its Pod is being
//!   recreated): the shard waits for it. Its slots stay with the lost leader (S6 (c) is never
//!   safe while (a) is still possible).
//! * **DataLoss** ([`data_gone`]): the same double loss with no volume left.
//! * **QuorumLost** ([`quorum_lost`]): a majority of the leaders is gone, so Redis can elect no
//!   one and FORCE cannot win an election.

use super::gone::Gone;
use super::promotion::{Why, follower_to_promote};
use crate::controller::observe::{Claim, Observed};
use crate::redis::ids::{NodeId, SlotRange, ranges_from_slots};

/// A shard whose leader is gone with every follower that had its data, while volumes that
/// may hold that data still exist: the shard waits for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaited<'a> {
    /// The shard.
    pub shard: usize,
    /// The lost leader, which still owns the shard's slots.
    pub leader: Gone,
    /// The identities those volumes record (the leader's, its lost followers').
    pub ids: Vec<NodeId>,
    /// The volumes (not being deleted) recording the leader or one of its lost followers.
    pub claims: Vec<&'a Claim>,
}

/// Identities the cluster lists as followers of `leader` that no member answers as.
pub fn lost_followers(obs: &Observed, leader: &NodeId) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = obs
        .view
        .nodes
        .iter()
        .flat_map(|n| n.peers.iter())
        .filter(|e| e.master_id.as_ref() == Some(leader) && obs.view.node(&e.id).is_none())
        .map(|e| e.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The volumes recording `g` or one of its lost followers, with those identities.
fn volumes<'a>(obs: &'a Observed, g: &Gone) -> (Vec<NodeId>, Vec<&'a Claim>) {
    let mut ids = vec![g.id.clone()];
    ids.extend(lost_followers(obs, &g.id));
    let claims: Vec<&Claim> = obs
        .claims
        .iter()
        .filter(|c| !c.deleting && c.node_id.as_ref().is_some_and(|id| ids.contains(id)))
        .collect();
    ids.retain(|id| claims.iter().any(|c| c.node_id.as_ref() == Some(id)));
    (ids, claims)
}

/// Shards waiting for their data to come back on a volume (S6 with PVCs): a leader that still
/// owns slots is gone, no answering follower ever synced from it, and a volume recording it or
/// one of its lost followers still exists.
pub fn awaited<'a>(obs: &'a Observed, gone: &[Gone]) -> Vec<Awaited<'a>> {
    gone.iter()
        .filter(|g| g.slots > 0 && follower_to_promote(obs, Why::LeaderGone(g)).is_none())
        .filter_map(|g| {
            let (ids, claims) = volumes(obs, g);
            // The volumes are the shard's own: they name it even when no member is left.
            let shard =
                super::shard::shard_of(obs, &g.id).or_else(|| claims.first().map(|c| c.shard))?;
            Some(Awaited {
                shard,
                leader: g.clone(),
                ids,
                claims,
            })
        })
        .filter(|a| !a.claims.is_empty())
        .collect()
}

/// A leader whose data is gone for good: its Pod is gone (or its node is), no follower that
/// ever synced from it answers, and no volume records it or one of its lost followers.
pub fn data_gone(obs: &Observed, g: &Gone) -> bool {
    g.slots > 0
        && g.k8s.is_some()
        && !g.pod_alive
        && g.may_return.is_none()
        && follower_to_promote(obs, Why::LeaderGone(g)).is_none()
        && volumes(obs, g).1.is_empty()
}

/// Leaders lost while no majority of the voting masters answers.
pub fn quorum_lost<'g>(obs: &Observed, gone: &'g [Gone]) -> Vec<&'g Gone> {
    let lost: Vec<&Gone> = gone
        .iter()
        .filter(|g| g.slots > 0 && g.k8s.is_some())
        .collect();
    let answering = obs.view.masters().filter(|m| m.is_serving_master()).count();
    if lost.is_empty() || answering >= obs.view.quorum() {
        return Vec::new();
    }
    lost
}

/// The slot ranges the slot map gives `id`.
pub fn slot_ranges(owners: &[Option<crate::redis::ids::NodeId>], id: &NodeId) -> Vec<SlotRange> {
    ranges_from_slots(
        owners
            .iter()
            .enumerate()
            .filter(|(_, o)| o.as_ref() == Some(id))
            .filter_map(|(s, _)| u16::try_from(s).ok()),
    )
}

/// `0-5460,5461-10922` for messages.
pub fn fmt_ranges(ranges: &[SlotRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
