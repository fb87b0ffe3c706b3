//! Kubernetes objects of a cluster: the shared ones (ConfigMap, Services, PDB) by server-side
//! apply, and member Pods with their PVCs created where placement puts them.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::controller::build::{self, pod::MemberPod};
use crate::controller::labels::{self, MANAGER, Names};
use crate::controller::plan::NewMember;
use kube::runtime::events::EventType;

use super::events::publish;
use super::executed::{Executed, MemberInputs, Scope};
use crate::controller::context::Context;
use crate::crd::RedisCluster;

pub async fn apply_support_objects(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    rendered: &str,
) -> Result<(), kube::Error> {
    let pp = PatchParams::apply(MANAGER).force();
    let client = ctx.client.clone();
    let cm = build::config_map::build(cluster, rendered);
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), ns)
        .patch(&Names::config_map(cluster), &pp, &Patch::Apply(&cm))
        .await?;
    let svc_api = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns);
    svc_api
        .patch(
            &Names::client_service(cluster),
            &pp,
            &Patch::Apply(&build::service::client(cluster)),
        )
        .await?;
    svc_api
        .patch(
            &Names::headless_service(cluster),
            &pp,
            &Patch::Apply(&build::service::headless(cluster)),
        )
        .await?;
    Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(client, ns)
        .patch(
            &Names::pdb(cluster),
            &pp,
            &Patch::Apply(&build::pdb::build(cluster)),
        )
        .await?;
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
    for new in news {
        let pod = create_member(
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
    }
    Ok(Executed::Applied(format!(
        "created pods {}",
        done.join(", ")
    )))
}

/// Creates one member: its PVC (unless one is reused) and its Pod pinned to the planned node.
/// Returns the Pod's name.
async fn create_member(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    new: &NewMember,
    inputs: &MemberInputs<'_>,
) -> Result<String, kube::Error> {
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let suffix = labels::random_suffix();
    let claim = match (&cluster.spec.storage, &new.reuse_claim) {
        (None, _) => None,
        (Some(_), Some(reuse)) => Some(reuse.clone()),
        (Some(storage), None) => {
            let n = Names::member_pvc(name, new.shard, new.member, &suffix);
            pvc_api
                .create(
                    &pp,
                    &build::pvc::build(cluster, storage, n.clone(), new.shard, new.member),
                )
                .await?;
            Some(n)
        }
    };
    let pod_name = Names::member_pod(name, new.shard, new.member, &suffix);
    let pod = build::pod::build(
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
    pod_api.create(&pp, &pod).await?;
    Ok(pod_name)
}
