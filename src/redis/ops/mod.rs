//! Cluster operations. Each checks its preconditions against a fresh observation, acts, and
//! verifies the effect; each can be repeated after a crash half-way and picks up from the state
//! the nodes report.
//!
//! The operations are methods of [`ClusterAdmin`], which holds the addresses of every known
//! node and the credentials and timeouts used for all of them. Single steps (`meet`,
//! `add_slot_ranges`, `replicate`, `failover`, `forget_everywhere`, `move_slot`,
//! `fix_open_slots`, ...) return quickly so a reconcile loop can observe, act once and requeue;
//! the `*_and_wait` helpers loop over the steps until a deadline.

pub mod acl;
pub mod backup;
pub mod config;
pub mod distribution;
pub mod failover;
pub mod forget;
pub mod hazard;
pub mod meet;
pub mod migrate;
pub mod repair;
pub mod replicate;
pub mod reshard;
pub mod reshard_many;
pub mod restore;
mod restore_batch;
pub mod restore_route;
pub mod restore_stream;
pub mod slots;
pub mod snapshot;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::redis::client::{AdminOptions, Client, Frame};
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::ids::NodeId;
use crate::redis::model::{ClusterView, NodeObservation, observe_limited, observe_node};

/// Why an operation did not (fully) happen.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Talking to a node failed.
    #[error("{addr}: {source}")]
    Node {
        /// The node's address.
        addr: SocketAddr,
        /// What went wrong.
        #[source]
        source: RedisError,
    },
    /// The cluster is not in a state where this step may run (yet). Observe again and
    /// re-plan; the message says what is missing.
    #[error("precondition not met: {0}")]
    Precondition(String),
    /// The step would risk data and the caller did not provide what makes it acceptable.
    #[error("refused: {0}")]
    Refused(String),
    /// No reachable node knows this node id.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The node is known but could not be reached.
    #[error("node {id} at {addr:?} is unreachable")]
    Unreachable {
        /// The node id.
        id: NodeId,
        /// Its last known address.
        addr: Option<SocketAddr>,
    },
    /// A wait ran out of time before the cluster reached the expected state.
    #[error("{what} did not happen within {waited:?}")]
    NotConverged {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        waited: Duration,
    },
    /// Keys exist on both sides of a move with different values.
    #[error("slot {slot}: {count} key(s) exist on both {from} and {to} with different values")]
    KeyConflict {
        /// The slot.
        slot: u16,
        /// Node holding the source copy.
        from: NodeId,
        /// Node holding the target copy.
        to: NodeId,
        /// How many keys conflict.
        count: usize,
    },
    /// The command was accepted but the expected effect was not observed afterwards.
    #[error("verification failed: {0}")]
    Verification(String),
}

impl OpError {
    pub(crate) fn node(addr: SocketAddr) -> impl FnOnce(RedisError) -> Self {
        move |source| Self::Node { addr, source }
    }

    /// True when retrying the same step later is the right reaction (a node was briefly
    /// unreachable, the cluster had not converged yet).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Node { source, .. } => source.is_transient(),
            Self::Unreachable { .. } | Self::NotConverged { .. } | Self::Precondition(_) => true,
            Self::Refused(_)
            | Self::UnknownNode(_)
            | Self::KeyConflict { .. }
            | Self::Verification(_) => false,
        }
    }
}

/// What a single step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step sent commands that changed the cluster.
    Applied,
    /// The cluster was already in the requested state; nothing was sent.
    AlreadyDone,
}

/// Entry point for all operations on one cluster.
#[derive(Clone, Debug)]
pub struct ClusterAdmin {
    addrs: Vec<SocketAddr>,
    options: AdminOptions,
    poll_interval: Duration,
    connect_limits: BTreeMap<SocketAddr, Duration>,
}

