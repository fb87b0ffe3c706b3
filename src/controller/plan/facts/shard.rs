//! The one answer to each question about a shard: who leads it ([`serving_leader`],
//! [`shard_leader`]), whether a follower is in sync ([`in_sync`]), and which shard a Redis
//! identity belongs to ([`shard_of`]).

use crate::controller::observe::Observed;
use crate::controller::observe::redis::NodeView;
use crate::redis::ids::NodeId;
use crate::redis::sync::{SyncBar, follower_in_sync};

/// "Who leads": the first serving master among `views` (a shard's members).
pub fn serving_leader<'a>(mut views: impl Iterator<Item = &'a NodeView>) -> Option<&'a NodeView> {
    views.find(|v| v.is_serving_master())
}

/// The serving leader of `shard` among its members that have not finished.
pub fn shard_leader(obs: &Observed, shard: usize) -> Option<&NodeView> {
    serving_leader(
        obs.members
            .iter()
            .filter(|m| m.shard == shard && !m.finished())
            .filter_map(|m| obs.view_of(m)),
    )
}

/// Whether `follower` is a usable copy of `leader` now ([`SyncBar::Healthy`]).
pub fn in_sync(follower: &NodeView, leader: &NodeView) -> bool {
    follower_in_sync(follower, leader, SyncBar::Healthy)
}

/// The shard a Redis identity belongs to: the member answering as it, else the shard of the
/// members following it, else the PVC recording it, else the last written status. Never its
/// slots: resharding moves them.
pub fn shard_of(obs: &Observed, id: &NodeId) -> Option<usize> {
    if let Some(m) = obs.member_with_id(id) {
        return Some(m.shard);
    }
    if let Some(f) = obs.view.replicas_of(id).next()
        && let Some(m) = obs.member_at(f.addr)
    {
        return Some(m.shard);
    }
    obs.claims
        .iter()
        .find(|c| c.node_id.as_ref() == Some(id))
        .map(|c| c.shard)
        .or_else(|| obs.recorded_shards.get(id).copied())
}
