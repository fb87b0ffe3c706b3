//! The cluster as Redis sees it, gathered from every reachable node.
//!
//! Each node only knows its own open-slot state and its own opinion of the others, so the view
//! keeps every node's observation and answers questions across them: who owns a slot, which
//! slots are open, which nodes are still in handshake or considered failing, whose config
//! epochs collide.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::join_all;

use crate::redis::client::{AdminOptions, Client};
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::ids::{NodeId, SlotRange, ranges_from_slots};
use crate::redis::parse::ParseError;
use crate::redis::parse::cluster_info::{ClusterInfo, parse_cluster_info};
use crate::redis::parse::cluster_nodes::{NodeEntry, OpenSlotState, parse_cluster_nodes};
use crate::redis::parse::cluster_shards::{Shard, parse_cluster_shards};
use crate::redis::parse::info::{ReplicationInfo, parse_replication_info};
use crate::redis::parse::info_fields::info_field;
pub use crate::redis::parse::info_fields::{MemoryInfo, PersistenceInfo};
use crate::redis::reply;
use crate::redis::slot_owners;

/// What one reachable node reported about itself and the cluster.
#[derive(Clone, Debug)]
pub struct NodeObservation {
    /// The address the observation was taken from.
    pub addr: SocketAddr,
    /// The node's `myself` line: its id, role, slots and open-slot markers.
    pub myself: NodeEntry,
    /// The node's lines for every other node it knows.
    pub peers: Vec<NodeEntry>,
    /// `CLUSTER INFO`.
    pub info: ClusterInfo,
    /// `INFO replication`.
    pub replication: ReplicationInfo,
    /// `DBSIZE`, or `None` while the node is loading its dataset.
    pub keys: Option<u64>,
    /// `INFO memory` (zero when not observed).
    pub memory: MemoryInfo,
    /// `connected_clients` of `INFO clients` (for the metrics), `None` when not observed.
    pub connected_clients: Option<u64>,
    /// `INFO persistence`: whether the node can write its AOF and RDB (all good when not
    /// observed).
    pub persistence: PersistenceInfo,
}

impl NodeObservation {
    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.myself.id
    }

    /// Whether the node considers itself a master.
    pub fn is_master(&self) -> bool {
        self.myself.is_master()
    }

    /// Ids of the settled (non-handshake) nodes it knows, itself included.
    pub fn known_ids(&self) -> BTreeSet<&NodeId> {
        std::iter::once(&self.myself.id)
            .chain(
                self.peers
                    .iter()
                    .filter(|n| !n.flags.handshake)
                    .map(|n| &n.id),
            )
            .collect()
    }

    /// Whether it has a settled entry for `other` at the address `other` was observed at. An
    /// entry with a stale address (every Pod restarted with a new IP, reference §4.3) or no
    /// address does not count: the two must be introduced again with MEET, which updates the
    /// address of a known id.
    pub fn knows_at(&self, other: &NodeObservation) -> bool {
        self.id() == other.id()
            || self.sees(other.id()).is_some_and(|e| {
                !e.flags.handshake
                    && !e.flags.noaddr
                    && e.addr.is_none_or(|a| a.ip() == other.addr.ip())
            })
    }

    /// How many nodes it is still in handshake with (MEET not yet answered).
    pub fn handshakes(&self) -> usize {
        self.peers.iter().filter(|n| n.flags.handshake).count()
    }

    /// A master that serves slots.
    pub fn is_serving_master(&self) -> bool {
        self.myself.is_master() && !self.myself.slots.is_empty()
    }

    /// The master it replicates, by its own line; `None` for a master.
    pub fn master_id(&self) -> Option<&NodeId> {
        if self.myself.flags.replica {
            self.myself.master_id.as_ref()
        } else {
            None
        }
    }

    /// The slots it serves, by its own line.
    pub fn slots(&self) -> &[SlotRange] {
        &self.myself.slots
    }

    /// This node's line about `id`, if it knows that node (itself included).
    pub fn sees(&self, id: &NodeId) -> Option<&NodeEntry> {
        if &self.myself.id == id {
            return Some(&self.myself);
        }
        self.peers.iter().find(|p| &p.id == id)
    }

    /// Builds an observation from raw reply texts; fails unless CLUSTER NODES has exactly one
    /// `myself` line.
    pub fn from_replies(
        addr: SocketAddr,
        nodes_text: &str,
        info_text: &str,
        replication_text: &str,
        keys: Option<u64>,
    ) -> Result<Self, ParseError> {
        let mut entries = parse_cluster_nodes(nodes_text)?;
        let mut mine = entries.iter().filter(|e| e.flags.myself);
        let myself_index = match (mine.next(), mine.next()) {
            (Some(_), None) => entries.iter().position(|e| e.flags.myself),
            _ => None,
        }
        .ok_or_else(|| ParseError::new("CLUSTER NODES", "expected exactly one myself line"))?;
        let myself = entries.swap_remove(myself_index);
        Ok(Self {
            addr,
            myself,
            peers: entries,
            info: parse_cluster_info(info_text)?,
            replication: parse_replication_info(replication_text)?,
            keys,
            memory: MemoryInfo::default(),
            connected_clients: None,
            persistence: PersistenceInfo::default(),
        })
    }
}

