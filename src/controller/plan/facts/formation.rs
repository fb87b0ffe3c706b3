//! How far the cluster is from formed: MEET → slots → followers → in sync, judged from what
//! the members report now, so a crash between steps (of the operator or of a member) just
//! means the next reconcile picks up where the cluster is. The bootstrap concern acts on the
//! steps; the assessment reads the waits (and, at [`Formation::Done`], readiness).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::in_sync;
use crate::controller::observe::redis::NodeView;
use crate::redis::ids::{NodeId, SLOT_COUNT, SlotRange, even_ranges, ranges_from_slots};
use crate::redis::model::{conflicting_slots_of, slot_owners_of};
use crate::redis::ops::meet::{MeetPair, pairs_to_introduce};

/// A member as the planner needs it.
#[derive(Debug, Clone)]
pub struct Seat<'a> {
    /// Pod name (for messages and events).
    pub pod: &'a str,
    /// What the member reports, if it answered.
    pub view: Option<&'a NodeView>,
}

/// One shard: its members and which of them should lead when nobody does yet.
#[derive(Debug, Clone)]
pub struct ShardSeats<'a> {
    /// Shard index.
    pub index: usize,
    /// Members of the shard.
    pub seats: Vec<Seat<'a>>,
    /// Index into `seats` of the member placement wants as leader.
    pub preferred_leader: Option<usize>,
}

/// How far the cluster is from formed: the next thing to do, or what it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formation {
    /// Some members are not answering yet.
    WaitMembers(String),
    /// Introduce members to each other.
    Meet(Vec<MeetPair>),
    /// Handshakes are still in flight, or not every member lists every other yet: the pairs
    /// gossip has not introduced yet are introduced directly.
    WaitGossip(String, Vec<MeetPair>),
    /// Assign slot ranges to shard leaders: (leader address, shard, ranges).
    AddSlots(Vec<(SocketAddr, usize, Vec<SlotRange>)>),
    /// Attach followers: (follower address, shard, leader id).
    Replicate(Vec<(SocketAddr, usize, NodeId)>),
    /// Followers are attached but still syncing, or the cluster state is not ok yet.
    WaitSync(String),
    /// Something only a human (or a later recovery step) should resolve.
    Blocked(String),
    /// Every slot is served and every follower is in sync.
    Done,
}

