//! The rolling update's surge (`updateStrategy.maxSurge`): table tests on the plan fixture.
//! The fixture's 9 nodes (3 per zone) leave 3 free for replacements.

use super::fixture::{Fx, PodState, cond, healthy, id};
use crate::controller::act::Executed;
use crate::controller::labels::{REPLACES_ANNOTATION, REPLACES_ID_ANNOTATION};
use crate::controller::observe::Observed;
use crate::controller::plan::*;
use crate::controller::status::{conditions, types};

/// The spec moved on to rev-2, surging on.
fn surging(mut fx: Fx) -> Fx {
    fx.target.revision = "rev-2".into();
    fx.target.surge = true;
    fx
}

/// Replacement `c` of shard `shard` on `node` (ordinal 2) for the Pod `replaces`, following
/// `master`: in sync when `synced`, else attached with nothing copied yet.
fn replacement(
    fx: &mut Fx,
    c: char,
    node: &'static str,
    shard: usize,
    master: char,
    replaces: &str,
    synced: bool,
) {
    fx.add(c, node, shard, 2, Some(master));
    let m = fx.get(c);
    m.rev = "rev-2";
    m.annotations
        .insert(REPLACES_ANNOTATION, replaces.to_string());
    // The fixture's Pods are named p-s<shard>-m<member>-<id's first character>.
    let of = replaces.chars().last().unwrap();
    m.annotations.insert(REPLACES_ID_ANNOTATION, id(of));
    if !synced {
        m.offset = 0;
        m.keys = 0;
        fx.unlinked.push(id(c));
    }
}

/// Replacement `c` caught up with its leader.
fn synced(fx: &mut Fx, c: char) {
    fx.get(c).offset = 1000;
    fx.get(c).keys = 100;
    fx.unlinked.retain(|u| *u != id(c));
}

/// The plan's conditions say Ready and not Degraded.
fn ready_not_degraded(plan: &Plan) {
    let c = conditions(plan, &Executed::Nothing);
    let (ready, degraded) = (cond(&c, types::READY), cond(&c, types::DEGRADED));
    assert!(ready.status, "{ready:?}");
    assert!(!degraded.status, "{degraded:?}");
}

fn created(plan: &Plan) -> &NewMember {
    match &plan.action {
        Action::CreateMembers(news) if news.len() == 1 => &news[0],
        other => panic!(
            "expected one member created, got {other:?} ({})",
            plan.message
        ),
    }
}

fn deleted_pods(plan: &Plan) -> Vec<String> {
    match &plan.action {
        Action::DeletePods(pods) => pods.iter().map(|(p, _)| p.clone()).collect(),
        other => panic!("expected pods deleted, got {other:?} ({})", plan.message),
    }
}

#[test]
fn an_outdated_follower_gets_a_replacement_beside_it_in_its_own_zone() {
    let fx = surging(healthy());
    let plan = crate::controller::plan::plan(&fx.observed());
    let new = created(&plan);
    // d (shard 0's follower) is on n-b2 in zone-b; n-b1 holds b: n-b3 is zone-b's free node.
    assert_eq!((new.shard, new.member), (0, 2));
    assert_eq!((new.node.as_str(), new.zone.as_str()), ("n-b3", "zone-b"));
    assert_eq!(
        new.replaces
            .as_ref()
            .map(|(p, i)| (p.as_str(), i.as_ref().map(|i| i.as_str().to_string()))),
        Some(("p-s0-m1-d", Some(id('d'))))
    );
    assert_eq!(new.reuse_claim, None);
    assert_eq!(plan.concern, Some("rollout"));
    // Nothing is taken away: the cluster stays Ready.
    let c = conditions(&plan, &Executed::Nothing);
    assert!(cond(&c, types::READY).status);
}

#[test]
fn the_old_follower_retires_only_once_its_replacement_is_in_sync_volume_first() {
    let mut fx = surging(healthy()).with_storage();
    replacement(&mut fx, '7', "n-b3", 0, 'a', "p-s0-m1-d", false);
    // Three members in shard 0: the placement would drop one, but the pair is the rollout's.
    let plan = crate::controller::plan::plan(&fx.observed());
    assert!(
        !matches!(
            plan.action,
            Action::DeletePods(_) | Action::DeleteClaims(_) | Action::Restart(_)
        ),
        "{plan:?}"
    );
    let r = plan.rollout.clone().unwrap();
    assert_eq!(r.reason, Some("RollingUpdate"), "{r:?}");
    assert!(r.message.contains("replacement p-s0-m2-7 syncing"), "{r:?}");
    assert_eq!(r.updated, 0, "the pair holds one seat: {r:?}");
    // Every shard keeps its leader and its follower in sync meanwhile: Ready, not Degraded.
    ready_not_degraded(&plan);

    // In sync: d's volume goes first (the Pod keeps it until it stops), then d.
    synced(&mut fx, '7');
    let mut obs = fx.observed();
    let plan = crate::controller::plan::plan(&obs);
    match &plan.action {
        Action::DeleteClaims(claims) => {
            assert_eq!(
                claims.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
                ["data-s0-m1"]
            );
        }
        other => panic!(
            "expected d's volume deleted, got {other:?} ({})",
            plan.message
        ),
    }
    for c in &mut obs.claims {
        if c.name == "data-s0-m1" {
            c.deleting = true;
        }
    }
    let plan = crate::controller::plan::plan(&obs);
    assert_eq!(deleted_pods(&plan), ["p-s0-m1-d"]);
    assert_eq!(plan.concern, Some("rollout"));
}

