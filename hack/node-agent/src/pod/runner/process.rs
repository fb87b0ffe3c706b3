//! Container processes on the host: spawning one into its sandbox, signalling its process
//! group, and telling a live pid from a recycled one.

use std::path::Path;
use std::process::Stdio;

use tokio::sync::{mpsc, watch};

use crate::netns::Sandbox;
use crate::pod::Event;

pub fn signal_group(pgid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Process start time from /proc, so a pid file never makes us kill a recycled pid.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Starts the container process: join the sandbox's network namespace, take a private
/// mount and UTS namespace, run the setup script, exec the command. Each step execs the
/// next, so the pid we get is the container's main process and its own process group.
pub(super) fn spawn_process(
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

/// Reports the instance's exit: on `exited` for whoever is stopping it, and as an event to
/// the worker. Detached on purpose: the waiter must report the exit even after the
/// instance's other helpers (probes, hooks) were cancelled.
pub(super) fn watch_exit(
    mut child: tokio::process::Child,
    exited: watch::Sender<bool>,
    ev_tx: mpsc::UnboundedSender<Event>,
    name: &str,
    instance: u64,
) {
    let cname = name.to_string();
    tokio::spawn(async move {
        let status = child.wait().await;
        let (code, signal) = match status {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                (s.code(), s.signal())
            }
            Err(_) => (None, Some(9)),
        };
        let _ = exited.send(true);
        let _ = ev_tx.send(Event::Exited {
            container: cname,
            instance,
            code,
            signal,
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable() {
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(proc_start_time(pid).is_some());
    }
}
