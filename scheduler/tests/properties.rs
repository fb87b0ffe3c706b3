//! Property tests over random topologies: invariants, exactness of Unsatisfiable, stability and
//! determinism.

mod common;

use common::{as_current, brute_force_exists, check, current, request, small_topology, topology};
use proptest::prelude::*;
use redis_scheduler::{Cause, CurrentMember, NodeStatus, Request, Spread, Topology, solve};

/// Small cases the brute force can enumerate.
fn small_case() -> impl Strategy<Value = (Topology, Request)> {
    // Brute force grows with members per shard, so fewer shards for bigger shards; six
    // single-member shards reach the leader-cap obstacle (a zone too small for its share).
    let shape = prop_oneof![
        (1..=6u32, Just(0u32)),
        (1..=4u32, Just(1u32)),
        (1..=3u32, Just(2u32))
    ];
    let request = (
        shape,
        any::<bool>(),
        prop_oneof![3 => Just(Spread::Required), 1 => Just(Spread::Preferred)],
    )
        .prop_map(|((l, f), one, spread)| {
            let mut r = Request::new(l, f);
            r.one_member_per_node = one;
            r.spread = spread;
            r
        });
    (small_topology(), request)
}

/// Few big nodes, one per zone, of uneven size: where the leader cap is what runs out.
fn skewed_case() -> impl Strategy<Value = (Topology, Request)> {
    let zones = prop::collection::vec(1..=4u32, 2..=4).prop_map(|sizes| Topology {
        nodes: sizes
            .iter()
            .enumerate()
            .map(|(z, &pods)| {
                let zone = format!("zone-{}", (b'a' + z as u8) as char);
                common::node(&format!("{zone}-n0"), &zone, pods)
            })
            .collect(),
    });
    let shape = prop_oneof![(1..=7u32, Just(0u32)), (1..=5u32, Just(1u32))];
    (zones, shape).prop_map(|(t, (l, f))| {
        let mut r = Request::new(l, f);
        r.one_member_per_node = false;
        (t, r)
    })
}

