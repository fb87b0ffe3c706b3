//! One worker per pod: sandbox, volumes, containers as processes, probes, restarts, status
//! writes and graceful termination.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodStatus, Secret};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::cluster;
use super::env::{self, Objects, PodFacts};
use super::image;
use super::probe::{self, ProbeEvent, Target};
use super::rootfs;
use super::status::{self, CState, CView, PodView, Term};
use super::volumes::{self, Bind, Prepared, VolumeError};
use super::{Event, PodUpdate, Resources, is_terminal, pod_dir, remove_pod_volumes};
use crate::ids::{now_time, random_hex};
use crate::netns::{self, SHORT_ID_LEN, Sandbox};
use crate::node::{NodeCtx, NodeState};

/// How often volume contents (ConfigMaps, Secrets, downward API) are re-synced.
const VOLUME_RESYNC: Duration = Duration::from_secs(20);
/// How soon a pod that cannot start yet is retried.
const RETRY: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long starts its back-off from scratch.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// What the kubelet grants a process after SIGTERM when the grace period is used up.
const MIN_TERM_GRACE: Duration = Duration::from_secs(2);

pub fn signal_group(pgid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Aborts a helper task when the container instance it belongs to is gone.
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Ctr {
    name: String,
    init: bool,
    sidecar: bool,
    instance: u64,
    state: CState,
    last: Option<Term>,
    restart_count: i32,
    /// An instance existed before (in this worker, or per the API after a reboot): the
    /// next start is a restart.
    had_instance: bool,
    ready: bool,
    started: bool,
    pid: Option<i32>,
    started_at: Option<(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
        Instant,
    )>,
    container_id: Option<String>,
    image_id: String,
    backoff: Option<Duration>,
    next_start: Option<Instant>,
    done: bool,
    tasks: Vec<TaskGuard>,
    exited: Option<watch::Receiver<bool>>,
    env: Option<Vec<(String, String)>>,
    kill_reason: Option<String>,
    /// Image pull back-off: the next attempt and the last error (ImagePullBackOff meanwhile).
    pull_retry: Option<(Instant, String)>,
    pull_backoff: Option<Duration>,
}

impl Ctr {
    fn new(c: &Container, init: bool, pod: &Pod) -> Self {
        let sidecar = init && c.restart_policy.as_deref() == Some("Always");
        let has_init = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|v| !v.is_empty());
        let waiting = if !init && has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        let mut ctr = Ctr {
            name: c.name.clone(),
            init,
            sidecar,
            instance: 0,
            state: CState::Waiting {
                reason: waiting.into(),
                message: None,
            },
            last: None,
            restart_count: 0,
            had_instance: false,
            ready: false,
            started: false,
            pid: None,
            started_at: None,
            container_id: None,
            image_id: String::new(),
            backoff: None,
            next_start: None,
            done: false,
            tasks: Vec::new(),
            exited: None,
            env: None,
            kill_reason: None,
            pull_retry: None,
            pull_backoff: None,
        };
        // A status from an earlier life of this pod on this node (agent restart or node
        // reboot): like a kubelet after reboot, the new instance counts as a restart.
        let statuses = pod.status.as_ref().and_then(|s| {
            if init {
                s.init_container_statuses.as_ref()
            } else {
                s.container_statuses.as_ref()
            }
        });
        if let Some(cs) = statuses.into_iter().flatten().find(|s| s.name == c.name)
            && cs.container_id.as_deref().is_some_and(|id| !id.is_empty())
        {
            ctr.had_instance = true;
            ctr.restart_count = cs.restart_count;
            let st = cs.state.clone().unwrap_or_default();
            ctr.last = match (st.terminated, st.running) {
                (Some(t), _) => Some(Term {
                    exit_code: t.exit_code,
                    signal: t.signal,
                    reason: t.reason.unwrap_or_else(|| "Error".into()),
                    message: t.message,
                    started_at: t.started_at,
                    finished_at: t.finished_at.unwrap_or_else(now_time),
                    container_id: t.container_id,
                }),
                (None, Some(r)) => Some(Term {
                    exit_code: 255,
                    signal: None,
                    reason: "Unknown".into(),
                    message: Some(
                        "The container could not be located when the pod was restarted".into(),
                    ),
                    started_at: r.started_at,
                    finished_at: now_time(),
                    container_id: cs.container_id.clone(),
                }),
                _ => cs
                    .last_state
                    .clone()
                    .and_then(|l| l.terminated)
                    .map(|t| Term {
                        exit_code: t.exit_code,
                        signal: t.signal,
                        reason: t.reason.unwrap_or_else(|| "Error".into()),
                        message: t.message,
                        started_at: t.started_at,
                        finished_at: t.finished_at.unwrap_or_else(now_time),
                        container_id: t.container_id,
                    }),
            };
        }
        ctr
    }

    fn running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }

    fn can_start(&self, now: Instant) -> bool {
        !self.running() && !self.done && self.next_start.is_none_or(|t| t <= now)
    }

    fn view(&self, image: &str) -> CView {
        CView {
            name: self.name.clone(),
            image: image.to_string(),
            image_id: self.image_id.clone(),
            container_id: self.container_id.clone(),
            state: self.state.clone(),
            last: self.last.clone(),
            restart_count: self.restart_count,
            ready: self.ready,
            started: self.started,
        }
    }
}

fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
    }
}

