//! What the benchmarks on the local cluster share (`benches/bench_recovery.rs`, `bench_zones.rs`,
//! `bench_rollout.rs`, `bench_scale.rs`): the preload of about 100 MB per shard, the plain writer
//! beside the acknowledged one, the runs with and without the operator, the namespace cleanup,
//! the pauses read from a writer's report, how numbers are printed and where the rows go. Nothing here asserts anything but that the preload ran.
//!
//! Declared by a benchmark crate as `mod support { pub mod ack_writer; pub mod bench; pub mod
//! chaos; }` next to `mod kube_support;`.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ack_writer::{AckWriter, AckWriterHandle, AckWriterOptions, Report};
use super::chaos::LEADERS;
use crate::kube_support::*;

/// Keys of 1 KiB the preload writes over the cluster (about 100 MB per shard).
pub const PRELOAD_KEYS: &str = "300000";

/// A duration as the tables print it: two decimals below 10 s, one above.
pub fn ms(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A pause as the tables print it; `Err(d)`: writes never resumed (none in the last `d`).
pub fn pause(p: Result<Duration, Duration>) -> String {
    match p {
        Ok(d) => ms(d),
        Err(none) => format!("never resumed (none in the last {})", ms(none)),
    }
}

/// Writes about 100 MB per shard of a 3-shard cluster with redis-benchmark.
pub fn preload(members: &Members, pass: &str) {
    preload_keys(members, LEADERS, pass, PRELOAD_KEYS.parse().unwrap());
}

/// Writes `keys` values of 1 KiB over the cluster with redis-benchmark (random keys,
/// pipelined), and prints what each of the `leaders` shards' leaders holds.
pub fn preload_keys(members: &Members, leaders: usize, pass: &str, keys: usize) {
    let begun = Instant::now();
    let out = std::process::Command::new("timeout")
        .args(["600", "redis-benchmark", "--cluster", "-h"])
        .arg(&members.leader(0).ip)
        .args(["-p", "6379", "-a", pass, "-t", "set", "-d", "1024"])
        .args(["-n", &keys.to_string(), "-r", "100000000", "-P", "32", "-q"])
        .output()
        .expect("run redis-benchmark");
    assert!(
        out.status.success(),
        "redis-benchmark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sizes: Vec<String> = (0..leaders)
        .map(|s| {
            let ip = &members.leader(s).ip;
            let n = cli_soft(ip, pass, &["dbsize"]).unwrap_or_default();
            let used = cli_soft(ip, pass, &["info", "memory"])
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("used_memory_human:").map(str::to_owned))
                .unwrap_or_default();
            format!("s{s}: {n} keys, {used}")
        })
        .collect();
    println!(
        "preloaded {keys} keys in {:.1} s: {}",
        begun.elapsed().as_secs_f64(),
        sizes.join("; ")
    );
}

/// Appends a benchmark's table rows to `$<NAME>_OUT` (as `hack/bench-on-local-cluster.sh`
/// sets it), else to `target/<name>.md` (`bench_zones` → `BENCH_ZONES_OUT`,
/// `target/bench-zones.md`).
pub fn append_rows(name: &str, rows: &[String]) {
    use std::io::Write;
    let path = std::env::var(format!("{}_OUT", name.to_ascii_uppercase()))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo().join(format!("target/{}.md", name.replace('_', "-"))));
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("results file");
    for row in rows {
        writeln!(out, "{row}").expect("write results");
    }
}

/// Per shard (its leader when the writer started), the longest gap between two successes of
/// its tags, or the trailing time without one when longer than a second (its writes had not
/// resumed when the writer stopped).
pub fn shard_pauses(report: &Report, leaders: &[SocketAddr]) -> Vec<Duration> {
    leaders
        .iter()
        .map(|leader| {
            let mut worst = Duration::ZERO;
            for t in report.tags.iter().filter(|t| t.first_owner == *leader) {
                let trailing = t.ended_at.saturating_sub(t.outage.last.unwrap_or_default());
                if trailing > Duration::from_secs(1) {
                    worst = worst.max(trailing);
                }
                worst = worst.max(t.outage.longest.map(|g| g.len()).unwrap_or_default());
            }
            worst
        })
        .collect()
}

/// The affected shard's pause in a writer's report: the longest gap between two successes of
/// the tags whose slot the shard's leader owned at the start. `Err(d)`: some tag had no
/// success in its last `d` (more than a second before the writer stopped), i.e. its writes
/// never resumed after the fault.
pub fn shard_pause(report: &Report, leader: SocketAddr) -> Result<Duration, Duration> {
    let mut worst = Duration::ZERO;
    for t in report.tags.iter().filter(|t| t.first_owner == leader) {
        let trailing = t.ended_at.saturating_sub(t.outage.last.unwrap_or_default());
        if trailing > Duration::from_secs(1) {
            return Err(trailing);
        }
        worst = worst.max(t.outage.longest.map(|g| g.len()).unwrap_or_default());
    }
    Ok(worst)
}

/// How long after a fault every tag of a writer's report (every shard's slots) succeeded
/// again: per tag the end of its longest gap when that gap spans the fault (`fault` is the
/// writer's own offset at the fault), zero for a tag that never paused across it; the worst
/// over the tags. `Err(d)`: some tag had no success in its last `d` and none after the fault
/// (its writes never resumed). A tag whose pause across the fault is not its longest one
/// counts as not paused: the fault's gap is by far the longest in these runs.
pub fn resumed_after(report: &Report, fault: Duration) -> Result<Duration, Duration> {
    let mut worst = Duration::ZERO;
    for t in &report.tags {
        let last = t.outage.last.unwrap_or_default();
        let trailing = t.ended_at.saturating_sub(last);
        if last <= fault && trailing > Duration::from_secs(1) {
            return Err(trailing);
        }
        if let Some(g) = t.outage.longest
            && g.from <= fault
            && fault <= g.to
        {
            worst = worst.max(g.to - fault);
        }
    }
    Ok(worst)
}

/// The plain writer (`SET` only, no `WAIT`) started beside an acknowledged one with the same
/// limits; returns once it has run 2 s, so both have a baseline before the fault.
pub async fn plain_writer(
    addrs: Vec<SocketAddr>,
    pass: String,
    limits: AckWriterOptions,
) -> AckWriterHandle {
    let plain = AckWriter::start(
        addrs,
        pass,
        AckWriterOptions {
            replicas: 0,
            ..limits
        },
    )
    .await
    .expect("plain writer starts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    plain
}

/// Runs `run(i, operator)` with and without the operator, `BENCH_RUNS` times each (1 to 3),
/// printing each row `run` returns, and appends the rows to the benchmark's file.
pub async fn with_and_without_operator<F, Fut>(name: &str, mut run: F)
where
    F: FnMut(usize, bool) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .clamp(1, 3);
    let mut rows = Vec::new();
    for i in 1..=runs {
        for operator in [true, false] {
            let row = run(i, operator).await;
            println!("{row}");
            rows.push(row);
        }
    }
    append_rows(name, &rows);
}

/// Deletes the namespace and waits (≤ 180 s) until it is gone, so the next run finds its nodes
/// free.
pub async fn delete_namespace_and_wait(client: &kube::Client, ns: TestNamespace) {
    use k8s_openapi::api::core::v1::Namespace;
    let name = ns.name.clone();
    ns.cleanup().await;
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    let begun = Instant::now();
    while begun.elapsed() < Duration::from_secs(180) {
        if matches!(namespaces.get_opt(&name).await, Ok(None)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("namespace {name} still present after 180 s");
}
