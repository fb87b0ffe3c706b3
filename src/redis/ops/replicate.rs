//! Attaching a follower to a leader (`CLUSTER REPLICATE`) and judging whether it is in sync.
//!
//! "In sync" is decided by replication offsets, not key counts: equal key counts say nothing
//! about equal values, and a replica can hold the right number of keys from an old history.

use std::net::SocketAddr;
use std::time::Duration;

use crate::redis::command::Cmd;
use crate::redis::ids::NodeId;
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};
use crate::redis::reply;

/// The replication state of one follower relative to its leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncState {
    /// The follower's id.
    pub follower: NodeId,
    /// The leader it replicates.
    pub leader: NodeId,
    /// `master_link_status:up` on the follower.
    pub link_up: bool,
    /// A full sync is still running.
    pub sync_in_progress: bool,
    /// The leader's `master_repl_offset`, read before the follower's.
    pub leader_offset: u64,
    /// The follower's processed offset (`slave_repl_offset`).
    pub follower_offset: u64,
    /// Follower and leader hold the same replication history (same replid).
    pub same_history: bool,
}

impl SyncState {
    /// Bytes of the leader's stream the follower has not processed, as of the observation.
    pub fn lag_bytes(&self) -> u64 {
        self.leader_offset.saturating_sub(self.follower_offset)
    }

    /// The follower had processed everything the leader had written when the leader was read,
    /// over a live link, on the same history (a replica adopts its leader's replid only when a
    /// sync completes, so this also rules out a follower that never synced).
    pub fn in_sync(&self) -> bool {
        crate::redis::sync::in_sync(
            &crate::redis::sync::Replication {
                link_up: self.link_up,
                sync_in_progress: self.sync_in_progress,
                same_history: Some(self.same_history),
                leader_offset: self.leader_offset,
                follower_offset: self.follower_offset,
            },
            crate::redis::sync::SyncBar::CaughtUp,
        )
    }
}

impl ClusterAdmin {
    /// Makes the node at `follower` a replica of `leader`. Repeating it when the follower
    /// already replicates `leader` sends nothing.
    ///
    /// Preconditions: the follower knows the leader as a settled, non-failing master; the
    /// follower is either a master with no slots and no keys (Redis refuses otherwise, and
    /// a master with keys would lose them) or a replica of some other master.
    pub async fn replicate(
        &self,
        follower: SocketAddr,
        leader: &NodeId,
    ) -> Result<StepOutcome, OpError> {
        let me = self.observe_node(follower).await?;
        if me.id() == leader {
            return Err(OpError::Precondition(format!(
                "{follower} cannot replicate itself"
            )));
        }
        if !me.is_master() && me.myself.master_id.as_ref() == Some(leader) {
            return Ok(StepOutcome::AlreadyDone);
        }
        let Some(entry) = me.sees(leader) else {
            return Err(OpError::Precondition(format!(
                "{follower} does not know {} yet (MEET first)",
                leader.short()
            )));
        };
        if entry.flags.handshake || !entry.is_master() || entry.flags.failing() {
            return Err(OpError::Precondition(format!(
                "{} is not a healthy master as seen from {follower}",
                leader.short()
            )));
        }
        if me.is_master() {
            if !me.myself.slots.is_empty() {
                return Err(OpError::Precondition(format!(
                    "{follower} serves {} slot(s); move them away before it can follow",
                    me.myself.slot_count()
                )));
            }
            if me.keys != Some(0) {
                return Err(OpError::Refused(format!(
                    "{follower} is a master holding {:?} key(s); replicating would discard them",
                    me.keys
                )));
            }
        }
        let cmd = Cmd::cluster_replicate(leader);
        let frame = self.call_once(follower, &cmd).await?;
        reply::ok(&cmd, frame).map_err(OpError::node(follower))?;
        let after = self.observe_node(follower).await?;
        if after.myself.master_id.as_ref() != Some(leader) || after.is_master() {
            return Err(OpError::Verification(format!(
                "{follower} accepted CLUSTER REPLICATE but does not list {} as its master",
                leader.short()
            )));
        }
        Ok(StepOutcome::Applied)
    }

    /// Reads the follower's replication state: the leader's offset first, then the
    /// follower's, so `in_sync` means "had everything the leader had at that moment".
    pub async fn follower_sync_state(&self, follower: SocketAddr) -> Result<SyncState, OpError> {
        let first = self.observe_node(follower).await?;
        let Some(leader) = first
            .myself
            .master_id
            .clone()
            .filter(|_| !first.is_master())
        else {
            return Err(OpError::Precondition(format!(
                "{follower} is not a replica"
            )));
        };
        let leader_addr =
            first
                .sees(&leader)
                .and_then(|e| e.addr)
                .ok_or_else(|| OpError::Unreachable {
                    id: leader.clone(),
                    addr: None,
                })?;
        let leader_obs = self.observe_node(leader_addr).await?;
        if leader_obs.id() != &leader {
            return Err(OpError::Precondition(format!(
                "{leader_addr} is now {}, not the leader {}",
                leader_obs.id().short(),
                leader.short()
            )));
        }
        let me = self.observe_node(follower).await?;
        let link = me.replication.replica_link().cloned();
        Ok(SyncState {
            follower: me.id().clone(),
            leader,
            link_up: link.as_ref().is_some_and(|l| l.link_up),
            sync_in_progress: link.as_ref().is_some_and(|l| l.sync_in_progress),
            leader_offset: leader_obs.replication.master_repl_offset,
            follower_offset: link.map_or(0, |l| l.repl_offset),
            same_history: me.replication.master_replid == leader_obs.replication.master_replid,
        })
    }

    /// Waits until [`SyncState::in_sync`] holds for the follower.
    pub async fn wait_follower_in_sync(
        &self,
        follower: SocketAddr,
        limit: Duration,
    ) -> Result<SyncState, OpError> {
        self.poll_until("follower in sync", limit, || async {
            match self.follower_sync_state(follower).await {
                Ok(state) if state.in_sync() => Ok(Some(state)),
                Ok(_) => Ok(None),
                Err(e) if e.is_transient() => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }
}
