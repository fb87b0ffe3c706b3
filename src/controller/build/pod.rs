//! One member incarnation's Pod, pinned to its planned node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, Lifecycle, LifecycleHandler, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, Pod, PodSpec, Probe, SecretKeySelector, TCPSocketAction,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::owner_ref;
use crate::controller::config::{self, BUS_PORT, CONFIG_DIR, DATA_DIR, REDIS_PORT, RUNTIME_DIR};
use crate::controller::labels::{self, Names};
use crate::crd::RedisCluster;

/// Everything that distinguishes one member Pod from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPod<'a> {
    /// Shard index.
    pub shard: usize,
    /// Member ordinal within the shard.
    pub member: usize,
    /// Pod name (unique per incarnation).
    pub name: String,
    /// The node the placement chose.
    pub node: &'a str,
    /// The member's PVC, or None for emptyDir storage.
    pub pvc: Option<String>,
    /// Secret and key holding the password.
    pub auth_secret: &'a str,
    /// Key of the password inside the Secret.
    pub auth_key: &'a str,
    /// The revision it is built from ([`crate::controller::revision`]).
    pub revision: &'a str,
    /// The runtime config its process starts with (annotation value).
    pub live_config: &'a str,
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The member's Pod.
pub fn build(cluster: &RedisCluster, m: &MemberPod<'_>) -> Pod {
    let overrides = cluster.spec.pod.clone().unwrap_or_default();
    Pod {
        metadata: metadata(cluster, m),
        spec: Some(PodSpec {
            affinity: Some(pinned_to(m.node)),
            node_selector: (!overrides.node_selector.is_empty())
                .then(|| overrides.node_selector.clone()),
            tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
            priority_class_name: overrides.priority_class_name.clone(),
            containers: vec![container(cluster, m)],
            volumes: Some(volumes(cluster, m)),
            // shutdown-timeout (10 s) for replicas to catch up on SIGTERM, plus AOF fsync margin.
            termination_grace_period_seconds: Some(30),
            // Redis never talks to the Kubernetes API.
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Name, labels (the operator's win: the controller finds its members by them), the
/// revision and live-config annotations, and the owner.
fn metadata(cluster: &RedisCluster, m: &MemberPod<'_>) -> ObjectMeta {
    let cluster_name = cluster.metadata.name.clone().unwrap_or_default();
    let overrides = cluster.spec.pod.clone().unwrap_or_default();
    let mut pod_labels = overrides.labels.clone();
    pod_labels.extend(labels::member_labels(&cluster_name, m.shard, m.member));
    let mut annotations = overrides.annotations.clone();
    annotations.insert(
        labels::REVISION_ANNOTATION.to_string(),
        m.revision.to_string(),
    );
    annotations.insert(
        labels::LIVE_CONFIG_ANNOTATION.to_string(),
        m.live_config.to_string(),
    );
    ObjectMeta {
        name: Some(m.name.clone()),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(pod_labels),
        annotations: Some(annotations),
        owner_references: owner_ref(cluster).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Pinned by field (node name), not by hostname label: the two can differ.
fn pinned_to(node: &str) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".to_string(),
                        operator: "In".to_string(),
                        values: Some(vec![node.to_string()]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The data volume (its PVC, or an emptyDir for caches), the config and the runtime dir.
fn volumes(cluster: &RedisCluster, m: &MemberPod<'_>) -> Vec<Volume> {
    let data = match &m.pvc {
        Some(claim) => Volume {
            name: "data".to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        },
        None => Volume {
            name: "data".to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    };
    vec![
        data,
        Volume {
            name: "config".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: Names::config_map(cluster),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "runtime".to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_string()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// The redis container: the entry script, env, ports, probes and the preStop handover.
fn container(cluster: &RedisCluster, m: &MemberPod<'_>) -> Container {
    Container {
        name: "redis".to_string(),
        image: Some(cluster.spec.image.clone()),
        command: shell(config::ENTRY_SCRIPT).command,
        env: Some(env(m)),
        ports: Some(vec![
            ContainerPort {
                name: Some("redis".to_string()),
                container_port: REDIS_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("cluster-bus".to_string()),
                container_port: BUS_PORT,
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(readiness()),
        liveness_probe: Some(liveness()),
        lifecycle: Some(pre_stop()),
        resources: cluster.spec.resources.clone(),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("config", CONFIG_DIR, true),
            mount("runtime", RUNTIME_DIR, false),
        ]),
        ..Container::default()
    }
}

/// The Pod's IP and name, and the password from its Secret.
fn env(m: &MemberPod<'_>) -> Vec<EnvVar> {
    vec![
        env_field("POD_IP", "status.podIP"),
        env_field("POD_NAME", "metadata.name"),
        EnvVar {
            name: "REDIS_PASSWORD".to_string(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: m.auth_secret.to_string(),
                    key: m.auth_key.to_string(),
                    ..SecretKeySelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
    ]
}

/// `sh -c script`.
fn shell(script: &str) -> ExecAction {
    ExecAction {
        command: Some(vec!["sh".to_string(), "-c".to_string(), script.to_string()]),
    }
}

/// Ready once the member serves (the readiness script).
fn readiness() -> Probe {
    Probe {
        exec: Some(shell(config::READINESS_SCRIPT)),
        period_seconds: Some(2),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// Liveness is only "the port answers": loading a large AOF can take minutes and must not be
/// mistaken for a hang.
fn liveness() -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(REDIS_PORT),
            ..TCPSocketAction::default()
        }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(6),
        ..Probe::default()
    }
}

/// A leader hands over to its best in-sync follower before SIGTERM (graceful deletion).
fn pre_stop() -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(shell(config::PRE_STOP_SCRIPT)),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

/// The member identity (shard, member) recorded in a Pod's or PVC's labels.
pub fn member_of(labels: &BTreeMap<String, String>) -> Option<(usize, usize)> {
    let shard = labels.get(labels::SHARD_LABEL)?.parse().ok()?;
    let member = labels.get(labels::MEMBER_LABEL)?.parse().ok()?;
    Some((shard, member))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RedisClusterSpec;

    fn cluster() -> RedisCluster {
        let spec: RedisClusterSpec =
            serde_json::from_value(serde_json::json!({"leaders": 3})).unwrap();
        let mut c = RedisCluster::new("demo", spec);
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    #[test]
    fn pod_is_pinned_and_labelled() {
        let c = cluster();
        let pod = build(
            &c,
            &MemberPod {
                shard: 1,
                member: 0,
                name: Names::member_pod("demo", 1, 0, "abcde"),
                node: "node-a1",
                pvc: Some("data-demo-s1-m0-abcde".into()),
                auth_secret: "demo-auth",
                auth_key: "password",
                revision: "r",
                live_config: "{}",
            },
        );
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(member_of(&labels), Some((1, 0)));
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "uid-1");
        let spec = pod.spec.unwrap();
        let term = &spec
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0];
        assert_eq!(
            term.match_fields.as_ref().unwrap()[0].values,
            Some(vec!["node-a1".to_string()])
        );
        assert_eq!(spec.containers[0].image.as_deref(), Some("redis:7.2"));
    }
}
