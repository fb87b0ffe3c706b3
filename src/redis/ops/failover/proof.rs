//! The proofs a failover of a gone leader rests on, built from the cluster's own view: that
//! the leader is gone ([`LeaderGone`]), and for a TAKEOVER beside a reachable majority, that
//! nothing else could stand for its slots.

use crate::redis::ids::NodeId;
use crate::redis::model::{ClusterView, NodeObservation};
use crate::redis::ops::OpError;

/// Evidence that a leader is gone, established from a [`ClusterView`]. It cannot be built any
/// other way, so FORCE and TAKEOVER cannot be requested without looking at the cluster first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderGone {
    leader: NodeId,
    observers: usize,
    fail_by: usize,
    pfail_by: usize,
    link_down_by: usize,
    voters_reporting: usize,
    voters_fail: usize,
    quorum: usize,
}

impl LeaderGone {
    /// Establishes the proof: the operator cannot reach the leader, at least one node knows
    /// it, and every reachable node that knows it flags it PFAIL or FAIL or has lost its bus
    /// link to it (a killed process refuses connections at once, long before PFAIL).
    pub fn establish(view: &ClusterView, leader: &NodeId) -> Result<Self, OpError> {
        if let Some(node) = view.node(leader) {
            return Err(OpError::Refused(format!(
                "leader {} answers at {}; it is not gone",
                leader.short(),
                node.addr
            )));
        }
        let voters = view.voting_masters();
        let mut observers = 0;
        let mut fail_by = 0;
        let mut pfail_by = 0;
        let mut link_down_by = 0;
        let mut voters_reporting = 0;
        let mut voters_fail = 0;
        for node in &view.nodes {
            let Some(entry) = node.sees(leader) else {
                continue;
            };
            observers += 1;
            if node.is_master() && voters.contains(node.id()) {
                voters_reporting += 1;
                voters_fail += usize::from(entry.flags.fail);
            }
            if entry.flags.fail {
                fail_by += 1;
            } else if entry.flags.pfail {
                pfail_by += 1;
            } else if entry.reports_unreachable() {
                link_down_by += 1;
            } else {
                return Err(OpError::Refused(format!(
                    "{} still considers leader {} healthy",
                    node.id().short(),
                    leader.short()
                )));
            }
        }
        if observers == 0 {
            return Err(OpError::Refused(format!(
                "no reachable node knows leader {}",
                leader.short()
            )));
        }
        Ok(Self {
            leader: leader.clone(),
            observers,
            fail_by,
            pfail_by,
            link_down_by,
            voters_reporting,
            voters_fail,
            quorum: view.quorum(),
        })
    }

    /// The leader this proof is about.
    pub fn leader(&self) -> &NodeId {
        &self.leader
    }

    /// Some node reports FAIL, which Redis only sets once a majority of masters agreed.
    pub fn agreed_by_cluster(&self) -> bool {
        self.fail_by > 0
    }

    /// A majority of the voting masters (every one of which answered) reports the leader
    /// failing or unreachable on the cluster bus: the cluster's own view, not the operator's
    /// reachability, says it is gone, even before Redis's timers turn that into FAIL.
    pub fn unreachable_for_majority(&self) -> bool {
        self.voters_reporting >= self.quorum
    }

    /// A majority of the voting masters flags the leader FAIL: the agreement they would ask
    /// of an election before voting for its follower.
    pub fn failed_for_majority(&self) -> bool {
        self.voters_fail >= self.quorum
    }

    /// How many reachable nodes flag the leader (FAIL, PFAIL) out of those that know it.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.fail_by, self.pfail_by, self.observers)
    }

    /// How many reachable nodes have lost their bus link to the leader without flagging it
    /// yet.
    pub fn link_down_by(&self) -> usize {
        self.link_down_by
    }
}

