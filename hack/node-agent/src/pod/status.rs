//! Pod status as a kubelet writes it, built from what the agent knows locally and the
//! status the apiserver currently holds (whose foreign fields, e.g. qosClass, nominated
//! node or conditions owned by other controllers, are carried over untouched).

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Local view of one container instance.
#[derive(Debug, Clone, PartialEq)]
pub enum CState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Time,
    },
    Terminated(Term),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Time>,
    pub finished_at: Time,
    pub container_id: Option<String>,
}

impl Term {
    /// Exit code as the kubelet reports it (128+signal when killed by a signal) and the
    /// matching reason.
    pub fn from_exit(
        code: Option<i32>,
        signal: Option<i32>,
        started_at: Option<Time>,
        finished_at: Time,
        container_id: Option<String>,
    ) -> Self {
        let exit_code = code.unwrap_or_else(|| 128 + signal.unwrap_or(0));
        Term {
            exit_code,
            signal,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at,
            finished_at,
            container_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: CState,
    pub last: Option<Term>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodView {
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub init: Vec<CView>,
    pub containers: Vec<CView>,
    /// Init containers finished (or there are none): app containers may run.
    pub initialized: bool,
    /// Deleted or its node decided it is over: containers will not restart any more.
    pub terminal: bool,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The kubelet's getPhase.
pub fn phase(pod: &Pod, view: &PodView) -> &'static str {
    let policy = restart_policy(pod);
    let failed_init = view.init.iter().any(|c| {
        matches!(&c.state, CState::Terminated(t) if t.exit_code != 0)
            || (matches!(c.state, CState::Waiting { .. })
                && c.last.as_ref().is_some_and(|t| t.exit_code != 0))
    });
    if failed_init && policy == "Never" {
        return "Failed";
    }
    if !view.initialized {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &view.containers {
        match &c.state {
            CState::Running { .. } => running += 1,
            CState::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            CState::Waiting { .. } => {
                if let Some(t) = &c.last {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                } else {
                    waiting += 1;
                }
            }
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if view.terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        return match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

fn container_status(c: &CView) -> ContainerStatus {
    let term = |t: &Term| ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: t.started_at.clone(),
        finished_at: Some(t.finished_at.clone()),
        container_id: t.container_id.clone(),
    };
    let state = match &c.state {
        CState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        CState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..Default::default()
        },
        CState::Terminated(t) => ContainerState {
            terminated: Some(term(t)),
            ..Default::default()
        },
    };
    let last_state = c.last.as_ref().map(|t| ContainerState {
        terminated: Some(term(t)),
        ..Default::default()
    });
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: c.container_id.clone(),
        ready: c.ready,
        started: Some(c.started),
        restart_count: c.restart_count,
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..Default::default()
    }
}

struct Cond {
    type_: &'static str,
    status: bool,
    reason: Option<String>,
    message: Option<String>,
}

fn unready_message(kind: &str, names: &[&str]) -> String {
    format!("containers with {kind} status: [{}]", names.join(" "))
}

fn desired_conditions(
    pod: &Pod,
    view: &PodView,
    phase: &str,
    current: &[PodCondition],
) -> Vec<Cond> {
    let mut out = vec![Cond {
        type_: "PodReadyToStartContainers",
        status: view.sandbox_ready,
        reason: None,
        message: None,
    }];
    let incomplete: Vec<&str> = view
        .init
        .iter()
        .filter(|c| !(matches!(&c.state, CState::Terminated(t) if t.exit_code == 0) || c.ready))
        .map(|c| c.name.as_str())
        .collect();
    out.push(if view.initialized || incomplete.is_empty() {
        Cond {
            type_: "Initialized",
            status: true,
            reason: None,
            message: None,
        }
    } else {
        Cond {
            type_: "Initialized",
            status: false,
            reason: Some("ContainersNotInitialized".into()),
            message: Some(unready_message("incomplete", &incomplete)),
        }
    });
    let unready: Vec<&str> = view
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let completed = phase == "Succeeded";
    let containers_ready = if completed {
        Cond {
            type_: "ContainersReady",
            status: false,
            reason: Some("PodCompleted".into()),
            message: None,
        }
    } else if unready.is_empty() {
        Cond {
            type_: "ContainersReady",
            status: true,
            reason: None,
            message: None,
        }
    } else {
        Cond {
            type_: "ContainersReady",
            status: false,
            reason: Some("ContainersNotReady".into()),
            message: Some(unready_message("unready", &unready)),
        }
    };
    let mut ready = Cond {
        type_: "Ready",
        status: containers_ready.status,
        reason: containers_ready.reason.clone(),
        message: containers_ready.message.clone(),
    };
    if ready.status {
        let gates = pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.as_ref())
            .into_iter()
            .flatten();
        let mut problems = Vec::new();
        for g in gates {
            match current.iter().find(|c| c.type_ == g.condition_type) {
                None => problems.push(format!(
                    "corresponding condition of pod readiness gate \"{}\" does not exist.",
                    g.condition_type
                )),
                Some(c) if c.status != "True" => problems.push(format!(
                    "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                    g.condition_type, c.status
                )),
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            ready = Cond {
                type_: "Ready",
                status: false,
                reason: Some("ReadinessGatesNotReady".into()),
                message: Some(problems.join(", ")),
            };
        }
    }
    out.push(ready);
    out.push(containers_ready);
    out
}

fn merge_conditions(current: &[PodCondition], desired: Vec<Cond>, now: &Time) -> Vec<PodCondition> {
    let mut result: Vec<PodCondition> = current.to_vec();
    for d in desired {
        let status = if d.status { "True" } else { "False" };
        match result.iter_mut().find(|c| c.type_ == d.type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(now.clone());
                    c.status = status.into();
                }
                c.reason = d.reason;
                c.message = d.message;
            }
            None => result.push(PodCondition {
                type_: d.type_.into(),
                status: status.into(),
                reason: d.reason,
                message: d.message,
                last_transition_time: Some(now.clone()),
                ..Default::default()
            }),
        }
    }
    if !result.iter().any(|c| c.type_ == "PodScheduled") {
        result.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(now.clone()),
            ..Default::default()
        });
    }
    result
}

