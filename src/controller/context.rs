//! Shared state of the reconcilers: the client, caches and the event recorder.

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

/// Everything a reconcile needs besides the RedisCluster itself.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes events.k8s.io Events; one per process so series aggregate.
    pub recorder: Recorder,
    /// Member Pods of every cluster this operator manages (label-selected watch).
    pub pods: Store<Pod>,
    /// Member PVCs of every cluster (label-selected watch).
    pub pvcs: Store<PersistentVolumeClaim>,
    /// Every Node: placement needs zones, readiness, taints and allocatable resources.
    pub nodes: Store<Node>,
    /// Whether this replica may act now (the leader Lease holder within its renew deadline;
    /// always with `--leader-election=false`). Check `may_act()` right before acting and
    /// before every status write or Event.
    pub leadership: crate::leader::Leadership,
    /// The process's metrics: each pass records into them ([`crate::metrics`]).
    pub metrics: crate::metrics::Metrics,
    /// The namespace the operator's Pod runs in (None outside a cluster): the members'
    /// NetworkPolicy lets its Pods reach the client port.
    pub operator_namespace: Option<String>,
    /// Per cluster, the members whose connect timed out on the last pass: they get a shorter
    /// connect limit ([`crate::controller::observe::connects`]). In memory only.
    pub connects: crate::controller::observe::connects::ConnectMemory,
    /// The support objects as this process last applied them: an unchanged one is not applied
    /// again ([`crate::controller::act::applied`]). In memory only.
    pub applied: crate::controller::act::applied::AppliedMemory,
    /// True once the Pod, PVC and Node caches (and the RedisClusters') have their first list.
    pub caches: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    /// Whether every cache has its first list. Until then a reconcile must not plan: an empty
    /// Pod cache beside a full PVC cache reads as "every member's Pod is gone, revive it on its
    /// volume", and that would start a second redis-server on each member's data (seen in the
    /// e2e suite: a restarted operator's first pass recreated all six members of a running
    /// cluster, its Pod watch's first list not yet in).
    pub fn caches_synced(&self) -> bool {
        *self.caches.borrow()
    }
}
