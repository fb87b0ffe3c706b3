//! What happens when a container instance exits or its probes or hooks fail: the kill for
//! a restart, the restart decision by policy, and the crash-loop back-off.

use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use super::ctr::Ctr;
use super::process::signal_group;
use super::terminate::kill_instance;
use super::worker::{BACKOFF_MAX, BACKOFF_RESET, BACKOFF_START, Worker};
use crate::ids::now_time;
use crate::pod::Event;
use crate::pod::probe::ProbeEvent;
use crate::pod::status::{CState, Term};

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

/// Whether an instance that exited is started again: sidecars always, init containers after
/// a failure unless the policy is Never, app containers by the pod's restartPolicy.
fn restarts(policy: &str, sidecar: bool, init: bool, exit_code: i32) -> bool {
    if sidecar {
        true
    } else if init {
        exit_code != 0 && policy != "Never"
    } else {
        policy == "Always" || (policy == "OnFailure" && exit_code != 0)
    }
}

/// The kubelet's crash-loop back-off: the first crash restarts at once, later ones wait
/// 10 s doubling up to 5 min (CrashLoopBackOff meanwhile); an instance that ran 10 min
/// starts from scratch.
fn back_off(c: &mut Ctr, term: Term, started: Instant, name: &str, pod_ref: &str) {
    if started.elapsed() >= BACKOFF_RESET {
        c.backoff = None;
    }
    match c.backoff {
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
}

impl Worker {
    pub(super) fn handle_event(&mut self, ev: Event) {
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

    pub(super) fn find(&mut self, name: &str, instance: u64) -> Option<&mut Ctr> {
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

    /// Records how an instance ended, kills what it left in its process group, and either
    /// schedules its restart or marks the container done.
    pub(super) fn on_exit(
        &mut self,
        name: &str,
        instance: u64,
        code: Option<i32>,
        signal: Option<i32>,
    ) {
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
        let restart = !terminating && restarts(&policy, c.sidecar, c.init, term.exit_code);
        info!(
            pod = %pod_ref, container = %name, exit_code = term.exit_code, restart,
            "container exited"
        );
        if restart {
            back_off(c, term, started_i, name, &pod_ref);
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
    fn restart_follows_policy() {
        // (policy, sidecar, init, exit code) -> restarts
        let cases = [
            ("Always", false, false, 0, true),
            ("OnFailure", false, false, 0, false),
            ("OnFailure", false, false, 1, true),
            ("Never", false, false, 1, false),
            ("Always", false, true, 0, false),
            ("OnFailure", false, true, 1, true),
            ("Never", false, true, 1, false),
            ("Never", true, true, 0, true),
        ];
        for (policy, sidecar, init, code, want) in cases {
            assert_eq!(
                restarts(policy, sidecar, init, code),
                want,
                "{policy} sidecar={sidecar} init={init} exit={code}"
            );
        }
    }

    #[test]
    fn second_crash_backs_off_and_doubles() {
        let pod = k8s_openapi::api::core::v1::Pod::default();
        let spec = k8s_openapi::api::core::v1::Container {
            name: "redis".into(),
            ..Default::default()
        };
        let mut c = Ctr::new(&spec, false, &pod);
        let term = || Term::from_exit(Some(1), None, None, now_time(), None);
        back_off(&mut c, term(), Instant::now(), "redis", "p_ns(u)");
        assert!(matches!(c.state, CState::Terminated(_)));
        assert!(c.next_start.is_none());
        back_off(&mut c, term(), Instant::now(), "redis", "p_ns(u)");
        assert!(
            matches!(&c.state, CState::Waiting { reason, message: Some(m) }
                if reason == "CrashLoopBackOff" && m.starts_with("back-off 10s restarting")),
            "{:?}",
            c.state
        );
        assert!(c.next_start.is_some());
        assert_eq!(c.backoff, Some(Duration::from_secs(20)));
        assert_eq!(c.last.as_ref().map(|t| t.exit_code), Some(1));
    }
}
