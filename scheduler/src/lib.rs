//! Zone-aware placement solver for Redis Cluster shards.
//!
//! A pure library: no Kubernetes, no async runtime. The operator converts Kubernetes Nodes into
//! a [`Topology`], Redis' view of the cluster into [`CurrentMember`]s, and calls [`solve`].
//!
//! # What it guarantees
//!
//! Under [`Spread::Required`] (the default) every returned [`Placement`] satisfies, for `L`
//! shards of `M = F + 1` members and `Z` zones with free capacity:
//!
//! - the members of a shard sit in distinct zones, hence on distinct nodes;
//! - no node holds more members than its slots (pod slots, and CPU and memory divided by the
//!   member's requests; at most one member per node unless
//!   [`Request::one_member_per_node`] is false);
//! - no zone holds more than `C = ⌈L / Z⌉` leaders, and among placements needing the same
//!   changes the most even spread is chosen;
//! - a valid current placement comes back unchanged with no changes; otherwise members that
//!   may stay do, leaders move by failover before data moves, and the result is the same for
//!   the same input whatever the order of nodes and members.
//!
//! When no placement can satisfy this, [`solve`] returns [`Unsatisfiable`] naming the obstacle,
//! e.g. "each shard needs 3 members in distinct zones but only 2 zones have schedulable nodes
//! with free slots: zone-a (2 free), zone-b (1 free), zone-c (0 free: 3 cordoned)". It does so
//! exactly when no placement exists (checked against brute force in the property tests).
//!
//! [`Placement::zone_loss_safe`] tells whether losing any one zone still leaves a majority of
//! leaders (Redis needs one to fail over). It cannot always hold: 4 leaders over 3 zones put 2
//! in one zone, and losing it leaves 2 of 4; the explanation suggests 5.
//!
//! # The model
//!
//! Placement is a constraint graph over the node topology: `shard → zone → node`. Because a
//! shard has at most one member per zone, nodes of a zone are interchangeable for it and the
//! hard part collapses to the zone layer, where the graph is a flow network built with
//! petgraph:
//!
//! ```text
//!            members per type         1 per shard          a_z − l_z (followers)
//!   source ─────────────────▶ shard type ─────────▶ zone ─────────────────────────▶ sink
//!                                        cost: 0 stay,        min(C, a_z)  (leaders)
//!                                        10 failover, 100 create
//! ```
//!
//! Shards with identical costs are merged into one *type* vertex, so the network stays small
//! for thousands of shards. A minimum-cost flow first chooses every shard's leader zone, then
//! its follower zones; new members then take free node slots in their zone. `a_z` is the
//! number of members zone `z` can take (`min(free slots, L)`), and a placement exists exactly
//! when `Σ a_z ≥ L·M` and `Σ min(C, a_z) ≥ L` (the proof is in the `feasibility` module docs).
//!
//! Nodes without the zone label cannot prove their zone: Required spread never uses them.
//! Under [`Spread::Preferred`] the solver returns the Required placement whenever one exists;
//! otherwise members of a shard may share a zone (never a node), unlabeled nodes count as one
//! unnamed zone, and the leader cap becomes a preference.
//!
//! # Identity of members and changes
//!
//! A member is identified by its shard index and node name. [`Placement::changes`] lists what
//! to do, in order (see [`Change`] for the phases), serialized as:
//!
//! ```json
//! {"op":"create","shard":0,"role":"follower","node":"n4","zone":"zone-b","reason":"replaces the member on n2 (node n2 is cordoned)"}
//! {"op":"failover","shard":0,"to":"n4","from":"n1","reason":"moves the leader from zone zone-a to zone zone-b to spread leaders"}
//! {"op":"remove","shard":0,"role":"follower","node":"n2","reason":"node n2 is cordoned"}
//! ```
//!
//! Capacity numbers include this cluster's own current members: the controller subtracts the
//! requests of all other pods on a node.

mod assignment;
mod changes;
mod current;
mod error;
mod feasibility;
mod flow;
mod inventory;
mod model;
mod placement;
mod relaxed;
mod required;
mod safety;

pub use error::{Cause, Unsatisfiable};
pub use model::{
    Capacity, CurrentMember, Node, NodeStatus, Request, Resources, Role, Spread, Topology,
};
pub use placement::{Change, Placement, PlannedMember, ShardPlacement, ZoneCount};

