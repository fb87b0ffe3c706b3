//! Test helpers: builders, random topologies, an independent checker of every invariant, a
//! simulator that applies a plan's changes, and a brute-force oracle for small cases.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use redis_scheduler::{
    Capacity, Change, CurrentMember, Node, NodeStatus, Placement, Request, Role, Spread, Topology,
};

/// A schedulable node with `pods` slots.
pub fn node(name: &str, zone: &str, pods: u32) -> Node {
    Node {
        name: name.to_string(),
        zone: Some(zone.to_string()),
        status: NodeStatus::Schedulable,
        capacity: Capacity {
            pods,
            cpu_millis: 64_000,
            memory_bytes: 256 << 30,
        },
    }
}

/// `per_zone` schedulable nodes of 110 pods in each zone, named `<zone>-<i>`.
pub fn even_topology(zones: &[&str], per_zone: usize) -> Topology {
    let mut nodes = Vec::new();
    for zone in zones {
        for i in 0..per_zone {
            nodes.push(node(&format!("{zone}-{i}"), zone, 110));
        }
    }
    Topology { nodes }
}

/// The placement as current members, all healthy.
pub fn as_current(placement: &Placement) -> Vec<CurrentMember> {
    placement
        .shards
        .iter()
        .flat_map(|s| {
            s.members.iter().map(move |m| CurrentMember {
                shard: s.index,
                role: m.role,
                node: m.node.clone(),
                healthy: true,
            })
        })
        .collect()
}

/// Slots of a node for a request, computed independently of the library.
pub fn slots(node: &Node, request: &Request) -> u64 {
    if node.status != NodeStatus::Schedulable {
        return 0;
    }
    let mut fit = u64::from(node.capacity.pods);
    if let Some(by_cpu) = node
        .capacity
        .cpu_millis
        .checked_div(request.member_resources.cpu_millis)
    {
        fit = fit.min(by_cpu);
    }
    if let Some(by_memory) = node
        .capacity
        .memory_bytes
        .checked_div(request.member_resources.memory_bytes)
    {
        fit = fit.min(by_memory);
    }
    if request.one_member_per_node {
        fit = fit.min(1);
    }
    fit
}

/// Nodes by name (first wins, as documented).
pub fn nodes_by_name(topology: &Topology) -> HashMap<&str, &Node> {
    let mut map = HashMap::new();
    for n in &topology.nodes {
        map.entry(n.name.as_str()).or_insert(n);
    }
    map
}

/// Zones Required spread counts: labeled zones with at least one slot.
pub fn zones_with_capacity(topology: &Topology, request: &Request) -> BTreeMap<String, u64> {
    let mut zones = BTreeMap::new();
    for n in nodes_by_name(topology).values() {
        if let Some(z) = &n.zone {
            let s = slots(n, request);
            if s > 0 {
                *zones.entry(z.clone()).or_insert(0) += s;
            }
        }
    }
    zones
}

/// Applies `changes` to `current` as the controller would, failing on any impossible step.
/// Returns the resulting members as (shard, node) → role.
pub fn apply(
    current: &[CurrentMember],
    changes: &[Change],
) -> Result<BTreeMap<(u32, String), Role>, String> {
    let mut state: BTreeMap<(u32, String), (Role, bool)> = BTreeMap::new();
    for m in current {
        state
            .entry((m.shard, m.node.clone()))
            .or_insert((m.role, m.healthy));
    }
    for change in changes {
        match change {
            Change::Remove { shard, node, .. } => {
                if state.remove(&(*shard, node.clone())).is_none() {
                    return Err(format!("remove of missing member {shard}@{node}"));
                }
            }
            Change::Create {
                shard, node, role, ..
            } => {
                if state
                    .insert((*shard, node.clone()), (*role, true))
                    .is_some()
                {
                    return Err(format!("create of existing member {shard}@{node}"));
                }
                if *role == Role::Leader && state.iter().any(|((s, n), _)| s == shard && n != node)
                {
                    return Err(format!("create as leader in non-empty shard {shard}"));
                }
            }
            Change::Failover { shard, to, .. } => {
                if !state.contains_key(&(*shard, to.clone())) {
                    return Err(format!("failover to missing member {shard}@{to}"));
                }
                for ((s, n), (role, _)) in state.iter_mut() {
                    if s == shard {
                        *role = if n == to {
                            Role::Leader
                        } else {
                            Role::Follower
                        };
                    }
                }
            }
        }
    }
    if let Some(((s, n), _)) = state.iter().find(|(_, (_, healthy))| !healthy) {
        return Err(format!("unhealthy member {s}@{n} survives the plan"));
    }
    Ok(state.into_iter().map(|(k, (role, _))| (k, role)).collect())
}