/// The status to write, starting from the apiserver's copy so that fields owned by others
/// survive and unchanged conditions keep their transition times.
pub fn build(pod: &Pod, view: &PodView, now: &Time) -> PodStatus {
    let current = pod.status.clone().unwrap_or_default();
    let mut st = current.clone();
    let old_phase = current.phase.as_deref().unwrap_or("Pending");
    let phase = if matches!(old_phase, "Succeeded" | "Failed") {
        // The apiserver refuses to move a pod out of a terminal phase.
        if old_phase == "Succeeded" {
            "Succeeded"
        } else {
            "Failed"
        }
    } else {
        phase(pod, view)
    };
    st.phase = Some(phase.into());
    st.host_ip = Some(view.host_ip.clone());
    st.host_ips = Some(vec![HostIP {
        ip: view.host_ip.clone(),
    }]);
    if let Some(ip) = &view.pod_ip {
        st.pod_ip = Some(ip.clone());
        st.pod_ips = Some(vec![PodIP { ip: ip.clone() }]);
    }
    if st.start_time.is_none() {
        st.start_time = Some(now.clone());
    }
    let conds = desired_conditions(
        pod,
        view,
        phase,
        current.conditions.as_deref().unwrap_or_default(),
    );
    st.conditions = Some(merge_conditions(
        current.conditions.as_deref().unwrap_or_default(),
        conds,
        now,
    ));
    st.container_statuses = Some(view.containers.iter().map(container_status).collect());
    st.init_container_statuses = if view.init.is_empty() {
        current.init_container_statuses.filter(|v| !v.is_empty())
    } else {
        Some(view.init.iter().map(container_status).collect())
    };
    if let Some(g) = pod.metadata.generation {
        st.observed_generation = Some(g);
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodReadinessGate, PodSpec};

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_700_000_000 + s).unwrap())
    }

    fn running(name: &str, ready: bool) -> CView {
        CView {
            name: name.into(),
            image: "redis:7.2".into(),
            image_id: "id".into(),
            container_id: Some("process://1".into()),
            state: CState::Running { started_at: t(1) },
            last: None,
            restart_count: 0,
            ready,
            started: true,
        }
    }

    fn exited(name: &str, code: i32) -> CView {
        CView {
            state: CState::Terminated(Term::from_exit(Some(code), None, Some(t(1)), t(2), None)),
            ready: false,
            started: false,
            ..running(name, false)
        }
    }

    fn pod(policy: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                qos_class: Some("BestEffort".into()),
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(t(0)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn view(containers: Vec<CView>) -> PodView {
        PodView {
            sandbox_ready: true,
            pod_ip: Some("10.244.1.2".into()),
            host_ip: "10.244.1.1".into(),
            init: vec![],
            containers,
            initialized: true,
            terminal: false,
        }
    }

    fn cond<'a>(st: &'a PodStatus, ty: &str) -> &'a PodCondition {
        st.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == ty)
            .unwrap()
    }

    #[test]
    fn running_ready_pod() {
        let p = pod("Always");
        let st = build(&p, &view(vec![running("redis", true)]), &t(5));
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(st.pod_ip.as_deref(), Some("10.244.1.2"));
        assert_eq!(st.host_ips.as_ref().unwrap()[0].ip, "10.244.1.1");
        assert_eq!(cond(&st, "Ready").status, "True");
        assert_eq!(cond(&st, "PodScheduled").last_transition_time, Some(t(0)));
        let cs = &st.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready);
        assert_eq!(cs.image, "redis:7.2");
        assert!(cs.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn transition_times_change_only_on_transitions() {
        let mut p = pod("Always");
        let st1 = build(&p, &view(vec![running("redis", false)]), &t(5));
        assert_eq!(cond(&st1, "Ready").status, "False");
        assert_eq!(
            cond(&st1, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(
            cond(&st1, "Ready").message.as_deref(),
            Some("containers with unready status: [redis]")
        );
        p.status = Some(st1.clone());
        let st2 = build(&p, &view(vec![running("redis", false)]), &t(9));
        assert_eq!(st1, st2, "nothing changed, nothing to write");
        p.status = Some(st2);
        let st3 = build(&p, &view(vec![running("redis", true)]), &t(12));
        assert_eq!(cond(&st3, "Ready").last_transition_time, Some(t(12)));
        assert_eq!(
            cond(&st3, "PodReadyToStartContainers").last_transition_time,
            Some(t(5))
        );
        assert_eq!(st3.start_time, Some(t(5)));
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let mut p = pod("Always");
        p.spec.as_mut().unwrap().readiness_gates = Some(vec![PodReadinessGate {
            condition_type: "example.com/ok".into(),
        }]);
        let st = build(&p, &view(vec![running("redis", true)]), &t(5));
        assert_eq!(cond(&st, "ContainersReady").status, "True");
        assert_eq!(cond(&st, "Ready").status, "False");
        assert_eq!(
            cond(&st, "Ready").reason.as_deref(),
            Some("ReadinessGatesNotReady")
        );
        let mut s = st.clone();
        s.conditions.as_mut().unwrap().push(PodCondition {
            type_: "example.com/ok".into(),
            status: "True".into(),
            ..Default::default()
        });
        p.status = Some(s);
        let st = build(&p, &view(vec![running("redis", true)]), &t(6));
        assert_eq!(cond(&st, "Ready").status, "True");
        assert_eq!(cond(&st, "example.com/ok").status, "True");
    }

    #[test]
    fn phases_follow_restart_policy() {
        let done = view(vec![exited("a", 0)]);
        assert_eq!(phase(&pod("Always"), &done), "Running");
        assert_eq!(phase(&pod("OnFailure"), &done), "Succeeded");
        assert_eq!(phase(&pod("Never"), &done), "Succeeded");
        let failed = view(vec![exited("a", 1)]);
        assert_eq!(phase(&pod("Never"), &failed), "Failed");
        assert_eq!(phase(&pod("OnFailure"), &failed), "Running");
        let mut deleted = view(vec![exited("a", 0), exited("b", 143)]);
        deleted.terminal = true;
        assert_eq!(phase(&pod("Always"), &deleted), "Failed");
        deleted.containers.pop();
        assert_eq!(phase(&pod("Always"), &deleted), "Succeeded");
    }

    #[test]
    fn image_pull_failure_keeps_pod_pending() {
        let mut c = running("a", false);
        c.state = CState::Waiting {
            reason: "ErrImagePull".into(),
            message: Some("image \"nginx\" is not available".into()),
        };
        c.container_id = None;
        let st = build(&pod("Always"), &view(vec![c]), &t(3));
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        let w = st.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap();
        assert_eq!(w.reason.as_deref(), Some("ErrImagePull"));
    }

    #[test]
    fn crash_loop_counts_as_stopped_and_running_phase() {
        let mut c = running("a", false);
        c.state = CState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        };
        c.last = Some(Term::from_exit(None, Some(9), None, t(2), None));
        c.restart_count = 3;
        let st = build(&pod("Always"), &view(vec![c]), &t(3));
        assert_eq!(st.phase.as_deref(), Some("Running"));
        let cs = &st.container_statuses.unwrap()[0];
        let last = cs.last_state.clone().unwrap().terminated.unwrap();
        assert_eq!(last.exit_code, 137);
        assert_eq!(cs.restart_count, 3);
    }

    #[test]
    fn terminal_phase_is_sticky() {
        let mut p = pod("Never");
        p.status.as_mut().unwrap().phase = Some("Failed".into());
        let st = build(&p, &view(vec![running("a", true)]), &t(3));
        assert_eq!(st.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn init_containers_gate_initialized() {
        let mut v = view(vec![CView {
            state: CState::Waiting {
                reason: "PodInitializing".into(),
                message: None,
            },
            ..running("app", false)
        }]);
        v.init = vec![running("init", false)];
        v.initialized = false;
        let st = build(&pod("Always"), &v, &t(3));
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&st, "Initialized").status, "False");
        assert_eq!(
            cond(&st, "Initialized").message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        assert_eq!(st.init_container_statuses.unwrap().len(), 1);
    }
}
