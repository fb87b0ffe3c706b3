//! Pod networking: one bridge for all simulated nodes, one network namespace plus veth
//! per pod sandbox, per-node pod IP allocation.
//!
//! Everything is done by running `ip`, so the agent needs no netlink code and every step
//! can be replayed by hand when debugging.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tokio::process::Command;
use tracing::{debug, warn};

use crate::cli::Cidr;

#[derive(Debug, Clone)]
pub struct Network {
    pub bridge: String,
    pub cidr: Cidr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub netns: String,
    pub veth: String,
    pub ip: Ipv4Addr,
}

impl Sandbox {
    pub fn for_id(short_id: &str, ip: Ipv4Addr) -> Self {
        Sandbox {
            netns: format!("rop-{short_id}"),
            veth: format!("rv{short_id}"),
            ip,
        }
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    /// One line, so a restarted agent (or a human) can find and remove leftovers.
    pub fn to_record(&self) -> String {
        format!("{} {} {}\n", self.netns, self.veth, self.ip)
    }

    pub fn from_record(s: &str) -> Option<Self> {
        let mut it = s.split_whitespace();
        let netns = it.next()?.to_string();
        let veth = it.next()?.to_string();
        let ip = it.next()?.parse().ok()?;
        if !netns.starts_with("rop-") || !veth.starts_with("rv") {
            return None;
        }
        Some(Sandbox { netns, veth, ip })
    }
}

/// Sandbox ids end up in interface names, which the kernel limits to 15 bytes ("rv" + 13).
pub const SHORT_ID_LEN: usize = 12;

async fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Network {
    pub fn prefix_len(&self) -> u8 {
        self.cidr.prefix
    }

    /// Creates the bridge if needed and gives it the gateway address and every node's
    /// InternalIP, so the host (and thus the apiserver and tests) reaches all pod IPs directly.
    pub async fn setup_bridge(&self, node_ips: &[Ipv4Addr]) -> Result<()> {
        if ip(&["link", "show", "dev", &self.bridge]).await.is_err() {
            ip(&["link", "add", &self.bridge, "type", "bridge"]).await?;
        }
        let present = ip(&["-o", "-4", "addr", "show", "dev", &self.bridge]).await?;
        let want = std::iter::once(self.cidr.gateway()).chain(node_ips.iter().copied());
        for addr in want {
            let with_prefix = format!("{addr}/{}", self.prefix_len());
            if !present.contains(&format!(" {with_prefix} ")) {
                ip(&["addr", "add", &with_prefix, "dev", &self.bridge]).await?;
            }
        }
        ip(&["link", "set", &self.bridge, "up"]).await?;
        if let Ok(v) = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
            && v.trim() == "1"
        {
            warn!(
                "bridge-nf-call-iptables=1: bridged pod traffic passes the host's iptables FORWARD chain; \
                 a DROP policy there would break pod-to-pod traffic"
            );
        }
        Ok(())
    }

    /// Builds the pod's network: netns, veth into the bridge, pod IP, default route.
    /// On failure everything created so far is removed again.
    pub async fn create_sandbox(&self, sb: &Sandbox, link_up: bool) -> Result<()> {
        let mut res = self.try_create(sb, link_up).await;
        // A pod created while its zone's links are degraded starts degraded too.
        if res.is_ok() {
            res = crate::linkem::on_sandbox_created(sb).await;
        }
        if res.is_err() {
            destroy_sandbox(sb).await;
        }
        res
    }

    async fn try_create(&self, sb: &Sandbox, link_up: bool) -> Result<()> {
        let ns = sb.netns.as_str();
        ip(&["netns", "add", ns]).await?;
        // Creating the peer directly inside the namespace means no pod-side name ever
        // appears on the host, so a crash mid-way leaves only rop-*/rv* names behind.
        ip(&[
            "link", "add", &sb.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])
        .await?;
        ip(&["link", "set", &sb.veth, "master", &self.bridge]).await?;
        if link_up {
            ip(&["link", "set", &sb.veth, "up"]).await?;
        }
        ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
        let addr = format!("{}/{}", sb.ip, self.prefix_len());
        ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"]).await?;
        ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
        let gw = self.cidr.gateway().to_string();
        ip(&["-n", ns, "route", "add", "default", "via", &gw]).await?;
        debug!(netns = ns, ip = %sb.ip, "sandbox created");
        Ok(())
    }
}

pub async fn set_link(veth: &str, up: bool) -> Result<()> {
    ip(&["link", "set", veth, if up { "up" } else { "down" }]).await?;
    Ok(())
}

/// Best effort: a half-built or already removed sandbox is not an error.
pub async fn destroy_sandbox(sb: &Sandbox) {
    // First: a delay line's open TUN device would keep the namespace alive.
    crate::linkem::on_sandbox_destroyed(sb).await;
    let _ = ip(&["link", "del", &sb.veth]).await;
    if let Err(e) = ip(&["netns", "del", &sb.netns]).await
        && sb.netns_path().exists()
    {
        warn!(netns = %sb.netns, "removing sandbox: {e:#}");
    }
}

/// Runs `f` on a fresh OS thread that has joined the pod's network namespace. A dedicated
/// thread (not a pooled one) because setns changes the calling thread for good.
pub async fn in_netns<T, F>(netns: PathBuf, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            let res = (|| -> Result<T> {
                let file = std::fs::File::open(&netns)
                    .with_context(|| format!("opening {}", netns.display()))?;
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .context("setns")?;
                Ok(f())
            })();
            let _ = tx.send(res);
        })
        .context("spawning netns thread")?;
    rx.await.context("netns thread died")?
}

