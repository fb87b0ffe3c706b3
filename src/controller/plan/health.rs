//! The single definitions every concern of the planner shares: "is this follower in sync", "is
//! this Redis identity gone, and who says so", and which shard a member belongs to.

use std::net::SocketAddr;

use crate::controller::observe::Observed;
use crate::controller::observe::redis::NodeView;
use crate::redis::ids::NodeId;

/// How far a follower's offset may trail its leader's and still count as in sync.
pub const SYNC_LAG_BYTES: u64 = 1024 * 1024;

/// Whether a follower's replication link is up and its offset close to the leader's.
pub fn in_sync(follower: &NodeView, leader: &NodeView) -> bool {
    follower.master_id() == Some(leader.id())
        && follower.replication.replica_link().is_some_and(|l| {
            l.link_up
                && !l.sync_in_progress
                && leader
                    .replication
                    .master_repl_offset
                    .saturating_sub(l.repl_offset)
                    <= SYNC_LAG_BYTES
        })
}

/// A Redis identity that the cluster still lists but no member answers as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    /// The node id.
    pub id: NodeId,
    /// Its address as the cluster knows it.
    pub addr: Option<SocketAddr>,
    /// Slots the cluster still attributes to it.
    pub slots: usize,
    /// Answering members that replicate it, best offset first.
    pub followers: Vec<NodeId>,
    /// Kubernetes' evidence that its process is not running, in words; `None` when its Pod
    /// looks alive (then only time will tell).
    pub k8s: Option<String>,
    /// A Pod that is not being deleted, on a Ready node, still holds its address: its
    /// process may come back (restarting, held by the start gate) with whatever its volume
    /// kept.
    pub pod_alive: bool,
    /// Voting masters that report it failing or unreachable on the cluster bus.
    pub reported_by: usize,
    /// Voting masters needed for a majority.
    pub quorum: usize,
    /// Some member flags it `fail`: the cluster agreed it failed, so Redis's own election of
    /// a follower is under way.
    pub flagged_fail: bool,
    /// A PVC on a usable node records this identity and has no Pod: the member may come back
    /// with it (its Pod is being recreated), so it must not be forgotten.
    pub may_return: Option<String>,
}

impl Gone {
    /// Death confirmed from both sides: Kubernetes says the process is not running, and a
    /// majority of the voting masters' own views agree it is unreachable. Never the operator's
    /// reachability alone (reference S10).
    pub fn confirmed(&self) -> bool {
        self.k8s.is_some() && self.reported_by >= self.quorum
    }

    /// The follower to promote in its place, with its shard: the answering follower with the
    /// highest offset, never one that never synced (it would serve the slots empty, S19).
    pub fn best_follower<'a>(&self, obs: &'a Observed) -> Option<(&'a NodeView, usize)> {
        let best = self
            .followers
            .iter()
            .filter_map(|id| obs.view.node(id))
            .find(|f| f.replication.master_repl_offset > 0)?;
        Some((best, obs.member_at(best.addr)?.shard))
    }

    /// One line for conditions and events.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}; {} voting master(s) report it unreachable, {} needed)",
            self.id.short(),
            self.k8s
                .as_deref()
                .unwrap_or("its pod still looks alive to Kubernetes"),
            self.reported_by,
            self.quorum
        )
    }
}

/// Every identity the answering members list that no member answers as.
pub fn gone_identities(obs: &Observed) -> Vec<Gone> {
    let view = &obs.view;
    let owners = view.slot_owners();
    let voters = view.voting_masters();
    let quorum = view.quorum();
    let held = super::members::held_claims(obs);
    view.known_ids()
        .into_iter()
        .filter(|id| view.node(id).is_none())
        .map(|id| {
            let addr = view.addr_of(&id);
            let mut followers: Vec<&NodeView> = view.replicas_of(&id).collect();
            followers.sort_by_key(|f| std::cmp::Reverse(f.replication.master_repl_offset));
            let reported_by = view
                .masters()
                .filter(|m| voters.contains(m.id()))
                .filter(|m| {
                    m.sees(&id).is_some_and(|e| {
                        e.flags.failing() || !e.link_connected || e.flags.noaddr || e.addr.is_none()
                    })
                })
                .count();
            // Only a volume the members planner will bring back (one its shard still needs)
            // keeps an identity: one whose shard was made whole elsewhere meanwhile (its node
            // was lost, then returned) is gone for good.
            let may_return = held
                .iter()
                .find(|c| {
                    c.node_id.as_ref() == Some(&id)
                        && c.node.as_deref().is_some_and(|n| obs.node_ready(n))
                })
                .map(|c| c.name.clone());
            let pod_alive = addr.and_then(|a| obs.member_at(a)).is_some_and(|m| {
                !m.terminating()
                    && m.node().is_some_and(|n| obs.node_ready(n))
                    && obs.view_of(m).is_none()
            });
            let flagged_fail = view
                .nodes
                .iter()
                .any(|n| n.sees(&id).is_some_and(|e| e.flags.fail));
            Gone {
                flagged_fail,
                pod_alive,
                slots: owners.iter().flatten().filter(|o| **o == id).count(),
                followers: followers.iter().map(|f| f.id().clone()).collect(),
                k8s: k8s_evidence(obs, addr),
                reported_by,
                quorum,
                may_return,
                addr,
                id,
            }
        })
        .collect()
}

/// Why Kubernetes says nothing runs at `addr` any more, or `None` if a live Pod holds it and
/// its container runs.
fn k8s_evidence(obs: &Observed, addr: Option<SocketAddr>) -> Option<String> {
    let Some(addr) = addr else {
        return Some("the cluster knows no address for it".to_string());
    };
    let Some(m) = obs.member_at(addr) else {
        return Some(format!("no pod holds its address {} any more", addr.ip()));
    };
    if m.terminating() {
        return Some(format!("pod {} is being deleted", m.name()));
    }
    if let Some(node) = m.node()
        && !obs.node_ready(node)
    {
        return Some(format!("node {node} of pod {} is not ready", m.name()));
    }
    if let Some(v) = obs.view_of(m) {
        return Some(format!(
            "pod {} now answers as {} (restarted without its identity)",
            m.name(),
            v.id().short()
        ));
    }
    if m.process_down() {
        return Some(format!(
            "the redis container of pod {} is not running (stopped or restarted)",
            m.name()
        ));
    }
    None
}

/// The shard a Redis identity belongs to: the member answering as it, else the shard of the
/// members following it, else the PVC recording it.
pub fn shard_of(obs: &Observed, id: &NodeId) -> Option<usize> {
    if let Some(m) = obs.member_with_id(id) {
        return Some(m.shard);
    }
    if let Some(f) = obs.view.replicas_of(id).next()
        && let Some(m) = obs.member_at(f.addr)
    {
        return Some(m.shard);
    }
    if let Some(c) = obs.claims.iter().find(|c| c.node_id.as_ref() == Some(id)) {
        return Some(c.shard);
    }
    // Nothing of the shard is left: the slots it owns tell (shard i owns the i-th even range
    // until resharding exists).
    let first = obs
        .view
        .slot_owners()
        .iter()
        .position(|o| o.as_ref() == Some(id))
        .and_then(|s| u16::try_from(s).ok())?;
    crate::redis::ids::even_ranges(obs.shape.leaders)
        .iter()
        .position(|r| r.contains(first))
}