impl ClusterAdmin {
    /// An admin for the nodes at `addrs` (pod IP and client port of every member), using
    /// `options` (credentials, timeouts) for all of them.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>, options: AdminOptions) -> Self {
        let mut unique: Vec<SocketAddr> = Vec::new();
        for addr in addrs {
            if !unique.contains(&addr) {
                unique.push(addr);
            }
        }
        Self {
            addrs: unique,
            options,
            poll_interval: Duration::from_millis(100),
            connect_limits: BTreeMap::new(),
        }
    }

    /// Sets how often the `*_and_wait` helpers re-observe (default 100 ms).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Shorter connect timeouts for some addresses in [`ClusterAdmin::observe`]: members whose
    /// connect just timed out (their node is likely dead), so that each observation an
    /// operation makes does not wait the full connect timeout for them again. It only bounds a
    /// wait: every safety check judges a node gone from the cluster's own view, never from
    /// the operator's reachability.
    #[must_use]
    pub fn with_connect_limits(mut self, limits: BTreeMap<SocketAddr, Duration>) -> Self {
        self.connect_limits = limits;
        self
    }

    /// The addresses of the known nodes.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Credentials and timeouts.
    pub fn options(&self) -> &AdminOptions {
        &self.options
    }

    /// Observes every known node (see [`observe`]).
    pub async fn observe(&self) -> ClusterView {
        observe_limited(&self.addrs, &self.options, &self.connect_limits).await
    }

    /// Observes one node.
    pub async fn observe_node(&self, addr: SocketAddr) -> Result<NodeObservation, OpError> {
        observe_node(addr, &self.options)
            .await
            .map_err(OpError::node(addr))
    }

    /// Opens an admin connection.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Client, OpError> {
        Client::connect(addr, &self.options)
            .await
            .map_err(OpError::node(addr))
    }

    /// Connects and sends one command.
    pub(crate) async fn call_once(&self, addr: SocketAddr, cmd: &Cmd) -> Result<Frame, OpError> {
        let mut client = self.connect(addr).await?;
        client.call(cmd).await.map_err(OpError::node(addr))
    }

    /// Repeats `step` until it yields `Some`, or fails with [`OpError::NotConverged`] once
    /// `limit` has passed. Errors from `step` end the wait immediately.
    pub(crate) async fn poll_until<T, F, Fut>(
        &self,
        what: &str,
        limit: Duration,
        mut step: F,
    ) -> Result<T, OpError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, OpError>>,
    {
        let started = Instant::now();
        loop {
            if let Some(done) = step().await? {
                return Ok(done);
            }
            if started.elapsed() >= limit {
                // The limit, not the time measured: the message lands in a condition, and one
                // that changes on every attempt rewrites the status, whose watch event starts
                // the next attempt at once, ignoring the back-off.
                return Err(OpError::NotConverged {
                    what: what.to_owned(),
                    waited: limit,
                });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// The observation of `id` in `view`, or the right error if it is unknown or unreachable.
    pub(crate) fn require<'v>(
        view: &'v ClusterView,
        id: &NodeId,
    ) -> Result<&'v NodeObservation, OpError> {
        view.node(id).ok_or_else(|| {
            if view.known_ids().contains(id) {
                OpError::Unreachable {
                    id: id.clone(),
                    addr: view.addr_of(id),
                }
            } else {
                OpError::UnknownNode(id.clone())
            }
        })
    }

    /// The observation taken at `addr`, or why there is none.
    pub(crate) fn require_at(
        view: &ClusterView,
        addr: SocketAddr,
    ) -> Result<&NodeObservation, OpError> {
        if let Some(node) = view.node_at(addr) {
            return Ok(node);
        }
        match view.unreachable.iter().find(|u| u.addr == addr) {
            Some(u) => Err(OpError::Precondition(format!(
                "{addr} is unreachable: {}",
                u.error
            ))),
            None => Err(OpError::Precondition(format!(
                "{addr} is not among the admin's addresses"
            ))),
        }
    }
}
