//! Writes what a reconcile found to `.status` by server-side apply, only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};

use super::members::Member;
use super::reconcile::Outcome;
use super::status;
use super::{Context, Error};
use crate::crd::{RedisCluster, RedisClusterStatus};

pub async fn write_status(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    pods: &[Member],
    outcome: &Outcome,
) -> Result<(), Error> {
    let old = cluster.status.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let generation = cluster.metadata.generation;
    let zone_of = |node: &str| -> String {
        ctx.nodes
            .get(&kube::runtime::reflector::ObjectRef::new(node))
            .and_then(|n| {
                n.metadata
                    .labels
                    .as_ref()?
                    .get(&cluster.spec.zone_key)
                    .cloned()
            })
            .unwrap_or_default()
    };
    let desired_total = usize::try_from(cluster.spec.leaders).unwrap_or(0)
        * (1 + usize::try_from(cluster.spec.followers_per_leader).unwrap_or(0));
    let live: Vec<&Member> = pods
        .iter()
        .filter(|m| !m.terminating() && !m.finished())
        .collect();
    let ready = live.iter().filter(|m| m.ready()).count();
    let mut zones: Vec<String> = live
        .iter()
        .filter_map(|m| m.node())
        .map(zone_of)
        .filter(|z| !z.is_empty())
        .collect();
    zones.sort();
    zones.dedup();

    let shards = super::shard_status::shards(&live, &outcome.views, &zone_of, cluster.spec.leaders);
    let placement = super::shard_status::compact_placement(&shards);
    let status = RedisClusterStatus {
        observed_generation: generation,
        phase: Some(status::phase(&outcome.conditions)),
        conditions: status::merge_conditions(&old.conditions, &outcome.conditions, generation, now),
        ready_members: Some(format!("{ready}/{desired_total}")),
        zones: i32::try_from(zones.len()).ok(),
        placement: (!placement.is_empty()).then_some(placement),
        zone_loss_safe: outcome.placement.as_ref().map(|p| p.zone_loss_safe),
        shards,
    };
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
