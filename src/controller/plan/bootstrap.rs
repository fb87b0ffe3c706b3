//! Pure decision of the next Redis step that turns running members into one healthy cluster:
//! MEET → slots → followers → in sync. Every step is derived from what the members report now,
//! so a crash between steps (of the operator or of a member) just means the next reconcile picks
//! up where the cluster is.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use redis_scheduler::{Placement, Role};

use super::health::in_sync;
use super::{Action, Plan};
use crate::controller::observe::Observed;
use crate::controller::observe::redis::NodeView;
use crate::redis::ids::{NodeId, SLOT_COUNT, SlotRange, even_ranges, ranges_from_slots};

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

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Some members are not answering yet.
    WaitMembers(String),
    /// Introduce members to each other: each pair is (on, meet).
    Meet(Vec<(SocketAddr, SocketAddr)>),
    /// Handshakes are still in flight, or not every member lists every other yet.
    WaitGossip(String),
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
pub fn next_step(shards: &[ShardSeats<'_>]) -> Step {
    let all: Vec<&Seat<'_>> = shards.iter().flat_map(|s| s.seats.iter()).collect();
    let missing: Vec<&str> = all
        .iter()
        .filter(|s| s.view.is_none())
        .map(|s| s.pod)
        .collect();
    if !missing.is_empty() {
        return Step::WaitMembers(format!(
            "waiting for Redis to answer on {}",
            missing.join(", ")
        ));
    }
    let views: Vec<&NodeView> = all.iter().filter_map(|s| s.view).collect();

    // 1. Everyone knows everyone. MEET from the first member to each one it lacks, and from
    // every member that lacks the first: gossip spreads the rest.
    let ids: BTreeSet<&NodeId> = views.iter().map(|v| v.id()).collect();
    let mut meets = Vec::new();
    if let Some(seed) = views.first() {
        for v in &views {
            if v.id() == seed.id() {
                continue;
            }
            if !seed.knows_at(v) && !v.knows_at(seed) {
                meets.push((seed.addr, v.addr));
            }
        }
    }
    if !meets.is_empty() {
        return Step::Meet(meets);
    }
    let handshakes: usize = views.iter().map(|v| v.handshakes()).sum();
    let incomplete: Vec<String> = views
        .iter()
        .filter(|v| views.iter().any(|o| !v.knows_at(o)))
        .map(|v| v.addr.to_string())
        .collect();
    if handshakes > 0 || !incomplete.is_empty() {
        return Step::WaitGossip(format!(
            "{handshakes} handshakes in flight; not yet knowing every member: {}",
            if incomplete.is_empty() {
                "none".to_string()
            } else {
                incomplete.join(", ")
            }
        ));
    }

    // 2. Slots: shard i owns the i-th even range. Only slots nobody serves are assigned, so a
    // resumed bootstrap never takes a slot from another node.
    let owned: BTreeMap<u16, &NodeId> = owners(&views);
    let mut absent_owners: BTreeMap<&NodeId, usize> = BTreeMap::new();
    for id in owned.values().filter(|id| !ids.contains(*id)) {
        *absent_owners.entry(*id).or_default() += 1;
    }
    if let Some((id, count)) = absent_owners.iter().next() {
        return Step::Blocked(format!(
            "{count} slot(s) belong to node {} that is not a running member; they stay unassigned until its shard recovers",
            id.short()
        ));
    }
    let targets = even_ranges(shards.len());
    let mut add = Vec::new();
    for (shard, target) in shards.iter().zip(&targets) {
        let Some(leader) = leader_of(shard) else {
            return Step::Blocked(format!("shard {} has no member that can lead", shard.index));
        };
        let free: Vec<u16> = target.slots().filter(|s| !owned.contains_key(s)).collect();
        if free.is_empty() {
            continue;
        }
        if !leader.myself.is_master() {
            return Step::Blocked(format!(
                "shard {}: slots {} are unserved and its chosen leader {} is a replica",
                shard.index, target, leader.addr
            ));
        }
        add.push((leader.addr, shard.index, ranges_from_slots(free)));
    }
    if !add.is_empty() {
        return Step::AddSlots(add);
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
                    return Step::Blocked(format!(
                        "shard {}: {} and {} both serve slots",
                        shard.index, leader.addr, v.addr
                    ));
                }
                _ => replicate.push((v.addr, shard.index, leader.id().clone())),
            }
        }
    }
    if !replicate.is_empty() {
        return Step::Replicate(replicate);
    }
    if !syncing.is_empty() {
        return Step::WaitSync(format!("followers syncing: {}", syncing.join(", ")));
    }
    let not_ok: Vec<String> = views
        .iter()
        .filter(|v| !v.info.state_ok)
        .map(|v| v.addr.to_string())
        .collect();
    if !not_ok.is_empty() || owned.len() != usize::from(SLOT_COUNT) {
        return Step::WaitSync(format!(
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
        return Step::WaitSync(format!(
            "waiting for gossip: members do not yet agree on roles and slots ({})",
            stale.join(", ")
        ));
    }
    Step::Done
}

/// The bootstrap step as a [`Plan`]: the live members grouped by shard, placement's leader as
/// the preferred one, and `Ready` once the cluster is done and every member Pod is ready.
pub fn plan(obs: &Observed, placement: &Placement) -> Plan {
    let live: Vec<_> = obs.live().collect();
    let views = obs.views_by_pod();
    // The shard's live members by ordinal, and the one on `leader_node` as preferred leader.
    let shard = |index: usize, leader_node: Option<&str>| {
        let mut in_shard: Vec<_> = live.iter().filter(|m| m.shard == index).collect();
        in_shard.sort_by_key(|m| m.member);
        ShardSeats {
            index,
            preferred_leader: leader_node
                .and_then(|n| in_shard.iter().position(|m| m.node() == Some(n))),
            seats: in_shard
                .iter()
                .map(|m| Seat {
                    pod: m.name(),
                    view: views.get(m.name()),
                })
                .collect(),
        }
    };
    let mut shards: Vec<ShardSeats<'_>> = placement
        .shards
        .iter()
        .map(|sp| {
            let leader_node = sp
                .members
                .iter()
                .find(|pm| pm.role == Role::Leader)
                .map(|pm| pm.node.as_str());
            shard(sp.index as usize, leader_node)
        })
        .collect();
    // Shards beyond spec.leaders (being drained by a scale-in) are still members: their
    // masters own slots until drained, and their followers keep following.
    let beyond: std::collections::BTreeSet<usize> = live
        .iter()
        .map(|m| m.shard)
        .filter(|s| *s >= placement.shards.len())
        .collect();
    shards.extend(beyond.into_iter().map(|index| shard(index, None)));
    match next_step(&shards) {
        Step::Done => {
            let not_ready: Vec<&str> = live
                .iter()
                .filter(|m| !m.ready())
                .map(|m| m.name())
                .collect();
            if live.len() < obs.shape.members() {
                Plan::wait(
                    "WaitingForMembers",
                    format!("{} of {} members exist", live.len(), obs.shape.members()),
                )
            } else if !not_ready.is_empty() {
                Plan::wait(
                    "WaitingForPods",
                    format!(
                        "cluster formed; waiting for pods to pass readiness: {}",
                        not_ready.join(", ")
                    ),
                )
            } else {
                let mut plan =
                    Plan::wait("ClusterReady", "all slots served, every follower in sync");
                plan.ready = true;
                plan
            }
        }
        Step::WaitMembers(m) => Plan::wait("WaitingForMembers", m),
        Step::Meet(pairs) => Plan::step(
            Action::Meet,
            "JoiningMembers",
            format!("introducing {} member pairs (CLUSTER MEET)", pairs.len()),
        ),
        // While gossip spreads, pairs that still do not know each other are introduced
        // directly: gossip alone takes seconds to complete the mesh.
        Step::WaitGossip(m) => Plan::step(Action::Meet, "JoiningMembers", m),
        Step::AddSlots(a) => {
            let n = a.len();
            Plan::step(
                Action::AddSlots(a),
                "AssigningSlots",
                format!("assigning slots to {n} shard leaders"),
            )
        }
        Step::Replicate(r) => {
            let n = r.len();
            Plan::step(
                Action::Replicate(r),
                "AttachingFollowers",
                format!("attaching {n} followers"),
            )
        }
        Step::WaitSync(m) => Plan::wait("WaitingForSync", m),
        Step::Blocked(m) => {
            let mut plan = Plan::wait("Blocked", m.clone());
            plan.problems.push(super::Problem::new("Blocked", m));
            plan
        }
    }
}

/// Whether `observer` sees `subject` as `subject` sees itself: role, master and slots.
fn agrees(observer: &NodeView, subject: &NodeView) -> bool {
    observer.sees(subject.id()).is_some_and(|e| {
        e.is_master() == subject.myself.is_master()
            && e.master_id == subject.myself.master_id
            && e.slots == subject.myself.slots
    })
}

/// The member that leads the shard: the one serving slots, else placement's choice among the
/// empty masters.
pub fn leader_of<'a>(shard: &ShardSeats<'a>) -> Option<&'a NodeView> {
    let views = || shard.seats.iter().filter_map(|s| s.view);
    if let Some(v) = views().find(|v| v.is_serving_master()) {
        return Some(v);
    }
    shard
        .preferred_leader
        .and_then(|i| shard.seats.get(i)?.view)
        .filter(|v| v.myself.is_master())
        .or_else(|| views().find(|v| v.myself.is_master()))
}

