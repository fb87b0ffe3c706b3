//! Detecting the empty-master hazard (reference §2.5, S4): a leader that still owns slots came
//! back without its data (no persistence, lost volume) while its followers still hold data.
//! The followers are about to full-sync the empty dataset and wipe the shard, so the operator
//! must act before they do (stop the followers from syncing, fail over to the follower with
//! the data, or at least alert).

use crate::redis::ids::NodeId;
use crate::redis::model::ClusterView;

/// A follower that still holds data its empty leader lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerWithData {
    /// The follower.
    pub id: NodeId,
    /// Keys it holds (`DBSIZE`).
    pub keys: u64,
    /// Its replication offset; higher than the leader's after a restart from nothing.
    pub offset: u64,
    /// Whether it is already receiving a full sync (the wipe is under way).
    pub sync_in_progress: bool,
}

/// A leader with slots and no keys whose followers hold keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmptyMasterHazard {
    /// The empty leader.
    pub leader: NodeId,
    /// Slots it owns.
    pub slots: usize,
    /// The leader's replication offset (small after a restart).
    pub leader_offset: u64,
    /// Followers that still have data.
    pub followers_with_data: Vec<FollowerWithData>,
}

/// Finds every leader that owns slots, reports zero keys, and has a follower reporting keys.
/// A leader still loading its dataset (`DBSIZE` unavailable) is not flagged: it is about to
/// have data.
pub fn empty_master_hazards(view: &ClusterView) -> Vec<EmptyMasterHazard> {
    view.masters()
        .filter(|m| !m.myself.slots.is_empty() && m.keys == Some(0))
        .filter_map(|leader| {
            let followers: Vec<FollowerWithData> = view
                .replicas_of(leader.id())
                .filter_map(|r| {
                    let keys = r.keys.filter(|k| *k > 0)?;
                    Some(FollowerWithData {
                        id: r.id().clone(),
                        keys,
                        offset: r.replication.master_repl_offset,
                        sync_in_progress: r
                            .replication
                            .replica_link()
                            .is_some_and(|l| l.sync_in_progress),
                    })
                })
                .collect();
            (!followers.is_empty()).then(|| EmptyMasterHazard {
                leader: leader.id().clone(),
                slots: leader.myself.slot_count(),
                leader_offset: leader.replication.master_repl_offset,
                followers_with_data: followers,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::model::NodeObservation;

    const LEADER: &str = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca";
    const FOLLOWER: &str = "07c37dfeb235213a872192d90877d0cd55635b91";

    fn obs(nodes: &str, replication: &str, keys: u64, port: u16) -> NodeObservation {
        NodeObservation::from_replies(
            format!("127.0.0.1:{port}").parse().unwrap(),
            nodes,
            "cluster_state:ok\n",
            replication,
            Some(keys),
        )
        .unwrap()
    }

    fn view(leader_keys: u64, follower_keys: u64) -> ClusterView {
        let leader_nodes = format!(
            "{LEADER} 127.0.0.1:1@11 myself,master - 0 0 1 connected 0-16383\n{FOLLOWER} 127.0.0.1:2@12 slave {LEADER} 0 0 1 connected\n"
        );
        let follower_nodes = format!(
            "{LEADER} 127.0.0.1:1@11 master - 0 0 1 connected 0-16383\n{FOLLOWER} 127.0.0.1:2@12 myself,slave {LEADER} 0 0 1 connected\n"
        );
        ClusterView {
            nodes: vec![
                obs(
                    &leader_nodes,
                    "role:master\nmaster_replid:b\nmaster_repl_offset:14\n",
                    leader_keys,
                    1,
                ),
                obs(
                    &follower_nodes,
                    "role:slave\nmaster_host:127.0.0.1\nmaster_port:1\nmaster_link_status:down\nmaster_sync_in_progress:1\nslave_repl_offset:9000\nmaster_replid:a\nmaster_repl_offset:9000\n",
                    follower_keys,
                    2,
                ),
            ],
            unreachable: Vec::new(),
        }
    }

    #[test]
    fn flags_empty_leader_with_loaded_follower() {
        let hazards = empty_master_hazards(&view(0, 500));
        assert_eq!(hazards.len(), 1);
        assert_eq!(hazards[0].leader.as_str(), LEADER);
        assert_eq!(hazards[0].followers_with_data[0].keys, 500);
        assert!(hazards[0].followers_with_data[0].sync_in_progress);
    }

    #[test]
    fn quiet_when_leader_has_data_or_followers_are_empty() {
        assert!(empty_master_hazards(&view(10, 500)).is_empty());
        assert!(empty_master_hazards(&view(0, 0)).is_empty());
    }
}
