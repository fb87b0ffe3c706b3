#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use crate::netns::in_netns;

const PORT: u16 = 16379;

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Pair {
    a: Sandbox,
    b: Sandbox,
}

impl Pair {
    fn new() -> Self {
        let tag = crate::ids::random_hex("lemt", 6);
        let a = Sandbox {
            netns: format!("lemt-a-{tag}"),
            veth: String::new(),
            ip: Ipv4Addr::new(10, 250, 1, 2),
        };
        let b = Sandbox {
            netns: format!("lemt-b-{tag}"),
            veth: String::new(),
            ip: Ipv4Addr::new(10, 250, 2, 2),
        };
        sh(&["ip", "netns", "add", &a.netns]);
        sh(&["ip", "netns", "add", &b.netns]);
        sh(&[
            "ip", "-n", &a.netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", &b.netns,
        ]);
        for sb in [&a, &b] {
            sh(&["ip", "-n", &sb.netns, "link", "set", "lo", "up"]);
            sh(&[
                "ip",
                "-n",
                &sb.netns,
                "addr",
                "add",
                &format!("{}/16", sb.ip),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &sb.netns, "link", "set", "eth0", "up"]);
        }
        Pair { a, b }
    }

    fn path(sb: &Sandbox) -> PathBuf {
        sb.netns_path()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for sb in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", &sb.netns])
                .output();
        }
    }
}

/// An echo server in `b` for the rest of the test (its thread ends with the process).
async fn echo_server(b: &Sandbox) {
    let ip = b.ip;
    let listener = in_netns(Pair::path(b), move || {
        TcpListener::bind((ip, PORT)).unwrap()
    })
    .await
    .unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 64];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// A connection from `a` to the echo server at `b_ip` (usable from any thread once made).
async fn connect(a: &Sandbox, b_ip: Ipv4Addr) -> TcpStream {
    in_netns(Pair::path(a), move || {
        let addr = SocketAddr::from((b_ip, PORT));
        let c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        c.set_nodelay(true).unwrap();
        c
    })
    .await
    .unwrap()
}

/// Median round trip of 11 one-byte echoes on `c`.
fn rtt_on(c: &mut TcpStream) -> Duration {
    let mut rtts: Vec<Duration> = (0..11)
        .map(|_| {
            let t = Instant::now();
            c.write_all(b"x").unwrap();
            let mut r = [0u8; 1];
            c.read_exact(&mut r).unwrap();
            t.elapsed()
        })
        .collect();
    rtts.sort();
    rtts[5]
}

/// Median round trip on a new connection from `a` to `b`.
async fn median_rtt(a: &Sandbox, b_ip: Ipv4Addr) -> Duration {
    let mut c = connect(a, b_ip).await;
    tokio::task::spawn_blocking(move || rtt_on(&mut c))
        .await
        .unwrap()
}

/// How many of `n` connects from `a` to `b` succeed within 300 ms each.
async fn connects(a: &Sandbox, b_ip: Ipv4Addr, n: usize) -> usize {
    in_netns(Pair::path(a), move || {
        let addr = SocketAddr::from((b_ip, PORT));
        (0..n)
            .filter(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok())
            .count()
    })
    .await
    .unwrap()
}

