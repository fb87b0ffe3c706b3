//! Conversion of Kubernetes Nodes into the scheduler's topology model.
//!
//! Used by the controller (with the members' tolerations, and capacity minus other pods) and
//! by `redis-operator plan` (allocatable as capacity). A node is schedulable when its Ready
//! condition is True, it is not cordoned, and every NoSchedule/NoExecute taint is tolerated;
//! its zone is the value of the zone label (`topology.kubernetes.io/zone` by default), and a
//! node without that label, or with an empty value, has no zone.

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use redis_scheduler as scheduler;

/// The label that names a node's zone unless configured otherwise.
pub const DEFAULT_ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// How to read Nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyOptions {
    /// Label whose value is the node's failure domain.
    pub zone_key: String,
    /// Tolerations of the Redis pods; taints they tolerate do not block scheduling.
    pub tolerations: Vec<Toleration>,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        Self {
            zone_key: DEFAULT_ZONE_KEY.to_string(),
            tolerations: Vec::new(),
        }
    }
}

/// A Node that cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// `metadata.name` is missing or empty.
    #[error("node #{index} has no metadata.name")]
    Unnamed {
        /// Position of the node in the input, 0-based.
        index: usize,
    },
    /// A resource quantity does not parse.
    #[error("node {node}: status.{field} {value:?} is not a Kubernetes quantity: {reason}")]
    Quantity {
        /// Node name.
        node: String,
        /// E.g. `allocatable.cpu`.
        field: String,
        /// The text found.
        value: String,
        /// What is wrong with it.
        reason: QuantityError,
    },
}

/// Why a quantity string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// No digits, or stray characters.
    #[error("expected a number with an optional suffix such as 500m, 4, 16Gi or 1e3")]
    Syntax,
    /// Capacities cannot be negative.
    #[error("negative")]
    Negative,
    /// More digits than fit.
    #[error("too large")]
    TooLarge,
}

/// Converts every node; fails on the first node that cannot be read.
pub fn topology_from_nodes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    options: &TopologyOptions,
) -> Result<scheduler::Topology, TopologyError> {
    let nodes = nodes
        .into_iter()
        .enumerate()
        .map(|(index, node)| node_to_scheduler(index, node, options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(scheduler::Topology { nodes })
}

/// Converts one node; `index` only serves error messages. Capacity is the node's allocatable
/// resources (falling back to its capacity; 0 when neither is reported), which the controller
/// reduces by the requests of pods that are not members of the cluster.
pub fn node_to_scheduler(
    index: usize,
    node: &Node,
    options: &TopologyOptions,
) -> Result<scheduler::Node, TopologyError> {
    let name = node
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or(TopologyError::Unnamed { index })?;
    let zone = node
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(&options.zone_key))
        .filter(|z| !z.is_empty())
        .cloned();
    let resource = |key: &str, scale: i32| -> Result<u64, TopologyError> {
        let status = node.status.as_ref();
        let found = status
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|m| m.get(key).map(|q| (q, "allocatable")))
            .or_else(|| {
                status
                    .and_then(|s| s.capacity.as_ref())
                    .and_then(|m| m.get(key).map(|q| (q, "capacity")))
            });
        match found {
            None => Ok(0),
            Some((quantity, section)) => {
                parse_quantity(&quantity.0, scale).map_err(|reason| TopologyError::Quantity {
                    node: name.clone(),
                    field: format!("{section}.{key}"),
                    value: quantity.0.clone(),
                    reason,
                })
            }
        }
    };
    let capacity = scheduler::Capacity {
        pods: u32::try_from(resource("pods", 0)?).unwrap_or(u32::MAX),
        cpu_millis: resource("cpu", 3)?,
        memory_bytes: resource("memory", 0)?,
    };
    Ok(scheduler::Node {
        name,
        zone,
        status: node_status(node, &options.tolerations),
        capacity,
    })
}

/// The taints Kubernetes puts on a node that stops answering (NoExecute: the taint-eviction
/// controller deletes the node's Pods once their toleration runs out, 300 s by default).
pub const NODE_LOSS_TAINTS: [&str; 2] = [
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/not-ready",
];

/// Whether members may be scheduled on `node`: not ready first, then cordoned, then the
/// first untolerated NoSchedule/NoExecute taint. On a Ready node the node-loss taints
/// ([`NODE_LOSS_TAINTS`]) are not looked at: they say the node stopped answering, its Ready
/// condition says it answers again, and the node controller takes them off within its
/// monitor period. Judged by them, the members of a node that just came back were replaced
/// for that second, while they answered with their data (seen in the e2e suite: a shard's
/// returned leader given a new empty follower, and once a returned follower re-placed).
pub fn node_status(node: &Node, tolerations: &[Toleration]) -> scheduler::NodeStatus {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    if !ready {
        return scheduler::NodeStatus::NotReady;
    }
    let spec = node.spec.as_ref();
    if spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        return scheduler::NodeStatus::Cordoned;
    }
    let blocking = spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .filter(|t| !NODE_LOSS_TAINTS.contains(&t.key.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)));
    match blocking {
        Some(taint) => scheduler::NodeStatus::Tainted {
            taint: describe_taint(taint),
        },
        None => scheduler::NodeStatus::Schedulable,
    }
}

