//! Scenarios an SRE lives through: zone loss and return, node loss, scaling L and F.

// Helpers outside #[test] functions fail loudly too; clippy only exempts test functions.
#![allow(clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::{as_current, check, even_topology, node};
use redis_scheduler::{
    Cause, Change, CurrentMember, NodeStatus, Placement, Request, Resources, Role, Spread,
    Topology, solve,
};

fn solve_checked(topology: &Topology, request: &Request, current: &[CurrentMember]) -> Placement {
    let placement =
        solve(topology, request, current).unwrap_or_else(|e| panic!("unsatisfiable: {}", e.reason));
    if let Err(e) = check(topology, request, current, &placement) {
        panic!("{e}\n{placement:#?}");
    }
    placement
}

fn count(placement: &Placement, op: &str) -> usize {
    placement
        .changes
        .iter()
        .filter(|c| match c {
            Change::Create { .. } => op == "create",
            Change::Failover { .. } => op == "failover",
            Change::Remove { .. } => op == "remove",
        })
        .count()
}

fn leaders_per_zone(placement: &Placement) -> BTreeMap<String, u32> {
    let mut map = BTreeMap::new();
    for shard in &placement.shards {
        *map.entry(shard.members[0].zone.clone()).or_insert(0) += 1;
    }
    map
}

/// Takes `zone` down: nodes not ready, their members unhealthy.
fn lose_zone(
    topology: &Topology,
    current: &[CurrentMember],
    zone: &str,
) -> (Topology, Vec<CurrentMember>) {
    let mut t = topology.clone();
    for n in t
        .nodes
        .iter_mut()
        .filter(|n| n.zone.as_deref() == Some(zone))
    {
        n.status = NodeStatus::NotReady;
    }
    let lost: Vec<String> = t
        .nodes
        .iter()
        .filter(|n| n.zone.as_deref() == Some(zone))
        .map(|n| n.name.clone())
        .collect();
    let current = current
        .iter()
        .cloned()
        .map(|mut m| {
            m.healthy = !lost.contains(&m.node);
            m
        })
        .collect();
    (t, current)
}

fn assert_kept(before: &[CurrentMember], after: &Placement, unless_on: &[&str]) {
    for m in before
        .iter()
        .filter(|m| !unless_on.contains(&m.node.as_str()))
    {
        assert!(
            after.member(m.shard, &m.node).is_some(),
            "member {}@{} moved",
            m.shard,
            m.node
        );
    }
}

