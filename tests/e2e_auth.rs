//! End-to-end: the password rotates live (issue 21). A 3×1 with PVCs and a 1-minute grace
//! period takes WAIT-acknowledged writes and redis-py traffic, both with the old password,
//! while its password Secret is changed. Throughout, every follower's `master_link_status` is
//! polled: replication never breaks. The operator adds the new password beside the old on
//! every member, switches `masterauth`, records the switch and, once the grace period is over,
//! removes the old one: afterwards the old password is refused and the new one accepted on
//! every member, no container restarted, every step was an Event, and every acknowledged
//! write reads back with the new password.
//!
//! Needs the cluster, the CRD and the RBAC: run through `make test`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;
mod support {
    pub mod ack_writer;
    pub mod app_client;
    pub mod chaos;
}

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube_support::*;
use redis_operator::redis::RedisError;
use redis_operator::redis::client::Client;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::reply;
use serde_json::json;
use support::ack_writer::ReadBackOptions;
use support::app_client::{AppClient, AppOptions};
use support::chaos::*;

const NEW_PASSWORD: &str = "rotated-Pa55word-2026";

/// Whether the member at `addr` accepts `password` (`Some(false)`: refused; `None`: did not
/// answer).
async fn accepts(addr: SocketAddr, password: &str) -> Option<bool> {
    match Client::connect(addr, &member_admin(password)).await {
        Ok(_) => Some(true),
        Err(RedisError::AuthRefused { .. } | RedisError::NoAuth(_)) => Some(false),
        Err(_) => None,
    }
}

/// `INFO replication` of the member at `addr`, with whichever password it accepts.
async fn replication(addr: SocketAddr, passwords: &[&str]) -> Option<String> {
    for password in passwords {
        let Ok(mut c) = Client::connect(addr, &member_admin(password)).await else {
            continue;
        };
        let cmd = Cmd::info("replication");
        let frame = c.call(&cmd).await.ok()?;
        return reply::text(&cmd, frame).ok();
    }
    None
}

/// Polls every member's replication until `stop`: (polls of followers, the link-down ones
/// with what the follower said). Bounded by count and time.
async fn watch_links(
    addrs: Vec<SocketAddr>,
    passwords: [String; 2],
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicU64>,
) -> Vec<String> {
    let mut down = Vec::new();
    let begun = Instant::now();
    for _ in 0..20_000 {
        if stop.load(Ordering::Relaxed) || begun.elapsed() > Duration::from_secs(600) {
            break;
        }
        for addr in &addrs {
            let pw = [passwords[0].as_str(), passwords[1].as_str()];
            let Some(info) = replication(*addr, &pw).await else {
                continue;
            };
            if !info.contains("role:slave") {
                continue;
            }
            polls.fetch_add(1, Ordering::Relaxed);
            if !info.contains("master_link_status:up") {
                down.push(format!(
                    "{addr} at {:.1}s: {info}",
                    begun.elapsed().as_secs_f64()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    down
}

/// (uid, restart count) of every member container.
async fn containers(chaos: &Chaos) -> BTreeMap<String, (String, i32)> {
    let pods = member_pods(&chaos.client, &chaos.ns.name, NAME)
        .await
        .unwrap();
    pods.iter()
        .map(|p: &Pod| {
            let restarts = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
            (
                p.metadata.name.clone().unwrap(),
                (p.metadata.uid.clone().unwrap(), restarts),
            )
        })
        .collect()
}

/// The reasons of the Events about the cluster.
async fn event_reasons(chaos: &Chaos) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn the_password_rotates_live_under_writes_without_breaking_replication() {
    let extra = json!({"auth": {"rotationGracePeriod": "1m"}});
    let (mut chaos, members, writer) = Chaos::start("e2e-pw", extra).await;
    let old = chaos.pass.clone();
    let addrs = members.addrs();
    let before = containers(&chaos).await;
    assert_eq!(before.len(), 6);
    let app = AppClient::start_with(
        &addrs,
        &old,
        Duration::from_secs(40),
        "pw-app",
        &AppOptions {
            rate: 100,
            keys: 200,
            ..AppOptions::default()
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let links = tokio::spawn(watch_links(
        addrs.clone(),
        [NEW_PASSWORD.to_string(), old.clone()],
        stop.clone(),
        polls.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The rotation: the generated Secret gets a new password.
    let secrets: Api<Secret> = Api::namespaced(chaos.client.clone(), &chaos.ns.name);
    let data = BTreeMap::from([(
        "password".to_string(),
        ByteString(NEW_PASSWORD.as_bytes().to_vec()),
    )]);
    secrets
        .patch(
            &format!("{NAME}-auth"),
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": data})),
        )
        .await
        .unwrap();
    let rotated = Instant::now();
    let status = wait_for("the switch recorded", Duration::from_secs(120), || async {
        let auth = chaos.resource().await.status?.auth?;
        (auth.rotated_at.is_some()
            && auth.previous_accepted_until.is_some()
            && auth.pending.is_empty())
        .then_some(auth)
    })
    .await;
    println!(
        "switched {:.1} s after the Secret changed: {status:?}",
        rotated.elapsed().as_secs_f64()
    );
    // In the grace period both passwords work everywhere.
    for addr in &addrs {
        assert_eq!(accepts(*addr, &old).await, Some(true), "{addr} old");
        assert_eq!(accepts(*addr, NEW_PASSWORD).await, Some(true), "{addr} new");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The application and the writer, still on the old password, saw nothing.
    let report = app.stop();
    println!("redis-py through the rotation: {}", report.summary());
    assert!(report.ok > 100, "{}", report.summary());
    assert_eq!(report.error_count(), 0, "{}", report.summary());
    assert_eq!(report.wrong_reads, 0, "{}", report.summary());
    let mut written = writer.stop().await;
    chaos.pass = NEW_PASSWORD.to_string();
    written
        .read_back(&addrs, NEW_PASSWORD, &ReadBackOptions::default())
        .await;
    println!("{written}");
    written.verify().unwrap();
    assert_eq!(written.lost(), Some(0));
    assert!(written.acknowledged() > 100, "{written}");

    // The grace period ends: the old password is removed and forgotten.
    wait_for(
        "the previous password removed",
        Duration::from_secs(240),
        || async {
            let auth = chaos.resource().await.status?.auth?;
            auth.previous_accepted_until.is_none().then_some(())
        },
    )
    .await;
    wait_for(
        "members refuse the old password",
        Duration::from_secs(60),
        || async {
            for addr in &addrs {
                if accepts(*addr, &old).await != Some(false) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    for addr in &addrs {
        assert_eq!(accepts(*addr, NEW_PASSWORD).await, Some(true), "{addr} new");
    }
    stop.store(true, Ordering::Relaxed);
    let down = links.await.unwrap();
    let polled = polls.load(Ordering::Relaxed);
    println!("replication links polled {polled} times through the rotation");
    assert!(polled > 100, "followers were polled {polled} times");
    assert!(down.is_empty(), "a replication link broke: {down:#?}");

    // No restart, every step an Event, and the cluster healthy with the new password.
    assert_eq!(containers(&chaos).await, before, "no member restarted");
    let wanted = [
        "PasswordsUpdated",
        "MasterauthUpdated",
        "PasswordRotated",
        "PreviousPasswordRemoved",
    ];
    wait_for("every step's Event", Duration::from_secs(60), || async {
        let reasons = event_reasons(&chaos).await;
        wanted
            .iter()
            .all(|w| reasons.iter().any(|r| r == w))
            .then_some(())
    })
    .await;
    chaos.recovered(Duration::from_secs(60), |_| {}).await;
    chaos.cleanup().await;
}
