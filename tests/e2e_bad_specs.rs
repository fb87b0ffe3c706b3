//! End-to-end: a table of bad RedisCluster specs against the real API server and operator
//! (issue 18 §2). Each is either refused at admission (422 Invalid, the message naming the
//! field or key), or accepted and reported within 30 s as a condition that says what is wrong,
//! leaving no more objects than a good spec would and none growing.
//!
//! Needs the cluster, the CRD and the RBAC: run through `make test`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Client};
use kube_support::*;
use redis_operator::crd::RedisCluster;
use serde_json::{Value, json};

/// A spec the API server must refuse: the extra spec fields (or a whole manifest) and a text
/// the 422's message must hold (the field's path or the key's name).
struct Refused {
    row: &'static str,
    manifest: Value,
    needle: &'static str,
}

/// A spec the API server admits and the operator must report: the condition's reason and a
/// text its message must hold.
struct Reported {
    row: &'static str,
    name: &'static str,
    extra: Value,
    annotations: Value,
    reason: &'static str,
    needle: &'static str,
}

/// A RedisCluster manifest: a good 3×0 spec with `extra` merged into it.
fn manifest(name: &str, extra: Value) -> Value {
    let mut spec = json!({"leaders": 3, "followersPerLeader": 0, "storage": {"size": "100Mi"}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "redis.redis-operator.dev/v1alpha1", "kind": "RedisCluster",
        "metadata": {"name": name}, "spec": spec})
}

fn refused(row: &'static str, extra: Value, needle: &'static str) -> Refused {
    Refused {
        row,
        manifest: manifest("bad", extra),
        needle,
    }
}

fn named(row: &'static str, name: String, needle: &'static str) -> Refused {
    Refused {
        row,
        manifest: manifest(&name, json!({})),
        needle,
    }
}

fn pod(overrides: Value) -> Value {
    json!({ "pod": overrides })
}

fn clients(peers: Value) -> Value {
    json!({ "networkPolicy": { "clients": peers } })
}

