//! Preferred spread when Required spread is impossible: members of a shard may share a zone
//! but never a node, and leaders are spread as evenly as the members allow.
//!
//! Members that may stay do (the leader first, then followers in zones the shard does not use
//! yet). Missing members go, shard by shard, to the zone where the shard has the fewest
//! members, then the zone with the fewest members overall, on its roomiest node. Should that
//! greedy fill get stuck, a maximum flow (petgraph's `dinics`) over `shard → node` finds the
//! missing members wherever the staying members leave room. Only if the staying members block
//! every completion does the solver start over from an empty cluster, filling shards
//! "tightest node first": each shard takes the nodes with the most members still to place,
//! which provably succeeds whenever the nodes offer `Σ min(slots, L) ≥ L·M`. Leaders are then picked by a minimum-cost flow like Required's
//! stage 1, over the zones each shard has members in, with the ⌈L / Z⌉ cap made soft.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use petgraph::algo::dinics;
use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};

use crate::assignment::{Assignment, NodePicker, Origin, Seat, ShardSeats, adopt_all};
use crate::current::{CurrentView, Kept};
use crate::error::{Cause, Unsatisfiable};
use crate::feasibility;
use crate::flow::FlowNetwork;
use crate::inventory::Inventory;
use crate::model::{Request, Role};
use crate::required::{FAILOVER, UNEVEN};

/// Cost of a leader beyond the soft cap: more than any set of failovers a shard could need.
const OVER_CAP: i64 = 1_000;

/// Solves under Preferred spread, allowing shared zones.
pub(crate) fn solve(
    inventory: &Inventory<'_>,
    request: &Request,
    view: &CurrentView<'_>,
) -> Result<Assignment, Unsatisfiable> {
    feasibility::relaxed(inventory, request)?;
    let zones_with_room = inventory
        .zones
        .iter()
        .filter(|z| z.slots > 0)
        .count()
        .max(1);
    let leader_cap = u32::try_from(
        u64::from(request.leaders).div_ceil(u64::try_from(zones_with_room).unwrap_or(1)),
    )
    .unwrap_or(u32::MAX);
    if request.leaders == 0 {
        return Ok(Assignment {
            shards: Vec::new(),
            leader_cap,
            relaxed: false,
        });
    }
    let per_shard = usize::try_from(request.members_per_shard()).unwrap_or(usize::MAX);
    let kept = trim(
        view.keepable(inventory, request, false, |_| true),
        per_shard,
    );
    let members = greedy_fill(inventory, view, &kept, per_shard)
        .or_else(|| complete_by_max_flow(inventory, &kept, per_shard))
        .or_else(|| tightest_first(inventory, request, per_shard))
        .ok_or_else(|| {
            Unsatisfiable::new(
                Cause::Internal,
                "internal error: no relaxed placement found although one exists; please report this input",
            )
        })?;
    let mut members = members;
    adopt_all(view, &mut members);
    let shards = pick_leaders(inventory, view, request, members, leader_cap);
    Ok(Assignment {
        shards,
        leader_cap,
        relaxed: true,
    })
}

/// At most `per_shard` members per shard: the leader, then followers in new zones, then the
/// rest, each group by node name.
fn trim(kept: Vec<Vec<Kept>>, per_shard: usize) -> Vec<Vec<Kept>> {
    kept.into_iter()
        .map(|list| {
            let mut chosen: Vec<Kept> = Vec::with_capacity(per_shard);
            let mut rest = Vec::new();
            let (leaders, followers): (Vec<Kept>, Vec<Kept>) =
                list.into_iter().partition(|k| k.leader);
            for k in leaders.into_iter().chain(followers) {
                if chosen.len() < per_shard && !chosen.iter().any(|c| c.zone == k.zone) {
                    chosen.push(k);
                } else {
                    rest.push(k);
                }
            }
            for k in rest {
                if chosen.len() < per_shard {
                    chosen.push(k);
                }
            }
            chosen
        })
        .collect()
}

