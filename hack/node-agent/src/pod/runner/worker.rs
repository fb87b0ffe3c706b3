//! The per-pod worker: its state, and the level-triggered loop that brings the pod's
//! processes in line with the latest object (start, restart, terminate) and writes status.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::ctr::Ctr;
use crate::netns::Sandbox;
use crate::node::{NodeCtx, NodeState};
use crate::pod::env::{Objects, PodFacts};
use crate::pod::status::CState;
use crate::pod::volumes::{Prepared, VolumeError};
use crate::pod::{Event, PodUpdate, Resources, is_terminal, pod_dir, remove_pod_volumes};

/// How often volume contents (ConfigMaps, Secrets, downward API) are re-synced.
const VOLUME_RESYNC: Duration = Duration::from_secs(20);
/// How soon a pod that cannot start yet is retried.
pub(super) const RETRY: Duration = Duration::from_secs(5);
pub(super) const BACKOFF_START: Duration = Duration::from_secs(10);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long starts its back-off from scratch.
pub(super) const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// What the kubelet grants a process after SIGTERM when the grace period is used up.
pub(super) const MIN_TERM_GRACE: Duration = Duration::from_secs(2);

fn rv(p: &Pod) -> u64 {
    p.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One pod's worker. Its parts (start, restart, terminate, status writes...) live in the
/// sibling files, which is why its fields are visible to them.
pub struct Worker {
    pub(super) node: Arc<NodeCtx>,
    pub(super) uid: String,
    pub(super) key: String,
    pub(super) rx: watch::Receiver<PodUpdate>,
    pub(super) res: Arc<Mutex<Resources>>,
    pub(super) ev_tx: mpsc::UnboundedSender<Event>,
    pub(super) ev_rx: mpsc::UnboundedReceiver<Event>,
    pub(super) pod: Arc<Pod>,
    pub(super) gone: bool,
    pub(super) dir: PathBuf,
    pub(super) sandbox: Option<Sandbox>,
    pub(super) pod_ip: Option<Ipv4Addr>,
    pub(super) pod_error: Option<VolumeError>,
    pub(super) volumes: Option<BTreeMap<String, Prepared>>,
    pub(super) volumes_synced: Option<Instant>,
    pub(super) objects: Objects,
    pub(super) objects_fetched: Option<Instant>,
    pub(super) claims: HashMap<String, Result<PathBuf, VolumeError>>,
    pub(super) tokens: HashMap<String, (String, Instant)>,
    pub(super) init: Vec<Ctr>,
    pub(super) app: Vec<Ctr>,
    pub(super) initialized: bool,
    pub(super) terminating: bool,
    pub(super) terminated: bool,
    pub(super) api_done: bool,
    pub(super) last_write: Option<(PodStatus, Option<PodStatus>)>,
    pub(super) write_retry: Option<Instant>,
}

/// Why the loop woke up: a new object (`false`: the watcher is gone), a helper's report,
/// or a timer (restart due, volume resync, retry).
enum Wake {
    Update(bool),
    Event(Event),
    Timer,
}

impl Worker {
    pub fn new(
        node: Arc<NodeCtx>,
        pod: Pod,
        rx: watch::Receiver<PodUpdate>,
        res: Arc<Mutex<Resources>>,
    ) -> Self {
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let spec = pod.spec.clone().unwrap_or_default();
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Ctr::new(c, true, &pod))
            .collect();
        let app = spec
            .containers
            .iter()
            .map(|c| Ctr::new(c, false, &pod))
            .collect();
        let dir = pod_dir(&node, &pod);
        Worker {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            key: format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            ),
            node,
            rx,
            res,
            ev_tx,
            ev_rx,
            pod: Arc::new(pod),
            gone: false,
            dir,
            sandbox: None,
            pod_ip: None,
            pod_error: None,
            volumes: None,
            volumes_synced: None,
            objects: Objects::default(),
            objects_fetched: None,
            claims: HashMap::new(),
            tokens: HashMap::new(),
            init,
            app,
            initialized: false,
            terminating: false,
            terminated: false,
            api_done: false,
            last_write: None,
            write_retry: None,
        }
    }

    pub(super) fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    pub(super) fn ns(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub(super) fn reachable(&self) -> bool {
        self.node.state() == NodeState::Up
    }

    fn absorb_update(&mut self) {
        match &*self.rx.borrow_and_update() {
            PodUpdate::Gone => self.gone = true,
            PodUpdate::Present(p) => {
                // The watch can lag behind our own status write; never go backwards.
                if rv(p) >= rv(&self.pod) || rv(p) == 0 {
                    self.pod = p.clone();
                }
            }
        }
    }

    fn deleting(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// A predecessor with the same name (force-deleted, or gone after a partition) may
    /// still be stopping and holding the same volumes; two redis processes must never
    /// share a data directory, so wait for it (bounded).
    async fn wait_for_predecessor(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let busy = self
                .node
                .pods
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|(uid, h)| *uid != self.uid && h.key == self.key);
            if !busy || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn run(mut self) {
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            warn!(pod = %self.key, "creating {}: {e}", self.dir.display());
        }
        self.wait_for_predecessor().await;
        loop {
            self.absorb_update();
            if self.gone {
                if !self.terminated {
                    info!(pod = %self.key, "pod is gone from the API; stopping it");
                    self.terminate(MIN_TERM_GRACE, false, true).await;
                }
                break;
            }
            if self.deleting() {
                if !self.terminated {
                    let grace = self.deletion_grace();
                    info!(pod = %self.key, grace = ?grace, "pod is being deleted; terminating");
                    self.terminate(grace, true, true).await;
                }
                if !self.api_done && self.reachable() {
                    self.finalize_api().await;
                }
            } else {
                self.sync().await;
                self.write_status().await;
            }
            let wake = self.next_wake();
            let w = tokio::select! {
                r = self.rx.changed() => Wake::Update(r.is_ok()),
                Some(ev) = self.ev_rx.recv() => Wake::Event(ev),
                _ = tokio::time::sleep_until(wake) => Wake::Timer,
            };
            match w {
                Wake::Update(false) => self.gone = true,
                Wake::Event(ev) => self.handle_event(ev),
                Wake::Update(true) | Wake::Timer => {}
            }
            while let Ok(ev) = self.ev_rx.try_recv() {
                self.handle_event(ev);
            }
        }
        remove_pod_volumes(&self.dir);
        let _ = std::fs::remove_file(self.dir.join("sandbox"));
        self.node
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.uid);
        debug!(pod = %self.key, "worker done");
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + VOLUME_RESYNC;
        if self.terminated {
            if !self.api_done {
                wake = now + Duration::from_secs(2);
            }
            return wake;
        }
        for c in self.init.iter().chain(&self.app) {
            if let Some(t) = c.next_start
                && !c.done
                && !c.running()
            {
                wake = wake.min(t.max(now + Duration::from_millis(50)));
            }
        }
        if self.pod_error.is_some() || self.sandbox.is_none() {
            wake = wake.min(now + RETRY);
        }
        if let Some(t) = self.write_retry {
            wake = wake.min(t);
        }
        wake
    }

    pub(super) fn spec_container(&self, name: &str, init: bool) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        if init {
            spec.init_containers
                .iter()
                .flatten()
                .find(|c| c.name == name)
                .cloned()
        } else {
            spec.containers.iter().find(|c| c.name == name).cloned()
        }
    }

    pub(super) fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    pub(super) fn facts(&self) -> PodFacts {
        PodFacts {
            host_ip: self.node.host_ip.to_string(),
            pod_ip: self.pod_ip.map(|i| i.to_string()).unwrap_or_default(),
            node_cpu: self.node.cfg.cpu.clone(),
            node_memory: self.node.cfg.memory.clone(),
        }
    }

    pub(super) async fn sync(&mut self) {
        if is_terminal(&self.pod) {
            // Finished for good (as the API says): nothing may run any more.
            if self.sandbox.is_some() || self.any_running() {
                self.terminate(MIN_TERM_GRACE, false, false).await;
            }
            return;
        }
        if self.sandbox.is_none()
            && let Err(e) = self.create_sandbox().await
        {
            warn!(pod = %self.key, "creating sandbox: {e}");
            self.pod_error = Some(VolumeError {
                reason: "ContainerCreating",
                message: format!("Failed to create pod sandbox: {e}"),
            });
            self.mark_waiting();
            return;
        }
        let due = self.volumes.is_none()
            || self
                .volumes_synced
                .is_none_or(|t| t.elapsed() >= VOLUME_RESYNC);
        if due && self.reachable() {
            self.sync_volumes().await;
        }
        if self.volumes.is_none() {
            self.mark_waiting();
            return;
        }
        self.start_containers().await;
        if self.all_done() {
            // Every container finished and none restarts: the kubelet tears the sandbox down.
            self.terminated = true;
            self.teardown().await;
        }
    }

    fn all_done(&self) -> bool {
        !self.app.is_empty() && self.app.iter().all(|c| c.done) && !self.any_running()
    }

    pub(super) fn any_running(&self) -> bool {
        self.init.iter().chain(&self.app).any(Ctr::running)
    }

    /// Containers that never ran show why the pod cannot start.
    fn mark_waiting(&mut self) {
        let Some(err) = self.pod_error.clone() else {
            return;
        };
        for c in self.init.iter_mut().chain(self.app.iter_mut()) {
            if !c.running() && !c.done && !c.had_instance {
                c.state = CState::Waiting {
                    reason: err.reason.into(),
                    message: Some(err.message.clone()),
                };
            }
        }
    }

    pub(super) fn ctr_mut(&mut self, init: bool, i: usize) -> &mut Ctr {
        if init {
            &mut self.init[i]
        } else {
            &mut self.app[i]
        }
    }
}
