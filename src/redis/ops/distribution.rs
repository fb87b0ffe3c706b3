//! Planning an even slot distribution with the fewest slot moves.
//!
//! With `n` leaders each gets `16384 / n` slots and `16384 % n` of them get one more. Giving
//! the extra slots to the leaders that already hold the most, and moving only each leader's
//! surplus, moves exactly the number of slots that must change owner: no plan with fewer
//! moves can reach a balanced layout.

use std::collections::{BTreeMap, BTreeSet};

use crate::redis::ids::{NodeId, SLOT_COUNT, SlotRange, ranges_from_slots};

/// One slot changing owner. `from: None` means the slot is unassigned and only needs adding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotMove {
    /// The slot.
    pub slot: u16,
    /// The current owner, if any.
    pub from: Option<NodeId>,
    /// The new owner.
    pub to: NodeId,
}

/// Plans the moves that make `target_leaders` own the slots evenly (sizes differ by at most
/// one). `current` holds the owner of each slot (index = slot), as from
/// [`crate::redis::model::ClusterView::slot_owners`]; missing entries count as unassigned.
/// Owners not in `target_leaders` give away all their slots. Each donor gives its highest
/// slots and each receiver takes a contiguous run of the freed slots, so ranges stay compact.
/// Returns no moves when `target_leaders` is empty.
pub fn plan_slot_distribution(
    current: &[Option<NodeId>],
    target_leaders: &[NodeId],
) -> Vec<SlotMove> {
    let leaders: Vec<NodeId> = {
        let mut seen = BTreeSet::new();
        target_leaders
            .iter()
            .filter(|l| seen.insert((*l).clone()))
            .cloned()
            .collect()
    };
    if leaders.is_empty() {
        return Vec::new();
    }
    let total = usize::from(SLOT_COUNT);
    let owner_of = |slot: usize| current.get(slot).cloned().flatten();
    let mut held: BTreeMap<&NodeId, Vec<u16>> = leaders.iter().map(|l| (l, Vec::new())).collect();
    let mut freed: Vec<(u16, Option<NodeId>)> = Vec::new();
    for slot in 0..total {
        let Ok(slot16) = u16::try_from(slot) else {
            continue;
        };
        match owner_of(slot) {
            Some(owner) => match held.get_mut(&owner) {
                Some(slots) => slots.push(slot16),
                None => freed.push((slot16, Some(owner))),
            },
            None => freed.push((slot16, None)),
        }
    }
    // Quotas: the extra slot goes to the leaders holding the most (ties by id, for
    // determinism), which minimises the total deficit.
    let base = total / leaders.len();
    let extra = total % leaders.len();
    let mut by_size: Vec<&NodeId> = leaders.iter().collect();
    by_size.sort_by(|a, b| {
        let (la, lb) = (
            held.get(a).map_or(0, Vec::len),
            held.get(b).map_or(0, Vec::len),
        );
        lb.cmp(&la).then_with(|| a.cmp(b))
    });
    let quota: BTreeMap<&NodeId, usize> = by_size
        .iter()
        .enumerate()
        .map(|(i, l)| (*l, base + usize::from(i < extra)))
        .collect();
    for (leader, slots) in &mut held {
        let q = quota.get(leader).copied().unwrap_or(base);
        if slots.len() > q {
            let surplus = slots.split_off(q);
            freed.extend(surplus.into_iter().map(|s| (s, Some((*leader).clone()))));
        }
    }
    freed.sort();
    let mut freed = freed.into_iter();
    let mut moves = Vec::new();
    for leader in &leaders {
        let have = held.get(leader).map_or(0, Vec::len);
        let want = quota.get(leader).copied().unwrap_or(base);
        for (slot, from) in freed.by_ref().take(want.saturating_sub(have)) {
            moves.push(SlotMove {
                slot,
                from,
                to: leader.clone(),
            });
        }
    }
    moves
}

