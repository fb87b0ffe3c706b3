//! Simulated nodes: registration, Lease renewal, node status heartbeats, and the
//! crash / partition / up transitions driven by `node-agent ctl`.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cli::Cidr;
use crate::ids::{now_micro, now_time, random_uuid, sha256_hex, uuid_from};
use crate::netns::{self, Ipam, Network};
use crate::pod::PodHandle;
use crate::pod::image::Images;

pub const KUBELET_VERSION: &str = "v1.36.3";
/// How often node status is posted even when nothing changed.
const STATUS_HEARTBEAT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Up,
    Crashed,
    Partitioned,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Crashed => "crashed",
            NodeState::Partitioned => "partitioned",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    pub lease_duration_seconds: i32,
    pub lease_renew: Duration,
}

/// Host facts reported in nodeInfo, read once.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub ephemeral_storage: String,
}

impl HostInfo {
    pub fn read(state_dir: &std::path::Path) -> Self {
        let uts = rustix::system::uname();
        let kernel = uts.release().to_string_lossy().into_owned();
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(|| "Linux".into());
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let ephemeral_storage = rustix::fs::statvfs(state_dir)
            .map(|s| format!("{}Ki", s.f_blocks * s.f_frsize / 1024))
            .unwrap_or_else(|_| "100Gi".into());
        HostInfo {
            kernel,
            os_image,
            machine_id,
            ephemeral_storage,
        }
    }
}

pub struct NodeCtx {
    pub name: String,
    pub zone: String,
    pub index: usize,
    pub host_ip: Ipv4Addr,
    pub cidr: Cidr,
    pub dir: PathBuf,
    pub client: Client,
    pub net: Network,
    /// Shared by every node of this agent, like one machine's image store.
    pub images: Arc<Images>,
    pub cfg: NodeConfig,
    pub host: HostInfo,
    state: watch::Sender<NodeState>,
    pub boot_id: Mutex<String>,
    pub ipam: Mutex<Ipam>,
    pub pods: Mutex<HashMap<String, PodHandle>>,
    /// Set when the Node must be (re-)registered: first start and every boot after a crash.
    pub needs_register: Mutex<bool>,
    /// Bumped after each successful status post; `up` waits for it.
    pub posted: watch::Sender<u64>,
    pub node_uid: Mutex<Option<String>>,
}

#[allow(clippy::too_many_arguments)]
impl NodeCtx {
    pub fn new(
        name: String,
        zone: String,
        index: usize,
        cidr: Cidr,
        state_dir: &std::path::Path,
        client: Client,
        net: Network,
        images: Arc<Images>,
        cfg: NodeConfig,
        host: HostInfo,
    ) -> Result<Self> {
        let dir = state_dir.join("nodes").join(&name);
        std::fs::create_dir_all(dir.join("pods"))
            .with_context(|| format!("creating {}", dir.display()))?;
        std::fs::create_dir_all(dir.join("volumes"))?;
        let ipam = Ipam::load(dir.join("ipam-next"));
        Ok(NodeCtx {
            host_ip: cidr.node_ip(index, 1),
            name,
            zone,
            index,
            cidr,
            dir,
            client,
            net,
            images,
            cfg,
            host,
            state: watch::channel(NodeState::Up).0,
            boot_id: Mutex::new(random_uuid("boot")),
            ipam: Mutex::new(ipam),
            pods: Mutex::new(HashMap::new()),
            needs_register: Mutex::new(true),
            posted: watch::channel(0).0,
            node_uid: Mutex::new(None),
        })
    }

    pub fn state(&self) -> NodeState {
        *self.state.borrow()
    }

    pub fn state_rx(&self) -> watch::Receiver<NodeState> {
        self.state.subscribe()
    }

    pub fn pod_ip(&self, host: u8) -> Ipv4Addr {
        self.cidr.node_ip(self.index, host)
    }

