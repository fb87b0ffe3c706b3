//! Dynamic provisioner for the default `local` StorageClass (WaitForFirstConsumer): a PV
//! per claim, backed by a disk of the claim's size on the node the scheduler selected (an ext4
//! image loop-mounted at the PV's directory, `loopvol`), pinned there by nodeAffinity. Binding
//! is left to the KCM's PV controller, as with any external provisioner.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::loopvol;
use crate::node::{NodeCtx, NodeState};
use crate::pod::volumes::{PROVISIONED_BY, PROVISIONER};

pub const STORAGE_CLASS: &str = "local";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const STORAGE_PROVISIONER: &[&str] = &[
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
];

async fn ensure_storage_class(client: &Client) -> Result<(), kube::Error> {
    let api: Api<StorageClass> = Api::all(client.clone());
    if let Some(sc) = api.get_opt(STORAGE_CLASS).await? {
        if sc.provisioner != PROVISIONER {
            warn!(
                "StorageClass {STORAGE_CLASS} exists with provisioner {}; leaving it alone",
                sc.provisioner
            );
        }
        return Ok(());
    }
    let sc: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": false,
    }))
    .map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &sc).await {
        Ok(_) => {
            info!("created default StorageClass {STORAGE_CLASS}");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn claim_provisioner(pvc: &PersistentVolumeClaim) -> Option<&str> {
    let ann = pvc.metadata.annotations.as_ref()?;
    STORAGE_PROVISIONER
        .iter()
        .find_map(|k| ann.get(*k))
        .map(String::as_str)
}

/// The claim's `spec.resources.requests.storage` (1Gi when it asks for none).
pub fn requested_storage(pvc: &PersistentVolumeClaim) -> String {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".into())
}

/// Builds the PV of `capacity` for a claim on `node`, or None if the claim is not ours to
/// provision.
pub fn pv_for_claim(
    pvc: &PersistentVolumeClaim,
    node: &str,
    dir: &Path,
    capacity: &str,
    reclaim: &str,
) -> Option<PersistentVolume> {
    let spec = pvc.spec.as_ref()?;
    let storage = capacity;
    let pv = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": format!("pvc-{}", pvc.metadata.uid.as_deref()?),
            "annotations": {PROVISIONED_BY: PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": reclaim,
            "storageClassName": spec.storage_class_name.clone().unwrap_or_else(|| STORAGE_CLASS.into()),
            "volumeMode": "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": pvc.metadata.namespace,
                "name": pvc.metadata.name,
                "uid": pvc.metadata.uid,
            },
            "local": {"path": dir.to_string_lossy()},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{
                "key": "kubernetes.io/hostname", "operator": "In", "values": [node],
            }]}]}},
        },
    });
    serde_json::from_value(pv).ok()
}

/// Volumes made at once.
const PARALLEL_VOLUMES: usize = 4;

/// A claim to provision: its key for logs, the node it goes to and the size it gets.
struct Job {
    key: String,
    node: Arc<NodeCtx>,
    pvc: Arc<PersistentVolumeClaim>,
    bytes: u64,
    capacity: String,
    requested: String,
}

struct Provisioner {
    client: Client,
    nodes: Vec<Arc<NodeCtx>>,
    warned: HashSet<String>,
}

impl Provisioner {
    fn node(&self, name: &str) -> Option<&Arc<NodeCtx>> {
        self.nodes.iter().find(|n| n.name == name)
    }

    async fn reconcile(
        &mut self,
        pvcs: &Store<PersistentVolumeClaim>,
        pvs: &Store<PersistentVolume>,
    ) {
        let existing: HashSet<String> = pvs.state().iter().map(|p| p.name_any()).collect();
        let mut jobs = Vec::new();
        for pvc in pvcs.state() {
            if pvc.metadata.deletion_timestamp.is_some()
                || pvc
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .is_some_and(|v| !v.is_empty())
                || claim_provisioner(&pvc) != Some(PROVISIONER)
            {
                continue;
            }
            let Some(selected) = pvc.annotations().get(SELECTED_NODE).cloned() else {
                continue;
            };
            // Another agent's node, or none: not ours to provision.
            let Some(node) = self.node(&selected).cloned() else {
                continue;
            };
            if node.state() == NodeState::Crashed {
                continue;
            }
            let Some(uid) = pvc.metadata.uid.clone() else {
                continue;
            };
            let pv_name = format!("pvc-{uid}");
            if existing.contains(&pv_name) {
                continue;
            }
            let key = format!("{}/{}", pvc.namespace().unwrap_or_default(), pvc.name_any());
            if pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
                if self.warned.insert(key.clone()) {
                    warn!(claim = %key, "volumeMode Block is not supported; not provisioning");
                }
                continue;
            }
            let requested = requested_storage(&pvc);
            let Some((bytes, capacity)) = loopvol::image_size(&requested) else {
                if self.warned.insert(key.clone()) {
                    warn!(claim = %key, "storage request {requested:?} is not a positive quantity; not provisioning");
                }
                continue;
            };
            jobs.push(Job {
                key,
                node,
                pvc,
                bytes,
                capacity,
                requested,
            });
        }
        // Claims are made side by side: under load one volume takes seconds (mkfs waits for
        // CPU), and a burst of new clusters would otherwise queue their Pods for minutes.
        futures::stream::iter(jobs)
            .for_each_concurrent(PARALLEL_VOLUMES, |job| self.provision(job))
            .await;
        for pv in pvs.state() {
            let ours =
                pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
            let spec = pv.spec.clone().unwrap_or_default();
            let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
            if !ours
                || !released
                || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete")
                || pv.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let Some(path) = spec.local.as_ref().map(|l| l.path.clone()) else {
                continue;
            };
            let path = std::path::PathBuf::from(path);
            let Some(node) = self
                .nodes
                .iter()
                .find(|n| path.starts_with(n.volumes_dir()))
                .cloned()
            else {
                continue;
            };
            // A dead machine's disk cannot be wiped; this happens once it is back.
            if node.state() == NodeState::Crashed {
                continue;
            }
            if let Err(e) = loopvol::remove(&path).await {
                warn!(pv = %pv.name_any(), "removing {}: {e:#}", path.display());
                continue;
            }
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            match api.delete(&pv.name_any(), &DeleteParams::default()).await {
                Ok(_) => info!(pv = %pv.name_any(), "released volume deleted"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => warn!(pv = %pv.name_any(), "deleting PV: {e}"),
            }
        }
    }

