//! Resharding and open-slot repair against real redis-server 7.0.15 processes: a 3→4
//! rebalance under concurrent writes, a slot move aborted between MIGRATE batches and resumed,
//! and each open-slot case `redis-cli --cluster fix` handles.

mod support {
    pub mod redis_cluster;
    pub mod redis_data;
    pub mod redis_procs;
}

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_operator::redis::client::Frame;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::ops::StepOutcome;
use redis_operator::redis::ops::distribution::{SlotMove, plan_slot_distribution};
use redis_operator::redis::ops::migrate::{BatchOptions, Progress};
use redis_operator::redis::ops::repair::{RepairAction, RepairOptions};
use redis_operator::redis::ops::reshard::{MoveOptions, ReshardOptions};
use redis_operator::redis::parse::cluster_nodes::OpenSlotState;
use redis_operator::redis::{AdminOptions, Auth, Client, NodeId, RedisError, reply};
use support::redis_cluster::{TestCluster, build, build_with_spares, quick};
use support::redis_data::DataClient;

async fn raw(cluster: &TestCluster, addr: SocketAddr, cmd: Cmd) -> Result<Frame, RedisError> {
    let mut c = Client::connect(addr, cluster.admin.options()).await?;
    c.call(&cmd).await
}

async fn count_in_slot(cluster: &TestCluster, id: &NodeId, slot: u16) -> u64 {
    let cmd = Cmd::countkeysinslot(slot);
    let frame = raw(cluster, cluster.addr(id), cmd.clone())
        .await
        .expect("count");
    reply::count(&cmd, frame).expect("integer")
}

/// Sends `ASKING` and a command on one connection, the way a client follows an ASK redirect.
async fn asking(cluster: &TestCluster, id: &NodeId, cmd: Cmd) {
    let mut c = Client::connect(cluster.addr(id), cluster.admin.options())
        .await
        .expect("connect");
    let replies = c
        .pipeline(&[Cmd::new("ASKING"), cmd])
        .await
        .expect("pipeline");
    for r in replies {
        r.expect("ASKING command accepted");
    }
}

/// Runs `MIGRATE` of `keys` from `from` to `to` directly, to set up half-done moves.
async fn migrate_some(cluster: &TestCluster, from: &NodeId, to: &NodeId, keys: &[Bytes]) {
    let target = cluster.addr(to);
    let cmd = keys.iter().cloned().fold(
        Cmd::new("MIGRATE")
            .arg(target.ip().to_string())
            .arg_int(target.port())
            .arg("")
            .arg_int(0)
            .arg_int(5000)
            .arg("KEYS"),
        |c, k| c.arg_bytes(k),
    );
    let frame = raw(cluster, cluster.addr(from), cmd.clone())
        .await
        .expect("migrate");
    reply::ok(&cmd, frame).expect("migrate ok");
}

async fn setslot(cluster: &TestCluster, id: &NodeId, cmd: Cmd) {
    let frame = raw(cluster, cluster.addr(id), cmd.clone())
        .await
        .expect("setslot");
    reply::ok(&cmd, frame).expect("setslot ok");
}

fn keys_for(tag: &str, n: usize) -> Vec<(Bytes, Bytes)> {
    (0..n)
        .map(|i| {
            (
                Bytes::from(format!("{{{tag}}}:{i}")),
                Bytes::from(format!("{tag}-value-{i}")),
            )
        })
        .collect()
}

fn slot_of(tag: &str) -> u16 {
    redis_protocol::redis_keyslot(format!("{{{tag}}}").as_bytes())
}

/// Owner of `slot` and the two other leaders.
async fn roles(cluster: &TestCluster, slot: u16) -> (NodeId, NodeId, NodeId) {
    let view = cluster.admin.observe().await;
    let owner = view.slot_owner(slot).expect("slot owned");
    let others: Vec<NodeId> = cluster
        .leaders
        .iter()
        .filter(|l| **l != owner)
        .cloned()
        .collect();
    (owner, others[0].clone(), others[1].clone())
}

