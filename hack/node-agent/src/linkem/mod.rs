//! Inter-zone link emulation (`ctl link-degrade` / `link-restore`): latency, jitter and random
//! loss between the pods of two zones, in both directions, for pods that exist when it is
//! asked and for pods created while it is in force. Inside a zone, and to or from the host,
//! nothing changes. See hack/README.md for what it does and does not model.
//!
//! Each direction is degraded by its sender's namespace (delay: `delayer.rs`) and its
//! receiver's (loss: nftables), so one-way latency is the asked delay, a round trip twice it,
//! and each direction loses the asked share of its packets.

mod delayer;
mod pod;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::sync::Mutex;
use tracing::info;

use crate::cli::{Cidr, Percent};
use crate::netns::Sandbox;
use pod::{Plan, PodLink};

/// What one zone pair gets. Loss in hundredths of a percent (basis points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Impair {
    pub delay_ms: u32,
    pub jitter_ms: u32,
    pub loss_bp: u32,
}

impl Impair {
    pub fn new(delay_ms: u32, jitter_ms: u32, loss: Percent) -> Result<Self> {
        if delay_ms > 60_000 {
            bail!("--delay {delay_ms}: at most 60000 ms");
        }
        if jitter_ms > delay_ms {
            bail!("--jitter {jitter_ms} is larger than --delay {delay_ms}");
        }
        if delay_ms == 0 && loss.0 == 0 {
            bail!("nothing to do: give --delay and/or --loss");
        }
        Ok(Impair {
            delay_ms,
            jitter_ms,
            loss_bp: loss.0,
        })
    }

    fn spec(self) -> delayer::Spec {
        delayer::Spec {
            delay: Duration::from_millis(self.delay_ms.into()),
            jitter: Duration::from_millis(self.jitter_ms.into()),
        }
    }
}

impl std::fmt::Display for Impair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delay={}ms jitter={}ms loss={}",
            self.delay_ms,
            self.jitter_ms,
            Percent(self.loss_bp)
        )
    }
}

/// A zone pair, the smaller name first, so A B and B A are the same link.
fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

pub struct LinkEm {
    cidr: Cidr,
    /// Zone of each node, by node index (which decides its /24).
    zones: Vec<String>,
    /// One lock for the rules and every pod: a pod attached while a zone pair is being
    /// degraded gets the new rules either from `attach` or from the degrade, never neither.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rules: BTreeMap<(String, String), Impair>,
    pods: HashMap<String, PodLink>,
}

static GLOBAL: OnceLock<Arc<LinkEm>> = OnceLock::new();

/// Set once by `node-agent run`; sandbox creation and removal find it here.
pub fn install(l: Arc<LinkEm>) {
    let _ = GLOBAL.set(l);
}

pub fn global() -> Option<&'static Arc<LinkEm>> {
    GLOBAL.get()
}