/// The first `n` moves to make, shared evenly between the (from, to) pairs: each pair gives its
/// next slots in its own order, pairs taking turns. [`plan_slot_distribution`] lists moves by
/// receiver, so taking its first `n` would fill one new shard before the next starts, one or
/// two pairs at a time; taking turns gives every pair work in each batch, and the reshard
/// runs pairs in parallel (3 -> 6: three sources feed three new shards at once).
pub fn batch(moves: Vec<SlotMove>, n: usize) -> Vec<SlotMove> {
    let mut order: Vec<(Option<NodeId>, NodeId)> = Vec::new();
    let mut queues: BTreeMap<(Option<NodeId>, NodeId), std::collections::VecDeque<SlotMove>> =
        BTreeMap::new();
    for m in moves {
        let key = (m.from.clone(), m.to.clone());
        if !queues.contains_key(&key) {
            order.push(key.clone());
        }
        queues.entry(key).or_default().push_back(m);
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let before = out.len();
        for key in &order {
            if out.len() == n {
                break;
            }
            if let Some(m) = queues.get_mut(key).and_then(|q| q.pop_front()) {
                out.push(m);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// Groups moves by (from, to) into slot ranges, for logs and status messages.
pub fn summarize(moves: &[SlotMove]) -> Vec<(Option<NodeId>, NodeId, Vec<SlotRange>)> {
    let mut groups: BTreeMap<(Option<NodeId>, NodeId), Vec<u16>> = BTreeMap::new();
    for m in moves {
        groups
            .entry((m.from.clone(), m.to.clone()))
            .or_default()
            .push(m.slot);
    }
    groups
        .into_iter()
        .map(|((from, to), slots)| (from, to, ranges_from_slots(slots)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::ids::even_ranges;
    use proptest::prelude::*;

    fn id(n: u8) -> NodeId {
        format!("{:040x}", u128::from(n) + 1).parse().unwrap()
    }

    fn layout(owners: &[(NodeId, SlotRange)]) -> Vec<Option<NodeId>> {
        let mut out = vec![None; usize::from(SLOT_COUNT)];
        for (owner, range) in owners {
            for s in range.slots() {
                out[usize::from(s)] = Some(owner.clone());
            }
        }
        out
    }

    #[test]
    fn a_batch_shares_its_slots_between_the_pairs_in_their_own_order() {
        // 3 -> 6: every old shard gives to a new one; the plan lists moves by receiver.
        let current = layout(
            &even_ranges(3)
                .into_iter()
                .enumerate()
                .map(|(i, r)| (id(u8::try_from(i).unwrap()), r))
                .collect::<Vec<_>>(),
        );
        let leaders: Vec<NodeId> = (0..6).map(id).collect();
        let all = plan_slot_distribution(&current, &leaders);
        let pairs = summarize(&all).len();
        assert!(pairs >= 3, "{pairs}");
        let first = batch(all.clone(), 1024);
        assert_eq!(first.len(), 1024);
        let per_pair = summarize(&first);
        assert_eq!(
            per_pair.len(),
            pairs,
            "every pair has work in the first batch"
        );
        for (from, to, _) in &per_pair {
            // Each pair's share is the start of its own list.
            let own: Vec<u16> = all
                .iter()
                .filter(|m| &m.from == from && &m.to == to)
                .map(|m| m.slot)
                .collect();
            let taken: Vec<u16> = first
                .iter()
                .filter(|m| &m.from == from && &m.to == to)
                .map(|m| m.slot)
                .collect();
            assert_eq!(&own[..taken.len()], &taken[..]);
            assert!(taken.len() >= 1024 / pairs - 1, "{}", taken.len());
        }
        // Short of moves: all of them.
        assert_eq!(batch(all.clone(), 100_000).len(), all.len());
    }

    fn apply(current: &[Option<NodeId>], moves: &[SlotMove]) -> Vec<Option<NodeId>> {
        let mut out = current.to_vec();
        out.resize(usize::from(SLOT_COUNT), None);
        for m in moves {
            assert_eq!(
                out[usize::from(m.slot)],
                m.from,
                "move source matches owner"
            );
            out[usize::from(m.slot)] = Some(m.to.clone());
        }
        out
    }

    #[test]
    fn three_to_four_moves_a_quarter() {
        let r = even_ranges(3);
        let current = layout(&[(id(0), r[0]), (id(1), r[1]), (id(2), r[2])]);
        let moves = plan_slot_distribution(&current, &[id(0), id(1), id(2), id(3)]);
        assert_eq!(moves.len(), 4096);
        assert!(moves.iter().all(|m| m.to == id(3)));
        // Every old leader donates, so three streams can run in parallel.
        let donors: BTreeSet<_> = moves.iter().map(|m| m.from.clone()).collect();
        assert_eq!(donors.len(), 3);
    }

    #[test]
    fn balanced_layout_needs_no_moves() {
        let r = even_ranges(3);
        let current = layout(&[(id(0), r[0]), (id(1), r[1]), (id(2), r[2])]);
        assert!(plan_slot_distribution(&current, &[id(2), id(1), id(0)]).is_empty());
    }

    #[test]
    fn empty_cluster_assigns_everything() {
        let moves = plan_slot_distribution(&[], &[id(0), id(1), id(2)]);
        assert_eq!(moves.len(), 16384);
        assert!(moves.iter().all(|m| m.from.is_none()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn plan_is_balanced_and_minimal(
            owners in proptest::collection::vec(proptest::option::weighted(0.95, 0u8..6), 16384),
            targets in proptest::collection::btree_set(0u8..8, 1..6),
        ) {
            let current: Vec<Option<NodeId>> = owners.iter().map(|o| o.map(id)).collect();
            let target_ids: Vec<NodeId> = targets.iter().map(|t| id(*t)).collect();
            let moves = plan_slot_distribution(&current, &target_ids);
            let after = apply(&current, &moves);
            // Every slot owned by a target leader, sizes within one of each other.
            let mut counts: BTreeMap<NodeId, usize> = target_ids.iter().map(|t| (t.clone(), 0)).collect();
            for o in &after {
                let o = o.clone().expect("all slots assigned");
                *counts.get_mut(&o).expect("owner is a target leader") += 1;
            }
            let max = counts.values().max().copied().unwrap_or(0);
            let min = counts.values().min().copied().unwrap_or(0);
            prop_assert!(max - min <= 1);
            // No slot moved twice.
            let distinct: BTreeSet<u16> = moves.iter().map(|m| m.slot).collect();
            prop_assert_eq!(distinct.len(), moves.len());
            // Minimal: a lower bound on moves is, for the best quota assignment, the slots
            // not kept in place. Slots kept = sum over targets of min(held, quota); the
            // quota that maximises it gives the extra slot to the biggest holders.
            let n = target_ids.len();
            let base = 16384 / n;
            let extra = 16384 % n;
            let mut held: Vec<usize> = target_ids
                .iter()
                .map(|t| current.iter().filter(|o| o.as_ref() == Some(t)).count())
                .collect();
            held.sort_unstable_by(|a, b| b.cmp(a));
            let kept: usize = held
                .iter()
                .enumerate()
                .map(|(i, h)| (*h).min(base + usize::from(i < extra)))
                .sum();
            prop_assert_eq!(moves.len(), 16384 - kept);
        }

        #[test]
        fn batches_in_turn_make_the_same_moves(
            owners in proptest::collection::vec(proptest::option::weighted(0.95, 0u8..6), 16384),
            targets in proptest::collection::btree_set(0u8..8, 1..6),
            size in 1usize..3000,
        ) {
            // Batch after batch, each planned from the cluster the last one left, makes as
            // many moves as the whole plan, never moves a slot twice, and ends balanced over
            // the targets.
            let mut current: Vec<Option<NodeId>> = owners.iter().map(|o| o.map(id)).collect();
            let target_ids: Vec<NodeId> = targets.iter().map(|t| id(*t)).collect();
            let whole = plan_slot_distribution(&current, &target_ids).len();
            let mut moved = BTreeSet::new();
            for _ in 0..100_000 {
                let all = plan_slot_distribution(&current, &target_ids);
                if all.is_empty() {
                    break;
                }
                let next = batch(all.clone(), size);
                prop_assert_eq!(next.len(), size.min(all.len()));
                for m in &next {
                    prop_assert!(moved.insert(m.slot), "slot {} moved twice", m.slot);
                }
                current = apply(&current, &next);
            }
            prop_assert_eq!(moved.len(), whole);
            let mut counts: BTreeMap<NodeId, usize> =
                target_ids.iter().map(|t| (t.clone(), 0)).collect();
            for o in &current {
                let o = o.clone().expect("all slots assigned");
                *counts.get_mut(&o).expect("owner is a target leader") += 1;
            }
            let max = counts.values().max().copied().unwrap_or(0);
            let min = counts.values().min().copied().unwrap_or(0);
            prop_assert!(max - min <= 1);
        }
    }
}