/// Single-quotes for sh.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell prologue that runs inside the container's fresh mount namespace: bind every
/// mount (parents first), set the hostname, enter the working directory, exec the command.
pub fn setup_script(binds: &[Bind], hostname: &str, workdir: &str) -> String {
    let mut s = String::from(
        "set -e\n\
         b() {\n\
         \x20 if [ -d \"$1\" ]; then /bin/mkdir -p \"$2\"; elif [ ! -e \"$2\" ]; then /bin/mkdir -p \"$(/usr/bin/dirname \"$2\")\"; : > \"$2\"; fi\n\
         \x20 /bin/mount --bind \"$1\" \"$2\"\n\
         \x20 if [ \"$3\" = ro ]; then /bin/mount -o remount,bind,ro \"$2\"; fi\n\
         }\n",
    );
    for b in binds {
        s.push_str(&format!(
            "b {} {} {}\n",
            sq(&b.source.to_string_lossy()),
            sq(&b.target),
            if b.read_only { "ro" } else { "rw" }
        ));
    }
    s.push_str(&format!("/bin/hostname {}\n", sq(hostname)));
    s.push_str(&format!("/bin/mkdir -p {wd}\ncd {wd}\n", wd = sq(workdir)));
    s.push_str("exec \"$@\"\n");
    s
}

fn hosts_file(ip: Ipv4Addr, pod: &Pod) -> String {
    let (hostname, fqdn) = hostnames(pod);
    let names = if fqdn == hostname {
        hostname
    } else {
        format!("{fqdn}\t{hostname}")
    };
    format!(
        "# Kubernetes-managed hosts file (node-agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{names}\n"
    )
}

fn hostnames(pod: &Pod) -> (String, String) {
    let spec = pod.spec.as_ref();
    let mut hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    hostname.truncate(63);
    let fqdn = match spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(sub) => format!(
            "{hostname}.{sub}.{}.svc.cluster.local",
            pod.metadata.namespace.as_deref().unwrap_or("default")
        ),
        None => hostname.clone(),
    };
    (hostname, fqdn)
}