    pub fn volumes_dir(&self) -> PathBuf {
        self.dir.join("volumes")
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("topology.kubernetes.io/zone".to_string(), self.zone.clone()),
            (
                "topology.kubernetes.io/region".to_string(),
                "local".to_string(),
            ),
        ])
    }

    pub fn pod_count(&self) -> usize {
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn capacity(&self) -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cfg.cpu.clone())),
            ("memory".to_string(), Quantity(self.cfg.memory.clone())),
            ("pods".to_string(), Quantity(self.cfg.max_pods.to_string())),
            (
                "ephemeral-storage".to_string(),
                Quantity(self.host.ephemeral_storage.clone()),
            ),
            ("hugepages-1Gi".to_string(), Quantity("0".into())),
            ("hugepages-2Mi".to_string(), Quantity("0".into())),
        ])
    }

    fn node_info(&self) -> serde_json::Value {
        let boot_id = self
            .boot_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Stable per simulated node, distinct between nodes, like separate machines.
        let machine_id = sha256_hex(format!("{}/{}", self.host.machine_id, self.name).as_bytes())
            [..32]
            .to_string();
        json!({
            "architecture": "amd64",
            "bootID": boot_id,
            "containerRuntimeVersion": "node-agent://0.1.0",
            "kernelVersion": self.host.kernel,
            "kubeProxyVersion": KUBELET_VERSION,
            "kubeletVersion": KUBELET_VERSION,
            "machineID": machine_id,
            "operatingSystem": "linux",
            "osImage": self.host.os_image,
            "systemUUID": uuid_from(format!("system/{}", self.name).as_bytes()),
        })
    }

    /// Conditions as a kubelet reports them; transition times carried over from the
    /// apiserver's copy unless the status changed (e.g. the node controller's Unknown).
    fn conditions(&self, current: Option<&Node>) -> serde_json::Value {
        let now = now_time();
        let existing: Vec<k8s_openapi::api::core::v1::NodeCondition> = current
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let conds = [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            (
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            (
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
            (
                "NetworkUnavailable",
                "False",
                "RouteCreated",
                "node-agent bridge is configured",
            ),
        ];
        let list: Vec<serde_json::Value> = conds
            .iter()
            .map(|(ty, status, reason, message)| {
                let transition = existing
                    .iter()
                    .find(|c| c.type_ == *ty && c.status == *status)
                    .and_then(|c| c.last_transition_time.clone())
                    .unwrap_or_else(|| now.clone());
                json!({
                    "type": ty,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": transition,
                })
            })
            .collect();
        serde_json::Value::Array(list)
    }

    fn status_json(&self, current: Option<&Node>) -> serde_json::Value {
        json!({
            "capacity": self.capacity(),
            "allocatable": self.capacity(),
            "conditions": self.conditions(current),
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip.to_string()},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": self.node_info(),
        })
    }

    /// Creates the Node, or brings an existing one up to date (labels, status).
    async fn register(&self) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels()},
            "spec": {},
            "status": self.status_json(None),
        }))?;
        let created = match api.create(&PostParams::default(), &node).await {
            Ok(n) => {
                info!(node = %self.name, "node registered");
                n
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let patch = json!({"metadata": {"labels": self.labels()}});
                let n = api
                    .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                info!(node = %self.name, "node exists; labels updated");
                n
            }
            Err(e) => return Err(e.into()),
        };
        *self.node_uid.lock().unwrap_or_else(|e| e.into_inner()) = created.metadata.uid.clone();
        self.post_status(Some(&created)).await?;
        Ok(())
    }

    async fn post_status(&self, current: Option<&Node>) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"status": self.status_json(current)});
        let n = api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await?;
        if let Some(uid) = n.metadata.uid.clone() {
            *self.node_uid.lock().unwrap_or_else(|e| e.into_inner()) = Some(uid);
        }
        self.posted.send_modify(|n| *n += 1);
        Ok(())
    }
}

/// Posts node status on change (e.g. the node controller set Ready=Unknown) and at least
/// every STATUS_HEARTBEAT, registering first when needed. Never touches the API while the
/// node is crashed or partitioned.
pub async fn status_loop(node: Arc<NodeCtx>, nodes: Store<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_post: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        if node.state() != NodeState::Up {
            last_post = None;
            continue;
        }
        let register = *node
            .needs_register
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if register {
            match tokio::time::timeout(Duration::from_secs(10), node.register()).await {
                Ok(Ok(())) => {
                    *node
                        .needs_register
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = false;
                    last_post = Some(tokio::time::Instant::now());
                }
                Ok(Err(e)) => warn!(node = %node.name, "registering node: {e:#}"),
                Err(_) => warn!(node = %node.name, "registering node: timed out"),
            }
            continue;
        }
        let current = nodes.get(&kube::runtime::reflector::ObjectRef::new(&node.name));
        let ready_in_api = current
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        let due = last_post.is_none_or(|t| t.elapsed() >= STATUS_HEARTBEAT);
        // The store may lag our own last post by a moment; give it a second.
        let drifted =
            !ready_in_api && last_post.is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        if !(due || drifted) {
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(5), node.post_status(current.as_deref()))
            .await
        {
            Ok(Ok(())) => last_post = Some(tokio::time::Instant::now()),
            Ok(Err(e)) => warn!(node = %node.name, "posting node status: {e:#}"),
            Err(_) => warn!(node = %node.name, "posting node status: timed out"),
        }
    }
}