/// Nodes other than `replica` that could still stand for `leader`'s slots: every follower of
/// it that answers, and every one the answering nodes list as its follower that fewer than a
/// majority of the voting masters report unreachable (the masters may reach it though the
/// operator does not). A TAKEOVER beside a live rival would be two promotions for one shard.
pub fn rivals(view: &ClusterView, replica: &NodeId, leader: &NodeId) -> Vec<NodeId> {
    let voters = view.voting_masters();
    let listed: std::collections::BTreeSet<&NodeId> = view
        .nodes
        .iter()
        .flat_map(|n| std::iter::once(&n.myself).chain(n.peers.iter()))
        .filter(|e| !e.flags.handshake && e.master_id.as_ref() == Some(leader))
        .map(|e| &e.id)
        .chain(view.replicas_of(leader).map(NodeObservation::id))
        .filter(|id| *id != replica)
        .collect();
    listed
        .into_iter()
        .filter(|id| {
            view.node(id).is_some()
                || view
                    .masters()
                    .filter(|m| voters.contains(m.id()))
                    .filter(|m| m.sees(id).is_some_and(|e| e.reports_unreachable()))
                    .count()
                    < view.quorum()
        })
        .cloned()
        .collect()
}

/// The checks of [`FailoverMode::ElectionStalled`] beyond FORCE's: the voting majority flags
/// the leader FAIL and nothing but `replica` could stand for its slots.
pub(super) fn check_stalled(
    view: &ClusterView,
    replica: &NodeId,
    leader: &NodeId,
    fresh: &LeaderGone,
) -> Result<(), OpError> {
    if !fresh.failed_for_majority() {
        return Err(OpError::Refused(format!(
            "only {} voting master(s) flag {} FAIL, {} needed: without their agreement a \
             TAKEOVER is not what an election would have decided",
            fresh.voters_fail,
            leader.short(),
            fresh.quorum
        )));
    }
    if let Some(why) = taken_over(view, leader) {
        return Err(OpError::Refused(why));
    }
    let rivals = rivals(view, replica, leader);
    if !rivals.is_empty() {
        return Err(OpError::Refused(format!(
            "{} may still stand for {}'s slots; a TAKEOVER beside them would be two promotions \
             for one shard",
            rivals
                .iter()
                .map(NodeId::short)
                .collect::<Vec<_>>()
                .join(", "),
            leader.short()
        )));
    }
    Ok(())
}