/// A node that could not be observed.
#[derive(Debug)]
pub struct Unreachable {
    /// The address tried.
    pub addr: SocketAddr,
    /// Why it failed.
    pub error: RedisError,
}

/// One open slot on one node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenSlot {
    /// The slot.
    pub slot: u16,
    /// The node that has the slot open.
    pub node: NodeId,
    /// Migrating to, or importing from, another node.
    pub state: OpenSlotState,
}

/// How many observed nodes consider a node failing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureReport {
    /// Observers that flag it `fail?` (PFAIL, local suspicion).
    pub pfail_by: Vec<NodeId>,
    /// Observers that flag it `fail` (FAIL, agreed by a majority of masters).
    pub fail_by: Vec<NodeId>,
}

/// The cluster as seen from every node that answered.
#[derive(Debug, Default)]
pub struct ClusterView {
    /// Observations of the reachable nodes, in the order of the addresses given.
    pub nodes: Vec<NodeObservation>,
    /// Addresses that did not answer (or answered garbage).
    pub unreachable: Vec<Unreachable>,
}

/// Observes one node: CLUSTER NODES, CLUSTER INFO, INFO replication, DBSIZE, INFO memory,
/// INFO clients and INFO persistence in one pipelined round trip.
pub async fn observe_node(
    addr: SocketAddr,
    options: &AdminOptions,
) -> Result<NodeObservation, RedisError> {
    let mut client = Client::connect(addr, options).await?;
    let cmds = [
        Cmd::cluster("NODES"),
        Cmd::cluster("INFO"),
        Cmd::info("replication"),
        Cmd::dbsize(),
        Cmd::info("memory"),
        // Only for the metrics (connected_clients); in the same round trip.
        Cmd::info("clients"),
        // A master that cannot write its disk refuses writes: the leader must move.
        Cmd::info("persistence"),
    ];
    let mut replies = client.pipeline(&cmds).await?.into_iter();
    let mut next_text = |cmd: &Cmd| -> Result<String, RedisError> {
        match replies.next() {
            Some(frame) => reply::text(cmd, frame?),
            None => Err(RedisError::Closed { addr }),
        }
    };
    let nodes_text = next_text(&cmds[0])?;
    let info_text = next_text(&cmds[1])?;
    let replication_text = next_text(&cmds[2])?;
    let keys = match replies.next() {
        Some(Ok(frame)) => Some(reply::count(&cmds[3], frame)?),
        Some(Err(RedisError::Loading(_))) => None,
        Some(Err(e)) => return Err(e),
        None => return Err(RedisError::Closed { addr }),
    };
    let memory = match replies.next() {
        Some(frame) => MemoryInfo::parse(&reply::text(&cmds[4], frame?)?),
        None => return Err(RedisError::Closed { addr }),
    };
    let connected_clients = match replies.next() {
        Some(frame) => info_field(&reply::text(&cmds[5], frame?)?, "connected_clients"),
        None => return Err(RedisError::Closed { addr }),
    };
    let mut observation =
        NodeObservation::from_replies(addr, &nodes_text, &info_text, &replication_text, keys)
            .map_err(|source| RedisError::Parse {
                command: "cluster observation".to_owned(),
                source,
            })?;
    observation.memory = memory;
    observation.connected_clients = connected_clients;
    observation.persistence = match replies.next() {
        Some(frame) => PersistenceInfo::parse(&reply::text(&cmds[6], frame?)?),
        None => return Err(RedisError::Closed { addr }),
    };
    Ok(observation)
}

