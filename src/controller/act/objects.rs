//! Kubernetes objects of a cluster: the shared ones (ConfigMap, Services, PDB) by server-side
//! apply, and member Pods with their PVCs created where placement puts them.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::controller::build::{self, pod::MemberPod};
use crate::controller::labels::{self, MANAGER, Names};
use crate::controller::plan::NewMember;
use kube::runtime::events::EventType;

use super::applied;
use super::cached;
use super::events::publish;
use super::executed::{Executed, MemberInputs, Scope};
use crate::controller::context::Context;
use crate::crd::RedisCluster;

/// Why a support object was not applied.
#[derive(Debug)]
pub enum ApplyError {
    /// An object of that name exists and is not this RedisCluster's: it is never adopted nor
    /// modified.
    NameConflict(String),
    /// The API call failed.
    Kube(kube::Error),
}

/// Applies the shared objects (ConfigMap, client and headless Services, PDB, NetworkPolicy) by server-side
/// apply, each only if it is absent or already owned by this RedisCluster: an object someone
/// else created under the same name is left alone and reported (`NameConflict`). `members`:
/// the member Pods that exist now, for the PDB ([`build::pdb::build`]).
pub async fn apply_support_objects(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    rendered: &str,
    members: usize,
) -> Result<(), ApplyError> {
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let client = &ctx.client;
    apply_owned(
        cluster,
        ctx,
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &Names::config_map(cluster),
        &build::config_map::build(cluster, rendered),
    )
    .await?;
    let services = Api::<Service>::namespaced(client.clone(), ns);
    apply_owned(
        cluster,
        ctx,
        &services,
        &Names::client_service(cluster),
        &build::service::client(cluster),
    )
    .await?;
    apply_owned(
        cluster,
        ctx,
        &services,
        &Names::headless_service(cluster),
        &build::service::headless(cluster),
    )
    .await?;
    apply_owned(
        cluster,
        ctx,
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        &Names::pdb(cluster),
        &build::pdb::build(cluster, members),
    )
    .await?;
    network_policy(cluster, ctx, ns).await
}

/// The members' NetworkPolicy when the spec keeps one; otherwise the one this cluster made, if
/// any, is deleted (never someone else's of the same name).
async fn network_policy(cluster: &RedisCluster, ctx: &Context, ns: &str) -> Result<(), ApplyError> {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let api = Api::<NetworkPolicy>::namespaced(ctx.client.clone(), ns);
    let name = Names::network_policy(cluster);
    if cluster.spec.network_policy.enabled {
        let policy = build::network_policy::build(cluster, ctx.operator_namespace.as_deref());
        return apply_owned(cluster, ctx, &api, &name, &policy).await;
    }
    let Some(found) = api.get_opt(&name).await.map_err(ApplyError::Kube)? else {
        return Ok(());
    };
    if !owned_by(cluster, found.metadata.owner_references.as_deref()) {
        return Ok(());
    }
    match api.delete(&name, &kube::api::DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(ApplyError::Kube(e)),
    }
}

/// Whether these owner references name this RedisCluster (by uid).
fn owned_by(
    cluster: &RedisCluster,
    owners: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]>,
) -> bool {
    let ours = cluster.metadata.uid.as_deref();
    owners
        .into_iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == ours)
}

/// Server-side apply of `object` under `name`, unless an object of that name exists that this
/// RedisCluster does not own (by uid): forcing our fields onto it would take it over. Skipped
/// when the object is still the one this process last applied from the same content
/// ([`applied`]).
async fn apply_owned<K>(
    cluster: &RedisCluster,
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    object: &K,
) -> Result<(), ApplyError>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let existing = api.get_opt(name).await.map_err(ApplyError::Kube)?;
    if let Some(found) = &existing
        && !owned_by(cluster, found.meta().owner_references.as_deref())
    {
        return Err(ApplyError::NameConflict(format!(
            "{} {name} exists and is not owned by this RedisCluster; it is left as it is (rename or delete it)",
            K::kind(&())
        )));
    }
    let key = (
        cluster.metadata.uid.clone().unwrap_or_default(),
        K::kind(&()).into_owned(),
        name.to_string(),
    );
    let desired = applied::fingerprint(object);
    let found_version = existing
        .as_ref()
        .and_then(|found| found.meta().resource_version.as_deref());
    if let Some(desired) = desired
        && ctx.applied.unchanged(&key, desired, found_version)
    {
        return Ok(());
    }
    let patched = api
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(ApplyError::Kube)?;
    if let Some(desired) = desired {
        ctx.applied
            .record(key, desired, patched.meta().resource_version.clone());
    }
    Ok(())
}

