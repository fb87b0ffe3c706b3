//! The PodDisruptionBudget: evictions (drains, node-pool upgrades, the cluster autoscaler) never
//! take a member; the operator moves members off cordoned and tainted nodes itself, at its own
//! pace, a leader only after its failover.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta;
use crate::controller::labels::{self, Names};
use crate::crd::RedisCluster;

/// The budget: every member must stay available, `members` being how many member Pods exist
/// now (not being deleted).
///
/// No eviction is allowed, on purpose. An evicted follower leaves its shard short (a leader
/// whose follower is gone cannot acknowledge `WAIT 1` writes, and its crash then loses them),
/// and the Pod readiness the budget counts is "answers PING": a replacement that answers but
/// still syncs would count as healthy and let the next drain evict its shard's leader. The
/// operator sees the cordon (or an untolerated NoSchedule taint, as the autoscaler sets) and
/// re-places the member (a leader after its failover), so a `kubectl drain` waits on the budget
/// and completes once the member has moved.
///
/// An integer `minAvailable`, never `maxUnavailable` (not even 0): for `maxUnavailable` or a
/// percentage the disruption controller asks the Pods' controlling owner for its scale, and a
/// RedisCluster has no scale subresource, so such a budget never synced (`SyncFailed`, the
/// controller-manager retrying it on every Pod change), which is what earlier versions made.
/// The count is the larger of what the spec asks and what exists, so a surge's or a scale-in's
/// extra members are covered too.
pub fn build(cluster: &RedisCluster, members: usize) -> PodDisruptionBudget {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let members = members.max(wanted_members(cluster));
    let min_available = i32::try_from(members).unwrap_or(i32::MAX);
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
    fn every_member_the_spec_asks_for_or_that_exists_stays() {
        // (leaders, followers, member Pods now) -> minAvailable
        let table = [
            ((3, 1, 6), 6),
            ((3, 1, 4), 6),   // two members missing
            ((3, 1, 7), 7),   // a rolling update's surge member
            ((3, 1, 10), 10), // 5 -> 3, the two drained shards still there
            ((3, 2, 9), 9),
            ((1, 0, 1), 1),
            ((3, 1, 0), 6), // nothing created yet
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
