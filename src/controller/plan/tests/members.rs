//! The members concern: members re-created on their volumes, re-placed, replaced, and the
//! leaders' spread restored.

use super::fixture::*;
use super::{deleted, members_step};
use crate::controller::act::Executed;
use crate::controller::plan::*;
use crate::controller::status::{conditions, types};

#[test]
fn deleted_follower_with_pvc_comes_back_on_its_node_with_its_volume() {
    let mut fx = healthy().with_storage();
    fx.lose('e', None);
    let p0 = plan(&fx.observed());
    match &p0.action {
        Action::CreateMembers(news) => {
            assert_eq!(news.len(), 1);
            assert_eq!((news[0].shard, news[0].member), (1, 1));
            assert_eq!(news[0].node, "n-c2");
            assert_eq!(news[0].reuse_claim.as_deref(), Some("data-s1-m1"));
        }
        other => panic!("expected CreateMembers, got {other:?}"),
    }
    // The identity is not forgotten: its volume brings it back.
    let c = conditions(&p0, &Executed::Nothing);
    assert!(cond(&c, types::DEGRADED).status);
    assert!(!cond(&c, types::READY).status);
}

#[test]
fn deleted_follower_without_storage_is_replaced_in_its_zone_then_forgotten() {
    let mut fx = healthy();
    fx.lose('e', None);
    let p0 = plan(&fx.observed());
    match &p0.action {
        // The dead identity owns nothing and nobody follows it: it is forgotten first.
        Action::Forget(ids) => assert_eq!(ids[0].0.as_str(), id('e')),
        other => panic!("expected Forget, got {other:?}"),
    }
    // Once forgotten, the replacement is created in zone c (shard 1's other member is in b).
    fx.members.retain(|m| m.id != id('e'));
    fx.link_down.clear();
    let p0 = plan(&fx.observed());
    match &p0.action {
        Action::CreateMembers(news) => {
            assert_eq!(news[0].shard, 1);
            assert_eq!(news[0].zone, "zone-c");
            assert_eq!(news[0].reuse_claim, None);
        }
        other => panic!("expected CreateMembers, got {other:?}"),
    }
}

#[test]
fn follower_on_a_lost_node_is_re_placed_and_its_volume_reported() {
    let mut fx = healthy().with_storage();
    fx.not_ready.push("n-c2");
    let e = fx.get('e');
    e.answers = false;
    e.pod = Some(PodState::Deleting(40));
    fx.unreachable('e');
    let obs = fx.observed();
    let p0 = plan(&obs);
    match &p0.action {
        Action::Forget(ids) => assert_eq!(ids[0].0.as_str(), id('e')),
        other => panic!("expected Forget of the lost identity, got {other:?}"),
    }
    // After the FORGET: a new member (new PVC) on another node of zone c; the old PVC is
    // an orphan, listed in status.
    fx.members.retain(|m| m.id != id('e'));
    fx.link_down.clear();
    let p0 = plan(&fx.observed());
    match &p0.action {
        Action::CreateMembers(news) => {
            assert_eq!(news[0].zone, "zone-c");
            assert_ne!(news[0].node, "n-c2");
            assert_eq!(news[0].reuse_claim, None);
        }
        other => panic!("expected CreateMembers, got {other:?}"),
    }
    assert_eq!(p0.orphaned_claims, vec!["data-s1-m1".to_string()]);
}

#[test]
fn leaders_piled_in_one_zone_are_spread_back_by_graceful_failover() {
    // After a failover shard 0 is led from zone b, which already leads shard 1.
    let mut fx = healthy();
    let a = fx.get('a');
    a.master = Some(id('d'));
    fx.get('a').slots = "";
    let d = fx.get('d');
    d.master = None;
    d.slots = "0-5461";
    let p = plan(&fx.observed());
    assert_eq!(
        failover_of(&p),
        (0, id('a'), FailoverKind::Graceful),
        "expected a graceful failover back to zone a"
    );
}

