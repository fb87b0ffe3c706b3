//! The recovery concern: FORCE after a confirmed death, graceful handover of a deleted leader,
//! re-pointing followers, forgetting identities gone for good.

use super::fixture::*;
use crate::controller::act::Executed;
use crate::controller::plan::*;
use crate::controller::status::{conditions, types};

#[test]
fn leader_being_deleted_is_handed_over_gracefully_after_its_hook_had_its_chance() {
    let mut fx = healthy();
    fx.get('a').pod = Some(PodState::Deleting(1));
    let plan1 = plan(&fx.observed());
    assert!(
        !promotes(&plan1),
        "the preStop hook hands over first: {plan1:?}"
    );
    fx.get('a').pod = Some(PodState::Deleting(6));
    let plan2 = plan(&fx.observed());
    assert_eq!(
        plan2.action,
        Action::Failover {
            shard: 0,
            to: id('d').parse().unwrap(),
            kind: FailoverKind::Graceful,
            reason: plan_reason(&plan2),
        }
    );
}

#[test]
fn crashed_leader_confirmed_by_kubernetes_and_the_majority_is_forced_over() {
    let mut fx = healthy();
    fx.lose('a', Some(PodState::Down));
    let p0 = plan(&fx.observed());
    match &p0.action {
        Action::Failover {
            shard, to, kind, ..
        } => {
            assert_eq!(
                (*shard, to.as_str(), *kind),
                (0, id('d').as_str(), FailoverKind::Force)
            );
        }
        other => panic!("expected FORCE failover, got {other:?}"),
    }
    let c = conditions(&p0, &Executed::Nothing);
    let degraded = cond(&c, types::DEGRADED);
    assert!(
        degraded.status && degraded.reason == "LeaderLost",
        "{degraded:?}"
    );
}

