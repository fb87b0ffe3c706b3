//! "Is this member dead, and who says so": identities the cluster still lists that no member
//! answers as, with Kubernetes' evidence and the voting masters' reports.

use std::net::SocketAddr;

use crate::controller::observe::redis::NodeView;
use crate::controller::observe::{Claim, Observed};
use crate::redis::ids::NodeId;

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

/// Every identity the answering members list that no member answers as. `owners` is the
/// slot map ([`crate::redis::model::ClusterView::slot_owners`]), `held` the claims that stand
/// for members ([`super::claims::held`]).
pub fn identities(obs: &Observed, owners: &[Option<NodeId>], held: &[&Claim]) -> Vec<Gone> {
    let view = &obs.view;
    let voters = view.voting_masters();
    let quorum = voters.len() / 2 + 1;
    view.known_ids()
        .into_iter()
        .filter(|id| view.node(id).is_none())
        .map(|id| {
            let addr = view.addr_of(&id);
            let mut followers: Vec<&NodeView> = view.replicas_of(&id).collect();
            followers.sort_by_key(|f| std::cmp::Reverse(f.replication.master_repl_offset));
            let reported_by = super::unready::reported_unreachable(view, &voters, &id);
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
            Gone {
                flagged_fail: view.flagged_fail(&id),
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
