//! Changes of `spec.leaders` on a cluster that already serves its slots. Adding or removing a
//! shard means moving slots (resharding), which this version does not do yet; until it does,
//! such a change must be refused visibly, before any Pod is created or removed.

use std::collections::BTreeSet;

use super::redis_view::NodeView;
use crate::redis::ids::SLOT_COUNT;

/// Refuses a change of the number of shards of a formed cluster, explaining why and how to
/// undo it. `members` are (shard index, the member's view if it answered) of every live member.
pub fn unsupported_resize(
    spec_leaders: usize,
    members: &[(usize, Option<&NodeView>)],
) -> Option<String> {
    let serving: Vec<(usize, &NodeView)> = members
        .iter()
        .filter_map(|(shard, v)| Some((*shard, (*v)?)))
        .filter(|(_, v)| v.is_serving_master())
        .collect();
    let shards: BTreeSet<usize> = serving.iter().map(|(s, _)| *s).collect();
    let formed = shards.len();
    let beyond: Vec<usize> = shards
        .iter()
        .copied()
        .filter(|s| *s >= spec_leaders)
        .collect();
    if !beyond.is_empty() {
        return Some(format!(
            "spec.leaders is {spec_leaders} but shard(s) {} still serve slots: removing shards (moving their slots away first) is not supported yet; set spec.leaders back to {formed}",
            join(&beyond)
        ));
    }
    let served: usize = serving.iter().map(|(_, v)| v.myself.slot_count()).sum();
    if served == usize::from(SLOT_COUNT) && formed < spec_leaders {
        return Some(format!(
            "spec.leaders is {spec_leaders} but the cluster serves all slots with {formed} shards: adding shards (moving slots to them) is not supported yet; set spec.leaders back to {formed}"
        ));
    }
    None
}

fn join(shards: &[usize]) -> String {
    shards
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::model::NodeObservation;

    fn master(id: char, slots: &str) -> NodeView {
        let id: String = std::iter::repeat_n(id, 40).collect();
        NodeObservation::from_replies(
            "10.0.0.1:6379".parse().unwrap(),
            &format!("{id} 10.0.0.1:6379@16379 myself,master - 0 0 1 connected {slots}"),
            "cluster_state:ok\r\n",
            "role:master\r\nmaster_replid:x\r\nmaster_repl_offset:0\r\n",
            Some(0),
        )
        .unwrap()
    }

    #[test]
    fn bootstrap_and_steady_state_are_not_resizes() {
        let a = master('a', "0-5460");
        let b = master('b', "5461-10922");
        let c = master('c', "10923-16383");
        let fresh = master('d', "");
        // Half-way through assigning slots: not every shard serves yet.
        assert_eq!(
            unsupported_resize(3, &[(0, Some(&a)), (1, Some(&fresh)), (2, None)]),
            None
        );
        assert_eq!(
            unsupported_resize(3, &[(0, Some(&a)), (1, Some(&b)), (2, Some(&c))]),
            None
        );
    }

    #[test]
    fn growing_a_formed_cluster_is_refused() {
        let a = master('a', "0-5460");
        let b = master('b', "5461-10922");
        let c = master('c', "10923-16383");
        let msg = unsupported_resize(4, &[(0, Some(&a)), (1, Some(&b)), (2, Some(&c))]).unwrap();
        assert!(
            msg.contains("adding shards") && msg.contains("back to 3"),
            "{msg}"
        );
    }

    #[test]
    fn shrinking_a_formed_cluster_is_refused() {
        let a = master('a', "0-4095");
        let b = master('b', "4096-8191");
        let c = master('c', "8192-12287");
        let d = master('d', "12288-16383");
        let members = [(0, Some(&a)), (1, Some(&b)), (2, Some(&c)), (3, Some(&d))];
        let msg = unsupported_resize(3, &members).unwrap();
        assert!(
            msg.contains("shard(s) 3") && msg.contains("back to 4"),
            "{msg}"
        );
    }
}
