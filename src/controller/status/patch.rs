//! Writes the status [`super::build`] made to `.status` by server-side apply, only when it
//! changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};

use super::conditions::{self as status, Desired};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::crd::{RedisCluster, RedisClusterStatus};

/// Merges the conditions into the previous status and applies it if anything changed.
///
/// # Errors
/// Kubernetes API failures.
pub async fn write(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    mut status: RedisClusterStatus,
    conditions: &[Desired],
) -> Result<(), Error> {
    let mut old = cluster.status.clone().unwrap_or_default();
    // `restore` belongs to the restore loop (its own field manager): never compared (it would
    // differ on every pass) nor applied (this manager would take it over).
    old.restore = None;
    status.restore = None;
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
