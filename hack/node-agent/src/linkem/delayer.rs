//! The userspace delay line of one pod: a TUN device inside the pod's network namespace and a
//! task that holds each packet read from it for delay ± jitter before writing it back.
//!
//! The kernel here has no sch_netem, so this stands in for `tc qdisc add dev eth0 root netem
//! delay D J`. Packets the pod sends to a delayed subnet are routed into the TUN device (see
//! `pod.rs`); what the task writes back arrives "from" that device and, with forwarding on in
//! the pod's namespace, leaves through eth0 as if nothing had happened, only later.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::Rng;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::netns;

/// The TUN device's name inside every affected pod namespace.
pub const TUN: &str = "rlem0";
/// netem's default queue is 1000 packets; a delay line of 100 ms on a busy link needs more.
const QUEUE_LIMIT: usize = 10_000;
/// Flows remembered for ordering; older entries are dropped once they are in the past.
const FLOW_LIMIT: usize = 4096;

/// Delay and jitter for one destination /24 (one node's pod subnet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub delay: Duration,
    pub jitter: Duration,
}

/// Destination /24 network address (as u32) → its delay. Shared with the task so a new
/// `link-degrade` changes a running delay line in place.
pub type Specs = Arc<RwLock<HashMap<u32, Spec>>>;

/// Sysctls changed in the pod's namespace, with the values to put back.
pub type Saved = Vec<(String, String)>;

pub struct Delayer {
    pub specs: Specs,
    join: JoinHandle<()>,
}

impl Delayer {
    /// Creates the TUN device in `netns` (up, MTU 1500 like eth0), turns on what the kernel
    /// needs to forward the packets written back into it, and starts the delay line.
    pub async fn start(netns: PathBuf, specs: Specs) -> Result<(Delayer, Saved)> {
        let (dev, saved) = netns::in_netns(netns, create_in_netns).await??;
        let (registered, ok) = tokio::sync::oneshot::channel();
        let task_specs = specs.clone();
        // Registered with the delay lines' own runtime, whose reactor then polls it.
        let join = runtime()?.spawn(async move {
            match tun::AsyncDevice::new(dev) {
                Ok(dev) => {
                    let _ = registered.send(Ok(()));
                    run(dev, task_specs).await;
                }
                Err(e) => {
                    let _ = registered.send(Err(e));
                }
            }
        });
        ok.await
            .context("delay line task ended")?
            .context("registering the tun device")?;
        Ok((Delayer { specs, join }, saved))
    }

    /// Stops the task and closes the device's only file descriptor, which removes the
    /// device. Must happen before the namespace is deleted: an open TUN fd keeps it alive.
    pub async fn stop(self) {
        self.join.abort();
        let _ = self.join.await;
    }
}

/// Delay lines run on a runtime of their own, on one thread: a flood of packets must not hold
/// up lease renewals and status posts on the agent's two worker threads.
fn runtime() -> Result<tokio::runtime::Handle> {
    static RT: Mutex<Option<tokio::runtime::Handle>> = Mutex::new(None);
    let mut rt = RT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = rt.as_ref() {
        return Ok(h.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the delay lines' runtime")?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("linkem".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .context("spawning the delay lines' thread")?;
    *rt = Some(handle.clone());
    Ok(handle)
}

/// Runs on a thread inside the pod's namespace: the TUN device is made in the namespace of
/// the thread that opens /dev/net/tun, and /proc/sys/net is the namespace of its reader.
fn create_in_netns() -> Result<(tun::Device, Saved)> {
    let mut cfg = tun::Configuration::default();
    cfg.tun_name(TUN).layer(tun::Layer::L3).mtu(1500).up();
    let dev = tun::create(&cfg).with_context(|| format!("creating tun device {TUN}"))?;
    let mut saved = Vec::new();
    // Written-back packets carry the pod's own address as source and must be forwarded:
    // without these the kernel drops them as martians or does not route them at all.
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/rlem0/rp_filter", "0"),
        ("net/ipv4/conf/rlem0/accept_local", "1"),
    ] {
        let old = write_sysctl(key, value)?;
        if !key.contains(TUN) {
            saved.push((key.to_string(), old));
        }
    }
    Ok((dev, saved))
}

pub fn write_sysctl(key: &str, value: &str) -> Result<String> {
    let path = format!("/proc/sys/{key}");
    let old = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    std::fs::write(&path, value).with_context(|| format!("writing {value} to {path}"))?;
    Ok(old.trim().to_string())
}

struct Held {
    at: Instant,
    seq: u64,
    packet: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The delay line proper: read everything that is there, release everything that is due.
async fn run(dev: tun::AsyncDevice, specs: Specs) {
    let mut line = Line::default();
    let mut buf = vec![0u8; 65536];
    // One timer, moved only when the earliest release changes: a new one per packet costs.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        let due = line.queue.peek().map(|Reverse(h)| h.at);
        if let Some(d) = due
            && armed != Some(d)
        {
            timer.as_mut().reset(d);
            armed = Some(d);
        }
        // recv is cancel-safe: it only reads once the device is readable, and then returns.
        tokio::select! {
            r = dev.recv(&mut buf) => match r {
                Ok(n) => line.hold(&buf[..n], &specs),
                Err(e) => {
                    // The device is gone (namespace deleted under us): nothing left to do.
                    warn!("tun device read: {e}");
                    return;
                }
            },
            _ = &mut timer, if due.is_some() => armed = None,
        }
        // The device never blocks a write (it hands the packet to the stack), so a plain
        // non-blocking send; a failure loses that one packet, as a full queue would.
        line.release(|p| {
            if let Err(e) = tun::Device::send(&dev, p) {
                debug!("tun device write: {e}");
            }
        });
    }
}

#[derive(Default)]
struct Line {
    queue: BinaryHeap<Reverse<Held>>,
    /// Per flow, when its latest packet leaves: a later packet never leaves before it.
    last: HashMap<u128, Instant>,
    seq: u64,
    overflow: u64,
}

impl Line {
    fn hold(&mut self, packet: &[u8], specs: &Specs) {
        if self.queue.len() >= QUEUE_LIMIT {
            self.overflow += 1;
            if self.overflow.is_power_of_two() {
                warn!(dropped = self.overflow, "delay line full, dropping packets");
            }
            return;
        }
        let now = Instant::now();
        let spec = destination(packet).and_then(|dst| {
            let net = u32::from(dst) & 0xffff_ff00;
            specs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&net)
                .copied()
        });
        let mut at = now + spec.map_or(Duration::ZERO, sample);
        if let Some(key) = flow_key(packet) {
            if let Some(prev) = self.last.get(&key) {
                at = at.max(*prev);
            }
            if self.last.len() >= FLOW_LIMIT {
                self.last.retain(|_, t| *t > now);
            }
            self.last.insert(key, at);
        }
        self.seq += 1;
        self.queue.push(Reverse(Held {
            at,
            seq: self.seq,
            packet: packet.to_vec(),
        }));
    }

    fn release(&mut self, mut send: impl FnMut(&[u8])) {
        let now = Instant::now();
        while self.queue.peek().is_some_and(|Reverse(h)| h.at <= now) {
            if let Some(Reverse(h)) = self.queue.pop() {
                send(&h.packet);
            }
        }
    }
}

