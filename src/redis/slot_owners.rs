//! "Who owns a slot", from what the answering nodes report: their own lines' claims and every
//! line's hearsay, swept over the ranges' boundaries rather than tallied slot by slot.

use std::collections::BTreeMap;

use crate::redis::ids::{NodeId, SLOT_COUNT, SlotRange};
use crate::redis::parse::cluster_nodes::NodeEntry;

/// One node's report: its own line and its lines about the others.
pub type Lines<'a> = (&'a NodeEntry, &'a [NodeEntry]);

/// One boundary of a slot range on the sweep: at slot `at` (a range's start, or one past its
/// end), `id` gains (`+1`) or loses (`-1`) one claim (`claim`, a master's own line) or one
/// vote of hearsay (any node's line about `id`).
struct Edge<'a> {
    at: u32,
    id: &'a NodeId,
    claim: bool,
    up: bool,
}

/// The edges of every range the `nodes` report: their own lines' claims (masters only) and
/// every line's hearsay. Ranges are clamped to the slot space; an empty one adds nothing.
fn edges<'a>(nodes: &[Lines<'a>]) -> Vec<Edge<'a>> {
    let mut out = Vec::new();
    for (myself, peers) in nodes {
        let claims = myself.is_master().then_some(*myself);
        for entry in std::iter::once(*myself).chain(peers.iter()) {
            for range in &entry.slots {
                let (start, end) = (u32::from(range.start), u32::from(range.end));
                let end = end.min(u32::from(SLOT_COUNT) - 1);
                if start > end {
                    continue;
                }
                let claim = claims.is_some_and(|m| std::ptr::eq(m, entry));
                for claim in [false].into_iter().chain(claim.then_some(true)) {
                    let id = &entry.id;
                    out.push(Edge {
                        at: start,
                        id,
                        claim,
                        up: true,
                    });
                    out.push(Edge {
                        at: end + 1,
                        id,
                        claim,
                        up: false,
                    });
                }
            }
        }
    }
    out.sort_by_key(|e| e.at);
    out
}

/// "Who owns a slot", as the answering `nodes` report it, per run of slots where nothing
/// changes: the one definition. A slot claimed by exactly one observed master belongs to it. A
/// slot no observed master claims (its owner may be down) belongs to whichever node most
/// observers name (the greatest id among a tie): a slot some member still attributes to a node
/// that is gone belongs to that node's shard, whose follower may take over with the data. Slots
/// claimed by several masters at once are `None`, like unassigned ones; see
/// [`crate::redis::model::ClusterView::conflicting_slots`]. Computed by one sweep over the ranges' boundaries, not
/// slot by slot: a pass asks this several times, and a tally per slot for 16384 slots was most
/// of a pass's CPU at 50×2.
pub fn owner_runs<'a>(nodes: &[Lines<'a>]) -> Vec<(SlotRange, Option<&'a NodeId>)> {
    let edges = edges(nodes);
    let mut claims: BTreeMap<&NodeId, usize> = BTreeMap::new();
    let mut heard: BTreeMap<&NodeId, usize> = BTreeMap::new();
    let mut runs = Vec::new();
    let (mut next, mut at) = (0usize, 0u32);
    while at < u32::from(SLOT_COUNT) {
        while let Some(e) = edges.get(next).filter(|e| e.at == at) {
            let tally = if e.claim { &mut claims } else { &mut heard };
            let count = tally.entry(e.id).or_default();
            if e.up {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    tally.remove(e.id);
                }
            }
            next += 1;
        }
        let until = edges.get(next).map_or(u32::from(SLOT_COUNT), |e| e.at);
        let owner = match claims.values().sum::<usize>() {
            0 => heard
                .iter()
                .max_by_key(|(id, votes)| (**votes, **id))
                .map(|(id, _)| *id),
            1 => claims.keys().next().copied(),
            _ => None,
        };
        if let (Ok(start), Ok(end)) = (u16::try_from(at), u16::try_from(until - 1)) {
            runs.push((SlotRange { start, end }, owner));
        }
        at = until;
    }
    runs
}

/// [`owner_runs`] slot by slot: `owners[slot]`.
pub fn slot_owners_of(nodes: &[Lines<'_>]) -> Vec<Option<NodeId>> {
    let mut owners = Vec::with_capacity(usize::from(SLOT_COUNT));
    for (range, owner) in owner_runs(nodes) {
        owners.extend(std::iter::repeat_n(owner.cloned(), range.len()));
    }
    owners
}

/// How many observed masters' own lines claim each slot: one difference per range boundary.
pub fn claim_counts(nodes: &[Lines<'_>]) -> Vec<usize> {
    let mut diff = vec![0isize; usize::from(SLOT_COUNT) + 1];
    for (myself, _) in nodes.iter().filter(|(m, _)| m.is_master()) {
        for range in &myself.slots {
            let end = range.end.min(SLOT_COUNT - 1);
            if range.start <= end {
                diff[usize::from(range.start)] += 1;
                diff[usize::from(end) + 1] -= 1;
            }
        }
    }
    let mut running = 0isize;
    diff.iter()
        .take(usize::from(SLOT_COUNT))
        .map(|d| {
            running += d;
            running.unsigned_abs()
        })
        .collect()
}
