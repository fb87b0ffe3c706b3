//! Probes and lifecycle hooks.
//!
//! exec runs inside the container's namespaces (nsenter into its main process) with the
//! container's environment. tcpSocket and httpGet connect to the pod IP from a thread that
//! joined the pod's network namespace: the same address the kubelet would use, and the
//! node-local path stays up while the node is partitioned, as it does on a real node.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::netns::in_netns;

/// Where probes and hooks of one container instance run.
#[derive(Debug, Clone)]
pub struct Target {
    pub pid: i32,
    pub netns: PathBuf,
    pub pod_ip: IpAddr,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub ports: Vec<ContainerPort>,
    /// The container's user, groups and privileges, which exec probes and hooks take as a
    /// runtime's exec does; `None`: root, like the agent.
    pub exec_as: Option<super::rootfs::Identity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    Started,
    Ready(bool),
    LivenessFailed(String),
    StartupFailed(String),
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("port {name:?} not found in the container's ports"))
        }
    }
}

fn host_of(host: Option<&String>, t: &Target) -> Result<IpAddr, String> {
    match host.map(String::as_str) {
        None | Some("") => Ok(t.pod_ip),
        Some(h) => h
            .parse()
            .map_err(|_| format!("host {h:?} is not an IP address (no DNS on this node)")),
    }
}

pub async fn exec(action: &ExecAction, t: &Target, timeout: Duration) -> Result<(), String> {
    let cmd = action.command.as_deref().unwrap_or_default();
    if cmd.is_empty() {
        return Err("exec probe has no command".into());
    }
    let mut command = match &t.exec_as {
        None => {
            let mut c = Command::new("/usr/bin/nsenter");
            c.arg(format!("--target={}", t.pid))
                .args(["--mount", "--net", "--uts"])
                .arg(format!("--wd={}", t.workdir));
            c
        }
        // The agent's own binary is not visible in an OCI container's root: it joins the
        // namespaces from outside, then takes the container's identity.
        Some(id) => {
            let agent = super::rootfs::agent_binary().map_err(|e| format!("starting exec: {e}"))?;
            let mut c = Command::new(agent);
            c.args(["enter-rootfs", "--join", &t.pid.to_string()])
                .args(["--workdir", &t.workdir])
                .args(id.enter_flags());
            c
        }
    };
    let child = command
        .arg("--")
        .args(cmd)
        .env_clear()
        .envs(t.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting exec: {e}"))?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let text = format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            let mut text = text.trim().to_string();
            text.truncate(1024);
            Err(format!(
                "command {cmd:?} exited with {}: {text}",
                out.status.code().unwrap_or(-1)
            ))
        }
        Ok(Err(e)) => Err(format!("exec: {e}")),
        Err(_) => {
            // The probe's own children (e.g. under `sh -c`) share its process group.
            if let Some(pid) = pgid {
                crate::pod::runner::signal_group(pid, rustix::process::Signal::KILL);
            }
            Err(format!("command {cmd:?} timed out after {timeout:?}"))
        }
    }
}

pub async fn tcp(action: &TCPSocketAction, t: &Target, timeout: Duration) -> Result<(), String> {
    let port = resolve_port(&action.port, &t.ports)?;
    let addr = SocketAddr::new(host_of(action.host.as_ref(), t)?, port);
    in_netns(t.netns.clone(), move || {
        TcpStream::connect_timeout(&addr, timeout).map(|_| ())
    })
    .await
    .map_err(|e| format!("{e:#}"))?
    .map_err(|e| format!("dial tcp {addr}: {e}"))
}