#[test]
fn zone_loss_then_return_with_one_follower() {
    let topology = even_topology(&["zone-a", "zone-b", "zone-c"], 6);
    let request = Request::new(6, 1);
    let fresh = solve_checked(&topology, &request, &[]);
    assert_eq!(
        leaders_per_zone(&fresh)
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    assert!(fresh.zone_loss_safe, "{}", fresh.zone_loss_reason);
    let running = as_current(&fresh);

    // Zone a goes down: every shard keeps a leader and a follower in distinct surviving zones,
    // and only the members that were in zone a are replaced.
    let (down, current) = lose_zone(&topology, &running, "zone-a");
    let degraded = solve_checked(&down, &request, &current);
    let lost: Vec<&str> = running
        .iter()
        .filter(|m| m.node.starts_with("zone-a"))
        .map(|m| m.node.as_str())
        .collect();
    assert_kept(&running, &degraded, &lost);
    assert_eq!(count(&degraded, "create"), lost.len());
    for shard in &degraded.shards {
        assert_ne!(shard.members[0].zone, shard.members[1].zone);
        assert!(shard.members.iter().all(|m| m.zone != "zone-a"));
    }
    assert_eq!(degraded.leader_cap, 3);
    // Removals of dead members come first, creates follow.
    assert!(matches!(
        degraded.changes.first(),
        Some(Change::Remove { .. })
    ));

    // Zone a returns: leaders go back to 2 per zone with the fewest changes: two shards get a
    // member in zone a, fail over to it and drop one old member.
    let settled = as_current(&degraded);
    let back = solve_checked(&topology, &request, &settled);
    assert_eq!(
        leaders_per_zone(&back)
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    assert_eq!(count(&back, "create"), 2, "{:#?}", back.changes);
    assert_eq!(count(&back, "failover"), 2, "{:#?}", back.changes);
    assert_eq!(count(&back, "remove"), 2, "{:#?}", back.changes);
    assert!(back.zone_loss_safe);
    // And once carried out, the plan is stable.
    let again = solve_checked(&topology, &request, &as_current(&back));
    assert!(again.changes.is_empty());
}

#[test]
fn zone_loss_with_two_followers_needs_preferred_spread() {
    let topology = even_topology(&["zone-a", "zone-b", "zone-c"], 6);
    let mut request = Request::new(3, 2);
    let fresh = solve_checked(&topology, &request, &[]);
    let running = as_current(&fresh);
    let (down, current) = lose_zone(&topology, &running, "zone-a");

    let err = solve(&down, &request, &current).expect_err("3 members cannot spread over 2 zones");
    assert_eq!(err.cause, Cause::NotEnoughZones);
    assert!(
        err.reason
            .starts_with("each shard needs 3 members in distinct zones but only 2 zones"),
        "{}",
        err.reason
    );
    assert!(
        err.reason.contains("zone-a (0 free: 6 not ready)"),
        "{}",
        err.reason
    );

    request.spread = Spread::Preferred;
    let degraded = solve_checked(&down, &request, &current);
    assert!(degraded.spread_relaxed);
    assert_kept(
        &running,
        &degraded,
        &[
            "zone-a-0", "zone-a-1", "zone-a-2", "zone-a-3", "zone-a-4", "zone-a-5",
        ],
    );
    assert_eq!(count(&degraded, "create"), 3);
    assert!(!degraded.zone_loss_safe);

    // The zone returns: one member per shard moves back, spread is strict again.
    let back = solve_checked(&topology, &request, &as_current(&degraded));
    assert!(!back.spread_relaxed);
    assert_eq!(count(&back, "create"), 3);
    assert_eq!(count(&back, "remove"), 3);
    for shard in &back.shards {
        let mut zones: Vec<&str> = shard.members.iter().map(|m| m.zone.as_str()).collect();
        zones.sort_unstable();
        assert_eq!(zones, vec!["zone-a", "zone-b", "zone-c"]);
    }
}

#[test]
fn node_loss_replaces_only_its_member() {
    let topology = even_topology(&["zone-a", "zone-b", "zone-c"], 6);
    let request = Request::new(6, 1);
    let fresh = solve_checked(&topology, &request, &[]);
    let running = as_current(&fresh);
    let leader = running
        .iter()
        .find(|m| m.role == Role::Leader)
        .cloned()
        .expect("a leader");

    let mut cordoned = topology.clone();
    for n in cordoned.nodes.iter_mut().filter(|n| n.name == leader.node) {
        n.status = NodeStatus::Cordoned;
    }
    let plan = solve_checked(&cordoned, &request, &running);
    assert_kept(&running, &plan, &[leader.node.as_str()]);
    assert_eq!(count(&plan, "create"), 1);
    assert_eq!(count(&plan, "remove"), 1);
    // The healthy member on the cordoned node leaves only after its replacement exists.
    let create_at = plan
        .changes
        .iter()
        .position(|c| matches!(c, Change::Create { .. }));
    let remove_at = plan
        .changes
        .iter()
        .position(|c| matches!(c, Change::Remove { .. }));
    assert!(create_at < remove_at, "{:#?}", plan.changes);
    match &plan.changes[remove_at.unwrap_or(0)] {
        Change::Remove { reason, .. } => assert!(reason.contains("cordoned"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unhealthy_member_is_replaced_first() {
    let topology = even_topology(&["zone-a", "zone-b", "zone-c"], 2);
    let request = Request::new(3, 1);
    let fresh = solve_checked(&topology, &request, &[]);
    let mut current = as_current(&fresh);
    current[1].healthy = false;
    let plan = solve_checked(&topology, &request, &current);
    match plan.changes.first() {
        Some(Change::Remove { node, reason, .. }) => {
            assert_eq!(node, &current[1].node);
            assert!(reason.contains("unhealthy"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&plan, "create"), 1);
}

#[test]
fn scale_leaders_up_and_down() {
    let topology = even_topology(&["zone-a", "zone-b", "zone-c"], 6);
    let three = solve_checked(&topology, &Request::new(3, 1), &[]);
    let running = as_current(&three);

    let up = solve_checked(&topology, &Request::new(5, 1), &running);
    assert_kept(&running, &up, &[]);
    assert_eq!(count(&up, "remove"), 0);
    assert_eq!(count(&up, "create"), 4);
    let new_leaders: Vec<&Change> = up
        .changes
        .iter()
        .filter(|c| {
            matches!(
                c,
                Change::Create {
                    role: Role::Leader,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(new_leaders.len(), 2);

    let running5 = as_current(&up);
    let down = solve_checked(&topology, &Request::new(3, 1), &running5);
    assert_eq!(count(&down, "create"), 0, "{:#?}", down.changes);
    for change in &down.changes {
        if let Change::Remove { shard, .. } = change {
            assert!(*shard >= 3, "{change:?}");
        }
    }
    assert_eq!(count(&down, "remove"), 4);
}

#[test]
fn scale_followers_up_and_down() {
    let topology = even_topology(&["zone-a", "zone-b", "zone-c"], 6);
    let one = solve_checked(&topology, &Request::new(4, 1), &[]);
    let running = as_current(&one);

    let two = solve_checked(&topology, &Request::new(4, 2), &running);
    assert_kept(&running, &two, &[]);
    assert_eq!(
        (
            count(&two, "create"),
            count(&two, "remove"),
            count(&two, "failover")
        ),
        (4, 0, 0)
    );

    let back = solve_checked(&topology, &Request::new(4, 1), &as_current(&two));
    assert_eq!(
        (
            count(&back, "create"),
            count(&back, "remove"),
            count(&back, "failover")
        ),
        (0, 4, 0)
    );
    for change in &back.changes {
        assert!(
            matches!(
                change,
                Change::Remove {
                    role: Role::Follower,
                    ..
                }
            ),
            "{change:?}"
        );
    }
}

#[test]
fn four_leaders_over_three_zones_are_not_zone_loss_safe() {
    let topology = even_topology(&["zone-a", "zone-b", "zone-c"], 6);
    let four = solve_checked(&topology, &Request::new(4, 1), &[]);
    assert!(!four.zone_loss_safe);
    assert!(
        four.zone_loss_reason.contains("leaves 2 of 4 leaders"),
        "{}",
        four.zone_loss_reason
    );
    assert!(
        four.zone_loss_reason.contains("5 leaders"),
        "{}",
        four.zone_loss_reason
    );
    let five = solve_checked(&topology, &Request::new(5, 1), &[]);
    assert!(five.zone_loss_safe, "{}", five.zone_loss_reason);
}

#[test]
fn explains_too_few_zones_like_an_sre_would() {
    let topology = Topology {
        nodes: vec![
            node("n1", "zone-a", 110),
            node("n2", "zone-a", 110),
            node("n3", "zone-b", 110),
        ],
    };
    let err = solve(&topology, &Request::new(1, 2), &[]).expect_err("two zones only");
    assert_eq!(
        err.reason,
        "each shard needs 3 members in distinct zones but only 2 zones have schedulable nodes with free slots: zone-a (2 free), zone-b (1 free)"
    );
}

#[test]
fn leader_cap_obstacle_names_the_small_zone() {
    let mut request = Request::new(6, 1);
    request.one_member_per_node = false;
    let topology = Topology {
        nodes: vec![
            node("a1", "zone-a", 50),
            node("b1", "zone-b", 50),
            node("c1", "zone-c", 1),
        ],
    };
    let err = solve(&topology, &request, &[]).expect_err("zone-c fits one leader");
    assert_eq!(err.cause, Cause::LeaderSpread);
    assert!(
        err.reason.contains("zone-c has room for only 1"),
        "{}",
        err.reason
    );
    request.spread = Spread::Preferred;
    let relaxed = solve_checked(&topology, &request, &[]);
    assert!(relaxed.spread_relaxed);
}

#[test]
fn unlabeled_nodes_are_not_used_under_required_spread() {
    let mut topology = even_topology(&["zone-a", "zone-b"], 2);
    let mut bare = node("bare", "", 110);
    bare.zone = None;
    topology.nodes.push(bare);
    let plan = solve_checked(&topology, &Request::new(2, 1), &[]);
    assert!(
        plan.shards
            .iter()
            .flat_map(|s| &s.members)
            .all(|m| m.node != "bare")
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("without the zone label")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn resource_requests_limit_members_per_node() {
    let mut request = Request::new(3, 1);
    request.one_member_per_node = false;
    request.member_resources = Resources {
        cpu_millis: 2000,
        memory_bytes: 4 << 30,
    };
    let mut topology = Topology {
        nodes: vec![node("a1", "zone-a", 110), node("b1", "zone-b", 110)],
    };
    for n in &mut topology.nodes {
        n.capacity.cpu_millis = 4000;
        n.capacity.memory_bytes = 16 << 30;
    }
    // 2 members per node by CPU, 3 shards need 3 per zone.
    let err = solve(&topology, &request, &[]).expect_err("cpu bound");
    assert_eq!(err.cause, Cause::NotEnoughCapacity);
    topology.nodes.push(node("a2", "zone-a", 110));
    topology.nodes.push(node("b2", "zone-b", 110));
    solve_checked(&topology, &request, &[]);
}

#[test]
fn hundreds_of_shards_survive_a_zone_loss() {
    let topology = even_topology(&["zone-a", "zone-b", "zone-c", "zone-d"], 100);
    let request = Request::new(100, 2);
    let fresh = solve_checked(&topology, &request, &[]);
    let running = as_current(&fresh);
    let (down, current) = lose_zone(&topology, &running, "zone-b");
    let degraded = solve_checked(&down, &request, &current);
    let lost = running
        .iter()
        .filter(|m| m.node.starts_with("zone-b"))
        .count();
    assert_eq!(count(&degraded, "create"), lost);
}
