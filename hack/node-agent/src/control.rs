//! `node-agent ctl` ↔ `node-agent run` over DIR/agent.sock: one request line, zero or
//! more output lines, then a final `ok` or `error: ...` line.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use crate::cli::{CtlAction, Percent};
use crate::linkem::{self, Impair};
use crate::node::{self, NodeCtx};

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.sock")
}

pub fn encode(action: &CtlAction) -> String {
    match action {
        CtlAction::Down { node, partition } => {
            if *partition {
                format!("down {node} --partition")
            } else {
                format!("down {node}")
            }
        }
        CtlAction::Up { node } => format!("up {node}"),
        CtlAction::Status => "status".into(),
        CtlAction::LinkDegrade {
            zone_a,
            zone_b,
            delay,
            jitter,
            loss,
        } => format!("link-degrade {zone_a} {zone_b} {delay} {jitter} {}", loss.0),
        CtlAction::LinkRestore { all: true, .. } => "link-restore --all".into(),
        CtlAction::LinkRestore { zone_a, zone_b, .. } => format!(
            "link-restore {} {}",
            zone_a.as_deref().unwrap_or_default(),
            zone_b.as_deref().unwrap_or_default()
        ),
        CtlAction::LinkStatus => "link-status".into(),
    }
}

pub fn decode(line: &str) -> Result<CtlAction, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["down", n] => Ok(CtlAction::Down {
            node: n.to_string(),
            partition: false,
        }),
        ["down", n, "--partition"] | ["down", "--partition", n] => Ok(CtlAction::Down {
            node: n.to_string(),
            partition: true,
        }),
        ["up", n] => Ok(CtlAction::Up {
            node: n.to_string(),
        }),
        ["status"] => Ok(CtlAction::Status),
        ["link-degrade", a, b, delay, jitter, loss_bp] => {
            let num = |s: &str| s.parse::<u32>().map_err(|e| format!("{line:?}: {e}"));
            Ok(CtlAction::LinkDegrade {
                zone_a: a.to_string(),
                zone_b: b.to_string(),
                delay: num(delay)?,
                jitter: num(jitter)?,
                loss: Percent(num(loss_bp)?),
            })
        }
        ["link-restore", "--all"] => Ok(CtlAction::LinkRestore {
            zone_a: None,
            zone_b: None,
            all: true,
        }),
        ["link-restore", a, b] => Ok(CtlAction::LinkRestore {
            zone_a: Some(a.to_string()),
            zone_b: Some(b.to_string()),
            all: false,
        }),
        ["link-status"] => Ok(CtlAction::LinkStatus),
        _ => Err(format!("unknown request {line:?}")),
    }
}

/// Refuses to steal the socket of a live agent; removes a stale one.
pub async fn bind(state_dir: &Path) -> Result<UnixListener> {
    let path = socket_path(state_dir);
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            bail!("another node-agent is serving {}", path.display());
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale {}", path.display()))?;
    }
    UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))
}

pub async fn serve(listener: UnixListener, nodes: Vec<Arc<NodeCtx>>) {
    // One transition at a time: overlapping down/up of the same node would interleave.
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("control socket: {e}");
                continue;
            }
        };
        let nodes = nodes.clone();
        let lock = lock.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &nodes, &lock).await {
                warn!("control request: {e:#}");
            }
        });
    }
}

async fn handle(
    stream: UnixStream,
    nodes: &[Arc<NodeCtx>],
    lock: &tokio::sync::Mutex<()>,
) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(r).read_line(&mut line).await?;
    let reply = match decode(line.trim()) {
        Err(e) => format!("error: {e}\n"),
        Ok(action) => {
            let _guard = lock.lock().await;
            match execute(&action, nodes).await {
                Ok(out) => format!("{out}ok\n"),
                Err(e) => format!("error: {e:#}\n"),
            }
        }
    };
    w.write_all(reply.as_bytes()).await?;
    w.shutdown().await?;
    Ok(())
}

