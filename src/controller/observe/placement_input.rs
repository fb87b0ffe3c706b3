//! Pure: the scheduler's input from the RedisCluster and the cached Nodes (the Node conversion
//! itself lives in [`crate::topology`], shared with the `plan` command).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use redis_scheduler::{Request, Resources, Spread, Topology};

use crate::crd::{RedisCluster, ZoneSpread};
use crate::topology::{TopologyOptions, cpu_millis, memory_bytes, node_to_scheduler};

/// The placement request of a cluster.
pub fn request(cluster: &RedisCluster) -> Request {
    // The members' effective resources (the spec's, or the defaults): what the Pods ask for.
    let resources = crate::controller::build::resources::member_resources(cluster);
    let requests = resources.requests.as_ref();
    let get = |k: &str| requests.and_then(|r| r.get(k));
    Request {
        leaders: u32::try_from(cluster.spec.leaders).unwrap_or(0),
        followers_per_leader: u32::try_from(cluster.spec.followers_per_leader).unwrap_or(0),
        member_resources: Resources {
            cpu_millis: get("cpu").and_then(|q| cpu_millis(q).ok()).unwrap_or(0),
            memory_bytes: get("memory")
                .and_then(|q| memory_bytes(q).ok())
                .unwrap_or(0),
        },
        spread: match cluster.spec.zone_spread {
            ZoneSpread::Required => Spread::Required,
            ZoneSpread::Preferred => Spread::Preferred,
        },
        one_member_per_node: true,
    }
}

/// The nodes matching `spec.pod.nodeSelector`, converted with the cluster's zone key and
/// tolerations. A node whose status cannot be read is left out (and logged): it cannot be
/// trusted to host a member.
pub fn topology(nodes: &[Arc<Node>], cluster: &RedisCluster) -> Topology {
    let overrides = cluster.spec.pod.clone().unwrap_or_default();
    let options = TopologyOptions {
        zone_key: cluster.spec.zone_key.clone(),
        tolerations: overrides.tolerations.clone(),
    };
    let nodes = nodes
        .iter()
        .filter(|n| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            overrides
                .node_selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .enumerate()
        .filter_map(|(i, n)| match node_to_scheduler(i, n, &options) {
            Ok(node) => Some(node),
            Err(e) => {
                tracing::warn!(error = %e, "node left out of placement");
                None
            }
        })
        .collect();
    Topology { nodes }
}