/// `CLUSTER SHARDS` of one node: per shard its slots and its nodes with role, replication
/// offset and health (the supported topology view in Redis 7.0).
pub async fn fetch_shards(
    addr: SocketAddr,
    options: &AdminOptions,
) -> Result<Vec<Shard>, RedisError> {
    let mut client = Client::connect(addr, options).await?;
    let cmd = Cmd::cluster("SHARDS");
    let frame = client.call(&cmd).await?;
    parse_cluster_shards(&frame).map_err(|source| RedisError::Parse {
        command: cmd.describe(),
        source,
    })
}

/// Observes every address concurrently. Unreachable nodes are recorded, not fatal: the caller
/// decides what a partial view allows.
pub async fn observe(addrs: &[SocketAddr], options: &AdminOptions) -> ClusterView {
    observe_limited(addrs, options, &BTreeMap::new()).await
}

/// [`observe`], with the connect timeout of the addresses in `connect_limits` replaced by
/// theirs (the operator shortens it for a node whose connect timed out on its last look).
pub async fn observe_limited(
    addrs: &[SocketAddr],
    options: &AdminOptions,
    connect_limits: &BTreeMap<SocketAddr, Duration>,
) -> ClusterView {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if !unique.contains(addr) {
            unique.push(*addr);
        }
    }
    let results = join_all(unique.iter().map(|addr| async move {
        match connect_limits.get(addr) {
            Some(limit) => {
                let mut shorter = options.clone();
                shorter.timeouts.connect = *limit;
                observe_node(*addr, &shorter).await
            }
            None => observe_node(*addr, options).await,
        }
    }))
    .await;
    let mut view = ClusterView::default();
    for (addr, result) in unique.into_iter().zip(results) {
        match result {
            Ok(obs) => view.nodes.push(obs),
            Err(error) => view.unreachable.push(Unreachable { addr, error }),
        }
    }
    view
}

impl ClusterView {
    /// The observation of node `id`, if it answered.
    pub fn node(&self, id: &NodeId) -> Option<&NodeObservation> {
        self.nodes.iter().find(|n| n.id() == id)
    }

    /// The observation taken at `addr`, if it answered.
    pub fn node_at(&self, addr: SocketAddr) -> Option<&NodeObservation> {
        self.nodes.iter().find(|n| n.addr == addr)
    }

    /// The client address of `id`: where it was observed, else what its peers say.
    pub fn addr_of(&self, id: &NodeId) -> Option<SocketAddr> {
        self.node(id).map(|n| n.addr).or_else(|| {
            self.nodes
                .iter()
                .filter_map(|n| n.sees(id))
                .find_map(|e| e.addr)
        })
    }

    /// Observed nodes that consider themselves masters.
    pub fn masters(&self) -> impl Iterator<Item = &NodeObservation> {
        self.nodes.iter().filter(|n| n.is_master())
    }

