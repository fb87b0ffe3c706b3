//! How far the cluster is from formed: MEET → slots → followers → in sync, judged from what
//! the members report now, so a crash between steps (of the operator or of a member) just
//! means the next reconcile picks up where the cluster is. The bootstrap concern acts on the
//! steps; the assessment reads the waits (and, at [`Formation::Done`], readiness).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::shard::in_sync;
use crate::controller::observe::redis::NodeView;
use crate::redis::ids::{NodeId, SLOT_COUNT, SlotRange, even_ranges, ranges_from_slots};
use crate::redis::model::{conflicting_slots_of, slot_owners_of};
use crate::redis::ops::meet::{MeetPair, pairs_to_introduce};

/// A member as the planner needs it.
#[derive(Debug, Clone)]
pub struct Seat<'a> {
    /// Pod name (for messages and events).
    pub pod: &'a str,
    /// What the member reports, if it answered.
    pub view: Option<&'a NodeView>,
}

/// One shard: its members and which of them should lead when nobody does yet.
#[derive(Debug, Clone)]
pub struct ShardSeats<'a> {
    /// Shard index.
    pub index: usize,
    /// Members of the shard.
    pub seats: Vec<Seat<'a>>,
    /// Index into `seats` of the member placement wants as leader.
    pub preferred_leader: Option<usize>,
}

/// How far the cluster is from formed: the next thing to do, or what it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formation {
    /// Some members are not answering yet.
    WaitMembers(String),
    /// Introduce members to each other.
    Meet(Vec<MeetPair>),
    /// Handshakes are still in flight, or not every member lists every other yet: the pairs
    /// gossip has not introduced yet are introduced directly.
    WaitGossip(String, Vec<MeetPair>),
    /// Assign slot ranges to shard leaders: (leader address, shard, ranges).
    AddSlots(Vec<(SocketAddr, usize, Vec<SlotRange>)>),
    /// Attach followers: (follower address, shard, leader id).
    Replicate(Vec<(SocketAddr, usize, NodeId)>),
    /// Followers are attached but still syncing, or the cluster state is not ok yet.
    WaitSync(String),
    /// Formed but for gossip: every member agrees on every slot and every leader, and some
    /// have not yet heard that a follower holding no slot follows its leader. Each member
    /// pings every other within node-timeout/2 and its header carries its role, so this ends
    /// by itself, before a failure could be confirmed and a failover need the masters' votes:
    /// slots may move meanwhile ([`super::health::Health::settling`]), nothing else.
    WaitRoles(String),
    /// Something only a human (or a later recovery step) should resolve.
    Blocked(String),
    /// Every slot is served and every follower is in sync.
    Done,
}

