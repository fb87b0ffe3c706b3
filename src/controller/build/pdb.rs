//! The PodDisruptionBudget: voluntary disruptions (drains) take one member at a time, so a
//! shard never loses its leader and follower together through evictions.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta;
use crate::controller::labels::{self, Names};
use crate::crd::RedisCluster;

/// PDB allowing one unavailable member of the cluster, `members` being how many member Pods
/// exist now (not being deleted).
///
/// An integer `minAvailable`, never `maxUnavailable`: for `maxUnavailable` (or a percentage)
/// the disruption controller asks the Pods' controlling owner for its scale, and a RedisCluster
/// has no scale subresource (its Pods are not one replica set), so such a budget never synced
/// (`SyncFailed`, zero disruptions allowed: every eviction refused, the controller-manager
/// retrying it on each Pod change). With `minAvailable` = members − 1 it counts the Pods it
/// selects: one eviction is allowed while every member is ready, none while one is not. The
/// count is the larger of what the spec asks and what exists, so the extra members of a
/// rolling update's surge or of a scale-in still being drained never allow a second eviction.
pub fn build(cluster: &RedisCluster, members: usize) -> PodDisruptionBudget {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let members = members.max(wanted_members(cluster));
    let min_available = i32::try_from(members.saturating_sub(1)).unwrap_or(i32::MAX);
    PodDisruptionBudget {
        metadata: meta(cluster, Names::pdb(cluster)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector_labels(&name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Members the spec asks for: every leader with its followers.
fn wanted_members(cluster: &RedisCluster) -> usize {
    let leaders = usize::try_from(cluster.spec.leaders).unwrap_or(0);
    let followers = usize::try_from(cluster.spec.followers_per_leader).unwrap_or(0);
    leaders.saturating_mul(followers.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(leaders: i32, followers: i32) -> RedisCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "redis.redis-operator.dev/v1alpha1",
            "kind": "RedisCluster",
            "metadata": {"name": "c", "namespace": "ns", "uid": "u"},
            "spec": {"leaders": leaders, "followersPerLeader": followers}
        }))
        .unwrap()
    }

    fn min_available(pdb: &PodDisruptionBudget) -> IntOrString {
        let spec = pdb.spec.as_ref().unwrap();
        assert!(
            spec.max_unavailable.is_none(),
            "maxUnavailable needs a scale subresource"
        );
        spec.min_available.clone().unwrap()
    }

    #[test]
    fn one_member_may_be_evicted_of_those_the_spec_asks_for() {
        // (leaders, followers, member Pods now) -> minAvailable
        let table = [
            ((3, 1, 6), 5),
            ((3, 1, 4), 5),  // two members missing: none may be evicted
            ((3, 1, 7), 6),  // a rolling update's surge member
            ((3, 1, 10), 9), // 5 -> 3, the two drained shards still there
            ((3, 2, 9), 8),
            ((1, 0, 1), 0),
            ((3, 1, 0), 5), // nothing created yet
        ];
        for ((leaders, followers, members), want) in table {
            let pdb = build(&cluster(leaders, followers), members);
            assert_eq!(
                min_available(&pdb),
                IntOrString::Int(want),
                "{leaders}x{followers} with {members} Pods"
            );
        }
    }

    #[test]
    fn it_selects_the_members_of_its_cluster() {
        let pdb = build(&cluster(3, 1), 6);
        let selector = pdb.spec.unwrap().selector.unwrap().match_labels.unwrap();
        assert_eq!(selector, labels::selector_labels("c"));
    }
}
