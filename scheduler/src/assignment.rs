//! The solvers' common result: for every shard the node of every member and where that
//! member comes from, plus the choice of nodes for new members.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::current::{CurrentView, Kept};
use crate::inventory::Inventory;

/// Where a planned member comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The current member with this index in [`CurrentView::members`] stays.
    Kept(usize),
    /// A member to create.
    New,
}

/// One planned member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seat {
    pub node: usize,
    pub origin: Origin,
}

/// The planned members of one shard.
#[derive(Debug, Clone)]
pub(crate) struct ShardSeats {
    pub leader: Seat,
    pub followers: Vec<Seat>,
}

impl ShardSeats {
    /// Leader, then followers.
    pub(crate) fn seats(&self) -> impl Iterator<Item = &Seat> {
        std::iter::once(&self.leader).chain(self.followers.iter())
    }
}

/// A complete placement before it is turned into the public [`crate::Placement`].
#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    pub shards: Vec<ShardSeats>,
    /// ⌈L / Z⌉, Z = zones with capacity.
    pub leader_cap: u32,
    /// Members of a shard had to share a zone (Preferred only).
    pub relaxed: bool,
}

impl Assignment {
    /// Turns a new seat into a kept one when the same shard already has a healthy member on
    /// that node, so that a member is never replaced by an identical one.
    pub(crate) fn adopt(&mut self, view: &CurrentView<'_>) {
        let mut taken = kept_members(view, self.shards.iter().flat_map(|s| s.seats()));
        for (index, shard) in self.shards.iter_mut().enumerate() {
            for seat in std::iter::once(&mut shard.leader).chain(shard.followers.iter_mut()) {
                adopt_seat(view, &mut taken, index, seat);
            }
        }
    }
}

/// [`Assignment::adopt`] for seats not yet split into leader and followers.
pub(crate) fn adopt_all(view: &CurrentView<'_>, shards: &mut [Vec<Seat>]) {
    let mut taken = kept_members(view, shards.iter().flatten());
    for (index, seats) in shards.iter_mut().enumerate() {
        for seat in seats {
            adopt_seat(view, &mut taken, index, seat);
        }
    }
}

fn kept_members<'s>(view: &CurrentView<'_>, seats: impl Iterator<Item = &'s Seat>) -> Vec<bool> {
    let mut taken = vec![false; view.members.len()];
    for seat in seats {
        if let Origin::Kept(m) = seat.origin
            && let Some(flag) = taken.get_mut(m)
        {
            *flag = true;
        }
    }
    taken
}

fn adopt_seat(view: &CurrentView<'_>, taken: &mut [bool], shard: usize, seat: &mut Seat) {
    if seat.origin != Origin::New {
        return;
    }
    let same = (0..view.members.len()).find(|&i| {
        let m = &view.members[i];
        !taken[i]
            && m.healthy
            && m.node == Some(seat.node)
            && usize::try_from(m.shard).ok() == Some(shard)
    });
    if let Some(m) = same {
        taken[m] = true;
        seat.origin = Origin::Kept(m);
    }
}

impl From<Kept> for Seat {
    fn from(k: Kept) -> Self {
        Seat {
            node: k.node,
            origin: Origin::Kept(k.member),
        }
    }
}

/// Hands out node slots for new members, zone by zone.
///
/// Slots that are free now are used first, roomiest node first, then by name; slots that
/// only free up when a healthy member the plan drops is removed come second, so that a create
/// waits on a removal only when a node is full.
pub(crate) struct NodePicker {
    /// Per zone: (free slots, node) heaps for the two kinds of slots.
    free_now: Vec<BinaryHeap<(u32, Reverse<usize>)>>,
    freed_later: Vec<BinaryHeap<(u32, Reverse<usize>)>>,
    /// Slots left per node, both kinds.
    left: Vec<u32>,
    /// Slots left per zone, both kinds.
    zone_left: Vec<u64>,
    zone_of: Vec<usize>,
}

impl NodePicker {
    /// Counts the free slots of every node given the members that stay.
    pub(crate) fn new(inventory: &Inventory<'_>, view: &CurrentView<'_>, staying: &[Seat]) -> Self {
        let mut kept_on = vec![0u32; inventory.nodes.len()];
        let mut stays = vec![false; view.members.len()];
        for seat in staying {
            if let Origin::Kept(member) = seat.origin {
                kept_on[seat.node] += 1;
                if let Some(flag) = stays.get_mut(member) {
                    *flag = true;
                }
            }
        }
        let mut dropped_on = vec![0u32; inventory.nodes.len()];
        for (i, m) in view.members.iter().enumerate() {
            if let (Some(node), true, false) = (m.node, m.healthy, stays[i]) {
                dropped_on[node] += 1;
            }
        }
        let mut free_now = vec![BinaryHeap::new(); inventory.zones.len()];
        let mut freed_later = vec![BinaryHeap::new(); inventory.zones.len()];
        let mut left = vec![0u32; inventory.nodes.len()];
        let mut zone_left = vec![0u64; inventory.zones.len()];
        for (index, node) in inventory.nodes.iter().enumerate() {
            let room = node.slots.saturating_sub(kept_on[index]);
            let later = room.min(dropped_on[index]);
            let now = room - later;
            if now > 0 {
                free_now[node.zone].push((now, Reverse(index)));
            }
            if later > 0 {
                freed_later[node.zone].push((later, Reverse(index)));
            }
            left[index] = room;
            zone_left[node.zone] += u64::from(room);
        }
        let zone_of = inventory.nodes.iter().map(|n| n.zone).collect();
        Self {
            free_now,
            freed_later,
            left,
            zone_left,
            zone_of,
        }
    }

    /// Takes a free slot on a node of `zone` that is not in `avoid`.
    pub(crate) fn take(&mut self, zone: usize, avoid: &[usize]) -> Option<usize> {
        for heaps in [&mut self.free_now, &mut self.freed_later] {
            let heap = heaps.get_mut(zone)?;
            let mut skipped = Vec::new();
            let mut found = None;
            while let Some((room, Reverse(node))) = heap.pop() {
                if avoid.contains(&node) {
                    skipped.push((room, Reverse(node)));
                    continue;
                }
                if room > 1 {
                    heap.push((room - 1, Reverse(node)));
                }
                found = Some(node);
                break;
            }
            heap.extend(skipped);
            if let Some(node) = found {
                self.left[node] -= 1;
                self.zone_left[zone] -= 1;
                return Some(node);
            }
        }
        None
    }

    /// Whether `zone` has a free slot on a node not in `avoid`.
    pub(crate) fn has_room(&self, zone: usize, avoid: &[usize]) -> bool {
        let blocked: u64 = avoid
            .iter()
            .filter(|&&n| self.zone_of.get(n) == Some(&zone))
            .map(|&n| u64::from(self.left[n]))
            .sum();
        self.zone_left.get(zone).is_some_and(|&left| left > blocked)
    }

    /// Free slots left in `zone`.
    pub(crate) fn zone_room(&self, zone: usize) -> u64 {
        self.zone_left.get(zone).copied().unwrap_or(0)
    }
}
