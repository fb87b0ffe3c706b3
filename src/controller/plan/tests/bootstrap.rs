//! Bootstrap: the formation (MEET → slots → followers → in sync) judged from what the members
//! report, on the one fixture. A fresh cluster is the healthy table with every member an
//! empty master; views are then edited the way Redis would answer mid-formation.

use super::fixture::*;
use crate::controller::observe::Observed;
use crate::controller::plan::facts::Facts;
use crate::controller::plan::facts::formation::Formation;
use crate::controller::plan::*;
use crate::redis::ids::SlotRange;

/// The healthy table's members, all empty masters (just created, nothing assigned).
fn fresh() -> Fx {
    let mut fx = healthy();
    for m in &mut fx.members {
        m.slots = "";
        m.master = None;
        m.offset = 0;
        m.keys = 0;
    }
    fx
}

fn formation(obs: &Observed) -> Formation {
    Facts::of(obs).formation.expect("a placement exists")
}

#[test]
fn strangers_are_introduced_first_through_the_seed() {
    let mut obs = fresh().observed();
    for n in &mut obs.view.nodes {
        n.peers.clear();
    }
    let p = plan(&obs);
    let Action::Meet(pairs) = &p.action else {
        panic!("expected MEET, got {p:?}");
    };
    // Every other member meets the seed (the first), and the seed meets each of them.
    let seed = obs.view.nodes[0].addr;
    assert_eq!(pairs.len(), 2 * (obs.view.nodes.len() - 1), "{pairs:?}");
    for n in obs.view.nodes.iter().skip(1) {
        assert!(
            pairs.iter().any(|x| x.on == n.addr && x.meet == seed),
            "{pairs:?}"
        );
        assert!(
            pairs.iter().any(|x| x.on == seed && x.meet == n.addr),
            "{pairs:?}"
        );
    }
    assert_eq!(p.reason, "JoiningMembers");
}

#[test]
fn unserved_slots_go_to_the_placement_s_leaders_then_the_followers_attach() {
    let obs = fresh().observed();
    let p = plan(&obs);
    let Action::AddSlots(assign) = &p.action else {
        panic!("expected AddSlots, got {p:?}");
    };
    // One even range per shard, each to one member of that shard.
    let ranges: Vec<Vec<SlotRange>> = assign.iter().map(|(_, _, r)| r.clone()).collect();
    assert_eq!(
        ranges,
        crate::redis::ids::even_ranges(3)
            .into_iter()
            .map(|r| vec![r])
            .collect::<Vec<_>>()
    );
    for (addr, shard, _) in assign {
        assert_eq!(obs.member_at(*addr).map(|m| m.shard), Some(*shard));
    }
    // Slots served by a, b, c; d, e, f still empty masters: they are attached.
    let mut fx = fresh();
    for (c, slots) in [('a', "0-5461"), ('b', "5462-10922"), ('c', "10923-16383")] {
        fx.get(c).slots = slots;
    }
    let p = plan(&fx.observed());
    let Action::Replicate(attach) = &p.action else {
        panic!("expected Replicate, got {p:?}");
    };
    let mut leaders: Vec<String> = attach.iter().map(|(_, _, l)| l.to_string()).collect();
    leaders.sort();
    assert_eq!(leaders, vec![id('a'), id('b'), id('c')]);
}

#[test]
fn ready_only_when_every_follower_is_in_sync_and_every_member_says_ok() {
    let mut behind = healthy();
    behind.get('d').offset = 0; // 1000 bytes behind: within the bar, still in sync
    assert!(plan(&behind.observed()).ready);
    let mut fx = healthy();
    fx.get('a').offset = 10 << 20; // 10 MiB ahead of its follower d
    let p = plan(&fx.observed());
    assert!(!p.ready, "{p:?}");
    assert!(matches!(formation(&fx.observed()), Formation::WaitSync(m) if m.contains("p-s0-m1")));
    let mut obs = healthy().observed();
    obs.view.nodes[2].info.state_ok = false;
    let p = plan(&obs);
    assert!(!p.ready && p.reason == "WaitingForSync", "{p:?}");
}

#[test]
fn a_member_that_does_not_answer_is_awaited() {
    let mut fx = fresh();
    fx.get('e').answers = false;
    let p = plan(&fx.observed());
    assert_eq!(
        (&p.action, p.reason),
        (&Action::Wait, "WaitingForMembers"),
        "{p:?}"
    );
    assert!(p.message.contains("p-s1-m1-e"), "{p:?}");
}

#[test]
fn slots_of_a_vanished_leader_are_never_given_to_an_empty_member() {
    // The answering members still list c, which no member answers as, as the owner of shard
    // 2's slots: the formation may not hand them to an empty member without c's data.
    let mut fx = fresh();
    for (ch, slots) in [('a', "0-5461"), ('b', "5462-10922"), ('c', "10923-16383")] {
        fx.get(ch).slots = slots;
    }
    fx.lose('c', None);
    match formation(&fx.observed()) {
        Formation::Blocked(m) => {
            assert!(m.contains("5461 slot(s)") && m.contains("cccccccc"), "{m}")
        }
        other => panic!("expected Blocked, got {other:?}"),
    }
}

#[test]
fn ready_waits_until_every_member_agrees_on_roles() {
    // a has not yet heard that d follows it.
    let mut obs = healthy().observed();
    let a = obs
        .view
        .nodes
        .iter_mut()
        .find(|n| n.id().as_str() == id('a'))
        .unwrap();
    let d = a
        .peers
        .iter_mut()
        .find(|e| e.id.as_str() == id('d'))
        .unwrap();
    d.flags.replica = false;
    d.flags.master = true;
    d.master_id = None;
    // Only a role is unheard: the formation says so (slots may move meanwhile), not Ready.
    assert!(matches!(formation(&obs), Formation::WaitRoles(m) if m.contains("gossip")));
    assert!(!plan(&obs).ready);
    assert!(plan(&healthy().observed()).ready);
}