/// Keeps `kept` and adds members shard by shard; `None` when a shard finds no free node.
fn greedy_fill(
    inventory: &Inventory<'_>,
    view: &CurrentView<'_>,
    kept: &[Vec<Kept>],
    per_shard: usize,
) -> Option<Vec<Vec<Seat>>> {
    let staying: Vec<Seat> = kept.iter().flatten().map(|k| Seat::from(*k)).collect();
    let mut picker = NodePicker::new(inventory, view, &staying);
    let mut zone_members = vec![0u64; inventory.zones.len()];
    for seat in &staying {
        zone_members[inventory.zone_of(seat.node)] += 1;
    }
    let mut result = Vec::with_capacity(kept.len());
    for list in kept {
        let mut seats: Vec<Seat> = list.iter().map(|k| Seat::from(*k)).collect();
        let mut shard_in_zone = vec![0u64; inventory.zones.len()];
        for seat in &seats {
            shard_in_zone[inventory.zone_of(seat.node)] += 1;
        }
        while seats.len() < per_shard {
            let used: Vec<usize> = seats.iter().map(|s| s.node).collect();
            let zone = (0..inventory.zones.len())
                .filter(|&z| picker.has_room(z, &used))
                .min_by_key(|&z| {
                    (
                        shard_in_zone[z],
                        zone_members[z],
                        Reverse(picker.zone_room(z)),
                        z,
                    )
                })?;
            let node = picker.take(zone, &used)?;
            seats.push(Seat {
                node,
                origin: Origin::New,
            });
            shard_in_zone[zone] += 1;
            zone_members[zone] += 1;
        }
        result.push(seats);
    }
    Some(result)
}

/// Completes the shards around the members that stay with a maximum flow
/// `source → shard (members missing) → node (1, nodes the shard does not use) → sink (room)`;
/// `None` when they block every completion.
fn complete_by_max_flow(
    inventory: &Inventory<'_>,
    kept: &[Vec<Kept>],
    per_shard: usize,
) -> Option<Vec<Vec<Seat>>> {
    let mut room: Vec<u64> = inventory.nodes.iter().map(|n| u64::from(n.slots)).collect();
    for k in kept.iter().flatten() {
        room[k.node] = room[k.node].saturating_sub(1);
    }
    let mut graph: DiGraph<(), u64> = DiGraph::new();
    let source = graph.add_node(());
    let sink = graph.add_node(());
    let node_vertex: Vec<Option<NodeIndex>> = room
        .iter()
        .map(|&r| {
            (r > 0).then(|| {
                let v = graph.add_node(());
                graph.add_edge(v, sink, r);
                v
            })
        })
        .collect();
    let mut wanted = 0u64;
    let mut arcs: Vec<(usize, usize, EdgeIndex)> = Vec::new();
    for (shard, list) in kept.iter().enumerate() {
        let missing = per_shard.saturating_sub(list.len());
        if missing == 0 {
            continue;
        }
        let vertex = graph.add_node(());
        graph.add_edge(source, vertex, u64::try_from(missing).ok()?);
        wanted += u64::try_from(missing).ok()?;
        for (node, target) in node_vertex.iter().enumerate() {
            if let Some(target) = target
                && !list.iter().any(|k| k.node == node)
            {
                arcs.push((shard, node, graph.add_edge(vertex, *target, 1)));
            }
        }
    }
    let (sent, flows) = dinics(&graph, source, sink);
    if sent < wanted {
        return None;
    }
    let mut result: Vec<Vec<Seat>> = kept
        .iter()
        .map(|list| list.iter().map(|k| Seat::from(*k)).collect())
        .collect();
    for (shard, node, edge) in arcs {
        if flows.get(edge.index()).is_some_and(|&f| f > 0) {
            result[shard].push(Seat {
                node,
                origin: Origin::New,
            });
        }
    }
    Some(result)
}

/// A fresh placement that exists whenever `Σ min(slots, L) ≥ L·M`: decide how many members
/// every node gets, then give each shard the `M` nodes with the most members left to place.
fn tightest_first(
    inventory: &Inventory<'_>,
    request: &Request,
    per_shard: usize,
) -> Option<Vec<Vec<Seat>>> {
    let shards = u64::from(request.leaders);
    let mut to_place = shards * u64::try_from(per_shard).ok()?;
    let mut order: Vec<usize> = (0..inventory.nodes.len()).collect();
    order.sort_by_key(|&n| (Reverse(u64::from(inventory.slots(n)).min(shards)), n));
    let mut heap = BinaryHeap::new();
    for n in order {
        let take = u64::from(inventory.slots(n)).min(shards).min(to_place);
        if take > 0 {
            heap.push((take, Reverse(n)));
            to_place -= take;
        }
    }
    if to_place > 0 {
        return None;
    }
    let mut result = Vec::with_capacity(usize::try_from(shards).ok()?);
    for _ in 0..shards {
        let mut taken = Vec::with_capacity(per_shard);
        for _ in 0..per_shard {
            taken.push(heap.pop()?);
        }
        let seats = taken
            .iter()
            .map(|&(_, Reverse(node))| Seat {
                node,
                origin: Origin::New,
            })
            .collect();
        for (left, node) in taken {
            if left > 1 {
                heap.push((left - 1, node));
            }
        }
        result.push(seats);
    }
    Some(result)
}