fn leftovers(sb: &Sandbox) -> String {
    let mut s = sh(&["ip", "-n", &sb.netns, "-o", "link", "show"]);
    s.push_str(&sh(&["ip", "-n", &sb.netns, "rule", "show"]));
    s.push_str(&sh(&[
        "ip", "netns", "exec", &sb.netns, "nft", "list", "ruleset",
    ]));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces and TUN devices"]
async fn delay_and_loss_between_two_namespaces() {
    let pair = Pair::new();
    let (a, b) = (pair.a.clone(), pair.b.clone());
    let cidr = crate::cli::parse_cidr("10.250.0.0/16").unwrap();
    let em = LinkEm::new(cidr, vec!["zone-a".into(), "zone-b".into()]);
    echo_server(&b).await;
    em.attach(&a).await.unwrap();
    let before = median_rtt(&a, b.ip).await;
    // Made before the degradation, like a Redis cluster bus link.
    let mut existing = connect(&a, b.ip).await;
    assert!(before < Duration::from_millis(10), "before: {before:?}");

    em.degrade("zone-a", "zone-b", Impair::new(50, 10, Percent(0)).unwrap())
        .await
        .unwrap();
    // b appears while the link is degraded, as a replaced pod would.
    em.attach(&b).await.unwrap();
    let during = median_rtt(&a, b.ip).await;
    assert!(
        during >= Duration::from_millis(85) && during < Duration::from_millis(160),
        "50 ms ± 10 each way: {during:?}"
    );
    let (mut existing, on_existing) = tokio::task::spawn_blocking(move || {
        let r = rtt_on(&mut existing);
        (existing, r)
    })
    .await
    .unwrap();
    assert!(
        on_existing >= Duration::from_millis(85),
        "a connection made before is delayed too: {on_existing:?}"
    );
    assert!(
        em.status()
            .await
            .starts_with("zone-a zone-b delay=50ms jitter=10ms loss=0% pods=2")
    );

    em.restore(Some(("zone-b", "zone-a"))).await.unwrap();
    let after = median_rtt(&a, b.ip).await;
    let after_existing = tokio::task::spawn_blocking(move || rtt_on(&mut existing))
        .await
        .unwrap();
    assert!(
        after_existing < Duration::from_millis(10),
        "{after_existing:?}"
    );
    assert!(after < Duration::from_millis(10), "after: {after:?}");
    for sb in [&a, &b] {
        let l = leftovers(sb);
        assert!(
            !l.contains("rlem0") && !l.contains("lookup 101") && !l.contains("rop_linkem"),
            "{l}"
        );
    }

    em.degrade(
        "zone-a",
        "zone-b",
        Impair::new(0, 0, Percent(3000)).unwrap(),
    )
    .await
    .unwrap();
    let ok = connects(&a, b.ip, 50).await;
    println!(
        "median RTT before {before:?}, during {during:?} (on an older connection {on_existing:?}), after {after:?}; {ok}/50 connects"
    );
    // Each connect needs its SYN and the SYN-ACK through (0.7² ≈ 49 %), retried within 300 ms
    // only by luck: expect roughly half, never none or all.
    assert!(
        ok > 5 && ok < 45,
        "{ok} of 50 connects with 30 % loss each way"
    );
    em.restore(None).await.unwrap();
    assert_eq!(connects(&a, b.ip, 20).await, 20);

    em.degrade("zone-a", "zone-b", Impair::new(20, 0, Percent(0)).unwrap())
        .await
        .unwrap();
    em.detach(&a.netns).await;
    em.detach(&b.netns).await;
    for sb in [&a, &b] {
        assert!(
            !leftovers(sb).contains("rlem0"),
            "detach closes the TUN device"
        );
    }
}

/// Not a check, a measurement for hack/README.md: how fast bulk data passes a delay line
/// (`cargo test -p node-agent -- --ignored delay_line_throughput --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces and TUN devices"]
async fn delay_line_throughput() {
    let pair = Pair::new();
    let (a, b) = (pair.a.clone(), pair.b.clone());
    let cidr = crate::cli::parse_cidr("10.250.0.0/16").unwrap();
    let em = LinkEm::new(cidr, vec!["zone-a".into(), "zone-b".into()]);
    echo_server(&b).await;
    em.attach(&a).await.unwrap();
    em.attach(&b).await.unwrap();
    em.degrade("zone-a", "zone-b", Impair::new(1, 0, Percent(0)).unwrap())
        .await
        .unwrap();
    let mut c = connect(&a, b.ip).await;
    let cpu0 = delay_thread_cpu();
    let (bytes, took) = tokio::task::spawn_blocking(move || {
        let chunk = vec![7u8; 64 * 1024];
        let mut back = vec![0u8; 64 * 1024];
        let t = Instant::now();
        let mut n = 0;
        while t.elapsed() < Duration::from_secs(3) {
            c.write_all(&chunk).unwrap();
            c.read_exact(&mut back).unwrap();
            n += chunk.len();
        }
        (n, t.elapsed())
    })
    .await
    .unwrap();
    println!(
        "{:.1} MB/s each way through two delay lines at 1 ms; the delay lines' thread busy {:.0} %",
        bytes as f64 / took.as_secs_f64() / 1e6,
        (delay_thread_cpu() - cpu0) / took.as_secs_f64() * 100.0
    );
    em.detach(&a.netns).await;
    em.detach(&b.netns).await;
}

/// CPU seconds used so far by the delay lines' thread ("linkem") of this process.
fn delay_thread_cpu() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == "linkem" {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
            return ticks / 100.0;
        }
    }
    0.0
}