/// Creates the planned members, with an Event each (`MemberReplaced` once the cluster has
/// formed, `MemberCreated` before). A failure names what could not be created.
pub async fn create_members(
    scope: &Scope<'_>,
    news: &[NewMember],
) -> Result<Executed, (String, kube::Error)> {
    let formed =
        news.iter().any(|n| n.reuse_claim.is_some()) || scope.admin.addrs().len() > news.len();
    let mut done = Vec::new();
    let mut claims = Vec::new();
    for new in news {
        let (pod, claim) = create_member(
            scope.cluster,
            scope.ctx,
            scope.ns,
            scope.name,
            new,
            &scope.inputs,
        )
        .await
        .map_err(|e| {
            (
                format!("creating shard {} member {}", new.shard, new.member),
                e,
            )
        })?;
        let note = format!(
            "shard {} member {}: pod {pod} on node {} ({}): {}",
            new.shard, new.member, new.node, new.zone, new.reason
        );
        let reason = if formed {
            "MemberReplaced"
        } else {
            "MemberCreated"
        };
        publish(scope.ctx, scope.cluster, EventType::Normal, reason, &note).await;
        done.push(pod);
        claims.extend(claim);
    }
    // The next pass must see what this one created ([`cached`]).
    let mut late = cached::wait_for(&scope.ctx.pods, scope.ns, &done, cached::LIMIT).await;
    late.extend(cached::wait_for(&scope.ctx.pvcs, scope.ns, &claims, cached::LIMIT).await);
    if !late.is_empty() {
        tracing::warn!(objects = ?late, "created objects not in the caches yet; the next pass may not see them");
    }
    Ok(Executed::Applied(format!(
        "created pods {}",
        done.join(", ")
    )))
}

/// Creates one member: its PVC (unless one is reused) and its Pod pinned to the planned node.
/// Returns the Pod's name and the name of the PVC it created (none when reused or without
/// storage).
async fn create_member(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    new: &NewMember,
    inputs: &MemberInputs<'_>,
) -> Result<(String, Option<String>), kube::Error> {
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let suffix = labels::random_suffix();
    // (the claim the Pod mounts, the claim created for it)
    let (claim, created_claim) = match (&cluster.spec.storage, &new.reuse_claim) {
        (None, _) => (None, None),
        (Some(_), Some(reuse)) => (Some(reuse.clone()), None),
        (Some(storage), None) => {
            let n = Names::member_pvc(name, new.shard, new.member, &suffix);
            pvc_api
                .create(
                    &pp,
                    &build::pvc::build(cluster, storage, n.clone(), new.shard, new.member),
                )
                .await?;
            (Some(n.clone()), Some(n))
        }
    };
    let pod_name = Names::member_pod(name, new.shard, new.member, &suffix);
    let mut pod = build::pod::build(
        cluster,
        &MemberPod {
            shard: new.shard,
            member: new.member,
            name: pod_name.clone(),
            node: &new.node,
            pvc: claim,
            auth_secret: inputs.secret_name,
            auth_key: inputs.secret_key,
            revision: inputs.revision,
            live_config: inputs.live_config,
        },
    );
    if let Some((outdated, id)) = &new.replaces {
        build::pod::mark_replacing(&mut pod, outdated, id.as_ref().map(|i| i.as_str()));
    }
    pod_api.create(&pp, &pod).await?;
    Ok((pod_name, created_claim))
}

/// Merges `patch` into the Pod's metadata. `Ok(false)`: the Pod is gone (nothing to record on
/// it, not a failure).
pub(super) async fn patch_pod(
    api: &Api<Pod>,
    pod: &str,
    patch: &serde_json::Value,
) -> Result<bool, kube::Error> {
    match api
        .patch(pod, &PatchParams::apply(MANAGER), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}
