//! End-to-end: the operator (as a local process with its ServiceAccount's token) against the
//! local multi-zone cluster. Each test runs its own operator scoped to its own namespace.
//!
//! Needs the cluster, the CRD and the RBAC: run through `make test`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube_support::*;
use redis_operator::crd::RedisCluster;
use serde_json::json;

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn sample_3x1_becomes_ready_with_zone_aware_placement() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-3x1").await;
    // The real API server's PodSecurity admission enforces "restricted" on the members.
    enforce_restricted(&client, &ns.name).await;
    let _op = Operator::start(&ns.name);
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &cluster("demo", 3, 1, json!({})))
        .await
        .unwrap();
    let rc = wait_ready(&api, "demo", Duration::from_secs(240)).await;
    members_run_unprivileged(&client, &ns.name, "demo").await;
    network_policy_admits_only_members_on_the_bus(&client, &ns.name, "demo").await;
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
    drift_of_support_objects_is_undone(&client, &ns.name, "demo").await;
    evictions_wait_for_the_operator(&client, &ns.name, "demo").await;

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

/// The operator applies its support objects only when they changed since its last apply
/// (src/controller/act/applied.rs): someone else's edit of the client Service and a deleted
/// PodDisruptionBudget must still be undone, from their new resourceVersion. (The edit is of a
/// label the operator sets: an edited port would be merged beside the operator's by
/// server-side apply, not replaced.)
async fn drift_of_support_objects_is_undone(client: &kube::Client, ns: &str, name: &str) {
    use kube::api::{Patch, PatchParams};
    const LABEL: &str = "app.kubernetes.io/managed-by";
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let managed_by = |s: &Service| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL))
            .cloned()
    };
    let edit = json!({"metadata": {"labels": {LABEL: "someone-else"}}});
    let edited = services
        .patch(name, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    assert_eq!(
        managed_by(&edited).as_deref(),
        Some("someone-else"),
        "the edit took"
    );
    wait_for(
        "the client Service's managed-by label restored",
        Duration::from_secs(60),
        || async {
            let s = services.get(name).await.ok()?;
            (managed_by(&s).as_deref() == Some("redis-operator")).then_some(())
        },
    )
    .await;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let before = pdbs.get(name).await.unwrap().metadata.uid;
    pdbs.delete(name, &DeleteParams::default()).await.unwrap();
    wait_for(
        "the PodDisruptionBudget recreated",
        Duration::from_secs(60),
        || async {
            let pdb = pdbs.get_opt(name).await.ok()??;
            (pdb.metadata.uid != before).then_some(())
        },
    )
    .await;
}

/// The PodDisruptionBudget as `kubectl drain` meets it: synced by the disruption controller
/// (earlier versions' `maxUnavailable` never synced: a RedisCluster has no scale subresource),
/// counting the six members, and refusing an eviction (429): drains wait for the operator to
/// move members off the cordoned node (`build/pdb.rs`).
async fn evictions_wait_for_the_operator(client: &kube::Client, ns: &str, name: &str) {
    use kube::api::EvictParams;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    wait_for(
        "the PodDisruptionBudget synced over the six members",
        Duration::from_secs(60),
        || async {
            let pdb = pdbs.get(name).await.ok()?;
            let status = pdb.status?;
            let computed = status.conditions.unwrap_or_default().iter().any(|c| {
                c.type_ == "DisruptionAllowed"
                    && c.status == "False"
                    && c.reason == "InsufficientPods"
            });
            (computed
                && status.observed_generation == pdb.metadata.generation
                && status.expected_pods == 6
                && status.current_healthy == 6
                && status.desired_healthy == 6
                && status.disruptions_allowed == 0)
                .then_some(())
        },
    )
    .await;
    // A client that takes the 429 as the answer: kube's default one retries it with backoff
    // (15 times, about 5 minutes), as it retries any 429.
    let mut config = kube::Config::infer().await.unwrap();
    config.default_retry = false;
    let once = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(once, ns);
    let members = member_pods(client, ns, name).await.unwrap();
    let first = members[0].metadata.name.clone().unwrap();
    match pods.evict(&first, &EvictParams::default()).await {
        Err(kube::Error::Api(e)) if e.code == 429 => {}
        other => panic!("evicting {first}: the budget must refuse it: {other:?}"),
    }
    let still = pods.get(&first).await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_none(), "{first} kept");
}

/// Labels the namespace `pod-security.kubernetes.io/enforce=restricted`, then proves the
/// admission is on: a root Pod is refused there.
async fn enforce_restricted(client: &kube::Client, ns: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Patch, PatchParams};
    let patch =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let root: Pod = serde_json::from_value(json!({
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "redis:7.2"}]},
    }))
    .unwrap();
    let refused = Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &root)
        .await
        .expect_err("a root Pod is refused in a restricted namespace");
    assert!(
        refused.to_string().contains("violates PodSecurity"),
        "{refused}"
    );
}

