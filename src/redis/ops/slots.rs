//! Assigning slot ranges to masters with `CLUSTER ADDSLOTSRANGE`, and waiting for the
//! cluster to agree on the slot map.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::redis::command::Cmd;
use crate::redis::ids::{SlotRange, ranges_from_slots};
use crate::redis::model::ClusterView;
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};
use crate::redis::reply;

/// Whether every observed node names the same owner for every slot it knows about and reports
/// `cluster_state:ok`, with full coverage, no open slots, and nobody failing.
pub fn cluster_settled(view: &ClusterView) -> bool {
    if !view.is_healthy() {
        return false;
    }
    let reference = view.slot_owners();
    view.nodes.iter().all(|observer| {
        let mut seen = vec![None; reference.len()];
        for entry in std::iter::once(&observer.myself).chain(observer.peers.iter()) {
            for range in &entry.slots {
                for slot in range.slots() {
                    if let Some(s) = seen.get_mut(usize::from(slot)) {
                        *s = Some(&entry.id);
                    }
                }
            }
        }
        seen.iter()
            .zip(reference.iter())
            .all(|(a, b)| *a == b.as_ref())
    })
}

impl ClusterAdmin {
    /// Assigns `ranges` to the master at `node`. Slots it already serves are skipped; slots any
    /// other node serves make the step fail without sending anything (ADDSLOTS would otherwise
    /// assign some ranges and reject others). The effect is verified on the node's own
    /// `CLUSTER NODES`.
    pub async fn add_slot_ranges(
        &self,
        node: SocketAddr,
        ranges: &[SlotRange],
    ) -> Result<StepOutcome, OpError> {
        let view = self.observe().await;
        let me = Self::require_at(&view, node)?;
        if !me.is_master() {
            return Err(OpError::Precondition(format!(
                "{} ({node}) is a replica; only masters serve slots",
                me.id().short()
            )));
        }
        let wanted: BTreeSet<u16> = ranges.iter().flat_map(SlotRange::slots).collect();
        let owners = view.slot_owners();
        let mut missing = Vec::new();
        let mut taken = Vec::new();
        for slot in &wanted {
            match owners.get(usize::from(*slot)).cloned().flatten() {
                Some(owner) if &owner == me.id() => {}
                Some(owner) => taken.push((*slot, owner)),
                None if me.myself.owns(*slot) => {}
                None => missing.push(*slot),
            }
        }
        if let Some((slot, owner)) = taken.first() {
            return Err(OpError::Precondition(format!(
                "{} slot(s) are already served by other nodes, e.g. slot {slot} by {}",
                taken.len(),
                owner.short()
            )));
        }
        if missing.is_empty() {
            return Ok(StepOutcome::AlreadyDone);
        }
        let cmd = Cmd::cluster_addslotsrange(&ranges_from_slots(missing.iter().copied()));
        let frame = self.call_once(node, &cmd).await?;
        reply::ok(&cmd, frame).map_err(OpError::node(node))?;
        let after = self.observe_node(node).await?;
        let absent: Vec<u16> = missing
            .iter()
            .copied()
            .filter(|s| !after.myself.owns(*s))
            .collect();
        if !absent.is_empty() {
            return Err(OpError::Verification(format!(
                "{node} accepted ADDSLOTSRANGE but does not serve {} of the slots",
                absent.len()
            )));
        }
        Ok(StepOutcome::Applied)
    }

    /// Waits until [`cluster_settled`] holds.
    pub async fn wait_cluster_settled(&self, limit: Duration) -> Result<ClusterView, OpError> {
        self.poll_until(
            "cluster_state ok with an agreed slot map",
            limit,
            || async {
                let view = self.observe().await;
                Ok(cluster_settled(&view).then_some(view))
            },
        )
        .await
    }
}