/// Process start time from /proc, so a pid file never makes us kill a recycled pid.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn rv(p: &Pod) -> u64 {
    p.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub struct Worker {
    node: Arc<NodeCtx>,
    uid: String,
    key: String,
    rx: watch::Receiver<PodUpdate>,
    res: Arc<Mutex<Resources>>,
    ev_tx: mpsc::UnboundedSender<Event>,
    ev_rx: mpsc::UnboundedReceiver<Event>,
    pod: Arc<Pod>,
    gone: bool,
    dir: PathBuf,
    sandbox: Option<Sandbox>,
    pod_ip: Option<Ipv4Addr>,
    pod_error: Option<VolumeError>,
    volumes: Option<BTreeMap<String, Prepared>>,
    volumes_synced: Option<Instant>,
    objects: Objects,
    objects_fetched: Option<Instant>,
    claims: HashMap<String, Result<PathBuf, VolumeError>>,
    tokens: HashMap<String, (String, Instant)>,
    init: Vec<Ctr>,
    app: Vec<Ctr>,
    initialized: bool,
    terminating: bool,
    terminated: bool,
    api_done: bool,
    last_write: Option<(PodStatus, Option<PodStatus>)>,
    write_retry: Option<Instant>,
}

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

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    fn ns(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    fn reachable(&self) -> bool {
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

    fn deletion_grace(&self) -> Duration {
        self.grace_or_pod_default(self.pod.metadata.deletion_grace_period_seconds)
    }

    /// `seconds` if set, else the pod's terminationGracePeriodSeconds, else 30 s (the kubelet's
    /// order of precedence).
    fn grace_or_pod_default(&self, seconds: Option<i64>) -> Duration {
        let secs = seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs.max(0)).unwrap_or(0))
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

    fn spec_container(&self, name: &str, init: bool) -> Option<Container> {
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

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn facts(&self) -> PodFacts {
        PodFacts {
            host_ip: self.node.host_ip.to_string(),
            pod_ip: self.pod_ip.map(|i| i.to_string()).unwrap_or_default(),
            node_cpu: self.node.cfg.cpu.clone(),
            node_memory: self.node.cfg.memory.clone(),
        }
    }

    // ---- running --------------------------------------------------------------------

    async fn sync(&mut self) {
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

    fn any_running(&self) -> bool {
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

    async fn create_sandbox(&mut self) -> Result<(), String> {
        let host = self
            .node
            .ipam
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allocate()
            .ok_or("no free pod IP on this node")?;
        let ip = self.node.pod_ip(host);
        let sb = Sandbox::for_id(&random_hex("sandbox", SHORT_ID_LEN), ip);
        self.res.lock().unwrap_or_else(|e| e.into_inner()).sandbox = Some(sb.clone());
        let _ = std::fs::write(self.dir.join("sandbox"), sb.to_record());
        let up = self.node.state() == NodeState::Up;
        if let Err(e) = self.node.net.create_sandbox(&sb, up).await {
            self.node
                .ipam
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(host);
            self.res.lock().unwrap_or_else(|e| e.into_inner()).sandbox = None;
            let _ = std::fs::remove_file(self.dir.join("sandbox"));
            return Err(format!("{e:#}"));
        }
        // A partition may have started while the sandbox was being built.
        if self.node.state() != NodeState::Up {
            let _ = netns::set_link(&sb.veth, false).await;
        }
        let _ = std::fs::write(self.dir.join("etc-hosts"), hosts_file(ip, &self.pod));
        let _ = std::fs::write(
            self.dir.join("etc-hostname"),
            format!("{}\n", hostnames(&self.pod).0),
        );
        info!(pod = %self.key, ip = %ip, netns = %sb.netns, "sandbox ready");
        self.sandbox = Some(sb);
        self.pod_ip = Some(ip);
        Ok(())
    }

    async fn fetch_objects(&mut self) -> Result<(), String> {
        let refs = env::references(&self.pod);
        let ns = self.ns().to_string();
        let cms: Api<ConfigMap> = Api::namespaced(self.node.client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(self.node.client.clone(), &ns);
        let mut objects = Objects::default();
        for name in &refs.configmaps {
            let v = cms
                .get_opt(name)
                .await
                .map_err(|e| format!("reading configmap {name}: {e}"))?;
            objects.configmaps.insert(name.clone(), v);
        }
        for name in &refs.secrets {
            let v = secrets
                .get_opt(name)
                .await
                .map_err(|e| format!("reading secret {name}: {e}"))?;
            objects.secrets.insert(name.clone(), v);
        }
        self.objects = objects;
        self.objects_fetched = Some(Instant::now());
        Ok(())
    }

    async fn sync_volumes(&mut self) {
        if let Err(e) = self.fetch_objects().await {
            warn!(pod = %self.key, "{e}");
            if self.volumes.is_none() {
                self.pod_error = Some(VolumeError {
                    reason: "ContainerCreating",
                    message: e,
                });
            }
            return;
        }
        let labels = self.node.labels();
        let vol_dir = self.node.volumes_dir();
        for claim in volumes::claim_names(&self.pod) {
            if matches!(self.claims.get(&claim), Some(Ok(_))) {
                continue;
            }
            let r = volumes::resolve_claim(&self.node.client, self.ns(), &claim, &labels, &vol_dir)
                .await;
            self.claims.insert(claim, r);
        }
        for (aud, exp) in volumes::token_requests(&self.pod) {
            let key = volumes::token_key(aud.as_deref(), exp);
            if self
                .tokens
                .get(&key)
                .is_some_and(|(_, at)| *at > Instant::now())
            {
                continue;
            }
            match volumes::request_token(&self.node.client, &self.pod, aud.as_deref(), exp).await {
                Ok((token, expires)) => {
                    let ttl = expires.duration_since(jiff::Timestamp::now());
                    let ttl = Duration::try_from(ttl).unwrap_or(Duration::from_secs(600));
                    // Refresh at 80% of the lifetime, as the kubelet does.
                    self.tokens
                        .insert(key, (token, Instant::now() + ttl.mul_f64(0.8)));
                }
                Err(e) => {
                    warn!(pod = %self.key, "TokenRequest failed ({e}); writing an empty service account token");
                    self.tokens.insert(
                        key,
                        (String::new(), Instant::now() + Duration::from_secs(60)),
                    );
                }
            }
        }
        if self.volumes.is_none() {
            self.wipe_memory_volumes();
        }
        let tokens: HashMap<String, String> = self
            .tokens
            .iter()
            .map(|(k, (t, _))| (k.clone(), t.clone()))
            .collect();
        let facts = self.facts();
        let root = self.dir.join("volumes");
        let result = volumes::prepare(&volumes::Inputs {
            pod: &self.pod,
            facts: &facts,
            objects: &self.objects,
            tokens: &tokens,
            claims: &self.claims,
            root: &root,
        });
        // Unresolved claims are looked up again next time.
        self.claims.retain(|_, r| r.is_ok());
        match result {
            Ok(v) => {
                self.volumes = Some(v);
                self.volumes_synced = Some(Instant::now());
                if self.pod_error.take().is_some() {
                    for c in self.init.iter_mut().chain(self.app.iter_mut()) {
                        if !c.running() && !c.had_instance {
                            c.state = CState::Waiting {
                                reason: "ContainerCreating".into(),
                                message: None,
                            };
                        }
                    }
                }
            }
            Err(e) => {
                if self.volumes.is_none() {
                    info!(pod = %self.key, "volumes not ready: {}", e.message);
                    self.pod_error = Some(e);
                } else {
                    // Running containers keep the last good content, as with the kubelet.
                    warn!(pod = %self.key, "volume refresh: {}", e.message);
                    self.volumes_synced = Some(Instant::now());
                }
            }
        }
    }

    /// A fresh worker means a fresh sandbox (new pod, reboot, agent restart): tmpfs-backed
    /// emptyDirs of an earlier sandbox would not have survived, disk-backed ones do.
    fn wipe_memory_volumes(&self) {
        let volumes = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten();
        for v in volumes {
            if v.empty_dir.as_ref().and_then(|e| e.medium.as_deref()) == Some("Memory") {
                let dir = self.dir.join("volumes").join(&v.name);
                if dir.exists()
                    && let Err(e) = std::fs::remove_dir_all(&dir)
                {
                    warn!(pod = %self.key, "clearing memory volume {}: {e}", v.name);
                }
            }
        }
    }

    async fn start_containers(&mut self) {
        let now = Instant::now();
        let mut initialized = true;
        for i in 0..self.init.len() {
            let c = &self.init[i];
            if c.sidecar && c.running() && c.started {
                continue;
            }
            if !c.sidecar && c.done {
                if matches!(&c.state, CState::Terminated(t) if t.exit_code == 0) {
                    continue;
                }
                // Failed for good (restartPolicy Never): the pod fails, nothing else runs.
                initialized = false;
                break;
            }
            if c.can_start(now) {
                self.start(true, i).await;
            }
            initialized = false;
            break;
        }
        self.initialized = initialized;
        if !initialized {
            return;
        }
        for i in 0..self.app.len() {
            if matches!(self.app[i].state, CState::Waiting { ref reason, .. } if reason == "PodInitializing")
            {
                self.app[i].state = CState::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                };
            }
            if self.app[i].can_start(now) {
                self.start(false, i).await;
            }
        }
    }

    fn ctr_mut(&mut self, init: bool, i: usize) -> &mut Ctr {
        if init {
            &mut self.init[i]
        } else {
            &mut self.app[i]
        }
    }

    /// Starts one container instance; failures leave it Waiting with the kubelet's reason.
    async fn start(&mut self, init: bool, i: usize) {
        let name = if init {
            self.init[i].name.clone()
        } else {
            self.app[i].name.clone()
        };
        let Some(spec) = self.spec_container(&name, init) else {
            return;
        };
        let image_name = spec.image.clone().unwrap_or_default();
        let Some(img) = self.pull(init, i, &image_name) else {
            return;
        };
        if self.reachable()
            && self
                .objects_fetched
                .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
            && let Err(e) = self.fetch_objects().await
        {
            warn!(pod = %self.key, "{e}");
        }
        let facts = self.facts();
        let cached_env = self.ctr_mut(init, i).env.clone();
        let env = match env::container_env(&self.pod, &spec, &facts, &self.objects) {
            Ok(e) => e,
            // Partitioned: the kubelet restarts with what it last knew.
            Err(_) if !self.reachable() && cached_env.is_some() => cached_env.unwrap_or_default(),
            Err(msg) => {
                self.config_error(init, i, msg);
                return;
            }
        };
        let Some(vols) = self.volumes.clone() else {
            return;
        };
        let mut binds = match volumes::container_binds(&spec, &vols, &env) {
            Ok(b) => b,
            Err(msg) => {
                self.config_error(init, i, msg);
                return;
            }
        };
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        let ctr_dir = self.dir.join("containers").join(&name);
        let services = self
            .node
            .images
            .services
            .get(&self.node.client, self.reachable())
            .await;
        let resolv = cluster::resolv_conf(&self.pod, services.dns.as_ref());
        let runtime = match self.runtime_binds(&ctr_dir, &img, &binds, resolv.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                self.config_error(init, i, format!("preparing container filesystem: {e}"));
                return;
            }
        };
        binds.splice(0..0, runtime);
        let command = env::expand_all(spec.command.as_deref().unwrap_or_default(), &env);
        let args = env::expand_all(spec.args.as_deref().unwrap_or_default(), &env);
        let argv = image::argv(&img, &command, &args);
        let workdir = spec
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| img.working_dir.clone());
        let (hostname, _) = hostnames(&self.pod);
        let mut proc_env: Vec<(String, String)> = img.env.clone();
        proc_env.push(("HOSTNAME".into(), hostname.clone()));
        // The kubelet gives every container the `kubernetes` Service's variables, before the
        // container's own env (which may override them).
        let mut service_env = match &services.api {
            Some(api) => cluster::service_env("kubernetes", api),
            None => Vec::new(),
        };
        let (script, argv) = match &img.oci {
            None => {
                proc_env.push(("HOME".into(), "/root".into()));
                (setup_script(&binds, &hostname, &workdir), argv)
            }
            Some(oci) => {
                let launch =
                    rootfs::identity(&self.pod, &spec, &oci.user, &oci.rootfs).and_then(|id| {
                        rootfs::launch(&ctr_dir, oci, &binds, &hostname, &workdir, &id, &argv)
                            .map(|(s, a)| (s, a, id))
                    });
                let (script, argv, id) = match launch {
                    Ok(l) => l,
                    Err(msg) => {
                        self.config_error(init, i, msg);
                        return;
                    }
                };
                if !img.env.iter().any(|(k, _)| k == "HOME") {
                    proc_env.push(("HOME".into(), rootfs::home(&oci.rootfs, id.uid)));
                }
                (script, argv)
            }
        };
        service_env.extend(env.iter().cloned());
        for (k, v) in &service_env {
            if let Some(slot) = proc_env.iter_mut().find(|(n, _)| n == k) {
                slot.1 = v.clone();
            } else {
                proc_env.push((k.clone(), v.clone()));
            }
        }
        let log_path = self.dir.join(format!("{name}.log"));
        let spawned = spawn_process(&sb, &script, &argv, &proc_env, &log_path);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let c = self.ctr_mut(init, i);
                c.state = CState::Waiting {
                    reason: "CreateContainerError".into(),
                    message: Some(e.to_string()),
                };
                c.next_start = Some(Instant::now() + RETRY);
                return;
            }
        };
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        // Registered before any await, so a crash right now still finds the process.
        self.res
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .groups
            .insert(name.clone(), pid);
        let start_time = proc_start_time(pid).unwrap_or(0);
        let _ = std::fs::write(
            self.dir.join(format!("{name}.pid")),
            format!("{pid} {start_time}\n"),
        );
        let now_t = now_time();
        let now_i = Instant::now();
        let pod_ip = self.pod_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let c = self.ctr_mut(init, i);
        c.instance += 1;
        let instance = c.instance;
        if c.had_instance {
            c.restart_count += 1;
        }
        c.had_instance = true;
        c.pid = Some(pid);
        c.started_at = Some((now_t.clone(), now_i));
        c.state = CState::Running { started_at: now_t };
        c.container_id = Some(format!("process://{pid}"));
        c.image_id = match &img.oci {
            Some(o) => image::oci_image_id(&image_name, &o.digest),
            None => image::image_id(&image_name),
        };
        c.env = Some(env.clone());
        c.kill_reason = None;
        c.next_start = None;
        let no_probes = spec.startup_probe.is_none()
            && spec.readiness_probe.is_none()
            && spec.liveness_probe.is_none();
        // Run-to-completion init containers are never "ready" while running and have no probes.
        let long_running = !init || c.sidecar;
        c.started = spec.startup_probe.is_none();
        c.ready = no_probes && long_running;
        c.tasks.clear();
        let (exit_tx, exit_rx) = watch::channel(false);
        c.exited = Some(exit_rx);
        let ev_tx = self.ev_tx.clone();
        let cname = name.clone();
        // Detached on purpose: the waiter must report the exit even after the instance's
        // other helpers (probes, hooks) were cancelled.
        tokio::spawn(async move {
            let status = child.wait().await;
            let (code, signal) = match status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    (s.code(), s.signal())
                }
                Err(_) => (None, Some(9)),
            };
            let _ = exit_tx.send(true);
            let _ = ev_tx.send(Event::Exited {
                container: cname,
                instance,
                code,
                signal,
            });
        });
        let target = Target {
            pid,
            netns: sb.netns_path(),
            pod_ip: std::net::IpAddr::V4(pod_ip),
            env: proc_env,
            workdir,
            ports: spec.ports.clone().unwrap_or_default(),
        };
        if !no_probes && long_running {
            let (ptx, mut prx) = mpsc::unbounded_channel();
            let ev_tx = self.ev_tx.clone();
            let cname = name.clone();
            let forward = tokio::spawn(async move {
                while let Some(ev) = prx.recv().await {
                    if ev_tx
                        .send(Event::Probe {
                            container: cname.clone(),
                            instance,
                            ev,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let probes = tokio::spawn(probe::probe_loop(spec.clone(), target.clone(), now_i, ptx));
            let c = self.ctr_mut(init, i);
            c.tasks.push(TaskGuard(probes));
            c.tasks.push(TaskGuard(forward));
        }
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let ev_tx = self.ev_tx.clone();
            let cname = name.clone();
            let t = target;
            let h = tokio::spawn(async move {
                if let Err(message) = probe::run_hook(&hook, &t, Duration::from_secs(120)).await {
                    let _ = ev_tx.send(Event::HookFailed {
                        container: cname,
                        instance,
                        message: format!("PostStartHook failed: {message}"),
                    });
                }
            });
            self.ctr_mut(init, i).tasks.push(TaskGuard(h));
        }
        info!(pod = %self.key, container = %name, pid, argv = ?argv, "container started");
    }

    /// "Pulls" the image: ErrImagePull on a failed attempt, then ImagePullBackOff until the
    /// next one (10 s doubling up to 5 min), as the kubelet shows it. Never falls back.
    fn pull(&mut self, init: bool, i: usize, image_name: &str) -> Option<image::ImageConfig> {
        let now = Instant::now();
        let images = self.node.images.clone();
        let c = self.ctr_mut(init, i);
        if let Some((at, msg)) = c.pull_retry.clone()
            && at > now
        {
            c.state = CState::Waiting {
                reason: "ImagePullBackOff".into(),
                message: Some(format!(
                    "Back-off pulling image \"{image_name}\": ErrImagePull: {msg}"
                )),
            };
            c.next_start = Some(at);
            return None;
        }
        // Unpacking an archive the first time is blocking file work.
        match tokio::task::block_in_place(|| images.resolve(image_name)) {
            Ok(img) => {
                c.pull_retry = None;
                c.pull_backoff = None;
                Some(img)
            }
            Err(e) => {
                info!(container = %c.name, "ErrImagePull: {}", e.message);
                let b = c
                    .pull_backoff
                    .map_or(BACKOFF_START, |b| (b * 2).min(BACKOFF_MAX));
                c.pull_backoff = Some(b);
                c.pull_retry = Some((now + b, e.message.clone()));
                c.state = CState::Waiting {
                    reason: "ErrImagePull".into(),
                    message: Some(e.message),
                };
                // The next sync shows the back-off, as the kubelet's pod worker does.
                c.next_start = Some(now + Duration::from_secs(1));
                None
            }
        }
    }

    fn config_error(&mut self, init: bool, i: usize, msg: String) {
        let c = self.ctr_mut(init, i);
        if !matches!(&c.state, CState::Waiting { message: Some(m), .. } if *m == msg) {
            info!(container = %c.name, "CreateContainerConfigError: {msg}");
        }
        c.state = CState::Waiting {
            reason: "CreateContainerConfigError".into(),
            message: Some(msg),
        };
        c.next_start = Some(Instant::now() + RETRY);
    }

    /// What the image and runtime put into every container besides the pod's volumes.
    fn runtime_binds(
        &self,
        ctr_dir: &Path,
        img: &image::ImageConfig,
        user: &[Bind],
        resolv: Option<&str>,
    ) -> std::io::Result<Vec<Bind>> {
        let mut out = Vec::new();
        if img.oci.is_none() {
            out.push(Bind {
                source: self.node.images.shims.clone(),
                target: "/usr/local/bin".into(),
                read_only: true,
            });
        }
        // Fresh per instance, like a container's writable layer.
        let fresh = |sub: &str| -> std::io::Result<PathBuf> {
            let p = ctr_dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p)?;
            }
            std::fs::create_dir_all(&p)?;
            Ok(p)
        };
        if img.oci.is_none() {
            // The host's Debian config must not leak into the "image".
            out.push(Bind {
                source: fresh("etc-redis")?,
                target: "/etc/redis".into(),
                read_only: false,
            });
            out.push(Bind {
                source: fresh("tmp")?,
                target: "/tmp".into(),
                read_only: false,
            });
        }
        for v in &img.anonymous_volumes {
            if !user.iter().any(|b| b.target.trim_end_matches('/') == v) {
                out.push(Bind {
                    source: fresh(&format!("anon{}", v.replace('/', "-")))?,
                    target: v.clone(),
                    read_only: false,
                });
            }
        }
        // ClusterFirst with a cluster DNS: the kubelet's resolv.conf. Otherwise the node's, which
        // the redis emulation sees anyway and an image's root does not have.
        let resolv_file = self.dir.join("etc-resolv.conf");
        match resolv {
            Some(text) => std::fs::write(&resolv_file, text)?,
            None if img.oci.is_some() => {
                std::fs::copy("/etc/resolv.conf", &resolv_file)?;
            }
            None => {
                let _ = std::fs::remove_file(&resolv_file);
            }
        }
        for (file, target) in [
            ("etc-hosts", "/etc/hosts"),
            ("etc-hostname", "/etc/hostname"),
            ("etc-resolv.conf", "/etc/resolv.conf"),
        ] {
            let p = self.dir.join(file);
            if p.exists() && !user.iter().any(|b| b.target == target) {
                out.push(Bind {
                    source: p,
                    target: target.into(),
                    read_only: false,
                });
            }
        }
        Ok(out)
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Exited {
                container,
                instance,
                code,
                signal,
            } => self.on_exit(&container, instance, code, signal),
            Event::Probe {
                container,
                instance,
                ev,
            } => {
                let Some(c) = self.find(&container, instance) else {
                    return;
                };
                match ev {
                    ProbeEvent::Started => c.started = true,
                    ProbeEvent::Ready(r) => c.ready = r && c.started,
                    ProbeEvent::LivenessFailed(m) | ProbeEvent::StartupFailed(m) => {
                        info!(container = %container, "{m}; restarting");
                        self.kill_for_restart(&container, instance, m);
                    }
                }
            }
            Event::HookFailed {
                container,
                instance,
                message,
            } => {
                info!(container = %container, "{message}");
                self.kill_for_restart(&container, instance, message);
            }
        }
    }

    fn find(&mut self, name: &str, instance: u64) -> Option<&mut Ctr> {
        self.init
            .iter_mut()
            .chain(self.app.iter_mut())
            .find(|c| c.name == name && c.instance == instance && c.running())
    }

    fn kill_for_restart(&mut self, name: &str, instance: u64, reason: String) {
        let grace = self.deletion_grace_for_kill(name);
        let hook_target = self.hook_target(name);
        let prestop = self
            .spec_container(name, false)
            .or_else(|| self.spec_container(name, true))
            .and_then(|s| s.lifecycle.and_then(|l| l.pre_stop));
        let Some(c) = self.find(name, instance) else {
            return;
        };
        c.ready = false;
        c.kill_reason = Some(reason);
        c.tasks.clear();
        if let (Some(pid), Some(exited)) = (c.pid, c.exited.clone()) {
            tokio::spawn(kill_instance(
                pid,
                prestop.zip(hook_target),
                Instant::now() + grace,
                exited,
            ));
        }
    }

    fn deletion_grace_for_kill(&self, name: &str) -> Duration {
        let spec = self
            .spec_container(name, false)
            .or_else(|| self.spec_container(name, true));
        let probe_grace = spec
            .and_then(|s| s.liveness_probe)
            .and_then(|p| p.termination_grace_period_seconds);
        self.grace_or_pod_default(probe_grace)
    }

    fn hook_target(&self, name: &str) -> Option<Target> {
        let c = self
            .init
            .iter()
            .chain(&self.app)
            .find(|c| c.name == name && c.running())?;
        let sb = self.sandbox.as_ref()?;
        let spec = self.spec_container(name, c.init)?;
        let img = self
            .node
            .images
            .resolve(spec.image.as_deref().unwrap_or_default())
            .ok()?;
        let mut env = img.env.clone();
        for (k, v) in c.env.clone().unwrap_or_default() {
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        }
        Some(Target {
            pid: c.pid?,
            netns: sb.netns_path(),
            pod_ip: std::net::IpAddr::V4(self.pod_ip?),
            env,
            workdir: spec
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or(img.working_dir),
            ports: spec.ports.clone().unwrap_or_default(),
        })
    }

    fn on_exit(&mut self, name: &str, instance: u64, code: Option<i32>, signal: Option<i32>) {
        let policy = self.restart_policy();
        let terminating = self.terminating;
        let pod_ref = format!("{}_{}({})", self.name(), self.ns(), self.uid);
        let Some(c) = self.find(name, instance) else {
            return;
        };
        let (started_t, started_i) = c
            .started_at
            .clone()
            .map_or((None, Instant::now()), |(t, i)| (Some(t), i));
        let mut term = Term::from_exit(code, signal, started_t, now_time(), c.container_id.clone());
        term.message = c.kill_reason.take();
        if let Some(pid) = c.pid.take() {
            // Whatever the main process left behind in its group goes with it.
            signal_group(pid, rustix::process::Signal::KILL);
        }
        c.tasks.clear();
        c.ready = false;
        c.started = false;
        c.exited = None;
        let restart = if terminating {
            false
        } else if c.sidecar {
            true
        } else if c.init {
            term.exit_code != 0 && policy != "Never"
        } else {
            policy == "Always" || (policy == "OnFailure" && term.exit_code != 0)
        };
        info!(
            pod = %pod_ref, container = %name, exit_code = term.exit_code, restart,
            "container exited"
        );
        if restart {
            if started_i.elapsed() >= BACKOFF_RESET {
                c.backoff = None;
            }
            match c.backoff {
                // The kubelet restarts the first crash at once and backs off from then on.
                None => {
                    c.backoff = Some(BACKOFF_START);
                    c.next_start = None;
                    c.state = CState::Terminated(term.clone());
                }
                Some(b) => {
                    c.next_start = Some(Instant::now() + b);
                    c.backoff = Some((b * 2).min(BACKOFF_MAX));
                    c.state = CState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: Some(format!(
                            "back-off {} restarting failed container={name} pod={pod_ref}",
                            go_duration(b)
                        )),
                    };
                }
            }
            c.last = Some(term);
        } else {
            c.done = true;
            if c.init && term.exit_code == 0 {
                c.ready = true;
            }
            c.state = CState::Terminated(term);
        }
        self.res
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .groups
            .remove(name);
        let _ = std::fs::remove_file(self.dir.join(format!("{name}.pid")));
    }

    // ---- stopping -------------------------------------------------------------------

    /// Stops every container (preStop, SIGTERM, grace, SIGKILL) and removes the sandbox.
    /// `deleted`: the pod object is going away, so containers that never ran are reported
    /// as terminated too (a pod that merely finished keeps them waiting, as the kubelet does).
    async fn terminate(&mut self, grace: Duration, run_prestop: bool, deleted: bool) {
        self.terminating = true;
        let deadline = Instant::now() + grace;
        let names: Vec<(String, bool)> = self
            .app
            .iter()
            .chain(&self.init)
            .filter(|c| c.running())
            .map(|c| (c.name.clone(), c.init))
            .collect();
        for (name, init) in &names {
            let prestop = if run_prestop {
                self.spec_container(name, *init)
                    .and_then(|s| s.lifecycle.and_then(|l| l.pre_stop))
                    .zip(self.hook_target(name))
            } else {
                None
            };
            let c = self
                .init
                .iter_mut()
                .chain(self.app.iter_mut())
                .find(|c| c.name == *name);
            if let Some(c) = c {
                c.tasks.clear();
                c.ready = false;
                if let (Some(pid), Some(exited)) = (c.pid, c.exited.clone()) {
                    tokio::spawn(kill_instance(pid, prestop, deadline, exited));
                }
            }
        }
        let hard_deadline = deadline.max(Instant::now() + MIN_TERM_GRACE) + Duration::from_secs(3);
        while self.any_running() {
            match tokio::time::timeout_at(hard_deadline, self.ev_rx.recv()).await {
                Ok(Some(ev)) => self.handle_event(ev),
                Ok(None) | Err(_) => break,
            }
        }
        // Anything that did not report its exit is recorded as killed.
        let leftovers: Vec<(String, u64)> = self
            .init
            .iter()
            .chain(&self.app)
            .filter(|c| c.running())
            .map(|c| (c.name.clone(), c.instance))
            .collect();
        for (name, instance) in leftovers {
            if let Some(pid) = self.find(&name, instance).and_then(|c| c.pid) {
                signal_group(pid, rustix::process::Signal::KILL);
            }
            self.on_exit(&name, instance, None, Some(9));
        }
        for c in self.init.iter_mut().chain(self.app.iter_mut()) {
            if deleted && matches!(c.state, CState::Waiting { .. }) {
                let last = c.last.clone();
                c.state = CState::Terminated(last.unwrap_or(Term {
                    exit_code: 137,
                    signal: None,
                    reason: "ContainerStatusUnknown".into(),
                    message: Some(
                        "The container could not be located when the pod was terminated".into(),
                    ),
                    started_at: None,
                    finished_at: now_time(),
                    container_id: None,
                }));
                c.done = true;
            }
        }
        self.teardown().await;
        self.terminated = true;
    }

    async fn teardown(&mut self) {
        let groups = std::mem::take(&mut self.res.lock().unwrap_or_else(|e| e.into_inner()).groups);
        for pid in groups.values() {
            signal_group(*pid, rustix::process::Signal::KILL);
        }
        if let Some(sb) = self.sandbox.take() {
            netns::destroy_sandbox(&sb).await;
            self.node
                .ipam
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(sb.ip.octets()[3]);
            self.res.lock().unwrap_or_else(|e| e.into_inner()).sandbox = None;
            let _ = std::fs::remove_file(self.dir.join("sandbox"));
            info!(pod = %self.key, "sandbox removed");
        }
    }

    /// Final status, then the kubelet's DELETE with grace 0 guarded by the pod's UID.
    async fn finalize_api(&mut self) {
        self.write_status().await;
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), self.ns());
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(self.name(), &dp).await {
            Ok(_) => {
                info!(pod = %self.key, "deleted");
                self.api_done = true;
            }
            Err(e) if matches!(api_code(&e), Some(404 | 409)) => self.api_done = true,
            Err(e) => warn!(pod = %self.key, "delete: {e}"),
        }
    }

    fn view(&self) -> PodView {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let image_of = |name: &str, init: bool| -> String {
            let list: Vec<Container> = if init {
                spec.init_containers.clone().unwrap_or_default()
            } else {
                spec.containers.clone()
            };
            list.into_iter()
                .find(|c| c.name == name)
                .and_then(|c| c.image)
                .unwrap_or_default()
        };
        PodView {
            sandbox_ready: self.sandbox.is_some(),
            pod_ip: self.pod_ip.map(|i| i.to_string()),
            host_ip: self.node.host_ip.to_string(),
            init: self
                .init
                .iter()
                .map(|c| c.view(&image_of(&c.name, true)))
                .collect(),
            containers: self
                .app
                .iter()
                .map(|c| c.view(&image_of(&c.name, false)))
                .collect(),
            initialized: self.initialized,
            terminal: self.terminating,
        }
    }

    /// Writes the status if it differs from what the apiserver holds. Compares against the
    /// API's copy (not our last write), so changes made by others, e.g. the node controller
    /// marking pods not ready during a partition, are corrected once we can talk again.
    async fn write_status(&mut self) {
        if !self.reachable() || self.gone {
            return;
        }
        if self.write_retry.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.write_retry = None;
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), self.ns());
        let view = self.view();
        for _ in 0..3 {
            let desired = status::build(&self.pod, &view, &now_time());
            let current = self.pod.status.clone();
            if current.as_ref() == Some(&desired) {
                return;
            }
            // The apiserver may normalise something we send; do not rewrite forever.
            if let Some((d, r)) = &self.last_write
                && *d == desired
                && *r == current
            {
                return;
            }
            let mut obj = (*self.pod).clone();
            obj.status = Some(desired.clone());
            match api
                .replace_status(self.name(), &PostParams::default(), &obj)
                .await
            {
                Ok(p) => {
                    debug!(pod = %self.key, phase = ?desired.phase, "status written");
                    self.last_write = Some((desired, p.status.clone()));
                    self.pod = Arc::new(p);
                    return;
                }
                Err(e) if api_code(&e) == Some(409) => match api.get_opt(self.name()).await {
                    Ok(Some(p)) if p.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                        self.pod = Arc::new(p);
                    }
                    Ok(_) => return,
                    Err(e) => {
                        warn!(pod = %self.key, "re-reading pod: {e}");
                        break;
                    }
                },
                Err(e) if api_code(&e) == Some(404) => return,
                Err(e) => {
                    warn!(pod = %self.key, "writing status: {e}");
                    break;
                }
            }
        }
        self.write_retry = Some(Instant::now() + Duration::from_secs(2));
    }
}

