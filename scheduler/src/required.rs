//! Required spread: members of a shard in distinct zones, leaders at most ⌈L / Z⌉ per zone.
//!
//! Solved in three stages over the constraint graph, each a minimum-cost flow in which a
//! member that stays where it is costs nothing:
//!
//! 1. **Leaders.** `source → shard type → zone → sink`; a shard type groups the shards whose
//!    costs are identical (same zones holding their surviving leader and followers), so the
//!    network has a few dozen vertices even for thousands of shards. Arc costs: keep the
//!    current leader 0, fail over to a surviving follower in that zone [`FAILOVER`], create a
//!    member there [`CREATE`] (plus a failover and a removal when the shard already has
//!    members). Each zone admits at most `min(C, a_z)` leaders, the first `⌊L / Z⌋` at no cost
//!    and the rest at [`UNEVEN`], which spreads leaders as evenly as possible without ever
//!    outweighing a real change.
//! 2. **Followers.** Same network shape with the leader's zone excluded for each shard: a
//!    zone takes at most `a_z − l_z` followers, a surviving follower costs 0 and a new one
//!    [`CREATE`]; zones above an even share of members cost [`UNEVEN`]. Any leader choice of
//!    stage 1 leaves a feasible stage 2 (see `feasibility`), so the stages never dead-end.
//! 3. **Nodes.** Members that stay keep their node; new members take free slots in their zone.
//!
//! Types are split back into shards in shard order, so the result is deterministic.

use std::collections::BTreeMap;

use petgraph::graph::{EdgeIndex, NodeIndex};

use crate::assignment::{Assignment, NodePicker, Origin, Seat, ShardSeats};
use crate::current::{CurrentView, Kept};
use crate::error::{Cause, Unsatisfiable};
use crate::feasibility::{self, RequiredShape};
use crate::flow::FlowNetwork;
use crate::inventory::Inventory;
use crate::model::Request;

/// Cost of creating a member (moving data).
pub(crate) const CREATE: i64 = 100;
/// Cost of a graceful failover.
pub(crate) const FAILOVER: i64 = 10;
/// Cost of removing a member the shard would otherwise keep.
pub(crate) const REMOVE: i64 = 10;
/// Cost of one step away from the most even spread.
pub(crate) const UNEVEN: i64 = 1;

/// A planned member before new members get nodes.
#[derive(Debug, Clone, Copy)]
enum Choice {
    Stay(Kept),
    NewIn(usize),
}

/// Solves under Required spread.
pub(crate) fn solve(
    inventory: &Inventory<'_>,
    request: &Request,
    view: &CurrentView<'_>,
) -> Result<Assignment, Unsatisfiable> {
    let shape = feasibility::required(inventory, request)?;
    let leader_cap = u32::try_from(shape.leader_cap).unwrap_or(u32::MAX);
    if request.leaders == 0 {
        return Ok(Assignment {
            shards: Vec::new(),
            leader_cap,
            relaxed: false,
        });
    }
    let usable = |zone: usize| {
        inventory
            .zones
            .get(zone)
            .is_some_and(|z| z.labeled && z.slots > 0)
    };
    let kept = view.keepable(inventory, request, true, usable);
    let lead = leader_zones(&shape, &kept, request)?;
    let followers = follower_zones(&shape, &kept, &lead, request)?;

    let mut choices: Vec<(Choice, Vec<Choice>)> = Vec::with_capacity(kept.len());
    for ((list, &lead_pos), follower_pos) in kept.iter().zip(&lead).zip(&followers) {
        let pick = |pos: usize| {
            let zone = shape.zones.get(pos).copied().unwrap_or(0);
            list.iter()
                .find(|k| k.zone == zone)
                .map_or(Choice::NewIn(zone), |k| Choice::Stay(*k))
        };
        choices.push((
            pick(lead_pos),
            follower_pos.iter().map(|&p| pick(p)).collect(),
        ));
    }
    let shards = seat(inventory, view, &choices)?;
    Ok(Assignment {
        shards,
        leader_cap,
        relaxed: false,
    })
}

