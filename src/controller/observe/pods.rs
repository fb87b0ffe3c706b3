//! The cluster's members as Kubernetes shows them: Pods (and their PVCs) read from the caches.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use crate::controller::build::pod::member_of;
use crate::controller::labels::CLUSTER_LABEL;

/// One member incarnation (a Pod) of the cluster.
#[derive(Debug, Clone)]
pub struct Member {
    /// Shard index from the Pod's labels.
    pub shard: usize,
    /// Member ordinal within the shard.
    pub member: usize,
    /// The Pod.
    pub pod: Arc<Pod>,
}

impl Member {
    /// Pod name.
    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }
    /// The node the Pod is bound to (or pinned to, before binding).
    pub fn node(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()?
            .node_name
            .as_deref()
            .or_else(|| pinned_node(&self.pod))
    }
    /// Pod IP once the Pod runs.
    pub fn ip(&self) -> Option<IpAddr> {
        self.pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
    }
    /// Deletion has started (a Terminating Pod never serves again, whatever its node says).
    pub fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }
    /// The Pod's Ready condition is True.
    pub fn ready(&self) -> bool {
        self.pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }
    /// The Pod ended for good (restartPolicy Always makes this rare: eviction, node loss).
    pub fn finished(&self) -> bool {
        matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        )
    }
    /// The redis container's status, once the node reported one.
    fn container(&self) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
        self.pod
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|c| c.name == "redis")
    }
    /// The redis process is not running as far as Kubernetes can tell: the container is not
    /// running (terminated, waiting to restart, never started), or it was restarted and has
    /// not passed readiness since. Kubernetes' half of "is this member dead"; the cluster's
    /// own view is the other half (see `plan::health`).
    pub fn process_down(&self) -> bool {
        let Some(c) = self.container() else {
            return true;
        };
        let running = c.state.as_ref().is_some_and(|s| s.running.is_some());
        !running || (c.restart_count > 0 && !c.ready)
    }
    /// The container cannot start or keeps crashing (CrashLoopBackOff, an image that cannot be
    /// pulled, a bad configuration): the member is unhealthy and the scheduler replaces it. A
    /// container held by the start gate runs and is not crash-looping.
    pub fn crash_looping(&self) -> bool {
        self.container()
            .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
            .is_some_and(|r| {
                matches!(
                    r,
                    "CrashLoopBackOff"
                        | "ImagePullBackOff"
                        | "ErrImagePull"
                        | "CreateContainerConfigError"
                        | "CreateContainerError"
                )
            })
    }
    /// Why the Pod cannot be scheduled, while the scheduler says it cannot (`PodScheduled`
    /// False with reason `Unschedulable`): its message.
    pub fn unschedulable(&self) -> Option<&str> {
        self.pod
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
            .map(|c| c.message.as_deref().unwrap_or("Unschedulable"))
    }
    /// The revision the Pod was built from (annotation), if any.
    pub fn revision(&self) -> Option<&str> {
        self.annotation(crate::controller::labels::REVISION_ANNOTATION)
    }
    /// When the redis container last started running: the start of its process (a restart
    /// happens in place, in the same Pod).
    pub fn running_since(&self) -> Option<jiff::Timestamp> {
        let running = self.container()?.state.as_ref()?.running.as_ref()?;
        running.started_at.as_ref().map(|t| t.0)
    }
    /// How often the redis container was restarted in this Pod.
    pub fn restart_count(&self) -> i32 {
        self.container().map_or(0, |c| c.restart_count)
    }
    /// One of the Pod's annotations.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.pod
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
    /// When deletion was requested.
    pub fn deleting_since(&self) -> Option<jiff::Timestamp> {
        self.pod.metadata.deletion_timestamp.as_ref().map(|t| t.0)
    }
    /// The PVC the Pod mounts as its data volume.
    pub fn claim(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()?
            .volumes
            .as_ref()?
            .iter()
            .find(|v| v.name == "data")?
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str())
    }
}

/// The node a Pod was pinned to by our required node affinity.
fn pinned_node(pod: &Pod) -> Option<&str> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first())
        .map(String::as_str)
}

fn belongs(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ns: &str,
    cluster: &str,
) -> bool {
    meta.namespace.as_deref() == Some(ns)
        && meta
            .labels
            .as_ref()
            .and_then(|l| l.get(CLUSTER_LABEL))
            .map(String::as_str)
            == Some(cluster)
}

/// Every member Pod of a cluster, sorted by (shard, member, name) for deterministic planning.
pub fn members(pods: &[Arc<Pod>], ns: &str, cluster: &str) -> Vec<Member> {
    let mut out: Vec<Member> = pods
        .iter()
        .filter(|p| belongs(&p.metadata, ns, cluster))
        .filter_map(|p| {
            let (shard, member) = member_of(p.metadata.labels.as_ref()?)?;
            Some(Member {
                shard,
                member,
                pod: p.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.shard, a.member, a.name()).cmp(&(b.shard, b.member, b.name())));
    out
}

/// Every member PVC of a cluster by name.
pub fn claims(
    pvcs: &[Arc<PersistentVolumeClaim>],
    ns: &str,
    cluster: &str,
) -> BTreeMap<String, Arc<PersistentVolumeClaim>> {
    pvcs.iter()
        .filter(|p| belongs(&p.metadata, ns, cluster))
        .filter_map(|p| Some((p.metadata.name.clone()?, p.clone())))
        .collect()
}

/// The node a bound local PVC lives on, from the scheduler's selected-node annotation.
pub fn claim_node(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.metadata
        .annotations
        .as_ref()?
        .get("volume.kubernetes.io/selected-node")
        .map(String::as_str)
}
