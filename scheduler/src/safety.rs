//! Whether a placement survives the loss of any one zone.
//!
//! Redis Cluster promotes a replica only with the votes of a majority of the masters that hold
//! slots, so after losing a zone with `l` of `L` leaders the rest must satisfy `L − l > L / 2`,
//! and every shard that led from the lost zone needs a follower elsewhere.

use crate::assignment::Assignment;
use crate::inventory::Inventory;
use crate::model::Request;

/// `(safe, explanation)` for `assignment`.
pub(crate) fn zone_loss(
    inventory: &Inventory<'_>,
    assignment: &Assignment,
    request: &Request,
) -> (bool, String) {
    let shards = u64::from(request.leaders);
    if shards == 0 {
        return (false, "the plan has no shards".to_string());
    }
    if request.followers_per_leader == 0 {
        return (
            false,
            "shards have no followers: losing a zone loses its leaders with their data and nothing can take over; ask for at least 1 follower per leader".to_string(),
        );
    }
    let unlabeled = |node: usize| {
        inventory
            .zones
            .get(inventory.zone_of(node))
            .is_some_and(|z| !z.labeled)
    };
    if assignment
        .shards
        .iter()
        .flat_map(|s| s.seats())
        .any(|seat| unlabeled(seat.node))
    {
        return (
            false,
            "some members run on nodes without a zone label, so which zone loss would take them is unknown".to_string(),
        );
    }
    let mut leaders = vec![0u64; inventory.zones.len()];
    for (index, shard) in assignment.shards.iter().enumerate() {
        let lead_zone = inventory.zone_of(shard.leader.node);
        leaders[lead_zone] += 1;
        if !shard
            .followers
            .iter()
            .any(|f| inventory.zone_of(f.node) != lead_zone)
        {
            let zone = inventory.zone_name(lead_zone);
            return (
                false,
                format!(
                    "shard {index} has no follower outside zone {zone}; losing zone {zone} loses the shard"
                ),
            );
        }
    }
    let (worst_zone, worst) = leaders
        .iter()
        .enumerate()
        .max_by_key(|&(zone, &count)| (count, std::cmp::Reverse(zone)))
        .map_or((0, 0), |(zone, &count)| (zone, count));
    let zone_count = inventory.zones_with_capacity().count();
    if 2 * worst >= shards {
        let zone = inventory.zone_name(worst_zone);
        let left = shards - worst;
        let advice = advice(shards, u64::try_from(zone_count).unwrap_or(u64::MAX));
        return (
            false,
            format!(
                "{shards} leaders over {zone_count} zones put {worst} in {zone}; losing {zone} leaves {left} of {shards} leaders, not a majority, so Redis cannot fail over. {advice}"
            ),
        );
    }
    (
        true,
        format!(
            "losing any one zone leaves at least {} of {shards} leaders, a majority, and every shard keeps a follower to promote",
            shards - worst
        ),
    )
}

/// What leader count would survive a zone loss with `zones` zones.
fn advice(shards: u64, zones: u64) -> String {
    if zones <= 2 {
        return "Surviving a zone loss needs leaders in at least 3 zones.".to_string();
    }
    let survives = |l: u64| 2 * l.div_ceil(zones) < l;
    match (shards + 1..=shards + 2 * zones + 2).find(|&l| survives(l)) {
        Some(l) => {
            format!("With {zones} zones, {l} leaders would survive the loss of any one zone.")
        }
        None => "Add leaders or zones so that no zone holds half of the leaders.".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::advice;

    #[test]
    fn advises_five_leaders_for_four_over_three_zones() {
        assert!(advice(4, 3).contains("5 leaders"));
        assert!(advice(2, 2).contains("at least 3 zones"));
        assert!(advice(8, 4).contains("9 leaders"));
    }
}