/// Checks every documented invariant of `placement` independently of the library.
pub fn check(
    topology: &Topology,
    request: &Request,
    current: &[CurrentMember],
    placement: &Placement,
) -> Result<(), String> {
    let by_name = nodes_by_name(topology);
    let shards = request.leaders as usize;
    let per_shard = request.followers_per_leader as usize + 1;
    if placement.shards.len() != shards {
        return Err(format!(
            "{} shards, wanted {shards}",
            placement.shards.len()
        ));
    }
    // Preferred spread owes Required's guarantees unless it says it relaxed them.
    let required = request.spread == Spread::Required || !placement.spread_relaxed;
    let mut per_node: HashMap<&str, u64> = HashMap::new();
    let mut leaders: BTreeMap<String, u64> = BTreeMap::new();
    for (i, shard) in placement.shards.iter().enumerate() {
        if shard.index as usize != i {
            return Err(format!("shard {i} has index {}", shard.index));
        }
        if shard.members.len() != per_shard {
            return Err(format!(
                "shard {i} has {} members, wanted {per_shard}",
                shard.members.len()
            ));
        }
        for (j, m) in shard.members.iter().enumerate() {
            let want = if j == 0 { Role::Leader } else { Role::Follower };
            if m.role != want {
                return Err(format!("shard {i} member {j} is {:?}", m.role));
            }
            let n = by_name
                .get(m.node.as_str())
                .ok_or(format!("shard {i} on unknown node {}", m.node))?;
            if slots(n, request) == 0 {
                return Err(format!("shard {i} on node {} without slots", m.node));
            }
            if n.zone.clone().unwrap_or_default() != m.zone {
                return Err(format!(
                    "shard {i} member on {} reports zone {}",
                    m.node, m.zone
                ));
            }
            if required && n.zone.is_none() {
                return Err(format!(
                    "shard {i} on unlabeled node {} under required spread",
                    m.node
                ));
            }
            *per_node.entry(m.node.as_str()).or_insert(0) += 1;
        }
        let nodes: BTreeSet<&str> = shard.members.iter().map(|m| m.node.as_str()).collect();
        if nodes.len() != per_shard {
            return Err(format!("shard {i} has two members on one node"));
        }
        if required {
            let zones: BTreeSet<&str> = shard.members.iter().map(|m| m.zone.as_str()).collect();
            if zones.len() != per_shard {
                return Err(format!("shard {i} has two members in one zone"));
            }
        }
        *leaders.entry(shard.members[0].zone.clone()).or_insert(0) += 1;
    }
    for (name, count) in &per_node {
        let n = by_name[name];
        if *count > slots(n, request) {
            return Err(format!(
                "node {name} holds {count} members, has {} slots",
                slots(n, request)
            ));
        }
    }
    if required && shards > 0 {
        let z = zones_with_capacity(topology, request).len() as u64;
        let cap = (shards as u64).div_ceil(z);
        if let Some((zone, count)) = leaders.iter().find(|(_, c)| **c > cap) {
            return Err(format!("zone {zone} holds {count} leaders, cap {cap}"));
        }
    }
    // Zone loss safety, recomputed.
    let safe = shards > 0
        && per_shard > 1
        && placement.shards.iter().all(|s| {
            s.members
                .iter()
                .all(|m| by_name[m.node.as_str()].zone.is_some())
        })
        && placement
            .shards
            .iter()
            .all(|s| s.members[1..].iter().any(|f| f.zone != s.members[0].zone))
        && leaders.values().all(|&l| 2 * l < shards as u64);
    if safe != placement.zone_loss_safe {
        return Err(format!(
            "zoneLossSafe {} but recomputed {safe}",
            placement.zone_loss_safe
        ));
    }
    // The changes lead from current to the placement.
    let result = apply(current, &placement.changes)?;
    let planned: BTreeMap<(u32, String), Role> = placement
        .shards
        .iter()
        .flat_map(|s| {
            s.members
                .iter()
                .map(move |m| ((s.index, m.node.clone()), m.role))
        })
        .collect();
    if result != planned {
        return Err(format!("changes lead to {result:?}, plan is {planned:?}"));
    }
    Ok(())
}