    /// Observed nodes that consider themselves replicas of `master`.
    pub fn replicas_of<'a>(
        &'a self,
        master: &'a NodeId,
    ) -> impl Iterator<Item = &'a NodeObservation> + 'a {
        self.nodes
            .iter()
            .filter(move |n| !n.is_master() && n.myself.master_id.as_ref() == Some(master))
    }

    /// Every node id any observed node knows (handshake entries excluded: their ids are
    /// temporary).
    pub fn known_ids(&self) -> BTreeSet<NodeId> {
        self.nodes
            .iter()
            .flat_map(|n| std::iter::once(&n.myself).chain(n.peers.iter()))
            .filter(|e| !e.flags.handshake)
            .map(|e| e.id.clone())
            .collect()
    }

    /// The owner of every slot: the one definition, see [`slot_owners_of`].
    pub fn slot_owners(&self) -> Vec<Option<NodeId>> {
        slot_owners_of(&self.nodes.iter().collect::<Vec<_>>())
    }

    /// The owner of one slot (see [`ClusterView::slot_owners`]).
    pub fn slot_owner(&self, slot: u16) -> Option<NodeId> {
        self.slot_owners().get(usize::from(slot)).cloned().flatten()
    }

    /// Slots claimed by more than one observed master.
    pub fn conflicting_slots(&self) -> Vec<u16> {
        claim_counts(&self.nodes.iter().collect::<Vec<_>>())
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 1)
            .filter_map(|(s, _)| u16::try_from(s).ok())
            .collect()
    }

    /// Slots nobody serves (as far as any observer knows). Disputed slots are owned, so they
    /// are not listed here.
    pub fn uncovered_slots(&self) -> Vec<SlotRange> {
        let owners = self.slot_owners();
        let conflicts: BTreeSet<u16> = self.conflicting_slots().into_iter().collect();
        ranges_from_slots(
            owners
                .iter()
                .enumerate()
                .filter(|(_, o)| o.is_none())
                .filter_map(|(s, _)| u16::try_from(s).ok())
                .filter(|s| !conflicts.contains(s)),
        )
    }

    /// Slot counts per master id (masters with no slots included, with 0).
    pub fn slot_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> =
            self.masters().map(|m| (m.id().clone(), 0)).collect();
        for id in self.slot_owners().into_iter().flatten() {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    /// Every open slot on every observed node.
    pub fn open_slots(&self) -> Vec<OpenSlot> {
        let mut open: Vec<OpenSlot> = self
            .nodes
            .iter()
            .flat_map(|n| {
                n.myself.open_slots.iter().map(|(slot, state)| OpenSlot {
                    slot: *slot,
                    node: n.id().clone(),
                    state: state.clone(),
                })
            })
            .collect();
        open.sort();
        open
    }

    /// Entries still in handshake, with the node that holds them.
    pub fn handshakes(&self) -> Vec<(NodeId, &NodeEntry)> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.peers
                    .iter()
                    .filter(|p| p.flags.handshake)
                    .map(|p| (n.id().clone(), p))
            })
            .collect()
    }

    /// Nodes that some observer flags PFAIL or FAIL, with who says so.
    pub fn failing_nodes(&self) -> BTreeMap<NodeId, FailureReport> {
        let mut out: BTreeMap<NodeId, FailureReport> = BTreeMap::new();
        for node in &self.nodes {
            for peer in &node.peers {
                if peer.flags.fail {
                    out.entry(peer.id.clone())
                        .or_default()
                        .fail_by
                        .push(node.id().clone());
                } else if peer.flags.pfail {
                    out.entry(peer.id.clone())
                        .or_default()
                        .pfail_by
                        .push(node.id().clone());
                }
            }
        }
        out
    }

    /// Masters (by their own line) that share a config epoch with another master. Redis
    /// resolves collisions by itself, but slowly; failovers and SETSLOT NODE should wait.
    pub fn epoch_conflicts(&self) -> Vec<(u64, Vec<NodeId>)> {
        let mut by_epoch: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for m in self.masters() {
            by_epoch
                .entry(m.myself.config_epoch)
                .or_default()
                .push(m.id().clone());
        }
        by_epoch
            .into_iter()
            .filter(|(_, ids)| ids.len() > 1)
            .collect()
    }

    /// Pairs `(observer, unknown)` of observed nodes where the observer has no settled
    /// (non-handshake) entry for the other at its current address. Empty once MEET has
    /// converged.
    pub fn unknown_pairs(&self) -> Vec<(NodeId, NodeId)> {
        let mut out = Vec::new();
        for a in &self.nodes {
            for b in &self.nodes {
                if a.id() == b.id() {
                    continue;
                }
                if !a.knows_at(b) {
                    out.push((a.id().clone(), b.id().clone()));
                }
            }
        }
        out
    }

    /// The masters that serve slots (the voters in failure detection and elections), by id,
    /// as known to any observer.
    pub fn voting_masters(&self) -> BTreeSet<NodeId> {
        owner_runs(&self.nodes.iter().collect::<Vec<_>>())
            .into_iter()
            .filter_map(|(_, owner)| owner.cloned())
            .collect()
    }

    /// Whether some answering node flags `id` FAIL: the cluster agreed it failed, so Redis's
    /// own election of a follower is under way.
    pub fn flagged_fail(&self, id: &NodeId) -> bool {
        self.nodes
            .iter()
            .any(|n| n.sees(id).is_some_and(|e| e.flags.fail))
    }

    /// Answering voting masters that list `replica` as a follower of `leader`. A master votes
    /// only for a follower it knows as one of the failed or handing-over leader's, so a
    /// graceful failover needs [`ClusterView::quorum`] of them; a follower's role reaches
    /// them by its own pings, within node-timeout/2 of its attaching.
    pub fn masters_aware_of_follower(&self, replica: &NodeId, leader: &NodeId) -> usize {
        let voters = self.voting_masters();
        self.masters()
            .filter(|m| voters.contains(m.id()))
            .filter(|m| {
                m.sees(replica)
                    .is_some_and(|e| e.master_id.as_ref() == Some(leader) && !e.flags.handshake)
            })
            .count()
    }

    /// Votes needed for FAIL agreement and elections: `voters/2 + 1`.
    pub fn quorum(&self) -> usize {
        self.voting_masters().len() / 2 + 1
    }

    /// Whether everything looks settled: every address answered, all nodes know each other,
    /// no handshakes, no failing nodes, no open or disputed slots, full coverage, and every node
    /// reports `cluster_state:ok`.
    pub fn is_healthy(&self) -> bool {
        !self.nodes.is_empty()
            && self.unreachable.is_empty()
            && self.unknown_pairs().is_empty()
            && self.handshakes().is_empty()
            && self.failing_nodes().is_empty()
            && self.open_slots().is_empty()
            && self.conflicting_slots().is_empty()
            && self.uncovered_slots().is_empty()
            && self.nodes.iter().all(|n| n.info.state_ok)
    }
}

