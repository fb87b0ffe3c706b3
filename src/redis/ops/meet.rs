//! Joining nodes into one cluster with `CLUSTER MEET`, and checking that the join converged.
//!
//! MEET is not reliable in Redis 7.0: it answers OK even when the bus port is blocked, and the
//! handshake entry silently expires after max(node-timeout, 1 s). So the step only counts as
//! done once every node lists every other node as a settled (non-handshake) entry, and it is
//! safe to repeat: pairs that are known or already in handshake are left alone.

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::join_all;

use crate::redis::command::Cmd;
use crate::redis::ids::NodeId;
use crate::redis::model::{ClusterView, NodeObservation};
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};
use crate::redis::reply;

/// How far the nodes are from knowing each other.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeetStatus {
    /// `(observer, unknown)`: the observer has no settled entry for the other node.
    pub unknown_pairs: Vec<(NodeId, NodeId)>,
    /// Handshake entries still pending anywhere.
    pub handshakes: usize,
    /// Known addresses that did not answer.
    pub unreachable: Vec<SocketAddr>,
}

impl MeetStatus {
    /// Every reachable node knows every other, no handshake is pending, and every address
    /// answered.
    pub fn converged(&self) -> bool {
        self.unknown_pairs.is_empty() && self.handshakes == 0 && self.unreachable.is_empty()
    }

    /// Computes the status from a view.
    pub fn of(view: &ClusterView) -> Self {
        Self {
            unknown_pairs: view.unknown_pairs(),
            handshakes: view.handshakes().len(),
            unreachable: view.unreachable.iter().map(|u| u.addr).collect(),
        }
    }
}

/// Whether `observer` has an entry for `target` at its current address (settled or in
/// handshake). A known id at a stale address needs a MEET to learn the new one.
fn has_entry_for(observer: &NodeObservation, target: &NodeObservation) -> bool {
    observer.knows_at(target)
        || observer
            .peers
            .iter()
            .any(|p| p.flags.handshake && p.addr == Some(target.addr))
}

impl ClusterAdmin {
    /// One MEET step: every reachable node that has no entry for the seed (the first reachable
    /// address) is told to MEET it, and the seed is told to MEET nodes it has no entry for.
    /// Gossip through the seed then introduces everyone to everyone. When every reachable
    /// node is fresh (knows nobody, epoch 0), distinct config epochs are set first, as
    /// `redis-cli --cluster create` does, so the new masters do not start with an epoch
    /// collision.
    ///
    /// Returns `AlreadyDone` when the nodes already know each other.
    pub async fn meet(&self) -> Result<StepOutcome, OpError> {
        let view = self.observe().await;
        if MeetStatus::of(&view).converged() {
            return Ok(StepOutcome::AlreadyDone);
        }
        let Some(seed) = view.nodes.first() else {
            return Err(OpError::Precondition("no node is reachable".to_owned()));
        };
        let all_fresh = view
            .nodes
            .iter()
            .all(|n| n.peers.is_empty() && n.info.my_epoch == 0 && n.myself.slots.is_empty());
        if all_fresh && view.nodes.len() > 1 {
            self.set_distinct_epochs(&view).await?;
        }
        let mut meets: Vec<(SocketAddr, Cmd)> = Vec::new();
        for node in view.nodes.iter().skip(1) {
            if !has_entry_for(node, seed) {
                meets.push((
                    node.addr,
                    Cmd::cluster_meet(seed.addr, seed.myself.bus_port),
                ));
            }
            if !has_entry_for(seed, node) {
                meets.push((
                    seed.addr,
                    Cmd::cluster_meet(node.addr, node.myself.bus_port),
                ));
            }
        }
        // Gossip normally fills in the remaining pairs; if a pair stays unknown (e.g. its
        // handshake expired), introduce it directly.
        for (observer, unknown) in view.unknown_pairs() {
            if let (Some(a), Some(b)) = (view.node(&observer), view.node(&unknown))
                && !has_entry_for(a, b)
                && a.id() != seed.id()
                && b.id() != seed.id()
                && a.sees(seed.id()).is_some_and(|e| !e.flags.handshake)
            {
                meets.push((a.addr, Cmd::cluster_meet(b.addr, b.myself.bus_port)));
            }
        }
        if meets.is_empty() {
            // Everything is in flight already; only time (gossip) is needed.
            return Ok(StepOutcome::AlreadyDone);
        }
        let results = join_all(meets.iter().map(|(addr, cmd)| async move {
            let frame = self.call_once(*addr, cmd).await?;
            reply::ok(cmd, frame).map_err(OpError::node(*addr))
        }))
        .await;
        for result in results {
            match result {
                Ok(()) => {}
                // A handshake with that address is already running.
                Err(OpError::Node { source, .. })
                    if source.message_contains("Invalid node address") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(StepOutcome::Applied)
    }

    async fn set_distinct_epochs(&self, view: &ClusterView) -> Result<(), OpError> {
        let results = join_all(view.nodes.iter().enumerate().map(|(i, node)| async move {
            let cmd = Cmd::cluster_set_config_epoch(i as u64 + 1);
            let frame = self.call_once(node.addr, &cmd).await?;
            reply::ok(&cmd, frame).map_err(OpError::node(node.addr))
        }))
        .await;
        for result in results {
            match result {
                Ok(()) => {}
                // The node already has an epoch or knows others: collision handling in Redis
                // takes over, which is only slower.
                Err(OpError::Node { source, .. }) if source.has_code("ERR") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Repeats [`ClusterAdmin::meet`] until every node knows every other, or `limit` passes.
    pub async fn meet_and_wait(&self, limit: Duration) -> Result<(), OpError> {
        let mut last_meet = None::<std::time::Instant>;
        self.poll_until("all nodes knowing each other", limit, || {
            let resend = last_meet.is_none_or(|t| t.elapsed() > Duration::from_secs(1));
            if resend {
                last_meet = Some(std::time::Instant::now());
            }
            async move {
                if resend {
                    self.meet().await?;
                }
                let view = self.observe().await;
                Ok(MeetStatus::of(&view).converged().then_some(()))
            }
        })
        .await
    }
}