async fn load(cluster: &TestCluster, pairs: &[(Bytes, Bytes)]) {
    let mut data = DataClient::new(cluster.procs.addrs(), cluster.admin.options().clone()).await;
    data.load(pairs, 200).await.expect("load");
}

async fn assert_values(cluster: &TestCluster, pairs: &[(Bytes, Bytes)]) {
    let mut data = DataClient::new(cluster.procs.addrs(), cluster.admin.options().clone()).await;
    let keys: Vec<Bytes> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let values = data.get_many(&keys, 200).await.expect("read");
    for ((k, v), got) in pairs.iter().zip(values) {
        assert_eq!(got.as_ref(), Some(v), "key {k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_three_to_four_under_writes_loses_nothing() {
    let options = AdminOptions {
        auth: Some(Auth {
            username: None,
            password: "s3cret".to_owned(),
        }),
        ..AdminOptions::default()
    };
    let args = ["--requirepass", "s3cret", "--masterauth", "s3cret"];
    let cluster = build_with_spares("rebalance", 22000, 3, 0, 1, &args, options.clone()).await;
    const EXISTING: usize = 20_000;
    const UNIVERSE: usize = 25_000;
    let initial: Vec<(Bytes, Bytes)> = (0..EXISTING)
        .map(|i| {
            (
                Bytes::from(format!("k:{i}")),
                Bytes::from(format!("v0-{i}")),
            )
        })
        .collect();
    load(&cluster, &initial).await;

    // A writer overwrites existing keys and creates new ones while slots move. Every write that
    // returned OK is acknowledged; failed writes are indeterminate (either value is fine).
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, during) = (stop.clone(), during.clone());
        let mut data = DataClient::new(cluster.procs.addrs(), options.clone()).await;
        tokio::spawn(async move {
            let mut acked: HashMap<usize, Bytes> = HashMap::new();
            let mut uncertain: HashMap<usize, Vec<Bytes>> = HashMap::new();
            let started = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed)
                && seq < 400_000
                && started.elapsed() < Duration::from_secs(240)
            {
                seq += 1;
                let i = ((seq * 7919) % UNIVERSE as u64) as usize;
                let value = Bytes::from(format!("v{seq}-{i}"));
                match data.set(format!("k:{i}").as_bytes(), &value).await {
                    Ok(()) => {
                        acked.insert(i, value);
                        uncertain.remove(&i);
                        during.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => uncertain.entry(i).or_default().push(value),
                }
            }
            (acked, uncertain)
        })
    };

    let view = cluster.admin.observe().await;
    let mut targets = cluster.leaders.clone();
    targets.push(cluster.ids[3].clone());
    let moves = plan_slot_distribution(&view.slot_owners(), &targets);
    assert_eq!(moves.len(), 4096);
    let progress = Progress::default();
    let before = during.load(Ordering::Relaxed);
    let report = cluster
        .admin
        .reshard(&moves, &ReshardOptions::default(), Some(&progress))
        .await
        .expect("reshard");
    let writes_during = during.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    let (acked, uncertain) = writer.await.expect("writer");
    assert_eq!(report.slots_moved, 4096);
    assert!(report.keys_moved > 0);
    assert!(
        writes_during > 100,
        "writes overlapped the reshard ({writes_during})"
    );

    let view = cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("settled");
    for count in view.slot_counts().values() {
        assert_eq!(*count, 4096);
    }
    let keys: Vec<Bytes> = (0..UNIVERSE)
        .map(|i| Bytes::from(format!("k:{i}")))
        .collect();
    let mut data = DataClient::new(cluster.procs.addrs(), options).await;
    let values = data.get_many(&keys, 500).await.expect("read back");
    let mut lost = 0;
    for (i, got) in values.into_iter().enumerate() {
        let expected = acked
            .get(&i)
            .cloned()
            .or_else(|| (i < EXISTING).then(|| initial[i].1.clone()));
        let alternatives = uncertain.get(&i).cloned().unwrap_or_default();
        let ok = match (&got, &expected) {
            (Some(g), _) if alternatives.contains(g) => true,
            (g, e) => g.as_ref() == e.as_ref(),
        };
        if !ok {
            lost += 1;
            eprintln!("key k:{i}: got {got:?}, expected {expected:?}");
        }
    }
    assert_eq!(lost, 0, "acknowledged writes lost");
    eprintln!(
        "rebalance: {} keys moved in {:?}, {} acknowledged writes, {} during the reshard",
        report.keys_moved,
        report.elapsed,
        acked.len(),
        writes_during
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_aborted_between_batches_resumes_without_loss_or_duplicates() {
    let cluster = build("abort", 22100, 2, 0, &[], AdminOptions::default()).await;
    let pairs = keys_for("abort", 4000);
    let slot = slot_of("abort");
    load(&cluster, &pairs).await;
    let view = cluster.admin.observe().await;
    let source = view.slot_owner(slot).expect("owned");
    let target = cluster
        .leaders
        .iter()
        .find(|l| **l != source)
        .expect("other")
        .clone();

    let progress = Arc::new(Progress::default());
    let small = MoveOptions {
        batch: BatchOptions {
            initial: 50,
            max: 50,
            target_time: Duration::from_secs(10),
            pipeline_depth: 1,
        },
        ..MoveOptions::default()
    };
    let task = {
        let (admin, progress) = (cluster.admin.clone(), progress.clone());
        let (source, target) = (source.clone(), target.clone());
        tokio::spawn(async move {
            admin
                .move_slot(slot, &source, &target, &small, Some(&progress))
                .await
        })
    };
    let started = Instant::now();
    while progress.keys_moved.load(Ordering::Relaxed) < 1000 {
        assert!(started.elapsed() < Duration::from_secs(30), "no progress");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task.abort();
    assert!(task.await.is_err(), "task was cancelled");

    // Half-way: the slot is open on both nodes and the keys are split, each key exactly once
    // (a MIGRATE that was in flight when the task died still completes on the server).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let view = cluster.admin.observe().await;
    assert!(matches!(
        view.node(&source).expect("source").myself.open_state(slot),
        Some(OpenSlotState::Migrating { .. })
    ));
    assert!(matches!(
        view.node(&target).expect("target").myself.open_state(slot),
        Some(OpenSlotState::Importing { .. })
    ));
    let (on_source, on_target) = (
        count_in_slot(&cluster, &source, slot).await,
        count_in_slot(&cluster, &target, slot).await,
    );
    assert!(
        on_source > 0 && on_target >= 1000,
        "{on_source} / {on_target}"
    );
    assert_eq!(on_source + on_target, 4000);

    // Simulate a source that died between RESTORE on the target and DEL on the source: three
    // keys now exist on both sides, the target's copy stale.
    let cmd = Cmd::getkeysinslot(slot, 3);
    let frame = raw(&cluster, cluster.addr(&source), cmd.clone())
        .await
        .expect("keys");
    let doubled = reply::bytes_array(&cmd, frame).expect("array");
    for key in &doubled {
        asking(
            &cluster,
            &target,
            Cmd::new("SET").arg_bytes(key.clone()).arg("stale"),
        )
        .await;
    }

    let resumed = cluster
        .admin
        .move_slot(slot, &source, &target, &MoveOptions::default(), None)
        .await
        .expect("resume");
    assert_eq!(resumed.step, StepOutcome::Applied);
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("settled");
    let view = cluster.admin.observe().await;
    assert_eq!(view.slot_owner(slot).as_ref(), Some(&target));
    assert!(view.open_slots().is_empty());
    assert_eq!(count_in_slot(&cluster, &source, slot).await, 0);
    assert_eq!(count_in_slot(&cluster, &target, slot).await, 4000);
    assert_values(&cluster, &pairs).await;
    let again = cluster
        .admin
        .move_slot(slot, &source, &target, &MoveOptions::default(), None)
        .await
        .expect("repeat");
    assert_eq!(again.step, StepOutcome::AlreadyDone);
}

async fn repair_cluster(name: &str, base: u16) -> TestCluster {
    build(name, base, 3, 0, &[], AdminOptions::default()).await
}

async fn fix(cluster: &TestCluster) -> Vec<RepairAction> {
    let actions = cluster
        .admin
        .fix_open_slots(&RepairOptions::default())
        .await
        .expect("fix open slots");
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("settled after repair");
    assert!(
        cluster
            .admin
            .fix_open_slots(&RepairOptions::default())
            .await
            .expect("repeat")
            .is_empty(),
        "nothing left to repair"
    );
    actions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_migrating_and_importing_finishes_the_move() {
    let cluster = repair_cluster("fix1", 22200).await;
    let (slot, pairs) = (slot_of("case1"), keys_for("case1", 100));
    load(&cluster, &pairs).await;
    let (a, b, _) = roles(&cluster, slot).await;
    setslot(&cluster, &b, Cmd::setslot_importing(slot, &a)).await;
    setslot(&cluster, &a, Cmd::setslot_migrating(slot, &b)).await;
    let moved: Vec<Bytes> = pairs[..40].iter().map(|(k, _)| k.clone()).collect();
    migrate_some(&cluster, &a, &b, &moved).await;

    let actions = fix(&cluster).await;
    assert!(
        actions.iter().any(
            |x| matches!(x, RepairAction::MoveFinished { from, to, .. } if *from == a && *to == b)
        ),
        "{actions:?}"
    );
    assert_eq!(
        cluster.admin.observe().await.slot_owner(slot),
        Some(b.clone())
    );
    assert_eq!(count_in_slot(&cluster, &a, slot).await, 0);
    assert_eq!(count_in_slot(&cluster, &b, slot).await, 100);
    assert_values(&cluster, &pairs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_importing_without_migrating_returns_keys_to_owner() {
    let cluster = repair_cluster("fix2", 22300).await;
    let (slot, mut pairs) = (slot_of("case2"), keys_for("case2", 50));
    load(&cluster, &pairs).await;
    let (a, b, _) = roles(&cluster, slot).await;
    setslot(&cluster, &b, Cmd::setslot_importing(slot, &a)).await;
    // A client that followed an ASK created a key on the importing node.
    let stray = (Bytes::from("{case2}:new"), Bytes::from("written-via-ask"));
    asking(
        &cluster,
        &b,
        Cmd::new("SET")
            .arg_bytes(stray.0.clone())
            .arg_bytes(stray.1.clone()),
    )
    .await;
    pairs.push(stray);

    let actions = fix(&cluster).await;
    assert!(
        actions.contains(&RepairAction::KeysMoved {
            slot,
            from: b.clone(),
            to: a.clone(),
            keys: 1
        }),
        "{actions:?}"
    );
    assert!(
        actions.contains(&RepairAction::Stabilized {
            slot,
            node: b.clone()
        }),
        "{actions:?}"
    );
    assert_eq!(
        cluster.admin.observe().await.slot_owner(slot),
        Some(a.clone())
    );
    assert_eq!(count_in_slot(&cluster, &a, slot).await, 51);
    assert_values(&cluster, &pairs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_migrating_with_several_importers() {
    let cluster = repair_cluster("fix3", 22400).await;
    let (slot, mut pairs) = (slot_of("case3"), keys_for("case3", 50));
    load(&cluster, &pairs).await;
    let (a, b, c) = roles(&cluster, slot).await;
    setslot(&cluster, &b, Cmd::setslot_importing(slot, &a)).await;
    setslot(&cluster, &c, Cmd::setslot_importing(slot, &a)).await;
    setslot(&cluster, &a, Cmd::setslot_migrating(slot, &b)).await;
    let moved: Vec<Bytes> = pairs[..20].iter().map(|(k, _)| k.clone()).collect();
    migrate_some(&cluster, &a, &b, &moved).await;
    let stray = (Bytes::from("{case3}:stray"), Bytes::from("on-c"));
    asking(
        &cluster,
        &c,
        Cmd::new("SET")
            .arg_bytes(stray.0.clone())
            .arg_bytes(stray.1.clone()),
    )
    .await;
    pairs.push(stray);

    let actions = fix(&cluster).await;
    assert!(
        actions.contains(&RepairAction::KeysMoved {
            slot,
            from: c.clone(),
            to: b.clone(),
            keys: 1
        }),
        "{actions:?}"
    );
    assert!(
        actions.contains(&RepairAction::Stabilized {
            slot,
            node: c.clone()
        }),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|x| matches!(x, RepairAction::MoveFinished { to, .. } if *to == b)),
        "{actions:?}"
    );
    assert_eq!(
        cluster.admin.observe().await.slot_owner(slot),
        Some(b.clone())
    );
    assert_eq!(count_in_slot(&cluster, &b, slot).await, 51);
    assert_eq!(count_in_slot(&cluster, &c, slot).await, 0);
    assert_values(&cluster, &pairs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_target_that_lost_its_importing_marker() {
    let cluster = repair_cluster("fix4", 22500).await;
    let (slot, pairs) = (slot_of("case4"), keys_for("case4", 60));
    load(&cluster, &pairs).await;
    let (a, b, _) = roles(&cluster, slot).await;
    setslot(&cluster, &b, Cmd::setslot_importing(slot, &a)).await;
    setslot(&cluster, &a, Cmd::setslot_migrating(slot, &b)).await;
    let moved: Vec<Bytes> = pairs[..25].iter().map(|(k, _)| k.clone()).collect();
    migrate_some(&cluster, &a, &b, &moved).await;
    // As after a failover of the target in 7.0: its replacement has no IMPORTING state.
    setslot(&cluster, &b, Cmd::setslot_stable(slot)).await;

    let actions = fix(&cluster).await;
    assert!(
        actions.iter().any(
            |x| matches!(x, RepairAction::MoveFinished { from, to, .. } if *from == a && *to == b)
        ),
        "{actions:?}"
    );
    assert_eq!(
        cluster.admin.observe().await.slot_owner(slot),
        Some(b.clone())
    );
    assert_eq!(count_in_slot(&cluster, &b, slot).await, 60);
    assert_values(&cluster, &pairs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_marker_without_counterpart_and_uncovered_slot() {
    let cluster = repair_cluster("fix5", 22600).await;
    // Importing on a node, nothing anywhere else, no keys moved: just cleared.
    let (slot, pairs) = (slot_of("case5"), keys_for("case5", 30));
    load(&cluster, &pairs).await;
    let (a, b, _) = roles(&cluster, slot).await;
    setslot(&cluster, &b, Cmd::setslot_importing(slot, &a)).await;
    let actions = fix(&cluster).await;
    assert_eq!(
        actions,
        vec![RepairAction::Stabilized {
            slot,
            node: b.clone()
        }]
    );
    assert_eq!(
        cluster.admin.observe().await.slot_owner(slot),
        Some(a.clone())
    );
    assert_values(&cluster, &pairs).await;

    // A slot every node lost track of (as after forgetting a dead owner) goes back to the node
    // that holds its keys.
    let (slot, pairs) = (slot_of("case6"), keys_for("case6", 30));
    load(&cluster, &pairs).await;
    let (holder, _, _) = roles(&cluster, slot).await;
    for leader in &cluster.leaders {
        let cmd = Cmd::cluster("DELSLOTS").arg_int(slot);
        raw(&cluster, cluster.addr(leader), cmd)
            .await
            .expect("delslots");
    }
    let view = cluster.admin.observe().await;
    assert!(view.uncovered_slots().iter().any(|r| r.contains(slot)));
    let actions = cluster
        .admin
        .fix_uncovered_slots(&RepairOptions::default())
        .await
        .expect("fix uncovered");
    assert_eq!(
        actions,
        vec![RepairAction::Assigned {
            slot,
            owner: holder.clone()
        }]
    );
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("settled");
    assert_values(&cluster, &pairs).await;
}

/// A 3-leader cluster loaded with 3,000 keys (`{prefix}:{i}`), and the plan that drains its
/// third leader's 5,461 slots onto the other two.
async fn drain_setup(
    name: &str,
    port: u16,
    prefix: &str,
) -> (TestCluster, Vec<(Bytes, Bytes)>, NodeId, Vec<SlotMove>) {
    let cluster = build(name, port, 3, 0, &[], AdminOptions::default()).await;
    let pairs: Vec<(Bytes, Bytes)> = (0..3000)
        .map(|i| {
            (
                Bytes::from(format!("{prefix}:{i}")),
                Bytes::from(format!("{prefix}v{i}")),
            )
        })
        .collect();
    load(&cluster, &pairs).await;
    let drained = cluster.leaders[2].clone();
    let view = cluster.admin.observe().await;
    let moves = plan_slot_distribution(&view.slot_owners(), &cluster.leaders[..2]);
    assert_eq!(moves.len(), 5461);
    (cluster, pairs, drained, moves)
}

/// Slots the drained leader still owns, once no node has a slot left open.
async fn slots_left_none_open(cluster: &TestCluster, drained: &NodeId) -> usize {
    let view = cluster.admin.observe().await;
    for n in &view.nodes {
        assert!(
            n.myself.open_slots.is_empty(),
            "{} left open: {:?}",
            n.myself.id.short(),
            n.myself.open_slots
        );
    }
    view.node(drained)
        .map(|n| n.myself.slot_count())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_a_leader_then_repeat_is_a_no_op() {
    let (cluster, pairs, drained, moves) = drain_setup("drain", 22700, "d").await;
    let report = cluster
        .admin
        .reshard(&moves, &ReshardOptions::default(), None)
        .await
        .expect("drain");
    assert_eq!(report.slots_moved, 5461);
    // Having lost its last slot, the drained leader follows one of the others (Redis's
    // replica migration), and the same plan is now a no-op.
    let started = Instant::now();
    loop {
        let view = cluster.admin.observe().await;
        if view.node(&drained).is_some_and(|n| !n.is_master()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "drained leader never followed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = cluster
        .admin
        .reshard(&moves, &ReshardOptions::default(), None)
        .await
        .expect("repeat");
    assert_eq!(again.slots_moved, 0);
    assert_eq!(again.slots_already_done, 5461);
    let one = moves.first().expect("a move");
    let single = cluster
        .admin
        .move_slot(one.slot, &drained, &one.to, &MoveOptions::default(), None)
        .await
        .expect("single repeat");
    assert_eq!(single.step, StepOutcome::AlreadyDone);
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("settled");
    assert_values(&cluster, &pairs).await;
}

/// A reshard told to stop (the operator lost its leadership mid-batch) stops between slot
/// groups: some slots moved, none left open, an error the caller sees; running the same plan
/// again finishes it with every value intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_told_to_stop_leaves_no_slot_open_and_resumes() {
    let (cluster, pairs, drained, moves) = drain_setup("stopped", 22800, "s").await;
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let keep_going = || asked.fetch_add(1, Ordering::Relaxed) < 10;
    let stopped = cluster
        .admin
        .reshard_while(&moves, &ReshardOptions::default(), None, &keep_going)
        .await;
    assert!(
        matches!(
            stopped,
            Err(redis_operator::redis::ops::OpError::Precondition(_))
        ),
        "{stopped:?}"
    );
    let left = slots_left_none_open(&cluster, &drained).await;
    assert!(
        left > 0 && left < 5461,
        "{left} slots left on the drained leader"
    );
    let done = cluster
        .admin
        .reshard(&moves, &ReshardOptions::default(), None)
        .await
        .expect("resume");
    assert_eq!(done.slots_moved, left);
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("settled");
    assert_values(&cluster, &pairs).await;
}

/// A reshard whose target stops answering mid-way (SIGSTOP) fails once, not once per stream:
/// the streams queued for the frozen node's MIGRATE lane stop instead of each waiting out the
/// same MIGRATE timeout in turn. Running the same plan again after
/// the node is back finishes it with every value intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_whose_target_freezes_fails_once_and_resumes() {
    let cluster = build("frozen", 22900, 3, 0, &[], quick()).await;
    let pairs: Vec<(Bytes, Bytes)> = (0..30_000)
        .map(|i| (Bytes::from(format!("f:{i}")), Bytes::from(format!("fv{i}"))))
        .collect();
    load(&cluster, &pairs).await;
    let view = cluster.admin.observe().await;
    let moves = plan_slot_distribution(&view.slot_owners(), &cluster.leaders[..2]);
    let progress = Progress::default();
    let frozen = &cluster.procs.nodes[0];
    let options = ReshardOptions::default();
    let reshard = cluster.admin.reshard(&moves, &options, Some(&progress));
    let freeze = async {
        let started = Instant::now();
        while progress.slots_done.load(Ordering::Relaxed) == 0 {
            assert!(started.elapsed() < Duration::from_secs(60), "no slot moved");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        frozen.pause();
        Instant::now()
    };
    let (result, frozen_at) = tokio::join!(reshard, freeze);
    let failed_after = frozen_at.elapsed();
    frozen.resume();
    assert!(result.is_err(), "the reshard ended well: {result:?}");
    // The source gives up on the frozen target after the MIGRATE timeout (5 s): the reshard
    // failed 10 s after the freeze with the stop, 30 s without it (streams timing out one
    // after the other). The bound is one whole client-side MIGRATE wait, 2 × 5 s + 1.5 s, twice.
    assert!(
        failed_after < Duration::from_secs(23),
        "the reshard failed only {failed_after:?} after its target froze: {result:?}"
    );
    // The slots the stop left open are continued by the same plan; until the cluster has
    // heard from the node again a run may find it unreachable, so it is given a few tries.
    let resumed = Instant::now();
    let done = loop {
        match cluster.admin.reshard(&moves, &options, None).await {
            Ok(done) => break done,
            Err(e) => {
                assert!(
                    resumed.elapsed() < Duration::from_secs(90),
                    "the same plan never finished: {e}"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    assert!(done.slots_moved > 0, "{done:?}");
    let view = cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("settled");
    assert!(view.nodes.iter().all(|n| n.myself.open_slots.is_empty()));
    assert_values(&cluster, &pairs).await;
}

/// A reshard with a time budget (the operator's step on a loaded machine) returns once it is
/// spent: no error, every stream moved at least one group, no slot left open, and the report
/// counts exactly what moved; the same plan run again moves the rest with every value intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_out_of_time_stops_cleanly_and_resumes() {
    let (cluster, pairs, drained, moves) = drain_setup("budget", 23000, "b").await;
    let options = ReshardOptions {
        time_budget: Some(Duration::from_millis(1)),
        ..ReshardOptions::default()
    };
    let first = cluster
        .admin
        .reshard(&moves, &options, None)
        .await
        .expect("a reshard out of time is not an error");
    let left = slots_left_none_open(&cluster, &drained).await;
    // Two pairs, eight streams each, at least one group of eight slots per stream.
    assert!(first.slots_moved >= 2 * 8 * 8, "{first:?}");
    assert_eq!(first.slots_moved, 5461 - left, "{first:?}");
    assert!(left > 0, "the whole drain fit in 1 ms: {first:?}");
    let rest = cluster
        .admin
        .reshard(&moves, &ReshardOptions::default(), None)
        .await
        .expect("resume");
    assert_eq!(rest.slots_moved, left);
    assert_eq!(rest.slots_already_done, 5461 - left);
    cluster
        .admin
        .wait_cluster_settled(Duration::from_secs(30))
        .await
        .expect("settled");
    assert_values(&cluster, &pairs).await;
}