/// Decides the next step from the members' reports: every member answers, everyone knows
/// everyone, every slot has a leader, every follower follows and is in sync, and every member
/// agrees with the others — each phase only once the one before is done.
pub fn next_step(shards: &[ShardSeats<'_>]) -> Formation {
    let all: Vec<&Seat<'_>> = shards.iter().flat_map(|s| s.seats.iter()).collect();
    let missing: Vec<&str> = all
        .iter()
        .filter(|s| s.view.is_none())
        .map(|s| s.pod)
        .collect();
    if !missing.is_empty() {
        return Formation::WaitMembers(format!(
            "waiting for Redis to answer on {}",
            missing.join(", ")
        ));
    }
    let views: Vec<&NodeView> = all.iter().filter_map(|s| s.view).collect();
    let owners = slot_owners_of(&views);
    meet(&views)
        .or_else(|| slots(shards, &views, &owners))
        .or_else(|| followers(shards))
        .or_else(|| settled(&views, &owners))
        .unwrap_or(Formation::Done)
}

/// Phase 1, everyone knows everyone: the introductions of `redis::ops::meet`, while any pair
/// still does not know each other at all; then gossip completes the mesh.
fn meet(views: &[&NodeView]) -> Option<Formation> {
    let pairs = pairs_to_introduce(views);
    let strangers = views.first().is_some_and(|seed| {
        views
            .iter()
            .any(|v| v.id() != seed.id() && !seed.knows_at(v) && !v.knows_at(seed))
    });
    if strangers {
        return Some(Formation::Meet(pairs));
    }
    let handshakes: usize = views.iter().map(|v| v.handshakes()).sum();
    let incomplete: Vec<String> = views
        .iter()
        .filter(|v| views.iter().any(|o| !v.knows_at(o)))
        .map(|v| v.addr.to_string())
        .collect();
    (handshakes > 0 || !incomplete.is_empty()).then(|| {
        Formation::WaitGossip(
            format!(
                "{handshakes} handshakes in flight; not yet knowing every member: {}",
                if incomplete.is_empty() {
                    "none".to_string()
                } else {
                    incomplete.join(", ")
                }
            ),
            pairs,
        )
    })
}

/// Slot → owner among the answering members (the one definition of "who owns a slot").
fn owned(owners: &[Option<NodeId>]) -> BTreeMap<u16, &NodeId> {
    owners
        .iter()
        .enumerate()
        .filter_map(|(s, o)| Some((u16::try_from(s).ok()?, o.as_ref()?)))
        .collect()
}

/// Phase 2, slots: shard i owns the i-th even range. Only slots nobody owns are assigned, so a
/// resumed bootstrap never takes a slot from another node; a slot some member still
/// attributes to a node that is gone is not free (its shard's follower may take over with the
/// data, and an empty node would serve it without its keys).
fn slots(
    shards: &[ShardSeats<'_>],
    views: &[&NodeView],
    owners: &[Option<NodeId>],
) -> Option<Formation> {
    let conflicts = conflicting_slots_of(views);
    if conflicts > 0 {
        return Some(Formation::Blocked(format!(
            "{conflicts} slot(s) are claimed by more than one master"
        )));
    }
    let owned = owned(owners);
    let ids: BTreeSet<&NodeId> = views.iter().map(|v| v.id()).collect();
    let mut absent_owners: BTreeMap<&NodeId, usize> = BTreeMap::new();
    for id in owned.values().filter(|id| !ids.contains(*id)) {
        *absent_owners.entry(*id).or_default() += 1;
    }
    if let Some((id, count)) = absent_owners.iter().next() {
        return Some(Formation::Blocked(format!(
            "{count} slot(s) belong to node {} that is not a running member; they stay unassigned until its shard recovers",
            id.short()
        )));
    }
    let mut add = Vec::new();
    for (shard, target) in shards.iter().zip(&even_ranges(shards.len())) {
        let Some(leader) = leader_of(shard) else {
            return Some(Formation::Blocked(format!(
                "shard {} has no member that can lead",
                shard.index
            )));
        };
        let free: Vec<u16> = target.slots().filter(|s| !owned.contains_key(s)).collect();
        if free.is_empty() {
            continue;
        }
        if !leader.myself.is_master() {
            return Some(Formation::Blocked(format!(
                "shard {}: slots {} are unserved and its chosen leader {} is a replica",
                shard.index, target, leader.addr
            )));
        }
        add.push((leader.addr, shard.index, ranges_from_slots(free)));
    }
    (!add.is_empty()).then_some(Formation::AddSlots(add))
}

/// Phase 3, followers replicate their shard's leader and catch up.
fn followers(shards: &[ShardSeats<'_>]) -> Option<Formation> {
    let mut replicate = Vec::new();
    let mut syncing = Vec::new();
    for shard in shards {
        let Some(leader) = leader_of(shard) else {
            continue;
        };
        for seat in &shard.seats {
            let Some(v) = seat.view.filter(|v| v.id() != leader.id()) else {
                continue;
            };
            match v.master_id() {
                Some(m) if m == leader.id() => {
                    if !in_sync(v, leader) {
                        syncing.push(seat.pod.to_string());
                    }
                }
                // A master with slots in a shard that already has a leader is a split shard;
                // replicating it would drop its keys. Leave it to recovery.
                None if v.is_serving_master() => {
                    return Some(Formation::Blocked(format!(
                        "shard {}: {} and {} both serve slots",
                        shard.index, leader.addr, v.addr
                    )));
                }
                _ => replicate.push((v.addr, shard.index, leader.id().clone())),
            }
        }
    }
    if !replicate.is_empty() {
        return Some(Formation::Replicate(replicate));
    }
    (!syncing.is_empty())
        .then(|| Formation::WaitSync(format!("followers syncing: {}", syncing.join(", "))))
}

/// Phase 4, every slot served, every member `cluster_state:ok`, and every member agreeing with the
/// others: each member's own line is the authority for its role and slots, but clients and
/// failover act on what the others believe.
fn settled(views: &[&NodeView], owners: &[Option<NodeId>]) -> Option<Formation> {
    let served = owned(owners).len();
    let not_ok: Vec<String> = views
        .iter()
        .filter(|v| !v.info.state_ok)
        .map(|v| v.addr.to_string())
        .collect();
    if !not_ok.is_empty() || served != usize::from(SLOT_COUNT) {
        return Some(Formation::WaitSync(format!(
            "{served} of {SLOT_COUNT} slots served; cluster_state not ok on: {}",
            not_ok.join(", ")
        )));
    }
    let stale: Vec<(&NodeView, &NodeView)> = views
        .iter()
        .flat_map(|observer| {
            views
                .iter()
                .filter(move |subject| !agrees(observer, subject))
                .map(move |subject| (*observer, *subject))
        })
        .collect();
    if stale.is_empty() {
        return None;
    }
    let pairs: Vec<String> = stale
        .iter()
        .map(|(observer, subject)| format!("{} about {}", observer.addr, subject.addr))
        .collect();
    let message = format!(
        "waiting for gossip: members do not yet agree on roles and slots ({})",
        pairs.join(", ")
    );
    Some(
        if stale
            .iter()
            .all(|(observer, subject)| only_a_follower_unheard(observer, subject))
        {
            Formation::WaitRoles(message)
        } else {
            Formation::WaitSync(message)
        },
    )
}

/// Whether all `observer` misses about `subject` is that it follows: the subject is a follower
/// holding no slot, and the observer lists it with no slot too (as the empty master it was
/// when it joined, or with another master).
fn only_a_follower_unheard(observer: &NodeView, subject: &NodeView) -> bool {
    !subject.myself.is_master()
        && subject.myself.slots.is_empty()
        && observer
            .sees(subject.id())
            .is_some_and(|e| e.slots.is_empty() && !e.flags.handshake)
}

/// Whether `observer` sees `subject` as `subject` sees itself: role, master and slots.
fn agrees(observer: &NodeView, subject: &NodeView) -> bool {
    observer.sees(subject.id()).is_some_and(|e| {
        e.is_master() == subject.myself.is_master()
            && e.master_id == subject.myself.master_id
            && e.slots == subject.myself.slots
    })
}

/// The member that leads the shard: its serving leader ([`super::shard::serving_leader`]), else
/// placement's choice among the empty masters (a new shard).
pub fn leader_of<'a>(shard: &ShardSeats<'a>) -> Option<&'a NodeView> {
    let views = || shard.seats.iter().filter_map(|s| s.view);
    if let Some(v) = super::shard::serving_leader(views()) {
        return Some(v);
    }
    shard
        .preferred_leader
        .and_then(|i| shard.seats.get(i)?.view)
        .filter(|v| v.myself.is_master())
        .or_else(|| views().find(|v| v.myself.is_master()))
}