#[test]
fn unreachable_leader_is_not_forced_without_kubernetes_and_majority_agreeing() {
    // Only the operator cannot reach it (S10): its Pod runs, the masters see it connected.
    let mut fx = healthy();
    fx.get('a').answers = false;
    let p = plan(&fx.observed());
    assert_eq!(p.action, Action::Wait, "{p:?}");
    // Kubernetes says it is down, but only one of the two other masters lost its link.
    fx.get('a').pod = Some(PodState::Down);
    fx.link_down.push((id('b'), id('a')));
    let p = plan(&fx.observed());
    assert_eq!(p.action, Action::Wait, "{p:?}");
    // Both masters agree: now it is forced.
    fx.link_down.push((id('c'), id('a')));
    let p = plan(&fx.observed());
    assert!(
        matches!(
            p.action,
            Action::Failover {
                kind: FailoverKind::Force,
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn a_follower_that_never_synced_is_never_promoted() {
    let mut fx = healthy();
    fx.lose('a', Some(PodState::Down));
    fx.get('d').offset = 0;
    let p = plan(&fx.observed());
    assert_eq!(p.action, Action::Wait, "{p:?}");
    assert!(p.problems.iter().any(|x| x.reason == "LeaderLost"), "{p:?}");
}

#[test]
fn leader_held_by_the_start_gate_is_forced_over() {
    // Restarted without its data (S4): the container runs the gate, Redis does not answer.
    let mut fx = healthy();
    fx.lose('a', Some(PodState::Down));
    let p = plan(&fx.observed());
    assert!(
        matches!(p.action, Action::Failover { kind: FailoverKind::Force, ref to, .. } if to.as_str() == id('d')),
        "{p:?}"
    );
}

#[test]
fn redis_already_promoted_the_follower_then_the_old_identity_is_forgotten() {
    let mut fx = healthy();
    fx.lose('a', None);
    fx.get('a').slots = "";
    let d = fx.get('d');
    d.master = None;
    d.slots = "0-5461";
    let p = plan(&fx.observed());
    match &p.action {
        Action::Forget(ids) => assert_eq!(ids[0].0.as_str(), id('a')),
        other => panic!("expected Forget, got {other:?}"),
    }
}

#[test]
fn promoted_leader_with_its_volume_comes_back_instead_of_being_forgotten() {
    let mut fx = healthy().with_storage();
    fx.lose('a', None);
    fx.get('a').slots = "";
    let d = fx.get('d');
    d.master = None;
    d.slots = "0-5461";
    let p = plan(&fx.observed());
    match &p.action {
        Action::CreateMembers(news) => {
            assert_eq!(news[0].node, "n-a1");
            assert_eq!(news[0].reuse_claim.as_deref(), Some("data-s0-m0"));
        }
        other => panic!("expected the member recreated on its volume, got {other:?}"),
    }
}

#[test]
fn every_pod_deleted_comes_back_on_its_volumes_then_meets_at_new_addresses() {
    let mut fx = healthy().with_storage();
    for m in &mut fx.members {
        m.pod = None;
        m.answers = false;
    }
    let p = plan(&fx.observed());
    match &p.action {
        Action::CreateMembers(news) => {
            assert_eq!(news.len(), 6);
            assert!(news.iter().all(|n| n.reuse_claim.is_some()), "{news:?}");
        }
        other => panic!("expected 6 members recreated, got {other:?}"),
    }
    // Back with new IPs; each still knows the others at their old addresses.
    let mut fx2 = healthy().with_storage();
    let obs_old = fx2.observed();
    for (i, m) in fx2.members.iter_mut().enumerate() {
        m.ip = format!("10.0.1.{}", i + 1);
    }
    let mut obs = fx2.observed();
    // Each member's peers keep their old addresses: rebuild the views from the old ones,
    // only each node's own address changed.
    for (new, old) in obs.view.nodes.iter_mut().zip(obs_old.view.nodes.iter()) {
        new.peers = old.peers.clone();
    }
    let p = plan(&obs);
    assert!(
        matches!(&p.action, Action::Meet(pairs) if !pairs.is_empty()),
        "{p:?}"
    );
}

#[test]
fn combined_loss_forces_the_leader_first_then_replaces_the_follower() {
    let mut fx = healthy().with_storage();
    fx.lose('e', None);
    fx.lose('c', Some(PodState::Down));
    let p = plan(&fx.observed());
    assert_eq!(
        failover_of(&p),
        (2, id('f'), FailoverKind::Force),
        "expected FORCE for shard 2 first"
    );
}

#[test]
fn survivor_chained_to_a_dead_leader_is_promoted() {
    // Shard 0: leader a gone; d follows a; a new member 9 (empty, never synced) follows d.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.add('9', "n-c3", 0, 2, Some('d'));
    fx.get('9').offset = 0;
    let p = plan(&fx.observed());
    assert!(
        matches!(&p.action, Action::Failover { kind: FailoverKind::Force, to, .. } if to.as_str() == id('d')),
        "{p:?}"
    );
}

#[test]
fn redis_s_own_election_is_not_raced_until_it_had_its_time() {
    // The node died; the cluster already flagged it FAIL: Redis is electing d itself.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.failed.push(id('a'));
    fx.link_down_since = 6;
    let p = plan(&fx.observed());
    // No FORCE while Redis elects: the members concern re-creates the deleted Pod meanwhile.
    assert!(
        matches!(&p.action, Action::CreateMembers(news) if news.len() == 1 && news[0].shard == 0),
        "{p:?}"
    );
    // 2 x node timeout + 3 s later nobody was promoted: the operator forces it.
    fx.link_down_since = 14;
    let p = plan(&fx.observed());
    assert!(
        matches!(
            p.action,
            Action::Failover {
                kind: FailoverKind::Force,
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn an_only_follower_whose_election_stalled_takes_over_without_a_vote() {
    // a's node died and the voting masters flag it FAIL. d, the shard's only follower, stood
    // in the same epoch as other shards' followers and the votes split: Redis 7.0 lets it
    // (or a FORCE) stand again only 4 × node timeout after that attempt.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.failed.push(id('a'));
    fx.link_down_since = 8;
    let p = plan(&fx.observed());
    assert!(
        !promotes(&p),
        "within 1.5 × node timeout + 1.5 s its own election may still win: {p:?}"
    );
    fx.link_down_since = 9;
    let p = plan(&fx.observed());
    assert_eq!(stalled_of(&p), vec![(0, id('d'))], "{p:?}");
    assert!(plan_reason(&p).contains("split vote"), "{p:?}");
}

#[test]
fn the_stalled_elections_of_a_crashed_zone_are_promoted_in_one_step() {
    // A 5×1: shards 0 and 3 lead from zone-a, which crashed. The majority (3 of 5 voting
    // masters) flags both leaders FAIL and both followers' elections were denied: one step
    // takes over both, rather than one pass each.
    let mut fx = sized(5, 1);
    let lost = [numbered_id(1), numbered_id(7)];
    for m in fx.members.iter_mut().filter(|m| lost.contains(&m.id)) {
        m.pod = None;
        m.answers = false;
    }
    let observers: Vec<String> = fx.members.iter().map(|m| m.id.clone()).collect();
    for leader in &lost {
        for o in observers.iter().filter(|o| *o != leader) {
            fx.link_down.push((o.clone(), leader.clone()));
        }
        fx.failed.push(leader.clone());
    }
    fx.link_down_since = 8;
    assert!(!promotes(&plan(&fx.observed())));
    fx.link_down_since = 9;
    let p = plan(&fx.observed());
    assert_eq!(
        stalled_of(&p),
        vec![(0, numbered_id(2)), (3, numbered_id(8))],
        "{p:?}"
    );
    assert_eq!(p.reason, "FailingOver");
    assert!(p.message.contains("promoting 2 followers"), "{p:?}");
    // Once the first is promoted, the second goes on its own in the next pass.
    let first = fx
        .members
        .iter()
        .position(|m| m.id == numbered_id(2))
        .unwrap();
    fx.members[first].master = None;
    fx.members[first].slots = fx.members[0].slots;
    fx.members[0].slots = "";
    let p = plan(&fx.observed());
    assert_eq!(stalled_of(&p), vec![(3, numbered_id(8))], "{p:?}");
}

#[test]
fn a_stalled_election_is_timed_by_the_last_word_from_a_black_holed_leader() {
    // a's node died silently: d's link stays "up" until repl-timeout (60 s), and only its
    // last I/O tells how long a has been silent.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.failed.push(id('a'));
    fx.black_holed = true;
    fx.link_down_since = 8;
    let p = plan(&fx.observed());
    assert!(!promotes(&p), "{p:?}");
    fx.link_down_since = 9;
    let p = plan(&fx.observed());
    assert_eq!(stalled_of(&p), vec![(0, id('d'))], "{p:?}");
    // 2 × node timeout + 3 s of silence, confirmed by Kubernetes: FORCE, as before (its
    // pod is gone), which keeps an election.
    fx.link_down_since = 13;
    let p = plan(&fx.observed());
    assert_eq!(failover_of(&p), (0, id('d'), FailoverKind::Force), "{p:?}");
}

#[test]
fn a_stalled_election_does_not_wait_for_kubernetes() {
    // a's Pod looks alive to Kubernetes (its node's lease has not expired: 40 s by default),
    // but the voting majority flags it FAIL, which is what Redis's own election acts on.
    let mut fx = healthy();
    fx.get('a').answers = false;
    fx.failed.push(id('a'));
    fx.link_down_since = 9;
    let p = plan(&fx.observed());
    assert_eq!(stalled_of(&p), vec![(0, id('d'))], "{p:?}");
    // Without the majority's FAIL nothing is promoted: no FORCE without Kubernetes either.
    fx.failed.clear();
    fx.link_down
        .extend([(id('b'), id('a')), (id('c'), id('a'))]);
    fx.link_down_since = 30;
    let p = plan(&fx.observed());
    assert!(!promotes(&p), "{p:?}");
}

#[test]
fn no_takeover_beside_another_follower_that_could_stand() {
    // The same stall, but shard 0 has a second follower that answers: it may be standing
    // now, and a TAKEOVER beside it would be two promotions for one shard. Only the FORCE
    // (an election) after the grace.
    let mut fx = healthy();
    fx.add('7', "n-c3", 0, 2, Some('a'));
    fx.lose('a', None);
    fx.failed.push(id('a'));
    fx.link_down_since = 10;
    let p = plan(&fx.observed());
    assert!(!promotes(&p), "{p:?}");
    fx.link_down_since = 14;
    let p = plan(&fx.observed());
    assert_eq!(failover_of(&p).2, FailoverKind::Force, "{p:?}");
}

#[test]
fn a_returning_volume_whose_shard_was_made_whole_elsewhere_is_forgotten() {
    // Follower e's node came back after e was re-placed (as 7 on n-c3): its volume is intact
    // but its shard needs nothing more, so its identity is forgotten, not revived.
    let mut fx = healthy().with_storage();
    fx.lose('e', None);
    fx.add('7', "n-c3", 1, 2, Some('b'));
    fx.storage = false; // the fixture's pods mount no claims; the PVCs stay listed
    let p = plan(&fx.observed());
    match &p.action {
        Action::Forget(ids) => assert_eq!(ids[0].0.as_str(), id('e')),
        other => panic!("expected Forget, got {other:?}"),
    }
}

/// Found by the soak: a leader whose volume filled up refused writes (MISCONF) for 33 s while
/// its follower, in sync and writing, stood by. It hands over gracefully; the spread does not
/// hand the lead back while its disk fails; nothing moves when the follower's disk fails too.
#[test]
fn leader_that_cannot_write_its_disk_hands_over_to_a_follower_that_can() {
    let mut fx = healthy();
    fx.disk_failing.push(id('a'));
    let p = plan(&fx.observed());
    assert_eq!(
        p.action,
        Action::Failover {
            shard: 0,
            to: id('d').parse().unwrap(),
            kind: FailoverKind::Graceful,
            reason: plan_reason(&p),
        }
    );
    assert!(
        plan_reason(&p).contains("cannot write to its disk"),
        "{p:?}"
    );
    let c = conditions(&p, &Executed::Nothing);
    let degraded = cond(&c, types::DEGRADED);
    assert!(
        degraded.status && degraded.reason == "PersistenceFailing",
        "{degraded:?}"
    );
    // After the handover: d leads shard 0, a follows it with its disk still failing. The
    // placement wants shard 0's lead back in zone-a (on a): not while a cannot write.
    let (a, d) = (fx.get('a').clone(), fx.get('d').clone());
    *fx.get('d') = M {
        slots: a.slots,
        master: None,
        member: d.member,
        ..d.clone()
    };
    *fx.get('a') = M {
        slots: "",
        master: Some(d.id.clone()),
        ..a.clone()
    };
    let p = plan(&fx.observed());
    assert!(
        !promotes(&p),
        "the lead must not go back to a member that cannot write: {p:?}"
    );
    // Both members of the shard failing: no handover would help; it is reported only.
    let mut fx = healthy();
    fx.disk_failing.extend([id('a'), id('d')]);
    let p = plan(&fx.observed());
    assert!(!promotes(&p), "{p:?}");
    let c = conditions(&p, &Executed::Nothing);
    assert_eq!(cond(&c, types::DEGRADED).reason, "PersistenceFailing");
    // Not Ready, and Ready says why: never Ready=False "ClusterReady" "all slots served, every
    // follower in sync" (seen in the soak with StaleIdentity).
    let r = cond(&c, types::READY);
    assert!(!r.status, "{r:?}");
    assert_eq!(r.reason, "PersistenceFailing", "{r:?}");
}

#[test]
fn open_slots_toward_a_lost_leader_do_not_block_its_recovery() {
    // Found by the soak: leader c was deleted while slot 5461 was migrating from a to it. The
    // repair cannot close that slot while c does not answer (c may hold some of its keys), and
    // asking it first kept the recovery that brings c's shard back from ever running.
    let mut fx = healthy();
    let migrating: &'static str =
        Box::leak(format!("0-5461 [5461->-{}]", id('c')).into_boxed_str());
    fx.get('a').slots = migrating;
    let open = fx.observed();
    assert_eq!(
        open.view.open_slots().len(),
        1,
        "the fixture opens one slot"
    );
    assert_eq!(
        plan(&open).action,
        Action::FixOpenSlots,
        "every master answers: the repair goes first"
    );
    fx.lose('c', Some(PodState::Down));
    let p = plan(&fx.observed());
    assert_eq!(
        failover_of(&p),
        (2, id('f'), FailoverKind::Force),
        "the lost leader's shard is recovered, the open slot waits: {p:?}"
    );
    // Once c's shard answers again (f promoted and c gone from every view), the repair runs.
    let mut fx = healthy();
    fx.get('a').slots = migrating;
    let (c, f) = (fx.get('c').clone(), fx.get('f').clone());
    *fx.get('f') = M {
        slots: c.slots,
        master: None,
        ..f
    };
    fx.get('c').offset = u64::MAX;
    fx.get('c').answers = false;
    fx.get('c').pod = None;
    let p = plan(&fx.observed());
    assert_eq!(p.action, Action::FixOpenSlots, "{p:?}");
}
