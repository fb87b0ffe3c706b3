//! Cluster operations against real redis-server 7.0.15 processes on loopback: bootstrap from
//! empty nodes (with ACL auth), every failover mode and its refusals (the TAKEOVER of a stalled
//! election among them), forget everywhere, and
//! the empty-master hazard.

mod support {
    pub mod redis_cluster;
    pub mod redis_data;
    pub mod redis_procs;
}

use std::time::Duration;

use bytes::Bytes;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::model::ClusterView;
use redis_operator::redis::ops::OpError;
use redis_operator::redis::ops::StepOutcome;
use redis_operator::redis::ops::failover::{
    AcceptedRisk, FailoverMode, LeaderGone, RiskKind, rivals,
};
use redis_operator::redis::ops::forget::ForgetPolicy;
use redis_operator::redis::ops::hazard::empty_master_hazards;
use redis_operator::redis::ops::reshard::MoveOptions;
use redis_operator::redis::ops::slots::cluster_settled;
use redis_operator::redis::parse::cluster_shards::ShardNodeHealth;
use redis_operator::redis::{
    AdminOptions, Auth, Client, ClusterAdmin, NodeId, RedisError, fetch_shards,
};
use support::redis_cluster::{TestCluster, build, quick};
use support::redis_data::DataClient;

async fn write_keys(cluster: &TestCluster, prefix: &str, n: usize) -> Vec<(Bytes, Bytes)> {
    let mut data = DataClient::new(cluster.procs.addrs(), cluster.admin.options().clone()).await;
    let pairs: Vec<(Bytes, Bytes)> = (0..n)
        .map(|i| {
            (
                Bytes::from(format!("{prefix}:{i}")),
                Bytes::from(format!("value-{i}")),
            )
        })
        .collect();
    data.load(&pairs, 100).await.expect("load keys");
    pairs
}

async fn assert_keys(cluster: &TestCluster, pairs: &[(Bytes, Bytes)]) {
    let mut data = DataClient::new(cluster.procs.addrs(), cluster.admin.options().clone()).await;
    let keys: Vec<Bytes> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let values = data.get_many(&keys, 100).await.expect("read keys");
    for ((k, v), got) in pairs.iter().zip(values) {
        assert_eq!(got.as_ref(), Some(v), "key {k:?}");
    }
}

async fn config_set(cluster: &TestCluster, id: &NodeId, name: &str, value: &str) {
    let mut c = Client::connect(cluster.addr(id), cluster.admin.options())
        .await
        .expect("connect");
    c.call(&Cmd::new("CONFIG").arg("SET").arg(name).arg(value))
        .await
        .expect("config set");
}