/// Whether any valid placement exists, by exhaustive search over node sets per shard.
pub fn brute_force_exists(topology: &Topology, request: &Request) -> bool {
    let by_name = nodes_by_name(topology);
    let mut names: Vec<&str> = by_name.keys().copied().collect();
    names.sort_unstable();
    let required = request.spread == Spread::Required;
    let nodes: Vec<(&str, Option<&str>, u64)> = names
        .iter()
        .map(|n| (*n, by_name[n].zone.as_deref(), slots(by_name[n], request)))
        .filter(|(_, zone, s)| *s > 0 && (!required || zone.is_some()))
        .collect();
    let shards = request.leaders as usize;
    let per_shard = request.followers_per_leader as usize + 1;
    if shards == 0 {
        return true;
    }
    // Every way to seat one shard: a set of nodes and which one leads.
    let mut configs: Vec<(Vec<usize>, usize)> = Vec::new();
    let mut combo = Vec::new();
    combinations(nodes.len(), per_shard, 0, &mut combo, &mut |set| {
        let zones: BTreeSet<Option<&str>> = set.iter().map(|&i| nodes[i].1).collect();
        if required && zones.len() != set.len() {
            return;
        }
        let leader_options = if required { set.len() } else { 1 };
        for leader in 0..leader_options {
            configs.push((set.to_vec(), leader));
        }
    });
    let cap = if required {
        let z = nodes
            .iter()
            .filter_map(|n| n.1)
            .collect::<BTreeSet<_>>()
            .len() as u64;
        if z == 0 {
            return false;
        }
        (shards as u64).div_ceil(z)
    } else {
        u64::MAX
    };
    let mut used = vec![0u64; nodes.len()];
    let mut leaders: BTreeMap<Option<&str>, u64> = BTreeMap::new();
    search(&nodes, &configs, shards, 0, cap, &mut used, &mut leaders)
}

fn combinations(
    n: usize,
    k: usize,
    start: usize,
    combo: &mut Vec<usize>,
    visit: &mut dyn FnMut(&[usize]),
) {
    if combo.len() == k {
        visit(combo);
        return;
    }
    for i in start..n {
        combo.push(i);
        combinations(n, k, i + 1, combo, visit);
        combo.pop();
    }
}

fn search<'a>(
    nodes: &[(&'a str, Option<&'a str>, u64)],
    configs: &[(Vec<usize>, usize)],
    left: usize,
    from: usize,
    cap: u64,
    used: &mut Vec<u64>,
    leaders: &mut BTreeMap<Option<&'a str>, u64>,
) -> bool {
    if left == 0 {
        return true;
    }
    // Shards are interchangeable: choose configurations in non-decreasing order.
    for c in from..configs.len() {
        let (set, leader) = &configs[c];
        if set.iter().any(|&i| used[i] >= nodes[i].2) {
            continue;
        }
        let lz = nodes[set[*leader]].1;
        if *leaders.get(&lz).unwrap_or(&0) >= cap {
            continue;
        }
        for &i in set {
            used[i] += 1;
        }
        *leaders.entry(lz).or_insert(0) += 1;
        let ok = search(nodes, configs, left - 1, c, cap, used, leaders);
        for &i in set {
            used[i] -= 1;
        }
        *leaders.entry(lz).or_insert(1) -= 1;
        if ok {
            return true;
        }
    }
    false
}

/// A node status: mostly schedulable.
pub fn status() -> impl Strategy<Value = NodeStatus> {
    prop_oneof![
        8 => Just(NodeStatus::Schedulable),
        1 => Just(NodeStatus::NotReady),
        1 => Just(NodeStatus::Cordoned),
        1 => Just(NodeStatus::Tainted { taint: "dedicated=infra:NoSchedule".to_string() }),
    ]
}

