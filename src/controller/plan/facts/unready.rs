//! "Is this member dead" for a member that answers from a node that is not Ready: Kubernetes'
//! Ready condition against what the member and the cluster say now.
//!
//! A node turns NotReady when its kubelet stops renewing its lease for the grace period; that
//! says nothing about the processes it runs. Judged by the node alone, members were replaced
//! while they served: a node under load missed its heartbeats for a few seconds (every member
//! on it replaced, then the replacements deleted again when it came back), and a node
//! returning from a crash ran its Pods (with their volumes and data) a second before the node
//! controller saw it Ready again. A member that answers is kept when either side vouches for
//! it; only one the cluster itself cannot reach (a partition: the voting masters report it
//! unreachable) and that has run since before its node went NotReady is treated as lost.

use std::borrow::Cow;
use std::collections::BTreeSet;

use redis_scheduler::{NodeStatus, Topology};

use crate::controller::observe::Observed;
use crate::controller::observe::pods::Member;
use crate::redis::ids::NodeId;
use crate::redis::model::ClusterView;

/// How many of `voters` (the voting masters, [`ClusterView::voting_masters`], computed once by
/// the caller: it walks every node's slot map) report `id` failing or unreachable on the bus.
pub fn reported_unreachable(view: &ClusterView, voters: &BTreeSet<NodeId>, id: &NodeId) -> usize {
    view.masters()
        .filter(|m| voters.contains(m.id()))
        .filter(|m| m.id() != id)
        .filter(|m| m.sees(id).is_some_and(|e| e.reports_unreachable()))
        .count()
}

/// Whether `m`, on a node that is not Ready, is evidently alive: it answers, and either fewer
/// than a majority of `voters` report it unreachable, or its redis container started after its
/// node's Ready condition last changed (the kubelet runs it again; the node controller has
/// yet to say so).
fn vouched(obs: &Observed, voters: &BTreeSet<NodeId>, m: &Member) -> bool {
    let Some(view) = obs.view_of(m) else {
        return false;
    };
    if m.terminating() {
        return false;
    }
    let quorum = voters.len() / 2 + 1;
    let cluster_reaches = reported_unreachable(&obs.view, voters, view.id()) < quorum;
    let restarted_since = m.node().and_then(|n| obs.nodes.get(n)).is_some_and(|n| {
        matches!((m.running_since(), n.ready_changed), (Some(started), Some(changed)) if started > changed)
    });
    cluster_reaches || restarted_since
}

/// The nodes that are not Ready but host a member [`vouched`] for.
pub fn vouched_nodes(obs: &Observed) -> BTreeSet<&str> {
    let mut on_unready = obs
        .live()
        .filter_map(|m| Some((m, m.node()?)))
        .filter(|(_, n)| !obs.node_ready(n))
        .peekable();
    if on_unready.peek().is_none() {
        return BTreeSet::new();
    }
    let voters = obs.view.voting_masters();
    on_unready
        .filter(|(m, _)| vouched(obs, &voters, m))
        .map(|(_, n)| n)
        .collect()
}

/// The topology the placement solves over: a not-Ready node that hosts a vouched-for member
/// counts as schedulable, so its member stays where it is. No new member lands there: one
/// member per node, and the vouched-for one holds its seat.
pub fn topology(obs: &Observed) -> Cow<'_, Topology> {
    let vouched = vouched_nodes(obs);
    if vouched.is_empty() {
        return Cow::Borrowed(&obs.topology);
    }
    let mut topology = obs.topology.clone();
    for node in &mut topology.nodes {
        if node.status == NodeStatus::NotReady && vouched.contains(node.name.as_str()) {
            node.status = NodeStatus::Schedulable;
        }
    }
    Cow::Owned(topology)
}