/// Slot → owner as any member reports it: a node's own `myself` line, and also what others
/// say about nodes that are not answering. A slot some member still attributes to a node that
/// is gone is not free: it belongs to that node's shard, whose follower may take over with the
/// data, and giving it to an empty node would serve it without its keys.
fn owners<'a>(views: &[&'a NodeView]) -> BTreeMap<u16, &'a NodeId> {
    let mut out = BTreeMap::new();
    for v in views {
        for entry in std::iter::once(&v.myself).chain(v.peers.iter()) {
            if !entry.is_master() || entry.flags.handshake {
                continue;
            }
            for r in &entry.slots {
                for s in r.slots() {
                    // A node's own word about its slots wins over hearsay.
                    if entry.flags.myself || !out.contains_key(&s) {
                        out.insert(s, &entry.id);
                    }
                }
            }
        }
    }
    out
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
            Step::Meet(vec![(views[0].addr, views[1].addr)])
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
            Step::AddSlots(a) => {
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
            Step::Replicate(r) => assert_eq!((r[0].0, r[0].2.as_str()), (served[1].addr, A)),
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
        assert!(matches!(next_step(&shard(&syncing)), Step::WaitSync(_)));
        let synced = views(100, true);
        assert_eq!(next_step(&shard(&synced)), Step::Done);
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
        assert!(matches!(next_step(&shards), Step::WaitMembers(m) if m.contains("p1")));
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
            Step::Blocked(m) => {
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
            matches!(next_step(&shard(&stale)), Step::WaitSync(m) if m.contains("gossip")),
            "{:?}",
            next_step(&shard(&stale))
        );
        let agreed = [leader_view("slave", A), follower];
        assert_eq!(next_step(&shard(&agreed)), Step::Done);
    }
}
