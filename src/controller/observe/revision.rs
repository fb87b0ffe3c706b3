//! Pure: what a member is built from, as one comparable revision, and the config applied live.
//!
//! A member Pod carries the revision it was built from. Everything that needs a new process to
//! take effect is in it: the Pod template (image, resources, scripts, probes, pod settings) and
//! the restart-requiring part of redis.conf. Config keys Redis accepts at runtime are not: they
//! are applied with `CONFIG SET` and recorded on the Pod instead, so changing them restarts
//! nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::controller::build::pod::{self, MemberPod};
use crate::controller::config;
use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::NodeView;
use crate::crd::{RedisCluster, UpdateStrategyType};

/// What members should run, from the spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The revision every member should carry.
    pub revision: String,
    /// Runtime-settable config every member's process should have.
    pub live: BTreeMap<String, String>,
    /// `RollingUpdate`: the operator restarts outdated members itself.
    pub rolling: bool,
    /// The rolling update is paused by the user.
    pub paused: bool,
    /// Outdated members are replaced by a surge member that syncs before they retire
    /// (`updateStrategy.maxSurge`), rather than restarted in place.
    pub surge: bool,
    /// redis.conf turns the AOF on (the baseline): a member whose process runs without it
    /// (a follower started from its shutdown RDB, `scripts/resume-rdb.sh`) gets it back live.
    pub aof: bool,
}

/// The runtime config applied to a member's process, as recorded on its Pod.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LiveApplied {
    /// The container's restart count when it was applied (a restart re-reads redis.conf).
    pub restarts: i32,
    /// The settings.
    pub config: BTreeMap<String, String>,
}

impl LiveApplied {
    /// The annotation value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the annotation value.
    pub fn from_annotation(value: &str) -> Option<Self> {
        serde_json::from_str(value).ok()
    }
}

/// The target of `cluster`'s spec.
pub fn target(cluster: &RedisCluster) -> Target {
    let (restart, live) = config::split_live(&cluster.spec.config);
    let template = pod::build(
        cluster,
        &MemberPod {
            shard: 0,
            member: 0,
            name: "template".into(),
            node: "template",
            pvc: cluster.spec.storage.as_ref().map(|_| "template".into()),
            auth_secret: "",
            auth_key: "",
            revision: "",
            live_config: "",
        },
    );
    let overrides = cluster.spec.pod.clone().unwrap_or_default();
    let inputs = serde_json::json!({
        "pod": without_node_loss_tolerations(template.spec),
        "labels": overrides.labels,
        "annotations": overrides.annotations,
        "auth": cluster.spec.auth,
        "config": config::render(&restart),
    });
    Target {
        revision: config::hash(&inputs.to_string()),
        live,
        rolling: cluster.spec.update_strategy.type_ == UpdateStrategyType::RollingUpdate,
        paused: cluster.spec.update_strategy.paused,
        surge: cluster.spec.update_strategy.surge(),
        aof: config::aof_on(&cluster.spec.config),
    }
}

/// The template without the node-loss tolerations the operator adds
/// ([`crate::controller::build::pod::tolerations`]): the revision is what it was before they
/// existed, so an upgrade does not roll every member. Members created since carry them; older
/// ones get them when they are next replaced.
fn without_node_loss_tolerations(
    spec: Option<k8s_openapi::api::core::v1::PodSpec>,
) -> Option<k8s_openapi::api::core::v1::PodSpec> {
    use crate::controller::build::pod::{NODE_LOSS_TAINTS, node_loss_toleration};
    spec.map(|mut spec| {
        let kept: Vec<_> = spec
            .tolerations
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| {
                !NODE_LOSS_TAINTS
                    .iter()
                    .any(|k| *t == node_loss_toleration(k))
            })
            .collect();
        spec.tolerations = (!kept.is_empty()).then_some(kept);
        spec
    })
}

/// The runtime config recorded as applied to `m`'s process, if any.
pub fn live_applied(m: &Member) -> Option<LiveApplied> {
    LiveApplied::from_annotation(m.annotation(crate::controller::labels::LIVE_CONFIG_ANNOTATION)?)
}

