//! Kubernetes objects of a cluster: the shared ones (ConfigMap, Services, PDB) by server-side
//! apply, and member Pods with their PVCs created where placement puts them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use redis_scheduler::Placement;

use super::build::{self, pod::MemberPod};
use super::events::publish;
use super::labels::{self, MANAGER, Names};
use super::members::{self, Member};
use super::{Context, Error};
use crate::crd::RedisCluster;

pub async fn apply_support_objects(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    rendered: &str,
) -> Result<(), Error> {
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
#[allow(clippy::too_many_arguments)]
pub async fn create_missing_members(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    pods: &[Member],
    placement: &Placement,
    secret_name: &str,
    secret_key: &str,
    config_hash: &str,
) -> Result<usize, Error> {
    let live: Vec<&Member> = pods
        .iter()
        .filter(|m| !m.terminating() && !m.finished())
        .collect();
    let claims = members::claims(&ctx.pvcs.state(), ns, name);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let mut created = 0;
    for shard in &placement.shards {
        let index = shard.index as usize;
        let in_shard: Vec<&&Member> = live.iter().filter(|m| m.shard == index).collect();
        for (pos, planned) in shard.members.iter().enumerate() {
            if in_shard
                .iter()
                .any(|m| m.node() == Some(planned.node.as_str()))
            {
                continue;
            }
            // Ordinals are stable identities within the shard: reuse the lowest one not held
            // by a live Pod (the planned leader takes 0 on a fresh shard).
            let used: Vec<usize> = in_shard.iter().map(|m| m.member).collect();
            let member = if pos == 0 && !used.contains(&0) {
                0
            } else {
                (0..).find(|o| !used.contains(o)).unwrap_or(pos)
            };
            let suffix = labels::random_suffix();
            let claim = match &cluster.spec.storage {
                None => None,
                Some(storage) => {
                    // A claim of this member already provisioned on the planned node (an earlier
                    // incarnation, or a create interrupted by a crash) keeps its data: reuse it.
                    let reusable = claims.iter().find(|(n, pvc)| {
                        pvc.metadata.deletion_timestamp.is_none()
                            && build::pod::member_of(
                                pvc.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                            ) == Some((index, member))
                            && members::claim_node(pvc).is_none_or(|node| node == planned.node)
                            && !pods
                                .iter()
                                .any(|m| m.claim() == Some(n.as_str()) && !m.finished())
                    });
                    match reusable {
                        Some((n, _)) => Some(n.clone()),
                        None => {
                            let n = Names::member_pvc(name, index, member, &suffix);
                            pvc_api
                                .create(
                                    &pp,
                                    &build::pvc::build(cluster, storage, n.clone(), index, member),
                                )
                                .await?;
                            Some(n)
                        }
                    }
                }
            };
            let pod_name = Names::member_pod(name, index, member, &suffix);
            let pod = build::pod::build(
                cluster,
                &MemberPod {
                    shard: index,
                    member,
                    name: pod_name.clone(),
                    node: &planned.node,
                    pvc: claim,
                    auth_secret: secret_name,
                    auth_key: secret_key,
                    config_hash,
                },
            );
            pod_api.create(&pp, &pod).await?;
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "MemberCreated",
                &format!(
                    "shard {index} member {member}: pod {pod_name} on node {} ({})",
                    planned.node, planned.zone
                ),
            )
            .await;
            created += 1;
        }
    }
    Ok(created)
}
