//! Horizontal scaling end to end: with the acknowledged-write checker running and 200k keys
//! preloaded on a Ready 3 × 1 cluster with PVCs, `leaders` 3 → 5 (the operator killed in the
//! middle of the reshard), 5 → 3, then `followersPerLeader` 1 → 2 → 1. Assertions: 0
//! acknowledged writes lost, every preloaded key readable with its value, slots even, no
//! member lists a node that is gone, Ready with the full placement invariants after each
//! step. And a scale-in refused for lack of memory: condition set, nothing moved. And redis-py's
//! RedisCluster writing and reading through 3 → 5 → 3: the drained shards stay members for the
//! scale-in grace period, answering MOVED, before their Pods go.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;
mod support {
    pub mod ack_writer;
    pub mod app_client;
    pub mod chaos;
}

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use kube_support::*;
use redis_operator::crd::{RedisCluster, RedisClusterStatus};
use redis_operator::redis::client::Client;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::ids::SLOT_COUNT;
use redis_operator::redis::model;
use serde_json::json;
use support::ack_writer::{AckWriterOptions, keyslot};
use support::app_client::{AppClient, app_python};
use support::chaos::*;

const STEP: Duration = Duration::from_secs(300);

/// Owner address of every slot, as the members report it now.
async fn slot_owners(addrs: &[SocketAddr], pass: &str) -> Vec<Option<SocketAddr>> {
    let view = model::observe(addrs, &member_admin(pass)).await;
    view.slot_owners()
        .iter()
        .map(|o| o.as_ref().and_then(|id| view.addr_of(id)))
        .collect()
}

/// Sends `cmds` (one per key) to each key's owner in pipelines of 1000; the replies in order.
async fn by_owner(
    addrs: &[SocketAddr],
    pass: &str,
    keys: &[String],
    cmd: impl Fn(&str) -> Cmd,
) -> Vec<String> {
    let owners = slot_owners(addrs, pass).await;
    let mut groups: BTreeMap<SocketAddr, Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        let owner = owners[usize::from(keyslot(k.as_bytes()))].expect("every slot served");
        groups.entry(owner).or_default().push(i);
    }
    let mut out = vec![String::new(); keys.len()];
    for (addr, idx) in groups {
        let mut client = Client::connect(addr, &member_admin(pass)).await.unwrap();
        for chunk in idx.chunks(1000) {
            let cmds: Vec<Cmd> = chunk.iter().map(|i| cmd(&keys[*i])).collect();
            let replies = client.pipeline(&cmds).await.unwrap();
            for (i, r) in chunk.iter().zip(replies) {
                out[*i] = match r {
                    Ok(f) => redis_operator::redis::reply::render(&f),
                    Err(e) => format!("error: {e}"),
                };
            }
        }
    }
    out
}

/// `n` keys spread over every slot, each holding `size` bytes derived from its name.
async fn preload(addrs: &[SocketAddr], pass: &str, n: usize, size: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("pre:{i}")).collect();
    let replies = by_owner(addrs, pass, &keys, |k| {
        Cmd::new("SET").arg(k).arg(value_of(k, size))
    })
    .await;
    let bad: Vec<&String> = replies.iter().filter(|r| !r.contains("OK")).collect();
    assert!(
        bad.is_empty(),
        "{} SETs refused, e.g. {:?}",
        bad.len(),
        bad.first()
    );
    keys
}

fn value_of(key: &str, size: usize) -> String {
    let mut v = key.repeat(size / key.len() + 1);
    v.truncate(size);
    v
}

/// Every preloaded key still there with its value.
async fn assert_preloaded(addrs: &[SocketAddr], pass: &str, keys: &[String], size: usize) {
    let replies = by_owner(addrs, pass, keys, |k| Cmd::new("GET").arg(k)).await;
    let bad: Vec<(&String, &String)> = keys
        .iter()
        .zip(&replies)
        .filter(|(k, r)| !r.contains(&value_of(k, size)))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} preloaded keys missing or wrong, e.g. {:?}",
        bad.len(),
        keys.len(),
        &bad[..bad.len().min(3)]
    );
}

