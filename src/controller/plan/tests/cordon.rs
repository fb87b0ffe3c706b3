//! Members on a cordoned node (`kubectl drain`): the placement moves them, the replacement is
//! created first, and the member on the cordoned node leaves only once its shard keeps the
//! followers it wants in sync without it.

use super::fixture::*;
use super::{deleted, members_step};
use crate::controller::plan::*;

/// Follower e (shard 1, of leader b) sits on the cordoned n-c2; its replacement 7 was created
/// on `node` as member `member` and answers.
fn drained_with_replacement() -> Fx {
    let mut fx = healthy();
    fx.cordoned.push("n-c2");
    let news = match members_step(&fx).map(|s| s.action) {
        Some(Action::CreateMembers(news)) => news,
        other => panic!("expected the replacement's creation first, got {other:?}"),
    };
    assert_eq!(news.len(), 1, "{news:?}");
    assert_eq!((news[0].shard, news[0].zone.as_str()), (1, "zone-c"));
    assert_ne!(news[0].node, "n-c2");
    let node: &'static str = news[0].node.clone().leak();
    fx.add('7', node, 1, news[0].member, Some('b'));
    fx
}

#[test]
fn a_follower_on_a_cordoned_node_leaves_only_once_its_replacement_is_in_sync() {
    // Before the fix, e was deleted in the pass after 7's creation, while 7 still synced: the
    // shard had no follower in sync (b could not acknowledge a `WAIT 1` write, and a crash of
    // b lost what it alone held).
    let mut fx = drained_with_replacement();
    fx.unlinked.push(id('7'));
    let step = members_step(&fx);
    assert!(
        !deleted(step.as_ref()).contains(&"p-s1-m1-e".to_string()),
        "the only follower in sync left while its replacement synced: {step:?}"
    );
    // 7 in sync: e goes.
    fx.unlinked.clear();
    let step = members_step(&fx);
    assert_eq!(
        deleted(step.as_ref()),
        vec!["p-s1-m1-e".to_string()],
        "{step:?}"
    );
}

#[test]
fn a_follower_on_a_cordoned_node_waits_for_a_replacement_that_does_not_answer_yet() {
    let mut fx = drained_with_replacement();
    let g = fx.get('7');
    g.answers = false;
    g.pod = Some(PodState::Down);
    let step = members_step(&fx);
    assert!(
        !deleted(step.as_ref()).contains(&"p-s1-m1-e".to_string()),
        "the only follower in sync left before its replacement started: {step:?}"
    );
}

#[test]
fn fewer_followers_per_leader_still_removes_one_in_sync() {
    // 3×2 -> 3×1: each shard keeps one follower in sync, so the extra ones go at once.
    let mut fx = sized(3, 2);
    fx.followers = 1;
    let step = members_step(&fx);
    assert_eq!(deleted(step.as_ref()).len(), 3, "{step:?}");
}
