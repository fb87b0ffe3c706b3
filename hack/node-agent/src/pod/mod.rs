//! Pods bound to a node: one watcher per node feeds one worker task per pod (keyed by
//! UID). Workers are level-triggered: they always act on the latest object they were given.

pub mod caps;
pub mod cluster;
pub mod enter;
pub mod env;
pub mod image;
pub mod oci;
pub mod ownership;
pub mod probe;
pub mod rootfs;
pub mod runner;
pub mod status;
pub mod volumes;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::netns::Sandbox;
use crate::node::{NodeCtx, NodeState};

/// What the watcher last said about a pod.
#[derive(Debug, Clone)]
pub enum PodUpdate {
    Present(Arc<Pod>),
    /// Deleted from the API (or missing from a relist).
    Gone,
}

/// What a worker's helpers report back to it.
#[derive(Debug)]
pub enum Event {
    Exited {
        container: String,
        instance: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
    Probe {
        container: String,
        instance: u64,
        ev: probe::ProbeEvent,
    },
    HookFailed {
        container: String,
        instance: u64,
        message: String,
    },
}

/// What must be cleaned up if the worker is cut off mid-flight (node crash): registered
/// before each resource is created, so an abort can never leak one.
#[derive(Debug, Default, Clone)]
pub struct Resources {
    pub groups: BTreeMap<String, i32>,
    pub sandbox: Option<Sandbox>,
    /// Where the pid files and the sandbox record live, to drop them with the resources.
    pub pod_dir: PathBuf,
}

impl Resources {
    /// Forgets the on-disk records once the processes and the sandbox are gone.
    pub fn remove_records(&self) {
        for name in self.groups.keys() {
            let _ = std::fs::remove_file(self.pod_dir.join(format!("{name}.pid")));
        }
        let _ = std::fs::remove_file(self.pod_dir.join("sandbox"));
    }
}

pub struct PodHandle {
    /// namespace/name: a successor with the same name waits for this one to finish.
    pub key: String,
    pub tx: watch::Sender<PodUpdate>,
    pub join: JoinHandle<()>,
    pub res: Arc<Mutex<Resources>>,
}

pub fn pod_dir_name(pod: &Pod) -> String {
    format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Hands the pod to its worker, starting one if needed. The state check happens under the
/// map lock so a concurrent crash (which drains the map after flipping the state) can never
/// miss a freshly started worker.
fn dispatch(node: &Arc<NodeCtx>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let mut pods = node.pods.lock().unwrap_or_else(|e| e.into_inner());
    if node.state() != NodeState::Up {
        return;
    }
    if let Some(h) = pods.get(&uid) {
        h.tx.send_replace(PodUpdate::Present(Arc::new(pod)));
        return;
    }
    if is_terminal(&pod) && pod.metadata.deletion_timestamp.is_none() {
        return;
    }
    info!(
        node = %node.name,
        pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default()),
        "new pod"
    );
    let key = pod_key(&pod);
    let (tx, rx) = watch::channel(PodUpdate::Present(Arc::new(pod.clone())));
    let res = Arc::new(Mutex::new(Resources {
        pod_dir: pod_dir(node, &pod),
        ..Default::default()
    }));
    let worker = runner::Worker::new(node.clone(), pod, rx, res.clone());
    let join = tokio::spawn(worker.run());
    pods.insert(uid, PodHandle { key, tx, join, res });
}

fn gone(node: &NodeCtx, uid: &str) {
    let pods = node.pods.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = pods.get(uid) {
        h.tx.send_replace(PodUpdate::Gone);
    }
}

/// Pod directories whose pod is neither known to the API nor running here: left by a
/// crash or an agent restart. Their volumes go; logs stay for post-mortems.
fn clean_orphans(node: &NodeCtx, listed: &HashSet<String>) {
    let pods_dir = node.dir.join("pods");
    let Ok(entries) = std::fs::read_dir(&pods_dir) else {
        return;
    };
    let running: HashSet<String> = node
        .pods
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(uid) = name.rsplit('_').next() else {
            continue;
        };
        if !listed.contains(uid) && !running.contains(uid) {
            remove_pod_volumes(&e.path());
        }
    }
}

pub fn remove_pod_volumes(pod_dir: &Path) {
    for sub in ["volumes", "containers"] {
        let p = pod_dir.join(sub);
        if p.exists()
            && let Err(e) = std::fs::remove_dir_all(&p)
        {
            warn!("removing {}: {e}", p.display());
        }
    }
}

/// Watches the node's pods while the node is up. A crash or partition drops the watch; the
/// next `up` relists, and the relist tells workers which pods vanished meanwhile.
pub async fn run_node_pods(node: Arc<NodeCtx>) {
    let mut state_rx = node.state_rx();
    loop {
        if state_rx.wait_for(|s| *s == NodeState::Up).await.is_err() {
            return;
        }
        let api: Api<Pod> = Api::all(node.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", node.name));
        let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
        let mut initial: Vec<Pod> = Vec::new();
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(WatchEvent::Init)) => initial.clear(),
                    // A relist is buffered so that pods which vanished meanwhile are told to
                    // stop before their successors (same name, new UID) are started.
                    Some(Ok(WatchEvent::InitApply(p))) => initial.push(p),
                    Some(Ok(WatchEvent::InitDone)) => {
                        let listed: HashSet<String> =
                            initial.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                        let stale: Vec<String> = node
                            .pods
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .keys()
                            .filter(|u| !listed.contains(*u))
                            .cloned()
                            .collect();
                        for uid in stale {
                            gone(&node, &uid);
                        }
                        for p in initial.drain(..) {
                            dispatch(&node, p);
                        }
                        clean_orphans(&node, &listed);
                    }
                    Some(Ok(WatchEvent::Apply(p))) => dispatch(&node, p),
                    Some(Ok(WatchEvent::Delete(p))) => {
                        if let Some(uid) = p.metadata.uid.as_deref() {
                            gone(&node, uid);
                        }
                    }
                    Some(Err(e)) => warn!(node = %node.name, "pod watch: {e}"),
                    None => break,
                },
                // Any transition (even down and up again in between) forces a relist.
                changed = state_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

pub fn pod_dir(node: &NodeCtx, pod: &Pod) -> PathBuf {
    node.dir.join("pods").join(pod_dir_name(pod))
}