/// Kubernetes' toleration rule: the effect matches when the toleration's is empty or equal;
/// an empty key with `Exists` tolerates everything; otherwise keys must match and, unless the
/// operator is `Exists`, values too.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// `key=value:Effect`, or `key:Effect` without a value.
pub fn describe_taint(taint: &Taint) -> String {
    match taint.value.as_deref().filter(|v| !v.is_empty()) {
        Some(value) => format!("{}={value}:{}", taint.key, taint.effect),
        None => format!("{}:{}", taint.key, taint.effect),
    }
}

/// CPU of a quantity in millicores, rounded down.
pub fn cpu_millis(quantity: &Quantity) -> Result<u64, QuantityError> {
    parse_quantity(&quantity.0, 3)
}

/// Bytes of a quantity, rounded down.
pub fn memory_bytes(quantity: &Quantity) -> Result<u64, QuantityError> {
    parse_quantity(&quantity.0, 0)
}

/// Parses a Kubernetes quantity (`4`, `3500m`, `1.5`, `16Gi`, `16318024Ki`, `1e3`, `100M`)
/// and returns `value × 10^scale` rounded down, e.g. scale 3 for millicores. Values beyond
/// `u64` saturate.
pub fn parse_quantity(text: &str, scale: i32) -> Result<u64, QuantityError> {
    let text = text.trim();
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(QuantityError::Syntax);
    }
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or(QuantityError::TooLarge)?;
    }
    let mut exponent = -i32::try_from(fraction.len()).map_err(|_| QuantityError::TooLarge)?;
    let mut binary_power = 0u32;
    match suffix {
        "" => {}
        "n" => exponent -= 9,
        "u" => exponent -= 6,
        "m" => exponent -= 3,
        "k" => exponent += 3,
        "M" => exponent += 6,
        "G" => exponent += 9,
        "T" => exponent += 12,
        "P" => exponent += 15,
        "E" => exponent += 18,
        "Ki" => binary_power = 1,
        "Mi" => binary_power = 2,
        "Gi" => binary_power = 3,
        "Ti" => binary_power = 4,
        "Pi" => binary_power = 5,
        "Ei" => binary_power = 6,
        other => {
            let digits = other
                .strip_prefix(['e', 'E'])
                .ok_or(QuantityError::Syntax)?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Syntax);
            }
            exponent += digits.parse::<i32>().map_err(|_| QuantityError::TooLarge)?;
        }
    }
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative);
    }
    mantissa = mantissa
        .checked_mul(1024u128.pow(binary_power))
        .ok_or(QuantityError::TooLarge)?;
    let exponent = exponent.saturating_add(scale);
    let value = if exponent >= 0 {
        u32::try_from(exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
            .and_then(|f| mantissa.checked_mul(f))
            .unwrap_or(u128::MAX)
    } else {
        u32::try_from(-exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
            .map_or(0, |f| mantissa / f)
    };
    Ok(u64::try_from(value).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[test]
    fn parses_quantities() {
        assert_eq!(parse_quantity("4", 3), Ok(4000));
        assert_eq!(parse_quantity("3500m", 3), Ok(3500));
        assert_eq!(parse_quantity("1.5", 3), Ok(1500));
        assert_eq!(parse_quantity("0.1", 3), Ok(100));
        assert_eq!(parse_quantity("16Gi", 0), Ok(16 << 30));
        assert_eq!(parse_quantity("16318024Ki", 0), Ok(16_318_024 * 1024));
        assert_eq!(parse_quantity("1e3", 0), Ok(1000));
        assert_eq!(parse_quantity("1E", 0), Ok(1_000_000_000_000_000_000));
        assert_eq!(parse_quantity("100M", 0), Ok(100_000_000));
        assert_eq!(parse_quantity("110", 0), Ok(110));
        assert_eq!(parse_quantity("250u", 3), Ok(0));
        assert_eq!(parse_quantity("0.5Gi", 0), Ok(512 << 20));
        assert_eq!(parse_quantity("abc", 0), Err(QuantityError::Syntax));
        assert_eq!(parse_quantity("", 0), Err(QuantityError::Syntax));
        assert_eq!(parse_quantity("1.2.3", 0), Err(QuantityError::Syntax));
        assert_eq!(parse_quantity("4X", 0), Err(QuantityError::Syntax));
        assert_eq!(parse_quantity("-1", 0), Err(QuantityError::Negative));
        assert_eq!(parse_quantity("99999999999999999999Ei", 0), Ok(u64::MAX));
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.to_string(),
            value: value.map(str::to_string),
            effect: effect.to_string(),
            time_added: None,
        }
    }

    fn toleration(
        key: Option<&str>,
        operator: Option<&str>,
        value: Option<&str>,
        effect: Option<&str>,
    ) -> Toleration {
        Toleration {
            key: key.map(str::to_string),
            operator: operator.map(str::to_string),
            value: value.map(str::to_string),
            effect: effect.map(str::to_string),
            toleration_seconds: None,
        }
    }

    #[test]
    fn matches_tolerations_like_kubernetes() {
        let t = taint("dedicated", Some("redis"), "NoSchedule");
        assert!(tolerates(
            &toleration(Some("dedicated"), None, Some("redis"), None),
            &t
        ));
        assert!(tolerates(
            &toleration(Some("dedicated"), Some("Exists"), None, Some("NoSchedule")),
            &t
        ));
        assert!(tolerates(&toleration(None, Some("Exists"), None, None), &t));
        assert!(!tolerates(
            &toleration(Some("dedicated"), None, Some("other"), None),
            &t
        ));
        assert!(!tolerates(
            &toleration(Some("dedicated"), Some("Exists"), None, Some("NoExecute")),
            &t
        ));
        assert!(!tolerates(&toleration(None, Some("Equal"), None, None), &t));
    }

    fn k8s_node(ready: bool, cordoned: bool, taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".to_string()),
                labels: Some(BTreeMap::from([(
                    DEFAULT_ZONE_KEY.to_string(),
                    "zone-a".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(cordoned),
                taints: Some(taints),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                allocatable: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("3920m".to_string())),
                    ("memory".to_string(), Quantity("15Gi".to_string())),
                    ("pods".to_string(), Quantity("110".to_string())),
                ])),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".to_string(),
                    status: if ready { "True" } else { "Unknown" }.to_string(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    #[test]
    fn converts_nodes() {
        let options = TopologyOptions::default();
        let node = node_to_scheduler(0, &k8s_node(true, false, vec![]), &options).unwrap();
        assert_eq!(node.zone.as_deref(), Some("zone-a"));
        assert_eq!(node.status, scheduler::NodeStatus::Schedulable);
        assert_eq!(
            node.capacity,
            scheduler::Capacity {
                pods: 110,
                cpu_millis: 3920,
                memory_bytes: 15 << 30
            }
        );
        let status = |n: &Node| node_to_scheduler(0, n, &options).unwrap().status;
        assert_eq!(
            status(&k8s_node(false, true, vec![])),
            scheduler::NodeStatus::NotReady
        );
        assert_eq!(
            status(&k8s_node(true, true, vec![])),
            scheduler::NodeStatus::Cordoned
        );
        let tainted = k8s_node(
            true,
            false,
            vec![taint("dedicated", Some("infra"), "NoSchedule")],
        );
        assert_eq!(
            status(&tainted),
            scheduler::NodeStatus::Tainted {
                taint: "dedicated=infra:NoSchedule".to_string()
            }
        );
        let soft = k8s_node(true, false, vec![taint("spot", None, "PreferNoSchedule")]);
        assert_eq!(status(&soft), scheduler::NodeStatus::Schedulable);
        let tolerant = TopologyOptions {
            tolerations: vec![toleration(Some("dedicated"), Some("Exists"), None, None)],
            ..TopologyOptions::default()
        };
        assert_eq!(
            node_to_scheduler(0, &tainted, &tolerant).unwrap().status,
            scheduler::NodeStatus::Schedulable
        );
        let other_key = TopologyOptions {
            zone_key: "example.com/rack".to_string(),
            ..TopologyOptions::default()
        };
        assert_eq!(
            node_to_scheduler(0, &tainted, &other_key).unwrap().zone,
            None
        );
    }

    #[test]
    fn a_ready_node_is_not_judged_by_the_node_loss_taints_the_node_controller_has_yet_to_lift() {
        let status = |n: &Node| {
            node_to_scheduler(0, n, &TopologyOptions::default())
                .unwrap()
                .status
        };
        let lingering = || {
            vec![
                taint("node.kubernetes.io/unreachable", None, "NoSchedule"),
                taint("node.kubernetes.io/unreachable", None, "NoExecute"),
                taint("node.kubernetes.io/not-ready", None, "NoSchedule"),
            ]
        };
        // Back and Ready, the taints not yet lifted: its members stay.
        assert_eq!(
            status(&k8s_node(true, false, lingering())),
            scheduler::NodeStatus::Schedulable
        );
        // Still lost: not ready, whatever the taints.
        assert_eq!(
            status(&k8s_node(false, false, lingering())),
            scheduler::NodeStatus::NotReady
        );
        // Any other taint still counts beside them.
        let mut other = lingering();
        other.push(taint("dedicated", Some("infra"), "NoSchedule"));
        assert_eq!(
            status(&k8s_node(true, false, other)),
            scheduler::NodeStatus::Tainted {
                taint: "dedicated=infra:NoSchedule".to_string()
            }
        );
    }

    #[test]
    fn names_the_node_and_field_of_a_bad_quantity() {
        let mut node = k8s_node(true, false, vec![]);
        if let Some(status) = node.status.as_mut()
            && let Some(allocatable) = status.allocatable.as_mut()
        {
            allocatable.insert("cpu".to_string(), Quantity("lots".to_string()));
        }
        let err = node_to_scheduler(0, &node, &TopologyOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node n1: status.allocatable.cpu \"lots\" is not a Kubernetes quantity: expected a number with an optional suffix such as 500m, 4, 16Gi or 1e3"
        );
    }
}
