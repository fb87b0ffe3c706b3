//! End-to-end: the operator (as a local process with its ServiceAccount's token) against the
//! local multi-zone cluster. Each test runs its own operator scoped to its own namespace.
//!
//! Needs the cluster, the CRD and the RBAC: run through `make test`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_support::*;
use redis_operator::crd::RedisCluster;
use serde_json::json;

const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const CLUSTER_LABEL: &str = "redis.redis-operator.dev/cluster";

/// The operator process of one test; killed on drop.
struct Operator(Child);

impl Operator {
    fn start(namespace: &str) -> Self {
        let kubeconfig =
            std::env::var("OPERATOR_KUBECONFIG").expect("OPERATOR_KUBECONFIG (set by make e2e)");
        // Appended, so the log of a killed operator survives its successor.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!("redis-operator-{namespace}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_redis-operator"))
            .args(["run", "--namespace", namespace])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,redis_operator=debug,kube=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start operator");
        Operator(child)
    }
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn cluster(name: &str, leaders: i32, followers: i32, extra: serde_json::Value) -> RedisCluster {
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

fn condition(rc: &RedisCluster, type_: &str) -> Option<(String, String, String)> {
    rc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_ready(api: &Api<RedisCluster>, name: &str, timeout: Duration) -> RedisCluster {
    wait_for(&format!("RedisCluster {name} Ready"), timeout, || async {
        let rc = api.get_opt(name).await.ok().flatten()?;
        (condition(&rc, "Ready")?.0 == "True").then_some(rc)
    })
    .await
}

async fn password(client: &Client, ns: &str, cluster: &str) -> String {
    let s: Secret = Api::namespaced(client.clone(), ns)
        .get(&format!("{cluster}-auth"))
        .await
        .expect("auth secret");
    String::from_utf8(s.data.expect("data")["password"].0.clone()).expect("utf8 password")
}

/// A command through a cluster-aware client (`redis-cli -c`). Like any client it retries a
/// failed connection (twice, a second apart); each failure is printed, and a third one fails
/// the test with redis-cli's own words.
fn cli(ip: &str, pass: &str, args: &[&str]) -> String {
    let mut failures = Vec::new();
    for _ in 0..3 {
        match redis_cli_result(ip, pass, true, args) {
            Ok(out) => return out,
            Err(e) => {
                eprintln!("redis-cli {args:?} on {ip}: {e}");
                failures.push(e);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    panic!("redis-cli {args:?} on {ip} failed 3 times: {failures:?}")
}

/// Like [`cli`], but `None` when the member does not answer (yet).
fn cli_soft(ip: &str, pass: &str, args: &[&str]) -> Option<String> {
    redis_cli_as(ip, pass, false, args)
}

/// How many objects of kind `K` in `ns` match `selector`; `None` when the list fails.
async fn count<K>(client: &Client, ns: &str, selector: &ListParams) -> Option<usize>
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

/// Placement invariants from live Pods and Nodes and from CLUSTER NODES, plus writes and reads
/// on every shard through a cluster-aware client.
async fn check_cluster(client: &Client, ns: &str, name: &str, leaders: usize, followers: usize) {
    let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(pods.len(), leaders * (1 + followers), "member pods");
    let nodes: BTreeMap<String, String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| {
            let zone = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL))
                .cloned()
                .unwrap_or_default();
            (n.metadata.name.unwrap_or_default(), zone)
        })
        .collect();
    let ip_to_pod: BTreeMap<String, &Pod> = pods
        .iter()
        .filter_map(|p| Some((p.status.as_ref()?.pod_ip.clone()?, p)))
        .collect();
    let node_of = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };

    // Identities: every (shard, member) pair held by exactly one Pod, 1 + F members per shard.
    let label = |p: &Pod, key: &str| -> String {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let identities: BTreeSet<(String, String)> = pods
        .iter()
        .map(|p| {
            (
                label(p, "redis.redis-operator.dev/shard"),
                label(p, "redis.redis-operator.dev/member"),
            )
        })
        .collect();
    assert_eq!(
        identities.len(),
        pods.len(),
        "two pods share a shard/member identity: {identities:?}"
    );
    for shard in 0..leaders {
        let members: Vec<_> = identities
            .iter()
            .filter(|(s, _)| *s == shard.to_string())
            .map(|(_, m)| m.clone())
            .collect();
        let want: Vec<String> = (0..=followers).map(|m| m.to_string()).collect();
        assert_eq!(members, want, "shard {shard} member ordinals");
    }

    // Pods: one member per node, shard members in distinct zones.
    let used_nodes: BTreeSet<String> = pods.iter().map(node_of).collect();
    assert_eq!(used_nodes.len(), pods.len(), "two members share a node");

    let pass = password(client, ns, name).await;
    let any_ip = ip_to_pod.keys().next().unwrap().clone();
    let nodes_txt = cli(&any_ip, &pass, &["cluster", "nodes"]);
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new(); // master id -> zones (leader first)
    let mut id_zone = BTreeMap::new();
    let mut masters = Vec::new();
    for line in nodes_txt.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ip = f[1].split(':').next().unwrap();
        let pod = ip_to_pod
            .get(ip)
            .unwrap_or_else(|| panic!("CLUSTER NODES lists {ip}, not a member pod"));
        let zone = nodes[&node_of(pod)].clone();
        id_zone.insert(f[0].to_string(), zone.clone());
        if f[2].contains("master") {
            assert!(f.len() > 8, "master {} without slots", f[0]);
            masters.push((f[0].to_string(), zone));
        } else {
            shards.entry(f[3].to_string()).or_default().push(zone);
        }
        assert!(!f[2].contains("fail"), "node flagged failing: {line}");
    }
    assert_eq!(masters.len(), leaders, "masters with slots");
    let mut leaders_per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for (id, zone) in &masters {
        *leaders_per_zone.entry(zone.clone()).or_default() += 1;
        let mut zones = vec![zone.clone()];
        zones.extend(shards.get(id).cloned().unwrap_or_default());
        assert_eq!(zones.len(), 1 + followers, "shard of {id}: members");
        let distinct: BTreeSet<&String> = zones.iter().collect();
        assert_eq!(
            distinct.len(),
            zones.len(),
            "shard of {id} has two members in one zone: {zones:?}"
        );
    }
    let zone_count = nodes.values().collect::<BTreeSet<_>>().len();
    let cap = leaders.div_ceil(zone_count);
    assert!(
        leaders_per_zone.values().all(|c| *c <= cap),
        "leaders per zone {leaders_per_zone:?} exceed {cap}"
    );

    // One cluster: every member lists exactly the members, and every follower's link is up.
    for ip in ip_to_pod.keys() {
        let seen = cli(ip, &pass, &["cluster", "nodes"]);
        assert_eq!(
            seen.lines().count(),
            pods.len(),
            "{ip} knows other nodes than the members: {seen}"
        );
        let repl = cli(ip, &pass, &["info", "replication"]);
        if repl.contains("role:slave") {
            assert!(
                repl.contains("master_link_status:up"),
                "{ip} follower link down: {repl}"
            );
        }
    }

    let info = cli(&any_ip, &pass, &["cluster", "info"]);
    assert!(
        info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384"),
        "{info}"
    );

    // Keys on every shard through redirects (-c): 64 keys cover every master with high probability;
    // check each master then holds some.
    for i in 0..64 {
        assert_eq!(
            cli(
                &any_ip,
                &pass,
                &["set", &format!("key-{i}"), &format!("v{i}")]
            ),
            "OK"
        );
    }
    for i in 0..64 {
        assert_eq!(
            cli(&any_ip, &pass, &["get", &format!("key-{i}")]),
            format!("v{i}")
        );
    }
    for (id, _) in &masters {
        let ip = nodes_txt
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_string();
        let n: u64 = cli(&ip, &pass, &["dbsize"]).parse().unwrap();
        assert!(n > 0, "shard master {id} holds no keys");
    }
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn sample_3x1_becomes_ready_with_zone_aware_placement() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-3x1").await;
    let _op = Operator::start(&ns.name);
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &cluster("demo", 3, 1, json!({})))
        .await
        .unwrap();
    let rc = wait_ready(&api, "demo", Duration::from_secs(240)).await;
    let status = rc.status.clone().unwrap();
    assert_eq!(status.ready_members.as_deref(), Some("6/6"));
    assert_eq!(status.zones, Some(3));
    assert_eq!(condition(&rc, "PlacementSatisfied").unwrap().0, "True");
    assert_eq!(
        status.placement.as_deref().map(|p| p.split(' ').count()),
        Some(3),
        "{:?}",
        status.placement
    );
    assert_eq!(status.shards.len(), 3);
    for shard in &status.shards {
        let leader = shard.leader.as_ref().expect("every shard has a leader");
        assert!(
            !leader.zone.is_empty() && !leader.node_id.is_empty(),
            "{shard:?}"
        );
        assert_eq!(shard.followers.len(), 1, "{shard:?}");
        assert!(
            shard
                .followers
                .iter()
                .all(|f| f.in_sync && f.zone != leader.zone),
            "{shard:?}"
        );
        assert!(!shard.slots.is_empty());
    }
    check_cluster(&client, &ns.name, "demo", 3, 1).await;

    // Adding a shard needs resharding, which this version refuses visibly: no Pod is created,
    // the cluster keeps serving, and reverting the spec makes it Ready again.
    let patch = |leaders: i32| Patch::Merge(json!({"spec": {"leaders": leaders}}));
    api.patch("demo", &PatchParams::default(), &patch(4))
        .await
        .unwrap();
    let (_, reason, message) = wait_for(
        "Ready=False ResizeNotSupported",
        Duration::from_secs(60),
        || async {
            let rc = api.get_opt("demo").await.ok().flatten()?;
            condition(&rc, "Ready").filter(|c| c.1 == "ResizeNotSupported")
        },
    )
    .await;
    assert_eq!(reason, "ResizeNotSupported");
    assert!(message.contains("back to 3"), "{message}");
    let member_pods = Api::<Pod>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}=demo")))
        .await
        .unwrap();
    assert_eq!(
        member_pods.items.len(),
        6,
        "no member created for a refused resize"
    );
    api.patch("demo", &PatchParams::default(), &patch(3))
        .await
        .unwrap();
    wait_ready(&api, "demo", Duration::from_secs(60)).await;