/// Decides the next step from the members' reports.
pub fn next_step(shards: &[ShardSeats<'_>]) -> Formation {
    let all: Vec<&Seat<'_>> = shards.iter().flat_map(|s| s.seats.iter()).collect();
    let missing: Vec<&str> = all
        .iter()
        .filter(|s| s.view.is_none())
        .map(|s| s.pod)
        .collect();
    if !missing.is_empty() {
        return Formation::WaitMembers(format!(
            "waiting for Redis to answer on {}",
            missing.join(", ")
        ));
    }
    let views: Vec<&NodeView> = all.iter().filter_map(|s| s.view).collect();

    // 1. Everyone knows everyone: the introductions of `redis::ops::meet`, while any pair
    // still does not know each other at all.
    let ids: BTreeSet<&NodeId> = views.iter().map(|v| v.id()).collect();
    let pairs = pairs_to_introduce(&views);
    let strangers = views.first().is_some_and(|seed| {
        views
            .iter()
            .any(|v| v.id() != seed.id() && !seed.knows_at(v) && !v.knows_at(seed))
    });
    if strangers {
        return Formation::Meet(pairs);
    }
    let handshakes: usize = views.iter().map(|v| v.handshakes()).sum();
    let incomplete: Vec<String> = views
        .iter()
        .filter(|v| views.iter().any(|o| !v.knows_at(o)))
        .map(|v| v.addr.to_string())
        .collect();
    if handshakes > 0 || !incomplete.is_empty() {
        return Formation::WaitGossip(
            format!(
                "{handshakes} handshakes in flight; not yet knowing every member: {}",
                if incomplete.is_empty() {
                    "none".to_string()
                } else {
                    incomplete.join(", ")
                }
            ),
            pairs,
        );
    }

    // 2. Slots: shard i owns the i-th even range. Only slots nobody serves are assigned, so a
    // resumed bootstrap never takes a slot from another node.
    // Only slots nobody owns are free; a slot some member still attributes to a node that is
    // gone is not (the one definition of "who owns a slot").
    let conflicts = conflicting_slots_of(&views);
    if conflicts > 0 {
        return Formation::Blocked(format!(
            "{conflicts} slot(s) are claimed by more than one master"
        ));
    }
    let owners = slot_owners_of(&views);
    let owned: BTreeMap<u16, &NodeId> = owners
        .iter()
        .enumerate()
        .filter_map(|(s, o)| Some((u16::try_from(s).ok()?, o.as_ref()?)))
        .collect();
    let mut absent_owners: BTreeMap<&NodeId, usize> = BTreeMap::new();
    for id in owned.values().filter(|id| !ids.contains(*id)) {
        *absent_owners.entry(*id).or_default() += 1;
    }
    if let Some((id, count)) = absent_owners.iter().next() {
        return Formation::Blocked(format!(
            "{count} slot(s) belong to node {} that is not a running member; they stay unassigned until its shard recovers",
            id.short()
        ));
    }
    let targets = even_ranges(shards.len());
    let mut add = Vec::new();
    for (shard, target) in shards.iter().zip(&targets) {
        let Some(leader) = leader_of(shard) else {
            return Formation::Blocked(format!(
                "shard {} has no member that can lead",
                shard.index
            ));
        };
        let free: Vec<u16> = target.slots().filter(|s| !owned.contains_key(s)).collect();
        if free.is_empty() {
            continue;
        }
        if !leader.myself.is_master() {
            return Formation::Blocked(format!(
                "shard {}: slots {} are unserved and its chosen leader {} is a replica",
                shard.index, target, leader.addr
            ));
        }
        add.push((leader.addr, shard.index, ranges_from_slots(free)));
    }
    if !add.is_empty() {
        return Formation::AddSlots(add);
    }

    // 3. Followers replicate their shard's leader.
    let mut replicate = Vec::new();
    let mut syncing = Vec::new();
    for shard in shards {
        let Some(leader) = leader_of(shard) else {
            continue;
        };
        for seat in &shard.seats {
            let Some(v) = seat.view else { continue };
            if v.id() == leader.id() {
                continue;
            }
            match v.master_id() {
                Some(m) if m == leader.id() => {
                    if !in_sync(v, leader) {
                        syncing.push(seat.pod.to_string());
                    }
                }
                // A master with slots in a shard that already has a leader is a split shard;
                // replicating it would drop its keys. Leave it to recovery.
                None if v.is_serving_master() => {
                    return Formation::Blocked(format!(
                        "shard {}: {} and {} both serve slots",
                        shard.index, leader.addr, v.addr
                    ));
                }
                _ => replicate.push((v.addr, shard.index, leader.id().clone())),
            }
        }
    }
    if !replicate.is_empty() {
        return Formation::Replicate(replicate);
    }
    if !syncing.is_empty() {
        return Formation::WaitSync(format!("followers syncing: {}", syncing.join(", ")));
    }
    let not_ok: Vec<String> = views
        .iter()
        .filter(|v| !v.info.state_ok)
        .map(|v| v.addr.to_string())
        .collect();
    if !not_ok.is_empty() || owned.len() != usize::from(SLOT_COUNT) {
        return Formation::WaitSync(format!(
            "{} of {SLOT_COUNT} slots served; cluster_state not ok on: {}",
            owned.len(),
            not_ok.join(", ")
        ));
    }
    // Each member's own line is the authority for its role and slots, but clients and
    // failover act on what the others believe: Ready only once every member agrees.
    let stale: Vec<String> = views
        .iter()
        .flat_map(|observer| {
            views
                .iter()
                .filter(move |subject| !agrees(observer, subject))
                .map(move |subject| format!("{} about {}", observer.addr, subject.addr))
        })
        .collect();
    if !stale.is_empty() {
        return Formation::WaitSync(format!(
            "waiting for gossip: members do not yet agree on roles and slots ({})",
            stale.join(", ")
        ));
    }
    Formation::Done
}

/// Whether `observer` sees `subject` as `subject` sees itself: role, master and slots.
fn agrees(observer: &NodeView, subject: &NodeView) -> bool {
    observer.sees(subject.id()).is_some_and(|e| {
        e.is_master() == subject.myself.is_master()
            && e.master_id == subject.myself.master_id
            && e.slots == subject.myself.slots
    })
}

/// The member that leads the shard: its serving leader ([`super::serving_leader`]), else
/// placement's choice among the empty masters (a new shard).
pub fn leader_of<'a>(shard: &ShardSeats<'a>) -> Option<&'a NodeView> {
    let views = || shard.seats.iter().filter_map(|s| s.view);
    if let Some(v) = super::serving_leader(views()) {
        return Some(v);
    }
    shard
        .preferred_leader
        .and_then(|i| shard.seats.get(i)?.view)
        .filter(|v| v.myself.is_master())
        .or_else(|| views().find(|v| v.myself.is_master()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::parse::cluster_info::parse_cluster_info;
    use crate::redis::parse::cluster_nodes::parse_cluster_nodes;
    use crate::redis::parse::info::parse_replication_info;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// A member's view: `lines` are CLUSTER NODES lines (the first is `myself`).
    fn view(port: u16, lines: &[String], state_ok: bool, replication: &str) -> NodeView {
        let nodes = parse_cluster_nodes(&lines.join("\n")).unwrap();
        let (mine, others): (Vec<_>, Vec<_>) = nodes.into_iter().partition(|n| n.flags.myself);
        NodeView {
            addr: format!("10.0.0.{port}:6379").parse().unwrap(),
            myself: mine.into_iter().next().unwrap(),
            peers: others,
            keys: Some(0),
            memory: Default::default(),
            info: parse_cluster_info(&format!(
                "cluster_state:{}\r\n",
                if state_ok { "ok" } else { "fail" }
            ))
            .unwrap(),
            replication: parse_replication_info(replication).unwrap(),
        }
    }

    fn line(id: &str, port: u16, flags: &str, master: &str, slots: &str) -> String {
        format!("{id} 10.0.0.{port}:6379@16379 {flags} {master} 0 0 1 connected {slots}")
    }

    const MASTER_INFO: &str =
        "role:master\r\nconnected_slaves:0\r\nmaster_replid:x\r\nmaster_repl_offset:100\r\n";

    fn shard<'a>(views: &'a [NodeView]) -> Vec<ShardSeats<'a>> {
        vec![ShardSeats {
            index: 0,
            seats: views
                .iter()
                .map(|v| Seat {
                    pod: "p",
                    view: Some(v),
                })
                .collect(),
            preferred_leader: Some(0),
        }]
    }

    #[test]
    fn strangers_are_introduced_first() {
        let views = [
            view(
                1,
                &[line(A, 1, "myself,master", "-", "")],
                false,
                MASTER_INFO,
            ),
            view(
                2,
                &[line(B, 2, "myself,master", "-", "")],
                false,
                MASTER_INFO,
            ),
        ];
        assert_eq!(
            next_step(&shard(&views)),
            // Each meets the other (the seed's introductions, `redis::ops::meet`).
            Formation::Meet(vec![
                MeetPair {
                    on: views[1].addr,
                    meet: views[0].addr,
                    bus_port: Some(16379)
                },
                MeetPair {
                    on: views[0].addr,
                    meet: views[1].addr,
                    bus_port: Some(16379)
                },
            ])
        );
    }

    #[test]
    fn unserved_slots_go_to_the_preferred_leader_then_the_follower_attaches() {
        let views = [
            view(
                1,
                &[
                    line(A, 1, "myself,master", "-", ""),
                    line(B, 2, "master", "-", ""),
                ],
                false,
                MASTER_INFO,
            ),
            view(
                2,
                &[
                    line(B, 2, "myself,master", "-", ""),
                    line(A, 1, "master", "-", ""),
                ],
                false,
                MASTER_INFO,
            ),
        ];
        match next_step(&shard(&views)) {
            Formation::AddSlots(a) => {
                assert_eq!(a.len(), 1);
                assert_eq!(a[0].0, views[0].addr);
                assert_eq!(a[0].2, vec![SlotRange::new(0, 16383).unwrap()]);
            }
            other => panic!("expected AddSlots, got {other:?}"),
        }
        let served = [
            view(
                1,
                &[
                    line(A, 1, "myself,master", "-", "0-16383"),
                    line(B, 2, "master", "-", ""),
                ],
                true,
                MASTER_INFO,
            ),
            view(
                2,
                &[
                    line(B, 2, "myself,master", "-", ""),
                    line(A, 1, "master", "-", "0-16383"),
                ],
                true,
                MASTER_INFO,
            ),
        ];
        match next_step(&shard(&served)) {
            Formation::Replicate(r) => assert_eq!((r[0].0, r[0].2.as_str()), (served[1].addr, A)),
            other => panic!("expected Replicate, got {other:?}"),
        }
    }

    #[test]
    fn done_only_when_follower_in_sync_and_state_ok() {
        let replica_info = |offset: u64, up: bool| {
            format!(
                "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:{}\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:{offset}\r\nmaster_replid:x\r\nmaster_repl_offset:{offset}\r\n",
                if up { "up" } else { "down" }
            )
        };
        let views = |offset: u64, up: bool| {
            [
                view(
                    1,
                    &[
                        line(A, 1, "myself,master", "-", "0-16383"),
                        line(B, 2, "slave", A, ""),
                    ],
                    true,
                    MASTER_INFO,
                ),
                view(
                    2,
                    &[
                        line(B, 2, "myself,slave", A, ""),
                        line(A, 1, "master", "-", "0-16383"),
                    ],
                    true,
                    &replica_info(offset, up),
                ),
            ]
        };
        let syncing = views(0, false);
        assert!(matches!(
            next_step(&shard(&syncing)),
            Formation::WaitSync(_)
        ));
        let synced = views(100, true);
        assert_eq!(next_step(&shard(&synced)), Formation::Done);
    }

    #[test]
    fn a_member_that_does_not_answer_blocks_nothing_but_is_awaited() {
        let v = [view(
            1,
            &[line(A, 1, "myself,master", "-", "")],
            false,
            MASTER_INFO,
        )];
        let shards = vec![ShardSeats {
            index: 0,
            seats: vec![
                Seat {
                    pod: "p0",
                    view: Some(&v[0]),
                },
                Seat {
                    pod: "p1",
                    view: None,
                },
            ],
            preferred_leader: Some(0),
        }];
        assert!(matches!(next_step(&shards), Formation::WaitMembers(m) if m.contains("p1")));
    }

    #[test]
    fn slots_of_a_vanished_leader_are_never_given_to_an_empty_member() {
        // A (answering, empty) still lists C, which is gone, as the owner of every slot: a
        // replacement must not be handed C's slots without C's data.
        const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
        let views = [
            view(
                1,
                &[
                    line(A, 1, "myself,master", "-", ""),
                    line(B, 2, "master", "-", ""),
                    line(C, 3, "master,fail?", "-", "0-16383"),
                ],
                false,
                MASTER_INFO,
            ),
            view(
                2,
                &[
                    line(B, 2, "myself,master", "-", ""),
                    line(A, 1, "master", "-", ""),
                ],
                false,
                MASTER_INFO,
            ),
        ];
        match next_step(&shard(&views)) {
            Formation::Blocked(m) => {
                assert!(m.contains("16384 slot(s)") && m.contains("cccccccc"), "{m}")
            }
            other => panic!("expected Blocked, got {other:?}"),
        }
    }

    #[test]
    fn done_waits_until_every_member_agrees_on_roles() {
        let synced_replica = "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:100\r\nmaster_replid:x\r\nmaster_repl_offset:100\r\n";
        let leader_view = |follower_flags: &str, follower_master: &str| {
            view(
                1,
                &[
                    line(A, 1, "myself,master", "-", "0-16383"),
                    line(B, 2, follower_flags, follower_master, ""),
                ],
                true,
                MASTER_INFO,
            )
        };
        let follower = view(
            2,
            &[
                line(B, 2, "myself,slave", A, ""),
                line(A, 1, "master", "-", "0-16383"),
            ],
            true,
            synced_replica,
        );
        // The leader has not yet heard that B follows it.
        let stale = [leader_view("master", "-"), follower.clone()];
        assert!(
            matches!(next_step(&shard(&stale)), Formation::WaitSync(m) if m.contains("gossip")),
            "{:?}",
            next_step(&shard(&stale))
        );
        let agreed = [leader_view("slave", A), follower];
        assert_eq!(next_step(&shard(&agreed)), Formation::Done);
    }
}
