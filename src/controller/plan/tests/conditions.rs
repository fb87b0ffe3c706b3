//! Conditions: what the status says of a plan and of what its step did.

use super::fixture::*;
use crate::controller::act::Executed;
use crate::controller::plan::*;
use crate::controller::status::{conditions, types};

#[test]
fn healthy_cluster_is_ready_and_idle() {
    let plan = plan(&healthy().observed());
    assert_eq!(plan.action, Action::Wait, "{plan:?}");
    assert!(plan.ready, "{plan:?}");
    let c = conditions(&plan, &Executed::Nothing);
    assert!(cond(&c, types::READY).status);
    assert!(!cond(&c, types::DEGRADED).status);
    assert!(!cond(&c, types::PROGRESSING).status);
}

#[test]
fn a_failed_step_is_degraded_with_its_reason() {
    let p = plan(&healthy().observed());
    let c = conditions(
        &p,
        &Executed::Failed {
            reason: "FailoverFailed",
            message: "shard 0: boom".into(),
            transient: true,
            retry_after: std::time::Duration::ZERO,
            error: None,
        },
    );
    let d = cond(&c, types::DEGRADED);
    assert!(d.status && d.reason == "FailoverFailed" && d.message.contains("boom"));
}

#[test]
fn a_zone_without_ready_nodes_is_named() {
    let mut fx = healthy();
    fx.not_ready.extend(["n-c1", "n-c2", "n-c3"]);
    let p = plan(&fx.observed());
    assert!(
        p.problems
            .iter()
            .any(|x| x.reason == "ZoneUnavailable" && x.message.contains("zone-c")),
        "{p:?}"
    );
}

#[test]
fn a_cluster_whole_again_without_a_zone_is_ready_and_degraded() {
    // Zone a is gone; its members were re-placed: shard 0 led by d (zone b) with a new
    // follower on n-c3, shard 2's follower moved from n-a2 to n-b3.
    let mut fx = healthy();
    fx.not_ready.extend(["n-a1", "n-a2", "n-a3"]);
    // Their Pods linger Terminating on the dead nodes; the cluster forgot them.
    for c in ['a', 'f'] {
        let m = fx.get(c);
        m.pod = Some(PodState::Deleting(60));
        m.answers = false;
        m.offset = u64::MAX;
    }
    let d = fx.get('d');
    d.master = None;
    d.slots = "0-5461";
    fx.add('7', "n-c3", 0, 0, Some('d'));
    fx.add('8', "n-b3", 2, 1, Some('c'));
    let p = plan(&fx.observed());
    assert!(p.ready, "{p:?}");
    let c = conditions(&p, &Executed::Nothing);
    assert!(cond(&c, types::READY).status);
    let d = cond(&c, types::DEGRADED);
    assert!(d.status && d.reason == "ZoneUnavailable", "{d:?}");
}

#[test]
fn members_refusing_the_password_are_a_condition_not_a_cascade() {
    // The Secret was edited: b answers WRONGPASS. Nothing may be judged from that (b is not
    // gone, its shard needs no failover): the plan refuses to act and says which members.
    let mut obs = healthy().observed();
    let b = obs.view.nodes.remove(1);
    obs.view.unreachable.push(crate::redis::model::Unreachable {
        addr: b.addr,
        error: crate::redis::RedisError::from_reply_line(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ),
    });
    let p = plan(&obs);
    assert_eq!((&p.action, p.refused), (&Action::Wait, true), "{p:?}");
    let c = conditions(&p, &Executed::Nothing);
    let d = cond(&c, types::DEGRADED);
    assert_eq!(d.reason, "AuthMismatch", "{d:?}");
    assert!(d.message.contains("p-s1-m0-b"), "{d:?}");
    assert!(!cond(&c, types::PROGRESSING).status);
}