/// Every member's redis-server really runs as uid/gid 999, with no capability and no way to
/// gain privileges (read from the process itself, not from the Pod spec).
async fn members_run_unprivileged(client: &kube::Client, ns: &str, name: &str) {
    let pods = member_pods(client, ns, name).await.unwrap();
    assert!(!pods.is_empty());
    for pod in &pods {
        let pid = container_pid(pod).expect("a running member has a pid");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}:")))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        assert_eq!(field("Name"), "redis-server", "{pod_name}");
        assert_eq!(field("Uid"), "999 999 999 999", "{pod_name}");
        assert_eq!(field("Gid"), "999 999 999 999", "{pod_name}");
        assert!(field("Groups").split(' ').any(|g| g == "999"), "{pod_name}");
        assert_eq!(field("NoNewPrivs"), "1", "{pod_name}");
        assert_eq!(field("CapEff"), "0000000000000000", "{pod_name}");
        assert_eq!(field("CapBnd"), "0000000000000000", "{pod_name}");
    }
}

/// The NetworkPolicy exists, owned by the cluster: the bus only from members, the client port
/// from members and the namespace (the default). The local cluster does not enforce it.
async fn network_policy_admits_only_members_on_the_bus(
    client: &kube::Client,
    ns: &str,
    name: &str,
) {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let policy = Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    assert_eq!(
        policy.metadata.owner_references.unwrap()[0].kind,
        "RedisCluster"
    );
    let rules = policy.spec.unwrap().ingress.unwrap();
    let port = |i: usize| rules[i].ports.as_ref().unwrap()[0].port.clone();
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    assert_eq!(port(0), Some(IntOrString::Int(6379)));
    assert_eq!(port(1), Some(IntOrString::Int(16379)));
    let bus_from = rules[1].from.clone().unwrap();
    assert_eq!(bus_from.len(), 1);
    let members = bus_from[0]
        .pod_selector
        .clone()
        .unwrap()
        .match_labels
        .unwrap();
    assert_eq!(members.get(CLUSTER_LABEL).map(String::as_str), Some(name));
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
    // A key or value that would inject a redis.conf directive or break the file is refused at
    // admission, and the message names it (issue 18 §1).
    for (i, (config, names)) in [
        (json!({"": "maxmemory-policy allkeys-lfu"}), "\"\""),
        (json!({"dir /tmp": "x"}), "\"dir /tmp\""),
        (
            json!({"rename-command CONFIG": "\"\""}),
            "rename-command CONFIG",
        ),
        (json!({"Maxmemory": "1gb"}), "Maxmemory"),
        (
            json!({"maxmemory": "1gb\nrename-command CONFIG x"}),
            "control character",
        ),
        (json!({"maxmemory": "1gb\u{0}"}), "control character"),
        (json!({"maxmemory": "\"1gb"}), "unbalanced quotes"),
    ]
    .into_iter()
    .enumerate()
    {
        let err = api
            .create(
                &PostParams::default(),
                &cluster(&format!("inject-{i}"), 3, 1, json!({ "config": config })),
            )
            .await
            .expect_err("refused at admission");
        assert!(err.to_string().contains(names), "{config}: {err}");
    }
    // Issue 18 §2: what the schema can say, it says at admission.
    let long = "a".repeat(50);
    for (rc, says) in [
        (cluster(&long, 3, 1, json!({})), "at most 49 characters"),
        (
            cluster("noimage", 3, 1, json!({"image": ""})),
            "image must not be empty",
        ),
    ] {
        let err = api.create(&PostParams::default(), &rc).await.unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
    api.create(
        &PostParams::default(),
        &cluster(&"a".repeat(49), 3, 1, json!({})),
    )
    .await
    .expect("a 49-character name is accepted");
    let patch = json!({"spec": {"storage": {"storageClassName": "fast"}}});
    let err = api
        .patch(
            &"a".repeat(49),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("storageClassName cannot be added or removed"),
        "{err}"
    );
    ns.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn an_object_someone_else_owns_is_never_adopted() {
    // Issue 18 §5: a ConfigMap someone created under the name the cluster's would have is
    // neither taken over nor modified; the cluster says so (Degraded NameConflict) and
    // creates nothing until it is gone.
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-owned").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let foreign: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "mine-config"},
        "data": {"redis.conf": "someone else's"},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &foreign).await.unwrap();
    let _op = Operator::start(&ns.name);
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &cluster("mine", 3, 1, json!({})))
        .await
        .unwrap();
    let (_, _, message) = wait_for(
        "Degraded=True NameConflict",
        Duration::from_secs(60),
        || async {
            let rc = api.get_opt("mine").await.ok().flatten()?;
            condition(&rc, "Degraded").filter(|c| c.0 == "True" && c.1 == "NameConflict")
        },
    )
    .await;
    assert!(message.contains("ConfigMap mine-config"), "{message}");
    let cm = cms.get("mine-config").await.unwrap();
    assert_eq!(
        cm.data
            .as_ref()
            .and_then(|d| d.get("redis.conf"))
            .map(String::as_str),
        Some("someone else's"),
        "the foreign ConfigMap was modified"
    );
    assert!(cm.metadata.owner_references.is_none(), "adopted: {cm:?}");
    let pods = Api::<Pod>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        pods.items.is_empty(),
        "nothing is created while the name is taken"
    );
    // Once it is gone, the cluster's own is created.
    cms.delete("mine-config", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the cluster's own ConfigMap",
        Duration::from_secs(60),
        || async {
            let cm = cms.get_opt("mine-config").await.ok().flatten()?;
            cm.metadata.owner_references.is_some().then_some(())
        },
    )
    .await;
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

