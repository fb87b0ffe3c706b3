//! Rolling update and live config: table tests on the plan fixture (`fixture.rs`).

use std::sync::Arc;

use redis_scheduler::Request;

use super::fixture::{Fx, PodState, cond, healthy, id, promotes};
use crate::controller::act::Executed;
use crate::controller::labels::LIVE_CONFIG_ANNOTATION;
use crate::controller::plan::facts::Facts;
use crate::controller::plan::facts::formation::Formation;
use crate::controller::plan::*;
use crate::controller::status::{conditions, types};

/// The spec moved on to a new revision.
fn new_revision(mut fx: Fx) -> Fx {
    fx.target.revision = "rev-2".into();
    fx
}

fn restarted(plan: &Plan) -> Vec<String> {
    match &plan.action {
        Action::Restart(pods) => pods.iter().map(|(p, _)| p.clone()).collect(),
        other => panic!("expected a restart, got {other:?} ({plan:?})"),
    }
}

/// Records `config` as applied live on the Pod named `pod`.
fn with_live(obs: &mut crate::controller::observe::Observed, pod: &str, config: &str) {
    for m in &mut obs.members {
        if m.name() == pod {
            let mut p = (*m.pod).clone();
            p.metadata
                .annotations
                .get_or_insert_default()
                .insert(LIVE_CONFIG_ANNOTATION.into(), config.into());
            m.pod = Arc::new(p);
        }
    }
}

#[test]
fn followers_of_the_first_shard_are_replaced_first() {
    let fx = new_revision(healthy());
    let plan = crate::controller::plan::plan(&fx.observed());
    assert_eq!(restarted(&plan), vec!["p-s0-m1-d".to_string()]);
    assert_eq!(plan.reason, "RollingUpdate");
    // A rolling update of a ready cluster: still Ready, and Progressing says how far it got.
    let c = conditions(&plan, &Executed::Nothing);
    assert!(cond(&c, types::READY).status);
    let p = cond(&c, types::PROGRESSING);
    assert!(p.status, "{p:?}");
    assert!(p.message.starts_with("0/6 members updated"), "{p:?}");
}

/// The plan is shard 0's graceful handover to d.
fn hands_over_to_d(plan: &Plan) {
    match &plan.action {
        Action::Failover {
            shard: 0, to, kind, ..
        } => {
            assert_eq!(to.as_str(), id('d'));
            assert_eq!(*kind, FailoverKind::Graceful);
        }
        other => panic!("expected a graceful failover to d, got {other:?}"),
    }
}

#[test]
fn the_leader_hands_over_to_an_updated_in_sync_follower_before_it_restarts() {
    let mut fx = new_revision(healthy());
    fx.get('d').rev = "rev-2";
    let plan = crate::controller::plan::plan(&fx.observed());
    hands_over_to_d(&plan);
}

#[test]
fn no_handover_to_a_follower_out_of_sync() {
    let mut fx = new_revision(healthy());
    fx.get('d').rev = "rev-2";
    // d trails its leader by more than the in-sync lag.
    fx.get('a').offset = 10_000_000;
    let plan = crate::controller::plan::plan(&fx.observed());
    assert!(!promotes(&plan), "{plan:?}");
    assert_eq!(plan.rollout.unwrap().reason, Some("RolloutWaiting"));
}

/// Shard 0 right after the rollout's handover: d (updated, zone-b) leads, a (outdated,
/// zone-a) follows it.
fn handed_over() -> Fx {
    let mut fx = new_revision(healthy());
    fx.get('d').rev = "rev-2";
    fx.get('d').master = None;
    fx.get('d').slots = "0-5461";
    fx.get('a').slots = "";
    fx.get('a').master = Some(id('d'));
    fx
}

