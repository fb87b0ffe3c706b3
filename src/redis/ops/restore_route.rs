//! The vocabulary and the pure decisions of a streamed restore ([`super::restore_stream`]):
//! its mode, limits and errors, where a key goes (the slot map, from the cluster model's one
//! definition of a slot's owner), what a reply to a `RESTORE` means, and what a `BUSYKEY`
//! calls for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::redis::client::Frame;
use crate::redis::error::RedisError;
use crate::redis::ids::SLOT_COUNT;
use crate::redis::model::ClusterView;
use crate::redis::ops::restore::BatchLimits;
use crate::redis::rdb::{RdbError, ReaderLimits};
use crate::redis::reply;

/// How a restore treats keys that already exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMode {
    /// Into an empty cluster: an existing key means something else writes, and is an error
    /// (except in a batch re-sent after its replies were lost, whose keys may be its own).
    Fresh,
    /// Re-running a shard after an interrupted attempt: existing keys are that attempt's, and
    /// are overwritten with `REPLACE`.
    Resume,
}

/// Limits and pacing of one restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreLimits {
    /// The size of one pipelined batch.
    pub batch: BatchLimits,
    /// The most argument bytes queued or in flight (batches still open in the batcher come on
    /// top: at most one per master).
    pub max_in_flight_bytes: usize,
    /// Batches in flight to one master at once (each on its own connection).
    pub pipelines_per_master: usize,
    /// The longest wait for each reply (counted from the previous one).
    pub reply_timeout: Duration,
    /// How often a batch is re-sent on a new connection after its connection failed.
    pub connection_retries: u32,
    /// How often the slot map may be loaded again after `MOVED` and the like.
    pub max_refreshes: u32,
    /// Progress is reported every this many keys read...
    pub progress_keys: u64,
    /// ... or after this long, whichever comes first.
    pub progress_interval: Duration,
    /// The RDB reader's limits.
    pub reader: ReaderLimits,
}

impl Default for RestoreLimits {
    fn default() -> Self {
        Self {
            batch: BatchLimits {
                max_commands: 1000,
                max_bytes: 4 * 1024 * 1024,
            },
            max_in_flight_bytes: 64 * 1024 * 1024,
            pipelines_per_master: 2,
            reply_timeout: Duration::from_secs(30),
            connection_retries: 3,
            max_refreshes: 20,
            progress_keys: 10_000,
            progress_interval: Duration::from_secs(1),
            reader: ReaderLimits::default(),
        }
    }
}

/// Why a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file could not be read (a download error, or not a valid RDB).
    #[error("the backup cannot be read: {0}")]
    Rdb(#[from] RdbError),
    /// A key exists in a fresh restore.
    #[error(
        "key {key} already exists on {addr}: a fresh restore runs into an empty cluster, so \
         something else is writing to it"
    )]
    Busy {
        /// The key, printable and shortened.
        key: String,
        /// The master.
        addr: SocketAddr,
    },
    /// A `RESTORE` was refused.
    #[error("RESTORE of key {key} on {addr} failed: {reply}")]
    Reply {
        /// The key, printable and shortened.
        key: String,
        /// The master.
        addr: SocketAddr,
        /// The reply.
        reply: String,
    },
    /// The file holds keys of another database than 0, which a cluster does not have.
    #[error("key {key} is in database {db}; a cluster has only database 0")]
    Database {
        /// The key, printable and shortened.
        key: String,
        /// Its database.
        db: u64,
    },
    /// The slot map could not be had, or kept changing.
    #[error("cluster topology: {0}")]
    Topology(String),
    /// Talking to a node failed.
    #[error("{addr}: {source}")]
    Redis {
        /// The node.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: RedisError,
    },
    /// A batch's task panicked or was cancelled.
    #[error("a restore task failed: {0}")]
    Task(String),
}

impl RestoreError {
    /// True when running the restore again (in [`RestoreMode::Resume`]) later may succeed: a
    /// node, the network or the download, not the data or a conflicting writer.
    pub fn transient(&self) -> bool {
        match self {
            Self::Rdb(e) => matches!(e, RdbError::Io(_)),
            Self::Redis { source, .. } => source.is_transient(),
            Self::Topology(_) => true,
            Self::Busy { .. } | Self::Reply { .. } | Self::Database { .. } | Self::Task(_) => false,
        }
    }

    pub(crate) fn redis(addr: SocketAddr) -> impl FnOnce(RedisError) -> Self {
        move |source| Self::Redis { addr, source }
    }
}

/// The master serving every slot, by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    owners: Vec<SocketAddr>,
}

