//! Pure builders: desired Kubernetes objects from the RedisCluster and the plan. No client here.

pub mod config_map;
pub mod network_policy;
pub mod pdb;
pub mod pod;
pub mod pvc;
pub mod resources;
pub mod secret;
pub mod service;
pub mod tls;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::labels;
use crate::crd::RedisCluster;

/// Controller owner reference to the cluster, so deleting it garbage-collects the object.
pub fn owner_ref(cluster: &RedisCluster) -> Option<OwnerReference> {
    cluster.controller_owner_ref(&())
}

/// Metadata of a per-cluster object: name, namespace, common labels, owner.
pub fn meta(cluster: &RedisCluster, name: String) -> ObjectMeta {
    let cluster_name = cluster.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(name),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(labels::common_labels(&cluster_name)),
        owner_references: owner_ref(cluster).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}
