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
        // Includes the members created in this pass, so two new members never share one.
        let mut used: Vec<usize> = in_shard.iter().map(|m| m.member).collect();
        for (pos, planned) in shard.members.iter().enumerate() {
            if in_shard
                .iter()
                .any(|m| m.node() == Some(planned.node.as_str()))
            {
                continue;
            }
            let member = next_ordinal(&used, pos == 0);
            used.push(member);
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

/// The ordinal of a new member of a shard: the lowest one no live member holds. Ordinals are
/// stable identities within a shard (they name the member's PVC), and the planned leader of a
/// fresh shard takes 0.
pub fn next_ordinal(used: &[usize], planned_leader: bool) -> usize {
    if planned_leader && !used.contains(&0) {
        return 0;
    }
    (0..=used.len())
        .find(|o| !used.contains(o))
        .unwrap_or(used.len())
}

#[cfg(test)]
mod tests {
    use super::next_ordinal;

    #[test]
    fn new_members_of_one_shard_get_distinct_ordinals() {
        let mut used = Vec::new();
        for pos in 0..3 {
            let o = next_ordinal(&used, pos == 0);
            used.push(o);
        }
        assert_eq!(used, vec![0, 1, 2]);
    }

    #[test]
    fn a_replacement_takes_the_lowest_free_ordinal() {
        assert_eq!(next_ordinal(&[0, 2], false), 1);
        assert_eq!(next_ordinal(&[1, 2], true), 0);
        assert_eq!(next_ordinal(&[1, 2], false), 0);
        assert_eq!(next_ordinal(&[0, 1, 2], false), 3);
    }
}