#[test]
fn the_spread_waits_until_the_masters_know_the_target_follows() {
    // The soak: RebalancingLeaders planned graceful failovers to a follower that most masters
    // did not yet know as one (its role still spreading), and each failed on the failover's
    // own precondition (FailoverFailed Events). Shard 0 is led from zone b after a failover.
    let mut fx = healthy();
    fx.get('a').master = Some(id('d'));
    fx.get('a').slots = "";
    fx.get('d').master = None;
    fx.get('d').slots = "0-5461";
    // Two of the three masters still list a as the empty master it was when it restarted.
    fx.unheard_roles = vec![(id('b'), id('a')), (id('c'), id('a'))];
    let p = plan(&fx.observed());
    assert!(
        !promotes(&p),
        "a failover the masters would not vote for: {p:?}"
    );
    // Once they know: the graceful failover back to zone a.
    fx.unheard_roles.clear();
    let p = plan(&fx.observed());
    assert_eq!(failover_of(&p), (0, id('a'), FailoverKind::Graceful));
}

#[test]
fn a_follower_that_cannot_start_is_replaced() {
    // Its container keeps crashing; the masters still see its bus link up (nothing confirms
    // its death yet), but the scheduler considers the member unhealthy and replaces it.
    let mut fx = healthy();
    let e = fx.get('e');
    e.pod = Some(PodState::CrashLoop);
    e.answers = false;
    let p = plan(&fx.observed());
    match &p.action {
        Action::DeletePods(pods) => {
            assert_eq!(pods.len(), 1);
            assert!(pods[0].0.contains("s1-m1"), "{pods:?}");
        }
        other => panic!("expected the crash-looping member removed, got {other:?}"),
    }
}

#[test]
fn a_free_claim_never_gives_a_second_member_the_ordinal_a_live_one_holds() {
    // The soak (seed 20261214, round 13, a zone partitioned mid-rollout): a claim of ordinal 2
    // left free by an earlier Pod was reused for a new member while another live member of
    // the shard already ran as ordinal 2, so two members of shard 2 had one identity. Here
    // shard 1's follower (ordinal 1) is gone, and a never-used claim of ordinal 0, the live
    // leader's, is free: the new member takes ordinal 1, not that claim.
    let news = created_beside_a_free_claim("data-s1-m0-old", 0);
    assert_eq!(news[0].shard, 1, "{news:?}");
    assert_eq!(news[0].member, 1, "{news:?}");
    assert_ne!(news[0].reuse_claim.as_deref(), Some("data-s1-m0-old"));
}

/// Shard 1's follower e is gone with its claim, and a claim `name` of ordinal `member` that no
/// Pod ever used is free: the one member the plan creates.
fn created_beside_a_free_claim(name: &str, member: usize) -> Vec<NewMember> {
    let mut fx = healthy().with_storage();
    fx.members.retain(|m| m.id != id('e'));
    fx.claims.retain(|c| c.name != "data-s1-m1");
    fx.claims.push(claim(name, (1, member), None, None));
    let p = plan(&fx.observed());
    match p.action {
        Action::CreateMembers(news) => {
            assert_eq!(news.len(), 1, "{news:?}");
            news
        }
        other => panic!("expected CreateMembers, got {other:?}"),
    }
}

#[test]
fn a_claim_left_by_a_pod_the_api_refused_is_reused_not_multiplied() {
    // e's Pod was deleted; a claim of its shard exists that no Pod ever used (the previous
    // attempt's Pod was refused after its claim was made): the new member takes that claim.
    let news = created_beside_a_free_claim("data-s1-m1-unused", 1);
    assert_eq!(news[0].reuse_claim.as_deref(), Some("data-s1-m1-unused"));
}