/// delay ± jitter, uniformly distributed (netem's default distribution), never below zero.
fn sample(spec: Spec) -> Duration {
    if spec.jitter.is_zero() {
        return spec.delay;
    }
    let j = i64::try_from(spec.jitter.as_micros()).unwrap_or(i64::MAX);
    let d = i64::try_from(spec.delay.as_micros()).unwrap_or(i64::MAX);
    let us = d.saturating_add(rand::rng().random_range(-j..=j)).max(0);
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn destination(p: &[u8]) -> Option<Ipv4Addr> {
    (p.len() >= 20 && p[0] >> 4 == 4).then(|| Ipv4Addr::new(p[16], p[17], p[18], p[19]))
}

/// Source, destination, protocol and (for unfragmented TCP/UDP) ports of an IPv4 packet.
fn flow_key(p: &[u8]) -> Option<u128> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let proto = p[9];
    let fragment_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
    let ports = if matches!(proto, 6 | 17) && fragment_offset == 0 && p.len() >= ihl + 4 {
        u32::from_be_bytes([p[ihl], p[ihl + 1], p[ihl + 2], p[ihl + 3]])
    } else {
        0
    };
    let src = u32::from_be_bytes([p[12], p[13], p[14], p[15]]);
    let dst = u32::from_be_bytes([p[16], p[17], p[18], p[19]]);
    Some(
        (u128::from(src) << 72)
            | (u128::from(dst) << 40)
            | (u128::from(proto) << 32)
            | u128::from(ports),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(dst: [u8; 4], sport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 244, 1, 2]);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&6379u16.to_be_bytes());
        p
    }

    #[test]
    fn flows_differ_by_ports_and_keep_their_order() {
        assert_ne!(
            flow_key(&packet([10, 244, 4, 2], 1000)),
            flow_key(&packet([10, 244, 4, 2], 1001))
        );
        assert_eq!(flow_key(&[0x60; 40]), None, "not IPv4");
        let specs: Specs = Arc::default();
        specs.write().unwrap().insert(
            u32::from(Ipv4Addr::new(10, 244, 4, 0)),
            Spec {
                delay: Duration::from_millis(100),
                jitter: Duration::from_millis(90),
            },
        );
        let mut line = Line::default();
        for i in 0..200u8 {
            let mut p = packet([10, 244, 4, 2], 1000);
            p[39] = i;
            line.hold(&p, &specs);
        }
        let mut order = Vec::new();
        let mut q = std::mem::take(&mut line.queue).into_sorted_vec();
        q.reverse();
        for Reverse(h) in q {
            order.push(h.packet[39]);
        }
        assert_eq!(
            order,
            (0..200u8).collect::<Vec<_>>(),
            "one flow leaves in order"
        );
    }

    #[test]
    fn jitter_is_uniform_around_the_delay() {
        let spec = Spec {
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(20),
        };
        let samples: Vec<Duration> = (0..2000).map(|_| sample(spec)).collect();
        assert!(samples.iter().all(|d| *d >= Duration::from_millis(80)));
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(120)));
        let mean = samples.iter().sum::<Duration>() / 2000;
        assert!(mean > Duration::from_millis(97) && mean < Duration::from_millis(103));
    }

    #[test]
    fn unknown_destinations_pass_without_delay() {
        let specs: Specs = Arc::default();
        let mut line = Line::default();
        line.hold(&packet([10, 244, 9, 2], 1), &specs);
        let mut sent = 0;
        line.release(|_| sent += 1);
        assert_eq!(sent, 1);
    }
}
