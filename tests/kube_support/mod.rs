//! Helpers for tests against the local cluster started by `make test` (`hack/local-cluster`).
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::panic)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

pub mod checks;
pub mod dns;
pub mod kstatus;
pub mod operator;
pub mod prometheus;
pub mod tls;

pub use checks::*;
pub use operator::*;

/// The zone label of Nodes.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The label naming a member Pod's RedisCluster.
pub const CLUSTER_LABEL: &str = "redis.redis-operator.dev/cluster";
/// The label holding a member Pod's shard index.
pub const SHARD_LABEL: &str = "redis.redis-operator.dev/shard";
/// The label holding a member Pod's member index within its shard.
pub const MEMBER_LABEL: &str = "redis.redis-operator.dev/member";

/// The label on every test namespace.
pub const TEST_NAMESPACE_LABEL: &str = "e2e.redis-operator.dev/test";

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A client for the local cluster (KUBECONFIG from `hack/local-cluster env`).
pub async fn client() -> Client {
    Client::try_default()
        .await
        .expect("KUBECONFIG must point at the local cluster: eval \"$(hack/local-cluster env)\"")
}

/// Runs `hack/local-cluster ARGS`, panicking with its output on failure.
pub fn local_cluster(args: &[&str]) -> String {
    let out = Command::new(repo().join("hack/local-cluster"))
        .args(args)
        .output()
        .expect("run hack/local-cluster");
    assert!(
        out.status.success(),
        "hack/local-cluster {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` until it returns Some or the deadline passes (then panics with `what`).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A fresh namespace for one test; deleted by [`TestNamespace::cleanup`].
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{}", std::process::id() % 100000 + rand_suffix());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                // `make e2e` deletes namespaces left with this label by an interrupted run on
                // a reused cluster, whose members would hold the nodes the next tests need.
                labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        // Pods are refused until the namespace's default ServiceAccount exists.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait_for("default ServiceAccount", Duration::from_secs(60), || {
            let sa = sa.clone();
            async move { sa.get_opt("default").await.ok().flatten().map(|_| ()) }
        })
        .await;
        Self {
            name,
            client: client.clone(),
        }
    }

    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
    }
}

/// Deletes a test's namespace (without waiting) if the test panics, so that the members of a
/// failed test do not hold nodes the next tests need. `E2E_KEEP_FAILED=1` keeps it for
/// debugging. Opt-in: create one right after the namespace.
pub struct DeleteOnPanic(pub String);

impl Drop for DeleteOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("E2E_KEEP_FAILED").is_none() {
            let _ = Command::new("kubectl")
                .args(["delete", "namespace", &self.0, "--wait=false"])
                .output();
        }
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 100000)
        .unwrap_or(0)
}

/// Sends a command to `ip:6379` with redis-cli (Debian's) and returns its output, or `None`
/// when redis-cli fails (member not answering, wrong password). The password comes from
/// `TEST_REDIS_PASSWORD` (empty: no auth).
pub fn redis_cli(ip: &str, args: &[&str]) -> Option<String> {
    redis_cli_as(
        ip,
        &std::env::var("TEST_REDIS_PASSWORD").unwrap_or_default(),
        false,
        args,
    )
}

/// [`redis_cli`] with a password, optionally following cluster redirects (`-c`).
pub fn redis_cli_as(
    ip: &str,
    password: &str,
    follow_redirects: bool,
    args: &[&str],
) -> Option<String> {
    redis_cli_result(ip, password, follow_redirects, args).ok()
}

/// [`redis_cli_as`] with the reason on failure (exit status and stderr).
pub fn redis_cli_result(
    ip: &str,
    password: &str,
    follow_redirects: bool,
    args: &[&str],
) -> Result<String, String> {
    // redis-cli has no connect timeout of its own: a cut-off pod IP would hang it.
    let out = Command::new("timeout")
        .args([
            "10",
            "redis-cli",
            "-h",
            ip,
            "-p",
            "6379",
            "--no-auth-warning",
        ])
        .args(follow_redirects.then_some("-c"))
        .args(args)
        .env("REDISCLI_AUTH", password)
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{} (stdout: {:?}, stderr: {:?})",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `ip:6379` accepts a TCP connection within one second.
pub fn answers(ip: &str) -> bool {
    let addr = format!("{ip}:6379").parse().expect("socket address");
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// A Pod's IP, once it has one.
pub fn pod_ip(p: &Pod) -> Option<String> {
    p.status.as_ref()?.pod_ip.clone()
}

/// The host pid of a Pod's first container: on the local cluster `containerID` is
/// `process://<pid>` (the tests run as root on the same host and may signal it).
pub fn container_pid(p: &Pod) -> Option<u32> {
    let id = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .container_id
        .clone()?;
    id.rsplit("://").next()?.parse().ok()
}
