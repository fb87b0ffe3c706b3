//! The scale-in grace period (`plan/drain.rs`): table tests on the plan fixture.

use std::time::Duration;

use redis_scheduler::Request;

use super::fixture::{Fx, PodState, REV, cond, healthy};
use crate::controller::act::Executed;
use crate::controller::labels::DRAINED_AT_ANNOTATION;
use crate::controller::observe::Observed;
use crate::controller::plan::*;
use crate::controller::status::{conditions, types};

/// The fixture's observation time.
const NOW: i64 = 1_000_000;

fn at(second: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(second).unwrap()
}

/// 3 × 1 with a fourth shard (leader 7 on n-a3, follower 8 on n-b3) the spec drops, drained
/// (`slots` empty) or not, its Pods recording `drained_at` (RFC 3339) or not.
fn leaving(slots: &'static str, drained_at: Option<&str>) -> Fx {
    let mut fx = healthy();
    fx.add('7', "n-a3", 3, 0, None);
    fx.add('8', "n-b3", 3, 1, Some('7'));
    fx.get('7').offset = 1000;
    fx.get('7').slots = slots;
    fx.get('7').keys = if slots.is_empty() { 0 } else { 100 };
    if !slots.is_empty() {
        fx.get('a').slots = "0-4095";
        fx.get('b').slots = "4096-8191";
        fx.get('c').slots = "8192-12287";
    }
    for c in ['7', '8'] {
        if let Some(t) = drained_at {
            fx.get(c)
                .annotations
                .insert(DRAINED_AT_ANNOTATION, t.to_string());
        }
    }
    fx
}

/// `fx` asked for `leaders` shards, observed at `now`.
fn observed(fx: &Fx, leaders: usize, now: i64) -> Observed {
    let mut obs = fx.observed();
    obs.shape.leaders = leaders;
    obs.request = Request::new(u32::try_from(leaders).unwrap(), 1);
    obs.now = at(now);
    obs
}

fn removed(plan: &Plan) -> Vec<&str> {
    match &plan.action {
        Action::DeletePods(pods) => pods.iter().map(|(p, _)| p.as_str()).collect(),
        _ => Vec::new(),
    }
}

const SHARD3: [&str; 2] = ["p-s3-m0-7", "p-s3-m1-8"];

#[test]
fn a_drained_shard_is_recorded_first_then_waits_out_its_grace_then_goes() {
    // Drained, nothing recorded: the moment is written on both members, nothing removed.
    let plan = plan(&observed(&leaving("", None), 3, NOW));
    match &plan.action {
        Action::MarkDrained { pods, at: t, until } => {
            let names: Vec<&str> = pods.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(names, SHARD3);
            assert!(pods.iter().all(|(_, s)| *s == 3));
            assert_eq!((*t, *until), (at(NOW), at(NOW + 30)));
        }
        other => panic!("expected the drain recorded, got {other:?} ({plan:?})"),
    }
    assert_eq!(plan.reason, drain::SCALE_IN_GRACE);
    assert!(plan.ready, "recording keeps a Ready cluster Ready");

    // Recorded 10 s ago, grace 30 s: nothing removed, the wait says until when.
    let since = at(NOW - 10).to_string();
    let fx = leaving("", Some(&since));
    let waiting = plan_at(&fx, NOW);
    assert_eq!(waiting.action, Action::Wait, "{waiting:?}");
    assert_eq!(waiting.reason, drain::SCALE_IN_GRACE);
    assert!(
        waiting.message.contains(&at(NOW + 20).to_string()),
        "{}",
        waiting.message
    );
    assert_eq!(waiting.wake_in, Some(Duration::from_secs(20)));
    let c = conditions(&waiting, &Executed::Nothing);
    assert!(cond(&c, types::READY).status);
    assert!(!cond(&c, types::DEGRADED).status);
    let p = cond(&c, types::PROGRESSING);
    assert_eq!(
        (p.status, p.reason.as_str()),
        (true, drain::SCALE_IN_GRACE),
        "{p:?}"
    );
    // A later pass (or a restarted operator: the planner keeps nothing but the record) says
    // the same, with the same deadline: the status is not rewritten every pass.
    let later = plan_at(&fx, NOW + 7);
    assert_eq!(later.message, waiting.message);
    assert_eq!(later.wake_in, Some(Duration::from_secs(13)));
    assert!(removed(&later).is_empty());

    // The grace period is over: both members go, at once.
    let over = plan_at(&fx, NOW + 20);
    assert_eq!(removed(&over), SHARD3, "{over:?}");
    assert_eq!(over.wake_in, None);
}

fn plan_at(fx: &Fx, now: i64) -> Plan {
    plan(&observed(fx, 3, now))
}