/// Stops one container instance: preStop (bounded by the deadline), SIGTERM to its process
/// group, at least MIN_TERM_GRACE to exit, then SIGKILL.
async fn kill_instance(
    pgid: i32,
    prestop: Option<(k8s_openapi::api::core::v1::LifecycleHandler, Target)>,
    deadline: Instant,
    mut exited: watch::Receiver<bool>,
) {
    if let Some((hook, target)) = prestop {
        let limit = deadline.saturating_duration_since(Instant::now());
        if let Ok(Err(e)) =
            tokio::time::timeout(limit, probe::run_hook(&hook, &target, limit)).await
        {
            info!(pid = pgid, "PreStopHook failed: {e}");
        }
    }
    if *exited.borrow() {
        return;
    }
    signal_group(pgid, rustix::process::Signal::TERM);
    let term_deadline = deadline.max(Instant::now() + MIN_TERM_GRACE);
    if tokio::time::timeout_at(term_deadline, exited.wait_for(|e| *e))
        .await
        .is_err()
    {
        signal_group(pgid, rustix::process::Signal::KILL);
    }
}

/// Starts the container process: join the sandbox's network namespace, take a private
/// mount and UTS namespace, run the setup script, exec the command. Each step execs the
/// next, so the pid we get is the container's main process and its own process group.
fn spawn_process(
    sb: &Sandbox,
    script: &str,
    argv: &[String],
    env: &[(String, String)],
    log: &Path,
) -> std::io::Result<tokio::process::Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    tokio::process::Command::new("/usr/bin/nsenter")
        .arg(format!("--net={}", sb.netns_path().display()))
        .arg("--")
        .arg("/usr/bin/unshare")
        .args(["--mount", "--uts", "--propagation", "private", "--"])
        .arg("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(argv)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sq("a'b"), "'a'\\''b'");
    }

    #[test]
    fn setup_script_mounts_then_execs() {
        let s = setup_script(
            &[Bind {
                source: "/x y".into(),
                target: "/etc/redis".into(),
                read_only: true,
            }],
            "redis-0",
            "/data",
        );
        assert!(s.contains("b '/x y' '/etc/redis' ro\n"));
        assert!(s.ends_with("exec \"$@\"\n"));
        assert!(s.contains("/bin/hostname 'redis-0'"));
    }

    #[test]
    fn hosts_file_names_the_pod() {
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("redis-0".into()),
                namespace: Some("db".into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                subdomain: Some("redis".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let h = hosts_file(Ipv4Addr::new(10, 244, 1, 7), &pod);
        assert!(
            h.contains("10.244.1.7\tredis-0.redis.db.svc.cluster.local\tredis-0\n"),
            "{h}"
        );
    }

    #[test]
    fn own_start_time_is_readable() {
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(proc_start_time(pid).is_some());
    }
}
