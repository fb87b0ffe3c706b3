//! The cluster as Redis sees it, gathered from every reachable member.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use futures::future::join_all;

use super::config::REDIS_PORT;
use crate::redis::client::{AdminOptions, Client};
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::ids::{NodeId, SlotRange};
use crate::redis::model::observe_node;
use crate::redis::parse::cluster_info::ClusterInfo;
use crate::redis::parse::cluster_nodes::NodeEntry;
use crate::redis::parse::info::ReplicationInfo;
use crate::redis::reply;

/// What one member reports about itself and the cluster.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Address the operator reached it at.
    pub addr: SocketAddr,
    /// Its `myself` line.
    pub myself: NodeEntry,
    /// Every other node it knows (handshakes included).
    pub others: Vec<NodeEntry>,
    /// CLUSTER INFO.
    pub info: ClusterInfo,
    /// INFO replication.
    pub replication: ReplicationInfo,
}

impl NodeView {
    /// Its node ID.
    pub fn id(&self) -> &NodeId {
        &self.myself.id
    }
    /// IDs of the non-handshake nodes it knows, itself included.
    pub fn known_ids(&self) -> BTreeSet<&NodeId> {
        std::iter::once(&self.myself.id)
            .chain(
                self.others
                    .iter()
                    .filter(|n| !n.flags.handshake)
                    .map(|n| &n.id),
            )
            .collect()
    }
    /// Nodes still in handshake (MEET not yet answered).
    pub fn handshakes(&self) -> usize {
        self.others.iter().filter(|n| n.flags.handshake).count()
    }
    /// A master holding slots.
    pub fn is_serving_master(&self) -> bool {
        self.myself.is_master() && !self.myself.slots.is_empty()
    }
    /// A master with no slots and no master (a node that joined nothing yet, or was drained).
    pub fn is_empty_master(&self) -> bool {
        self.myself.is_master() && self.myself.slots.is_empty()
    }
    /// The master it replicates, per its own view.
    pub fn master_id(&self) -> Option<&NodeId> {
        if self.myself.flags.replica {
            self.myself.master_id.as_ref()
        } else {
            None
        }
    }
    /// Slots it serves.
    pub fn slots(&self) -> &[SlotRange] {
        &self.myself.slots
    }
}

/// Result of asking one member.
#[derive(Debug)]
pub enum Observation {
    /// It answered.
    Up(Box<NodeView>),
    /// It did not (yet): not listening, auth failure, timeout, malformed reply.
    Down(String),
}

/// Asks one member for CLUSTER NODES, CLUSTER INFO and INFO replication in one round trip.
pub async fn observe(ip: IpAddr, options: &AdminOptions) -> Observation {
    match observe_inner(SocketAddr::new(ip, REDIS_PORT as u16), options).await {
        Ok(view) => Observation::Up(Box::new(view)),
        Err(e) => Observation::Down(e),
    }
}

async fn observe_inner(addr: SocketAddr, options: &AdminOptions) -> Result<NodeView, String> {
    let obs = observe_node(addr, options)
        .await
        .map_err(|e| e.to_string())?;
    Ok(NodeView {
        addr: obs.addr,
        myself: obs.myself,
        others: obs.peers,
        info: obs.info,
        replication: obs.replication,
    })
}

/// Observes many members concurrently (each bounded by the client's timeouts).
pub async fn observe_all(ips: &[IpAddr], options: &AdminOptions) -> Vec<Observation> {
    join_all(ips.iter().map(|ip| observe(*ip, options))).await
}

/// Sends one admin command to a member and expects `OK`.
///
/// # Errors
/// Connection, timeout or an error reply.
pub async fn run_ok(addr: SocketAddr, options: &AdminOptions, cmd: &Cmd) -> Result<(), RedisError> {
    let mut client = Client::connect(addr, options).await?;
    let frame = client.call(cmd).await?;
    reply::ok(cmd, frame)
}
