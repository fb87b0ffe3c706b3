//! Chaos end-to-end on an encrypted RedisCluster (`spec.tls` with `clientAuth`, issue 21): the
//! faults of `e2e_recovery.rs` and `e2e_zones.rs` that matter most, on a TLS 3 × 1, with the
//! acknowledged-write checker, its read-back and the recovery checks all speaking TLS (the CA
//! and the members' certificate from the cluster's Secret, `serverName` checked). Each test
//! asserts what its plaintext twin does: Ready and [`check_recovered`] within 240 s, and no
//! acknowledged write lost. Timings are printed, never asserted.
//!
//! Needs the local cluster, the CRD and the RBAC: run through `make test`. Tests named
//! `serial_` take a whole zone down (every Pod in it dies, other tests' too): `make e2e` runs
//! them alone, after the others.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;
mod support {
    pub mod ack_writer;
    pub mod chaos;
    pub mod zone_loss;
}

use kube_support::*;
use redis_operator::redis::Client;
use redis_operator::redis::command::Cmd;
use serde_json::json;
use support::chaos::*;
use support::zone_loss::leader_zone_down;

/// The cluster really is TLS-only: every member refuses a plaintext client, and answers one
/// with the test's TLS settings.
async fn assert_tls_only(chaos: &Chaos, members: &Members) {
    for m in &members.0 {
        let plain = match Client::connect(m.addr(), &member_admin(&chaos.pass)).await {
            Ok(mut c) => c.call(&Cmd::new("PING")).await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(plain.is_err(), "{} answered a plaintext client", m.pod);
        let mut c = Client::connect(m.addr(), &chaos.admin())
            .await
            .unwrap_or_else(|e| panic!("{} over TLS: {e}", m.pod));
        c.call(&Cmd::new("PING")).await.unwrap();
    }
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn tls_leader_deleted_loses_no_acknowledged_write() {
    let (chaos, before, writer) = Chaos::start_tls("tls-leader", json!({})).await;
    assert_tls_only(&chaos, &before).await;
    let victim = before.leader(0).clone();
    let follower = chaos.watch_leadership(before.followers(0)[0]);
    chaos.delete_pods(&[&victim.pod]).await;
    chaos.finish(writer).await;
    assert!(
        follower.finish().await,
        "the follower of shard 0 never took over from its deleted leader"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn tls_leader_sigkill_loses_no_acknowledged_write() {
    let (chaos, before, writer) = Chaos::start_tls("tls-kill", json!({})).await;
    assert_tls_only(&chaos, &before).await;
    chaos.kill_redis(&before.leader(1).pod).await;
    chaos.finish(writer).await;
}

/// The zone of shard 0's leader crashes (every process SIGKILLed, its nodes silent), as
/// `e2e_zones.rs`'s `serial_zone_crash_with_a_leader`, on a TLS cluster. Runs alone.
#[tokio::test]
#[ignore = "needs the local cluster; run alone by make test"]
async fn serial_tls_zone_crash_with_a_leader() {
    let setup = Setup {
        tls: true,
        ..Setup::default()
    };
    leader_zone_down("tls-zone-crash", false, setup).await;
}