    // Default retention (Retain): deleting the cluster removes its Pods but keeps the data.
    api.delete("demo", &DeleteParams::default()).await.unwrap();
    let selector = ListParams::default().labels(&format!("{CLUSTER_LABEL}=demo"));
    wait_for("member pods gone", Duration::from_secs(120), || async {
        (count::<Pod>(&client, &ns.name, &selector).await? == 0).then_some(())
    })
    .await;
    assert_eq!(
        count::<PersistentVolumeClaim>(&client, &ns.name, &selector).await,
        Some(6),
        "Retain keeps every member's PVC"
    );
    ns.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn cluster_4x2_becomes_ready_beside_another() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-4x2").await;
    let _op = Operator::start(&ns.name);
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &cluster("big", 4, 2, json!({})))
        .await
        .unwrap();
    wait_ready(&api, "big", Duration::from_secs(300)).await;
    check_cluster(&client, &ns.name, "big", 4, 2).await;
    ns.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn unsatisfiable_spec_explains_and_creates_nothing() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-unsat").await;
    let _op = Operator::start(&ns.name);
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    // 4 members per shard in distinct zones, with 3 zones.
    api.create(&PostParams::default(), &cluster("nope", 3, 3, json!({})))
        .await
        .unwrap();
    let (status, reason, message) = wait_for(
        "PlacementSatisfied=False",
        Duration::from_secs(60),
        || async {
            let rc = api.get_opt("nope").await.ok().flatten()?;
            condition(&rc, "PlacementSatisfied").filter(|c| c.0 == "False")
        },
    )
    .await;
    assert_eq!(status, "False");
    assert!(!reason.is_empty());
    assert!(
        message.contains("zone"),
        "explanation names zones: {message}"
    );
    let pods = Api::<Pod>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(pods.items.is_empty(), "no pod may be created");
    ns.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn invalid_config_override_is_a_condition() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-conf").await;
    let _op = Operator::start(&ns.name);
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    api.create(
        &PostParams::default(),
        &cluster(
            "bad",
            3,
            1,
            json!({"config": {"cluster-node-timeout": "100"}}),
        ),
    )
    .await
    .unwrap();
    let (_, reason, message) = wait_for(
        "Ready=False InvalidSpec",
        Duration::from_secs(60),
        || async {
            let rc = api.get_opt("bad").await.ok().flatten()?;
            condition(&rc, "Ready").filter(|c| c.1 == "InvalidSpec")
        },
    )
    .await;
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("cluster-node-timeout"), "{message}");
    let pods = Api::<Pod>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(pods.items.is_empty());
    // The schema refuses what it can check without the operator.
    let err = api
        .create(&PostParams::default(), &cluster("two", 2, 1, json!({})))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("leaders must be at least 3"),
        "{err}"
    );
    ns.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn operator_killed_mid_bootstrap_converges_and_deletion_cleans_up() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-crash").await;
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    api.create(
        &PostParams::default(),
        &cluster("crash", 3, 1, json!({"pvcRetentionPolicy": "Delete"})),
    )
    .await
    .unwrap();
    let mut op = Operator::start(&ns.name);
    // Kill it as soon as members exist but before the cluster is formed.
    wait_for("first member pods", Duration::from_secs(60), || async {
        let pods = pods_api.list(&ListParams::default()).await.ok()?;
        (!pods.items.is_empty()).then_some(())
    })
    .await;
    op.kill();
    let rc = api.get("crash").await.unwrap();
    assert_ne!(
        condition(&rc, "Ready").map(|c| c.0),
        Some("True".to_string()),
        "the first kill must land before the cluster is formed"
    );
    // Second kill: as soon as some leader serves slots, i.e. between slot assignment and
    // the followers' sync.
    let mut op = Operator::start(&ns.name);
    let pass = password(&client, &ns.name, "crash").await;
    wait_for(
        "a leader serving slots",
        Duration::from_secs(120),
        || async {
            let pods = pods_api.list(&ListParams::default()).await.ok()?;
            pods.items.iter().find_map(|p| {
                let ip = p.status.as_ref()?.pod_ip.clone()?;
                let info = cli_soft(&ip, &pass, &["cluster", "info"])?;
                let assigned: u32 = info
                    .lines()
                    .find_map(|l| l.strip_prefix("cluster_slots_assigned:"))?
                    .trim()
                    .parse()
                    .ok()?;
                (assigned > 0).then_some(())
            })
        },
    )
    .await;
    op.kill();
    let _op = Operator::start(&ns.name);
    wait_ready(&api, "crash", Duration::from_secs(240)).await;
    check_cluster(&client, &ns.name, "crash", 3, 1).await;

    let selector = ListParams::default().labels(&format!("{CLUSTER_LABEL}=crash"));
    assert_eq!(
        count::<PodDisruptionBudget>(&client, &ns.name, &selector).await,
        Some(1),
        "one PodDisruptionBudget per cluster"
    );
    api.delete("crash", &DeleteParams::default()).await.unwrap();
    wait_for(
        "every object of the cluster gone",
        Duration::from_secs(120),
        || {
            let client = client.clone();
            let ns = ns.name.clone();
            let selector = selector.clone();
            async move {
                let total = count::<Pod>(&client, &ns, &selector).await?
                    + count::<PersistentVolumeClaim>(&client, &ns, &selector).await?
                    + count::<ConfigMap>(&client, &ns, &selector).await?
                    + count::<Service>(&client, &ns, &selector).await?
                    + count::<Secret>(&client, &ns, &selector).await?
                    + count::<PodDisruptionBudget>(&client, &ns, &selector).await?;
                (total == 0).then_some(())
            }
        },
    )
    .await;
    ns.cleanup().await;
}
