use super::*;
use crate::backup::fixture::{N, id, three_by_one, view};

#[test]
fn shards_are_in_slot_order_with_their_leaders_offsets() {
    let v = view(&three_by_one(100, true));
    assert_eq!(not_startable(&v), None);
    let shards = shards_at_start(&v);
    assert_eq!(shards.len(), 3);
    assert_eq!(slots_text(&shards[1].slots), "5461-10922");
    assert_eq!(shards[1].leader.as_str(), id('b'));
    assert_eq!(shards[2].leader_offset, 300);
    assert_eq!(
        shards.iter().map(|s| s.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

#[test]
fn a_cluster_missing_slots_cannot_start() {
    let mut nodes = three_by_one(100, true);
    nodes[2].slots = "10923-16000";
    let v = view(&nodes);
    assert!(not_startable(&v).unwrap().contains("not served"));
}

#[test]
fn the_source_is_an_in_sync_follower_never_the_leader_while_followers_are_wanted() {
    let v = view(&three_by_one(100, true));
    let shards = shards_at_start(&v);
    match source_for(&v, &shards[0], 1) {
        Source::Follower(f) => assert_eq!(f.id().as_str(), id('d')),
        other => panic!("{other:?}"),
    }
    // Its link down: wait, do not fork the leader.
    let v = view(&three_by_one(100, false));
    assert!(
        matches!(source_for(&v, &shards[0], 1), Source::Wait(m) if m.contains("no in-sync follower"))
    );
}

#[test]
fn without_followers_the_leader_is_the_source() {
    let nodes: Vec<N> = three_by_one(100, true).into_iter().take(3).collect();
    let v = view(&nodes);
    let shards = shards_at_start(&v);
    assert!(
        matches!(source_for(&v, &shards[2], 0), Source::Leader(l) if l.id().as_str() == id('c'))
    );
}

#[test]
fn after_a_failover_the_new_leaders_follower_is_the_source() {
    let before = view(&three_by_one(100, true));
    let shards = shards_at_start(&before);
    // d took over shard 0; a came back as its follower.
    let mut nodes = three_by_one(100, true);
    nodes[0] = N {
        id: 'a',
        ip: 1,
        master: Some('d'),
        slots: "",
        offset: 150,
        link_up: true,
    };
    nodes[3] = N {
        id: 'd',
        ip: 4,
        master: None,
        slots: "0-5460",
        offset: 150,
        link_up: true,
    };
    let after = view(&nodes);
    match source_for(&after, &shards[0], 1) {
        Source::Follower(f) => assert_eq!(f.id().as_str(), id('a')),
        other => panic!("{other:?}"),
    }
}

#[test]
fn slots_moved_since_the_start_fail_the_backup() {
    let before = view(&three_by_one(100, true));
    let shards = shards_at_start(&before);
    let mut nodes = three_by_one(100, true);
    nodes[0].slots = "0-5000";
    nodes[1].slots = "5001-10922";
    let after = view(&nodes);
    assert!(
        matches!(source_for(&after, &shards[0], 1), Source::SlotsMoved(m) if m.contains("0-5460") && m.contains("0-5000"))
    );
    assert!(matches!(
        source_for(&after, &shards[1], 1),
        Source::SlotsMoved(_)
    ));
    assert!(matches!(
        source_for(&after, &shards[2], 1),
        Source::Follower(_)
    ));
}

#[test]
fn slots_text_round_trips() {
    for text in ["0-5460", "0-10,12,100-200", "16383"] {
        assert_eq!(slots_text(&parse_slots(text).unwrap()), text);
    }
    assert_eq!(parse_slots("5-1"), None);
    assert_eq!(parse_slots("x"), None);
}
