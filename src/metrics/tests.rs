//! The registry end to end: what a pass writes, what the encoding shows, and that series go
//! with their cluster, Pod, zone or problem.

use std::collections::BTreeMap;
use std::time::Duration;

use super::cluster::ClusterSample;
use super::member::MemberSample;
use super::registry::{ClusterLabels, Metrics};

fn key(name: &str) -> ClusterLabels {
    ClusterLabels {
        namespace: "ns".into(),
        cluster: name.into(),
    }
}

fn sample(leaders: &[(usize, &str)]) -> ClusterSample {
    ClusterSample {
        members_desired: 6,
        members_ready: 5,
        members_updated: 6,
        slots_served: 16384,
        leaders_per_zone: BTreeMap::from([("zone-a".into(), 2), ("zone-b".into(), 1)]),
        zone_loss_safe: Some(false),
        reshard: None,
        conditions: vec![("Ready", false), ("Degraded", true)],
        problems: BTreeMap::from([("DataLoss", 1)]),
        leaders: leaders
            .iter()
            .map(|(s, i)| (*s, (*i).to_string()))
            .collect(),
        certificate_expiry: Some(2_000_000_000),
    }
}

fn member(pod: &str, lag: Option<u64>) -> MemberSample {
    MemberSample {
        shard: 0,
        member: 1,
        pod: pod.into(),
        leader: lag.is_none(),
        used_memory: 1000,
        maxmemory: 0,
        connected_clients: Some(2),
        replication_lag: lag,
    }
}

fn line_value(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(String::from)
}

#[test]
fn a_pass_writes_prefixed_series_with_units_and_totals() {
    let m = Metrics::new();
    m.set_leader(true);
    m.record_reconcile(Duration::from_millis(30), Some("KubeError"));
    m.record_step("failover", "succeeded", None);
    m.record_step("wait", "skipped", Some("SupportObjectsFailed"));
    m.watched(key("demo"));
    m.record_cluster(
        &key("demo"),
        &sample(&[(0, "a")]),
        &[member("demo-0-1", Some(42))],
        vec![("force", 0, "a".into())],
        Some((false, 1.0)),
        100.0,
    );
    let text = m.encode();
    for want in [
        "redis_operator_is_leader 1",
        "redis_operator_reconcile_duration_seconds_bucket{le=\"0.04\"} 1",
        "redis_operator_reconcile_errors_total{reason=\"KubeError\"} 1",
        "redis_operator_reconcile_errors_total{reason=\"SupportObjectsFailed\"} 1",
        "redis_operator_actions_total{kind=\"failover\",outcome=\"succeeded\"} 1",
        "redis_operator_cluster_members_ready{namespace=\"ns\",cluster=\"demo\"} 5",
        "redis_operator_cluster_zone_loss_safe{namespace=\"ns\",cluster=\"demo\"} 0",
        "redis_operator_cluster_leaders{namespace=\"ns\",cluster=\"demo\",zone=\"zone-a\"} 2",
        "redis_operator_cluster_failovers_total{namespace=\"ns\",cluster=\"demo\",kind=\"force\"} 1",
        "redis_operator_cluster_failovers_total{namespace=\"ns\",cluster=\"demo\",kind=\"takeover\"} 0",
        "redis_operator_cluster_condition{namespace=\"ns\",cluster=\"demo\",type=\"Ready\"} 0",
        "redis_operator_cluster_problems{namespace=\"ns\",cluster=\"demo\",reason=\"DataLoss\"} 1",
        "redis_operator_cluster_recovery_started_timestamp_seconds{namespace=\"ns\",cluster=\"demo\"} 100",
        "redis_operator_cluster_certificate_expiry_timestamp_seconds{namespace=\"ns\",cluster=\"demo\"} 2000000000",
        "redis_operator_member_replication_lag_bytes{namespace=\"ns\",cluster=\"demo\",shard=\"0\",member=\"1\",pod=\"demo-0-1\"} 42",
        "redis_operator_member_connected_clients{namespace=\"ns\",cluster=\"demo\",shard=\"0\",member=\"1\",pod=\"demo-0-1\"} 2",
        "redis_operator_member_used_memory_bytes{",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("kind=\"wait\""), "waiting is no action");
    assert!(
        !text.contains("cluster_reshard"),
        "no reshard ever: no series"
    );
}

