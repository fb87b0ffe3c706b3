//! A whole zone lost under writes and returned, shared by the zone suite (`e2e_zones.rs`) and
//! the TLS chaos suite (`e2e_tls_chaos.rs`): [`leader_zone_down`] takes the zone of shard 0's
//! leader down (crashed or cut off), checks the cluster whole again in the other zones, brings
//! the zone back and checks the leader spread restored, then reads every acknowledged write
//! back ([`Chaos::finish`]).
//!
//! Declared by a test crate as `mod support { pub mod ack_writer; pub mod chaos; pub mod
//! zone_loss; }` next to `mod kube_support;`. Every Pod of the zone is hit, other tests' too:
//! only for `serial_` tests.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use redis_operator::crd::RedisCluster;
use serde_json::{Value, json};

use super::ack_writer::{AckWriterHandle, AckWriterOptions};
use super::chaos::*;
use crate::kube_support::*;

/// [`Chaos::create_with`] and a writer that outlives a zone lost and returned (each phase may
/// take up to [`RECOVERY`]).
pub async fn start(prefix: &str, extra: Value, setup: Setup) -> (Chaos, Members, AckWriterHandle) {
    let (chaos, before) = Chaos::create_with(prefix, extra, setup).await;
    print_roles(&chaos.ns.name, "before", &before);
    let writer = chaos
        .writer_with(AckWriterOptions {
            max_duration: Duration::from_secs(900),
            ..AckWriterOptions::default()
        })
        .await;
    (chaos, before, writer)
}

pub fn clusters(chaos: &Chaos) -> Api<RedisCluster> {
    Api::namespaced(chaos.client.clone(), &chaos.ns.name)
}

/// Takes down (crash or partition) the zone of shard 0's leader under writes. While it is
/// down the cluster must be Ready again in the two surviving zones (every shard a leader and an
/// in-sync follower in distinct zones, no stale identity) with `Degraded=True ZoneUnavailable`
/// naming the zone; after `zone-up`, Ready with `Degraded=False`, `zoneLossSafe` and the leader
/// spread restored. Returns the shard-0 leader hit, the members at the end and the messages of
/// the `FailoverCompleted` Events. `setup` says how the cluster is made (e.g. over TLS).
pub async fn leader_zone_down(
    prefix: &str,
    partition: bool,
    setup: Setup,
) -> (Member, Members, Vec<String>) {
    let (chaos, before, writer) = start(prefix, json!({}), setup).await;
    let victim = before.leader(0).clone();
    let zone = victim.zone.clone();
    let fault = Instant::now();
    let down = chaos.zone_down(&zone, partition);
    let lost = [zone.clone()];
    let recovery = Recovery {
        timeout: RECOVERY,
        poll: Duration::from_secs(1),
        require_ready: true,
    };
    let (during, _) = until_recovered_without(
        &chaos.client,
        &chaos.ns.name,
        NAME,
        chaos.shape,
        &lost,
        recovery,
        |addrs| writer.add_seeds(addrs),
    )
    .await
    .unwrap_or_else(|e| panic!("while {zone} is down: {e}"));
    let whole_again = fault.elapsed();
    let rcs = clusters(&chaos);
    let degraded = wait_for(
        "Ready=True with Degraded=True ZoneUnavailable naming the zone",
        Duration::from_secs(60),
        || async {
            let rc = rcs.get_opt(NAME).await.ok().flatten()?;
            let ready = condition(&rc, "Ready")?;
            let degraded = condition(&rc, "Degraded")?;
            (ready.0 == "True"
                && degraded.0 == "True"
                && degraded.1 == "ZoneUnavailable"
                && degraded.2.contains(&zone))
            .then_some(degraded.2)
        },
    )
    .await;
    println!(
        "{}: zone {zone} down{}: whole again in the other zones {:.1} s after the fault (Degraded: {degraded})",
        chaos.ns.name,
        if partition { " (partition)" } else { "" },
        whole_again.as_secs_f64()
    );
    print_roles(&chaos.ns.name, "zone down", &during);

    drop(down);
    let returned = Instant::now();
    let after = spread_again(&chaos, &writer).await;
    println!(
        "{}: zone {zone} up: Ready, Degraded=False, zoneLossSafe, leaders spread {:.1} s later",
        chaos.ns.name,
        returned.elapsed().as_secs_f64()
    );
    print_roles(&chaos.ns.name, "zone back", &after);
    let events: Api<Event> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    let failovers: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("FailoverCompleted"))
        .filter_map(|e| e.message)
        .collect();
    chaos.finish(writer).await;
    (victim, after, failovers)
}

/// Waits (up to [`RECOVERY`]) until one poll sees `Ready=True`, `Degraded=False`,
/// `status.zoneLossSafe == true` and [`check_recovered`] passing (which includes at most
/// ⌈L/Z⌉ leaders per zone and no stale identity), handing the writer the members' addresses.
pub async fn spread_again(chaos: &Chaos, writer: &AckWriterHandle) -> Members {
    let rcs = clusters(chaos);
    let begun = Instant::now();
    let mut last = String::from("not checked yet");
    while begun.elapsed() < RECOVERY {
        writer.add_seeds(member_addrs(&chaos.client, &chaos.ns.name, NAME).await);
        if let Some(rc) = rcs.get_opt(NAME).await.ok().flatten() {
            let ready = condition(&rc, "Ready");
            let degraded = condition(&rc, "Degraded");
            let safe = rc.status.as_ref().and_then(|s| s.zone_loss_safe);
            if ready.as_ref().is_some_and(|c| c.0 == "True")
                && degraded.as_ref().is_some_and(|c| c.0 == "False")
                && safe == Some(true)
            {
                match check_recovered(
                    &chaos.client,
                    &chaos.ns.name,
                    NAME,
                    chaos.shape.0,
                    chaos.shape.1,
                )
                .await
                {
                    Ok(members) => return members,
                    Err(e) => last = format!("status settled but {e}"),
                }
            } else {
                last = format!("Ready {ready:?}, Degraded {degraded:?}, zoneLossSafe {safe:?}");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!(
        "{}: not spread again within {RECOVERY:?} after zone-up: {last}\noperator log: /tmp/redis-operator-{}.log",
        chaos.ns.name, chaos.ns.name
    )
}
