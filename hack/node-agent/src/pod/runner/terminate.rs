//! Stopping: the grace periods, preStop then SIGTERM then SIGKILL per instance, the whole
//! pod's termination, and the final DELETE that lets the API server forget the pod.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::process::signal_group;
use super::status_write::api_code;
use super::worker::{MIN_TERM_GRACE, Worker};
use crate::ids::now_time;
use crate::pod::probe::{self, Target};
use crate::pod::status::{CState, Term};

impl Worker {
    /// The grace a deletion grants: the API's deletionGracePeriodSeconds first.
    pub(super) fn deletion_grace(&self) -> Duration {
        self.grace_or_pod_default(self.pod.metadata.deletion_grace_period_seconds)
    }

    /// `seconds` if set, else the pod's terminationGracePeriodSeconds, else 30 s (the kubelet's
    /// order of precedence).
    pub(super) fn grace_or_pod_default(&self, seconds: Option<i64>) -> Duration {
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

    /// Stops every container (preStop, SIGTERM, grace, SIGKILL) and removes the sandbox.
    /// `deleted`: the pod object is going away, so containers that never ran are reported
    /// as terminated too (a pod that merely finished keeps them waiting, as the kubelet does).
    pub(super) async fn terminate(&mut self, grace: Duration, run_prestop: bool, deleted: bool) {
        self.terminating = true;
        let deadline = Instant::now() + grace;
        self.stop_running(deadline, run_prestop);
        let hard_deadline = deadline.max(Instant::now() + MIN_TERM_GRACE) + Duration::from_secs(3);
        while self.any_running() {
            match tokio::time::timeout_at(hard_deadline, self.ev_rx.recv()).await {
                Ok(Some(ev)) => self.handle_event(ev),
                Ok(None) | Err(_) => break,
            }
        }
        self.record_leftovers_killed();
        if deleted {
            self.report_waiting_as_terminated();
        }
        self.teardown().await;
        self.terminated = true;
    }

    /// Sends every running instance on its way out (preStop if asked, then SIGTERM and
    /// SIGKILL by `deadline`); their exits arrive as events.
    fn stop_running(&mut self, deadline: Instant, run_prestop: bool) {
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
    }

    /// Anything that did not report its exit is recorded as killed.
    fn record_leftovers_killed(&mut self) {
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
    }

    /// The pod object is going away: containers still waiting (never ran, or waiting for a
    /// restart) are reported as terminated, with their last state if they had one.
    fn report_waiting_as_terminated(&mut self) {
        for c in self.init.iter_mut().chain(self.app.iter_mut()) {
            if matches!(c.state, CState::Waiting { .. }) {
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
    }

    /// Final status, then the kubelet's DELETE with grace 0 guarded by the pod's UID.
    pub(super) async fn finalize_api(&mut self) {
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
}

/// Stops one container instance: preStop (bounded by the deadline), SIGTERM to its process
/// group, at least MIN_TERM_GRACE to exit, then SIGKILL.
pub(super) async fn kill_instance(
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
