//! A running instance's probes and postStart hook: where they run (its process, namespace,
//! env, working directory and identity) and the tasks that run them for the instance's life.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ctr::TaskGuard;
use super::worker::Worker;
use crate::pod::Event;
use crate::pod::probe::{self, Target};

/// The instance's probe loop and the task that forwards its verdicts to the worker, tagged
/// with the instance so verdicts about an old one are ignored.
pub(super) fn probe_tasks(
    ev_tx: &mpsc::UnboundedSender<Event>,
    name: &str,
    instance: u64,
    spec: &Container,
    target: &Target,
    since: Instant,
) -> [TaskGuard; 2] {
    let (ptx, mut prx) = mpsc::unbounded_channel();
    let ev_tx = ev_tx.clone();
    let cname = name.to_string();
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
    let probes = tokio::spawn(probe::probe_loop(spec.clone(), target.clone(), since, ptx));
    [TaskGuard(probes), TaskGuard(forward)]
}

/// Runs the postStart hook; its failure kills the instance for a restart, as the kubelet does.
pub(super) fn post_start_task(
    ev_tx: &mpsc::UnboundedSender<Event>,
    name: &str,
    instance: u64,
    hook: LifecycleHandler,
    target: Target,
) -> TaskGuard {
    let ev_tx = ev_tx.clone();
    let cname = name.to_string();
    let h = tokio::spawn(async move {
        if let Err(message) = probe::run_hook(&hook, &target, Duration::from_secs(120)).await {
            let _ = ev_tx.send(Event::HookFailed {
                container: cname,
                instance,
                message: format!("PostStartHook failed: {message}"),
            });
        }
    });
    TaskGuard(h)
}

impl Worker {
    pub(super) fn hook_target(&self, name: &str) -> Option<Target> {
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
            exec_as: c.exec_as.clone(),
        })
    }
}