/// Every spec the API server must refuse.
#[rustfmt::skip]
fn refused_rows() -> Vec<Refused> {
    let long = |n: usize| "r".repeat(n);
    let mut rows = vec![
        refused("leaders 0", json!({"leaders": 0}), "spec.leaders"),
        refused("leaders 2", json!({"leaders": 2}), "spec.leaders"),
        refused("leaders 501", json!({"leaders": 501}), "spec.leaders"),
        refused("leaders not a number", json!({"leaders": "three"}), "spec.leaders"),
        refused("followers 6", json!({"followersPerLeader": 6}), "spec.followersPerLeader"),
        refused("followers -1", json!({"followersPerLeader": -1}), "spec.followersPerLeader"),
        refused("image empty", json!({"image": ""}), "spec.image"),
        refused("image with spaces", json!({"image": "redis 7"}), "spec.image"),
        refused("size abc", json!({"storage": {"size": "abc"}}), "spec.storage.size"),
        refused("size 0", json!({"storage": {"size": "0"}}), "spec.storage.size"),
        refused("size negative", json!({"storage": {"size": "-1Gi"}}), "spec.storage.size"),
        refused("storageClassName not a name", json!({"storage": {"size": "1Gi", "storageClassName": "Fast_SSD"}}), "spec.storage.storageClassName"),
        refused("memory request > limit", json!({"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "64Mi"}}}), "spec.resources"),
        refused("cpu request > limit", json!({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "100m"}}}), "spec.resources"),
        refused("request not a quantity", json!({"resources": {"requests": {"memory": "lots"}}}), "spec.resources"),
        refused("config key with a space", json!({"config": {"dir /tmp": "x"}}), "\"dir /tmp\""),
        refused("config key uppercase", json!({"config": {"MaxMemory": "1gb"}}), "\"MaxMemory\""),
        refused("config key empty", json!({"config": {"": "maxmemory-policy allkeys-lfu"}}), "spec.config key \"\""),
        refused("config value NUL", json!({"config": {"maxmemory": "1gb\u{0}"}}), "\"maxmemory\""),
        refused("config value LF", json!({"config": {"maxmemory-policy": "noeviction\nport 1"}}), "\"maxmemory-policy\""),
        refused("config value unbalanced double quote", json!({"config": {"save": "\"3600 1"}}), "\"save\""),
        refused("config value unbalanced single quote", json!({"config": {"save": "'3600 1"}}), "\"save\""),
        named("name of 54 characters", long(54), "metadata.name"),
        named("name of 60 characters", long(60), "metadata.name"),
        named("name of 64 characters", long(64), "metadata.name"),
        refused("zoneKey empty", json!({"zoneKey": ""}), "spec.zoneKey"),
        refused("zoneKey garbage", json!({"zoneKey": "not a label/key!"}), "spec.zoneKey"),
        refused("zoneSpread unknown", json!({"zoneSpread": "Sometimes"}), "spec.zoneSpread"),
        refused("pvcRetentionPolicy unknown", json!({"pvcRetentionPolicy": "Maybe"}), "spec.pvcRetentionPolicy"),
        refused("updateStrategy.type unknown", json!({"updateStrategy": {"type": "Eventually"}}), "spec.updateStrategy.type"),
        refused("updateStrategy.maxSurge 2", json!({"updateStrategy": {"maxSurge": 2}}), "maxSurge must be 0 or 1"),
        refused("updateStrategy.maxSurge -1", json!({"updateStrategy": {"maxSurge": -1}}), "maxSurge must be 0 or 1"),
        refused("toleration operator unknown", pod(json!({"tolerations": [{"key": "k", "operator": "Sometimes", "value": "v"}]})), "spec.pod.tolerations"),
        refused("toleration effect unknown", pod(json!({"tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoFood"}]})), "spec.pod.tolerations"),
        refused("toleration Exists with a value", pod(json!({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]})), "spec.pod.tolerations"),
        refused("priorityClassName not a name", pod(json!({"priorityClassName": "Not_A_Name"})), "spec.pod.priorityClassName"),
        refused("nodeSelector value with a space", pod(json!({"nodeSelector": {"disk": "fast ssd"}})), "spec.pod.nodeSelector"),
        refused("nodeSelector key garbage", pod(json!({"nodeSelector": {"bad key": "x"}})), "spec.pod.nodeSelector"),
        refused("pod label key garbage", pod(json!({"labels": {"-bad": "x"}})), "spec.pod.labels"),
        refused("pod label value of 64 characters", pod(json!({"labels": {"team": long(64)}})), "spec.pod.labels"),
        refused("pod annotation key garbage", pod(json!({"annotations": {"bad key": "x"}})), "spec.pod.annotations"),
        refused("auth secretName not a name", json!({"auth": {"secretName": "Bad_Name"}}), "spec.auth.secretName"),
        refused("auth secretKey garbage", json!({"auth": {"secretKey": "bad key/"}}), "spec.auth.secretKey"),
        refused("scaleInGracePeriod over 1h", json!({"scaleInGracePeriod": "2h"}), "spec.scaleInGracePeriod"),
        refused("scaleInGracePeriod not a duration", json!({"scaleInGracePeriod": "30"}), "spec.scaleInGracePeriod"),
    ];
    // Rows run at once: each its own name (the long-name rows keep theirs).
    for (i, r) in rows.iter_mut().enumerate() {
        if r.manifest["metadata"]["name"] == "bad" {
            r.manifest["metadata"]["name"] = json!(format!("bad-{i}"));
        }
    }
    rows
}

fn reported(
    row: &'static str,
    name: &'static str,
    extra: Value,
    reason: &'static str,
    needle: &'static str,
) -> Reported {
    Reported {
        row,
        name,
        extra,
        annotations: json!({}),
        reason,
        needle,
    }
}

fn auth(secret: &str) -> Value {
    json!({"auth": {"secretName": secret}})
}

