//! Pure: the scheduler's input from the RedisCluster and the cached Nodes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use redis_scheduler::{Capacity, NodeStatus, Request, Resources, Spread, Topology};

use crate::crd::{RedisCluster, ZoneSpread};

/// The placement request of a cluster.
pub fn request(cluster: &RedisCluster) -> Request {
    let requests = cluster
        .spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    let get = |k: &str| requests.and_then(|r| r.get(k));
    Request {
        leaders: u32::try_from(cluster.spec.leaders).unwrap_or(0),
        followers_per_leader: u32::try_from(cluster.spec.followers_per_leader).unwrap_or(0),
        member_resources: Resources {
            cpu_millis: get("cpu").and_then(cpu_millis).unwrap_or(0),
            memory_bytes: get("memory").and_then(bytes).unwrap_or(0),
        },
        spread: match cluster.spec.zone_spread {
            ZoneSpread::Required => Spread::Required,
            ZoneSpread::Preferred => Spread::Preferred,
        },
        one_member_per_node: true,
    }
}

/// The nodes the cluster may use, with their zone (from `spec.zoneKey`), schedulability (Ready,
/// not cordoned, taints tolerated by `spec.pod.tolerations`, labels matching
/// `spec.pod.nodeSelector`) and allocatable resources.
pub fn topology(nodes: &[Arc<Node>], cluster: &RedisCluster) -> Topology {
    let overrides = cluster.spec.pod.clone().unwrap_or_default();
    let nodes = nodes
        .iter()
        .filter(|n| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            overrides
                .node_selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter_map(|n| {
            let name = n.metadata.name.clone()?;
            let zone = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(&cluster.spec.zone_key))
                .cloned();
            let allocatable = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
            let alloc = |k: &str| allocatable.and_then(|a| a.get(k));
            Some(redis_scheduler::Node {
                name,
                zone,
                status: status(n, &overrides.tolerations),
                capacity: Capacity {
                    pods: alloc("pods")
                        .and_then(bytes)
                        .and_then(|p| u32::try_from(p).ok())
                        .unwrap_or(0),
                    cpu_millis: alloc("cpu").and_then(cpu_millis).unwrap_or(0),
                    memory_bytes: alloc("memory").and_then(bytes).unwrap_or(0),
                },
            })
        })
        .collect();
    Topology { nodes }
}

fn status(node: &Node, tolerations: &[Toleration]) -> NodeStatus {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if !ready {
        return NodeStatus::NotReady;
    }
    let spec = node.spec.clone().unwrap_or_default();
    if spec.unschedulable == Some(true) {
        return NodeStatus::Cordoned;
    }
    for taint in spec.taints.iter().flatten() {
        if matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerations.iter().any(|t| tolerates(t, taint))
        {
            let value = taint
                .value
                .as_deref()
                .map(|v| format!("={v}"))
                .unwrap_or_default();
            return NodeStatus::Tainted {
                taint: format!("{}{value}:{}", taint.key, taint.effect),
            };
        }
    }
    NodeStatus::Schedulable
}

/// Kubernetes toleration matching (`Toleration.ToleratesTaint`).
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    match t.operator.as_deref() {
        Some("Exists") => t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            t.key.as_deref() == Some(taint.key.as_str())
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// CPU quantity in millicores (`500m`, `2`, `1.5`).
pub fn cpu_millis(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse().ok();
    }
    let v: f64 = s.parse().ok()?;
    (v >= 0.0).then(|| (v * 1000.0).round() as u64)
}

/// A byte (or count) quantity: plain, decimal (`k`, `M`, `G`, `T`) or binary (`Ki`…`Ti`) suffix.
pub fn bytes(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    const SUFFIXES: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, mult) in SUFFIXES {
        if let Some(n) = s.strip_suffix(suffix) {
            let v: f64 = n.parse().ok()?;
            return (v >= 0.0).then_some((v * *mult as f64) as u64);
        }
    }
    let v: f64 = s.parse().ok()?;
    (v >= 0.0).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis(&Quantity("500m".into())), Some(500));
        assert_eq!(cpu_millis(&Quantity("2".into())), Some(2000));
        assert_eq!(bytes(&Quantity("16Gi".into())), Some(16 << 30));
        assert_eq!(bytes(&Quantity("110".into())), Some(110));
        assert_eq!(bytes(&Quantity("1M".into())), Some(1_000_000));
        assert_eq!(bytes(&Quantity("x".into())), None);
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("redis".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        let exact = Toleration {
            key: Some("dedicated".into()),
            value: Some("redis".into()),
            operator: Some("Equal".into()),
            ..Toleration::default()
        };
        let exists = Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        let other = Toleration {
            key: Some("x".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&exact, &taint));
        assert!(tolerates(&exists, &taint));
        assert!(!tolerates(&other, &taint));
    }
}
