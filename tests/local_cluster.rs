//! The local multi-zone cluster (`hack/local-cluster`) behaves like a real one: nodes in zones,
//! pods as redis-server processes with their own IPs and volumes, zones that crash or partition.
//!
//! Needs the cluster: run through `make test` (or `make e2e`), which starts it once.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use kube_support::*;
use serde_json::json;

fn layout() -> (usize, usize) {
    let get = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (
        get("LOCAL_CLUSTER_ZONES", 3),
        get("LOCAL_CLUSTER_NODES_PER_ZONE", 2),
    )
}

fn node_ready(n: &Node) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn redis_pod(
    name: &str,
    node: &str,
    volumes: serde_json::Value,
    mounts: serde_json::Value,
    args: &[&str],
) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "redis", "image": "redis:7.2",
                "command": ["redis-server"], "args": args,
                "ports": [{"containerPort": 6379, "name": "redis"}],
                "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1},
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        }
    }))
    .expect("pod manifest")
}

async fn wait_ready_pod(pods: &Api<Pod>, name: &str) -> Pod {
    wait_for(
        &format!("pod {name} Running and Ready with an IP"),
        Duration::from_secs(90),
        || async {
            let p = pods.get_opt(name).await.ok().flatten()?;
            (pod_ready(&p)
                && pod_ip(&p).is_some()
                && p.status.as_ref()?.phase.as_deref() == Some("Running"))
            .then_some(p)
        },
    )
    .await
}

