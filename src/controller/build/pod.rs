//! One member incarnation's Pod, pinned to its planned node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ExecAction, Lifecycle, LifecycleHandler, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Probe, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, TCPSocketAction, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::owner_ref;
use super::resources::member_resources;
use super::tls;
use crate::controller::config::{self, BUS_PORT, CONFIG_DIR, DATA_DIR, REDIS_PORT, RUNTIME_DIR};
use crate::controller::labels::{self, Names};
use crate::crd::{RedisCluster, TlsSpec};

/// The uid and gid redis-server runs as: the `redis` user of the official Redis images, so a
/// volume written by such an image elsewhere stays readable.
pub const REDIS_UID: i64 = 999;

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
            tolerations: Some(tolerations(&overrides.tolerations)),
            priority_class_name: overrides.priority_class_name.clone(),
            containers: vec![container(cluster, m)],
            volumes: Some(volumes(cluster, m)),
            security_context: Some(pod_security()),
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

pub use crate::topology::NODE_LOSS_TAINTS;

/// The spec's tolerations, and the node-loss taints tolerated for good (unless the spec says
/// otherwise for one). An eviction cannot move a member: its replacement is a new member that
/// the operator creates anyway, and its volume stays on the lost node. All it does is stop the
/// process the moment the node answers again, and a leader cut off behind a partition still
/// owns its slots, with its shard's newest writes (the soak, seed 20261216, round 12: a zone
/// cut off for 83 s lost two leaders this way, QuorumLost after the heal). The operator decides
/// instead, from the cluster's own view: a member on a lost node is removed once its slots
/// moved (`plan::members`).
pub fn tolerations(spec: &[Toleration]) -> Vec<Toleration> {
    let mut out = spec.to_vec();
    for key in NODE_LOSS_TAINTS {
        if !spec.iter().any(|t| t.key.as_deref() == Some(key)) {
            out.push(node_loss_toleration(key));
        }
    }
    out
}