#[test]
fn an_operator_restarted_mid_surge_never_makes_a_second_replacement() {
    // The pair is read from the Pods: whatever the operator remembers, a shard with a
    // replacement under way waits for it.
    let mut fx = surging(healthy());
    replacement(&mut fx, '7', "n-b3", 0, 'a', "p-s0-m1-d", false);
    fx.get('7').pod = Some(PodState::Down);
    let plan = crate::controller::plan::plan(&fx.observed());
    assert!(!matches!(plan.action, Action::CreateMembers(_)), "{plan:?}");
    assert!(!matches!(plan.action, Action::DeletePods(_)), "{plan:?}");
}

#[test]
fn a_replacement_made_for_an_earlier_spec_is_dropped_at_once() {
    let mut fx = surging(healthy());
    replacement(&mut fx, '7', "n-b3", 0, 'a', "p-s0-m1-d", false);
    // The spec changed again while g was syncing (the cluster is not healthy meanwhile).
    fx.target.revision = "rev-3".into();
    let plan = crate::controller::plan::plan(&fx.observed());
    assert_eq!(deleted_pods(&plan), ["p-s0-m2-7"]);
    assert_eq!(plan.concern, Some("surge"));
}

#[test]
fn max_surge_0_drops_a_replacement_not_yet_in_sync_and_restarts_in_place() {
    let mut fx = surging(healthy());
    fx.target.surge = false;
    replacement(&mut fx, '7', "n-b3", 0, 'a', "p-s0-m1-d", false);
    let plan = crate::controller::plan::plan(&fx.observed());
    assert_eq!(deleted_pods(&plan), ["p-s0-m2-7"]);
    fx.members.retain(|m| m.id != id('7'));
    let plan = crate::controller::plan::plan(&fx.observed());
    match &plan.action {
        Action::Restart(pods) => assert_eq!(pods[0].0, "p-s0-m1-d"),
        other => panic!("expected d restarted in place, got {other:?}"),
    }
}

#[test]
fn without_room_the_follower_restarts_in_place_and_the_status_says_why() {
    // zone-a holds shard 0's leader; zone-b's and zone-c's free nodes are not ready.
    let mut fx = surging(healthy());
    fx.not_ready = vec!["n-b3", "n-c3"];
    let plan = crate::controller::plan::plan(&fx.observed());
    match &plan.action {
        Action::Restart(pods) => assert_eq!(pods[0].0, "p-s0-m1-d"),
        other => panic!("expected d restarted in place, got {other:?}"),
    }
    let r = plan.rollout.unwrap();
    assert!(r.message.contains("restarted in place"), "{r:?}");
    assert!(r.message.contains("no schedulable node with room"), "{r:?}");
}

#[test]
fn the_replacement_goes_to_another_allowed_zone_when_its_own_has_no_room() {
    let mut fx = surging(healthy());
    fx.not_ready = vec!["n-b3"];
    let plan = crate::controller::plan::plan(&fx.observed());
    let new = created(&plan);
    assert_eq!((new.node.as_str(), new.zone.as_str()), ("n-c3", "zone-c"));
}

/// A 3 × 0 cluster: leaders a, b, c alone in their shards.
fn without_followers(fx: &mut Fx) -> Observed {
    let followers = [id('d'), id('e'), id('f')];
    fx.members.retain(|m| !followers.contains(&m.id));
    let mut obs = fx.observed();
    obs.shape.followers = 0;
    obs.request = redis_scheduler::Request::new(3, 0);
    obs
}