async fn delete_and_wait_gone(pods: &Api<Pod>, name: &str) {
    pods.delete(name, &DeleteParams::default())
        .await
        .expect("delete pod");
    wait_for(
        &format!("pod {name} gone"),
        Duration::from_secs(60),
        || async {
            pods.get_opt(name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn t1_nodes_are_ready_in_zones() {
    let client = client().await;
    let (zones, per_zone) = layout();
    let nodes = Api::<Node>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(nodes.len(), zones * per_zone, "node count");
    let mut by_zone: BTreeMap<String, usize> = BTreeMap::new();
    for n in &nodes {
        assert_eq!(
            node_ready(n).as_deref(),
            Some("True"),
            "node {:?} not Ready",
            n.metadata.name
        );
        let zone = n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ZONE_LABEL))
            .cloned()
            .expect("zone label");
        *by_zone.entry(zone).or_default() += 1;
        let info = n
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .expect("nodeInfo");
        assert!(!info.kubelet_version.is_empty() && !info.boot_id.is_empty());
    }
    assert_eq!(by_zone.len(), zones, "zones: {by_zone:?}");
    assert!(
        by_zone.values().all(|c| *c == per_zone),
        "nodes per zone: {by_zone:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn t2_redis_pod_with_config_and_pvc_keeps_data_across_recreation() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "lc-pod").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let pp = PostParams::default();
    cms.create(&pp, &serde_json::from_value(json!({
        "metadata": {"name": "conf"},
        "data": {"redis.conf": "port 6379\nbind 0.0.0.0\nprotected-mode no\ndir /data\ncluster-config-file /data/nodes.conf\nappendonly yes\nappendfsync always\n"}
    })).unwrap()).await.unwrap();
    pvcs.create(&pp, &serde_json::from_value(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}}
    })).unwrap()).await.unwrap();
    svcs.create(
        &pp,
        &serde_json::from_value(json!({
            "metadata": {"name": "redis"},
            "spec": {"selector": {"app": "r1"}, "ports": [{"port": 6379, "name": "redis"}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();

    let volumes = json!([{"name": "conf", "configMap": {"name": "conf"}}, {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
    let mounts = json!([{"name": "conf", "mountPath": "/etc/redis"}, {"name": "data", "mountPath": "/data"}]);
    let args = ["/etc/redis/redis.conf", "--cluster-enabled", "yes"];
    let node = "node-b1";
    pods.create(
        &pp,
        &redis_pod("r1", node, volumes.clone(), mounts.clone(), &args),
    )
    .await
    .unwrap();
    let pod = wait_ready_pod(&pods, "r1").await;
    let ip = pod_ip(&pod).unwrap();
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(node));
    assert_eq!(
        redis_cli(&ip, &["ping"]).as_deref(),
        Some("PONG"),
        "PING from the host to {ip}"
    );
    let info = redis_cli(&ip, &["cluster", "info"]).unwrap();
    assert!(
        info.contains("cluster_enabled:1")
            || redis_cli(&ip, &["info", "cluster"])
                .unwrap()
                .contains("cluster_enabled:1")
    );

    // The Service gets an EndpointSlice with the pod's IP (pod IPs are not loopback).
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns.name);
    wait_for(
        "EndpointSlice with the pod IP",
        Duration::from_secs(60),
        || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=redis"))
                .await
                .ok()?;
            list.items
                .iter()
                .any(|s| s.endpoints.iter().any(|e| e.addresses.contains(&ip)))
                .then_some(())
        },
    )
    .await;

    // A single-node cluster owning every slot can take writes.
    assert_eq!(
        redis_cli(&ip, &["cluster", "addslotsrange", "0", "16383"]).as_deref(),
        Some("OK")
    );
    wait_for("cluster_state:ok", Duration::from_secs(30), || async {
        redis_cli(&ip, &["cluster", "info"])
            .filter(|i| i.contains("cluster_state:ok"))
            .map(|_| ())
    })
    .await;
    assert_eq!(
        redis_cli(&ip, &["set", "survivor", "42"]).as_deref(),
        Some("OK")
    );

    delete_and_wait_gone(&pods, "r1").await;
    pods.create(&pp, &redis_pod("r1", node, volumes, mounts, &args))
        .await
        .unwrap();
    let pod = wait_ready_pod(&pods, "r1").await;
    let ip = pod_ip(&pod).unwrap();
    let value = wait_for(
        "the key after recreation",
        Duration::from_secs(30),
        // A restarted master stays CLUSTERDOWN for a moment before it serves again.
        || async {
            redis_cli(&ip, &["get", "survivor"])
                .filter(|v| !v.is_empty() && !v.starts_with("CLUSTERDOWN"))
        },
    )
    .await;
    assert_eq!(value, "42");
    ns.cleanup().await;
}

/// Creates one redis pod on every node of `zone` and returns (pod name, node) pairs.
async fn pods_in_zone(client: &Client, pods: &Api<Pod>, zone: &str) -> Vec<String> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{ZONE_LABEL}={zone}")))
        .await
        .unwrap()
        .items;
    let mut names = Vec::new();
    for n in nodes {
        let node = n.metadata.name.unwrap();
        let name = format!("z-{node}");
        pods.create(
            &PostParams::default(),
            &redis_pod(&name, &node, json!([]), json!([]), &["--save", ""]),
        )
        .await
        .unwrap();
        names.push(name);
    }
    for name in &names {
        wait_ready_pod(pods, name).await;
    }
    names
}

async fn zone_nodes_ready(client: &Client, zone: &str, want_ready: bool) {
    let nodes: Api<Node> = Api::all(client.clone());
    let what = format!(
        "nodes of {zone} {}",
        if want_ready {
            "Ready"
        } else {
            "NotReady/Unknown"
        }
    );
    wait_for(&what, Duration::from_secs(60), || async {
        let list = nodes
            .list(&ListParams::default().labels(&format!("{ZONE_LABEL}={zone}")))
            .await
            .ok()?;
        list.items
            .iter()
            .all(|n| (node_ready(n).as_deref() == Some("True")) == want_ready)
            .then_some(())
    })
    .await;
}

async fn zone_down_and_up(partition: bool) {
    let client = client().await;
    let ns = TestNamespace::new(&client, if partition { "lc-part" } else { "lc-crash" }).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let zone = "zone-a";
    let names = pods_in_zone(&client, &pods, zone).await;
    let mut before = Vec::new();
    for n in &names {
        let p = pods.get(n).await.unwrap();
        assert!(
            answers(&pod_ip(&p).unwrap()),
            "{n} answers before zone-down"
        );
        before.push(p);
    }

    let mut args = vec!["zone-down", zone];
    if partition {
        args.push("--partition");
    }
    local_cluster(&args);
    for p in &before {
        let ip = pod_ip(p).unwrap();
        assert!(!answers(&ip), "{ip} still answers after zone-down");
        let pid = container_pid(p).expect("containerID with a pid");
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert_eq!(
            alive, partition,
            "redis process {pid} alive={alive} (partition={partition})"
        );
    }
    zone_nodes_ready(&client, zone, false).await;

    local_cluster(&["zone-up", zone]);
    zone_nodes_ready(&client, zone, true).await;
    for n in &names {
        // After a crash the pods restart in new sandboxes (new IPs); after a partition they keep them.
        let p = wait_ready_pod(&pods, n).await;
        let ip = pod_ip(&p).unwrap();
        wait_for(
            &format!("{n} ({ip}) answers after zone-up"),
            Duration::from_secs(30),
            || async { answers(&ip).then_some(()) },
        )
        .await;
        if partition {
            let old = before
                .iter()
                .find(|b| b.metadata.name.as_deref() == Some(n.as_str()))
                .unwrap();
            assert_eq!(Some(ip), pod_ip(old), "a partitioned pod keeps its IP");
        }
    }
    ns.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn t3_zone_crash_and_return() {
    zone_down_and_up(false).await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn t4_zone_partition_and_heal() {
    zone_down_and_up(true).await;
}
