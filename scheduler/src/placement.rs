//! Output of the solver: where every member runs and how to get there.

use serde::{Deserialize, Serialize};

use crate::model::Role;

/// A solved placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// One entry per shard, by index `0..L`.
    pub shards: Vec<ShardPlacement>,
    /// Ordered steps from the current members to this placement (see [`Change`]).
    pub changes: Vec<Change>,
    /// Whether losing any one zone leaves a majority of leaders alive and every shard a
    /// member to promote, so that Redis can fail over on its own.
    pub zone_loss_safe: bool,
    /// `zone_loss_safe` in words, with advice when it is false.
    pub zone_loss_reason: String,
    /// Leaders the placement puts in every zone that has capacity, zone names sorted.
    pub leaders_per_zone: Vec<ZoneCount>,
    /// The leader cap ⌈L / Z⌉ that was enforced (Z = zones with capacity).
    pub leader_cap: u32,
    /// True when `Spread::Preferred` could not meet Required's guarantees: members of a shard
    /// may share a zone, sit on unlabeled nodes, and leaders may exceed the cap.
    pub spread_relaxed: bool,
    /// Other facts an SRE should know, e.g. nodes ignored for lacking the zone label.
    pub notes: Vec<String>,
}

/// Leaders in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneCount {
    /// Zone name; `""` for nodes without the zone label.
    pub zone: String,
    /// Number of leaders.
    pub leaders: u32,
    /// Number of members, leaders included.
    pub members: u32,
}

/// The members of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardPlacement {
    /// Shard index, 0-based.
    pub index: u32,
    /// Leader first, then followers sorted by node name.
    pub members: Vec<PlannedMember>,
}

/// One member of a planned shard. A member is identified by its shard index and node name:
/// a shard never has two members on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedMember {
    /// Role after the plan is carried out.
    pub role: Role,
    /// Node name.
    pub node: String,
    /// The node's zone; `""` when the node has no zone label.
    pub zone: String,
}

/// One step of a plan. Serialized with an `op` tag:
///
/// - `{"op":"create","shard":0,"role":"follower","node":"n4","zone":"zone-b","reason":"…"}`
/// - `{"op":"failover","shard":0,"to":"n4","from":"n1","reason":"…"}` (`from` omitted when
///   the shard has no current leader)
/// - `{"op":"remove","shard":0,"role":"leader","node":"n1","reason":"…"}`
///
/// The list is ordered in phases, each sorted by shard then node:
/// 1. `remove` of members that serve nothing (unhealthy, or their node is gone);
/// 2. `remove` of healthy members whose node slot a create below needs (only when a node is
///    full);
/// 3. `create` — a member joins as a follower of its shard and syncs; it is created as
///    `leader` only when its shard has no member left (a new shard, or all members lost);
/// 4. `failover` — a graceful failover to `to`, a synced follower;
/// 5. `remove` of the remaining members the plan drops. Removing a shard beyond L is only
///    safe after its hash slots have been migrated away; that is the controller's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "op")]
pub enum Change {
    /// Start a new member.
    Create {
        /// Shard index.
        shard: u32,
        /// Role the member starts with.
        role: Role,
        /// Target node.
        node: String,
        /// The node's zone (`""` when unlabeled).
        zone: String,
        /// Why, in words.
        reason: String,
    },
    /// Make `to` the leader of the shard.
    Failover {
        /// Shard index.
        shard: u32,
        /// Node of the member that becomes leader.
        to: String,
        /// Node of the current leader, if the shard has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// Why, in words.
        reason: String,
    },
    /// Stop a member and delete it.
    Remove {
        /// Shard index.
        shard: u32,
        /// Role the member has now.
        role: Role,
        /// Node the member runs on.
        node: String,
        /// Why, in words.
        reason: String,
    },
}

impl Change {
    /// The shard the change applies to.
    pub fn shard(&self) -> u32 {
        match self {
            Change::Create { shard, .. }
            | Change::Failover { shard, .. }
            | Change::Remove { shard, .. } => *shard,
        }
    }
}

impl Placement {
    /// The planned member of `shard` on `node`, if any.
    pub fn member(&self, shard: u32, node: &str) -> Option<&PlannedMember> {
        self.shards
            .get(usize::try_from(shard).ok()?)?
            .members
            .iter()
            .find(|m| m.node == node)
    }
}
