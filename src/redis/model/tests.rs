//! The slot-owner sweep against the definition it replaced (a tally per slot), kept here as
//! the oracle, on random cluster views: observers that claim overlapping ranges, peers that
//! report stale or unknown owners, ties, duplicates.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::redis::ids::SLOT_COUNT;

/// The old definition, verbatim: for each slot, the observed masters whose own line claims it.
fn oracle_claims<'a>(nodes: &[&'a NodeObservation]) -> Vec<Vec<&'a NodeId>> {
    let mut claims: Vec<Vec<&NodeId>> = vec![Vec::new(); usize::from(SLOT_COUNT)];
    for node in nodes.iter().filter(|n| n.is_master()) {
        for range in &node.myself.slots {
            for slot in range.slots() {
                if let Some(c) = claims.get_mut(usize::from(slot)) {
                    c.push(node.id());
                }
            }
        }
    }
    claims
}

/// The old definition, verbatim: a vote map per slot.
fn oracle_owners(nodes: &[&NodeObservation]) -> Vec<Option<NodeId>> {
    let claims = oracle_claims(nodes);
    let mut hearsay: Vec<BTreeMap<&NodeId, usize>> = vec![BTreeMap::new(); usize::from(SLOT_COUNT)];
    for node in nodes {
        for entry in std::iter::once(&node.myself).chain(node.peers.iter()) {
            for range in &entry.slots {
                for slot in range.slots() {
                    if let Some(votes) = hearsay.get_mut(usize::from(slot)) {
                        *votes.entry(&entry.id).or_default() += 1;
                    }
                }
            }
        }
    }
    claims
        .iter()
        .zip(hearsay.iter())
        .map(|(claimed, heard)| match claimed.as_slice() {
            [one] => Some((*one).clone()),
            [] => heard
                .iter()
                .max_by_key(|(_, votes)| **votes)
                .map(|(id, _)| (*id).clone()),
            _ => None,
        })
        .collect()
}

fn id(n: usize) -> String {
    format!("{n:040x}")
}

/// One line of CLUSTER NODES.
fn line(n: usize, myself: bool, master: Option<usize>, ranges: &[(u16, u16)]) -> String {
    let role = if master.is_some() { "slave" } else { "master" };
    let flags = if myself {
        format!("myself,{role}")
    } else {
        role.to_string()
    };
    let slots: Vec<String> = ranges
        .iter()
        .map(|(s, e)| {
            if s == e {
                s.to_string()
            } else {
                format!("{s}-{e}")
            }
        })
        .collect();
    format!(
        "{} 10.0.0.{}:6379@16379 {flags} {} 0 0 1 connected {}",
        id(n),
        n + 1,
        master.map_or_else(|| "-".to_string(), id),
        slots.join(" ")
    )
}

/// A range with ends often on a few shared boundaries, so that ranges overlap, abut and tie.
fn range() -> impl Strategy<Value = (u16, u16)> {
    let end = prop_oneof![
        Just(0u16),
        Just(5460),
        Just(5461),
        Just(10922),
        Just(16383),
        0u16..16384
    ];
    (end.clone(), end).prop_map(|(a, b)| (a.min(b), a.max(b)))
}

/// A node's line: its id (from a small pool, so observers repeat and peers may be unknown),
/// whether it replicates another, its ranges.
fn entry() -> impl Strategy<Value = Line> {
    (
        0usize..7,
        proptest::option::weighted(0.3, 0usize..7),
        proptest::collection::vec(range(), 0..3),
    )
}

/// A line as generated: (id, master, ranges).
type Line = (usize, Option<usize>, Vec<(u16, u16)>);

fn view_of(observers: &[(Line, Vec<Line>)]) -> ClusterView {
    let mut view = ClusterView::default();
    for (i, ((me, master, ranges), peers)) in observers.iter().enumerate() {
        let mut lines = vec![line(*me, true, *master, ranges)];
        lines.extend(
            peers
                .iter()
                .filter(|(p, _, _)| p != me)
                .map(|(p, m, r)| line(*p, false, *m, r)),
        );
        let addr = format!("10.1.0.{}:6379", i + 1).parse().unwrap();
        view.nodes.push(
            NodeObservation::from_replies(
                addr,
                &lines.join("\n"),
                "cluster_state:ok\r\n",
                "role:master\r\nmaster_replid:x\r\nmaster_repl_offset:0\r\n",
                Some(0),
            )
            .unwrap(),
        );
    }
    view
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_sweep_is_the_per_slot_tally(
        observers in proptest::collection::vec((entry(), proptest::collection::vec(entry(), 0..6)), 0..6)
    ) {
        let view = view_of(&observers);
        let nodes: Vec<&NodeObservation> = view.nodes.iter().collect();
        let want = oracle_owners(&nodes);
        prop_assert_eq!(&slot_owners_of(&nodes), &want);
        prop_assert_eq!(&view.slot_owners(), &want);
        let conflicts: Vec<u16> = oracle_claims(&nodes)
            .iter()
            .enumerate()
            .filter(|(_, c)| c.len() > 1)
            .map(|(s, _)| u16::try_from(s).unwrap())
            .collect();
        prop_assert_eq!(conflicting_slots_of(&nodes), conflicts.len());
        prop_assert_eq!(view.conflicting_slots(), conflicts);
        let voters: BTreeSet<NodeId> = want.iter().flatten().cloned().collect();
        prop_assert_eq!(view.voting_masters(), voters);
        // The runs tile the slot space in order.
        let runs = owner_runs(&nodes);
        prop_assert_eq!(runs.first().map(|r| r.0.start), Some(0));
        prop_assert_eq!(runs.iter().map(|r| r.0.len()).sum::<usize>(), usize::from(SLOT_COUNT));
    }
}

#[test]
fn a_tie_goes_to_the_greatest_id_as_before() {
    // Nobody claims 0-99 (its owner is gone); two observers name 1, two name 2.
    let observers = vec![
        ((3, Some(4), vec![]), vec![(1, None, vec![(0, 99)])]),
        ((5, Some(4), vec![]), vec![(1, None, vec![(0, 99)])]),
        ((6, Some(4), vec![]), vec![(2, None, vec![(0, 99)])]),
        ((0, Some(4), vec![]), vec![(2, None, vec![(0, 99)])]),
    ];
    let view = view_of(&observers);
    let nodes: Vec<&NodeObservation> = view.nodes.iter().collect();
    assert_eq!(slot_owners_of(&nodes), oracle_owners(&nodes));
    assert_eq!(view.slot_owner(0), Some(id(2).parse().unwrap()));
    assert_eq!(view.slot_owner(100), None);
}
