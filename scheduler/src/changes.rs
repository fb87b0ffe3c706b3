//! The ordered steps from the current members to a placement (see [`Change`] for the order).

use crate::assignment::{Assignment, Origin, Seat};
use crate::current::CurrentView;
use crate::inventory::Inventory;
use crate::model::{NodeStatus, Request, Role, Spread};
use crate::placement::Change;

/// Phase of a removal in the change list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// The member serves nothing: remove before anything else.
    Dead,
    /// Its node slot is needed by a create.
    MakeRoom,
    /// After creates and failovers.
    Last,
}

/// Lists the changes that turn `view` into `assignment`.
pub(crate) fn plan(
    inventory: &Inventory<'_>,
    view: &CurrentView<'_>,
    assignment: &Assignment,
    request: &Request,
) -> Vec<Change> {
    let per_shard = request.members_per_shard();
    let mut stays = vec![false; view.members.len()];
    for seat in assignment.shards.iter().flat_map(|s| s.seats()) {
        if let Origin::Kept(m) = seat.origin
            && let Some(flag) = stays.get_mut(m)
        {
            *flag = true;
        }
    }

    // Removals with their phase and reason.
    let mut removals: Vec<(Phase, usize, String)> = Vec::new();
    for (i, m) in view.members.iter().enumerate() {
        if stays[i] {
            continue;
        }
        let planned = usize::try_from(m.shard)
            .ok()
            .and_then(|s| assignment.shards.get(s));
        let (phase, reason) = match (m.healthy, m.node) {
            (false, _) => (Phase::Dead, "the member is unhealthy".to_string()),
            (true, None) => (
                Phase::Dead,
                format!("node {} is not in the topology", m.node_name),
            ),
            (true, Some(node)) => (
                Phase::Last,
                why_moved(inventory, request, m.shard, node, planned),
            ),
        };
        removals.push((phase, i, reason));
    }

    // A node whose slots are all planned can take a create only once a dropped member leaves.
    let mut load = vec![0u64; inventory.nodes.len()];
    let mut gets_new = vec![false; inventory.nodes.len()];
    for seat in assignment.shards.iter().flat_map(|s| s.seats()) {
        load[seat.node] += 1;
        gets_new[seat.node] |= seat.origin == Origin::New;
    }
    // Members still serving once the early removals are done: a shard with one of them gets
    // new members as followers that sync from it.
    let mut live = vec![0usize; assignment.shards.len()];
    for m in &view.members {
        if let (true, Some(_), Some(count)) = (
            m.healthy,
            m.node,
            usize::try_from(m.shard).ok().and_then(|s| live.get_mut(s)),
        ) {
            *count += 1;
        }
    }
    for (phase, i, _) in &mut removals {
        let m = &view.members[*i];
        if let (Phase::Last, Some(node)) = (*phase, m.node) {
            load[node] += 1;
            let shard_live = usize::try_from(m.shard).ok().and_then(|s| live.get_mut(s));
            // Never empty a shard early: its last live member is the new members' data source.
            let last_source = shard_live.as_ref().is_some_and(|count| **count <= 1);
            if gets_new[node] && load[node] > u64::from(inventory.slots(node)) && !last_source {
                *phase = Phase::MakeRoom;
                if let Some(count) = shard_live {
                    *count -= 1;
                }
            }
        }
    }

    let mut creates = Vec::new();
    let mut failovers = Vec::new();
    for (shard_index, seats) in assignment.shards.iter().enumerate() {
        let shard = u32::try_from(shard_index).unwrap_or(u32::MAX);
        let any_live = live.get(shard_index).is_some_and(|&count| count > 0);
        let mut replaced = removals
            .iter()
            .filter(|(_, i, _)| view.members[*i].shard == shard)
            .map(|(_, i, reason)| (view.members[*i].node_name, reason.as_str()));
        let had_members = view.members.iter().any(|m| m.shard == shard);
        for (is_leader, seat) in
            std::iter::once((true, &seats.leader)).chain(seats.followers.iter().map(|s| (false, s)))
        {
            if seat.origin != Origin::New {
                continue;
            }
            let zone = inventory.zone_name(inventory.zone_of(seat.node));
            let role = if is_leader && !any_live {
                Role::Leader
            } else {
                Role::Follower
            };
            let reason = if !any_live && had_members {
                format!(
                    "shard {shard} has no healthy member left; it restarts empty in zone {zone}"
                )
            } else if !any_live {
                "new shard".to_string()
            } else if let Some((node, why)) = replaced.next() {
                format!("replaces the member on {node} ({why})")
            } else if is_leader {
                format!("zone {zone} takes a leader of shard {shard}")
            } else {
                format!("shard {shard} needs {per_shard} members")
            };
            creates.push(Change::Create {
                shard,
                role,
                node: inventory.node_name(seat.node).to_string(),
                zone: zone.to_string(),
                reason,
            });
        }
        if let Some(change) = failover(
            inventory,
            view,
            &stays,
            shard,
            &seats.leader,
            &seats.followers,
            any_live,
        ) {
            failovers.push(change);
        }
    }

    removals
        .sort_by_key(|(phase, i, _)| (*phase, view.members[*i].shard, view.members[*i].node_name));
    creates.sort_by_key(create_key);
    let remove = |(_, i, reason): &(Phase, usize, String)| {
        let m = &view.members[*i];
        Change::Remove {
            shard: m.shard,
            role: m.role,
            node: m.node_name.to_string(),
            reason: reason.clone(),
        }
    };
    let mut changes = Vec::with_capacity(removals.len() + creates.len() + failovers.len());
    changes.extend(removals.iter().filter(|r| r.0 < Phase::Last).map(remove));
    changes.extend(creates);
    changes.extend(failovers);
    changes.extend(removals.iter().filter(|r| r.0 == Phase::Last).map(remove));
    changes
}

