//! Pure decision of the next Redis step that turns running members into one healthy cluster:
//! MEET → slots → followers → in sync. Every step is derived from what the members report now,
//! so a crash between steps (of the operator or of a member) just means the next reconcile picks
//! up where the cluster is.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::redis_view::NodeView;
use crate::redis::ids::{NodeId, SLOT_COUNT, SlotRange, even_ranges, ranges_from_slots};

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

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Some members are not answering yet.
    WaitMembers(String),
    /// Introduce members to each other: each pair is (on, meet).
    Meet(Vec<(SocketAddr, SocketAddr)>),
    /// Handshakes are still in flight, or not every member lists every other yet.
    WaitGossip(String),
    /// Assign slot ranges to shard leaders: (leader address, shard, ranges).
    AddSlots(Vec<(SocketAddr, usize, Vec<SlotRange>)>),
    /// Attach followers: (follower address, shard, leader id).
    Replicate(Vec<(SocketAddr, usize, NodeId)>),
    /// Followers are attached but still syncing, or the cluster state is not ok yet.
    WaitSync(String),
    /// Something only a human (or a later recovery step) should resolve.
    Blocked(String),
    /// Every slot is served and every follower is in sync.
    Done,
}

/// How far a follower's offset may trail its leader's and still count as in sync.
pub const SYNC_LAG_BYTES: u64 = 1024 * 1024;

/// Decides the next step from the members' reports.
pub fn next_step(shards: &[ShardSeats<'_>]) -> Step {
    let all: Vec<&Seat<'_>> = shards.iter().flat_map(|s| s.seats.iter()).collect();
    let missing: Vec<&str> = all
        .iter()
        .filter(|s| s.view.is_none())
        .map(|s| s.pod)
        .collect();
    if !missing.is_empty() {
        return Step::WaitMembers(format!(
            "waiting for Redis to answer on {}",
            missing.join(", ")
        ));
    }
    let views: Vec<&NodeView> = all.iter().filter_map(|s| s.view).collect();

    // 1. Everyone knows everyone. MEET from the first member to each one it lacks, and from
    // every member that lacks the first: gossip spreads the rest.
    let ids: BTreeSet<&NodeId> = views.iter().map(|v| v.id()).collect();
    let mut meets = Vec::new();
    if let Some(seed) = views.first() {
        for v in &views {
            if v.id() == seed.id() {
                continue;
            }
            let seed_knows = seed.known_ids().contains(v.id());
            let v_knows = v.known_ids().contains(seed.id());
            if !seed_knows && !v_knows {
                meets.push((seed.addr, v.addr));
            }
        }
    }
    if !meets.is_empty() {
        return Step::Meet(meets);
    }
    let handshakes: usize = views.iter().map(|v| v.handshakes()).sum();
    let incomplete: Vec<String> = views
        .iter()
        .filter(|v| ids.iter().any(|id| !v.known_ids().contains(id)))
        .map(|v| v.addr.to_string())
        .collect();
    if handshakes > 0 || !incomplete.is_empty() {
        return Step::WaitGossip(format!(
            "{handshakes} handshakes in flight; not yet knowing every member: {}",
            if incomplete.is_empty() {
                "none".to_string()
            } else {
                incomplete.join(", ")
            }
        ));
    }

    // 2. Slots: shard i owns the i-th even range. Only slots nobody serves are assigned, so a
    // resumed bootstrap never takes a slot from another node.
    let owned: BTreeMap<u16, &NodeId> = owners(&views);
    let targets = even_ranges(shards.len());
    let mut add = Vec::new();
    for (shard, target) in shards.iter().zip(&targets) {
        let Some(leader) = leader_of(shard) else {
            return Step::Blocked(format!("shard {} has no member that can lead", shard.index));
        };
        let free: Vec<u16> = target.slots().filter(|s| !owned.contains_key(s)).collect();
        if free.is_empty() {
            continue;
        }
        if !leader.myself.is_master() {
            return Step::Blocked(format!(
                "shard {}: slots {} are unserved and its chosen leader {} is a replica",
                shard.index, target, leader.addr
            ));
        }
        add.push((leader.addr, shard.index, ranges_from_slots(free)));
    }
    if !add.is_empty() {
        return Step::AddSlots(add);
    }

    // 3. Followers replicate their shard's leader.
    let mut replicate = Vec::new();
    let mut syncing = Vec::new();
    for shard in shards {
        let Some(leader) = leader_of(shard) else {
            continue;
        };
        for seat in &shard.seats {
            let Some(v) = seat.view else { continue };
            if v.id() == leader.id() {
                continue;
            }
            match v.master_id() {
                Some(m) if m == leader.id() => {
                    if !in_sync(v, leader) {
                        syncing.push(seat.pod.to_string());
                    }
                }
                // A master with slots in a shard that already has a leader is a split shard;
                // replicating it would drop its keys. Leave it to recovery.
                None if v.is_serving_master() => {
                    return Step::Blocked(format!(
                        "shard {}: {} and {} both serve slots",
                        shard.index, leader.addr, v.addr
                    ));
                }
                _ => replicate.push((v.addr, shard.index, leader.id().clone())),
            }
        }
    }
    if !replicate.is_empty() {
        return Step::Replicate(replicate);
    }
    if !syncing.is_empty() {
        return Step::WaitSync(format!("followers syncing: {}", syncing.join(", ")));
    }
    let not_ok: Vec<String> = views
        .iter()
        .filter(|v| !v.info.state_ok)
        .map(|v| v.addr.to_string())
        .collect();
    if !not_ok.is_empty() || owned.len() != usize::from(SLOT_COUNT) {
        return Step::WaitSync(format!(
            "{} of {SLOT_COUNT} slots served; cluster_state not ok on: {}",
            owned.len(),
            not_ok.join(", ")
        ));
    }
    Step::Done
}

/// The member that leads the shard: the one serving slots, else placement's choice among the
/// empty masters.
pub fn leader_of<'a>(shard: &ShardSeats<'a>) -> Option<&'a NodeView> {
    let views = || shard.seats.iter().filter_map(|s| s.view);
    if let Some(v) = views().find(|v| v.is_serving_master()) {
        return Some(v);
    }
    shard
        .preferred_leader
        .and_then(|i| shard.seats.get(i)?.view)
        .filter(|v| v.myself.is_master())
        .or_else(|| views().find(|v| v.myself.is_master()))
}

/// Whether a follower's replication link is up and its offset close to the leader's.
pub fn in_sync(follower: &NodeView, leader: &NodeView) -> bool {
    follower.replication.replica_link().is_some_and(|l| {
        l.link_up
            && !l.sync_in_progress
            && leader
                .replication
                .master_repl_offset
                .saturating_sub(l.repl_offset)
                <= SYNC_LAG_BYTES
    })
}

/// Slot → owner according to each node's own `myself` line (the authority for its own slots).
fn owners<'a>(views: &[&'a NodeView]) -> BTreeMap<u16, &'a NodeId> {
    let mut out = BTreeMap::new();
    for v in views {
        if !v.myself.is_master() {
            continue;
        }
        for r in v.slots() {
            for s in r.slots() {
                out.insert(s, v.id());
            }
        }
    }
    out
}
