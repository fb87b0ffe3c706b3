//! What TLS costs (issue 21), side by side in one run: two 3 × 1 clusters of the same shape on
//! the same local cluster, one plaintext and one with `spec.tls` (`clientAuth`: every client
//! presents a certificate). Against each, shard 0's leader is driven by `redis-benchmark`
//! (SET and GET of keys it owns, 50 clients, 64-byte values, unpipelined and 16-deep
//! pipelines; `--tls` with the cluster's CA and client certificate for the TLS one), and the
//! whole cluster by the
//! cluster-aware WAIT-acknowledged writer (`SET` + `WAIT 1`, one write in flight per tag).
//! Throughput and p99 per row; nothing is asserted but that each run produced its numbers.
//!
//! `make bench-tls` (about 4 minutes); rows in `target/bench-tls.md`.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../tests/kube_support/mod.rs"]
mod kube_support;
#[path = "../tests/support"]
mod support {
    pub mod ack_writer;
    pub mod bench;
    pub mod chaos;
}

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;
use support::ack_writer::AckWriterOptions;
use support::bench::append_rows;
use support::chaos::*;

/// One `redis-benchmark` result: requests per second and the 99th percentile in ms.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p99: f64,
}

/// `redis-benchmark --csv` rows (`"SET","rps","avg",…,"p99","max"`) by test name.
fn parse_csv(out: &str) -> Vec<(String, Run)> {
    out.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(',').map(|c| c.trim_matches('"')).collect();
            let rps = cells.get(1)?.parse().ok()?;
            let p99 = cells.get(6)?.parse().ok()?;
            Some((cells.first()?.to_string(), Run { rps, p99 }))
        })
        .collect()
}

/// A hash tag whose slot shard 0 owns (the bootstrap gives shard 0 slots 0-5461): every key
/// of the benchmark carries it, so the one leader it talks to owns them all.
fn shard0_tag() -> String {
    (0..10_000)
        .map(|i| format!("t{i}"))
        .find(|t| support::ack_writer::keyslot(t.as_bytes()) <= 5461)
        .expect("a tag of shard 0")
}

/// SET and GET of 64-byte values against the leader at `ip`, `pipeline` requests in flight per
/// client, keys `{tag}:__rand_int__` it owns (redis-benchmark speaks to that one node).
fn redis_benchmark(ip: &str, pass: &str, tls: Option<&Path>, pipeline: u32) -> Vec<(String, Run)> {
    let tag = shard0_tag();
    let key = format!("{{{tag}}}:__rand_int__");
    let value = "v".repeat(64);
    let set = ["SET", key.as_str(), value.as_str()];
    let get = ["GET", key.as_str()];
    let mut runs = Vec::new();
    for (name, args) in [("SET", &set[..]), ("GET", &get[..])] {
        let mut cmd = Command::new("timeout");
        cmd.args(["300", "redis-benchmark", "-h", ip, "-p", "6379", "-a", pass]);
        cmd.args(["-n", "200000", "-c", "50", "-r", "100000"]);
        cmd.args(["-P", &pipeline.to_string(), "--csv"]);
        if let Some(dir) = tls {
            let file = |f: &str| dir.join(f).to_string_lossy().into_owned();
            cmd.args(["--tls", "--cacert", &file("ca.crt")]);
            cmd.args(["--cert", &file("tls.crt"), "--key", &file("tls.key")]);
        }
        cmd.args(args);
        let out = cmd.output().expect("run redis-benchmark");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.contains("MOVED"),
            "redis-benchmark {name}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed = parse_csv(&stdout);
        assert_eq!(parsed.len(), 1, "{stdout}");
        runs.push((name.to_string(), parsed[0].1));
    }
    runs
}

/// The TLS Secret's files, for `redis-benchmark --tls`.
async fn tls_files(chaos: &Chaos) -> PathBuf {
    let secret: Secret = Api::namespaced(chaos.client.clone(), &chaos.ns.name)
        .get(TLS_SECRET)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (key, value) in secret.data.unwrap() {
        std::fs::write(dir.join(key), value.0).unwrap();
    }
    dir
}

/// Acknowledged writes per second over `secs` seconds, from the cluster's client Service.
async fn acked_per_second(chaos: &Chaos, secs: u64) -> f64 {
    let writer = chaos
        .writer_with(AckWriterOptions {
            max_duration: Duration::from_secs(secs + 60),
            interval: Duration::ZERO,
            ..AckWriterOptions::default()
        })
        .await;
    let from = writer.acknowledged();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let acked = writer.acknowledged() - from;
    let report = writer.stop().await;
    println!("{}: {report}", chaos.ns.name);
    acked as f64 / secs as f64
}

fn row(what: &str, plain: Run, tls: Run) -> String {
    format!(
        "| {what} | {:.0} /s, p99 {:.2} ms | {:.0} /s, p99 {:.2} ms | {:+.0} % throughput, {:+.2} ms p99 |",
        plain.rps,
        plain.p99,
        tls.rps,
        tls.p99,
        (tls.rps / plain.rps - 1.0) * 100.0,
        tls.p99 - plain.p99
    )
}

#[tokio::test]
#[ignore = "a benchmark on the local cluster: make bench-tls"]
async fn bench_tls() {
    let (plain, plain_members) = Chaos::create("bench-plain", json!({})).await;
    let setup = Setup {
        tls: true,
        ..Setup::default()
    };
    let (tls, tls_members) = Chaos::create_with("bench-tls", json!({}), setup).await;
    let dir = tls_files(&tls).await;
    let mut rows = Vec::new();
    for pipeline in [1, 16] {
        let p = redis_benchmark(&plain_members.leader(0).ip, &plain.pass, None, pipeline);
        let t = redis_benchmark(&tls_members.leader(0).ip, &tls.pass, Some(&dir), pipeline);
        for ((name, plain_run), (_, tls_run)) in p.into_iter().zip(t) {
            let what = format!(
                "redis-benchmark {name}, one leader, 50 clients, 64 B, pipeline {pipeline}"
            );
            rows.push(row(&what, plain_run, tls_run));
        }
    }
    let plain_acked = acked_per_second(&plain, 20).await;
    let tls_acked = acked_per_second(&tls, 20).await;
    rows.push(format!(
        "| ack writer: SET + WAIT 1, 3 shards, one write in flight per tag | {plain_acked:.0} acked/s | {tls_acked:.0} acked/s | {:+.0} % |",
        (tls_acked / plain_acked - 1.0) * 100.0
    ));
    rows.push(
        "| rolling switch of TLS on a running cluster | - | - | refused by design: the cluster bus is TLS on all members or none |"
            .to_string(),
    );
    for r in &rows {
        println!("{r}");
    }
    append_rows("bench_tls", &rows);
    let _ = std::fs::remove_dir_all(&dir);
    plain.cleanup().await;
    tls.cleanup().await;
}

#[test]
fn redis_benchmark_csv_is_read() {
    let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"52631.58\",\"0.514\",\"0.104\",\"0.487\",\"0.799\",\"1.135\",\"3.223\"\n\"GET\",\"55555.56\",\"0.481\",\"0.096\",\"0.455\",\"0.735\",\"1.015\",\"2.999\"\n";
    let runs = parse_csv(out);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].0, "SET");
    assert!((runs[0].1.rps - 52631.58).abs() < 1e-6);
    assert!((runs[1].1.p99 - 1.015).abs() < 1e-9);
}