#[test]
fn a_held_claim_never_brings_back_an_ordinal_a_live_member_holds() {
    // The soak (seed 20261214, round 95, two SIGKILLs of a leader mid-reshard): shard 2's new
    // member took ordinal 1 while an older claim of ordinal 1 sat on another node, its identity
    // still listed by a member restarted from its volume; once the shard missed a member that
    // claim was revived as a second ordinal 1 and the shard had two members with one identity
    // label. Here shard 1's leader b is gone with its claim, e (ordinal 1) leads, and an old
    // claim of ordinal 1 on n-a3 records identity 9, which the cluster still lists.
    let mut fx = healthy().with_storage();
    fx.get('b').pod = None;
    fx.get('b').answers = false;
    fx.get('b').offset = u64::MAX;
    fx.claims.retain(|c| c.name != "data-s1-m0");
    fx.get('e').master = None;
    fx.get('e').slots = "5462-10922";
    fx.add('9', "n-a3", 1, 1, Some('e'));
    fx.get('9').pod = None;
    fx.get('9').answers = false;
    fx.claims
        .push(claim("data-s1-m1-old", (1, 1), Some("n-a3"), Some('9')));
    let obs = fx.observed();
    let p = plan(&obs);
    if let Action::CreateMembers(news) = &p.action {
        for n in news.iter().filter(|n| n.shard == 1) {
            assert_ne!(n.member, 1, "ordinal 1 is e's: {news:?}");
            assert_ne!(n.reuse_claim.as_deref(), Some("data-s1-m1-old"), "{news:?}");
        }
    }
    let f = crate::controller::plan::facts::Facts::of(&obs);
    assert!(
        f.held.iter().all(|c| c.name != "data-s1-m1-old"),
        "a claim whose ordinal a live member holds stands for no member: {:?}",
        f.held.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
}

/// Zone b cut off (soak seed 20261216, round 12): leader b of shard 1 and follower d of shard 0
/// sit on NotReady nodes, their Pods look alive, nothing reaches them; the replacements the
/// placement asked for were just created.
fn partitioned_with_replacements() -> Fx {
    let mut fx = healthy().with_storage();
    fx.not_ready.extend(["n-b1", "n-b2"]);
    fx.lose('b', Some(PodState::Running));
    fx.lose('d', Some(PodState::Running));
    // As in the soak, the leader's ordinal is not its shard's lowest (a rollout replaced it):
    // with no serving leader in sight, the lowest-ordinal member stands for the leader, and
    // the placement keeps it rather than failing over to it.
    fx.get('b').member = 2;
    fx.claims.retain(|c| c.name != "data-s1-m0");
    fx.claims
        .push(claim("data-s1-m2", (1, 2), Some("n-b1"), Some('b')));
    // Shard 1's replacement was just created: its Pod starts, its Redis does not answer yet.
    fx.add('7', "n-b3", 1, 0, None);
    fx.get('7').answers = false;
    fx.get('7').pod = Some(PodState::Down);
    fx.add('8', "n-c3", 0, 2, Some('a'));
    fx
}

#[test]
fn a_leader_behind_a_partition_keeps_its_pod_until_its_slots_move() {
    // Before the fix the planner deleted b's Pod because its node was NotReady: b still owned
    // shard 1's slots, its deletion took effect when the partition healed, and the shard's
    // only up-to-date copy beside its follower was gone (QuorumLost once two leaders went
    // that way). A partition is not a crash: b must stay until its slots have moved.
    let fx = partitioned_with_replacements();
    let step = members_step(&fx);
    let gone = deleted(step.as_ref());
    assert!(
        !gone.iter().any(|p| p == "p-s1-m2-b"),
        "the leader that still owns its slots was deleted: {step:?}"
    );
    // The follower behind the partition owns nothing: it may be replaced at once.
    assert!(gone.iter().any(|p| p == "p-s0-m1-d"), "{step:?}");

    // Redis's own election moved shard 1's slots to e: now b's Pod may go.
    let mut fx = fx;
    fx.get('b').slots = "";
    fx.get('e').master = None;
    fx.get('e').slots = "5462-10922";
    let step = members_step(&fx);
    assert!(
        deleted(step.as_ref()).iter().any(|p| p == "p-s1-m2-b"),
        "once its slots moved, the member behind the partition is replaced: {step:?}"
    );
}