/// Waits until a proof that `leader` is gone can be established (with FAIL agreed when
/// `agreed` is set).
async fn wait_for_proof(admin: &ClusterAdmin, leader: &NodeId, agreed: bool) -> LeaderGone {
    let started = std::time::Instant::now();
    loop {
        let view = admin.observe().await;
        if let Ok(proof) = LeaderGone::establish(&view, leader)
            && (!agreed || proof.agreed_by_cluster())
        {
            return proof;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "leader {leader} never looked gone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn risk(kind: RiskKind) -> AcceptedRisk {
    AcceptedRisk {
        kind,
        reason: "test: leader process frozen".to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_three_leaders_one_follower_with_auth() {
    let acl = [
        "--user",
        "admin",
        "on",
        ">adminpw",
        "~*",
        "&*",
        "+@all",
        "--user",
        "default",
        "off",
        "--masteruser",
        "admin",
        "--masterauth",
        "adminpw",
    ];
    let options = AdminOptions {
        auth: Some(Auth {
            username: Some("admin".to_owned()),
            password: "adminpw".to_owned(),
        }),
        ..AdminOptions::default()
    };
    let cluster = build("bootstrap", 21000, 3, 1, &acl, options).await;

    let view = cluster.admin.observe().await;
    assert!(cluster_settled(&view), "cluster settled");
    assert_eq!(view.nodes.len(), 6);
    assert!(view.uncovered_slots().is_empty(), "all slots covered");
    for node in &view.nodes {
        assert!(node.info.state_ok);
        assert_eq!(node.info.slots_ok, 16384);
        assert_eq!(node.info.known_nodes, 6);
    }
    for (leader, followers) in cluster.leaders.iter().zip(&cluster.followers) {
        for f in followers {
            let state = cluster
                .admin
                .follower_sync_state(cluster.addr(f))
                .await
                .expect("sync state");
            assert_eq!(&state.leader, leader);
            assert!(state.in_sync(), "{state:?}");
        }
    }

    // CLUSTER SHARDS from the real server parses and agrees with CLUSTER NODES.
    let shards = fetch_shards(cluster.addr(&cluster.leaders[0]), cluster.admin.options())
        .await
        .expect("cluster shards");
    assert_eq!(shards.len(), 3);
    for shard in &shards {
        assert_eq!(shard.nodes.len(), 2);
        let master = shard.nodes.iter().find(|n| n.is_master).expect("master");
        assert!(cluster.leaders.contains(&master.id));
        assert_eq!(
            shard.slots.iter().map(|r| r.len()).sum::<usize>(),
            view.node(&master.id).expect("leader").myself.slot_count()
        );
        // 7.0 reports a replica whose offset is still 0 (nothing written yet) as "loading".
        assert_eq!(master.health, ShardNodeHealth::Online, "{shard:?}");
        assert!(
            shard
                .nodes
                .iter()
                .all(|n| matches!(n.health, ShardNodeHealth::Online | ShardNodeHealth::Loading)),
            "{shard:?}"
        );
    }

    // Every step is idempotent: repeating it sends nothing.
    assert_eq!(
        cluster.admin.meet().await.expect("meet"),
        StepOutcome::AlreadyDone
    );
    let r0 = view
        .node(&cluster.leaders[0])
        .expect("leader 0")
        .myself
        .slots
        .clone();
    assert_eq!(
        cluster
            .admin
            .add_slot_ranges(cluster.addr(&cluster.leaders[0]), &r0)
            .await
            .expect("addslots"),
        StepOutcome::AlreadyDone
    );
    assert_eq!(
        cluster
            .admin
            .replicate(cluster.addr(&cluster.followers[0][0]), &cluster.leaders[0])
            .await
            .expect("replicate"),
        StepOutcome::AlreadyDone
    );
    // Slots served by another leader are refused, not half-applied.
    let err = cluster
        .admin
        .add_slot_ranges(cluster.addr(&cluster.leaders[1]), &r0)
        .await
        .expect_err("slots of another leader");
    assert!(matches!(err, OpError::Precondition(_)), "{err}");

    // A slot move under ACL auth: MIGRATE carries AUTH2 user password to the target.
    let tag_slot = redis_protocol::redis_keyslot(b"{acl}");
    let pairs: Vec<(Bytes, Bytes)> = (0..50)
        .map(|i| {
            (
                Bytes::from(format!("{{acl}}:{i}")),
                Bytes::from(format!("acl-{i}")),
            )
        })
        .collect();
    let mut data = DataClient::new(cluster.procs.addrs(), cluster.admin.options().clone()).await;
    data.load(&pairs, 50).await.expect("load");
    let owner = cluster
        .admin
        .observe()
        .await
        .slot_owner(tag_slot)
        .expect("owned");
    let other = cluster
        .leaders
        .iter()
        .find(|l| **l != owner)
        .expect("other")
        .clone();
    let moved = cluster
        .admin
        .move_slot(tag_slot, &owner, &other, &MoveOptions::default(), None)
        .await
        .expect("move under ACL auth");
    assert_eq!(moved.keys_moved, 50);
    assert_keys(&cluster, &pairs).await;

    // Auth errors are typed.
    let addr = cluster.addr(&cluster.leaders[0]);
    let mut anonymous = Client::connect(addr, &AdminOptions::default())
        .await
        .expect("tcp");
    assert!(matches!(
        anonymous.call(&Cmd::ping()).await,
        Err(RedisError::NoAuth(_))
    ));
    let wrong = AdminOptions {
        auth: Some(Auth {
            username: Some("admin".to_owned()),
            password: "nope".to_owned(),
        }),
        ..AdminOptions::default()
    };
    assert!(matches!(
        Client::connect(addr, &wrong).await,
        Err(RedisError::AuthRefused { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_failover_swaps_roles_without_loss() {
    let cluster = build(
        "graceful",
        21100,
        3,
        1,
        &["--cluster-node-timeout", "3000"],
        quick(),
    )
    .await;
    let pairs = write_keys(&cluster, "g", 500).await;
    let follower = cluster.followers[0][0].clone();
    let leader = cluster.leaders[0].clone();

    // FORCE cannot even be requested on a healthy cluster: no proof can be built.
    let view = cluster.admin.observe().await;
    assert!(matches!(
        LeaderGone::establish(&view, &leader),
        Err(OpError::Refused(_))
    ));

    let outcome = cluster
        .admin
        .failover(&follower, FailoverMode::Graceful)
        .await
        .expect("graceful failover");
    assert_eq!(outcome.step, StepOutcome::Applied);
    assert_eq!(outcome.old_leader.as_ref(), Some(&leader));
    assert!(outcome.old_leader_demoted, "old leader follows the new one");
    let view = cluster.admin.observe().await;
    assert!(view.node(&follower).expect("new leader").is_master());
    assert_eq!(
        view.node(&leader)
            .expect("old leader")
            .myself
            .master_id
            .as_ref(),
        Some(&follower)
    );
    assert_keys(&cluster, &pairs).await;
    let again = cluster
        .admin
        .failover(&follower, FailoverMode::Graceful)
        .await
        .expect("repeat");
    assert_eq!(again.step, StepOutcome::AlreadyDone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_failover_needs_a_valid_proof() {
    let cluster = build(
        "force",
        21200,
        3,
        1,
        &["--cluster-node-timeout", "1000"],
        quick(),
    )
    .await;
    let leader = cluster.leaders[0].clone();
    let follower = cluster.followers[0][0].clone();
    // Keep Redis from failing over by itself, so the operator's FORCE is what promotes.
    config_set(&cluster, &follower, "cluster-replica-no-failover", "yes").await;
    let pairs = write_keys(&cluster, "f", 300).await;
    cluster
        .admin
        .wait_follower_in_sync(cluster.addr(&follower), Duration::from_secs(10))
        .await
        .expect("in sync");

    let leader_proc = cluster.index(&leader);
    cluster.procs.nodes[leader_proc].pause();
    let proof = wait_for_proof(&cluster.admin, &leader, true).await;

    // A proof that went stale (the leader answers again) is refused.
    cluster.procs.nodes[leader_proc].resume();
    support::redis_procs::wait_ready(cluster.addr(&leader), &quick(), Duration::from_secs(5)).await;
    let stale = cluster
        .admin
        .failover(
            &follower,
            FailoverMode::Force {
                proof: proof.clone(),
                risk: risk(RiskKind::LoseUnreplicatedWrites),
            },
        )
        .await
        .expect_err("stale proof");
    assert!(matches!(stale, OpError::Refused(_)), "{stale}");
    assert!(stale.to_string().contains("no longer holds"), "{stale}");

    cluster.procs.nodes[leader_proc].pause();
    let proof = wait_for_proof(&cluster.admin, &leader, true).await;
    // No stated reason: refused.
    let unexplained = cluster
        .admin
        .failover(
            &follower,
            FailoverMode::Force {
                proof: proof.clone(),
                risk: AcceptedRisk {
                    kind: RiskKind::LoseUnreplicatedWrites,
                    reason: " ".to_owned(),
                },
            },
        )
        .await
        .expect_err("no reason");
    assert!(matches!(unexplained, OpError::Refused(_)), "{unexplained}");
    // TAKEOVER while a quorum is reachable: refused (FORCE is the right tool).
    let takeover = cluster
        .admin
        .failover(
            &follower,
            FailoverMode::Takeover {
                proof: proof.clone(),
                risk: risk(RiskKind::SplitBrainAndEpochCollision),
            },
        )
        .await
        .expect_err("takeover with quorum");
    assert!(matches!(takeover, OpError::Refused(_)), "{takeover}");

    let outcome = cluster
        .admin
        .failover(
            &follower,
            FailoverMode::Force {
                proof,
                risk: risk(RiskKind::LoseUnreplicatedWrites),
            },
        )
        .await
        .expect("force failover");
    assert_eq!(outcome.step, StepOutcome::Applied);
    let view = cluster.admin.observe().await;
    let promoted = view.node(&follower).expect("promoted");
    assert!(promoted.is_master());
    assert_eq!(promoted.myself.slot_count(), 5462);

    // The frozen leader comes back and becomes a follower; nothing acknowledged was lost.
    cluster.procs.nodes[leader_proc].resume();
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("cluster settles after the old leader returns");
    assert_keys(&cluster, &pairs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_only_without_quorum() {
    let cluster = build(
        "takeover",
        21300,
        3,
        1,
        &["--cluster-node-timeout", "1000"],
        quick(),
    )
    .await;
    for f in [&cluster.followers[0][0], &cluster.followers[1][0]] {
        config_set(&cluster, f, "cluster-replica-no-failover", "yes").await;
    }
    let pairs = write_keys(&cluster, "t", 200).await;
    let follower = cluster.followers[0][0].clone();
    cluster
        .admin
        .wait_follower_in_sync(cluster.addr(&follower), Duration::from_secs(10))
        .await
        .expect("in sync");
    // Two of three leaders gone: no majority, so no FAIL and no election is possible.
    let a = cluster.index(&cluster.leaders[0]);
    let b = cluster.index(&cluster.leaders[1]);
    cluster.procs.nodes[a].pause();
    cluster.procs.nodes[b].pause();
    let proof = wait_for_proof(&cluster.admin, &cluster.leaders[0], false).await;
    assert!(!proof.agreed_by_cluster(), "no quorum, so only PFAIL");

    let force = cluster
        .admin
        .failover(
            &follower,
            FailoverMode::Force {
                proof: proof.clone(),
                risk: risk(RiskKind::LoseUnreplicatedWrites),
            },
        )
        .await
        .expect_err("force without quorum");
    assert!(matches!(force, OpError::Refused(_)), "{force}");
    let understated = cluster
        .admin
        .failover(
            &follower,
            FailoverMode::Takeover {
                proof: proof.clone(),
                risk: risk(RiskKind::LoseUnreplicatedWrites),
            },
        )
        .await
        .expect_err("takeover with the lesser risk accepted");
    assert!(matches!(understated, OpError::Refused(_)), "{understated}");

    let outcome = cluster
        .admin
        .failover(
            &follower,
            FailoverMode::Takeover {
                proof,
                risk: risk(RiskKind::SplitBrainAndEpochCollision),
            },
        )
        .await
        .expect("takeover");
    assert_eq!(outcome.step, StepOutcome::Applied);
    let promoted = cluster
        .admin
        .observe_node(cluster.addr(&follower))
        .await
        .expect("observe");
    assert!(promoted.is_master());
    assert_eq!(promoted.myself.slot_count(), 5462);

    cluster.procs.nodes[a].resume();
    cluster.procs.nodes[b].resume();
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("cluster settles");
    assert_keys(&cluster, &pairs).await;
}

/// Polls the cluster every 100 ms until `ok` holds, for 30 s at most.
async fn wait_until(what: &str, admin: &ClusterAdmin, mut ok: impl FnMut(&ClusterView) -> bool) {
    let started = std::time::Instant::now();
    loop {
        if ok(&admin.observe().await) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_of_a_stalled_election_only_with_the_majority_and_no_rival() {
    // Shard 0's two followers never stand (`cluster-replica-no-failover`): the election a
    // split vote denies, as in a 10×1 zone crash where three shards' followers stood at once.
    let cluster = build(
        "stalled",
        21600,
        3,
        2,
        &["--cluster-node-timeout", "1000"],
        quick(),
    )
    .await;
    let leader = cluster.leaders[0].clone();
    let [best, rival] = [0, 1].map(|i| cluster.followers[0][i].clone());
    for f in [&best, &rival] {
        config_set(&cluster, f, "cluster-replica-no-failover", "yes").await;
    }
    let pairs = write_keys(&cluster, "s", 300).await;
    for f in [&best, &rival] {
        cluster
            .admin
            .wait_follower_in_sync(cluster.addr(f), Duration::from_secs(10))
            .await
            .expect("in sync");
    }
    let stalled = |proof: LeaderGone| FailoverMode::ElectionStalled {
        proof,
        risk: risk(RiskKind::LoseUnreplicatedWrites),
    };
    cluster.procs.nodes[cluster.index(&leader)].pause();
    wait_until("a majority flags the leader FAIL", &cluster.admin, |v| {
        LeaderGone::establish(v, &leader).is_ok_and(|p| p.failed_for_majority())
    })
    .await;

    // The second follower answers and could stand: refused.
    let proof = wait_for_proof(&cluster.admin, &leader, true).await;
    let beside = cluster
        .admin
        .failover(&best, stalled(proof))
        .await
        .expect_err("a rival answers");
    assert!(matches!(beside, OpError::Refused(_)), "{beside}");
    assert!(beside.to_string().contains(rival.short()), "{beside}");

    // Once the masters report the rival unreachable too, nothing else can claim the slots.
    cluster.procs.nodes[cluster.index(&rival)].pause();
    wait_until(
        "nothing but the best follower could stand",
        &cluster.admin,
        |v| rivals(v, &best, &leader).is_empty(),
    )
    .await;
    let old_epoch = cluster
        .admin
        .observe()
        .await
        .nodes
        .iter()
        .filter_map(|n| n.sees(&leader))
        .map(|e| e.config_epoch)
        .max()
        .expect("the leader is known");
    let proof = wait_for_proof(&cluster.admin, &leader, true).await;
    let outcome = cluster
        .admin
        .failover(&best, stalled(proof))
        .await
        .expect("takeover of the stalled election");
    assert_eq!(outcome.step, StepOutcome::Applied);
    // Promoted without a vote, at an epoch above the old leader's: the other masters route
    // the slots to it.
    wait_until(
        "every master routes shard 0 to the new leader",
        &cluster.admin,
        |v| {
            v.masters()
                .all(|m| m.sees(&best).is_some_and(|e| e.slot_count() == 5462))
        },
    )
    .await;
    let promoted = cluster
        .admin
        .observe_node(cluster.addr(&best))
        .await
        .expect("observe");
    assert!(promoted.myself.config_epoch > old_epoch);

    // Both return and follow it; every key written before is there.
    for n in [&leader, &rival] {
        cluster.procs.nodes[cluster.index(n)].resume();
    }
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("cluster settles");
    assert_keys(&cluster, &pairs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_everywhere_within_the_ban_window() {
    let mut cluster = build(
        "forget",
        21400,
        3,
        1,
        &["--cluster-node-timeout", "1000"],
        quick(),
    )
    .await;
    // Two followers die at once (a zone's worth, in small).
    let gone = [&cluster.followers[2][0], &cluster.followers[1][0]].map(|id| id.clone());
    for id in &gone {
        let index = cluster.index(id);
        cluster.procs.nodes[index].kill();
    }

    // A leader that owns slots is refused under the default policy, and with it every id
    // asked for in the same call: nothing is forgotten.
    let err = cluster
        .admin
        .forget_everywhere(&cluster.leaders[2], ForgetPolicy::NoSlots)
        .await
        .expect_err("leader with slots");
    assert!(matches!(err, OpError::Refused(_)), "{err}");
    let err = cluster
        .admin
        .forget_all_everywhere(
            &[gone[0].clone(), cluster.leaders[2].clone()],
            ForgetPolicy::NoSlots,
        )
        .await
        .expect_err("one refused refuses all");
    assert!(matches!(err, OpError::Refused(_)), "{err}");
    let view = cluster.admin.observe().await;
    assert!(view.nodes.iter().any(|n| n.sees(&gone[0]).is_some()));

    let forgotten = cluster
        .admin
        .forget_all_everywhere(&gone, ForgetPolicy::NoSlots)
        .await
        .expect("forget");
    assert_eq!(forgotten.len(), 2, "{forgotten:?}");
    // Still gone a little later (gossip did not bring them back).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = cluster.admin.observe().await;
    for id in &gone {
        assert!(view.nodes.iter().all(|n| n.sees(id).is_none()), "{id}");
    }
    assert_eq!(
        cluster
            .admin
            .forget_everywhere(&gone[0], ForgetPolicy::NoSlots)
            .await
            .expect("repeat"),
        StepOutcome::AlreadyDone
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detects_empty_master_hazard() {
    let mut cluster = build(
        "hazard",
        21500,
        3,
        1,
        &["--cluster-node-timeout", "5000"],
        quick(),
    )
    .await;
    write_keys(&cluster, "h", 300).await;
    let leader = cluster.leaders[0].clone();
    let follower = cluster.followers[0][0].clone();
    cluster
        .admin
        .wait_follower_in_sync(cluster.addr(&follower), Duration::from_secs(10))
        .await
        .expect("in sync");
    assert!(empty_master_hazards(&cluster.admin.observe().await).is_empty());

    // Restart the leader without data but with its nodes.conf, well within the node timeout.
    // The sync delay keeps the follower from wiping itself before the check runs.
    let index = cluster.index(&leader);
    cluster.procs.nodes[index]
        .restart(&[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "30",
        ])
        .await;
    let started = std::time::Instant::now();
    loop {
        let view = cluster.admin.observe().await;
        let hazards = empty_master_hazards(&view);
        if let Some(h) = hazards.first() {
            assert_eq!(h.leader, leader);
            assert_eq!(h.followers_with_data[0].id, follower);
            assert!(h.followers_with_data[0].keys > 0);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "hazard not detected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
