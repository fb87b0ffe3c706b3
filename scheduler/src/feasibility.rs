//! Whether any placement exists, decided from zone totals alone, and why not in words.
//!
//! Under Required spread a shard has at most one member per zone, so within a zone any node
//! with a free slot serves any shard and only the zone's total of free slots `S_z` matters; a
//! zone can host at most `a_z = min(S_z, L)` members (one per shard). A placement exists
//! exactly when
//!
//! 1. `Σ a_z ≥ L·M` (members fit, one per shard and zone; this implies `Z ≥ M`), and
//! 2. `Σ min(C, a_z) ≥ L` with `C = ⌈L / Z⌉` (leaders fit under the per-zone cap).
//!
//! Necessity is plain. Sufficiency: pick leader counts `l_z ≤ min(C, a_z)` summing to `L`,
//! raise member counts `n_z` from `l_z` up to `a_z` until they sum to `L·M`, then fill shards
//! one by one, each taking one leader zone and `F` follower zones with the most members still
//! to place. While every `n_z` is at most the number of shards left, the zones that must appear
//! in the next shard (those with `n_z` equal to it) fit in it, so the fill never gets stuck.
//! The property tests check this against brute force on small topologies.

use crate::error::{Cause, Unsatisfiable};
use crate::inventory::Inventory;
use crate::model::Request;

/// Zone figures of a satisfiable Required request.
#[derive(Debug)]
pub(crate) struct RequiredShape {
    /// Zones with capacity, by index into the inventory's zones.
    pub zones: Vec<usize>,
    /// `a_z` per entry of `zones`.
    pub usable: Vec<u64>,
    /// `C = ⌈L / Z⌉`.
    pub leader_cap: u64,
}

/// Checks the two conditions above.
pub(crate) fn required(
    inventory: &Inventory<'_>,
    request: &Request,
) -> Result<RequiredShape, Unsatisfiable> {
    let shards = u64::from(request.leaders);
    let per_shard = request.members_per_shard();
    let zones: Vec<usize> = inventory.zones_with_capacity().map(|(i, _)| i).collect();
    let usable: Vec<u64> = zones
        .iter()
        .map(|&z| {
            inventory
                .zones
                .get(z)
                .map_or(0, |info| info.slots.min(shards))
        })
        .collect();
    let zone_count = u64::try_from(zones.len()).unwrap_or(u64::MAX);
    if shards == 0 {
        return Ok(RequiredShape {
            zones,
            usable,
            leader_cap: 0,
        });
    }
    if zone_count < per_shard {
        let have = match zone_count {
            0 => "no zone has".to_string(),
            1 => "only 1 zone has".to_string(),
            n => format!("only {n} zones have"),
        };
        return Err(Unsatisfiable::new(
            Cause::NotEnoughZones,
            format!(
                "each shard needs {per_shard} members in distinct zones but {have} schedulable nodes with free slots: {}",
                describe_zones(inventory, None, true)
            ),
        ));
    }
    let needed = shards * per_shard;
    let offered: u64 = usable.iter().sum();
    if offered < needed {
        return Err(Unsatisfiable::new(
            Cause::NotEnoughCapacity,
            format!(
                "{shards} shards × {per_shard} members need {needed} members, at most one per shard in each zone, but the zones can take only {offered}: {}",
                describe_zones(inventory, Some(shards), true)
            ),
        ));
    }
    let leader_cap = shards.div_ceil(zone_count);
    let leader_room: u64 = usable.iter().map(|&a| a.min(leader_cap)).sum();
    if leader_room < shards {
        let small: Vec<String> = zones
            .iter()
            .zip(&usable)
            .filter(|(_, a)| **a < leader_cap)
            .map(|(&z, a)| format!("{} has room for only {a}", inventory.zone_name(z)))
            .collect();
        return Err(Unsatisfiable::new(
            Cause::LeaderSpread,
            format!(
                "{shards} leaders over {zone_count} zones may put at most {leader_cap} in one zone, but {}, so the zones can host only {leader_room} leaders: {}; free capacity there or use preferred spread",
                small.join(" and "),
                describe_zones(inventory, None, true)
            ),
        ));
    }
    Ok(RequiredShape {
        zones,
        usable,
        leader_cap,
    })
}

/// Checks Preferred spread's only hard limit: members of a shard on distinct nodes.
pub(crate) fn relaxed(inventory: &Inventory<'_>, request: &Request) -> Result<(), Unsatisfiable> {
    let shards = u64::from(request.leaders);
    let per_shard = request.members_per_shard();
    let needed = shards * per_shard;
    let offered: u64 = inventory
        .nodes
        .iter()
        .map(|n| u64::from(n.slots).min(shards))
        .sum();
    if offered >= needed {
        return Ok(());
    }
    let usable_nodes = inventory.nodes.iter().filter(|n| n.slots > 0).count();
    let cause = if u64::try_from(usable_nodes).unwrap_or(u64::MAX) < per_shard {
        Cause::NotEnoughZones
    } else {
        Cause::NotEnoughCapacity
    };
    Err(Unsatisfiable::new(
        cause,
        format!(
            "{shards} shards × {per_shard} members need {needed} members on distinct nodes per shard, but the schedulable nodes ({usable_nodes}) can take only {offered}: {}",
            describe_zones(inventory, None, false)
        ),
    ))
}

/// `zone-a (2 free), zone-b (5 free, 3 usable), zone-c (0 free: 2 cordoned)`; "usable" when
/// a zone has more free slots than `usable` (it holds one member per shard). Under `required`
/// spread nodes without the zone label are listed as unused.
pub(crate) fn describe_zones(
    inventory: &Inventory<'_>,
    usable: Option<u64>,
    required: bool,
) -> String {
    let mut parts = Vec::new();
    for zone in &inventory.zones {
        let name = if zone.labeled {
            zone.name.to_string()
        } else {
            "nodes without zone label".to_string()
        };
        if required && !zone.labeled {
            parts.push(format!(
                "{name} ({} free, unused: zone unknown)",
                zone.slots
            ));
        } else if zone.slots == 0 {
            parts.push(format!("{name} (0 free: {})", zone.why_empty()));
        } else if let Some(usable) = usable.filter(|&u| zone.slots > u) {
            parts.push(format!("{name} ({} free, {usable} usable)", zone.slots));
        } else {
            parts.push(format!("{name} ({} free)", zone.slots));
        }
    }
    if parts.is_empty() {
        "the topology has no nodes".to_string()
    } else {
        parts.join(", ")
    }
}
