//! Which support objects (ConfigMap, Services, PDB, NetworkPolicy) are already as this process
//! last applied them, so that a pass does not server-side apply an unchanged object again.
//!
//! Every pass used to apply all five, a no-op almost always: about 8 server-side applies a
//! second with a handful of clusters (counted on the API server in the e2e suite, where they were
//! its busiest writes), each a full structured merge on the API server. An object is applied
//! again only when what this process would apply changed, or the object's resourceVersion is
//! not the one its last apply returned: anyone's edit or a delete and recreate bumps it, so
//! drift is still undone on the next pass. The memory lives in the process only: a restarted
//! operator applies each object once more. Keyed by the owning cluster's uid, so a cluster
//! deleted and created again under the same name starts afresh.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

/// An object: the owning RedisCluster's uid, the object's kind and its name.
pub type Key = (String, String, String);

/// What the last apply of an object sent (a hash of it) and the resourceVersion it returned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    desired: u64,
    resource_version: String,
}

/// [`Applied`] of every support object this process applied. Shared by the reconciles (one
/// per cluster at a time, so no two passes race on a cluster's objects).
#[derive(Debug, Clone, Default)]
pub struct AppliedMemory(Arc<Mutex<HashMap<Key, Applied>>>);

/// A stable-in-process fingerprint of what would be applied.
pub fn fingerprint<T: serde::Serialize>(object: &T) -> Option<u64> {
    let bytes = serde_json::to_vec(object).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

impl AppliedMemory {
    /// Whether the object found with `resource_version` is the one this process last applied
    /// from the same `desired` fingerprint.
    pub fn unchanged(&self, key: &Key, desired: u64, resource_version: Option<&str>) -> bool {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).is_some_and(|a| {
            a.desired == desired && Some(a.resource_version.as_str()) == resource_version
        })
    }

    /// Remembers an apply of `desired` that returned `resource_version` (none: forget it, so
    /// the next pass applies again).
    pub fn record(&self, key: Key, desired: u64, resource_version: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match resource_version {
            Some(resource_version) => {
                map.insert(
                    key,
                    Applied {
                        desired,
                        resource_version,
                    },
                );
            }
            None => {
                map.remove(&key);
            }
        }
    }

    /// Forgets every object of the cluster with this uid (it was deleted).
    pub fn forget_cluster(&self, uid: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|(owner, _, _), _| owner != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("uid-1".into(), "Service".into(), name.into())
    }

    #[test]
    fn only_the_same_desired_object_at_the_version_it_was_applied_at_is_unchanged() {
        let memory = AppliedMemory::default();
        assert!(!memory.unchanged(&key("a"), 1, Some("10")), "never applied");
        memory.record(key("a"), 1, Some("10".into()));
        assert!(memory.unchanged(&key("a"), 1, Some("10")));
        assert!(
            !memory.unchanged(&key("a"), 2, Some("10")),
            "the spec changed"
        );
        assert!(
            !memory.unchanged(&key("a"), 1, Some("11")),
            "someone edited it"
        );
        assert!(!memory.unchanged(&key("a"), 1, None), "it is gone");
        assert!(
            !memory.unchanged(&key("b"), 1, Some("10")),
            "another object"
        );
        memory.record(key("a"), 1, None);
        assert!(!memory.unchanged(&key("a"), 1, Some("10")), "forgotten");
    }

    #[test]
    fn a_deleted_cluster_is_forgotten_and_others_kept() {
        let memory = AppliedMemory::default();
        memory.record(key("a"), 1, Some("10".into()));
        let other: Key = ("uid-2".into(), "Service".into(), "a".into());
        memory.record(other.clone(), 1, Some("5".into()));
        memory.forget_cluster("uid-1");
        assert!(!memory.unchanged(&key("a"), 1, Some("10")));
        assert!(memory.unchanged(&other, 1, Some("5")));
    }

    #[test]
    fn fingerprints_follow_the_content() {
        let a = serde_json::json!({"spec": {"ports": [6379]}});
        let b = serde_json::json!({"spec": {"ports": [6380]}});
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
