//! `node-agent run`: wires nodes, pods, the provisioner and the control socket together.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config};
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::netns::{self, Network, Sandbox};
use crate::node::{self, HostInfo, NodeConfig, NodeCtx};
use crate::pod::runner::{proc_start_time, signal_group};
use crate::{control, linkem, pod, provisioner};

/// Kills processes and removes sandboxes recorded under the state dir by an earlier agent
/// that did not shut down cleanly. Pods are then started afresh (new sandbox, restartCount
/// +1), as after a kubelet and container runtime restart; nothing is adopted.
pub async fn cleanup_leftovers(state_dir: &Path) -> (usize, usize) {
    let (mut killed, mut sandboxes) = (0, 0);
    let Ok(nodes) = std::fs::read_dir(state_dir.join("nodes")) else {
        return (0, 0);
    };
    for node in nodes.flatten() {
        let Ok(pods) = std::fs::read_dir(node.path().join("pods")) else {
            continue;
        };
        for pod in pods.flatten() {
            let Ok(files) = std::fs::read_dir(pod.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".pid") {
                    let rec = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut it = rec.split_whitespace();
                    let pid = it.next().and_then(|p| p.parse::<i32>().ok());
                    let start = it.next().and_then(|s| s.parse::<u64>().ok());
                    if let (Some(pid), Some(start)) = (pid, start)
                        && pid > 1
                        && proc_start_time(pid) == Some(start)
                    {
                        signal_group(pid, rustix::process::Signal::KILL);
                        killed += 1;
                    }
                    let _ = std::fs::remove_file(&path);
                } else if name == "sandbox" {
                    if let Some(sb) = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| Sandbox::from_record(&s))
                    {
                        if sb.netns_path().exists() {
                            sandboxes += 1;
                        }
                        netns::destroy_sandbox(&sb).await;
                    }
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    (killed, sandboxes)
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("loading kubeconfig")?;
    Client::try_from(config).context("building API client")
}

pub async fn run(args: RunArgs) -> Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let state_dir = std::fs::canonicalize(&args.state_dir)?;
    if args.nodes.len() > args.bridge_cidr.node_blocks() {
        anyhow::bail!(
            "{} nodes do not fit into {} (one /24 per node)",
            args.nodes.len(),
            args.bridge_cidr
        );
    }
    let listener = control::bind(&state_dir).await?;
    let (killed, sandboxes) = cleanup_leftovers(&state_dir).await;
    if killed + sandboxes > 0 {
        info!(killed, sandboxes, "cleaned up after a previous agent");
    }
    let client = client(&args.kubeconfig).await?;
    let net = Network {
        bridge: args.bridge.clone(),
        cidr: args.bridge_cidr,
    };
    let node_ips: Vec<_> = (0..args.nodes.len())
        .map(|i| args.bridge_cidr.node_ip(i, 1))
        .collect();
    net.setup_bridge(&node_ips)
        .await
        .context("setting up the bridge")?;
    linkem::install(Arc::new(linkem::LinkEm::new(
        args.bridge_cidr,
        args.nodes.iter().map(|n| n.zone.clone()).collect(),
    )));
    let shims = pod::image::install_redis_shims(&state_dir)?;
    let archives = args
        .image_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("images").join("archives"));
    let images = Arc::new(pod::image::Images {
        shims,
        store: pod::oci::Store::new(archives, state_dir.join("images").join("rootfs"))?,
        services: pod::cluster::Cache::default(),
    });
    let host = HostInfo::read(&state_dir);
    let cfg = NodeConfig {
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        max_pods: args.max_pods,
        lease_duration_seconds: args.lease_duration_seconds,
        lease_renew: std::time::Duration::from_secs(args.lease_renew_seconds.max(1)),
    };
    let mut nodes = Vec::new();
    for (i, n) in args.nodes.iter().enumerate() {
        nodes.push(Arc::new(NodeCtx::new(
            n.name.clone(),
            n.zone.clone(),
            i,
            args.bridge_cidr,
            &state_dir,
            client.clone(),
            net.clone(),
            images.clone(),
            cfg.clone(),
            host.clone(),
        )?));
    }

    let (node_store, node_writer) = reflector::store::<Node>();
    let node_events = reflector::reflector(
        node_writer,
        watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff();
    tokio::spawn(async move {
        let mut s = node_events.boxed();
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                warn!("node watch: {e}");
            }
        }
    });
    spawn_heartbeats(&args.kubeconfig, &nodes).await?;
    for n in &nodes {
        tokio::spawn(node::status_loop(n.clone(), node_store.clone()));
        tokio::spawn(pod::run_node_pods(n.clone()));
    }
    tokio::spawn(provisioner::run(client.clone(), nodes.clone()));
    tokio::spawn(control::serve(listener, nodes.clone()));
    info!(
        nodes = ?args.nodes.iter().map(|n| format!("{}={}", n.name, n.zone)).collect::<Vec<_>>(),
        bridge = %args.bridge,
        "node-agent running"
    );

    wait_for_shutdown().await;
    info!("shutting down: stopping every pod process and sandbox (the API is not told)");
    futures::future::join_all(nodes.iter().map(|n| node::crash(n))).await;
    let _ = std::fs::remove_file(control::socket_path(&state_dir));
    Ok(())
}

/// Runs every node's Lease renewal on a thread of its own, with its own runtime and API client
/// (its own connection), the way the kubelet keeps a separate heartbeat client: one agent
/// stands for many kubelets, and starting a burst of Pods on the shared runtime (filesystem
/// work, process spawns, status writes queued on one HTTP/2 connection) delayed renewals past
/// the node-monitor grace period; the node controller then marked busy nodes NotReady while
/// everything on them ran (seen in CI: members replaced on flapping nodes under load).
async fn spawn_heartbeats(kubeconfig: &Path, nodes: &[Arc<NodeCtx>]) -> Result<()> {
    let (started, ready) = tokio::sync::oneshot::channel::<Result<()>>();
    let kubeconfig = kubeconfig.to_path_buf();
    let nodes = nodes.to_vec();
    std::thread::Builder::new()
        .name("node-heartbeats".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = started.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                // The client is built here: its connection and workers live on this runtime.
                let client = match client(&kubeconfig).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                futures::future::join_all(
                    nodes
                        .into_iter()
                        .map(|n| node::lease_loop(n, client.clone())),
                )
                .await;
            });
        })
        .context("starting the heartbeat thread")?;
    ready
        .await
        .context("the heartbeat thread ended before it started")?
        .context("the heartbeat API client")
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {},
                _ = i.recv() => {},
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
