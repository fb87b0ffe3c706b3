//! Metrics end-to-end: a real Prometheus (Debian's package, `make deps`) scrapes the operator's
//! `/metrics` every second while a 3 × 1 RedisCluster loses a shard leader's Pod; PromQL must
//! show the failover counter increase and `members_ready` dip and recover, the per-member and
//! `is_leader` series, and the cluster's series gone once it is deleted. Every wait is on a
//! condition with a generous deadline; no timing is asserted.
//!
//! The shipped alert rules are checked without the cluster: `promtool check rules` on the plain
//! file, and the PrometheusRule holding the same rules. The e2e test's Prometheus loads them
//! too.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;

use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube_support::prometheus::{Prometheus, RULES, free_port, prometheus_bin};
use kube_support::*;
use redis_operator::crd::RedisCluster;
use serde_json::json;

#[test]
fn shipped_alert_rules_pass_promtool() {
    let out = std::process::Command::new(prometheus_bin("promtool"))
        .args(["check", "rules"])
        .arg(repo().join(RULES))
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");
}

#[test]
fn prometheus_rule_holds_the_same_rules() {
    let read = |p: &str| -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(repo().join(p)).unwrap()).unwrap()
    };
    let plain = read(RULES);
    let crd = read("manifests/monitoring/prometheusrule.yaml");
    assert_eq!(crd["kind"], "PrometheusRule");
    assert_eq!(plain["groups"], crd["spec"]["groups"]);
    let alerts: Vec<&str> = plain["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for want in [
        "RedisClusterNotReady",
        "RedisClusterNotZoneLossSafe",
        "RedisClusterDataLoss",
        "RedisClusterQuorumLost",
        "RedisClusterDataUnavailable",
        "RedisClusterReplicationLag",
        "RedisOperatorNoLeader",
        "RedisClusterCertificateExpiring",
    ] {
        assert!(alerts.contains(&want), "{want} missing from {alerts:?}");
    }
}

const WAIT: Duration = Duration::from_secs(300);

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn prometheus_sees_a_leader_failover_and_the_ready_dip() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-metrics").await;
    let _keep = DeleteOnPanic(ns.name.clone());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let _op = Operator::start_with(&ns.name, &["--http-address", &metrics_addr]);
    let prom = Prometheus::start(&[metrics_addr.parse().unwrap()]).await;
    assert!(
        prom.rule_groups().contains(&"redis-operator".to_string()),
        "the shipped rules load: {:?}",
        prom.rule_groups()
    );

    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &cluster("demo", 3, 1, json!({})))
        .await
        .unwrap();
    let rc = wait_ready(&api, "demo", Duration::from_secs(240)).await;
    let sel = format!("namespace=\"{}\",cluster=\"demo\"", ns.name);

    // Scraped and settled: every member ready, every slot served, the operator acts.
    prom.wait_for(
        &format!("redis_operator_cluster_members_ready{{{sel}}} == 6"),
        WAIT,
    )
    .await;
    prom.wait_for(
        &format!("redis_operator_cluster_slots_served{{{sel}}} == 16384"),
        WAIT,
    )
    .await;
    prom.wait_for("redis_operator_is_leader == 1", WAIT).await;
    let failovers = format!("sum(redis_operator_cluster_failovers_total{{{sel}}})");
    let before = prom
        .scalar(&failovers)
        .expect("the failover counter exists");

    let leader = rc.status.as_ref().unwrap().shards[0]
        .leader
        .as_ref()
        .expect("shard 0 has a leader")
        .pod
        .clone();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns.name);
    let deleted = std::time::Instant::now();
    pods.delete(&leader, &DeleteParams::default())
        .await
        .unwrap();
    println!("deleted {leader}, the leader of shard 0; failovers before: {before}");

    // The leader changed: the counter increased (whoever promoted: the preStop handover,
    // Redis's election or the operator's FORCE; the kind label says which).
    prom.wait_for(&format!("{failovers} > {before}"), WAIT)
        .await;
    let by_kind = prom
        .query(&format!(
            "redis_operator_cluster_failovers_total{{{sel}}} > 0"
        ))
        .unwrap_or_default();
    println!("failovers by kind: {by_kind:?}");
    // members_ready dipped below 6 after the deletion (the range starts at it) and is back at 6.
    wait_for("members_ready dipped", WAIT, || async {
        let since = deleted.elapsed().as_secs().max(1);
        let q =
            format!("min_over_time(redis_operator_cluster_members_ready{{{sel}}}[{since}s]) < 6");
        prom.query(&q)
            .filter(|r| !r.is_empty())
            .map(|r| println!("{q}: {r:?}"))
    })
    .await;
    wait_ready(&api, "demo", Duration::from_secs(300)).await;
    prom.wait_for(
        &format!("redis_operator_cluster_members_ready{{{sel}}} == 6"),
        WAIT,
    )
    .await;

    // Per-member series: all six members, three leaders, three followers with a lag.
    prom.wait_for(
        &format!("count(redis_operator_member_is_leader{{{sel}}}) == 6"),
        WAIT,
    )
    .await;
    prom.wait_for(
        &format!("sum(redis_operator_member_is_leader{{{sel}}}) == 3"),
        WAIT,
    )
    .await;
    for metric in [
        "redis_operator_member_replication_lag_bytes",
        "redis_operator_member_connected_clients",
    ] {
        prom.wait_for(&format!("count({metric}{{{sel}}}) >= 3"), WAIT)
            .await;
    }
    prom.wait_for(
        &format!("count(redis_operator_member_used_memory_bytes{{{sel}}} > 0) == 6"),
        WAIT,
    )
    .await;
    prom.wait_for(
        &format!("redis_operator_cluster_condition{{{sel},type=\"Ready\"}} == 1"),
        WAIT,
    )
    .await;

    // A deleted cluster's series disappear (Prometheus marks them stale at the next scrape).
    api.delete("demo", &DeleteParams::default()).await.unwrap();
    prom.wait_for(
        &format!("absent(redis_operator_cluster_members_desired{{{sel}}})"),
        WAIT,
    )
    .await;
    prom.wait_for(
        &format!("absent(redis_operator_member_is_leader{{{sel}}})"),
        WAIT,
    )
    .await;
    ns.cleanup().await;
}
