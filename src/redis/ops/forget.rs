//! Removing a node id from every node's table with `CLUSTER FORGET`.
//!
//! FORGET bans the id for 60 s on the node that ran it. A node that did not forget it yet
//! gossips it back to the others once their ban ends, so every live node must forget it
//! inside one 60 s window; the step sends FORGET to all nodes at once and repeats it on any
//! node that still (or again) lists the id, until none does or the window is nearly over.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::redis::command::Cmd;
use crate::redis::ids::NodeId;
use crate::redis::model::ClusterView;
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};
use crate::redis::reply;

/// Redis's `CLUSTER_BLACKLIST_TTL`.
const BAN_WINDOW: Duration = Duration::from_secs(60);

/// Which nodes may be forgotten.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForgetPolicy {
    /// Only nodes that serve no slots (drained masters, replicas). The safe default.
    #[default]
    NoSlots,
    /// Also a master that still owns slots, provided every reachable node flags it FAIL and the
    /// operator cannot reach it: its slots become unassigned and must be re-added elsewhere
    /// (reference S6 (c)), losing their data.
    ReleaseSlotsOfFailedNode,
}

impl ClusterAdmin {
    /// Makes every reachable node forget `node`, within the 60 s ban window, and verifies that
    /// none lists it afterwards. If the forgotten node itself is reachable it is left alone:
    /// the caller resets or deletes it (otherwise it may MEET its way back).
    pub async fn forget_everywhere(
        &self,
        node: &NodeId,
        policy: ForgetPolicy,
    ) -> Result<StepOutcome, OpError> {
        let done = self
            .forget_all_everywhere(std::slice::from_ref(node), policy)
            .await?;
        Ok(if done.is_empty() {
            StepOutcome::AlreadyDone
        } else {
            StepOutcome::Applied
        })
    }

    /// [`ClusterAdmin::forget_everywhere`] for several nodes at once: every precondition is
    /// checked first (one refused refuses all), then each round sends every FORGET still
    /// needed to every node that still lists its id, side by side, and observes once. A
    /// zone's worth of dead identities is forgotten in the time of one (a round each was a
    /// second or more apiece, each observation waiting on the dead members' connects). Returns
    /// the ids some node listed (the others were already forgotten).
    pub async fn forget_all_everywhere(
        &self,
        nodes: &[NodeId],
        policy: ForgetPolicy,
    ) -> Result<Vec<NodeId>, OpError> {
        let view = self.observe().await;
        let listed: Vec<&NodeId> = nodes
            .iter()
            .filter(|node| holders(&view, node).next().is_some())
            .collect();
        for node in &listed {
            check_forgettable(&view, node, policy)?;
        }
        let started = Instant::now();
        let window = BAN_WINDOW - Duration::from_secs(10);
        loop {
            let view = self.observe().await;
            let targets: Vec<(SocketAddr, &NodeId)> = listed
                .iter()
                .flat_map(|node| holders(&view, node).map(move |addr| (addr, *node)))
                .collect();
            if targets.is_empty() {
                return Ok(listed.into_iter().cloned().collect());
            }
            if started.elapsed() > window {
                return Err(OpError::NotConverged {
                    what: format!(
                        "{} FORGET(s) of {} still needed (FORGET again: the ban window passed)",
                        targets.len(),
                        targets
                            .iter()
                            .map(|(_, n)| n.short())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    waited: started.elapsed(),
                });
            }
            let results = join_all(targets.iter().map(|(addr, node)| async move {
                let cmd = Cmd::cluster_forget(node);
                let frame = self.call_once(*addr, &cmd).await?;
                reply::ok(&cmd, frame).map_err(OpError::node(*addr))
            }))
            .await;
            for result in results {
                match result {
                    Ok(()) => {}
                    // Forgotten meanwhile (another round, or gossip of a forget).
                    Err(OpError::Node { source, .. })
                        if source.message_contains("Unknown node") => {}
                    Err(OpError::Node { source, addr }) if source.is_transient() => {
                        tracing::warn!(%addr, error = %source, "FORGET failed, will retry");
                    }
                    Err(e) => return Err(e),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The answering nodes, other than `node` itself, that list `node`.
fn holders<'a>(view: &'a ClusterView, node: &'a NodeId) -> impl Iterator<Item = SocketAddr> + 'a {
    view.nodes
        .iter()
        .filter(move |n| n.id() != node && n.sees(node).is_some())
        .map(|n| n.addr)
}

/// Whether `node` may be forgotten under `policy`: nobody follows it, and it owns no slot
/// unless the policy releases a failed node's slots.
fn check_forgettable(
    view: &ClusterView,
    node: &NodeId,
    policy: ForgetPolicy,
) -> Result<(), OpError> {
    if let Some(follower) = view.replicas_of(node).next() {
        return Err(OpError::Precondition(format!(
            "{} still follows {}; a node cannot forget its own master (re-point it first)",
            follower.id().short(),
            node.short()
        )));
    }
    let owns_slots = view.slot_owners().iter().flatten().any(|o| o == node);
    if owns_slots {
        match policy {
            ForgetPolicy::NoSlots => {
                return Err(OpError::Refused(format!(
                    "{} still owns slots; move them first (or accept losing them)",
                    node.short()
                )));
            }
            ForgetPolicy::ReleaseSlotsOfFailedNode => {
                let everyone_says_fail = view.node(node).is_none()
                    && view
                        .nodes
                        .iter()
                        .filter_map(|n| n.sees(node))
                        .all(|e| e.flags.fail);
                if !everyone_says_fail {
                    return Err(OpError::Refused(format!(
                        "{} owns slots and is not FAIL on every reachable node",
                        node.short()
                    )));
                }
            }
        }
    }
    Ok(())
}