impl LinkEm {
    pub fn new(cidr: Cidr, zones: Vec<String>) -> Self {
        LinkEm {
            cidr,
            zones,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn subnet(&self, node: usize) -> Ipv4Addr {
        self.cidr.node_ip(node, 0)
    }

    fn zone_of(&self, ip: Ipv4Addr) -> Option<&str> {
        let net = u32::from(ip) & 0xffff_ff00;
        (0..self.zones.len())
            .find(|i| u32::from(self.subnet(*i)) == net)
            .map(|i| self.zones[i].as_str())
    }

    fn known_zone(&self, z: &str) -> Result<()> {
        if self.zones.iter().any(|k| k == z) {
            return Ok(());
        }
        let mut all: Vec<&str> = self.zones.iter().map(String::as_str).collect();
        all.sort();
        all.dedup();
        bail!("unknown zone {z:?} (zones: {})", all.join(" "))
    }

    fn plan(&self, rules: &BTreeMap<(String, String), Impair>, zone: &str) -> Plan {
        self.zones
            .iter()
            .enumerate()
            .filter(|(_, z)| z.as_str() != zone)
            .filter_map(|(i, z)| rules.get(&pair(zone, z)).map(|imp| (i, *imp)))
            .collect()
    }

    /// Brings every pod in line with the rules; an error names each pod that failed.
    async fn reconcile(&self, inner: &mut Inner) -> Result<usize> {
        let mut errors = Vec::new();
        let mut changed = 0;
        for p in inner.pods.values_mut() {
            let plan = self.plan(&inner.rules, &p.zone);
            if plan == p.applied {
                continue;
            }
            changed += 1;
            if let Err(e) = p.apply(&plan, |n| self.subnet(n)).await {
                errors.push(format!("pod netns {} ({}): {e:#}", p.netns, p.ip));
            }
        }
        if errors.is_empty() {
            Ok(changed)
        } else {
            bail!("{}", errors.join("; "))
        }
    }

    pub async fn degrade(&self, a: &str, b: &str, imp: Impair) -> Result<String> {
        self.known_zone(a)?;
        self.known_zone(b)?;
        if a == b {
            bail!("link-degrade needs two different zones");
        }
        let mut inner = self.inner.lock().await;
        inner.rules.insert(pair(a, b), imp);
        let n = self.reconcile(&mut inner).await?;
        info!(a, b, %imp, pods = n, "link degraded");
        Ok(format!("{a} <-> {b}: {imp} ({n} pods changed)\n"))
    }

    /// `None`: every zone pair.
    pub async fn restore(&self, zones: Option<(&str, &str)>) -> Result<String> {
        let mut inner = self.inner.lock().await;
        match zones {
            Some((a, b)) => {
                self.known_zone(a)?;
                self.known_zone(b)?;
                inner.rules.remove(&pair(a, b));
            }
            None => inner.rules.clear(),
        }
        let n = self.reconcile(&mut inner).await?;
        info!(?zones, pods = n, "link restored");
        Ok(format!("restored ({n} pods changed)\n"))
    }

    pub async fn status(&self) -> String {
        let inner = self.inner.lock().await;
        inner
            .rules
            .iter()
            .map(|((a, b), imp)| {
                let pods = inner
                    .pods
                    .values()
                    .filter(|p| (p.zone == *a || p.zone == *b) && !p.applied.is_empty())
                    .count();
                format!("{a} {b} {imp} pods={pods}\n")
            })
            .collect()
    }

    /// A new sandbox: remembered, and degraded at once if its zone is.
    pub async fn attach(&self, sb: &Sandbox) -> Result<()> {
        let Some(zone) = self.zone_of(sb.ip) else {
            return Ok(());
        };
        let mut p = PodLink::new(sb.netns.clone(), sb.ip, zone.to_string());
        let mut inner = self.inner.lock().await;
        let plan = self.plan(&inner.rules, zone);
        if !plan.is_empty() {
            p.apply(&plan, |n| self.subnet(n)).await?;
            info!(netns = %sb.netns, zone, "new pod degraded like its zone");
        }
        inner.pods.insert(sb.netns.clone(), p);
        Ok(())
    }

    /// The sandbox is being removed: stop its delay line before the namespace goes.
    pub async fn detach(&self, netns: &str) {
        let p = self.inner.lock().await.pods.remove(netns);
        if let Some(p) = p {
            p.forget().await;
        }
    }
}

/// Hooks for netns.rs: no-ops outside `node-agent run` (e.g. `node-agent cleanup`).
pub async fn on_sandbox_created(sb: &Sandbox) -> Result<()> {
    match global() {
        Some(l) => l.attach(sb).await,
        None => Ok(()),
    }
}

pub async fn on_sandbox_destroyed(sb: &Sandbox) {
    if let Some(l) = global() {
        l.detach(&sb.netns).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn em() -> LinkEm {
        let cidr = crate::cli::parse_cidr("10.244.0.0/16").unwrap();
        let zones = ["zone-a", "zone-a", "zone-b", "zone-b", "zone-c"];
        LinkEm::new(cidr, zones.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn plans_cover_the_other_zones_nodes_only() {
        let em = em();
        let imp = Impair::new(100, 20, Percent(500)).unwrap();
        let rules = BTreeMap::from([(pair("zone-b", "zone-a"), imp)]);
        let a = em.plan(&rules, "zone-a");
        assert_eq!(a.keys().copied().collect::<Vec<_>>(), [2, 3]);
        let b = em.plan(&rules, "zone-b");
        assert_eq!(b.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert!(em.plan(&rules, "zone-c").is_empty());
        assert_eq!(em.zone_of(Ipv4Addr::new(10, 244, 3, 7)), Some("zone-b"));
        assert_eq!(em.zone_of(Ipv4Addr::new(10, 244, 0, 1)), None);
        assert_eq!(em.subnet(2), Ipv4Addr::new(10, 244, 3, 0));
    }

    #[test]
    fn impairments_are_checked() {
        assert!(Impair::new(0, 0, Percent(0)).is_err());
        assert!(Impair::new(10, 20, Percent(0)).is_err());
        assert!(Impair::new(0, 0, Percent(3000)).is_ok());
        assert_eq!(
            Impair::new(200, 50, Percent(500)).unwrap().to_string(),
            "delay=200ms jitter=50ms loss=5%"
        );
    }
}

/// The real mechanism end to end, outside any cluster: two namespaces joined by a veth pair
/// stand for a pod in zone-a and one in zone-b. Needs root (`cargo test -p node-agent --
/// --ignored linkem`).
#[cfg(test)]
mod netns_tests;