/// The last reshard spread the slots over `leaders` shards and moved its last slot.
fn reshard_done_to(status: &RedisClusterStatus, leaders: i32) -> bool {
    status
        .reshard
        .as_ref()
        .is_some_and(|r| r.to_leaders == leaders && r.slots_moved == r.slots_to_move)
}

/// `kubectl wait --for=condition=Reconciling=false` on the cluster, as a pipeline would.
async fn kubectl_wait_reconciled(ns: &str) {
    let out = tokio::process::Command::new("kubectl")
        .args([
            "-n",
            ns,
            "wait",
            "--for=condition=Reconciling=false",
            "--timeout=600s",
        ])
        .arg(format!("redisclusters/{NAME}"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Ready with the recovery invariants for `shape`, the reshard done, slots even, and no member
/// listing a node that is not a member.
async fn wait_shape(
    chaos: &Chaos,
    writer: &support::ack_writer::AckWriterHandle,
    shape: (usize, usize),
) -> Members {
    let begun = Instant::now();
    // The reshard's pace is the machine's: on an idle one 1024 slots take 3-5 s, beside the
    // other suites 10-230 s. Waited on while it progresses (a stall of STEP fails), up to
    // 3 x STEP in all.
    let mut progress = (None, Instant::now());
    let until = Recovery {
        timeout: STEP,
        poll: Duration::from_secs(1),
        require_ready: true,
    };
    let members = loop {
        let (members, _) =
            until_recovered(&chaos.client, &chaos.ns.name, NAME, shape, until, |addrs| {
                writer.add_seeds(addrs)
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = chaos.resource().await.status.unwrap();
        let done = status
            .reshard
            .as_ref()
            .is_none_or(|r| r.progress == "100%" && r.to_leaders as usize == shape.0);
        let known = members.0.iter().all(|m| {
            cli(&m.ip, &chaos.pass, &["cluster", "nodes"])
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
                == members.0.len()
        });
        if done && known {
            break members;
        }
        let moved = status
            .reshard
            .as_ref()
            .map(|r| (r.to_leaders, r.slots_moved));
        if moved != progress.0 {
            progress = (moved, Instant::now());
        }
        assert!(
            progress.1.elapsed() < STEP && begun.elapsed() < STEP * 3,
            "reshard not done: {status:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let view = model::observe(&members.addrs(), &member_admin(&chaos.pass)).await;
    let counts: Vec<usize> = view.slot_counts().values().copied().collect();
    let even = usize::from(SLOT_COUNT) / shape.0;
    assert_eq!(counts.len(), shape.0, "{counts:?}");
    assert!(
        counts.iter().all(|c| *c == even || *c == even + 1),
        "slots not even over {} leaders: {counts:?}",
        shape.0
    );
    let status = chaos.resource().await.status.unwrap();
    println!(
        "{}: {}x{} after {:.1} s, reshard {:?}",
        chaos.ns.name,
        shape.0,
        shape.1,
        begun.elapsed().as_secs_f64(),
        status.reshard
    );
    members
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn scale_out_in_and_followers_lose_nothing() {
    let (mut chaos, before) = Chaos::create("scale", json!({})).await;
    print_roles(&chaos.ns.name, "before", &before);
    // Four changes of up to 3 x STEP each, and the read-back: the writer must outlast them
    // all (its default 480 s ran out once, with the side-by-side suites slowing the reshard).
    let writer = chaos
        .writer_with(AckWriterOptions {
            max_duration: STEP * 13,
            ..AckWriterOptions::default()
        })
        .await;
    let keys = preload(&before.addrs(), &chaos.pass, 200_000, 16).await;

    // 3 -> 5, the operator killed once slots are moving. The cluster serves every slot with
    // its follower throughout, so Ready never turns False (an alert on it must not fire).
    let api: Api<RedisCluster> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    let watch = kstatus::Watch::start(api, NAME);
    chaos.patch_spec(json!({"leaders": 5})).await;
    wait_for("slots moving", STEP, || async {
        writer.add_seeds(member_addrs(&chaos.client, &chaos.ns.name, NAME).await);
        let r = chaos.resource().await.status?.reshard?;
        (r.to_leaders == 5 && r.slots_moved > 0).then_some(())
    })
    .await;
    chaos.operator.kill();
    println!("{}: operator killed mid-reshard", chaos.ns.name);
    tokio::time::sleep(Duration::from_secs(2)).await;
    chaos.operator = Operator::start(&chaos.ns.name);
    let five = wait_shape(&chaos, &writer, (5, 1)).await;
    let seen = watch.finish().await;
    let not_ready: Vec<_> = seen
        .iter()
        .filter_map(|(_, rc)| condition(rc, "Ready"))
        .filter(|(status, _, _)| status != "True")
        .collect();
    assert!(
        not_ready.is_empty(),
        "Ready turned False during a planned scale-out: {not_ready:?}"
    );
    assert_preloaded(&five.addrs(), &chaos.pass, &keys, 16).await;

    // 5 -> 3, watched as GitOps tools watch it (kstatus) and with `kubectl wait`.
    let api: Api<RedisCluster> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    let watch = kstatus::Watch::start(api, NAME);
    chaos.patch_spec(json!({"leaders": 3})).await;
    let generation = chaos.resource().await.metadata.generation.unwrap();
    kubectl_wait_reconciled(&chaos.ns.name).await;
    let status = chaos.resource().await.status.unwrap();
    assert!(
        reshard_done_to(&status, 3),
        "Reconciling=False before the last slot moved: {:?}",
        status.reshard
    );
    let three = wait_shape(&chaos, &writer, (3, 1)).await;
    let seen = watch.finish().await;
    let current = kstatus::assert_current_only_when(&seen, generation, "5 -> 3", |rc| {
        rc.status
            .as_ref()
            .is_some_and(|s| reshard_done_to(s, 3) && s.ready_members.as_deref() == Some("6/6"))
    });
    println!(
        "{}: kstatus over 5 -> 3: {} observations, {current} Current",
        chaos.ns.name,
        seen.len()
    );
    assert_preloaded(&three.addrs(), &chaos.pass, &keys, 16).await;

    // Followers 1 -> 2 -> 1.
    chaos.patch_spec(json!({"followersPerLeader": 2})).await;
    wait_shape(&chaos, &writer, (3, 2)).await;
    chaos.patch_spec(json!({"followersPerLeader": 1})).await;
    let last = wait_shape(&chaos, &writer, (3, 1)).await;
    assert_preloaded(&last.addrs(), &chaos.pass, &keys, 16).await;
    chaos.finish(writer).await;
}

/// 4 shards near their maxmemory: the 3 that would remain cannot take the fourth's data, so
/// `leaders: 3` is refused before any slot moves, and reverting it makes the cluster Ready.
#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn scale_in_without_room_is_refused_and_moves_nothing() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "scale-refused").await;
    let _op = Operator::start(&ns.name);
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    api.create(
        &Default::default(),
        &cluster("tight", 4, 1, json!({"config": {"maxmemory": "20mb"}})),
    )
    .await
    .unwrap();
    wait_ready(&api, "tight", STEP).await;
    let pass = password(&client, &ns.name, "tight").await;
    let addrs = member_addrs(&client, &ns.name, "tight").await;
    // ~15 MB per shard (as maxmemory counts it) under a 20 MB limit: the three that would
    // remain have ~5 MB free each.
    preload(&addrs, &pass, 25_000, 1000).await;
    let counts = |addrs: Vec<SocketAddr>| {
        let pass = pass.clone();
        async move {
            model::observe(&addrs, &member_admin(&pass))
                .await
                .slot_counts()
                .values()
                .copied()
                .collect::<Vec<usize>>()
        }
    };
    let before = counts(addrs.clone()).await;
    api.patch(
        "tight",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"leaders": 3}})),
    )
    .await
    .unwrap();
    let (status, _, message) = wait_for(
        "Progressing=False ScaleInRefused",
        Duration::from_secs(120),
        || async {
            let rc = api.get("tight").await.ok()?;
            condition(&rc, "Progressing").filter(|c| c.1 == "ScaleInRefused")
        },
    )
    .await;
    assert_eq!(status, "False");
    assert!(message.contains("maxmemory"), "{message}");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns.name);
    let warned = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|e| {
            e.reason.as_deref() == Some("ScaleInRefused") && e.type_.as_deref() == Some("Warning")
        });
    assert!(warned, "a Warning Event ScaleInRefused");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        counts(addrs.clone()).await,
        before,
        "no slot moved for a refused scale-in"
    );
    assert_eq!(member_addrs(&client, &ns.name, "tight").await.len(), 8);
    api.patch(
        "tight",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"leaders": 4}})),
    )
    .await
    .unwrap();
    wait_ready(&api, "tight", Duration::from_secs(120)).await;
    ns.cleanup().await;
}

