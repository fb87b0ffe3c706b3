//! One member's PersistentVolumeClaim (data and nodes.conf together).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::owner_ref;
use crate::controller::labels;
use crate::crd::{PvcRetentionPolicy, RedisCluster, StorageSpec};

/// PVC for member `member` of shard `shard`. With `Retain` it has no owner reference, so
/// deleting the RedisCluster leaves the data behind.
pub fn build(
    cluster: &RedisCluster,
    storage: &StorageSpec,
    name: String,
    shard: usize,
    member: usize,
) -> PersistentVolumeClaim {
    let cluster_name = cluster.metadata.name.clone().unwrap_or_default();
    let owner = match cluster.spec.pvc_retention_policy {
        PvcRetentionPolicy::Delete => owner_ref(cluster).map(|o| vec![o]),
        PvcRetentionPolicy::Retain => None,
    };
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(labels::member_labels(&cluster_name, shard, member)),
            owner_references: owner,
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}