pub async fn http(action: &HTTPGetAction, t: &Target, timeout: Duration) -> Result<(), String> {
    if action
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return Err("HTTPS probes are not supported on this node".into());
    }
    let port = resolve_port(&action.port, &t.ports)?;
    let addr = SocketAddr::new(host_of(action.host.as_ref(), t)?, port);
    let path = action.path.clone().unwrap_or_else(|| "/".into());
    let mut headers = String::new();
    for h in action.http_headers.iter().flatten() {
        headers.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.36\r\nAccept: */*\r\nConnection: close\r\n{headers}\r\n"
    );
    let result = in_netns(t.netns.clone(), move || -> Result<u16, String> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let _ = s.set_read_timeout(Some(timeout));
        let _ = s.set_write_timeout(Some(timeout));
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&buf[..n]);
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("malformed HTTP response: {line:?}"))
    })
    .await
    .map_err(|e| format!("{e:#}"))??;
    if (200..400).contains(&result) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {result}"))
    }
}

async fn run(p: &Probe, t: &Target) -> Result<(), String> {
    let timeout =
        Duration::from_secs(u64::try_from(p.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1));
    if let Some(e) = &p.exec {
        exec(e, t, timeout).await
    } else if let Some(s) = &p.tcp_socket {
        tcp(s, t, timeout).await
    } else if let Some(h) = &p.http_get {
        http(h, t, timeout).await
    } else if p.grpc.is_some() {
        Err("gRPC probes are not supported on this node".into())
    } else {
        Err("probe has no handler".into())
    }
}

/// Runs a lifecycle hook (postStart/preStop), bounded by `limit`.
pub async fn run_hook(h: &LifecycleHandler, t: &Target, limit: Duration) -> Result<(), String> {
    if let Some(e) = &h.exec {
        exec(e, t, limit).await
    } else if let Some(g) = &h.http_get {
        http(g, t, limit).await
    } else if let Some(s) = &h.tcp_socket {
        tcp(s, t, limit).await
    } else if let Some(s) = &h.sleep {
        let secs = Duration::from_secs(u64::try_from(s.seconds.max(0)).unwrap_or(0));
        tokio::time::sleep(secs.min(limit)).await;
        Ok(())
    } else {
        Err("hook has no handler".into())
    }
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

fn period(p: &Probe) -> Duration {
    secs(p.period_seconds, 10).max(Duration::from_secs(1))
}

/// Consecutive-result bookkeeping of one probe.
#[derive(Debug, Default)]
struct Counter {
    successes: i32,
    failures: i32,
}

impl Counter {
    /// Returns Some(new result) once a threshold is crossed.
    fn record(&mut self, ok: bool, p: &Probe) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            (self.successes >= p.success_threshold.unwrap_or(1).max(1)).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures >= p.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }
}

/// All probes of one container instance: startup first, then liveness and readiness on
/// their own schedules. Reports only changes; ends when the worker drops the receiver or
/// a liveness/startup failure has been reported.
pub async fn probe_loop(
    c: Container,
    t: Target,
    started_at: Instant,
    tx: mpsc::UnboundedSender<ProbeEvent>,
) {
    if let Some(sp) = &c.startup_probe {
        tokio::time::sleep_until(started_at + secs(sp.initial_delay_seconds, 0)).await;
        let mut count = Counter::default();
        loop {
            let res = run(sp, &t).await;
            let msg = res.as_ref().err().cloned().unwrap_or_default();
            match count.record(res.is_ok(), sp) {
                Some(true) => break,
                Some(false) => {
                    let _ = tx.send(ProbeEvent::StartupFailed(format!(
                        "Startup probe failed: {msg}"
                    )));
                    return;
                }
                None => {}
            }
            tokio::time::sleep(period(sp)).await;
        }
    }
    if tx.send(ProbeEvent::Started).is_err() {
        return;
    }
    let live = c.liveness_probe.clone();
    let ready = c.readiness_probe.clone();
    if ready.is_none() && tx.send(ProbeEvent::Ready(true)).is_err() {
        return;
    }
    let now = Instant::now();
    let mut next_live = live
        .as_ref()
        .map(|p| (started_at + secs(p.initial_delay_seconds, 0)).max(now));
    let mut next_ready = ready
        .as_ref()
        .map(|p| (started_at + secs(p.initial_delay_seconds, 0)).max(now));
    let (mut live_count, mut ready_count) = (Counter::default(), Counter::default());
    let mut is_ready: Option<bool> = None;
    loop {
        let due = match (next_live, next_ready) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        tokio::time::sleep_until(due).await;
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        if let (Some(p), Some(at)) = (&live, next_live)
            && at <= now
        {
            let res = run(p, &t).await;
            let msg = res.as_ref().err().cloned().unwrap_or_default();
            if count_is(&mut live_count, res.is_ok(), p) == Some(false) {
                let _ = tx.send(ProbeEvent::LivenessFailed(format!(
                    "Liveness probe failed: {msg}"
                )));
                return;
            }
            next_live = Some(Instant::now() + period(p));
        }
        if let (Some(p), Some(at)) = (&ready, next_ready)
            && at <= now
        {
            let res = run(p, &t).await;
            if let Some(r) = count_is(&mut ready_count, res.is_ok(), p)
                && is_ready != Some(r)
            {
                is_ready = Some(r);
                if tx.send(ProbeEvent::Ready(r)).is_err() {
                    return;
                }
            }
            next_ready = Some(Instant::now() + period(p));
        }
    }
}

fn count_is(c: &mut Counter, ok: bool, p: &Probe) -> Option<bool> {
    c.record(ok, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ports_resolve() {
        let ports = vec![ContainerPort {
            name: Some("redis".into()),
            container_port: 6379,
            ..Default::default()
        }];
        assert_eq!(
            resolve_port(&IntOrString::String("redis".into()), &ports),
            Ok(6379)
        );
        assert_eq!(resolve_port(&IntOrString::Int(16379), &ports), Ok(16379));
        assert!(resolve_port(&IntOrString::String("bus".into()), &ports).is_err());
    }

    #[test]
    fn thresholds_need_consecutive_results() {
        let p = Probe {
            failure_threshold: Some(2),
            success_threshold: Some(2),
            ..Default::default()
        };
        let mut c = Counter::default();
        assert_eq!(c.record(true, &p), None);
        assert_eq!(c.record(true, &p), Some(true));
        assert_eq!(c.record(false, &p), None);
        assert_eq!(c.record(true, &p), None);
        assert_eq!(c.record(false, &p), None);
        assert_eq!(c.record(false, &p), Some(false));
    }

    #[tokio::test]
    async fn exec_without_a_target_fails_cleanly() {
        let t = Target {
            pid: 999_999_999,
            netns: PathBuf::from("/nonexistent"),
            pod_ip: "127.0.0.1".parse().unwrap(),
            env: vec![],
            workdir: "/".into(),
            ports: vec![],
            exec_as: None,
        };
        let a = ExecAction {
            command: Some(vec!["true".into()]),
        };
        assert!(exec(&a, &t, Duration::from_secs(2)).await.is_err());
        let s = TCPSocketAction {
            port: IntOrString::Int(1),
            host: None,
        };
        assert!(tcp(&s, &t, Duration::from_secs(1)).await.is_err());
    }
}