/// When each Event with `reason` was published, with its note.
async fn events_of(
    client: &kube::Client,
    ns: &str,
    reason: &str,
) -> Vec<(jiff::Timestamp, String)> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    let mut out: Vec<_> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| {
            let at = e
                .event_time
                .map(|t| t.0)
                .or_else(|| e.first_timestamp.map(|t| t.0))?;
            Some((at, e.message.unwrap_or_default()))
        })
        .collect();
    out.sort();
    out
}

/// redis-py's RedisCluster (`tests/support/app_client.py`, its default retries) writing and
/// reading through `leaders` 3 → 5 → 3. The drained shards stay members for the default grace
/// period (30 s) after their last slot moved, so the client is redirected and refreshes its slot
/// map before their Pods go (without the period the client stalled 5 s, its socket timeout, on
/// a removed node). Its report is printed with the error counts, not asserted: redis-py may
/// raise `AttributeError … redis_connection` once during the scale-out, following an `ASK` to
/// a new master it has not discovered (redis-py #2432). It must end serving every slot, and
/// the removal must come a grace period after the drain, and no request may have waited on a
/// vanished node (a stall as long as the client's 5 s socket timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster; run by make test"]
async fn redis_py_through_scale_out_and_in() {
    app_python();
    let (chaos, before, writer) = Chaos::start("scalepy", json!({})).await;
    let app = AppClient::start(
        &before.addrs(),
        &chaos.pass,
        Duration::from_secs(900),
        "app",
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    chaos.patch_spec(json!({"leaders": 5})).await;
    wait_shape(&chaos, &writer, (5, 1)).await;
    let out_done = app.elapsed();
    chaos.patch_spec(json!({"leaders": 3})).await;
    wait_shape(&chaos, &writer, (3, 1)).await;
    let in_done = app.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let report = tokio::task::spawn_blocking(move || app.stop())
        .await
        .unwrap();
    println!(
        "{}: 3 -> 5 done at {:.1} s, 5 -> 3 done at {:.1} s",
        chaos.ns.name,
        out_done.as_secs_f64(),
        in_done.as_secs_f64()
    );
    println!("{}", report.summary());
    for sample in report.error_samples.iter().take(10) {
        println!("  {sample}");
    }
    let started = events_of(&chaos.client, &chaos.ns.name, "ScaleInGraceStarted").await;
    let removed = events_of(&chaos.client, &chaos.ns.name, "MemberRemoved").await;
    for (at, note) in started.iter().chain(&removed) {
        println!("  {at} {note}");
    }
    let first_start = started
        .first()
        .map(|(at, _)| *at)
        .expect("a ScaleInGraceStarted Event");
    let first_removal = removed
        .iter()
        .find(|(_, note)| note.contains("-s3-") || note.contains("-s4-"))
        .map(|(at, _)| *at)
        .expect("a MemberRemoved Event for a drained shard");
    let waited = first_removal.duration_since(first_start).as_secs_f64();
    assert!(
        waited >= 29.0,
        "removed {waited:.1} s after the drain was recorded"
    );
    assert!(report.ok > 0 && report.gets_ok > 0, "{report:?}");
    assert!(
        report.failing_slots_at_end.is_empty() && !report.stall_open_at_end,
        "the client had not recovered: {report:?}"
    );
    assert!(
        report.longest_stall_s < 4.0,
        "a request waited on a removed node: {}",
        report.summary()
    );
    chaos.finish(writer).await;
}
