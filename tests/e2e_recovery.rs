//! Chaos end-to-end: faults injected into a Ready 3 × 1 RedisCluster while an
//! acknowledged-write checker (`support/ack_writer.rs`) writes to every shard (the test's
//! world and the faults: `support/chaos.rs`). Each test has
//! its own namespace and operator process, waits (up to 240 s) for `Ready=True` together with
//! the recovery invariants ([`check_recovered`]), then reads every acknowledged write back:
//! none may be lost. The writer's outage numbers are printed as benchmarks, never asserted.
//!
//! Needs the local cluster, the CRD and the RBAC: run through `make test`. Tests named
//! `serial_` crash a node (every pod on it dies, other tests' too): `make e2e` runs them alone,
//! after the others.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;
mod support {
    pub mod ack_writer;
    pub mod chaos;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::ListParams;
use kube_support::*;
use redis_operator::crd::RedisCluster;
use serde_json::json;
use support::chaos::*;

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn follower_pod_deleted_returns_with_its_identity() {
    let (chaos, before, writer) = Chaos::start("rec-follower", json!({})).await;
    let victim = before.followers(1)[0].clone();
    chaos.delete_pods(&[&victim.pod]).await;
    let after = chaos.finish(writer).await;
    let back = same_member(&after, &shard_of(&before, &victim.pod));
    assert_ne!(back.pod, victim.pod, "a replacement pod");
    assert_eq!(
        back.node, victim.node,
        "the replacement runs where its PVC is"
    );
    assert_eq!(
        back.id, victim.id,
        "with a PVC the member keeps its node id"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_pod_deleted_gracefully_fails_over() {
    let (chaos, before, writer) = Chaos::start("rec-leader", json!({})).await;
    let victim = before.leader(0).clone();
    let follower = LeadershipWatch::start(before.followers(0)[0], &chaos.pass);
    chaos.delete_pods(&[&victim.pod]).await;
    chaos.finish(writer).await;
    assert!(
        follower.finish().await,
        "the follower of shard 0 never took over from its deleted leader"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_process_killed_recovers() {
    let (chaos, before, writer) = Chaos::start("rec-kill", json!({})).await;
    chaos.kill_redis(&before.leader(1).pod).await;
    chaos.finish(writer).await;
}

/// Without persistence a restarted leader comes back empty with its nodes.conf; if it kept
/// its slots, its follower would sync the empty dataset and every write of the shard would be
/// gone (reference §7 S4).
#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_restarted_empty_loses_no_acknowledged_write() {
    let (chaos, before, writer) = Chaos::start(
        "rec-empty",
        json!({"storage": null, "config": {"appendonly": "no", "save": "\"\""}}),
    )
    .await;
    let claims =
        count::<PersistentVolumeClaim>(&chaos.client, &chaos.ns.name, &ListParams::default()).await;
    assert_eq!(claims, Some(0), "a cluster without storage has no PVCs");
    chaos.kill_redis(&before.leader(2).pod).await;
    chaos.finish(writer).await;
}

/// S4 again, for a leader that was once a follower (found by the soak on a cache mid-rollout).
/// Without persistence, a follower still keeps the RDB its full sync wrote to /data. Once
/// it leads, that file is its dataset as of the sync. If its process restarted and loaded the
/// file, it came back as the leader of its slots with a stale dataset, and its followers synced
/// it: every write acknowledged since that sync was gone. Here both members of shard 2 are
/// replaced (each then full-syncs as a follower), more writes are acknowledged, and the leader
/// is killed.
#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn former_follower_leading_without_persistence_restarts_without_stale_data() {
    let (chaos, before, writer) = Chaos::start(
        "rec-stale",
        json!({"storage": null, "config": {"appendonly": "no", "save": "\"\""}}),
    )
    .await;
    // The leader is handed over to its follower (preStop), and its replacement syncs as a
    // follower; the spread may hand the lead back to it. Either way the leader of shard 2 is
    // now a member that full-synced as a follower.
    chaos.delete_pods(&[&before.leader(2).pod]).await;
    let members = chaos
        .recovered(RECOVERY, |addrs| writer.add_seeds(addrs))
        .await;
    let more = writer.acknowledged() + 300;
    assert!(
        acked_at_least(&writer, more, Duration::from_secs(60)).await,
        "writes are acknowledged after the handover"
    );
    chaos.kill_redis(&members.leader(2).pod).await;
    chaos.finish(writer).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn every_member_pod_deleted_returns_with_the_same_ids() {
    let (chaos, before, writer) = Chaos::start("rec-all", json!({})).await;
    let names: Vec<&str> = before.0.iter().map(|m| m.pod.as_str()).collect();
    chaos.delete_pods(&names).await;
    let after = chaos.finish(writer).await;
    assert_eq!(after.ids(), before.ids(), "every member keeps its node id");
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn follower_and_another_shards_leader_deleted_together() {
    let (chaos, before, writer) = Chaos::start("rec-combo", json!({})).await;
    let follower = before.followers(0)[0].pod.clone();
    let leader = before.leader(1).pod.clone();
    chaos.delete_pods(&[&follower, &leader]).await;
    chaos.finish(writer).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn all_but_one_member_per_shard_deleted() {
    let (chaos, before, writer) = Chaos::start("rec-most", json!({})).await;
    // Survivors: the leader of shard 0, the follower of shard 1, the leader of shard 2.
    let victims = [
        before.followers(0)[0].pod.clone(),
        before.leader(1).pod.clone(),
        before.followers(2)[0].pod.clone(),
    ];
    let names: Vec<&str> = victims.iter().map(String::as_str).collect();
    chaos.delete_pods(&names).await;
    chaos.finish(writer).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn operator_killed_mid_recovery_converges() {
    let (mut chaos, before, writer) = Chaos::start("rec-opkill", json!({})).await;
    let victim = before.leader(2).clone();
    chaos.delete_pods(&[&victim.pod]).await;
    // Kill the operator as soon as it acts on the loss (a replacement pod exists), or after
    // 30 s if it does not; then a new one must finish the recovery.
    let identity = shard_of(&before, &victim.pod);
    let pods = chaos.pods();
    let begun = Instant::now();
    let replaced = loop {
        let found = member_pods(&chaos.client, &chaos.ns.name, NAME)
            .await
            .unwrap_or_default()
            .iter()
            .any(|p| {
                p.metadata.name.as_deref() != Some(victim.pod.as_str())
                    && (label(p, SHARD_LABEL), label(p, MEMBER_LABEL)) == identity
            });
        if found || begun.elapsed() > Duration::from_secs(30) {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    chaos.operator.kill();
    println!(
        "operator killed {:.1} s after the deletion (replacement pod created: {replaced}; old pod still present: {})",
        begun.elapsed().as_secs_f64(),
        pods.get_opt(&victim.pod).await.ok().flatten().is_some()
    );
    chaos.operator = Operator::start(&chaos.ns.name);
    chaos.finish(writer).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn all_followers_deleted_at_once() {
    let (chaos, before, writer) = Chaos::start("rec-followers", json!({})).await;
    let victims: Vec<Member> = (0..LEADERS)
        .map(|s| before.followers(s)[0].clone())
        .collect();
    let names: Vec<&str> = victims.iter().map(|m| m.pod.as_str()).collect();
    chaos.delete_pods(&names).await;
    let after = chaos.finish(writer).await;
    for v in &victims {
        let back = same_member(&after, &shard_of(&before, &v.pod));
        assert_eq!(back.id, v.id, "with a PVC the member keeps its node id");
    }
}

/// Crashes the node of a follower: it must be re-placed on another node of an allowed zone
/// with a new PVC, its old identity forgotten (`check_recovered` rejects stale identities) and
/// its old PVC listed in `status.orphanedClaims` (`Retain`). Runs alone (`serial_`).
#[tokio::test]
#[ignore = "needs the local cluster; run alone by make test"]
async fn serial_follower_node_crashed_is_replaced_with_a_new_claim() {
    let (chaos, before, writer) = Chaos::start_on_free_nodes("rec-nodedown", json!({})).await;
    let victim = before.followers(0)[0].clone();
    let old_claim = chaos
        .pods()
        .get(&victim.pod)
        .await
        .unwrap()
        .spec
        .unwrap()
        .volumes
        .unwrap_or_default()
        .iter()
        .find_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
        .expect("the member's PVC");
    let node = chaos.crash_node(&victim.node).await;
    // Re-placed while the node is down (the old Pod stays Terminating there: no kubelet
    // confirms its end).
    let replaced = chaos
        .recovered(RECOVERY, |addrs| writer.add_seeds(addrs))
        .await;
    let back = same_shard_replacement(&replaced, &victim);
    assert_ne!(back.node, victim.node, "re-placed on another node");
    drop(node);
    // Once the old Pod is gone its PVC belongs to no member: listed, and kept (Retain).
    let rcs: Api<RedisCluster> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    let orphaned = wait_for("the old PVC in status.orphanedClaims", RECOVERY, || async {
        let rc = rcs.get_opt(NAME).await.ok().flatten()?;
        let listed = rc.status?.orphaned_claims;
        listed.contains(&old_claim).then_some(listed)
    })
    .await;
    println!("orphaned claims: {orphaned:?}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    assert!(
        claims.get_opt(&old_claim).await.unwrap().is_some(),
        "Retain keeps the old PVC"
    );
    let after = chaos.finish(writer).await;
    let back = same_shard_replacement(&after, &victim);
    assert_ne!(back.node, victim.node, "re-placed on another node");
    assert_ne!(back.id, victim.id, "a new identity with a new PVC");
    assert!(
        !after.ids().contains(&victim.id),
        "the old identity is gone"
    );
    let zones: std::collections::BTreeSet<&str> = after
        .0
        .iter()
        .filter(|m| m.shard == back.shard)
        .map(|m| m.zone.as_str())
        .collect();
    assert_eq!(zones.len(), 1 + FOLLOWERS, "the shard keeps distinct zones");
}

/// The member of `victim`'s shard that is not the shard's survivor: its replacement.
fn same_shard_replacement<'a>(members: &'a Members, victim: &Member) -> &'a Member {
    members
        .0
        .iter()
        .find(|m| {
            m.shard == victim.shard
                && m.pod != victim.pod
                && m.id != victim.master_id.clone().unwrap_or_default()
        })
        .expect("a replacement in the victim's shard")
}

/// Found by the soak: a leader whose volume is full refuses every write (`MISCONF`, its AOF
/// cannot be written) while its follower, in sync and writing, stands by. The operator hands
/// the shard over while the disk is still full, says why (`Degraded PersistenceFailing`), then
/// that the old leader cannot take a full sync there (`FollowerNotSyncing`), and once the
/// volume has room again the spread is restored; nothing acknowledged is lost.
#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn leader_disk_full_hands_over_and_loses_nothing() {
    let (chaos, before, writer) = Chaos::start("rec-disk", json!({})).await;
    let victim = before.leader(2).clone();
    let follower = before.followers(2)[0].clone();
    let pod = chaos.pods().get(&victim.pod).await.unwrap();
    let claim = pod
        .spec
        .and_then(|s| s.volumes)
        .unwrap_or_default()
        .into_iter()
        .find_map(|v| v.persistent_volume_claim.map(|c| c.claim_name))
        .expect("the leader's claim");
    let admin = member_admin(&chaos.pass);
    let api: Api<RedisCluster> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    // The status is watched from the fill on, every 100 ms. After the handover the old leader,
    // now a follower on the full disk, panics on its first replicated write (Redis 7.0:
    // "Replica was unable to write command to disk") and restarts with a fresh AOF; from
    // then on Redis shows the full disk nowhere in INFO, only in its log. So the report is
    // checked as made while the leader could not write, not at the instant of the handover.
    let reported = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (api, reported) = (api.clone(), reported.clone());
        async move {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(180) && !reported.load(Ordering::SeqCst) {
                if let Ok(rc) = api.get(NAME).await
                    && condition(&rc, "Degraded")
                        .is_some_and(|(s, reason, _)| s == "True" && reason == "PersistenceFailing")
                {
                    reported.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    local_cluster(&["volume-fill", &chaos.ns.name, &claim]);
    println!(
        "{}: filled {claim} under leader {}",
        chaos.ns.name, victim.pod
    );
    let begun = Instant::now();
    wait_for(
        "the follower leads shard 2, the disk still full",
        Duration::from_secs(120),
        || async {
            redis_operator::redis::model::observe_node(follower.addr(), &admin)
                .await
                .is_ok_and(|o| o.is_serving_master())
                .then_some(())
        },
    )
    .await;
    wait_for(
        "Degraded said PersistenceFailing while the leader could not write",
        Duration::from_secs(60),
        || async { reported.load(Ordering::SeqCst).then_some(()) },
    )
    .await;
    watcher.abort();
    println!(
        "{}: handed over {:.1} s after the fill",
        chaos.ns.name,
        begun.elapsed().as_secs_f64()
    );
    // The old leader, a follower now, fails every full sync on its full disk (Redis says so
    // only in its log): once that has lasted a minute, the status names it.
    wait_for(
        "Degraded names the old leader as a follower not syncing",
        Duration::from_secs(150),
        || async {
            let rc = api.get(NAME).await.ok()?;
            condition(&rc, "Degraded")
                .filter(|(s, _, message)| {
                    s == "True"
                        && message.contains("not replicating from their leader")
                        && message.contains(&victim.pod)
                })
                .map(|_| ())
        },
    )
    .await;
    local_cluster(&["volume-free", &chaos.ns.name, &claim]);
    chaos.finish(writer).await;
}