#[test]
fn the_old_leader_is_replaced_once_it_follows_and_leadership_is_not_handed_back_before() {
    // After the handover: d (updated, zone-b) leads shard 0, a (outdated, zone-a) follows it.
    // zone-b now has two leaders; the spread is restored only once a is updated.
    let mut fx = handed_over();
    let plan = crate::controller::plan::plan(&fx.observed());
    assert_eq!(restarted(&plan), vec!["p-s0-m0-a".to_string()]);

    // a came back updated and in sync: leadership returns to zone-a first (members planner),
    // then the next shard's follower.
    fx.get('a').rev = "rev-2";
    let plan = crate::controller::plan::plan(&fx.observed());
    match &plan.action {
        Action::Failover { shard: 0, to, .. } => assert_eq!(to.as_str(), id('a')),
        other => panic!("expected the spread restored first, got {other:?}"),
    }
    fx.get('a').master = None;
    fx.get('a').slots = "0-5461";
    fx.get('d').master = Some(id('a'));
    fx.get('d').slots = "";
    let plan = crate::controller::plan::plan(&fx.observed());
    assert_eq!(restarted(&plan), vec!["p-s1-m1-e".to_string()]);
}

#[test]
fn the_rollout_waits_while_anything_is_wrong() {
    let mut fx = new_revision(healthy());
    fx.lose('e', Some(PodState::Down));
    let plan = crate::controller::plan::plan(&fx.observed());
    assert!(!matches!(plan.action, Action::Restart(_)), "{plan:?}");
    let r = plan.rollout.unwrap();
    assert_eq!(r.reason, Some("RolloutWaiting"));
}

#[test]
fn paused_and_on_delete_only_say_so() {
    let mut fx = new_revision(healthy());
    fx.target.paused = true;
    let plan = crate::controller::plan::plan(&fx.observed());
    assert_eq!(plan.action, Action::Wait);
    let c = conditions(&plan, &Executed::Nothing);
    let p = cond(&c, types::PROGRESSING);
    assert_eq!((p.status, p.reason.as_str()), (false, "RolloutPaused"));

    let mut fx = new_revision(healthy());
    fx.target.rolling = false;
    let plan = crate::controller::plan::plan(&fx.observed());
    assert_eq!(plan.action, Action::Wait);
    let c = conditions(&plan, &Executed::Nothing);
    assert_eq!(cond(&c, types::PROGRESSING).reason, "OnDelete");
    assert!(cond(&c, types::READY).status);
}

#[test]
fn live_config_is_applied_without_a_restart_and_only_once() {
    let mut fx = healthy();
    fx.target
        .live
        .insert("maxmemory-policy".into(), "allkeys-lru".into());
    let mut obs = fx.observed();
    let plan = crate::controller::plan::plan(&obs);
    match &plan.action {
        Action::ApplyConfig { members, config } => {
            assert_eq!(members.len(), 6);
            assert_eq!(config.get("maxmemory-policy").unwrap(), "allkeys-lru");
        }
        other => panic!("expected live config, got {other:?}"),
    }
    let names: Vec<String> = obs.members.iter().map(|m| m.name().to_string()).collect();
    for n in &names {
        with_live(
            &mut obs,
            n,
            r#"{"restarts":0,"config":{"maxmemory-policy":"allkeys-lru"}}"#,
        );
    }
    let plan = crate::controller::plan::plan(&obs);
    assert_eq!(plan.action, Action::Wait, "{plan:?}");
    assert!(plan.ready);
}

#[test]
fn a_live_key_removed_from_the_spec_needs_a_restart() {
    let fx = healthy();
    let mut obs = fx.observed();
    let names: Vec<String> = obs.members.iter().map(|m| m.name().to_string()).collect();
    for n in &names {
        with_live(
            &mut obs,
            n,
            r#"{"restarts":0,"config":{"maxmemory":"1gb"}}"#,
        );
    }
    let plan = crate::controller::plan::plan(&obs);
    assert_eq!(restarted(&plan), vec!["p-s0-m1-d".to_string()]);
}