/// Renews the node's Lease every `lease_renew` with `client`, the heartbeat thread's own
/// (see `agent::spawn_heartbeats`), so nothing else (pod work, slow status posts) delays it.
/// A renewal that took long or came late is logged: it is what turns a node NotReady.
pub async fn lease_loop(node: Arc<NodeCtx>, client: Client) {
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut tick = tokio::time::interval(node.cfg.lease_renew);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease: Option<Lease> = None;
    let limit = node.cfg.lease_renew + Duration::from_secs(1);
    let mut last_renewed: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        if node.state() != NodeState::Up {
            lease = None;
            last_renewed = None;
            continue;
        }
        let began = tokio::time::Instant::now();
        match tokio::time::timeout(limit, renew(&node, &api, lease.take())).await {
            Ok(Ok(l)) => {
                lease = Some(l);
                let gap = last_renewed.map(|t| began.duration_since(t));
                if began.elapsed() > Duration::from_secs(1)
                    || gap.is_some_and(|g| g > node.cfg.lease_renew * 2)
                {
                    warn!(node = %node.name, took = ?began.elapsed(), since_last = ?gap, "lease renewal slow");
                }
                last_renewed = Some(began);
            }
            Ok(Err(e)) => warn!(node = %node.name, "renewing lease: {e:#}"),
            Err(_) => warn!(node = %node.name, "renewing lease: timed out"),
        }
    }
}

async fn renew(node: &NodeCtx, api: &Api<Lease>, cached: Option<Lease>) -> Result<Lease> {
    let owner = node
        .node_uid
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .map(|uid| OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node.name.clone(),
            uid,
            ..Default::default()
        });
    let existing = match cached {
        Some(l) => Some(l),
        None => api.get_opt(&node.name).await?,
    };
    let spec = LeaseSpec {
        holder_identity: Some(node.name.clone()),
        lease_duration_seconds: Some(node.cfg.lease_duration_seconds),
        renew_time: Some(now_micro()),
        ..Default::default()
    };
    match existing {
        Some(mut l) => {
            let mut s = l.spec.take().unwrap_or_default();
            s.holder_identity = spec.holder_identity;
            s.lease_duration_seconds = spec.lease_duration_seconds;
            s.renew_time = spec.renew_time;
            l.spec = Some(s);
            if let Some(o) = owner {
                l.metadata.owner_references = Some(vec![o]);
            }
            Ok(api.replace(&node.name, &PostParams::default(), &l).await?)
        }
        None => {
            let l = Lease {
                metadata: ObjectMeta {
                    name: Some(node.name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    owner_references: owner.map(|o| vec![o]),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            Ok(api.create(&PostParams::default(), &l).await?)
        }
    }
}

/// Power loss: every process of the node dies at once, sandboxes go, the API hears
/// nothing more from this node. Disks (PV directories, pod directories) stay.
pub async fn crash(node: &NodeCtx) {
    node.state.send_replace(NodeState::Crashed);
    let handles: Vec<PodHandle> = node
        .pods
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(_, h)| h)
        .collect();
    for h in &handles {
        h.join.abort();
    }
    let mut resources = Vec::new();
    for h in handles {
        let _ = h.join.await;
        resources.push(h.res.lock().unwrap_or_else(|e| e.into_inner()).clone());
    }
    // All processes die first, at once; sandbox removal is slow in the kernel, so in parallel.
    for res in &resources {
        for pgid in res.groups.values() {
            crate::pod::runner::signal_group(*pgid, rustix::process::Signal::KILL);
        }
    }
    futures::future::join_all(
        resources
            .iter()
            .filter_map(|r| r.sandbox.as_ref())
            .map(netns::destroy_sandbox),
    )
    .await;
    for res in &resources {
        if let Some(sb) = &res.sandbox {
            node.ipam
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(sb.ip.octets()[3]);
        }
        res.remove_records();
    }
    info!(node = %node.name, "node crashed");
}

/// Network partition: pod traffic stops at the node's veths, the agent stops talking to
/// the API for this node, processes keep running and are still supervised locally.
pub async fn partition(node: &NodeCtx) -> Result<()> {
    node.state.send_replace(NodeState::Partitioned);
    set_links(node, false).await?;
    info!(node = %node.name, "node partitioned");
    Ok(())
}

async fn set_links(node: &NodeCtx, up: bool) -> Result<()> {
    let veths: Vec<String> = node
        .pods
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter_map(|h| {
            h.res
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sandbox
                .as_ref()
                .map(|s| s.veth.clone())
        })
        .collect();
    let mut errors = Vec::new();
    for v in veths {
        if let Err(e) = netns::set_link(&v, up).await {
            errors.push(format!("{e:#}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}

/// Boots a crashed node or heals a partition, and waits until the node has posted
/// Ready=True so callers can rely on it.
pub async fn up(node: &NodeCtx) -> Result<()> {
    match node.state() {
        NodeState::Up => return Ok(()),
        NodeState::Crashed => {
            *node.boot_id.lock().unwrap_or_else(|e| e.into_inner()) = random_uuid("boot");
            *node
                .needs_register
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = true;
        }
        NodeState::Partitioned => set_links(node, true).await?,
    }
    let mut posted = node.posted.subscribe();
    posted.borrow_and_update();
    node.state.send_replace(NodeState::Up);
    info!(node = %node.name, "node up");
    tokio::time::timeout(Duration::from_secs(30), posted.changed())
        .await
        .map_err(|_| {
            anyhow!(
                "node {} is up but could not post its status within 30s",
                node.name
            )
        })?
        .map_err(|_| anyhow!("agent shutting down"))?;
    Ok(())
}
