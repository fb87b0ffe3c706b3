//! The PodDisruptionBudget: voluntary disruptions (drains) take one member at a time, so a
//! shard never loses its leader and follower together through evictions.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta;
use crate::controller::labels::{self, Names};
use crate::crd::RedisCluster;

/// PDB allowing one unavailable member of the cluster.
pub fn build(cluster: &RedisCluster) -> PodDisruptionBudget {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    PodDisruptionBudget {
        metadata: meta(cluster, Names::pdb(cluster)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector_labels(&name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
