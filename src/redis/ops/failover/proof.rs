//! The proofs a failover of a gone leader rests on, built from the cluster's own view: that
//! the leader is gone ([`LeaderGone`]), and for a TAKEOVER beside a reachable majority, that
//! nothing else could stand for its slots.

use crate::redis::ids::NodeId;
use crate::redis::model::{ClusterView, NodeObservation};
use crate::redis::ops::OpError;

/// Evidence that a leader is gone, established from a [`ClusterView`]. It cannot be built any
/// other way, so FORCE and TAKEOVER cannot be requested without looking at the cluster first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderGone {
    leader: NodeId,
    observers: usize,
    fail_by: usize,
    pfail_by: usize,
    link_down_by: usize,
    voters_reporting: usize,
    voters_fail: usize,
    quorum: usize,
}

impl LeaderGone {
    /// Establishes the proof: the operator cannot reach the leader, at least one node knows
    /// it, and every reachable node that knows it flags it PFAIL or FAIL or has lost its bus
    /// link to it (a killed process refuses connections at once, long before PFAIL).
    pub fn establish(view: &ClusterView, leader: &NodeId) -> Result<Self, OpError> {
        if let Some(node) = view.node(leader) {
            return Err(OpError::Refused(format!(
                "leader {} answers at {}; it is not gone",
                leader.short(),
                node.addr
            )));
        }
        let voters = view.voting_masters();
        let mut observers = 0;
        let mut fail_by = 0;
        let mut pfail_by = 0;
        let mut link_down_by = 0;
        let mut voters_reporting = 0;
        let mut voters_fail = 0;
        for node in &view.nodes {
            let Some(entry) = node.sees(leader) else {
                continue;
            };
            observers += 1;
            if node.is_master() && voters.contains(node.id()) {
                voters_reporting += 1;
                voters_fail += usize::from(entry.flags.fail);
            }
            if entry.flags.fail {
                fail_by += 1;
            } else if entry.flags.pfail {
                pfail_by += 1;
            } else if entry.reports_unreachable() {
                link_down_by += 1;
            } else {
                return Err(OpError::Refused(format!(
                    "{} still considers leader {} healthy",
                    node.id().short(),
                    leader.short()
                )));
            }
        }
        if observers == 0 {
            return Err(OpError::Refused(format!(
                "no reachable node knows leader {}",
                leader.short()
            )));
        }
        Ok(Self {
            leader: leader.clone(),
            observers,
            fail_by,
            pfail_by,
            link_down_by,
            voters_reporting,
            voters_fail,
            quorum: view.quorum(),
        })
    }

    /// The leader this proof is about.
    pub fn leader(&self) -> &NodeId {
        &self.leader
    }

    /// Some node reports FAIL, which Redis only sets once a majority of masters agreed.
    pub fn agreed_by_cluster(&self) -> bool {
        self.fail_by > 0
    }

    /// A majority of the voting masters (every one of which answered) reports the leader
    /// failing or unreachable on the cluster bus: the cluster's own view, not the operator's
    /// reachability, says it is gone, even before Redis's timers turn that into FAIL.
    pub fn unreachable_for_majority(&self) -> bool {
        self.voters_reporting >= self.quorum
    }

    /// A majority of the voting masters flags the leader FAIL: the agreement they would ask
    /// of an election before voting for its follower.
    pub fn failed_for_majority(&self) -> bool {
        self.voters_fail >= self.quorum
    }

    /// How many reachable nodes flag the leader (FAIL, PFAIL) out of those that know it.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.fail_by, self.pfail_by, self.observers)
    }

    /// How many reachable nodes have lost their bus link to the leader without flagging it
    /// yet.
    pub fn link_down_by(&self) -> usize {
        self.link_down_by
    }
}

/// Nodes other than `replica` that could still stand for `leader`'s slots: every follower of
/// it that answers, and every one the answering nodes list as its follower that fewer than a
/// majority of the voting masters report unreachable (the masters may reach it though the
/// operator does not). A TAKEOVER beside a live rival would be two promotions for one shard.
pub fn rivals(view: &ClusterView, replica: &NodeId, leader: &NodeId) -> Vec<NodeId> {
    let voters = view.voting_masters();
    let listed: std::collections::BTreeSet<&NodeId> = view
        .nodes
        .iter()
        .flat_map(|n| std::iter::once(&n.myself).chain(n.peers.iter()))
        .filter(|e| !e.flags.handshake && e.master_id.as_ref() == Some(leader))
        .map(|e| &e.id)
        .chain(view.replicas_of(leader).map(NodeObservation::id))
        .filter(|id| *id != replica)
        .collect();
    listed
        .into_iter()
        .filter(|id| {
            view.node(id).is_some()
                || view
                    .masters()
                    .filter(|m| voters.contains(m.id()))
                    .filter(|m| m.sees(id).is_some_and(|e| e.reports_unreachable()))
                    .count()
                    < view.quorum()
        })
        .cloned()
        .collect()
}

/// The checks of [`FailoverMode::ElectionStalled`] beyond FORCE's: the voting majority flags
/// the leader FAIL and nothing but `replica` could stand for its slots.
pub(super) fn check_stalled(
    view: &ClusterView,
    replica: &NodeId,
    leader: &NodeId,
    fresh: &LeaderGone,
) -> Result<(), OpError> {
    if !fresh.failed_for_majority() {
        return Err(OpError::Refused(format!(
            "only {} voting master(s) flag {} FAIL, {} needed: without their agreement a \
             TAKEOVER is not what an election would have decided",
            fresh.voters_fail,
            leader.short(),
            fresh.quorum
        )));
    }
    let rivals = rivals(view, replica, leader);
    if !rivals.is_empty() {
        return Err(OpError::Refused(format!(
            "{} may still stand for {}'s slots; a TAKEOVER beside them would be two promotions \
             for one shard",
            rivals
                .iter()
                .map(NodeId::short)
                .collect::<Vec<_>>()
                .join(", "),
            leader.short()
        )));
    }
    Ok(())
}
