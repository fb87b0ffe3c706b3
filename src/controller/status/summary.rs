//! Pure: what the status shows besides the conditions, from the facts.

use super::conditions::{Desired, phase};
use crate::controller::plan::facts::Facts;
use crate::crd::{RedisCluster, RedisClusterStatus, ReshardStatus};

/// What the status shows besides the conditions.
pub fn summary(
    cluster: &RedisCluster,
    facts: &Facts<'_>,
    conditions: &[Desired],
    orphaned_claims: Vec<String>,
    reshard: Option<ReshardStatus>,
) -> RedisClusterStatus {
    let obs = facts.obs;
    let zone_of = |node: &str| obs.zone_of(node).to_string();
    let live: Vec<_> = obs.live().collect();
    let ready = live.iter().filter(|m| m.ready()).count();
    let mut zones: Vec<String> = live
        .iter()
        .filter_map(|m| m.node())
        .map(zone_of)
        .filter(|z| !z.is_empty())
        .collect();
    zones.sort();
    zones.dedup();
    let shards = super::shards::shards(obs, &live, &zone_of, cluster.spec.leaders);
    let placement = super::shards::compact_placement(&shards);
    RedisClusterStatus {
        observed_generation: cluster.metadata.generation,
        phase: Some(phase(conditions)),
        conditions: Vec::new(),
        ready_members: Some(format!("{ready}/{}", obs.shape.members())),
        updated_members: Some(format!(
            "{}/{}",
            live.len() - facts.outdated.len(),
            obs.shape.members()
        )),
        revision: Some(obs.target.revision.clone()),
        reshard,
        zones: i32::try_from(zones.len()).ok(),
        zone_loss_safe: (!shards.is_empty())
            .then(|| super::shards::zone_loss_safe(&shards, cluster.spec.leaders)),
        placement: (!placement.is_empty()).then_some(placement),
        shards,
        orphaned_claims,
    }
}