/// Random cases with random current members.
fn case() -> impl Strategy<Value = (Topology, Request, Vec<CurrentMember>)> {
    (topology(6, 4, 3), request(6, 2)).prop_flat_map(|(t, r)| {
        let members = current(&t, r.leaders + 1);
        (Just(t), Just(r), members)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Unsatisfiable is returned exactly when brute force finds no valid placement.
    #[test]
    fn unsatisfiable_exactly_when_no_placement_exists((topology, request) in small_case()) {
        let exists = brute_force_exists(&topology, &request);
        match solve(&topology, &request, &[]) {
            Ok(placement) => {
                prop_assert!(exists, "solver placed what brute force cannot: {placement:?}");
                if let Err(e) = check(&topology, &request, &[], &placement) {
                    prop_assert!(false, "{e}");
                }
            }
            Err(e) => {
                prop_assert_ne!(e.cause, Cause::Internal, "{}", e.reason);
                prop_assert!(!exists, "solver gave up on a satisfiable case: {}", e.reason);
                prop_assert!(!e.reason.is_empty());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, max_global_rejects: 1_000_000, ..ProptestConfig::default() })]

    /// The same on skewed zones, where the ⌈L / Z⌉ leader cap is the binding limit.
    #[test]
    fn leader_cap_obstacle_exactly_when_no_placement_exists((topology, request) in skewed_case()) {
        let exists = brute_force_exists(&topology, &request);
        match solve(&topology, &request, &[]) {
            Ok(placement) => {
                prop_assert!(exists, "solver placed what brute force cannot: {placement:?}");
                if let Err(e) = check(&topology, &request, &[], &placement) {
                    prop_assert!(false, "{e}");
                }
            }
            Err(e) => {
                prop_assert!(!exists, "solver gave up on a satisfiable case: {}", e.reason);
                prop_assert_ne!(e.cause, Cause::Internal, "{}", e.reason);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, max_global_rejects: 1_000_000, ..ProptestConfig::default() })]

    /// Every plan satisfies every invariant, and its changes lead from current to it.
    #[test]
    fn every_plan_satisfies_the_invariants((topology, request, current) in case()) {
        match solve(&topology, &request, &current) {
            Ok(placement) => {
                if let Err(e) = check(&topology, &request, &current, &placement) {
                    prop_assert!(false, "{e}\n{placement:#?}");
                }
            }
            Err(e) => prop_assert_ne!(e.cause, Cause::Internal, "{}", e.reason),
        }
    }

    /// Whether a placement exists does not depend on the current members.
    #[test]
    fn current_members_never_make_a_case_unsatisfiable((topology, request, current) in case()) {
        let fresh = solve(&topology, &request, &[]).is_ok();
        let with_current = solve(&topology, &request, &current).is_ok();
        prop_assert_eq!(fresh, with_current);
    }

    /// A valid placement comes back unchanged with no changes.
    #[test]
    fn valid_placement_is_kept((topology, request, current) in case()) {
        if let Ok(first) = solve(&topology, &request, &current) {
            let now = as_current(&first);
            let again = solve(&topology, &request, &now);
            prop_assert!(again.is_ok());
            if let Ok(again) = again {
                prop_assert_eq!(&again.shards, &first.shards);
                prop_assert!(again.changes.is_empty(), "changes: {:?}", again.changes);
            }
        }
    }

    /// The same input gives the same plan, whatever the order of nodes and members.
    #[test]
    fn deterministic((topology, request, current) in case(), seed in any::<u64>()) {
        let a = solve(&topology, &request, &current);
        let b = solve(&topology, &request, &current);
        prop_assert_eq!(&a, &b);
        let mut shuffled_nodes = topology.clone();
        let mut shuffled_current = current.clone();
        shuffle(&mut shuffled_nodes.nodes, seed);
        shuffle(&mut shuffled_current, seed.rotate_left(17));
        let c = solve(&shuffled_nodes, &request, &shuffled_current);
        prop_assert_eq!(&a, &c);
    }

    /// Losing one node moves only the members it held, when its zone has room for them.
    #[test]
    fn node_loss_moves_only_its_members((topology, request) in (topology(5, 4, 2), request(6, 2)), pick in any::<prop::sample::Index>()) {
        let Ok(before) = solve(&topology, &request, &[]) else { return Ok(()) };
        // A relaxed placement may stack a shard on one zone's nodes, where spare slots in the
        // zone need not be on nodes the shard can use.
        prop_assume!(!before.spread_relaxed);
        let now = as_current(&before);
        let used: Vec<&str> = {
            let mut v: Vec<&str> = now.iter().map(|m| m.node.as_str()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        prop_assume!(!used.is_empty());
        let lost = used[pick.index(used.len())].to_string();
        let lost_members: Vec<&CurrentMember> = now.iter().filter(|m| m.node == lost).collect();
        let mut after_loss = topology.clone();
        for n in after_loss.nodes.iter_mut().filter(|n| n.name == lost) {
            n.status = NodeStatus::NotReady;
        }
        // Only claim minimal movement when the lost node's zone can absorb its members.
        let zone = topology.nodes.iter().find(|n| n.name == lost).and_then(|n| n.zone.clone());
        let spare: u64 = after_loss
            .nodes
            .iter()
            .filter(|n| n.zone == zone)
            .map(|n| common::slots(n, &request).saturating_sub(now.iter().filter(|m| m.node == n.name).count() as u64))
            .sum();
        prop_assume!(spare >= lost_members.len() as u64);
        let current: Vec<CurrentMember> = now
            .iter()
            .cloned()
            .map(|mut m| {
                m.healthy = m.node != lost;
                m
            })
            .collect();
        let after = solve(&after_loss, &request, &current);
        prop_assert!(after.is_ok(), "{after:?}");
        if let Ok(after) = after {
            if let Err(e) = check(&after_loss, &request, &current, &after) {
                prop_assert!(false, "{e}");
            }
            for m in now.iter().filter(|m| m.node != lost) {
                prop_assert!(after.member(m.shard, &m.node).is_some(), "member {}@{} moved", m.shard, m.node);
            }
            let creates = after.changes.iter().filter(|c| matches!(c, redis_scheduler::Change::Create { .. })).count();
            prop_assert_eq!(creates, lost_members.len());
        }
    }

    /// Under Required spread, a zone that cannot be used is named in the reason.
    #[test]
    fn reasons_name_the_zones((topology, mut request) in (topology(4, 3, 2), request(4, 2))) {
        request.spread = Spread::Required;
        if let Err(e) = solve(&topology, &request, &[]) {
            for zone in topology.nodes.iter().filter_map(|n| n.zone.as_deref()) {
                prop_assert!(e.reason.contains(zone) || matches!(e.cause, Cause::LeaderSpread), "{} missing from {}", zone, e.reason);
            }
        }
    }
}

/// Deterministic Fisher–Yates with a xorshift generator.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
