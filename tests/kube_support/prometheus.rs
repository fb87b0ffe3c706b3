//! A real Prometheus for the metrics tests: Debian's package as `make deps`
//! (`hack/install-deps.sh`) unpacks it under `~/.cache/redis-operator/prometheus`, started on
//! loopback (a free port, a temporary TSDB) with a 1 s scrape of the given targets and the
//! shipped alert rules loaded. Queried through its HTTP API with curl.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{repo, wait_for};

/// The plain Prometheus rule file shipped in `manifests/monitoring/`.
pub const RULES: &str = "manifests/monitoring/redis-operator-rules.yaml";

/// `prometheus` or `promtool` from the unpacked Debian package (`PROMETHEUS_DIR` overrides
/// where it was unpacked).
pub fn prometheus_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("PROMETHEUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache")
                });
            cache.join("redis-operator/prometheus")
        });
    let bin = dir.join("usr/bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `make deps` (hack/install-deps.sh)",
        bin.display()
    );
    bin
}

/// A free loopback port (bound, then released: the caller binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A Prometheus process and its temporary directory; both go on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second (job `redis-operator`), with the
    /// shipped rules, and waits until it is ready.
    pub async fn start(targets: &[SocketAddr]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "redis-operator-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - '{}'\nscrape_configs:\n  - job_name: redis-operator\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [{}]\n",
            repo().join(RULES).display(),
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new(prometheus_bin("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        let p = Self { child, dir, addr };
        wait_for("Prometheus ready", Duration::from_secs(60), || async {
            p.get("/-/ready", &[]).map(|_| ())
        })
        .await;
        println!("prometheus on {addr}, files in {}", p.dir.display());
        p
    }

    /// GET `path` with url-encoded `params` (curl, 5 s timeout); the body on a 2xx answer.
    fn get(&self, path: &str, params: &[(&str, &str)]) -> Option<String> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sf", "--max-time", "5", "-G"]);
        for (k, v) in params {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let out = cmd
            .arg(format!("http://{}{path}", self.addr))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The instant vector of `promql` now: each sample's labels and value. `None` when the
    /// query fails.
    pub fn query(&self, promql: &str) -> Option<Vec<(Value, f64)>> {
        let body = self.get("/api/v1/query", &[("query", promql)])?;
        let v: Value = serde_json::from_str(&body).ok()?;
        if v["status"] != "success" {
            return None;
        }
        v["data"]["result"]
            .as_array()?
            .iter()
            .map(|s| {
                let value = s["value"][1].as_str()?.parse().ok()?;
                Some((s["metric"].clone(), value))
            })
            .collect()
    }

    /// The single value of `promql` now, if it has exactly one sample.
    pub fn scalar(&self, promql: &str) -> Option<f64> {
        match self.query(promql)?.as_slice() {
            [(_, v)] => Some(*v),
            _ => None,
        }
    }

    /// Waits until `promql` has at least one sample (a comparison that holds), printing the
    /// query; returns the samples.
    pub async fn wait_for(&self, promql: &str, timeout: Duration) -> Vec<(Value, f64)> {
        println!("waiting for PromQL: {promql}");
        wait_for(&format!("PromQL {promql}"), timeout, || async {
            self.query(promql).filter(|r| !r.is_empty())
        })
        .await
    }

    /// The rule groups Prometheus loaded.
    pub fn rule_groups(&self) -> Vec<String> {
        let Some(body) = self.get("/api/v1/rules", &[]) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(|g| g["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
