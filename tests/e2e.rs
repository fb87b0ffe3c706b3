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