/// A small topology for brute force: 1..=4 zones of 1..=2 nodes with 0..=2 pods, at most 7
/// nodes, tilted towards cases near the edge of feasibility.
pub fn small_topology() -> impl Strategy<Value = Topology> {
    let pods = prop_oneof![1 => Just(0u32), 4 => Just(1), 3 => Just(2)];
    let zone = prop::collection::vec((status(), pods), 1..=2);
    (
        prop::collection::vec(zone, 1..=4),
        prop::option::weighted(0.1, (status(), 1..=2u32)),
    )
        .prop_map(|(zones, unlabeled)| {
            let mut nodes = Vec::new();
            for (z, list) in zones.into_iter().enumerate() {
                let zone = format!("zone-{}", (b'a' + z as u8) as char);
                for (i, (status, pods)) in list.into_iter().enumerate() {
                    let mut n = node(&format!("{zone}-n{i}"), &zone, pods);
                    n.status = status;
                    nodes.push(n);
                }
            }
            if let Some((status, pods)) = unlabeled {
                let mut n = node("bare-n0", "", pods);
                n.zone = None;
                n.status = status;
                nodes.push(n);
            }
            Topology { nodes }
        })
}

/// A random topology: 1..=`max_zones` zones, 0..=`max_per_zone` nodes in each (uneven), pods
/// 0..=`max_pods`, some unschedulable, occasionally an unlabeled node.
pub fn topology(
    max_zones: usize,
    max_per_zone: usize,
    max_pods: u32,
) -> impl Strategy<Value = Topology> {
    let pods = move || prop_oneof![1 => Just(0), 5 => 1..=max_pods.max(1)];
    let zone = (0..=max_per_zone)
        .prop_flat_map(move |count| prop::collection::vec((status(), pods()), count));
    (
        prop::collection::vec(zone, 1..=max_zones),
        prop::option::weighted(0.15, (status(), pods())),
    )
        .prop_map(|(zones, unlabeled)| {
            let mut nodes = Vec::new();
            for (z, list) in zones.into_iter().enumerate() {
                let zone = format!("zone-{}", (b'a' + z as u8) as char);
                for (i, (status, pods)) in list.into_iter().enumerate() {
                    let mut n = node(&format!("{zone}-n{i}"), &zone, pods);
                    n.status = status;
                    nodes.push(n);
                }
            }
            if let Some((status, pods)) = unlabeled {
                let mut n = node("bare-n0", "", pods);
                n.zone = None;
                n.status = status;
                nodes.push(n);
            }
            Topology { nodes }
        })
}

/// A request with `leaders` in range, followers 0..=`max_followers`.
pub fn request(max_leaders: u32, max_followers: u32) -> impl Strategy<Value = Request> {
    (
        1..=max_leaders,
        0..=max_followers,
        any::<bool>(),
        prop_oneof![3 => Just(Spread::Required), 1 => Just(Spread::Preferred)],
    )
        .prop_map(|(l, f, one, spread)| {
            let mut r = Request::new(l, f);
            r.one_member_per_node = one;
            r.spread = spread;
            r
        })
}

/// Random current members over the topology's nodes and one missing node, with shards up to
/// `max_shard`, unique per (shard, node).
pub fn current(
    topology: &Topology,
    max_shard: u32,
) -> impl Strategy<Value = Vec<CurrentMember>> + use<> {
    let mut names: Vec<String> = topology.nodes.iter().map(|n| n.name.clone()).collect();
    names.push("gone-n0".to_string());
    let entries = prop::collection::vec(
        (
            0..=max_shard,
            prop::sample::select(names),
            any::<bool>(),
            prop::bool::weighted(0.85),
        ),
        0..12,
    );
    entries.prop_map(|list| {
        let mut seen = BTreeSet::new();
        list.into_iter()
            .filter(|(s, n, _, _)| seen.insert((*s, n.clone())))
            .map(|(shard, node, leader, healthy)| CurrentMember {
                shard,
                role: if leader { Role::Leader } else { Role::Follower },
                node,
                healthy,
            })
            .collect()
    })
}