/// The namespaced install (manifests/overlays/namespaced): its ServiceAccount can do nothing
/// outside its namespace but read Nodes, and a cluster there still becomes Ready with exactly
/// those rights (the operator runs with the ServiceAccount's token and `--namespace`).
#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn namespaced_install_is_confined_and_works() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-nsd").await;
    let binding = format!("redis-operator-nodes-{}", ns.name);
    apply_namespaced_rbac(&ns.name, &binding);
    let sa = format!("system:serviceaccount:{}:redis-operator", ns.name);
    let can = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .args(["auth", "can-i", "--as", &sa])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for outside in [
        &["list", "pods", "-n", "default"][..],
        &["create", "pods", "-n", "default"],
        &["get", "secrets", "-n", "default"],
        &["delete", "persistentvolumeclaims", "-n", "default"],
        &["list", "redisclusters.redis.redis-operator.dev", "-A"],
        &["list", "pods", "-A"],
        &["create", "leases.coordination.k8s.io", "-n", "default"],
        &["patch", "nodes"],
    ] {
        assert_eq!(can(outside), "no", "{sa} may {outside:?}");
    }
    for inside in [&["create", "pods"][..], &["list", "nodes"]] {
        let mut args = inside.to_vec();
        if inside[1] != "nodes" {
            args.extend(["-n", &ns.name]);
        }
        assert_eq!(can(&args), "yes", "{sa} may not {args:?}");
    }

    let kubeconfig = std::env::temp_dir().join(format!("{}.kubeconfig", ns.name));
    let made = std::process::Command::new(repo().join("hack/operator-kubeconfig.sh"))
        .arg(&kubeconfig)
        .arg(&ns.name)
        .status()
        .unwrap();
    assert!(made.success());
    let _op = Operator::start_as(&ns.name, kubeconfig.to_str().unwrap(), &[]);
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    api.create(
        &PostParams::default(),
        &cluster("confined", 3, 1, json!({})),
    )
    .await
    .unwrap();
    wait_ready(&api, "confined", Duration::from_secs(240)).await;
    check_cluster(&client, &ns.name, "confined", 3, 1).await;
    ns.cleanup().await;
    let _ = std::process::Command::new("kubectl")
        .args([
            "delete",
            "clusterrolebinding",
            &binding,
            "--ignore-not-found",
        ])
        .status();
    let _ = std::fs::remove_file(kubeconfig);
}

/// The overlay's ServiceAccount, Role, RoleBinding and Nodes ClusterRole(Binding), moved from
/// its `redis` namespace to `ns` (the CRD, Namespace and Deployment are left out).
fn apply_namespaced_rbac(ns: &str, binding: &str) {
    let rendered = std::process::Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join("manifests/overlays/namespaced"))
        .output()
        .unwrap();
    assert!(rendered.status.success(), "kubectl kustomize failed");
    let text = String::from_utf8(rendered.stdout).unwrap();
    let keep = [
        "kind: ServiceAccount",
        "kind: Role\n",
        "kind: RoleBinding",
        "kind: ClusterRole\n",
        "kind: ClusterRoleBinding",
    ];
    let docs: Vec<String> = text
        .split("\n---\n")
        .filter(|d| keep.iter().any(|k| d.contains(k)))
        .map(|d| {
            d.lines()
                .map(|l| match l.trim() {
                    "namespace: redis" => l.replace("redis", ns),
                    "name: redis-operator-nodes-redis" => {
                        l.replace("redis-operator-nodes-redis", binding)
                    }
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert_eq!(docs.len(), 5, "{text}");
    let mut apply = std::process::Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(docs.join("\n---\n").as_bytes())
        .unwrap();
    assert!(apply.wait().unwrap().success());
}