/// Chooses every shard's leader among its members: keep the current leader, else fail over
/// to a surviving follower, else to a new member; at most ⌈L / Z⌉ per zone when possible.
fn pick_leaders(
    inventory: &Inventory<'_>,
    view: &CurrentView<'_>,
    request: &Request,
    members: Vec<Vec<Seat>>,
    leader_cap: u32,
) -> Vec<ShardSeats> {
    let zone_count = inventory.zones.len();
    let seat_cost = |seat: &Seat, shard_has_kept: bool| match seat.origin {
        Origin::Kept(m) if view.members.get(m).is_some_and(|p| p.role == Role::Leader) => 0,
        Origin::Kept(_) => FAILOVER,
        Origin::New if shard_has_kept => FAILOVER + 1,
        Origin::New => 0,
    };
    let mut types: BTreeMap<Vec<Option<i64>>, Vec<usize>> = BTreeMap::new();
    for (shard, seats) in members.iter().enumerate() {
        let has_kept = seats.iter().any(|s| matches!(s.origin, Origin::Kept(_)));
        let mut costs: Vec<Option<i64>> = vec![None; zone_count];
        for seat in seats {
            let zone = inventory.zone_of(seat.node);
            let cost = seat_cost(seat, has_kept);
            if let Some(slot) = costs.get_mut(zone) {
                *slot = Some(slot.map_or(cost, |c: i64| c.min(cost)));
            }
        }
        types.entry(costs).or_default().push(shard);
    }

    let shards = u64::from(request.leaders);
    let zones_with_room = u64::try_from(inventory.zones.iter().filter(|z| z.slots > 0).count())
        .unwrap_or(1)
        .max(1);
    let even = shards / zones_with_room;
    let cap = u64::from(leader_cap);
    let mut net = FlowNetwork::new();
    let source = net.add_vertex();
    let sink = net.add_vertex();
    let zones: Vec<NodeIndex> = (0..zone_count).map(|_| net.add_vertex()).collect();
    for &vertex in &zones {
        net.add_arc(vertex, sink, even.min(cap), 0);
        net.add_arc(vertex, sink, cap - even.min(cap), UNEVEN);
        net.add_arc(vertex, sink, shards, OVER_CAP);
    }
    let mut arcs = Vec::with_capacity(types.len());
    for (costs, list) in &types {
        let count = u64::try_from(list.len()).unwrap_or(u64::MAX);
        let vertex = net.add_vertex();
        net.add_arc(source, vertex, count, 0);
        let zone_arcs: Vec<_> = costs
            .iter()
            .zip(&zones)
            .map(|(cost, &zone)| cost.map(|c| net.add_arc(vertex, zone, count, c)))
            .collect();
        arcs.push(zone_arcs);
    }
    net.min_cost_flow(source, sink, shards);

    let mut lead_zone = vec![None; members.len()];
    for ((_, list), zone_arcs) in types.iter().zip(&arcs) {
        let mut shard_iter = list.iter();
        for (zone, arc) in zone_arcs.iter().enumerate() {
            let Some(arc) = arc else { continue };
            for _ in 0..net.flow(*arc) {
                if let Some(&shard) = shard_iter.next() {
                    lead_zone[shard] = Some(zone);
                }
            }
        }
    }

    members
        .into_iter()
        .zip(lead_zone)
        .map(|(mut seats, zone)| {
            let has_kept = seats.iter().any(|s| matches!(s.origin, Origin::Kept(_)));
            let best = seats
                .iter()
                .enumerate()
                .filter(|(_, s)| zone.is_none_or(|z| inventory.zone_of(s.node) == z))
                .min_by_key(|(_, s)| (seat_cost(s, has_kept), s.node))
                .map_or(0, |(i, _)| i);
            let leader = seats.remove(best.min(seats.len().saturating_sub(1)));
            seats.sort_by_key(|s| s.node);
            ShardSeats {
                leader,
                followers: seats,
            }
        })
        .collect()
}
