//! Pure: the per-member metric values of one pass, from the observation each member already
//! answered this pass (CLUSTER NODES, INFO replication, INFO memory, INFO clients; one
//! pipelined round trip per member, [`crate::redis::model::observe_node`]).

use crate::redis::model::{ClusterView, NodeObservation};

/// What one answering member shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSample {
    /// Shard index (from the Pod's labels).
    pub shard: usize,
    /// Member ordinal within the shard.
    pub member: usize,
    /// Pod name.
    pub pod: String,
    /// Redis reports itself a master.
    pub leader: bool,
    /// `used_memory` less what maxmemory does not count.
    pub used_memory: u64,
    /// `maxmemory`, 0 when unlimited.
    pub maxmemory: u64,
    /// `connected_clients`, when read.
    pub connected_clients: Option<u64>,
    /// For a replica whose master answered too: how many bytes of the master's replication
    /// stream it has yet to process.
    pub replication_lag: Option<u64>,
}

/// One member's sample.
pub fn sample(
    shard: usize,
    member: usize,
    pod: &str,
    node: &NodeObservation,
    view: &ClusterView,
) -> MemberSample {
    MemberSample {
        shard,
        member,
        pod: pod.to_string(),
        leader: node.is_master(),
        used_memory: node.memory.used,
        maxmemory: node.memory.max,
        connected_clients: node.connected_clients,
        replication_lag: replication_lag(node, view),
    }
}

/// The master's replication offset minus what the replica has processed, both as read this
/// pass (read moments apart, so a busy master shows a small lag even when the link keeps up).
/// `None` for a master, or when its master did not answer.
pub fn replication_lag(node: &NodeObservation, view: &ClusterView) -> Option<u64> {
    let link = node.replication.replica_link()?;
    let master = view.node(node.master_id()?)?;
    Some(
        master
            .replication
            .master_repl_offset
            .saturating_sub(link.repl_offset),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEADER: &str = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca";
    const FOLLOWER: &str = "07c37dfeb235213a872192d90877d0cd55635b91";

    fn obs(nodes: &str, replication: &str, port: u16) -> NodeObservation {
        NodeObservation::from_replies(
            format!("127.0.0.1:{port}").parse().unwrap(),
            nodes,
            "cluster_state:ok\n",
            replication,
            Some(0),
        )
        .unwrap()
    }

    fn leader() -> NodeObservation {
        let mut n = obs(
            &format!(
                "{LEADER} 127.0.0.1:1@11 myself,master - 0 0 1 connected 0-16383\n{FOLLOWER} 127.0.0.1:2@12 slave {LEADER} 0 0 1 connected\n"
            ),
            "role:master\nmaster_replid:b\nmaster_repl_offset:15000\n",
            1,
        );
        n.memory.used = 2048;
        n.memory.max = 4096;
        n.connected_clients = Some(3);
        n
    }

    fn follower() -> NodeObservation {
        obs(
            &format!(
                "{LEADER} 127.0.0.1:1@11 master - 0 0 1 connected 0-16383\n{FOLLOWER} 127.0.0.1:2@12 myself,slave {LEADER} 0 0 1 connected\n"
            ),
            "role:slave\nmaster_host:127.0.0.1\nmaster_port:1\nmaster_link_status:up\nmaster_sync_in_progress:0\nslave_repl_offset:9000\nmaster_replid:b\nmaster_repl_offset:9000\n",
            2,
        )
    }

    #[test]
    fn leader_and_follower_samples() {
        let view = ClusterView {
            nodes: vec![leader(), follower()],
            unreachable: Vec::new(),
        };
        let l = sample(0, 0, "demo-0-0", &view.nodes[0], &view);
        assert_eq!(
            l,
            MemberSample {
                shard: 0,
                member: 0,
                pod: "demo-0-0".into(),
                leader: true,
                used_memory: 2048,
                maxmemory: 4096,
                connected_clients: Some(3),
                replication_lag: None,
            }
        );
        let f = sample(0, 1, "demo-0-1", &view.nodes[1], &view);
        assert!(!f.leader);
        assert_eq!(f.replication_lag, Some(6000));
        assert_eq!(f.connected_clients, None);
    }

    #[test]
    fn no_lag_without_the_masters_own_answer() {
        let view = ClusterView {
            nodes: vec![follower()],
            unreachable: Vec::new(),
        };
        assert_eq!(replication_lag(&view.nodes[0], &view), None);
    }
}