#[test]
fn leader_changes_count_commanded_once_and_the_others_as_automatic() {
    let m = Metrics::new();
    let k = key("demo");
    m.watched(k.clone());
    let automatic = "redis_operator_cluster_failovers_total{namespace=\"ns\",cluster=\"demo\",kind=\"automatic\"}";
    let graceful = "redis_operator_cluster_failovers_total{namespace=\"ns\",cluster=\"demo\",kind=\"graceful\"}";
    m.record_cluster(&k, &sample(&[(0, "a"), (1, "b")]), &[], vec![], None, 1.0);
    assert_eq!(line_value(&m.encode(), automatic).as_deref(), Some("0"));
    // The operator hands shard 0 over to "c"; the next pass sees "c" lead: counted once.
    m.record_cluster(
        &k,
        &sample(&[(0, "a"), (1, "b")]),
        &[],
        vec![("graceful", 0, "c".into())],
        None,
        2.0,
    );
    m.record_cluster(&k, &sample(&[(0, "c"), (1, "b")]), &[], vec![], None, 3.0);
    let text = m.encode();
    assert_eq!(line_value(&text, graceful).as_deref(), Some("1"));
    assert_eq!(line_value(&text, automatic).as_deref(), Some("0"));
    // Shard 1 loses its leader (no leader for a pass), then "d" leads: one automatic change.
    m.record_cluster(&k, &sample(&[(0, "c")]), &[], vec![], None, 4.0);
    m.record_cluster(&k, &sample(&[(0, "c"), (1, "d")]), &[], vec![], None, 5.0);
    assert_eq!(line_value(&m.encode(), automatic).as_deref(), Some("1"));
}

#[test]
fn a_replaced_pod_and_a_deleted_cluster_leave_no_series() {
    let m = Metrics::new();
    m.watched(key("a"));
    m.watched(key("b"));
    m.record_cluster(
        &key("a"),
        &sample(&[]),
        &[member("a-0-1", Some(1))],
        vec![],
        None,
        1.0,
    );
    m.record_cluster(
        &key("b"),
        &sample(&[]),
        &[member("b-0-1", None)],
        vec![],
        None,
        1.0,
    );
    // a's member Pod was replaced by a new one; its problem went away.
    let mut healthy = sample(&[]);
    healthy.problems.clear();
    healthy.leaders_per_zone.remove("zone-b");
    m.record_cluster(
        &key("a"),
        &healthy,
        &[member("a-0-1-x", Some(1))],
        vec![],
        None,
        2.0,
    );
    let text = m.encode();
    assert!(!text.contains("pod=\"a-0-1\""), "{text}");
    assert!(text.contains("pod=\"a-0-1-x\""), "{text}");
    assert!(
        !text.contains("cluster=\"a\",reason=\"DataLoss\""),
        "{text}"
    );
    assert!(!text.contains("cluster=\"a\",zone=\"zone-b\""), "{text}");
    m.forget(&key("a"));
    // A pass that began before the deletion and ends after it writes nothing back.
    m.record_cluster(
        &key("a"),
        &healthy,
        &[member("a-0-1-x", Some(1))],
        vec![],
        None,
        3.0,
    );
    let text = m.encode();
    assert!(!text.contains("cluster=\"a\""), "{text}");
    assert!(text.contains("cluster=\"b\""), "{text}");
    // A re-list that no longer returns b removes it too.
    m.relist_started();
    m.relist_done();
    assert!(!m.encode().contains("cluster=\"b\""));
    assert!(m.clusters().is_empty());
}

#[test]
fn a_cluster_the_watch_does_not_hold_is_not_recorded() {
    let m = Metrics::new();
    m.record_cluster(&key("x"), &sample(&[]), &[], vec![], None, 1.0);
    assert!(!m.encode().contains("cluster=\"x\""));
    // Listed by a re-list: recorded.
    m.relist_started();
    m.watched(key("x"));
    m.relist_done();
    m.record_cluster(&key("x"), &sample(&[]), &[], vec![], None, 2.0);
    assert!(m.encode().contains("cluster=\"x\""));
}