/// The toleration [`tolerations`] adds for `key`.
pub fn node_loss_toleration(key: &str) -> Toleration {
    Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some("NoExecute".to_string()),
        ..Toleration::default()
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

/// Records on a surge member's Pod the outdated member's Pod it replaces (the pair the
/// rolling update retires the old one from, [`labels::REPLACES_ANNOTATION`]) and its Redis
/// identity, forgotten at once when it retires ([`labels::REPLACES_ID_ANNOTATION`]).
pub fn mark_replacing(pod: &mut Pod, outdated: &str, id: Option<&str>) {
    let annotations = pod.metadata.annotations.get_or_insert_default();
    annotations.insert(
        labels::REPLACES_ANNOTATION.to_string(),
        outdated.to_string(),
    );
    if let Some(id) = id {
        annotations.insert(labels::REPLACES_ID_ANNOTATION.to_string(), id.to_string());
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
    let mut volumes = vec![
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
    ];
    volumes.push(auth_volume(cluster));
    volumes.extend(tls::of(cluster).map(tls::volume));
    volumes
}

/// The auth state Secret as files, for the probes and hooks: the environment keeps the
/// password a container started with, the files follow a rotation (the kubelet updates Secret
/// volumes in place), so a container started before one still authenticates after the
/// previous password is removed. Readable by Redis's group only (the Pod's fsGroup).
fn auth_volume(cluster: &RedisCluster) -> Volume {
    Volume {
        name: AUTH_VOLUME.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(Names::auth_state_secret(cluster)),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Name of the auth state Secret's volume.
const AUTH_VOLUME: &str = "auth";

/// The redis container: the entry script, env, ports, probes and the preStop handover. With
/// `spec.tls`, the scripts speak TLS and the Secret is mounted ([`tls`]).
fn container(cluster: &RedisCluster, m: &MemberPod<'_>) -> Container {
    let tls = tls::of(cluster);
    let mut ports = vec![port("redis", REDIS_PORT), port("cluster-bus", BUS_PORT)];
    if tls.is_some_and(|t| t.plaintext_port) {
        ports.push(port("redis-plain", tls::PLAINTEXT_PORT));
    }
    let mut volume_mounts = vec![
        mount("data", DATA_DIR, false),
        mount("config", CONFIG_DIR, true),
        mount("runtime", RUNTIME_DIR, false),
        mount(AUTH_VOLUME, config::AUTH_DIR, true),
    ];
    volume_mounts.extend(tls.map(|_| tls::mount()));
    Container {
        name: "redis".to_string(),
        image: Some(cluster.spec.image.clone()),
        command: shell(&tls::entry_script(config::ENTRY_SCRIPT, tls)).command,
        env: Some(env(m)),
        ports: Some(ports),
        readiness_probe: Some(readiness(tls)),
        liveness_probe: Some(liveness()),
        lifecycle: Some(pre_stop(tls)),
        resources: Some(member_resources(cluster)),
        security_context: Some(container_security()),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        ..ContainerPort::default()
    }
}

/// The Pod Security Standard "restricted": not root, and the volumes group-owned by Redis's gid
/// (the kubelet changes their ownership on mount, so data an earlier root-run member wrote to
/// the same claim stays writable).
fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(REDIS_UID),
        run_as_group: Some(REDIS_UID),
        fs_group: Some(REDIS_UID),
        // Only when the volume's root has another group: a recursive walk of a large dataset
        // on every restart would delay the member's return.
        fs_group_change_policy: Some("OnRootMismatch".to_string()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// No privilege at all; the root filesystem read-only. Redis writes only to its volumes:
/// `/data` (dataset, nodes.conf) and `/run/redis` (the per-start settings).
fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..SecurityContext::default()
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
fn readiness(tls: Option<&TlsSpec>) -> Probe {
    Probe {
        exec: Some(shell(&tls::script(config::READINESS_SCRIPT, tls))),
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
fn pre_stop(tls: Option<&TlsSpec>) -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(shell(&tls::script(config::PRE_STOP_SCRIPT, tls))),
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

    fn member_s1_m0() -> MemberPod<'static> {
        MemberPod {
            shard: 1,
            member: 0,
            name: Names::member_pod("demo", 1, 0, "abcde"),
            node: "node-a1",
            pvc: Some("data-demo-s1-m0-abcde".into()),
            auth_secret: "demo-auth",
            auth_key: "password",
            revision: "r",
            live_config: "{}",
        }
    }

    #[test]
    fn pod_is_pinned_and_labelled() {
        let pod = build(&cluster(), &member_s1_m0());
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

    #[test]
    fn members_tolerate_a_lost_node_for_good_unless_the_spec_says_otherwise() {
        let spec = build(&cluster(), &member_s1_m0()).spec.unwrap();
        let built = spec.tolerations.unwrap();
        for key in NODE_LOSS_TAINTS {
            let t = built
                .iter()
                .find(|t| t.key.as_deref() == Some(key))
                .unwrap();
            assert_eq!(t.effect.as_deref(), Some("NoExecute"));
            assert_eq!(t.operator.as_deref(), Some("Exists"));
            // No tolerationSeconds: never evicted (admission adds none: the key is present).
            assert_eq!(t.toleration_seconds, None);
        }
        // The spec's own toleration for a key wins; the other default stays; others are kept.
        let mine = Toleration {
            key: Some("node.kubernetes.io/unreachable".into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(600),
            ..Toleration::default()
        };
        let dedicated = Toleration {
            key: Some("dedicated".into()),
            value: Some("redis".into()),
            ..Toleration::default()
        };
        let got = tolerations(&[mine.clone(), dedicated.clone()]);
        assert_eq!(
            got,
            vec![
                mine,
                dedicated,
                node_loss_toleration("node.kubernetes.io/not-ready")
            ]
        );
    }

    #[test]
    fn members_pass_the_restricted_pod_security_standard() {
        let pod = build(&cluster(), &member_s1_m0());
        let spec = pod.spec.unwrap();
        let psc = spec.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!((psc.run_as_user, psc.fs_group), (Some(999), Some(999)));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let csc = spec.containers[0].security_context.clone().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.capabilities.unwrap().drop, Some(vec!["ALL".into()]));
        assert_eq!(csc.read_only_root_filesystem, Some(true));
        // Every writable path Redis uses is a volume.
        let writable: Vec<_> = spec.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .filter(|m| m.read_only != Some(true))
            .map(|m| m.mount_path)
            .collect();
        assert_eq!(
            writable,
            vec![DATA_DIR.to_string(), RUNTIME_DIR.to_string()]
        );
        assert!(spec.containers[0].resources.is_some());
    }
}
