//! Read-your-writes for the reflector caches: after creating Pods and PVCs, wait (bounded)
//! until the caches hold them, so that the next pass does not plan from a cache that lacks
//! them. A planner that does not see a member it just created creates it again: a second
//! Pod with the same shard and ordinal (seen in `make test`: scale-out created shard 4's
//! follower twice, 1.5 s apart, under load).

use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};

/// How long a pass waits for its own creations to reach the caches. The watch delivers them
/// in milliseconds; this bounds a lagging watch, after which the pass ends as before.
pub const LIMIT: Duration = Duration::from_secs(5);

/// The names among `names` that `store` does not hold yet in namespace `ns`.
pub fn missing<K>(store: &Store<K>, ns: &str, names: &[String]) -> Vec<String>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    names
        .iter()
        .filter(|n| store.get(&ObjectRef::new(n).within(ns)).is_none())
        .cloned()
        .collect()
}

/// Waits until `store` holds every one of `names` in `ns`, at most `limit`; returns the ones
/// still missing then (empty: all cached).
pub async fn wait_for<K>(
    store: &Store<K>,
    ns: &str,
    names: &[String],
    limit: Duration,
) -> Vec<String>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let started = Instant::now();
    loop {
        let left = missing(store, ns, names);
        if left.is_empty() || started.elapsed() >= limit {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;
    use kube::runtime::reflector::store;
    use kube::runtime::watcher::Event;

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[tokio::test]
    async fn waits_until_the_watch_delivers_the_created_pod_and_no_longer() {
        let (reader, mut writer) = store::<Pod>();
        writer.apply_watcher_event(&Event::Apply(pod("a")));
        let names = vec!["a".to_string(), "b".to_string()];
        assert_eq!(missing(&reader, "ns", &names), vec!["b".to_string()]);
        // Another namespace's "b" is not ours.
        let mut other = pod("b");
        other.metadata.namespace = Some("other".into());
        writer.apply_watcher_event(&Event::Apply(other));
        assert_eq!(missing(&reader, "ns", &names), vec!["b".to_string()]);

        let delivered = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            writer.apply_watcher_event(&Event::Apply(pod("b")));
            writer
        });
        let started = Instant::now();
        let left = wait_for(&reader, "ns", &names, Duration::from_secs(5)).await;
        assert!(left.is_empty(), "{left:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let _writer = delivered.await.unwrap();

        // Never delivered: the wait ends at the limit and names what is missing.
        let never = vec!["c".to_string()];
        let left = wait_for(&reader, "ns", &never, Duration::from_millis(150)).await;
        assert_eq!(left, never);
    }
}
