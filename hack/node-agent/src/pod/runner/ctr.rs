//! One container of a pod as the worker tracks it: its state, restart count, back-off and
//! the helper tasks (probes, hooks) that live as long as its current instance.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStateTerminated, ContainerStatus, Pod};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ids::now_time;
use crate::pod::rootfs;
use crate::pod::status::{CState, CView, Term};

/// Aborts a helper task when the container instance it belongs to is gone.
pub(super) struct TaskGuard(pub(super) JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One container of the pod (init or app) across its instances. The worker's files all
/// read and change it, hence the visible fields.
pub(super) struct Ctr {
    pub(super) name: String,
    pub(super) init: bool,
    pub(super) sidecar: bool,
    pub(super) instance: u64,
    pub(super) state: CState,
    pub(super) last: Option<Term>,
    pub(super) restart_count: i32,
    /// An instance existed before (in this worker, or per the API after a reboot): the
    /// next start is a restart.
    pub(super) had_instance: bool,
    pub(super) ready: bool,
    pub(super) started: bool,
    pub(super) pid: Option<i32>,
    pub(super) started_at: Option<(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
        Instant,
    )>,
    pub(super) container_id: Option<String>,
    pub(super) image_id: String,
    pub(super) backoff: Option<Duration>,
    pub(super) next_start: Option<Instant>,
    pub(super) done: bool,
    pub(super) tasks: Vec<TaskGuard>,
    pub(super) exited: Option<watch::Receiver<bool>>,
    pub(super) env: Option<Vec<(String, String)>>,
    pub(super) kill_reason: Option<String>,
    /// Image pull back-off: the next attempt and the last error (ImagePullBackOff meanwhile).
    pub(super) pull_retry: Option<(Instant, String)>,
    pub(super) pull_backoff: Option<Duration>,
    /// The identity exec probes and hooks take (`None`: root, as the agent itself).
    pub(super) exec_as: Option<rootfs::Identity>,
}

impl Ctr {
    pub(super) fn new(c: &Container, init: bool, pod: &Pod) -> Self {
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
            exec_as: None,
        };
        // A status from an earlier life of this pod on this node (agent restart or node
        // reboot): like a kubelet after reboot, the new instance counts as a restart.
        if let Some(cs) = earlier_status(pod, &c.name, init) {
            ctr.had_instance = true;
            ctr.restart_count = cs.restart_count;
            ctr.last = last_termination(cs);
        }
        ctr
    }

    pub(super) fn running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }

    pub(super) fn can_start(&self, now: Instant) -> bool {
        !self.running() && !self.done && self.next_start.is_none_or(|t| t <= now)
    }

    pub(super) fn view(&self, image: &str) -> CView {
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

/// This container's status from an earlier life of the pod, if that life ran an instance.
fn earlier_status<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a ContainerStatus> {
    let statuses = pod.status.as_ref().and_then(|s| {
        if init {
            s.init_container_statuses.as_ref()
        } else {
            s.container_statuses.as_ref()
        }
    });
    statuses
        .into_iter()
        .flatten()
        .find(|s| s.name == name)
        .filter(|cs| cs.container_id.as_deref().is_some_and(|id| !id.is_empty()))
}

/// How the earlier instance ended: as the API recorded it, or "Unknown" (exit 255) if it was
/// still running when that life ended.
fn last_termination(cs: &ContainerStatus) -> Option<Term> {
    let st = cs.state.clone().unwrap_or_default();
    match (st.terminated, st.running) {
        (Some(t), _) => Some(term_of(t)),
        (None, Some(r)) => Some(Term {
            exit_code: 255,
            signal: None,
            reason: "Unknown".into(),
            message: Some("The container could not be located when the pod was restarted".into()),
            started_at: r.started_at,
            finished_at: now_time(),
            container_id: cs.container_id.clone(),
        }),
        _ => cs
            .last_state
            .clone()
            .and_then(|l| l.terminated)
            .map(term_of),
    }
}

fn term_of(t: ContainerStateTerminated) -> Term {
    Term {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: t.reason.unwrap_or_else(|| "Error".into()),
        message: t.message,
        started_at: t.started_at,
        finished_at: t.finished_at.unwrap_or_else(now_time),
        container_id: t.container_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(statuses: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": "redis"}], "initContainers": [{"name": "setup"}]},
            "status": {"containerStatuses": statuses}
        }))
        .unwrap()
    }

    #[test]
    fn fresh_app_container_waits_for_init() {
        let pod = pod_with(serde_json::json!([]));
        let spec = &pod.spec.as_ref().unwrap().containers[0];
        let c = Ctr::new(spec, false, &pod);
        assert!(!c.had_instance);
        assert!(c.last.is_none());
        assert!(matches!(&c.state, CState::Waiting { reason, .. } if reason == "PodInitializing"));
    }

    #[test]
    fn instance_running_in_an_earlier_life_counts_as_lost() {
        let pod = pod_with(serde_json::json!([{
            "name": "redis", "image": "redis", "imageID": "", "ready": true, "restartCount": 3,
            "containerID": "process://42",
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
        }]));
        let spec = &pod.spec.as_ref().unwrap().containers[0];
        let c = Ctr::new(spec, false, &pod);
        assert!(c.had_instance);
        assert_eq!(c.restart_count, 3);
        let last = c.last.unwrap();
        assert_eq!((last.exit_code, last.reason.as_str()), (255, "Unknown"));
        assert_eq!(last.container_id.as_deref(), Some("process://42"));
    }

    #[test]
    fn status_without_a_container_id_is_not_an_earlier_instance() {
        let pod = pod_with(serde_json::json!([{
            "name": "redis", "image": "redis", "imageID": "", "ready": false, "restartCount": 2,
            "state": {"terminated": {"exitCode": 1}}
        }]));
        let spec = &pod.spec.as_ref().unwrap().containers[0];
        let c = Ctr::new(spec, false, &pod);
        assert!(!c.had_instance);
        assert_eq!(c.restart_count, 0);
    }
}