impl SlotMap {
    /// The map of `view`: each slot's owner ([`ClusterView::slot_owners`]) and its address.
    /// Fails when a slot has no owner (unassigned, or claimed by several masters) or its owner
    /// no address: keys of that slot could not be restored.
    pub fn from_view(view: &ClusterView) -> Result<Self, String> {
        let mut addrs = BTreeMap::new();
        let mut owners = Vec::with_capacity(usize::from(SLOT_COUNT));
        let mut missing: Vec<u16> = Vec::new();
        for (slot, owner) in (0..SLOT_COUNT).zip(view.slot_owners()) {
            let addr =
                owner.and_then(|id| *addrs.entry(id.clone()).or_insert_with(|| view.addr_of(&id)));
            match addr {
                Some(addr) => owners.push(addr),
                None => missing.push(slot),
            }
        }
        if let Some(first) = missing.first() {
            return Err(format!(
                "{} slot(s) have no reachable owner (the first is {first}): the cluster must \
                 serve every slot before a restore",
                missing.len()
            ));
        }
        Ok(Self { owners })
    }

    /// The owner of `slot`.
    pub fn owner(&self, slot: u16) -> Option<SocketAddr> {
        self.owners.get(usize::from(slot)).copied()
    }

    /// The masters serving at least one slot.
    pub fn masters(&self) -> BTreeSet<SocketAddr> {
        self.owners.iter().copied().collect()
    }
}

/// Every master any answering node knows of, by address (handshake entries excluded): the
/// nodes whose keys count, slots or not. A node that answered says itself what it is: a
/// peer's older line calling it a master (a follower just attached) does not count it twice
/// (seen in the backup benchmark: 33,345 keys counted for 20,002).
pub fn master_addrs(view: &ClusterView) -> BTreeSet<SocketAddr> {
    let answered: BTreeSet<SocketAddr> = view.nodes.iter().map(|n| n.addr).collect();
    let claimed = view
        .nodes
        .iter()
        .flat_map(|n| n.peers.iter())
        .filter(|e| e.is_master() && !e.flags.handshake)
        .filter_map(|e| e.addr)
        .filter(|a| !answered.contains(a));
    view.nodes
        .iter()
        .filter(|n| n.is_master())
        .map(|n| n.addr)
        .chain(claimed)
        .collect()
}

/// What one reply to a `RESTORE` means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `OK`.
    Restored,
    /// `BUSYKEY`: the key exists.
    Busy,
    /// `MOVED`, or a reply saying the slot is not served right now (`TRYAGAIN`,
    /// `CLUSTERDOWN`, `LOADING`): send it again to the owner after a fresh slot map.
    Reroute,
    /// `ASK`: send it once more to this node, after `ASKING`.
    Ask(SocketAddr),
    /// Anything else: the reply, for the error.
    Failed(String),
}

/// Classifies the reply to one `RESTORE`.
pub fn classify(reply: Result<Frame, RedisError>) -> Verdict {
    match reply {
        Ok(Frame::SimpleString(s)) if s.as_ref() == b"OK" => Verdict::Restored,
        Ok(other) => Verdict::Failed(reply::render(&other)),
        Err(RedisError::BusyKey(_)) => Verdict::Busy,
        Err(
            RedisError::Moved { .. }
            | RedisError::TryAgain(_)
            | RedisError::ClusterDown(_)
            | RedisError::Loading(_),
        ) => Verdict::Reroute,
        Err(RedisError::Ask { endpoint, slot }) => match endpoint.parse() {
            Ok(addr) => Verdict::Ask(addr),
            Err(_) => Verdict::Failed(format!("ASK {slot} {endpoint} (not an IP address)")),
        },
        Err(e) => Verdict::Failed(e.to_string()),
    }
}

/// What to do about a key that answered `BUSYKEY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyAction {
    /// Send it again with `REPLACE`, counted as replaced.
    Replace,
    /// Stop: someone else wrote it.
    Conflict,
}

