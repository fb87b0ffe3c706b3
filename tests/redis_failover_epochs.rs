//! A promotion soon after the same follower last won an election, against real redis-server
//! 7.0.15 processes on loopback.
//!
//! Redis 7.0 keeps a replica's election state after it wins (valkey-io/valkey#782 and #1711
//! reset it, in Valkey 8.0 and later). When that replica follows again and is asked to fail over
//! within 2×cluster-node-timeout of its win, it "wins" at once, without a vote and with its old
//! config epoch, which the rest of the cluster ranks below the old leader's. The promotion is
//! hollow: the others keep routing to the old leader, and when it comes back (here without
//! persistence, so empty), the follower follows it again and copies its empty dataset. Found
//! by `make e2e` (`former_follower_leading_without_persistence_restarts_without_stale_data`:
//! 390 acknowledged writes lost).

mod support {
    pub mod redis_cluster;
    pub mod redis_data;
    pub mod redis_procs;
}

use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::ops::failover::{AcceptedRisk, FailoverMode, LeaderGone, RiskKind};
use redis_operator::redis::{Client, ClusterAdmin, NodeId};
use support::redis_cluster::{TestCluster, build, quick};
use support::redis_data::DataClient;

async fn data(cluster: &TestCluster) -> DataClient {
    DataClient::new(cluster.procs.addrs(), cluster.admin.options().clone()).await
}

/// The config epoch `observer` records for `node` (CLUSTER NODES' seventh field).
async fn epoch_seen_by(admin: &ClusterAdmin, observer: &NodeId, node: &NodeId) -> Option<u64> {
    let view = admin.observe().await;
    let entry = view.node(observer)?.sees(node)?;
    Some(entry.config_epoch)
}

/// Waits until `leader` is unreachable for a majority of voting masters (a FORCE proof).
async fn proof_that_gone(admin: &ClusterAdmin, leader: &NodeId) -> LeaderGone {
    let started = Instant::now();
    loop {
        if let Ok(proof) = LeaderGone::establish(&admin.observe().await, leader) {
            return proof;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{leader} never looked gone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A graceful failover to `to`, retried while the masters have not yet all heard of the last
/// role change (its precondition).
async fn graceful(admin: &ClusterAdmin, to: &NodeId) {
    let started = Instant::now();
    loop {
        match admin.failover(to, FailoverMode::Graceful).await {
            Ok(_) => return,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "graceful failover to {to}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_soon_after_the_follower_last_led_outranks_the_old_leader() {
    // 5 s node timeout: the stale-election window is 10 s after the follower's own win; the
    // leader is seen unreachable 5 s after its death, inside the window.
    let cluster = build(
        "epochs",
        21700,
        3,
        1,
        &["--cluster-node-timeout", "5000"],
        quick(),
    )
    .await;
    let leader = cluster.leaders[0].clone();
    let follower = cluster.followers[0][0].clone();
    let witness = cluster.leaders[1].clone();
    // Redis's own failover stays out of it: the operator's FORCE is what promotes.
    let mut c = Client::connect(cluster.addr(&follower), cluster.admin.options())
        .await
        .expect("connect");
    c.call(
        &Cmd::new("CONFIG")
            .arg("SET")
            .arg("cluster-replica-no-failover")
            .arg("yes"),
    )
    .await
    .expect("config set");

    let pairs: Vec<(Bytes, Bytes)> = (0..300)
        .map(|i| (Bytes::from(format!("e:{i}")), Bytes::from(format!("v{i}"))))
        .collect();
    data(&cluster).await.load(&pairs, 100).await.expect("load");

    // The follower leads once (its election), then hands the lead back (the spread does this).
    for to in [&follower, &leader] {
        graceful(&cluster.admin, to).await;
    }
    cluster
        .admin
        .wait_follower_in_sync(cluster.addr(&follower), Duration::from_secs(10))
        .await
        .expect("in sync after the handback");
    let old_epoch = epoch_seen_by(&cluster.admin, &witness, &leader)
        .await
        .expect("witness sees the leader");

    let index = cluster.index(&leader);
    let mut cluster = cluster;
    cluster.procs.nodes[index].kill();
    let proof = proof_that_gone(&cluster.admin, &leader).await;
    cluster
        .admin
        .failover(
            &follower,
            FailoverMode::Force {
                proof,
                risk: AcceptedRisk {
                    kind: RiskKind::LoseUnreplicatedWrites,
                    reason: "test: leader killed".to_owned(),
                },
            },
        )
        .await
        .expect("force failover");

    // The rest of the cluster ranks the new leader above the old one.
    let new_epoch = epoch_seen_by(&cluster.admin, &witness, &follower).await;
    assert!(
        new_epoch.is_some_and(|e| e > old_epoch),
        "the witness sees the new leader at config epoch {new_epoch:?}, the old at {old_epoch}: \
         the promotion is hollow"
    );

    // The old leader comes back with its nodes.conf and no data: it must follow.
    cluster.procs.nodes[index].restart(&[]).await;
    let view = cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("settles once the old leader is back");
    assert_eq!(
        view.node(&leader).and_then(|n| n.myself.master_id.clone()),
        Some(follower.clone()),
        "the old leader follows the new one"
    );
    let keys: Vec<Bytes> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let values = data(&cluster)
        .await
        .get_many(&keys, 100)
        .await
        .expect("read");
    let lost = pairs
        .iter()
        .zip(values)
        .filter(|((_, v), got)| got.as_ref() != Some(v))
        .count();
    assert_eq!(lost, 0, "keys lost after the old leader came back");
}