/// Every spec the API server admits and the operator must report.
#[rustfmt::skip]
fn reported_rows() -> Vec<Reported> {
    let mut rows = vec![
        reported("config key port (owned)", "own-port", json!({"config": {"port": "7000"}}), "InvalidSpec", "\"port\""),
        reported("config key cluster-enabled (owned)", "own-cluster", json!({"config": {"cluster-enabled": "no"}}), "InvalidSpec", "\"cluster-enabled\""),
        reported("config key dir (owned)", "own-dir", json!({"config": {"dir": "/tmp"}}), "InvalidSpec", "\"dir\""),
        reported("config key rename-command (owned)", "own-rename", json!({"config": {"rename-command": "CONFIG \"\""}}), "InvalidSpec", "\"rename-command\""),
        reported("config value empty", "empty-value", json!({"config": {"maxmemory": ""}}), "InvalidSpec", "\"maxmemory\""),
        reported("auth Secret missing", "no-secret", auth("no-such-secret"), "InvalidSpec", "no-such-secret"),
        reported("auth Secret key missing", "no-key", json!({"auth": {"secretName": "pw-other-key"}}), "InvalidSpec", "password"),
        reported("auth password empty", "empty-pw", auth("pw-empty"), "InvalidSpec", "empty"),
        reported("auth password not UTF-8", "binary-pw", auth("pw-binary"), "InvalidSpec", "UTF-8"),
        reported("auth password with a quote", "quote-pw", auth("pw-quote"), "InvalidSpec", "quotes"),
        reported("unknown priorityClass", "no-priority", pod(json!({"priorityClassName": "no-such-priority"})), "CreateFailed", "no-such-priority"),
        reported("nodeSelector matching no node", "no-node", pod(json!({"nodeSelector": {"disk": "none"}})), "PlacementUnsatisfiable", "node"),
        reported("storageClassName that does not exist", "no-class", json!({"storage": {"size": "100Mi", "storageClassName": "no-such-class"}}), "InvalidSpec", "no-such-class"),
        reported("zoneKey no node has", "no-zone", json!({"zoneKey": "example.com/rack"}), "PlacementUnsatisfiable", "zone"),
        // Kubernetes' own types nested in the spec: CEL on them costs more than the API server
        // allows, so the API server's refusal of the derived object is the answer.
        reported("toleration key garbage", "bad-toleration", pod(json!({"tolerations": [{"key": "bad key!", "operator": "Exists"}]})), "CreateFailed", "tolerations"),
        reported("networkPolicy clients label value garbage", "np-label", clients(json!([{"podSelector": {"matchLabels": {"app": "not valid!"}}}])), "ApplyFailed", "matchLabels"),
        reported("networkPolicy clients selector operator unknown", "np-operator", clients(json!([{"podSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}])), "ApplyFailed", "operator"),
        reported("networkPolicy clients cidr garbage", "np-cidr", clients(json!([{"ipBlock": {"cidr": "10.0.0.0/99"}}])), "ApplyFailed", "cidr"),
    ];
    for (row, name, value) in [
        ("break-glass accept-data-loss garbage", "glass-loss", "redis.redis-operator.dev/accept-data-loss"),
        ("break-glass accept-takeover garbage", "glass-takeover", "redis.redis-operator.dev/accept-takeover"),
    ] {
        rows.push(Reported {
            row,
            name,
            extra: json!({}),
            annotations: json!({ value: "yes please, all of it" }),
            // Reported, and ignored: recovery is never stopped by a typo in one.
            reason: "BreakGlassInvalid",
            needle: value,
        });
    }
    rows
}

/// The Secrets the auth rows name.
fn secrets() -> Vec<Secret> {
    let secret = |name: &str, key: &str, value: &[u8]| Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(key.into(), ByteString(value.to_vec()))])),
        ..Default::default()
    };
    vec![
        secret("pw-other-key", "pass", b"s3cret"),
        secret("pw-empty", "password", b""),
        secret("pw-binary", "password", &[0xff, 0xfe, b'a', 0x80]),
        secret("pw-quote", "password", b"a\"b"),
    ]
}

/// The RedisCluster API taking any JSON, so that a spec our own type cannot hold (a string
/// for an integer) still reaches the API server as written.
fn raw_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::erase::<RedisCluster>(&());
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// A change the API server must refuse on an admitted cluster: the spec created, the merge
/// patch applied to it, and a text the 422's message must hold.
struct RefusedUpdate {
    row: &'static str,
    name: &'static str,
    spec: Value,
    patch: Value,
    needle: &'static str,
}

#[rustfmt::skip]
fn update_rows() -> Vec<RefusedUpdate> {
    let row = |row, name, spec, patch, needle| RefusedUpdate { row, name, spec, patch, needle };
    vec![
        row("storageClassName added", "upd-class-added", json!({}), json!({"spec": {"storage": {"storageClassName": "fast"}}}), "storageClassName"),
        row("storageClassName changed", "upd-class-changed", json!({"storage": {"size": "100Mi", "storageClassName": "fast"}}), json!({"spec": {"storage": {"storageClassName": "slow"}}}), "storageClassName"),
        row("storage size changed", "upd-size", json!({}), json!({"spec": {"storage": {"size": "1Gi"}}}), "spec.storage.size"),
        row("storage removed", "upd-storage-removed", json!({}), json!({"spec": {"storage": null}}), "spec.storage"),
    ]
}

/// Creates the row's good cluster, then sends the bad change; what is wrong, if anything.
async fn check_update_refused(api: &Api<DynamicObject>, row: &RefusedUpdate) -> Option<String> {
    let obj: DynamicObject = serde_json::from_value(manifest(row.name, row.spec.clone())).unwrap();
    if let Err(e) = api.create(&PostParams::default(), &obj).await {
        return Some(format!("{}: the good spec was refused: {e}", row.row));
    }
    let patch = kube::api::Patch::Merge(&row.patch);
    match api
        .patch(row.name, &kube::api::PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Some(format!("{}: admitted (silently accepted)", row.row)),
        Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(row.needle) => None,
        Err(e) => Some(format!(
            "{}: refused, but not as 422 naming {:?}: {e}",
            row.row, row.needle
        )),
    }
}

/// Creates the row's object for real and checks the refusal; what is wrong, if anything.
async fn check_refused(api: &Api<DynamicObject>, row: &Refused) -> Option<String> {
    let obj: DynamicObject = serde_json::from_value(row.manifest.clone()).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let _ = api.delete(&name, &DeleteParams::default()).await;
            Some(format!("{}: admitted (silently accepted)", row.row))
        }
        Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(row.needle) => None,
        Err(e) => Some(format!(
            "{}: refused, but not as 422 naming {:?}: {e}",
            row.row, row.needle
        )),
    }
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn bad_specs_are_refused_at_admission_naming_the_field() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-bad-adm").await;
    let _guard = DeleteOnPanic(ns.name.clone());
    let api = raw_api(&client, &ns.name);
    let rows = refused_rows();
    let results = futures::future::join_all(rows.iter().map(|r| check_refused(&api, r))).await;
    let updates = update_rows();
    let updated =
        futures::future::join_all(updates.iter().map(|u| check_update_refused(&api, u))).await;
    // The control: docs/configuration.md's spec, every field set, is admitted.
    let good: DynamicObject = serde_json::from_value(manifest("good", json!({
        "image": "redis:7.2",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "storage": {"size": "1Gi"}, "pvcRetentionPolicy": "Retain",
        "zoneKey": "topology.kubernetes.io/zone", "zoneSpread": "Required",
        "config": {"maxmemory": "1gb", "save": "\"3600 1\""},
        "auth": {"secretName": "my-secret", "secretKey": "password"},
        "pod": {"nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "redis", "effect": "NoSchedule"}],
                "priorityClassName": "", "labels": {"team": "cache"}, "annotations": {"example.com/owner": "me"}},
        "updateStrategy": {"type": "RollingUpdate", "paused": false}, "scaleInGracePeriod": "30s",
        "networkPolicy": {"enabled": true, "clients": [{"podSelector": {"matchLabels": {"app": "web"}}}]},
    })))
    .unwrap();
    let control = api
        .create(&PostParams::default(), &good)
        .await
        .err()
        .map(|e| format!("a good spec was refused: {e}"));
    let failures: Vec<String> = results
        .into_iter()
        .chain(updated)
        .chain([control])
        .flatten()
        .collect();
    eprintln!(
        "{} rows refused at admission, {} updates refused, {} wrong",
        rows.len(),
        updates.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.cleanup().await;
}

