//! The operator under test and the RedisCluster objects it manages: one operator process per
//! test (with the ServiceAccount's kubeconfig), manifests, conditions, the auth Secret.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};
use redis_operator::crd::RedisCluster;
use serde_json::json;

use super::wait_for;

/// The operator process of one test; killed on drop.
pub struct Operator(Child);

impl Operator {
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    /// [`Operator::start`] with more arguments (e.g. `--http-address 127.0.0.1:PORT`).
    pub fn start_with(namespace: &str, extra: &[&str]) -> Self {
        let kubeconfig =
            std::env::var("OPERATOR_KUBECONFIG").expect("OPERATOR_KUBECONFIG (set by make e2e)");
        Self::start_as(namespace, &kubeconfig, extra)
    }

    /// [`Operator::start_with`] authenticated by another kubeconfig (another ServiceAccount).
    pub fn start_as(namespace: &str, kubeconfig: &str, extra: &[&str]) -> Self {
        // Appended, so the log of a killed operator survives its successor.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!("redis-operator-{namespace}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_redis-operator"))
            .args(["run", "--namespace", namespace])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,redis_operator=debug,kube=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start operator");
        Operator(child)
    }
    /// Its process id (to pause it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn cluster(name: &str, leaders: i32, followers: i32, extra: serde_json::Value) -> RedisCluster {
    let mut spec = json!({"leaders": leaders, "followersPerLeader": followers, "storage": {"size": "100Mi"},
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(
        json!({"apiVersion": "redis.redis-operator.dev/v1alpha1", "kind": "RedisCluster",
        "metadata": {"name": name}, "spec": spec}),
    )
    .expect("RedisCluster manifest")
}

pub fn condition(rc: &RedisCluster, type_: &str) -> Option<(String, String, String)> {
    rc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub async fn wait_ready(api: &Api<RedisCluster>, name: &str, timeout: Duration) -> RedisCluster {
    wait_for(&format!("RedisCluster {name} Ready"), timeout, || async {
        let rc = api.get_opt(name).await.ok().flatten()?;
        (condition(&rc, "Ready")?.0 == "True").then_some(rc)
    })
    .await
}

pub async fn password(client: &Client, ns: &str, cluster: &str) -> String {
    let s: Secret = Api::namespaced(client.clone(), ns)
        .get(&format!("{cluster}-auth"))
        .await
        .expect("auth secret");
    String::from_utf8(s.data.expect("data")["password"].0.clone()).expect("utf8 password")
}

/// How many objects of kind `K` in `ns` match `selector`; `None` when the list fails.
pub async fn count<K>(client: &Client, ns: &str, selector: &ListParams) -> Option<usize>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Some(
        Api::<K>::namespaced(client.clone(), ns)
            .list(selector)
            .await
            .ok()?
            .items
            .len(),
    )
}
