//! Builds a Redis Cluster from empty nodes with the library's own operations, for tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use redis_operator::redis::ids::even_ranges;
use redis_operator::redis::ops::StepOutcome;
use redis_operator::redis::{AdminOptions, ClusterAdmin, NodeId, Timeouts};

use super::redis_procs::RedisProcs;

/// Short timeouts so paused nodes are detected quickly.
pub fn quick() -> AdminOptions {
    AdminOptions {
        auth: None,
        timeouts: Timeouts {
            connect: Duration::from_millis(1500),
            command: Duration::from_millis(1500),
            migrate: Duration::from_secs(5),
            ..Timeouts::default()
        },
        tls: None,
    }
}

/// A running cluster: the processes, an admin over all of them, and the node ids by role.
pub struct TestCluster {
    /// The processes (leaders first, then followers in leader order).
    pub procs: RedisProcs,
    /// Admin over every node.
    pub admin: ClusterAdmin,
    /// Leader ids, in port order.
    pub leaders: Vec<NodeId>,
    /// `followers[i]` follow `leaders[i]`.
    pub followers: Vec<Vec<NodeId>>,
    /// Every node id, indexed like `procs.nodes`.
    pub ids: Vec<NodeId>,
}

impl TestCluster {
    /// The address of node `id`.
    pub fn addr(&self, id: &NodeId) -> SocketAddr {
        self.procs.nodes[self.index(id)].addr()
    }

    /// The index into `procs.nodes` of node `id`.
    pub fn index(&self, id: &NodeId) -> usize {
        self.ids
            .iter()
            .position(|x| x == id)
            .expect("node of this cluster")
    }
}

/// Starts `leaders * (1 + followers_per_leader)` nodes and builds the cluster: MEET, one even
/// slot range per leader, followers attached and in sync, cluster settled.
pub async fn build(
    name: &str,
    base: u16,
    leaders: usize,
    followers_per_leader: usize,
    args: &[&str],
    options: AdminOptions,
) -> TestCluster {
    build_with_spares(name, base, leaders, followers_per_leader, 0, args, options).await
}

/// Like [`build`], plus `spares` empty masters (no slots) that have joined the cluster; they
/// come last in `procs.nodes` and `ids`.
pub async fn build_with_spares(
    name: &str,
    base: u16,
    leaders: usize,
    followers_per_leader: usize,
    spares: usize,
    args: &[&str],
    options: AdminOptions,
) -> TestCluster {
    let total = leaders * (1 + followers_per_leader);
    let procs = RedisProcs::start(name, base, total + spares, args, &options).await;
    let admin =
        ClusterAdmin::new(procs.addrs(), options).with_poll_interval(Duration::from_millis(50));
    admin
        .meet_and_wait(Duration::from_secs(30))
        .await
        .expect("meet converges");
    let mut ids = Vec::new();
    for addr in procs.addrs() {
        ids.push(
            admin
                .observe_node(addr)
                .await
                .expect("observe")
                .id()
                .clone(),
        );
    }
    for (i, range) in even_ranges(leaders).into_iter().enumerate() {
        let step = admin
            .add_slot_ranges(procs.nodes[i].addr(), &[range])
            .await
            .expect("add slots");
        assert_eq!(step, StepOutcome::Applied);
    }
    let mut followers = vec![Vec::new(); leaders];
    for f in 0..leaders * followers_per_leader {
        let leader = f % leaders;
        let node = leaders + f;
        admin
            .replicate(procs.nodes[node].addr(), &ids[leader])
            .await
            .expect("replicate");
        followers[leader].push(ids[node].clone());
    }
    admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("cluster settles");
    for node in leaders..total {
        admin
            .wait_follower_in_sync(procs.nodes[node].addr(), Duration::from_secs(30))
            .await
            .expect("follower in sync");
    }
    TestCluster {
        procs,
        admin,
        leaders: ids[..leaders].to_vec(),
        followers,
        ids,
    }
}
