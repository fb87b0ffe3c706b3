//! Table tests of "is this member dead" for members that answer from a node that is not
//! Ready (`facts::unready`), on the fixture (`fixture.rs`): leaders a (n-a1), b (n-b1), c
//! (n-c1); followers d (of a, n-b2), e (of b, n-c2), f (of c, n-a2). The fixture's nodes
//! turned NotReady 10 s ago; its members have run for 30 s.

use super::fixture::*;
use crate::controller::plan::facts::{Facts, unready};
use crate::controller::plan::*;

/// Pods the plan creates or deletes, with the reason it gives.
fn churn(p: &Plan) -> Vec<String> {
    match &p.action {
        Action::CreateMembers(news) => news
            .iter()
            .map(|n| {
                format!(
                    "create s{}m{} on {}: {}",
                    n.shard, n.member, n.node, n.reason
                )
            })
            .collect(),
        Action::DeletePods(pods) => pods
            .iter()
            .map(|(p, why)| format!("delete {p}: {why}"))
            .collect(),
        _ => Vec::new(),
    }
}

/// Every member the placement keeps stays on its node: no change for any shard.
fn placement_keeps_everyone(fx: &Fx) {
    let obs = fx.observed();
    let f = Facts::of(&obs);
    let placement = f.placement.as_ref().unwrap();
    assert!(
        placement.changes.is_empty(),
        "the placement moves members: {:?}",
        placement.changes
    );
}

#[test]
fn answering_members_on_nodes_that_missed_their_heartbeats_stay() {
    // A loaded machine: zone c's kubelets missed their lease renewals for the grace period,
    // the processes run on and the cluster reaches them.
    let mut fx = healthy();
    fx.not_ready.extend(["n-c1", "n-c2"]);
    let obs = fx.observed();
    assert_eq!(
        unready::vouched_nodes(&obs).into_iter().collect::<Vec<_>>(),
        vec!["n-c1", "n-c2"]
    );
    placement_keeps_everyone(&fx);
    let p = plan(&obs);
    assert!(churn(&p).is_empty(), "{:?}", churn(&p));
}

#[test]
fn a_member_back_from_a_crash_stays_while_its_node_is_not_yet_ready() {
    // Shard 0's leader comes back with its volume a second before the node controller marks
    // its node Ready: it answers, its container started after the node went NotReady, and
    // the other masters have yet to clear their failure reports.
    let mut fx = healthy().with_storage();
    fx.not_ready.push("n-a1");
    fx.unreachable('a');
    fx.get('a').running_for = 2;
    let obs = fx.observed();
    assert!(unready::vouched_nodes(&obs).contains("n-a1"));
    placement_keeps_everyone(&fx);
    assert!(churn(&plan(&obs)).is_empty(), "{:?}", churn(&plan(&obs)));
}

#[test]
fn an_answering_member_the_cluster_cannot_reach_is_replaced() {
    // A partition: zone c's node is NotReady, the operator still reaches its follower e, but
    // the voting masters report it unreachable and it has run since before the cut. It is
    // replaced as a lost follower would be.
    let mut fx = healthy().with_storage();
    fx.not_ready.push("n-c2");
    fx.unreachable('e');
    let obs = fx.observed();
    assert!(unready::vouched_nodes(&obs).is_empty());
    let p = plan(&obs);
    let churn = churn(&p);
    assert!(
        churn
            .iter()
            .any(|c| c.starts_with("create s1m") && c.contains("node n-c2 is not ready")),
        "{churn:?}"
    );
}

#[test]
fn a_member_that_does_not_answer_is_not_vouched_for() {
    let mut fx = healthy().with_storage();
    fx.not_ready.push("n-c2");
    fx.lose('e', Some(PodState::Running));
    fx.get('e').running_for = 2;
    assert!(unready::vouched_nodes(&fx.observed()).is_empty());
}

#[test]
fn vouching_never_opens_a_not_ready_node_to_new_members() {
    // Follower e is lost for good while zone c's other node is NotReady with a vouched-for
    // leader on it: the replacement goes to a Ready node of zone c, never to n-c1.
    let mut fx = healthy();
    fx.not_ready.push("n-c1");
    fx.lose('e', None);
    fx.get('e').offset = u64::MAX;
    let obs = fx.observed();
    assert!(unready::vouched_nodes(&obs).contains("n-c1"));
    let p = plan(&obs);
    match &p.action {
        Action::CreateMembers(news) => {
            assert_eq!(news.len(), 1, "{news:?}");
            assert_ne!(news[0].node, "n-c1", "{news:?}");
        }
        other => panic!("expected e re-placed, got {other:?}"),
    }
}
