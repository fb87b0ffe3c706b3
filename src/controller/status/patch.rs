//! Writes what a reconcile found to `.status` by server-side apply, only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};

use super::{self as status, Desired};
use crate::controller::observe::Observed;
use crate::controller::{Context, Error};
use crate::crd::{RedisCluster, RedisClusterStatus};

/// What the status shows besides the conditions.
pub fn summary(
    cluster: &RedisCluster,
    obs: &Observed,
    conditions: &[Desired],
    orphaned_claims: Vec<String>,
    reshard: Option<crate::crd::ReshardStatus>,
) -> RedisClusterStatus {
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
    let views = obs.views_by_pod();
    let shards =
        crate::controller::status::shards::shards(&live, &views, &zone_of, cluster.spec.leaders);
    let placement = crate::controller::status::shards::compact_placement(&shards);
    RedisClusterStatus {
        observed_generation: cluster.metadata.generation,
        phase: Some(status::phase(conditions)),
        conditions: Vec::new(),
        ready_members: Some(format!("{ready}/{}", obs.shape.members())),
        updated_members: Some(format!(
            "{}/{}",
            live.iter()
                .filter(|m| !crate::controller::observe::revision::outdated(m, &obs.target))
                .count(),
            obs.shape.members()
        )),
        revision: Some(obs.target.revision.clone()),
        reshard,
        zones: i32::try_from(zones.len()).ok(),
        zone_loss_safe: (!shards.is_empty()).then(|| {
            crate::controller::status::shards::zone_loss_safe(&shards, cluster.spec.leaders)
        }),
        placement: (!placement.is_empty()).then_some(placement),
        shards,
        orphaned_claims,
    }
}

/// Merges the conditions into the previous status and applies it if anything changed.
pub async fn write_status(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    mut status: RedisClusterStatus,
    conditions: &[Desired],
) -> Result<(), Error> {
    let old = cluster.status.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    status.conditions =
        status::merge_conditions(&old.conditions, conditions, status.observed_generation, now);
    if status::same_ignoring_time(&old, &status) && old.conditions.len() == status.conditions.len()
    {
        return Ok(());
    }
    let api: Api<RedisCluster> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": RedisCluster::api_version(&()),
        "kind": RedisCluster::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply("redis-operator/status").force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