#[test]
fn the_generated_secret_is_created_only_before_any_member_exists() {
    use crate::controller::observe::auth::{Auth, SecretRef};
    let secret = SecretRef {
        name: "demo-auth".into(),
        key: "password".into(),
    };
    // Deleted while members run with its password: never generated again.
    let mut obs = healthy().observed();
    obs.auth = Auth::ToGenerate(secret.clone());
    let p = plan(&obs);
    assert_eq!(
        (&p.action, p.reason, p.refused),
        (&Action::Wait, "AuthMismatch", true),
        "{p:?}"
    );
    assert!(p.message.contains("demo-auth"), "{p:?}");
    // A new cluster: generated.
    let mut fresh = healthy();
    fresh.members.clear();
    let mut obs = fresh.observed();
    obs.auth = Auth::ToGenerate(secret);
    assert_eq!(plan(&obs).action, Action::CreateAuthSecret);
}

#[test]
fn an_unusable_tls_secret_refuses_everything_under_its_own_reason() {
    use crate::controller::observe::auth::Auth;
    // A running cluster: nothing is done on what the operator cannot reach.
    let mut obs = healthy().observed();
    obs.auth = Auth::TlsInvalid("spec.tls: Secret demo-tls has no ca.crt".into());
    let p = plan(&obs);
    assert_eq!(
        (&p.action, p.reason, p.invalid_spec()),
        (&Action::Wait, "TLSSecretInvalid", true),
        "{p:?}"
    );
    assert!(p.message.contains("demo-tls"), "{p:?}");
    // A new cluster: not even the generated password Secret is made.
    let mut fresh = healthy();
    fresh.members.clear();
    let mut obs = fresh.observed();
    obs.auth = Auth::TlsInvalid("spec.tls: Secret demo-tls not found".into());
    assert!(plan(&obs).invalid_spec());
    // A spec error is still reported as one first.
    obs.config.insert("port".into(), "7000".into());
    assert_eq!(plan(&obs).reason, "InvalidSpec");
}

#[test]
fn a_follower_long_cut_off_from_its_answering_leader_is_degraded() {
    // e (shard 1) lost its link to b, which answers and serves: a full sync failing again
    // and again (a full disk shows only in the follower's log).
    let mut fx = healthy();
    fx.cut_off.push(id('e'));
    fx.link_down_since = 59;
    let p = plan(&fx.observed());
    let c = conditions(&p, &Executed::Nothing);
    assert!(
        !cond(&c, types::DEGRADED).status,
        "a sync may take a minute: {p:?}"
    );
    fx.link_down_since = 60;
    let p = plan(&fx.observed());
    let c = conditions(&p, &Executed::Nothing);
    let d = cond(&c, types::DEGRADED);
    assert!(d.status && d.reason == "FollowerNotSyncing", "{d:?}");
    assert!(
        d.message.contains("p-s1-m1-e (shard 1, link down, 60 s)"),
        "{d:?}"
    );
}

#[test]
fn a_follower_that_never_linked_since_its_start_counts_from_its_container_start() {
    // Redis reports `master_link_down_since_seconds:-1` until a follower's first link, so a
    // restarted follower whose every sync fails is timed by how long its container runs.
    let mut fx = healthy();
    fx.unlinked.push(id('f'));
    let p = plan(&fx.observed());
    let c = conditions(&p, &Executed::Nothing);
    assert!(!cond(&c, types::DEGRADED).status, "{p:?}");
    fx.get('f').running_for = 75;
    let p = plan(&fx.observed());
    let c = conditions(&p, &Executed::Nothing);
    let d = cond(&c, types::DEGRADED);
    assert!(d.status && d.reason == "FollowerNotSyncing", "{d:?}");
    assert!(
        d.message
            .contains("p-s2-m1-f (shard 2, never linked since its start, 75 s)"),
        "{d:?}"
    );
}

#[test]
fn followers_of_a_lost_leader_are_its_loss_not_a_sync_problem() {
    // a's node died: d's link is down for minutes, which LeaderLost already says.
    let mut fx = healthy();
    fx.get('a').answers = false;
    fx.get('a').pod = Some(PodState::Running);
    fx.link_down_since = 300;
    let p = plan(&fx.observed());
    assert!(
        p.problems.iter().all(|x| x.reason != "FollowerNotSyncing"),
        "{p:?}"
    );
}
