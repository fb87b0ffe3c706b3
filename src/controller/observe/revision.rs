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
        "pod": template.spec,
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
    }
}

/// The runtime config recorded as applied to `m`'s process, if any.
pub fn live_applied(m: &Member) -> Option<LiveApplied> {
    LiveApplied::from_annotation(m.annotation(crate::controller::labels::LIVE_CONFIG_ANNOTATION)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RedisClusterSpec;

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
            serde_json::json!({"leaders": 3, "config": {"maxmemory": "100mb"}}),
        ));
        assert_eq!(base.revision, live.revision);
        assert_eq!(
            live.live.get("maxmemory").map(String::as_str),
            Some("100mb")
        );
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