/// The most of each kind a good 3×0 spec makes.
const GOOD_SPEC_MAKES: [(&str, usize); 7] = [
    ("Pod", 3),
    ("PersistentVolumeClaim", 3),
    ("Service", 2),
    ("ConfigMap", 1),
    ("PodDisruptionBudget", 1),
    ("NetworkPolicy", 1),
    ("Secret", 1),
];

/// How many objects of each kind carry the cluster's label (the generated Secret by name).
async fn objects_of(client: &Client, ns: &str, name: &str) -> BTreeMap<&'static str, usize> {
    let sel = ListParams::default().labels(&format!("{CLUSTER_LABEL}={name}"));
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&format!("{name}-auth"))
        .await
        .ok()
        .flatten()
        .map_or(0, |_| 1);
    BTreeMap::from([
        ("Pod", count::<Pod>(client, ns, &sel).await.unwrap_or(0)),
        (
            "PersistentVolumeClaim",
            count::<PersistentVolumeClaim>(client, ns, &sel)
                .await
                .unwrap_or(0),
        ),
        (
            "Service",
            count::<Service>(client, ns, &sel).await.unwrap_or(0),
        ),
        (
            "ConfigMap",
            count::<ConfigMap>(client, ns, &sel).await.unwrap_or(0),
        ),
        (
            "PodDisruptionBudget",
            count::<PodDisruptionBudget>(client, ns, &sel)
                .await
                .unwrap_or(0),
        ),
        (
            "NetworkPolicy",
            count::<NetworkPolicy>(client, ns, &sel).await.unwrap_or(0),
        ),
        ("Secret", secret),
    ])
}