use assignment::Assignment;
use current::CurrentView;
use inventory::Inventory;

/// Plans where every member of every shard runs, and the changes to get there from `current`.
///
/// `current` lists the members that exist now, as Redis reports them; pass an empty slice for
/// a new cluster. Unhealthy members, members on nodes that are gone or unschedulable, members
/// of shards beyond `request.leaders` and surplus members are removed; every other member
/// stays where it is unless the zone spread requires moving it.
pub fn solve(
    topology: &Topology,
    request: &Request,
    current: &[CurrentMember],
) -> Result<Placement, Unsatisfiable> {
    let inventory = Inventory::new(topology, request);
    let view = CurrentView::new(&inventory, current);
    let mut assignment = match request.spread {
        Spread::Required => required::solve(&inventory, request, &view)?,
        Spread::Preferred => match required::solve(&inventory, request, &view) {
            Ok(assignment) => assignment,
            Err(e) if e.cause == Cause::Internal => return Err(e),
            Err(_) => relaxed::solve(&inventory, request, &view)?,
        },
    };
    assignment.adopt(&view);
    Ok(report(&inventory, &view, &assignment, request))
}

/// Turns an assignment into the public placement.
fn report(
    inventory: &Inventory<'_>,
    view: &CurrentView<'_>,
    assignment: &Assignment,
    request: &Request,
) -> Placement {
    let member = |seat: &assignment::Seat, role: Role| PlannedMember {
        role,
        node: inventory.node_name(seat.node).to_string(),
        zone: inventory
            .zone_name(inventory.zone_of(seat.node))
            .to_string(),
    };
    let shards = assignment
        .shards
        .iter()
        .enumerate()
        .map(|(index, seats)| {
            let mut followers: Vec<PlannedMember> = seats
                .followers
                .iter()
                .map(|s| member(s, Role::Follower))
                .collect();
            followers.sort_by(|a, b| a.node.cmp(&b.node));
            let mut members = vec![member(&seats.leader, Role::Leader)];
            members.extend(followers);
            ShardPlacement {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                members,
            }
        })
        .collect();

    let mut counts = vec![(0u32, 0u32); inventory.zones.len()];
    for seats in &assignment.shards {
        counts[inventory.zone_of(seats.leader.node)].0 += 1;
        for seat in seats.seats() {
            counts[inventory.zone_of(seat.node)].1 += 1;
        }
    }
    let leaders_per_zone = inventory
        .zones
        .iter()
        .zip(&counts)
        .filter(|(zone, (_, members))| (zone.labeled && zone.slots > 0) || *members > 0)
        .map(|(zone, &(leaders, members))| ZoneCount {
            zone: zone.name.to_string(),
            leaders,
            members,
        })
        .collect();

    let mut notes = Vec::new();
    let unlabeled = inventory.unlabeled_nodes();
    if unlabeled > 0 {
        let slots = inventory.unlabeled_slots();
        if assignment.relaxed
            || counts.last().is_some_and(|c| c.1 > 0)
                && !inventory.zones.last().is_some_and(|z| z.labeled)
        {
            notes.push(format!(
                "{unlabeled} nodes without the zone label ({slots} free) count as one unnamed zone"
            ));
        } else {
            notes.push(format!(
                "{unlabeled} nodes without the zone label ({slots} free) were not used: their zone is unknown"
            ));
        }
    }
    if assignment.relaxed {
        let shared = assignment.shards.iter().filter(|s| {
            let mut zones: Vec<usize> =
                s.seats().map(|seat| inventory.zone_of(seat.node)).collect();
            zones.sort_unstable();
            zones.windows(2).any(|w| w[0] == w[1])
        });
        notes.push(format!(
            "preferred spread: no placement meets required spread ({} shards share a zone)",
            shared.count()
        ));
    }
    let (zone_loss_safe, zone_loss_reason) = safety::zone_loss(inventory, assignment, request);
    Placement {
        shards,
        changes: changes::plan(inventory, view, assignment, request),
        zone_loss_safe,
        zone_loss_reason,
        leaders_per_zone,
        leader_cap: assignment.leader_cap,
        spread_relaxed: assignment.relaxed,
        notes,
    }
}
