//! The members' NetworkPolicy: the cluster bus only between the cluster's own members; the
//! client port from the members (replication and the start gate use it), the operator, and the
//! spec's clients (default: every Pod in the namespace). Egress is left alone: members only
//! talk to each other, and DNS-less egress rules break more setups than they protect.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, tls};
use crate::controller::config::{BUS_PORT, REDIS_PORT};
use crate::controller::labels::{self, Names};
use crate::crd::RedisCluster;

/// Labels of the operator's own Pods (manifests/operator/deployment.yaml).
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "redis-operator");
/// The label the API server sets on every Namespace to its name (immutable).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The policy, given the namespace the operator runs in (None when it runs outside the
/// cluster: its traffic then comes from a host, which NetworkPolicy peers cannot name).
pub fn build(cluster: &RedisCluster, operator_namespace: Option<&str>) -> NetworkPolicy {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let members = NetworkPolicyPeer {
        pod_selector: Some(selector(labels::selector_labels(&name))),
        ..NetworkPolicyPeer::default()
    };
    let mut client_peers = vec![members.clone()];
    if let Some(ns) = operator_namespace {
        client_peers.push(NetworkPolicyPeer {
            namespace_selector: Some(selector(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                ns.to_string(),
            )]))),
            pod_selector: Some(selector(BTreeMap::from([(
                OPERATOR_POD_LABEL.0.to_string(),
                OPERATOR_POD_LABEL.1.to_string(),
            )]))),
            ..NetworkPolicyPeer::default()
        });
    }
    match &cluster.spec.network_policy.clients {
        // Every Pod of the cluster's namespace: an empty pod selector without a namespace
        // selector means exactly that.
        None => client_peers.push(NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }),
        Some(clients) => client_peers.extend(clients.iter().cloned()),
    }
    NetworkPolicy {
        metadata: meta(cluster, Names::network_policy(cluster)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(labels::selector_labels(&name))),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(client_peers),
                    ports: Some(client_ports(cluster)),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![members]),
                    ports: Some(vec![port(BUS_PORT)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// The client port, and the plaintext port when TLS is on and one is asked for.
fn client_ports(cluster: &RedisCluster) -> Vec<NetworkPolicyPort> {
    let mut ports = vec![port(REDIS_PORT)];
    if tls::of(cluster).is_some_and(|t| t.plaintext_port) {
        ports.push(port(tls::PLAINTEXT_PORT));
    }
    ports
}

fn selector(match_labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(match_labels),
        ..LabelSelector::default()
    }
}

fn port(number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".to_string()),
        ..NetworkPolicyPort::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RedisClusterSpec;

    fn cluster(spec: serde_json::Value) -> RedisCluster {
        let spec: RedisClusterSpec = serde_json::from_value(spec).unwrap();
        let mut c = RedisCluster::new("c", spec);
        c.metadata.namespace = Some("ns".into());
        c
    }

    fn rules(p: &NetworkPolicy) -> Vec<NetworkPolicyIngressRule> {
        p.spec.clone().unwrap().ingress.unwrap()
    }

    #[test]
    fn bus_only_from_members_client_port_from_members_operator_and_namespace() {
        let p = build(&cluster(serde_json::json!({"leaders": 3})), Some("ops"));
        let r = rules(&p);
        assert_eq!(r.len(), 2);
        let client = &r[0];
        assert_eq!(
            client.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(6379))
        );
        let from = client.from.as_ref().unwrap();
        assert_eq!(from.len(), 3);
        let ops = from[1]
            .namespace_selector
            .clone()
            .unwrap()
            .match_labels
            .unwrap();
        assert_eq!(ops[NAMESPACE_NAME_LABEL], "ops");
        assert_eq!(from[2].pod_selector, Some(LabelSelector::default()));
        assert!(from[2].namespace_selector.is_none());
        let bus = &r[1];
        assert_eq!(
            bus.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(16379))
        );
        let bus_from = bus.from.as_ref().unwrap();
        assert_eq!(bus_from.len(), 1);
        assert_eq!(
            bus_from[0].pod_selector.clone().unwrap().match_labels,
            Some(labels::selector_labels("c"))
        );
        assert_eq!(p.spec.unwrap().policy_types, Some(vec!["Ingress".into()]));
    }

    #[test]
    fn clients_from_the_spec_replace_the_namespace_default() {
        let c = cluster(
            serde_json::json!({"leaders": 3, "networkPolicy": {"clients": [
                {"podSelector": {"matchLabels": {"role": "app"}}}
            ]}}),
        );
        let from = rules(&build(&c, None))[0].from.clone().unwrap();
        // members, then the spec's one peer; no operator peer when it runs outside.
        assert_eq!(from.len(), 2);
        assert_eq!(
            from[1].pod_selector.clone().unwrap().match_labels.unwrap()["role"],
            "app"
        );
        let c = cluster(serde_json::json!({"leaders": 3, "networkPolicy": {"clients": []}}));
        assert_eq!(rules(&build(&c, None))[0].from.clone().unwrap().len(), 1);
    }
}