fn create_key(change: &Change) -> (u32, bool, String) {
    match change {
        Change::Create {
            shard, role, node, ..
        } => (*shard, *role != Role::Leader, node.clone()),
        other => (other.shard(), true, String::new()),
    }
}

/// Why a healthy member on a known node leaves.
fn why_moved(
    inventory: &Inventory<'_>,
    request: &Request,
    shard: u32,
    node: usize,
    planned: Option<&crate::assignment::ShardSeats>,
) -> String {
    let name = inventory.node_name(node);
    let Some(planned) = planned else {
        return format!(
            "shard {shard} is beyond the {} wanted shards; migrate its hash slots away first",
            request.leaders
        );
    };
    match inventory.nodes.get(node).map(|n| n.status) {
        Some(NodeStatus::NotReady) => return format!("node {name} is not ready"),
        Some(NodeStatus::Cordoned) => return format!("node {name} is cordoned"),
        Some(NodeStatus::Tainted { taint }) => return format!("node {name} has taint {taint}"),
        _ => {}
    }
    let zone = inventory.zone_of(node);
    let zone_info = inventory.zones.get(zone);
    if inventory.slots(node) == 0 {
        return format!("node {name} has no room for a member");
    }
    if request.spread == Spread::Required && zone_info.is_some_and(|z| !z.labeled) {
        return format!("node {name} has no zone label");
    }
    if planned.seats().any(|s| inventory.zone_of(s.node) == zone)
        && request.spread == Spread::Required
    {
        return format!(
            "shard {shard} keeps another member in zone {}",
            inventory.zone_name(zone)
        );
    }
    if let Some(new) = planned.seats().find(|s| s.origin == Origin::New) {
        return format!(
            "shard {shard} moves a member to zone {} to spread leaders and members",
            inventory.zone_name(inventory.zone_of(new.node))
        );
    }
    format!(
        "shard {shard} keeps {} members elsewhere",
        request.members_per_shard()
    )
}

/// The failover a shard needs, if its planned leader is not its only current leader.
fn failover(
    inventory: &Inventory<'_>,
    view: &CurrentView<'_>,
    stays: &[bool],
    shard: u32,
    leader: &Seat,
    followers: &[Seat],
    any_live: bool,
) -> Option<Change> {
    let is_leader_now = |seat: &Seat| match seat.origin {
        Origin::Kept(m) => view.members.get(m).is_some_and(|p| p.role == Role::Leader),
        Origin::New => false,
    };
    if leader.origin == Origin::New && !any_live {
        return None;
    }
    let leaders_now = std::iter::once(leader)
        .chain(followers)
        .filter(|s| is_leader_now(s))
        .count();
    let rival = leaders_now > 1;
    if is_leader_now(leader) && !rival {
        return None;
    }
    let current = view
        .members
        .iter()
        .enumerate()
        .find(|(_, m)| m.shard == shard && m.role == Role::Leader);
    let to = inventory.node_name(leader.node).to_string();
    let to_zone = inventory.zone_name(inventory.zone_of(leader.node));
    let reason = match current {
        None => format!("shard {shard} has no leader"),
        Some(_) if rival => format!("shard {shard} has more than one member claiming to lead"),
        Some((i, m)) if !stays.get(i).copied().unwrap_or(false) => {
            format!("the leader on {} leaves the plan", m.node_name)
        }
        Some((_, m)) => {
            let from_zone = m
                .node
                .map_or("", |n| inventory.zone_name(inventory.zone_of(n)));
            format!("moves the leader from zone {from_zone} to zone {to_zone} to spread leaders")
        }
    };
    Some(Change::Failover {
        shard,
        to,
        from: current.map(|(_, m)| m.node_name.to_string()),
        reason,
    })
}
