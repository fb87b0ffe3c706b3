//! Pure: which shards a backup takes, and where each shard's snapshot comes from.
//!
//! A backup is consistent per shard, anchored at its start: for each shard, the leader's
//! replication offset when the backup started is recorded, and the snapshot is taken from a
//! member that has processed at least that much. So every write acknowledged before the start
//! (by the leader, and by `WAIT` to a follower) is in the backup.
//!
//! The slot map is part of that anchor. Shards are snapshotted one after another, so a slot
//! moved between two snapshots would put its keys in both (or in neither): a backup whose
//! shards no longer own exactly the slots they had at the start fails instead of being trusted.

use crate::redis::ids::{NodeId, SlotRange};
use crate::redis::model::{ClusterView, NodeObservation};
use crate::redis::sync::{SyncBar, follower_in_sync};

/// A shard as recorded when the backup started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardAtStart {
    /// Position in slot order.
    pub index: usize,
    /// Its slots.
    pub slots: Vec<SlotRange>,
    /// Its leader then.
    pub leader: NodeId,
    /// The leader's `master_repl_offset` then.
    pub leader_offset: u64,
}

/// Why a backup cannot start now (the caller waits and looks again).
pub fn not_startable(view: &ClusterView) -> Option<String> {
    let uncovered = view.uncovered_slots();
    if !uncovered.is_empty() {
        return Some(format!(
            "{} slot range(s) not served (first {}): waiting for the cluster to serve every slot",
            uncovered.len(),
            uncovered[0]
        ));
    }
    if !view.conflicting_slots().is_empty() {
        return Some("members disagree on slot owners: waiting for them to agree".into());
    }
    if let Some(open) = view.open_slots().first() {
        return Some(format!(
            "slot {} is migrating (a reshard is under way): waiting for it to finish",
            open.slot
        ));
    }
    None
}

/// The shards at the start: every master serving slots, in slot order.
pub fn shards_at_start(view: &ClusterView) -> Vec<ShardAtStart> {
    let mut masters: Vec<&NodeObservation> =
        view.masters().filter(|m| !m.slots().is_empty()).collect();
    masters.sort_by_key(|m| m.slots().iter().map(|r| r.start).min());
    masters
        .into_iter()
        .enumerate()
        .map(|(index, m)| ShardAtStart {
            index,
            slots: m.slots().to_vec(),
            leader: m.id().clone(),
            leader_offset: m.replication.master_repl_offset,
        })
        .collect()
}

/// Slot ranges as text, `0-5460,5462`.
pub fn slots_text(slots: &[SlotRange]) -> String {
    slots
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses [`slots_text`].
pub fn parse_slots(text: &str) -> Option<Vec<SlotRange>> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            SlotRange::new(a.trim().parse().ok()?, b.trim().parse().ok()?).ok()
        })
        .collect()
}

/// Where a shard's snapshot comes from now.
#[derive(Clone, Debug)]
pub enum Source<'a> {
    /// An in-sync follower of the shard's current leader (the leader does not fork).
    Follower(&'a NodeObservation),
    /// The leader itself: the cluster has no followers (`followersPerLeader: 0`).
    Leader(&'a NodeObservation),
    /// Not now; why.
    Wait(String),
    /// Never: the shard's slots moved since the backup started.
    SlotsMoved(String),
}

/// The source of `shard`'s snapshot in `view`. With followers wanted, only an in-sync
/// follower of the shard's current leader (a failover since the start is fine: the new
/// leader's history continues the old one's offsets); the most advanced one when several are.
pub fn source_for<'a>(view: &'a ClusterView, shard: &ShardAtStart, followers: usize) -> Source<'a> {
    let Some(first) = shard.slots.first() else {
        return Source::SlotsMoved(format!("shard {} has no slots", shard.index));
    };
    let Some(owner) = view.slot_owner(first.start) else {
        return Source::Wait(format!(
            "slot {} of shard {} is not served now",
            first.start, shard.index
        ));
    };
    let Some(leader) = view.node(&owner) else {
        return Source::Wait(format!(
            "the leader of shard {} ({}) does not answer",
            shard.index,
            owner.short()
        ));
    };
    let mut owned = leader.slots().to_vec();
    owned.sort();
    let mut recorded = shard.slots.clone();
    recorded.sort();
    if owned != recorded {
        return Source::SlotsMoved(format!(
            "shard {} held slots {} when the backup started and {} now (a reshard ran during the backup)",
            shard.index,
            slots_text(&recorded),
            slots_text(&owned)
        ));
    }
    if followers == 0 {
        return Source::Leader(leader);
    }
    view.replicas_of(leader.id())
        .filter(|f| follower_in_sync(f, leader, SyncBar::Healthy))
        .max_by_key(|f| f.replication.replica_link().map(|l| l.repl_offset))
        .map_or_else(
            || {
                Source::Wait(format!(
                    "shard {} has no in-sync follower (the snapshot is taken from one so that its leader does not fork)",
                    shard.index
                ))
            },
            Source::Follower,
        )
}

/// The replication offset a source has processed (a follower's `slave_repl_offset`, a
/// leader's `master_repl_offset`).
pub fn processed_offset(node: &NodeObservation) -> u64 {
    node.replication
        .replica_link()
        .map_or(node.replication.master_repl_offset, |l| l.repl_offset)
}

#[cfg(test)]
#[path = "shards_tests.rs"]
mod tests;
