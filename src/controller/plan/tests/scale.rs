//! Scaling: table tests on the plan fixture (`fixture.rs`).

use redis_scheduler::Request;

use super::fixture::{Fx, cond, healthy, id};
use crate::controller::act::Executed;
use crate::controller::observe::Observed;
use crate::controller::plan::*;
use crate::controller::status::{conditions, reshard_status, types};
use crate::redis::model::MemoryInfo;

/// `fx` asked for `leaders` shards.
fn observed(fx: &Fx, leaders: usize) -> Observed {
    let mut obs = fx.observed();
    obs.shape.leaders = leaders;
    obs.request = Request::new(u32::try_from(leaders).unwrap(), 1);
    obs
}

/// A fourth shard: leader 7 on n-a3, follower 8 on n-b3; `slots` for 7 (empty: a new shard).
fn with_fourth_shard(mut fx: Fx, slots: &'static str) -> Fx {
    fx.add('7', "n-a3", 3, 0, None);
    fx.add('8', "n-b3", 3, 1, Some('7'));
    fx.get('7').slots = slots;
    fx.get('7').offset = 1000;
    fx.get('7').keys = if slots.is_empty() { 0 } else { 100 };
    fx
}

fn reshard_moves(plan: &Plan) -> &[crate::redis::ops::distribution::SlotMove] {
    match &plan.action {
        Action::Reshard { moves, .. } => moves,
        other => panic!("expected a reshard, got {other:?} ({plan:?})"),
    }
}

#[test]
fn scale_out_moves_slots_to_the_new_shard_once_it_is_joined_and_synced() {
    let fx = with_fourth_shard(healthy(), "");
    let plan = crate::controller::plan::plan(&observed(&fx, 4));
    let moves = reshard_moves(&plan);
    assert_eq!(moves.len(), scale::BATCH_SLOTS);
    assert!(moves.iter().all(|m| m.to.as_str() == id('7')), "{moves:?}");
    let r = plan.reshard.clone().unwrap();
    assert_eq!(r.remaining, 4096);
    // Ready (the cluster serves) and Progressing while slots move.
    let c = conditions(&plan, &Executed::Nothing);
    assert!(cond(&c, types::READY).status);
    let p = cond(&c, types::PROGRESSING);
    assert_eq!((p.status, p.reason.as_str()), (true, "Resharding"), "{p:?}");
    // The new shard's follower not in sync yet: no slot moves.
    let mut fx = with_fourth_shard(healthy(), "");
    fx.get('8').offset = 0;
    fx.get('8').keys = 0;
    fx.get('7').offset = 10_000_000;
    let plan = crate::controller::plan::plan(&observed(&fx, 4));
    assert!(!matches!(plan.action, Action::Reshard { .. }), "{plan:?}");
}

#[test]
fn scale_out_moves_slots_while_a_master_has_not_yet_heard_the_new_follower_follows() {
    // Issue 23: the new shard's follower 8 attached and synced; two of the masters still list
    // it as the empty master it joined as (its pings will tell them within node-timeout/2).
    // Every member agrees on every slot and every leader: slots move now, not ≈2.5 s later.
    let mut fx = with_fourth_shard(healthy(), "");
    fx.unheard_roles = vec![(id('a'), id('8')), (id('b'), id('8'))];
    let plan = crate::controller::plan::plan(&observed(&fx, 4));
    let moves = reshard_moves(&plan);
    assert!(moves.iter().all(|m| m.to.as_str() == id('7')), "{moves:?}");
    // Not Ready meanwhile (what Ready=True claims is not true yet); the reshard is not
    // reported blocked while it moves.
    assert!(!plan.ready, "{plan:?}");
    assert_eq!(plan.reshard.as_ref().and_then(|r| r.blocked.clone()), None);

    // The same, but a master has not heard that the new master holds slots already (the
    // last batch's SETSLOT): not only a role, so nothing moves until every member agrees.
    let mut fx = with_fourth_shard(healthy(), "0-99");
    fx.get('a').slots = "100-5461";
    fx.unheard_roles = vec![(id('b'), id('8')), (id('c'), id('7'))];
    let plan = crate::controller::plan::plan(&observed(&fx, 4));
    assert!(
        !matches!(plan.action, Action::Reshard { .. }),
        "slots moved while a master disagreed about them: {plan:?}"
    );
}