/// Why a TAKEOVER for `leader` would take slots from someone: some node's table gives a slot
/// attributed to `leader` to another node (someone was promoted for the shard, and the
/// TAKEOVER's higher epoch would take the slot back with its new writes), or no table
/// attributes any slot to it. Any line counts, not the slot map's majority: one node that
/// heard of a promotion is enough to refuse.
fn taken_over(view: &ClusterView, leader: &NodeId) -> Option<String> {
    let mut held = vec![false; usize::from(crate::redis::ids::SLOT_COUNT)];
    let lines = || {
        view.nodes
            .iter()
            .flat_map(|n| std::iter::once(&n.myself).chain(n.peers.iter()))
    };
    for e in lines().filter(|e| &e.id == leader) {
        for slot in e.slots.iter().flat_map(|r| r.start..=r.end) {
            if let Some(h) = held.get_mut(usize::from(slot)) {
                *h = true;
            }
        }
    }
    if !held.contains(&true) {
        return Some(format!("no node attributes a slot to {}", leader.short()));
    }
    let (other, slot) = lines()
        .filter(|e| &e.id != leader && !e.flags.handshake)
        .find_map(|e| {
            let slot = e
                .slots
                .iter()
                .flat_map(|r| r.start..=r.end)
                .find(|s| held.get(usize::from(*s)) == Some(&true))?;
            Some((&e.id, slot))
        })?;
    Some(format!(
        "slot {slot} of {} is attributed to {} now; a TAKEOVER would take it back",
        leader.short(),
        other.short()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> NodeId {
        c.to_string().repeat(40).parse().unwrap()
    }

    fn port(c: char) -> u16 {
        7000 + u16::from(c as u8 - b'a')
    }

    /// A `CLUSTER NODES` line of node `c` as `me` sees it; `rest` is its master column
    /// (`-` for a master, then its slots).
    fn line(me: char, c: char, role: &str, flag: &str, epoch: u64, rest: &str) -> String {
        let myself = if me == c { "myself," } else { "" };
        let link = if flag.is_empty() {
            "connected"
        } else {
            "disconnected"
        };
        let flags = format!("{myself}{role}{flag}");
        let (master, slots) = rest.split_once(' ').unwrap_or((rest, ""));
        let p = port(c);
        format!(
            "{} 127.0.0.1:{p}@{} {flags} {master} 0 0 {epoch} {link} {slots}",
            id(c),
            p + 10000
        )
    }

    /// Leader a (slots 0-5460) is gone; b and c lead the rest; d follows a. `a_flag` is how
    /// each voter (b, c) flags a; `extra` adds lines for every observer.
    fn view(a_flags: [&str; 2], extra: &dyn Fn(char) -> Vec<String>) -> ClusterView {
        let observers = ['b', 'c', 'd'];
        let nodes = observers
            .iter()
            .map(|&me| {
                let a_flag = match me {
                    'b' => a_flags[0],
                    'c' => a_flags[1],
                    _ => ",fail",
                };
                let mut lines = vec![
                    line(me, 'a', "master", a_flag, 1, "- 0-5460"),
                    line(me, 'b', "master", "", 2, "- 5461-10922"),
                    line(me, 'c', "master", "", 3, "- 10923-16383"),
                    line(me, 'd', "slave", "", 1, &id('a').to_string()),
                ];
                lines.extend(extra(me));
                let replication = if me == 'd' {
                    "role:slave\nmaster_host:127.0.0.1\nmaster_port:7000\nmaster_link_status:down\nmaster_sync_in_progress:0\nslave_repl_offset:90\nmaster_link_down_since_seconds:9\nmaster_replid:x\nmaster_repl_offset:90\n"
                } else {
                    "role:master\nmaster_replid:y\nmaster_repl_offset:90\n"
                };
                NodeObservation::from_replies(
                    format!("127.0.0.1:{}", port(me)).parse().unwrap(),
                    &(lines.join("\n") + "\n"),
                    "cluster_state:ok\n",
                    replication,
                    Some(10),
                )
                .unwrap()
            })
            .collect();
        ClusterView {
            nodes,
            unreachable: Vec::new(),
        }
    }

    fn check(v: &ClusterView) -> Result<(), OpError> {
        let proof = LeaderGone::establish(v, &id('a')).unwrap();
        check_stalled(v, &id('d'), &id('a'), &proof)
    }

    fn none(_: char) -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn an_only_follower_of_a_leader_the_majority_flags_fail_may_take_over() {
        assert!(check(&view([",fail", ",fail"], &none)).is_ok());
    }

    #[test]
    fn without_the_majority_flagging_fail_it_may_not() {
        let e = check(&view([",fail", ",fail?"], &none)).unwrap_err();
        assert!(
            e.to_string().contains("only 1 voting master(s) flag"),
            "{e}"
        );
    }

    #[test]
    fn a_second_follower_reachable_to_the_masters_is_a_rival() {
        // e follows a too; the operator cannot reach it, and only b reports it unreachable.
        let seen = |me: char| {
            let flag = if me == 'b' { ",fail?" } else { "" };
            vec![line(me, 'e', "slave", flag, 1, &id('a').to_string())]
        };
        let e = check(&view([",fail", ",fail"], &seen)).unwrap_err();
        assert!(e.to_string().contains(id('e').short()), "{e}");
        // Both voters report it unreachable: it cannot win an election either.
        let gone = |me: char| vec![line(me, 'e', "slave", ",fail?", 1, &id('a').to_string())];
        assert!(check(&view([",fail", ",fail"], &gone)).is_ok());
    }

    #[test]
    fn slots_someone_else_serves_now_are_not_taken_back() {
        // e was elected for a's slots (epoch 9); d has not heard yet. c still lists a with
        // them, b already routes them to e.
        let promoted = |me: char| match me {
            'b' => vec![line(me, 'e', "master", "", 9, "- 0-5460")],
            _ => vec![line(me, 'e', "slave", "", 1, &id('a').to_string())],
        };
        let e = check(&view([",fail", ",fail"], &promoted)).unwrap_err();
        assert!(e.to_string().contains("attributed to eeeeeeee"), "{e}");
    }
}