#[test]
fn a_leader_without_followers_restarts_only_when_its_volume_keeps_the_data() {
    let without_followers = |storage: bool| {
        let mut fx = new_revision(healthy());
        fx.members.retain(|m| m.master.is_none());
        if storage {
            fx = fx.with_storage();
        }
        let mut obs = fx.observed();
        obs.shape.followers = 0;
        obs.request = Request::new(3, 0);
        crate::controller::plan::plan(&obs)
    };
    let plan = without_followers(false);
    assert_eq!(plan.action, Action::Wait, "{plan:?}");
    assert_eq!(plan.rollout.unwrap().reason, Some("RolloutBlocked"));
    let plan = without_followers(true);
    assert_eq!(restarted(&plan), vec!["p-s0-m0-a".to_string()]);
}

#[test]
fn a_member_that_no_longer_fits_its_node_is_placed_on_another_in_its_zone() {
    // Requests went up to 2 CPUs; n-a1 (leader a) has only 1 allocatable.
    let fx = new_revision(healthy());
    let mut obs = fx.observed();
    obs.request.member_resources.cpu_millis = 2000;
    for n in &mut obs.topology.nodes {
        if n.name == "n-a1" {
            n.capacity.cpu_millis = 1000;
        }
    }
    let plan = crate::controller::plan::plan(&obs);
    match &plan.action {
        Action::CreateMembers(news) => {
            assert_eq!(news.len(), 1, "{news:?}");
            assert_eq!(news[0].shard, 0);
            assert_ne!(news[0].node, "n-a1");
            assert_eq!(news[0].zone, "zone-a", "{news:?}");
        }
        other => panic!("expected a re-placed member, got {other:?}"),
    }
}

/// `observer` has not yet heard that `subject` follows: it lists it as a master without slots.
fn unheard(obs: &mut crate::controller::observe::Observed, observer: char, subject: char) {
    let o = obs
        .view
        .nodes
        .iter_mut()
        .find(|n| n.id().as_str() == id(observer))
        .unwrap();
    let e = o
        .peers
        .iter_mut()
        .find(|e| e.id.as_str() == id(subject))
        .unwrap();
    e.flags.replica = false;
    e.flags.master = true;
    e.master_id = None;
}

#[test]
fn the_old_leader_is_replaced_while_gossip_of_its_new_role_still_spreads() {
    // Right after the handover to d: b has not yet heard that a now follows d. Every member
    // agrees on the slots and the leaders; a's restart needs no vote, so it does not wait.
    let fx = handed_over();
    let mut obs = fx.observed();
    unheard(&mut obs, 'b', 'a');
    let formation = Facts::of(&obs).formation.expect("a placement exists");
    assert!(
        matches!(formation, Formation::WaitRoles(_)),
        "{formation:?}"
    );
    let plan = crate::controller::plan::plan(&obs);
    assert!(!plan.ready, "not Ready while a role spreads: {plan:?}");
    assert_eq!(restarted(&plan), vec!["p-s0-m0-a".to_string()]);
    assert_eq!(plan.rollout.unwrap().reason, Some("RollingUpdate"));
}

#[test]
fn the_handover_waits_until_a_majority_of_the_masters_knows_the_updated_follower() {
    let mut fx = new_revision(healthy());
    fx.get('d').rev = "rev-2";
    // d came back updated; b and c have not heard yet that it follows a: only a would vote.
    let mut obs = fx.observed();
    unheard(&mut obs, 'b', 'd');
    unheard(&mut obs, 'c', 'd');
    let plan = crate::controller::plan::plan(&obs);
    assert!(!promotes(&plan), "{plan:?}");
    assert!(!matches!(plan.action, Action::Restart(_)), "{plan:?}");
    let r = plan.rollout.unwrap();
    assert_eq!(r.reason, Some("RollingUpdate"), "{r:?}");
    assert!(r.message.contains("majority of the masters"), "{r:?}");
    // Once b has heard, a and b make the majority: the handover goes ahead while c learns.
    let mut obs = fx.observed();
    unheard(&mut obs, 'c', 'd');
    let plan = crate::controller::plan::plan(&obs);
    hands_over_to_d(&plan);
}
