//! Starting containers: init containers in order, then the app containers; pulling the
//! image, working out env, mounts and argv, spawning the process and hooking up its exit
//! waiter, probes and postStart hook.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::hooks::{post_start_task, probe_tasks};
use super::launch::setup_script;
use super::process::{proc_start_time, spawn_process, watch_exit};
use super::sandbox::hostnames;
use super::worker::{BACKOFF_MAX, BACKOFF_START, RETRY, Worker};
use crate::ids::now_time;
use crate::netns::Sandbox;
use crate::pod::cluster::{self, ClusterServices};
use crate::pod::env;
use crate::pod::image;
use crate::pod::probe::Target;
use crate::pod::rootfs;
use crate::pod::status::CState;
use crate::pod::volumes::{self, Bind};

/// Everything needed to spawn an instance and record it, worked out before anything runs.
struct Launch {
    script: String,
    argv: Vec<String>,
    id: rootfs::Identity,
    /// The process's whole env: the image's, the runtime's, then the container's own.
    proc_env: Vec<(String, String)>,
    workdir: String,
    /// The container's own env, kept for restarts while the API is out of reach.
    env: Vec<(String, String)>,
    image_id: String,
}

/// What the helpers of a freshly started instance need to know about it.
struct Started {
    instance: u64,
    at: Instant,
    exec_as: Option<rootfs::Identity>,
    /// It has probes and runs long enough for them (not a run-to-completion init container).
    probed: bool,
    exit_tx: watch::Sender<bool>,
}