#[test]
fn a_shard_without_followers_hands_over_to_its_replacement_instead_of_restarting() {
    let mut fx = surging(healthy());
    let plan = crate::controller::plan::plan(&without_followers(&mut fx));
    let new = created(&plan);
    assert_eq!(new.shard, 0);
    assert_eq!(new.zone, "zone-a", "a's own zone first");
    assert_eq!(
        new.replaces.as_ref().map(|(p, _)| p.as_str()),
        Some("p-s0-m0-a")
    );

    // Syncing: nothing yet (no restart of the only member, no handover to an empty copy).
    replacement(&mut fx, '7', "n-a2", 0, 'a', "p-s0-m0-a", false);
    let plan = crate::controller::plan::plan(&without_followers(&mut fx));
    assert!(
        !matches!(plan.action, Action::Restart(_) | Action::Failover { .. }),
        "{plan:?}"
    );

    // In sync: a graceful handover to 7.
    synced(&mut fx, '7');
    let plan = crate::controller::plan::plan(&without_followers(&mut fx));
    match &plan.action {
        Action::Failover {
            shard: 0, to, kind, ..
        } => {
            assert_eq!(to.as_str(), id('7'));
            assert_eq!(*kind, FailoverKind::Graceful);
        }
        other => panic!(
            "expected a graceful handover to 7, got {other:?} ({})",
            plan.message
        ),
    }

    // 7 leads, a follows it: a retires.
    fx.get('7').master = None;
    fx.get('7').slots = "0-5461";
    fx.get('a').slots = "";
    fx.get('a').master = Some(id('7'));
    let plan = crate::controller::plan::plan(&without_followers(&mut fx));
    assert_eq!(deleted_pods(&plan), ["p-s0-m0-a"]);
}

#[test]
fn a_replacement_still_starting_is_no_problem_and_the_cluster_stays_ready() {
    let mut fx = surging(healthy());
    replacement(&mut fx, '7', "n-b3", 0, 'a', "p-s0-m1-d", false);
    fx.get('7').answers = false;
    fx.get('7').pod = Some(PodState::Down);
    // Not introduced yet: no member lists it.
    fx.get('7').offset = u64::MAX;
    let plan = crate::controller::plan::plan(&fx.observed());
    ready_not_degraded(&plan);
    assert!(plan.rollout.unwrap().message.contains("p-s0-m2-7 starting"));
}

#[test]
fn a_retired_member_is_forgotten_at_once_and_is_no_stale_identity_meanwhile() {
    // d's Pod was deleted once 7 was in sync; the masters have not flagged it failing yet.
    let mut fx = surging(healthy());
    replacement(&mut fx, '7', "n-b3", 0, 'a', "p-s0-m1-d", true);
    fx.get('d').pod = None;
    fx.get('d').answers = false;
    let plan = crate::controller::plan::plan(&fx.observed());
    match &plan.action {
        Action::Forget(ids) => {
            assert_eq!(
                ids.iter()
                    .map(|(i, _)| i.as_str().to_string())
                    .collect::<Vec<_>>(),
                [id('d')]
            );
        }
        other => panic!(
            "expected d forgotten at once, got {other:?} ({})",
            plan.message
        ),
    }
    assert!(
        plan.problems.iter().all(|p| p.reason != "StaleIdentity"),
        "{:?}",
        plan.problems
    );

    // Without the replacement's record, the same gone follower waits for the masters' verdict.
    fx.get('7').annotations.remove(REPLACES_ID_ANNOTATION);
    let plan = crate::controller::plan::plan(&fx.observed());
    assert!(!matches!(plan.action, Action::Forget(_)), "{plan:?}");
    assert!(
        plan.problems.iter().any(|p| p.reason == "StaleIdentity"),
        "{:?}",
        plan.problems
    );
}

#[test]
fn a_node_holding_a_volume_of_the_cluster_is_no_seat_for_a_replacement() {
    // An orphaned claim bound to n-b3 (a member re-placed earlier): a replacement there would
    // share the node with a volume of this cluster (and could be handed that volume).
    let mut fx = surging(healthy());
    fx.claims.push(crate::controller::observe::Claim {
        name: "data-s2-m5".into(),
        shard: 2,
        member: 5,
        node: Some("n-b3".into()),
        node_id: None,
        deleting: false,
    });
    let plan = crate::controller::plan::plan(&fx.observed());
    let new = created(&plan);
    assert_eq!((new.node.as_str(), new.zone.as_str()), ("n-c3", "zone-c"));
    assert_eq!(new.reuse_claim, None);
}

#[test]
fn a_replacement_outdated_itself_is_counted_once_among_the_updated() {
    // The spec moved on to rev-3 mid-surge: every member but d runs it already, and d's
    // replacement 7 was made for rev-2. Updated: a, b, c, e and f. (Subtracting the pairs and
    // the outdated members from the live ones took 7 away twice.)
    let mut fx = surging(healthy());
    replacement(&mut fx, '7', "n-b3", 0, 'a', "p-s0-m1-d", false);
    fx.target.revision = "rev-3".into();
    for c in ['a', 'b', 'c', 'e', 'f'] {
        fx.get(c).rev = "rev-3";
    }
    let obs = fx.observed();
    let facts = crate::controller::plan::facts::Facts::of(&obs);
    assert_eq!(facts.updated(), 5);
}
