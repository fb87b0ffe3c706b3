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

/// One introduction: tell the node at `on` to `CLUSTER MEET` the node at `meet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeetPair {
    /// The node that is told.
    pub on: SocketAddr,
    /// The node it is introduced to.
    pub meet: SocketAddr,
    /// That node's cluster bus port, when known.
    pub bus_port: Option<u16>,
}

/// The introductions that make `nodes` one cluster: the one definition of "who meets whom",
/// used by the planner (the step carries them) and by [`ClusterAdmin::meet`].
///
/// Every node with no entry for the seed (the first node) meets it, and the seed meets every
/// node it has no entry for: gossip through the seed then introduces everyone to everyone.
/// A pair that gossip left unknown (its handshake expired) is introduced directly, once both
/// already know the seed. Pairs known or in handshake are left alone, so repeating is safe.
pub fn pairs_to_introduce(nodes: &[&NodeObservation]) -> Vec<MeetPair> {
    let Some(seed) = nodes.first() else {
        return Vec::new();
    };
    let pair = |on: &NodeObservation, meet: &NodeObservation| MeetPair {
        on: on.addr,
        meet: meet.addr,
        bus_port: meet.myself.bus_port,
    };
    let mut out = Vec::new();
    for node in nodes.iter().skip(1) {
        if !has_entry_for(node, seed) {
            out.push(pair(node, seed));
        }
        if !has_entry_for(seed, node) {
            out.push(pair(seed, node));
        }
    }
    for a in nodes.iter().skip(1) {
        for b in nodes.iter().skip(1) {
            if a.id() != b.id()
                && !a.knows_at(b)
                && !has_entry_for(a, b)
                && a.sees(seed.id()).is_some_and(|e| !e.flags.handshake)
            {
                out.push(pair(a, b));
            }
        }
    }
    out
}

impl ClusterAdmin {
    /// One MEET step over a fresh observation: the introductions [`pairs_to_introduce`] finds.
    ///
    /// Returns `AlreadyDone` when the nodes already know each other.
    pub async fn meet(&self) -> Result<StepOutcome, OpError> {
        let view = self.observe().await;
        let nodes: Vec<&NodeObservation> = view.nodes.iter().collect();
        self.meet_pairs(&pairs_to_introduce(&nodes)).await
    }

    /// Sends the planned introductions that are still needed. Preconditions are re-checked on
    /// a fresh observation: a pair whose node already has an entry for the other (settled or in
    /// handshake) is skipped. When every reachable node is fresh (knows nobody, epoch 0),
    /// distinct config epochs are set first, as `redis-cli --cluster create` does, so the new
    /// masters do not start with an epoch collision.
    ///
    /// Returns `AlreadyDone` when nothing was left to send.
    pub async fn meet_pairs(&self, pairs: &[MeetPair]) -> Result<StepOutcome, OpError> {
        let view = self.observe().await;
        if MeetStatus::of(&view).converged() {
            return Ok(StepOutcome::AlreadyDone);
        }
        if view.nodes.is_empty() {
            return Err(OpError::Precondition("no node is reachable".to_owned()));
        }
        let all_fresh = view
            .nodes
            .iter()
            .all(|n| n.peers.is_empty() && n.info.my_epoch == 0 && n.myself.slots.is_empty());
        if all_fresh && view.nodes.len() > 1 {
            self.set_distinct_epochs(&view).await?;
        }
        let needed = |p: &&MeetPair| match (view.node_at(p.on), view.node_at(p.meet)) {
            (Some(on), Some(meet)) => !has_entry_for(on, meet),
            // The target did not answer this time: introducing it costs nothing and is what
            // the plan saw as needed.
            (Some(_), None) => true,
            (None, _) => false,
        };
        let meets: Vec<(SocketAddr, Cmd)> = pairs
            .iter()
            .filter(needed)
            .map(|p| (p.on, Cmd::cluster_meet(p.meet, p.bus_port)))
            .collect();
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