    /// Makes one claim's volume and its PV.
    async fn provision(&self, job: Job) {
        let (key, node, pvc) = (&job.key, &job.node, &job.pvc);
        let Some(uid) = pvc.metadata.uid.clone() else {
            return;
        };
        let pv_name = format!("pvc-{uid}");
        let reclaim = self.reclaim_policy(pvc).await;
        let dir = node.volumes_dir().join(&pv_name);
        let t0 = std::time::Instant::now();
        if let Err(e) = loopvol::create(&dir, job.bytes).await {
            warn!(claim = %key, "making the {} volume at {}: {e:#}", job.requested, dir.display());
            return;
        }
        let made_in = t0.elapsed();
        let Some(pv) = pv_for_claim(pvc, &node.name, &dir, &job.capacity, &reclaim) else {
            return;
        };
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &pv).await {
            Ok(_) => info!(
                claim = %key, pv = %pv_name, node = %node.name, capacity = %job.capacity,
                volume_ms = made_in.as_millis() as u64, "provisioned"
            ),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => warn!(claim = %key, "creating PV: {e}"),
        }
    }

    async fn reclaim_policy(&self, pvc: &PersistentVolumeClaim) -> String {
        let class = pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_else(|| STORAGE_CLASS.into());
        let api: Api<StorageClass> = Api::all(self.client.clone());
        api.get_opt(&class)
            .await
            .ok()
            .flatten()
            .and_then(|sc| sc.reclaim_policy)
            .unwrap_or_else(|| "Delete".into())
    }
}

pub async fn run(client: Client, nodes: Vec<Arc<NodeCtx>>) {
    let mut delay = Duration::from_secs(1);
    while let Err(e) = ensure_storage_class(&client).await {
        warn!("ensuring StorageClass {STORAGE_CLASS}: {e}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    let (pvc_store, pvc_writer) = reflector::store::<PersistentVolumeClaim>();
    let (pv_store, pv_writer) = reflector::store::<PersistentVolume>();
    let changed = Arc::new(tokio::sync::Notify::new());
    // The reflectors run on their own tasks: a store only fills while its stream is polled.
    let pvc_events = reflector::reflector(
        pvc_writer,
        watcher::watcher(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    tokio::spawn(drive(pvc_events, changed.clone()));
    let pv_events = reflector::reflector(
        pv_writer,
        watcher::watcher(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    tokio::spawn(drive(pv_events, changed.clone()));
    if pvc_store.wait_until_ready().await.is_err() || pv_store.wait_until_ready().await.is_err() {
        return;
    }
    let mut p = Provisioner {
        client,
        nodes,
        warned: HashSet::new(),
    };
    let mut resync = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = resync.tick() => {}
        }
        // Let a burst of events settle into the stores before acting once.
        tokio::time::sleep(Duration::from_millis(100)).await;
        p.reconcile(&pvc_store, &pv_store).await;
    }
}

async fn drive<S, T, E>(stream: S, changed: Arc<tokio::sync::Notify>)
where
    S: futures::Stream<Item = Result<T, E>> + Send,
    E: std::fmt::Display,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(_) => changed.notify_one(),
            Err(e) => warn!("provisioner watch: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
    use kube::api::ObjectMeta;

    #[test]
    fn pv_is_pinned_to_the_selected_node() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data-redis-0", "namespace": "db", "uid": "u1"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "2Gi"}},
                "storageClassName": "local",
            },
        }))
        .unwrap();
        let pv = pv_for_claim(
            &pvc,
            "n1",
            Path::new("/s/nodes/n1/volumes/pvc-u1"),
            &requested_storage(&pvc),
            "Delete",
        )
        .unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u1"));
        let spec = pv.spec.unwrap();
        assert_eq!(spec.local.unwrap().path, "/s/nodes/n1/volumes/pvc-u1");
        assert_eq!(spec.capacity.unwrap()["storage"].0, "2Gi");
        assert_eq!(spec.claim_ref.unwrap().uid.as_deref(), Some("u1"));
        let terms = spec
            .node_affinity
            .unwrap()
            .required
            .unwrap()
            .node_selector_terms;
        let e = &terms[0].match_expressions.as_ref().unwrap()[0];
        assert_eq!(e.values.as_deref(), Some(&["n1".to_string()][..]));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        let _ = PersistentVolumeClaimSpec::default();
        let _ = ObjectMeta::default();
    }
}