impl Worker {
    pub(super) async fn start_containers(&mut self) {
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
        let Some(env) = self.resolve_env(init, i, &spec).await else {
            return;
        };
        let Some((binds, sb, services)) = self.mounts(init, i, &name, &spec, &img, &env).await
        else {
            return;
        };
        let launch = match self.launch_plan(&spec, &img, &binds, &env, &services) {
            Ok(l) => l,
            Err(msg) => {
                self.config_error(init, i, msg);
                return;
            }
        };
        let log_path = self.dir.join(format!("{name}.log"));
        let spawned = spawn_process(
            &sb,
            &launch.script,
            &launch.argv,
            &launch.proc_env,
            &log_path,
        );
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                self.create_error(init, i, &e);
                return;
            }
        };
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        self.register_pid(&name, pid);
        let pod_ip = self.pod_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let started = self.record_started(init, i, pid, &spec, &launch);
        let instance = started.instance;
        watch_exit(child, started.exit_tx, self.ev_tx.clone(), &name, instance);
        let Launch {
            argv,
            proc_env,
            workdir,
            ..
        } = launch;
        let target = Target {
            pid,
            netns: sb.netns_path(),
            pod_ip: std::net::IpAddr::V4(pod_ip),
            env: proc_env,
            workdir,
            ports: spec.ports.clone().unwrap_or_default(),
            exec_as: started.exec_as,
        };
        if started.probed {
            let tasks = probe_tasks(&self.ev_tx, &name, instance, &spec, &target, started.at);
            self.ctr_mut(init, i).tasks.extend(tasks);
        }
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let task = post_start_task(&self.ev_tx, &name, instance, hook, target);
            self.ctr_mut(init, i).tasks.push(task);
        }
        info!(pod = %self.key, container = %name, pid, argv = ?argv, "container started");
    }

    /// The runtime could not create the process: CreateContainerError, tried again shortly.
    fn create_error(&mut self, init: bool, i: usize, e: &std::io::Error) {
        let c = self.ctr_mut(init, i);
        c.state = CState::Waiting {
            reason: "CreateContainerError".into(),
            message: Some(e.to_string()),
        };
        c.next_start = Some(Instant::now() + RETRY);
    }

    /// The container's env from the pod spec and the objects it references, re-read unless
    /// they were read just now.
    async fn resolve_env(
        &mut self,
        init: bool,
        i: usize,
        spec: &Container,
    ) -> Option<Vec<(String, String)>> {
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
        match env::container_env(&self.pod, spec, &facts, &self.objects) {
            Ok(e) => Some(e),
            // Partitioned: the kubelet restarts with what it last knew.
            Err(_) if !self.reachable() && cached_env.is_some() => {
                Some(cached_env.unwrap_or_default())
            }
            Err(msg) => {
                self.config_error(init, i, msg);
                None
            }
        }
    }

    /// The container's bind mounts (the runtime's first, then the pod's volumes), the sandbox
    /// it runs in, and the cluster's Services as last known (for its env and resolv.conf).
    async fn mounts(
        &mut self,
        init: bool,
        i: usize,
        name: &str,
        spec: &Container,
        img: &image::ImageConfig,
        env: &[(String, String)],
    ) -> Option<(Vec<Bind>, Sandbox, ClusterServices)> {
        let vols = self.volumes.clone()?;
        let mut binds = match volumes::container_binds(spec, &vols, env) {
            Ok(b) => b,
            Err(msg) => {
                self.config_error(init, i, msg);
                return None;
            }
        };
        let sb = self.sandbox.clone()?;
        let ctr_dir = self.ctr_dir(name);
        let services = self
            .node
            .images
            .services
            .get(&self.node.client, self.reachable())
            .await;
        let resolv = cluster::resolv_conf(&self.pod, services.dns.as_ref());
        let runtime = match self.runtime_binds(&ctr_dir, img, &binds, resolv.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                self.config_error(init, i, format!("preparing container filesystem: {e}"));
                return None;
            }
        };
        binds.splice(0..0, runtime);
        Some((binds, sb, services))
    }

    /// Where the container's per-instance files (writable layer, /tmp, anonymous volumes) live.
    fn ctr_dir(&self, name: &str) -> PathBuf {
        self.dir.join("containers").join(name)
    }

    /// What to spawn: the setup script, the argv (through `enter-rootfs` when the identity
    /// needs it), the working directory and the process env.
    fn launch_plan(
        &self,
        spec: &Container,
        img: &image::ImageConfig,
        binds: &[Bind],
        env: &[(String, String)],
        services: &ClusterServices,
    ) -> Result<Launch, String> {
        let command = env::expand_all(spec.command.as_deref().unwrap_or_default(), env);
        let args = env::expand_all(spec.args.as_deref().unwrap_or_default(), env);
        let argv = image::argv(img, &command, &args);
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
        let (script, argv, id) = match &img.oci {
            None => {
                let (argv, id, home) = self.host_launch(spec, binds, &workdir, argv)?;
                proc_env.push(("HOME".into(), home));
                (setup_script(binds, &hostname, &workdir), argv, id)
            }
            Some(oci) => {
                let ctr_dir = self.ctr_dir(&spec.name);
                let (script, argv, id) = rootfs::identity(&self.pod, spec, &oci.user, &oci.rootfs)
                    .and_then(|id| {
                        rootfs::launch(&ctr_dir, oci, binds, &hostname, &workdir, &id, &argv)
                            .map(|(s, a)| (s, a, id))
                    })?;
                if !img.env.iter().any(|(k, _)| k == "HOME") {
                    proc_env.push(("HOME".into(), rootfs::home(&oci.rootfs, id.uid)));
                }
                (script, argv, id)
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
        let image_name = spec.image.clone().unwrap_or_default();
        let image_id = match &img.oci {
            Some(o) => image::oci_image_id(&image_name, &o.digest),
            None => image::image_id(&image_name),
        };
        Ok(Launch {
            script,
            argv,
            id,
            proc_env,
            workdir,
            env: env.to_vec(),
            image_id,
        })
    }

    /// Records the process where a crash or an agent restart finds it. Called before any
    /// await after the spawn, so a crash right now still finds the process.
    fn register_pid(&mut self, name: &str, pid: i32) {
        self.res
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .groups
            .insert(name.to_string(), pid);
        let start_time = proc_start_time(pid).unwrap_or(0);
        let _ = std::fs::write(
            self.dir.join(format!("{name}.pid")),
            format!("{pid} {start_time}\n"),
        );
    }

    /// The container is Running as a new instance (a restart if one ran before).
    fn record_started(
        &mut self,
        init: bool,
        i: usize,
        pid: i32,
        spec: &Container,
        launch: &Launch,
    ) -> Started {
        let now_t = now_time();
        let now_i = Instant::now();
        let c = self.ctr_mut(init, i);
        c.instance += 1;
        if c.had_instance {
            c.restart_count += 1;
        }
        c.had_instance = true;
        c.pid = Some(pid);
        c.started_at = Some((now_t.clone(), now_i));
        c.state = CState::Running { started_at: now_t };
        c.container_id = Some(format!("process://{pid}"));
        c.image_id = launch.image_id.clone();
        c.env = Some(launch.env.clone());
        c.exec_as = Some(launch.id.clone()).filter(|id| !id.is_plain_root());
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
        Started {
            instance: c.instance,
            at: now_i,
            exec_as: c.exec_as.clone(),
            probed: !no_probes && long_running,
            exit_tx,
        }
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
}