/// Stage 1: the zone (position in `shape.zones`) of every shard's leader.
fn leader_zones(
    shape: &RequiredShape,
    kept: &[Vec<Kept>],
    request: &Request,
) -> Result<Vec<usize>, Unsatisfiable> {
    let per_shard = usize::try_from(request.members_per_shard()).unwrap_or(usize::MAX);
    let mut types: BTreeMap<Vec<i64>, Vec<usize>> = BTreeMap::new();
    for (shard, list) in kept.iter().enumerate() {
        let costs = shape
            .zones
            .iter()
            .map(|&zone| match list.iter().find(|k| k.zone == zone) {
                Some(k) if k.leader => 0,
                Some(_) => FAILOVER,
                None => {
                    let failover = if list.is_empty() { 0 } else { FAILOVER };
                    let remove = if list.len() >= per_shard { REMOVE } else { 0 };
                    CREATE + failover + remove
                }
            })
            .collect();
        types.entry(costs).or_default().push(shard);
    }

    let shards = u64::from(request.leaders);
    let zone_count = u64::try_from(shape.zones.len()).unwrap_or(1).max(1);
    let even = shards / zone_count;
    let mut net = FlowNetwork::new();
    let source = net.add_vertex();
    let sink = net.add_vertex();
    let zones: Vec<NodeIndex> = shape.zones.iter().map(|_| net.add_vertex()).collect();
    for (&vertex, &usable) in zones.iter().zip(&shape.usable) {
        let cap = usable.min(shape.leader_cap);
        net.add_arc(vertex, sink, cap.min(even), 0);
        net.add_arc(vertex, sink, cap - cap.min(even), UNEVEN);
    }
    let arcs = type_arcs(
        &mut net,
        source,
        &zones,
        &types,
        |costs, _| costs.iter().map(|&c| Some(c)).collect(),
        1,
    );
    let sent = net.min_cost_flow(source, sink, shards).value;
    if sent != shards {
        return Err(internal(format!("placed only {sent} of {shards} leaders")));
    }

    let mut lead = vec![0usize; kept.len()];
    for ((_, members), arcs) in types.iter().zip(&arcs) {
        let mut shard_iter = members.iter();
        for (pos, arc) in arcs.iter().enumerate() {
            let Some(arc) = arc else { continue };
            for _ in 0..net.flow(*arc) {
                if let Some(&shard) = shard_iter.next() {
                    lead[shard] = pos;
                }
            }
        }
    }
    Ok(lead)
}

/// Stage 2: the zones (positions in `shape.zones`) of every shard's followers.
fn follower_zones(
    shape: &RequiredShape,
    kept: &[Vec<Kept>],
    lead: &[usize],
    request: &Request,
) -> Result<Vec<Vec<usize>>, Unsatisfiable> {
    let followers = u64::from(request.followers_per_leader);
    if followers == 0 {
        return Ok(vec![Vec::new(); kept.len()]);
    }
    let mut leaders_in = vec![0u64; shape.zones.len()];
    for &pos in lead {
        if let Some(count) = leaders_in.get_mut(pos) {
            *count += 1;
        }
    }
    // A type: the leader's zone, then per zone the cost of a follower there (None: excluded).
    let mut types: BTreeMap<(usize, Vec<Option<i64>>), Vec<usize>> = BTreeMap::new();
    for (shard, (list, &lead_pos)) in kept.iter().zip(lead).enumerate() {
        let costs = shape
            .zones
            .iter()
            .enumerate()
            .map(|(pos, &zone)| {
                (pos != lead_pos).then(|| {
                    if list.iter().any(|k| k.zone == zone) {
                        0
                    } else {
                        CREATE
                    }
                })
            })
            .collect();
        types.entry((lead_pos, costs)).or_default().push(shard);
    }

    let shards = u64::from(request.leaders);
    let zone_count = u64::try_from(shape.zones.len()).unwrap_or(1).max(1);
    let even_members = (shards * request.members_per_shard()).div_ceil(zone_count);
    let mut net = FlowNetwork::new();
    let source = net.add_vertex();
    let sink = net.add_vertex();
    let zones: Vec<NodeIndex> = shape.zones.iter().map(|_| net.add_vertex()).collect();
    for ((&vertex, &usable), &leaders) in zones.iter().zip(&shape.usable).zip(&leaders_in) {
        let room = usable.saturating_sub(leaders);
        let free = even_members.min(usable).saturating_sub(leaders).min(room);
        net.add_arc(vertex, sink, free, 0);
        net.add_arc(vertex, sink, room - free, UNEVEN);
    }
    let arcs = type_arcs(
        &mut net,
        source,
        &zones,
        &types,
        |(_, costs), _| costs.clone(),
        followers,
    );
    let wanted = shards * followers;
    let sent = net.min_cost_flow(source, sink, wanted).value;
    if sent != wanted {
        return Err(internal(format!(
            "placed only {sent} of {wanted} followers"
        )));
    }

    let mut result = vec![Vec::new(); kept.len()];
    for ((_, members), arcs) in types.iter().zip(&arcs) {
        // Column-major fill: a zone's run is at most one per row long, so rows get distinct
        // zones, and every row gets exactly F of them.
        let rows = members.len();
        let mut position = 0usize;
        for (pos, arc) in arcs.iter().enumerate() {
            let Some(arc) = arc else { continue };
            for _ in 0..net.flow(*arc) {
                if let Some(shard) = members.get(position % rows.max(1)) {
                    result[*shard].push(pos);
                }
                position += 1;
            }
        }
    }
    Ok(result)
}