/// The config a member's redis.conf (the ConfigMap) holds: every restart-requiring key of the
/// spec, and of the runtime-settable keys only the values Redis has accepted, i.e. that a
/// member records as applied (`CONFIG SET` succeeded). A live value Redis refuses is reported
/// (`ConfigRejected`) and never reaches the file a restart reads: a restarted member keeps the
/// last accepted value, or Redis's default when none was ever accepted, instead of failing to
/// start. New members start from this file and are given the rest live.
pub fn file_config<'a>(
    spec: &BTreeMap<String, String>,
    target: &Target,
    members: impl Iterator<Item = &'a Member>,
) -> BTreeMap<String, String> {
    let applied: Vec<BTreeMap<String, String>> =
        members.filter_map(live_applied).map(|a| a.config).collect();
    let mut file: BTreeMap<String, String> = spec
        .iter()
        .filter(|(k, _)| !target.live.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, wanted) in &target.live {
        let accepted = applied
            .iter()
            .filter_map(|a| a.get(key))
            .find(|v| *v == wanted)
            .or_else(|| applied.iter().find_map(|a| a.get(key)));
        if let Some(value) = accepted {
            file.insert(key.clone(), value.clone());
        }
    }
    file
}

/// The live part of [`file_config`]: what a member created now starts with (its annotation).
pub fn live_in_file(file: &BTreeMap<String, String>, target: &Target) -> BTreeMap<String, String> {
    file.iter()
        .filter(|(k, _)| target.live.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether `m` must be restarted to match `target`: it was built from another revision, or
/// its process holds a runtime setting the spec no longer has (Redis cannot unset a key; only
/// a restart brings back the default).
pub fn outdated(m: &Member, target: &Target) -> bool {
    if m.revision() != Some(target.revision.as_str()) {
        return true;
    }
    live_applied(m).is_some_and(|a| a.config.keys().any(|k| !target.live.contains_key(k)))
}

/// Whether `m` (up to date otherwise) needs the runtime config applied: it differs from the
/// target, or its container restarted since it was applied.
pub fn needs_live_config(m: &Member, target: &Target) -> bool {
    match live_applied(m) {
        None => !target.live.is_empty(),
        Some(a) => a.config != target.live || a.restarts != m.restart_count(),
    }
}

/// Whether `v`'s process runs without the AOF `target` asks for: a follower that started from
/// its shutdown RDB for a partial resync (`scripts/resume-rdb.sh`), until the AOF is turned
/// back on. Such a member is not outdated (its revision and recorded live config are the
/// spec's): only the AOF is due, once [`aof_due`] says so.
pub fn aof_off(v: &NodeView, target: &Target) -> bool {
    target.aof && !v.persistence.aof_enabled
}

/// Whether the AOF of a member running without it ([`aof_off`]) may be turned on now: a
/// leader at once (its writes must reach its disk), a follower once its replication link is up
/// and no full sync runs. Before that the resync is not settled: `CONFIG SET appendonly yes`
/// forks a rewrite of the whole dataset, which a full sync would discard and redo, and while
/// the RDB is still loading it would write a partial dataset. The follower's lag does not
/// matter here, so this is not [`crate::redis::sync::in_sync`]'s question.
pub fn aof_due(v: &NodeView) -> bool {
    v.replication
        .replica_link()
        .is_none_or(|l| l.link_up && !l.sync_in_progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RedisClusterSpec;

    fn member_with(applied: &[(&str, &str)]) -> Member {
        let config: BTreeMap<String, String> = applied
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let annotation = LiveApplied {
            restarts: 0,
            config,
        }
        .to_annotation();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "m", "annotations": {
                crate::controller::labels::LIVE_CONFIG_ANNOTATION: annotation}},
        }))
        .unwrap();
        Member {
            shard: 0,
            member: 0,
            pod: std::sync::Arc::new(pod),
        }
    }

    #[test]
    fn the_file_holds_only_live_values_redis_accepted() {
        let c = cluster(serde_json::json!({"leaders": 3, "config": {
            "maxmemory-policy": "bogus", "maxmemory": "100mb", "tcp-backlog": "256"}}));
        let t = target(&c);
        let spec = &c.spec.config;
        // Nothing applied yet (a new cluster): restart keys only; the rest is given live.
        let none = file_config(spec, &t, std::iter::empty());
        assert_eq!(none.keys().collect::<Vec<_>>(), vec!["tcp-backlog"]);
        // maxmemory accepted; the refused policy keeps the last accepted value.
        let members = [member_with(&[
            ("maxmemory", "100mb"),
            ("maxmemory-policy", "allkeys-lru"),
        ])];
        let file = file_config(spec, &t, members.iter());
        assert_eq!(file["maxmemory"], "100mb");
        assert_eq!(file["maxmemory-policy"], "allkeys-lru");
        assert_eq!(file["tcp-backlog"], "256");
        assert_eq!(live_in_file(&file, &t).len(), 2);
        // Once one member accepted the spec's value, the file has it.
        let members = [
            member_with(&[("maxmemory-policy", "allkeys-lru")]),
            member_with(&[("maxmemory-policy", "bogus")]),
        ];
        assert_eq!(
            file_config(spec, &t, members.iter())["maxmemory-policy"],
            "bogus"
        );
    }

    fn cluster(spec: serde_json::Value) -> RedisCluster {
        let spec: RedisClusterSpec = serde_json::from_value(spec).unwrap();
        let mut c = RedisCluster::new("demo", spec);
        c.metadata.namespace = Some("ns".into());
        c
    }

    #[test]
    fn live_keys_do_not_change_the_revision() {
        let base = target(&cluster(serde_json::json!({"leaders": 3})));
        let live = target(&cluster(
            serde_json::json!({"leaders": 3, "config": {"maxmemory-policy": "allkeys-lru"}}),
        ));
        assert_eq!(base.revision, live.revision);
        assert_eq!(
            live.live.get("maxmemory-policy").map(String::as_str),
            Some("allkeys-lru")
        );
        // maxmemory is live too, but with the default resources it sets the memory limit
        // (build::resources), and a Pod's limit changes only with a new Pod.
        let sized = |mm: &str| {
            target(&cluster(
                serde_json::json!({"leaders": 3, "config": {"maxmemory": mm}}),
            ))
        };
        assert_ne!(sized("100mb").revision, sized("200mb").revision);
        assert_eq!(sized("100mb").live["maxmemory"], "100mb");
        // With spec.resources, maxmemory is applied live only.
        let fixed = |mm: &str| {
            target(&cluster(serde_json::json!({"leaders": 3,
                "resources": {"limits": {"memory": "1Gi"}}, "config": {"maxmemory": mm}})))
            .revision
        };
        assert_eq!(fixed("100mb"), fixed("200mb"));
    }

    #[test]
    fn image_restart_keys_resources_and_pod_settings_change_it() {
        let base = target(&cluster(serde_json::json!({"leaders": 3})));
        for spec in [
            serde_json::json!({"leaders": 3, "image": "redis:7.0"}),
            serde_json::json!({"leaders": 3, "config": {"databases": "4"}}),
            serde_json::json!({"leaders": 3, "resources": {"requests": {"cpu": "100m"}}}),
            serde_json::json!({"leaders": 3, "pod": {"labels": {"team": "a"}}}),
        ] {
            assert_ne!(
                target(&cluster(spec.clone())).revision,
                base.revision,
                "{spec}"
            );
        }
        // The shape of the cluster is not what a member is built from.
        let bigger = target(&cluster(
            serde_json::json!({"leaders": 5, "followersPerLeader": 2}),
        ));
        assert_eq!(bigger.revision, base.revision);
    }

    #[test]
    fn update_strategy_is_read() {
        let t = target(&cluster(serde_json::json!({
            "leaders": 3, "updateStrategy": {"type": "OnDelete", "paused": true}
        })));
        assert!(!t.rolling);
        assert!(t.paused);
        assert!(target(&cluster(serde_json::json!({"leaders": 3}))).rolling);
    }

    #[test]
    fn live_annotation_round_trips() {
        let a = LiveApplied {
            restarts: 2,
            config: BTreeMap::from([("maxmemory".into(), "1gb".into())]),
        };
        assert_eq!(LiveApplied::from_annotation(&a.to_annotation()), Some(a));
        assert_eq!(LiveApplied::from_annotation("garbage"), None);
    }
}
