//! What link emulation puts into one pod's network namespace, and how it comes out again.
//!
//! - Loss: an nftables table `ip rop_linkem` whose prerouting chain drops, at random, packets
//!   arriving on eth0 from the pod IPs (.2–.254) of each degraded node subnet.
//! - Delay: the TUN delay line (`delayer.rs`), policy routing `iif lo lookup 101` (only what
//!   the pod itself sends), and table 101 routing each delayed node /24 into the TUN device,
//!   with a `throw` for the node's own .1 (the host) so host traffic is left alone. What the
//!   delay line writes back arrives on the TUN device, so the rule does not match it and the
//!   main table sends it out of eth0.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::Impair;
use super::delayer::{self, Delayer, Saved, Spec, Specs};
use crate::netns;

const TABLE: &str = "101";
const RULE_PRIORITY: &str = "1000";
const NFT_TABLE: &str = "rop_linkem";

/// Node index → what applies to traffic between this pod and that node's pods.
pub type Plan = BTreeMap<usize, Impair>;

pub struct PodLink {
    pub netns: String,
    pub ip: Ipv4Addr,
    pub zone: String,
    pub applied: Plan,
    delayer: Option<(Delayer, Saved)>,
    nft: bool,
}

/// Runs `prog args` with `input` on stdin; fails with its stderr.
async fn run(prog: &str, args: &[&str], input: &str) -> Result<()> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {prog}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await?;
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .with_context(|| format!("{prog} {} timed out", args.join(" ")))??;
    if !out.status.success() {
        bail!(
            "{prog} {} <<< {:?}: {}",
            args.join(" "),
            input,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl PodLink {
    pub fn new(netns: String, ip: Ipv4Addr, zone: String) -> Self {
        PodLink {
            netns,
            ip,
            zone,
            applied: Plan::new(),
            delayer: None,
            nft: false,
        }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    /// Makes the namespace match `plan` (node subnets from `subnet`). On failure everything
    /// is taken out again, so a pod is either degraded as asked or not at all.
    pub async fn apply(&mut self, plan: &Plan, subnet: impl Fn(usize) -> Ipv4Addr) -> Result<()> {
        if *plan == self.applied {
            return Ok(());
        }
        let res = self.try_apply(plan, &subnet).await;
        match res {
            Ok(()) => self.applied = plan.clone(),
            Err(_) => self.clear().await,
        }
        res
    }

    async fn try_apply(&mut self, plan: &Plan, subnet: &impl Fn(usize) -> Ipv4Addr) -> Result<()> {
        let delays: HashMap<u32, Spec> = plan
            .iter()
            .filter(|(_, i)| i.delay_ms > 0)
            .map(|(n, i)| (u32::from(subnet(*n)), i.spec()))
            .collect();
        self.unroute().await;
        if delays.is_empty() {
            self.stop_delayer().await;
        } else {
            if self.delayer.is_none() {
                self.delayer = Some(Delayer::start(self.path(), Specs::default()).await?);
            }
            if let Some((d, _)) = &self.delayer {
                *d.specs.write().unwrap_or_else(|e| e.into_inner()) = delays.clone();
            }
            self.route(delays.keys().copied()).await?;
        }
        let losses: Vec<(Ipv4Addr, u32)> = plan
            .iter()
            .filter(|(_, i)| i.loss_bp > 0)
            .map(|(n, i)| (subnet(*n), i.loss_bp))
            .collect();
        if losses.is_empty() {
            self.unloss().await;
        } else {
            self.loss(&losses).await?;
        }
        Ok(())
    }

    async fn route(&self, nets: impl Iterator<Item = u32>) -> Result<()> {
        let mut batch = format!("rule add priority {RULE_PRIORITY} iif lo lookup {TABLE}\n");
        for net in nets {
            let net = Ipv4Addr::from(net);
            let host = Ipv4Addr::from(u32::from(net) + 1);
            batch.push_str(&format!(
                "route replace {net}/24 dev {} src {} table {TABLE}\n\
                 route replace throw {host}/32 table {TABLE}\n",
                delayer::TUN,
                self.ip
            ));
        }
        run("ip", &["-n", &self.netns, "-batch", "-"], &batch).await
    }

    /// Best effort: the rule and table may not be there.
    async fn unroute(&self) {
        let batch = format!("rule del priority {RULE_PRIORITY}\nroute flush table {TABLE}\n");
        let _ = run("ip", &["-n", &self.netns, "-force", "-batch", "-"], &batch).await;
    }

    async fn loss(&mut self, losses: &[(Ipv4Addr, u32)]) -> Result<()> {
        // Creating, deleting and re-creating in one transaction replaces the table atomically.
        let mut rules = String::new();
        for (net, bp) in losses {
            let o = net.octets();
            rules.push_str(&format!(
                "    iifname \"eth0\" ip saddr {}.{}.{}.2-{}.{}.{}.254 numgen random mod 10000 < {bp} drop\n",
                o[0], o[1], o[2], o[0], o[1], o[2]
            ));
        }
        let script = format!(
            "table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\ntable ip {NFT_TABLE} {{\n  \
             chain loss {{\n    type filter hook prerouting priority raw; policy accept;\n{rules}  }}\n}}\n"
        );
        self.nft = true;
        run(
            "ip",
            &["netns", "exec", &self.netns, "nft", "-f", "-"],
            &script,
        )
        .await
    }

    async fn unloss(&mut self) {
        if std::mem::take(&mut self.nft) {
            let script = format!("table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n");
            let _ = run(
                "ip",
                &["netns", "exec", &self.netns, "nft", "-f", "-"],
                &script,
            )
            .await;
        }
    }

    async fn stop_delayer(&mut self) {
        if let Some((d, saved)) = self.delayer.take() {
            d.stop().await;
            let _ = netns::in_netns(self.path(), move || {
                for (key, value) in saved {
                    let _ = delayer::write_sysctl(&key, &value);
                }
            })
            .await;
        }
    }

    /// Takes everything out of the namespace (best effort), as it was before.
    pub async fn clear(&mut self) {
        self.unroute().await;
        self.stop_delayer().await;
        self.unloss().await;
        self.applied.clear();
    }

    /// The pod is going away: only the delay line must stop (its open TUN fd would keep the
    /// namespace alive); routes, rules and nft go with the namespace.
    pub async fn forget(mut self) {
        if let Some((d, _)) = self.delayer.take() {
            d.stop().await;
        }
    }
}