/// Adds `source → type → zone` arcs for every type: the source arc carries `per_shard` units
/// per shard of the type, a zone arc at most one per shard. Returns the zone arcs per type.
fn type_arcs<K>(
    net: &mut FlowNetwork,
    source: NodeIndex,
    zones: &[NodeIndex],
    types: &BTreeMap<K, Vec<usize>>,
    costs_of: impl Fn(&K, &[usize]) -> Vec<Option<i64>>,
    per_shard: u64,
) -> Vec<Vec<Option<EdgeIndex>>> {
    let mut all = Vec::with_capacity(types.len());
    for (key, members) in types {
        let count = u64::try_from(members.len()).unwrap_or(u64::MAX);
        let vertex = net.add_vertex();
        net.add_arc(source, vertex, count * per_shard, 0);
        let arcs = costs_of(key, members)
            .iter()
            .zip(zones)
            .map(|(cost, &zone)| cost.map(|c| net.add_arc(vertex, zone, count, c)))
            .collect();
        all.push(arcs);
    }
    all
}

/// Stage 3: nodes for new members; members that stay keep theirs.
fn seat(
    inventory: &Inventory<'_>,
    view: &CurrentView<'_>,
    choices: &[(Choice, Vec<Choice>)],
) -> Result<Vec<ShardSeats>, Unsatisfiable> {
    let staying: Vec<Seat> = choices
        .iter()
        .flat_map(|(leader, followers)| std::iter::once(leader).chain(followers))
        .filter_map(|c| match c {
            Choice::Stay(k) => Some(Seat::from(*k)),
            Choice::NewIn(_) => None,
        })
        .collect();
    let mut picker = NodePicker::new(inventory, view, &staying);
    let mut resolve = |choice: &Choice| -> Result<Seat, Unsatisfiable> {
        match choice {
            Choice::Stay(k) => Ok(Seat::from(*k)),
            Choice::NewIn(zone) => picker
                .take(*zone, &[])
                .map(|node| Seat {
                    node,
                    origin: Origin::New,
                })
                .ok_or_else(|| {
                    internal(format!(
                        "zone {} ran out of slots",
                        inventory.zone_name(*zone)
                    ))
                }),
        }
    };
    let mut shards = Vec::with_capacity(choices.len());
    for (leader, followers) in choices {
        let leader = resolve(leader)?;
        let followers = followers
            .iter()
            .map(&mut resolve)
            .collect::<Result<Vec<_>, _>>()?;
        shards.push(ShardSeats { leader, followers });
    }
    Ok(shards)
}

fn internal(what: String) -> Unsatisfiable {
    Unsatisfiable::new(
        Cause::Internal,
        format!("internal error: {what}; please report this input"),
    )
}