#[test]
fn scale_out_creates_the_new_shard_first() {
    let plan = crate::controller::plan::plan(&observed(&healthy(), 4));
    match &plan.action {
        Action::CreateMembers(news) => assert!(news.iter().all(|n| n.shard == 3), "{news:?}"),
        other => panic!("expected the new shard's members, got {other:?}"),
    }
}

#[test]
fn scale_in_drains_the_highest_shard_and_keeps_its_members_until_drained() {
    let mut fx = with_fourth_shard(healthy(), "12288-16383");
    fx.get('a').slots = "0-4095";
    fx.get('b').slots = "4096-8191";
    fx.get('c').slots = "8192-12287";
    let plan = crate::controller::plan::plan(&observed(&fx, 3));
    let moves = reshard_moves(&plan);
    assert!(
        moves
            .iter()
            .all(|m| m.from.as_ref().map(|f| f.as_str().to_string()) == Some(id('7'))),
        "{moves:?}"
    );
    // Drained: slots and keys gone from 7; the moment is recorded on its shard's Pods first,
    // and once its grace period is over its shard's members are removed (plan/tests/drain.rs).
    fx.get('7').slots = "";
    fx.get('7').keys = 0;
    fx.get('a').slots = "0-5461";
    fx.get('b').slots = "5462-10922";
    fx.get('c').slots = "10923-16383";
    let plan = crate::controller::plan::plan(&observed(&fx, 3));
    assert!(
        matches!(plan.action, Action::MarkDrained { .. }),
        "{plan:?}"
    );
    let since = jiff::Timestamp::from_second(1_000_000 - 30).unwrap();
    for c in ['7', '8'] {
        fx.get(c).annotations.insert(
            crate::controller::labels::DRAINED_AT_ANNOTATION,
            since.to_string(),
        );
    }
    let plan = crate::controller::plan::plan(&observed(&fx, 3));
    match &plan.action {
        Action::DeletePods(pods) => {
            let names: Vec<&str> = pods.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(names, vec!["p-s3-m0-7", "p-s3-m1-8"], "{plan:?}");
        }
        other => panic!("expected the drained shard removed, got {other:?}"),
    }
}

#[test]
fn scale_in_is_refused_before_any_move_when_the_rest_cannot_hold_the_data() {
    let mut fx = with_fourth_shard(healthy(), "12288-16383");
    fx.get('a').slots = "0-4095";
    fx.get('b').slots = "4096-8191";
    fx.get('c').slots = "8192-12287";
    let mut obs = observed(&fx, 3);
    for n in &mut obs.view.nodes {
        n.memory = MemoryInfo {
            used: 90 << 20,
            max: 100 << 20,
        };
    }
    let plan = crate::controller::plan::plan(&obs);
    assert_eq!(plan.action, Action::Wait, "{plan:?}");
    assert_eq!(plan.reason, "ScaleInRefused");
    let c = conditions(&plan, &Executed::Nothing);
    let p = cond(&c, types::PROGRESSING);
    assert_eq!((p.status, p.reason.as_str()), (false, "ScaleInRefused"));
    assert!(cond(&c, types::DEGRADED).status);

    // With room, it proceeds.
    for n in &mut obs.view.nodes {
        n.memory = MemoryInfo {
            used: 10 << 20,
            max: 100 << 20,
        };
    }
    assert!(matches!(
        crate::controller::plan::plan(&obs).action,
        Action::Reshard { .. }
    ));
}