#[test]
fn the_record_is_written_once_and_kept_by_the_members_left() {
    let since = at(NOW - 10).to_string();
    // Recorded on the follower only (the leader's Pod was replaced since): the clock runs on.
    let mut fx = leaving("", Some(&since));
    fx.get('7').annotations.clear();
    let p = plan_at(&fx, NOW);
    assert_eq!(
        (p.action.clone(), p.wake_in),
        (Action::Wait, Some(Duration::from_secs(20))),
        "{p:?}"
    );
    // Two records: the earliest counts.
    fx.get('7')
        .annotations
        .insert(DRAINED_AT_ANNOTATION, at(NOW - 25).to_string());
    assert_eq!(plan_at(&fx, NOW).wake_in, Some(Duration::from_secs(5)));
    // A record that does not parse is none: written again, from now (never skipped).
    let fx = leaving("", Some("yesterday"));
    assert!(matches!(
        plan_at(&fx, NOW).action,
        Action::MarkDrained { .. }
    ));
    // The record is in whole seconds, rounded up: never a shorter period.
    let mut obs = observed(&leaving("", None), 3, NOW);
    obs.now = at(NOW).checked_add(Duration::from_millis(300)).unwrap();
    match plan(&obs).action {
        Action::MarkDrained { at: t, .. } => assert_eq!(t, at(NOW + 1)),
        other => panic!("expected the drain recorded, got {other:?}"),
    }
}

#[test]
fn nothing_else_waits_for_the_grace_period() {
    // An outdated member of a kept shard: the rolling update goes on during the grace period.
    let since = at(NOW - 10).to_string();
    let mut fx = leaving("", Some(&since));
    fx.get('d').rev = "rev-0";
    assert_ne!(REV, "rev-0");
    let p = plan_at(&fx, NOW);
    assert!(matches!(p.action, Action::Restart(_)), "{p:?}");
    assert_eq!(
        p.wake_in,
        Some(Duration::from_secs(20)),
        "the pass that removes the shard still runs on time"
    );
}

#[test]
fn a_cluster_not_ready_says_what_it_waits_for_and_the_removal_still_comes_on_time() {
    let since = at(NOW - 10).to_string();
    let mut fx = leaving("", Some(&since));
    fx.get('d').pod = Some(PodState::Down);
    let p = plan_at(&fx, NOW);
    assert!(!p.ready);
    assert_ne!(p.reason, drain::SCALE_IN_GRACE, "{p:?}");
    assert_eq!(p.wake_in, Some(Duration::from_secs(20)));
    assert_eq!(removed(&plan_at(&fx, NOW + 20)), SHARD3);
}

#[test]
fn a_shard_still_draining_is_neither_recorded_nor_removed() {
    let p = plan_at(&leaving("12288-16383", None), NOW);
    assert!(matches!(p.action, Action::Reshard { .. }), "{p:?}");
    assert_eq!(p.wake_in, None);
    // Holding no slot but a key (the cluster's own view says it still serves something).
    let mut fx = leaving("", None);
    fx.get('7').keys = 1;
    let p = plan_at(&fx, NOW);
    assert!(
        !matches!(p.action, Action::MarkDrained { .. } | Action::DeletePods(_)),
        "{p:?}"
    );
    // A member not answering: nothing is known of it, so nothing is recorded.
    let mut fx = leaving("", None);
    fx.get('8').answers = false;
    assert!(!matches!(
        plan_at(&fx, NOW).action,
        Action::MarkDrained { .. }
    ));
}

#[test]
fn a_shard_scaled_back_out_mid_grace_has_its_record_cleared() {
    let since = at(NOW - 10).to_string();
    // Back to 4 shards: the record of a shard that holds no slot yet is harmless (nothing is
    // removed from a wanted shard) and no grace period is waited on; slots move to it.
    let fx = leaving("", Some(&since));
    let p = plan(&observed(&fx, 4, NOW));
    assert!(matches!(p.action, Action::Reshard { .. }), "{p:?}");
    assert_eq!(p.wake_in, None);
    // Once it holds slots again, the record is cleared before anything else of the scale: a
    // later scale-in must wait a grace period of its own.
    let fx = leaving("12288-16383", Some(&since));
    for leaders in [4, 3] {
        let p = plan(&observed(&fx, leaders, NOW));
        match &p.action {
            Action::ClearDrained(pods) => {
                let names: Vec<&str> = pods.iter().map(|(p, _)| p.as_str()).collect();
                assert_eq!(names, SHARD3, "{leaders} leaders");
            }
            other => panic!("expected the record cleared, got {other:?}"),
        }
    }
}

#[test]
fn a_zero_grace_period_removes_at_once_without_a_record() {
    let mut obs = observed(&leaving("", None), 3, NOW);
    obs.shape.scale_in_grace = jiff::SignedDuration::ZERO;
    assert_eq!(removed(&plan(&obs)), SHARD3);
}

#[test]
fn the_grace_period_comes_from_the_spec() {
    let cluster = |extra: serde_json::Value| {
        let mut spec = serde_json::json!({"leaders": 3});
        if let serde_json::Value::Object(m) = extra {
            spec.as_object_mut().unwrap().extend(m);
        }
        crate::crd::RedisCluster::new("demo", serde_json::from_value(spec).unwrap())
    };
    let secs = |c| drain::grace(&c).as_secs();
    assert_eq!(secs(cluster(serde_json::json!({}))), 30);
    assert_eq!(
        secs(cluster(serde_json::json!({"scaleInGracePeriod": "2m"}))),
        120
    );
    assert_eq!(
        secs(cluster(serde_json::json!({"scaleInGracePeriod": "0s"}))),
        0
    );
    // Admission refuses more than an hour; a spec that bypassed it is clamped.
    assert_eq!(
        secs(cluster(serde_json::json!({"scaleInGracePeriod": "3h"}))),
        3600
    );
}