fn find<'a>(nodes: &'a [Arc<NodeCtx>], name: &str) -> Result<&'a Arc<NodeCtx>> {
    nodes
        .iter()
        .find(|n| n.name == name)
        .with_context(|| format!("no node named {name:?} on this agent"))
}

async fn execute(action: &CtlAction, nodes: &[Arc<NodeCtx>]) -> Result<String> {
    match action {
        CtlAction::Status => Ok(nodes
            .iter()
            .map(|n| {
                format!(
                    "{} {} {} pods={}\n",
                    n.name,
                    n.zone,
                    n.state().as_str(),
                    n.pod_count()
                )
            })
            .collect()),
        CtlAction::Down { node, partition } => {
            let n = find(nodes, node)?;
            info!(node = %node, partition, "ctl down");
            match (n.state(), *partition) {
                // Repeating a down is a no-op, so zone-wide scripts can be re-run.
                (node::NodeState::Crashed, false) | (node::NodeState::Partitioned, true) => {}
                (node::NodeState::Crashed, true) => {
                    bail!("node {node} is crashed; a crashed node cannot be partitioned")
                }
                // A partitioned machine can still lose power.
                (_, false) => node::crash(n).await,
                (node::NodeState::Up, true) => node::partition(n).await?,
            }
            Ok(String::new())
        }
        CtlAction::Up { node } => {
            let n = find(nodes, node)?;
            info!(node = %node, "ctl up");
            node::up(n).await?;
            Ok(String::new())
        }
        CtlAction::LinkDegrade {
            zone_a,
            zone_b,
            delay,
            jitter,
            loss,
        } => {
            let imp = Impair::new(*delay, *jitter, *loss)?;
            link()?.degrade(zone_a, zone_b, imp).await
        }
        CtlAction::LinkRestore {
            zone_a,
            zone_b,
            all,
        } => {
            let zones = match (zone_a, zone_b, all) {
                (_, _, true) => None,
                (Some(a), Some(b), false) => Some((a.as_str(), b.as_str())),
                _ => bail!("link-restore needs two zones or --all"),
            };
            link()?.restore(zones).await
        }
        CtlAction::LinkStatus => Ok(link()?.status().await),
    }
}

fn link() -> Result<&'static Arc<linkem::LinkEm>> {
    linkem::global().context("link emulation is not set up in this agent")
}

/// The `ctl` side: prints the agent's output lines, fails on `error:` or no agent.
pub fn client(state_dir: &Path, action: &CtlAction) -> Result<()> {
    let path = socket_path(state_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "node-agent is not running (cannot connect to {})",
            path.display()
        )
    })?;
    writeln!(stream, "{}", encode(action))?;
    stream.flush()?;
    let mut last = None;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if let Some(prev) = last.replace(line) {
            println!("{prev}");
        }
    }
    match last.as_deref() {
        Some("ok") => Ok(()),
        Some(l) => bail!("{}", l.strip_prefix("error: ").unwrap_or(l)),
        None => bail!("node-agent closed the connection without a reply"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for a in [
            CtlAction::Status,
            CtlAction::Up { node: "n1".into() },
            CtlAction::Down {
                node: "n1".into(),
                partition: false,
            },
            CtlAction::Down {
                node: "n1".into(),
                partition: true,
            },
            CtlAction::LinkDegrade {
                zone_a: "zone-a".into(),
                zone_b: "zone-b".into(),
                delay: 200,
                jitter: 50,
                loss: Percent(525),
            },
            CtlAction::LinkRestore {
                zone_a: Some("zone-a".into()),
                zone_b: Some("zone-b".into()),
                all: false,
            },
            CtlAction::LinkRestore {
                zone_a: None,
                zone_b: None,
                all: true,
            },
            CtlAction::LinkStatus,
        ] {
            assert_eq!(decode(&encode(&a)), Ok(a));
        }
        assert!(decode("reboot n1").is_err());
    }
}