/// The first condition saying what is wrong with the row's reason and text, within 30 s.
async fn reported_condition(api: &Api<RedisCluster>, row: &Reported) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no status");
    while Instant::now() < deadline {
        if let Some(rc) = api.get_opt(row.name).await.ok().flatten() {
            let conds = rc.status.map(|s| s.conditions).unwrap_or_default();
            let wrong = |c: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition| {
                matches!(
                    (c.type_.as_str(), c.status.as_str()),
                    ("Ready", "False") | ("Degraded", "True") | ("PlacementSatisfied", "False")
                ) && c.reason == row.reason
                    && c.message.contains(row.needle)
            };
            if let Some(c) = conds.iter().find(wrong) {
                return Ok(format!(
                    "{}={} {}: {}",
                    c.type_, c.status, c.reason, c.message
                ));
            }
            last = conds
                .iter()
                .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                .collect::<Vec<_>>()
                .join(" | ");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

/// Creates the row's cluster, waits for its condition and counts what it left; what is
/// wrong, if anything.
async fn check_reported(client: &Client, ns: &str, row: &Reported) -> Option<String> {
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), ns);
    let mut m = manifest(row.name, row.extra.clone());
    m["metadata"]["annotations"] = row.annotations.clone();
    let obj: RedisCluster = serde_json::from_value(m).unwrap();
    if let Err(e) = api.create(&PostParams::default(), &obj).await {
        return Some(format!("{}: refused at admission: {e}", row.row));
    }
    let said = match reported_condition(&api, row).await {
        Ok(c) => c,
        Err(conds) => {
            return Some(format!(
                "{}: no {} condition naming {:?} within 30 s; conditions: {conds}",
                row.row, row.reason, row.needle
            ));
        }
    };
    let first = objects_of(client, ns, row.name).await;
    // A failed create is retried after the operator's wait period (30 s): the second count
    // comes after that retry, so that a claim left behind by each attempt shows.
    let attempted = matches!(row.reason, "CreateFailed" | "ApplyFailed");
    tokio::time::sleep(Duration::from_secs(if attempted { 35 } else { 5 })).await;
    let second = objects_of(client, ns, row.name).await;
    let too_many: Vec<String> = GOOD_SPEC_MAKES
        .iter()
        .filter(|(kind, most)| second[kind] > *most || second[kind] > first[kind])
        .map(|(kind, most)| {
            format!(
                "{kind} {} then {} (a good spec: {most})",
                first[kind], second[kind]
            )
        })
        .collect();
    if too_many.is_empty() {
        eprintln!("ok {}: {said}; objects {second:?}", row.row);
        None
    } else {
        Some(format!(
            "{}: objects left behind: {}",
            row.row,
            too_many.join(", ")
        ))
    }
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn admitted_bad_specs_are_reported_and_leave_nothing_behind() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-bad-op").await;
    let _guard = DeleteOnPanic(ns.name.clone());
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    for s in secrets() {
        secret_api.create(&PostParams::default(), &s).await.unwrap();
    }
    let _op = Operator::start(&ns.name);
    let rows = reported_rows();
    let failures: Vec<String> = futures::stream::iter(rows.iter())
        .map(|r| check_reported(&client, &ns.name, r))
        .buffer_unordered(8)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    eprintln!(
        "{} rows admitted and reported, {} wrong",
        rows.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.cleanup().await;
}