/// Pod IPs of one node: `.2`–`.254` of its /24, handed out round-robin so a re-created
/// sandbox gets a new address (as on a real node) until the range wraps.
#[derive(Debug)]
pub struct Ipam {
    next: u8,
    in_use: HashSet<u8>,
    state_file: PathBuf,
}

const FIRST_HOST: u8 = 2;
const LAST_HOST: u8 = 254;

impl Ipam {
    pub fn load(state_file: PathBuf) -> Self {
        let next = std::fs::read_to_string(&state_file)
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok())
            .filter(|n| (FIRST_HOST..=LAST_HOST).contains(n))
            .unwrap_or(FIRST_HOST);
        Ipam {
            next,
            in_use: HashSet::new(),
            state_file,
        }
    }

    pub fn allocate(&mut self) -> Option<u8> {
        for _ in FIRST_HOST..=LAST_HOST {
            let candidate = self.next;
            self.next = if candidate >= LAST_HOST {
                FIRST_HOST
            } else {
                candidate + 1
            };
            if self.in_use.insert(candidate) {
                if let Err(e) = std::fs::write(&self.state_file, format!("{}\n", self.next)) {
                    warn!("persisting IP allocator state: {e}");
                }
                return Some(candidate);
            }
        }
        None
    }

    pub fn release(&mut self, host: u8) {
        self.in_use.remove(&host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam() -> Ipam {
        let dir =
            std::env::temp_dir().join(format!("ipam-test-{}", crate::ids::random_hex("t", 8)));
        std::fs::create_dir_all(&dir).unwrap();
        Ipam::load(dir.join("ipam"))
    }

    #[test]
    fn addresses_are_not_reused_until_wrap() {
        let mut a = ipam();
        let x = a.allocate().unwrap();
        assert_eq!(x, 2);
        a.release(x);
        assert_eq!(a.allocate().unwrap(), 3);
        for _ in 4..=254 {
            a.allocate().unwrap();
        }
        // .2 was released, everything else is taken: wrapping finds it.
        assert_eq!(a.allocate(), Some(2));
        assert_eq!(a.allocate(), None);
    }

    #[test]
    fn allocator_position_survives_restart() {
        let mut a = ipam();
        a.allocate().unwrap();
        a.allocate().unwrap();
        let b = Ipam::load(a.state_file.clone());
        assert_eq!(b.next, 4);
    }

    #[test]
    fn sandbox_names_fit_interface_limits() {
        let sb = Sandbox::for_id(&"a".repeat(SHORT_ID_LEN), Ipv4Addr::new(10, 244, 1, 2));
        assert!(sb.veth.len() <= 15);
        let rec = sb.to_record();
        assert_eq!(Sandbox::from_record(&rec), Some(sb));
        assert_eq!(Sandbox::from_record("eth0 x 1.2.3.4"), None);
    }
}