/// A resumed restore replaces what the interrupted attempt wrote; a fresh one does only for
/// a batch it re-sent after losing the replies (the keys may be its own first send's).
pub fn on_busy(mode: RestoreMode, resent: bool) -> BusyAction {
    match (mode, resent) {
        (RestoreMode::Resume, _) | (RestoreMode::Fresh, true) => BusyAction::Replace,
        (RestoreMode::Fresh, false) => BusyAction::Conflict,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::redis::model::NodeObservation;

    const INFO: &str = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:3\r\ncluster_size:2\r\ncluster_current_epoch:2\r\ncluster_my_epoch:1\r\n";
    const MASTER: &str = "role:master\r\nmaster_replid:x\r\nmaster_repl_offset:0\r\n";

    fn node(port: u16, nodes: &str) -> NodeObservation {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        NodeObservation::from_replies(addr, nodes, INFO, MASTER, Some(0)).expect("observation")
    }

    fn nodes_text(myself: char, second_range: &str) -> String {
        let line = |c: char, port: u16, slots: &str| {
            let flags = if c == myself {
                "myself,master"
            } else {
                "master"
            };
            format!(
                "{id} 127.0.0.1:{port}@{bus} {flags} - 0 0 1 connected {slots}\n",
                id = c.to_string().repeat(40),
                bus = port + 10000
            )
        };
        let mut text = line('a', 7000, "0-8191");
        text.push_str(&line('b', 7001, second_range));
        text.push_str(&format!(
            "{} 127.0.0.1:7002@17002 slave {} 0 0 1 connected\n",
            "c".repeat(40),
            "a".repeat(40)
        ));
        text
    }

    #[test]
    fn the_slot_map_follows_the_model_and_needs_every_slot() {
        // One seed is enough: the other master's slots come from its peer lines.
        let view = ClusterView {
            nodes: vec![node(7000, &nodes_text('a', "8192-16383"))],
            unreachable: Vec::new(),
        };
        let map = SlotMap::from_view(&view).expect("covered");
        let a = SocketAddr::from(([127, 0, 0, 1], 7000));
        let b = SocketAddr::from(([127, 0, 0, 1], 7001));
        assert_eq!(map.owner(0), Some(a));
        assert_eq!(map.owner(8191), Some(a));
        assert_eq!(map.owner(16383), Some(b));
        assert_eq!(map.owner(16384), None);
        assert_eq!(map.masters(), BTreeSet::from([a, b]));
        assert_eq!(master_addrs(&view), BTreeSet::from([a, b]));
        // b answers and says it is a replica now: a's older line calling it a master does not
        // make its keys count.
        let b_text = format!(
            "{} 127.0.0.1:7001@17001 myself,slave {} 0 0 1 connected\n{} 127.0.0.1:7000@17000 master - 0 0 1 connected 0-16383\n",
            "b".repeat(40),
            "a".repeat(40),
            "a".repeat(40)
        );
        let replica = NodeObservation::from_replies(
            b,
            &b_text,
            INFO,
            "role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7000\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:0\r\nmaster_replid:x\r\nmaster_repl_offset:0\r\n",
            Some(0),
        )
        .expect("observation");
        let stale = ClusterView {
            nodes: vec![node(7000, &nodes_text('a', "8192-16383")), replica],
            unreachable: Vec::new(),
        };
        assert_eq!(master_addrs(&stale), BTreeSet::from([a]));
        let partial = ClusterView {
            nodes: vec![node(7000, &nodes_text('a', "8192-16000"))],
            unreachable: Vec::new(),
        };
        let err = SlotMap::from_view(&partial).expect_err("slots 16001-16383 uncovered");
        assert!(
            err.starts_with("383 slot(s)") && err.contains("16001"),
            "{err}"
        );
    }

    #[test]
    fn replies_are_classified() {
        let ok = Ok(Frame::SimpleString(Bytes::from_static(b"OK")));
        assert_eq!(classify(ok), Verdict::Restored);
        let err = |line: &str| Err(RedisError::from_reply_line(line));
        assert_eq!(
            classify(err("BUSYKEY Target key name already exists.")),
            Verdict::Busy
        );
        assert_eq!(classify(err("MOVED 3999 127.0.0.1:6381")), Verdict::Reroute);
        assert_eq!(classify(err("TRYAGAIN later")), Verdict::Reroute);
        assert_eq!(classify(err("CLUSTERDOWN down")), Verdict::Reroute);
        assert_eq!(
            classify(err("ASK 3999 127.0.0.1:6381")),
            Verdict::Ask(SocketAddr::from(([127, 0, 0, 1], 6381)))
        );
        assert!(matches!(
            classify(err("ASK 3999 redis-0.example:6381")),
            Verdict::Failed(m) if m.contains("not an IP")
        ));
        assert_eq!(
            classify(err("ERR DUMP payload version or checksum are wrong")),
            Verdict::Failed("ERR DUMP payload version or checksum are wrong".to_owned())
        );
        assert!(matches!(
            classify(Ok(Frame::Integer(1))),
            Verdict::Failed(m) if m.contains('1')
        ));
    }

    #[test]
    fn busy_keys_are_replaced_only_when_they_may_be_ours() {
        assert_eq!(on_busy(RestoreMode::Fresh, false), BusyAction::Conflict);
        assert_eq!(on_busy(RestoreMode::Fresh, true), BusyAction::Replace);
        assert_eq!(on_busy(RestoreMode::Resume, false), BusyAction::Replace);
        assert_eq!(on_busy(RestoreMode::Resume, true), BusyAction::Replace);
    }
}