/// "Who owns a slot", per run of slots where nothing changes: see
/// [`crate::redis::slot_owners::owner_runs`], the one definition.
pub fn owner_runs<'a>(nodes: &[&'a NodeObservation]) -> Vec<(SlotRange, Option<&'a NodeId>)> {
    slot_owners::owner_runs(&lines(nodes))
}

/// [`owner_runs`] slot by slot: `owners[slot]`.
pub fn slot_owners_of(nodes: &[&NodeObservation]) -> Vec<Option<NodeId>> {
    slot_owners::slot_owners_of(&lines(nodes))
}

/// Slots claimed by more than one of the answering `nodes`' own `myself` lines.
pub fn conflicting_slots_of(nodes: &[&NodeObservation]) -> usize {
    claim_counts(nodes).iter().filter(|c| **c > 1).count()
}

/// How many observed masters' own lines claim each slot.
fn claim_counts(nodes: &[&NodeObservation]) -> Vec<usize> {
    slot_owners::claim_counts(&lines(nodes))
}

/// Each node's own line and its lines about the others.
fn lines<'a>(nodes: &[&'a NodeObservation]) -> Vec<(&'a NodeEntry, &'a [NodeEntry])> {
    nodes
        .iter()
        .map(|n| (&n.myself, n.peers.as_slice()))
        .collect()
}

#[cfg(test)]
mod tests;