#[test]
fn reshard_progress_keeps_its_total_across_batches() {
    let begin = scale::Reshard {
        to_leaders: 4,
        remaining: 4096,
        blocked: None,
    };
    let done = Executed::Resharded {
        message: String::new(),
        slots: 1024,
        keys: 500,
    };
    let s1 = reshard_status(None, Some(&begin), &done).unwrap();
    assert_eq!(
        (s1.slots_to_move, s1.slots_moved, s1.keys_moved),
        (4096, 1024, 500)
    );
    assert_eq!(s1.progress, "25%");
    let next = scale::Reshard {
        remaining: 3072,
        ..begin.clone()
    };
    let s2 = reshard_status(Some(&s1), Some(&next), &done).unwrap();
    assert_eq!(
        (s2.slots_to_move, s2.slots_moved, s2.keys_moved),
        (4096, 2048, 1000)
    );
    let s3 = reshard_status(Some(&s2), None, &Executed::Nothing).unwrap();
    assert_eq!((s3.slots_moved, s3.progress.as_str()), (4096, "100%"));
}

#[test]
fn removed_members_of_a_drained_shard_are_forgotten_at_once() {
    let mut fx = with_fourth_shard(healthy(), "");
    // Their Pods deleted by the members planner a moment ago (still terminating, redis
    // stopped): no master reports them unreachable yet.
    for c in ['7', '8'] {
        let m = fx.get(c);
        m.pod = Some(super::fixture::PodState::Deleting(1));
        m.answers = false;
    }
    let plan = crate::controller::plan::plan(&observed(&fx, 3));
    match &plan.action {
        Action::Forget(ids) => {
            let mut ids: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
            ids.sort_unstable();
            assert_eq!(ids, vec![id('7').as_str(), id('8').as_str()]);
        }
        other => panic!("expected the removed shard forgotten, got {other:?}"),
    }
    // A member of a wanted shard that stops answering is not forgotten that fast.
    let mut fx = healthy();
    let e = fx.get('e');
    e.pod = None;
    e.answers = false;
    assert!(!matches!(
        crate::controller::plan::plan(&fx.observed()).action,
        Action::Forget(_)
    ));
}

/// Ready means every slot served with the asked redundancy: a planned scale-out's new shard
/// joining is Reconciling, not "not Ready" nor Degraded (alerts must not fire on it).
#[test]
fn scale_out_stays_ready_and_not_degraded_while_the_new_shard_joins() {
    let states = |plan: &Plan| {
        let c = conditions(plan, &Executed::Nothing);
        (
            cond(&c, types::READY).status,
            cond(&c, types::DEGRADED).status,
        )
    };
    // Its Pods being created.
    let plan = crate::controller::plan::plan(&observed(&healthy(), 4));
    assert!(
        matches!(plan.action, Action::CreateMembers(_)),
        "{}",
        plan.reason
    );
    assert_eq!(states(&plan), (true, false), "{}", plan.reason);
    // Its follower still syncing.
    let mut fx = with_fourth_shard(healthy(), "");
    fx.get('8').offset = 0;
    fx.get('8').keys = 0;
    fx.get('7').offset = 10_000_000;
    let plan = crate::controller::plan::plan(&observed(&fx, 4));
    assert_eq!(states(&plan), (true, false), "{}", plan.reason);
    // A serving shard's follower lost at the same time: not the asked redundancy.
    let mut fx = with_fourth_shard(healthy(), "");
    fx.lose('e', None);
    let plan = crate::controller::plan::plan(&observed(&fx, 4));
    assert!(!states(&plan).0, "{}", plan.reason);
    // A new cluster (no slot served yet) is not Ready.
    let mut fx = healthy();
    for c in ['a', 'b', 'c'] {
        fx.get(c).slots = "";
    }
    let plan = crate::controller::plan::plan(&observed(&fx, 3));
    assert!(!states(&plan).0, "{}", plan.reason);
}
