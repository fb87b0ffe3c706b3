//! The current members in a canonical order, and which of them may stay where they are.

use std::collections::HashSet;

use crate::inventory::Inventory;
use crate::model::{CurrentMember, Request, Role};

/// One current member, resolved against the inventory.
#[derive(Debug)]
pub(crate) struct Present<'a> {
    pub shard: u32,
    pub role: Role,
    pub node_name: &'a str,
    /// `None` when the node is not in the topology.
    pub node: Option<usize>,
    pub healthy: bool,
}

/// Current members sorted by shard, leaders first, healthy first, then node name, with
/// repeated (shard, node) pairs dropped so that the input order never changes the plan.
#[derive(Debug)]
pub(crate) struct CurrentView<'a> {
    pub members: Vec<Present<'a>>,
}

/// A current member that may stay on its node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kept {
    /// Index into [`CurrentView::members`].
    pub member: usize,
    pub node: usize,
    pub zone: usize,
    /// Redis reports it as leader.
    pub leader: bool,
}

impl<'a> CurrentView<'a> {
    /// Resolves `current` against `inventory`.
    pub(crate) fn new(inventory: &Inventory<'a>, current: &'a [CurrentMember]) -> Self {
        let mut members: Vec<Present<'a>> = current
            .iter()
            .map(|m| Present {
                shard: m.shard,
                role: m.role,
                node_name: m.node.as_str(),
                node: inventory.node(&m.node),
                healthy: m.healthy,
            })
            .collect();
        members.sort_by(|a, b| {
            (a.shard, a.role, !a.healthy, a.node_name).cmp(&(
                b.shard,
                b.role,
                !b.healthy,
                b.node_name,
            ))
        });
        let mut seen = HashSet::new();
        members.retain(|m| seen.insert((m.shard, m.node_name)));
        Self { members }
    }

    /// Members that may stay: healthy, shard wanted, node known with a slot, zone accepted by
    /// `zone_ok`; at most one per shard and zone when `one_per_zone`; never more on a node than
    /// its slots, leaders served first. Indexed by shard `0..L`.
    pub(crate) fn keepable(
        &self,
        inventory: &Inventory<'_>,
        request: &Request,
        one_per_zone: bool,
        zone_ok: impl Fn(usize) -> bool,
    ) -> Vec<Vec<Kept>> {
        let shards = usize::try_from(request.leaders).unwrap_or(usize::MAX);
        let mut kept: Vec<Vec<Kept>> = vec![Vec::new(); shards];
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        // Leaders claim node slots before followers so that a full node keeps its leaders.
        order.sort_by_key(|&i| {
            let m = &self.members[i];
            (m.role, m.shard, m.node_name)
        });
        let mut used = vec![0u32; inventory.nodes.len()];
        let mut zone_taken: HashSet<(u32, usize)> = HashSet::new();
        for i in order {
            let m = &self.members[i];
            let Some(node) = m.node else { continue };
            let Some(list) = usize::try_from(m.shard).ok().and_then(|s| kept.get_mut(s)) else {
                continue;
            };
            let zone = inventory.zone_of(node);
            if !m.healthy || !zone_ok(zone) || used[node] >= inventory.slots(node) {
                continue;
            }
            if one_per_zone && !zone_taken.insert((m.shard, zone)) {
                continue;
            }
            used[node] += 1;
            list.push(Kept {
                member: i,
                node,
                zone,
                leader: m.role == Role::Leader,
            });
        }
        for list in &mut kept {
            list.sort_by_key(|k| k.member);
        }
        kept
    }
}
