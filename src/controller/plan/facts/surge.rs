//! Surge pairs of a rolling update (`updateStrategy.maxSurge`): an outdated member is replaced
//! by a new member created beside it, which syncs before the old one retires, so a shard never
//! runs below its followers in sync. The pair is what the replacement's Pod records
//! ([`REPLACES_ANNOTATION`]): an operator restarted mid-surge sees the same pair, and nothing
//! else is remembered.

use std::collections::BTreeSet;

use crate::controller::labels::{REPLACES_ANNOTATION, REPLACES_ID_ANNOTATION};
use crate::controller::observe::Observed;
use crate::controller::observe::pods::Member;
use crate::redis::ids::NodeId;

/// A live replacement and the live outdated member it replaces, in one shard.
#[derive(Debug, Clone, Copy)]
pub struct Surge<'a> {
    /// The shard.
    pub shard: usize,
    /// The surge member.
    pub replacement: &'a Member,
    /// The outdated member that retires once the replacement is in sync.
    pub retiring: &'a Member,
}

/// The surge pairs under way: a live member whose Pod names a live member of its shard as the
/// one it replaces. Once the retiring member's Pod is deleted the pair is over, and the
/// replacement is a member like any other.
pub fn pairs(obs: &Observed) -> Vec<Surge<'_>> {
    obs.live()
        .filter_map(|replacement| {
            let name = replacement.annotation(REPLACES_ANNOTATION)?;
            let retiring = obs
                .live()
                .find(|m| m.name() == name && m.shard == replacement.shard)?;
            Some(Surge {
                shard: replacement.shard,
                replacement,
                retiring,
            })
        })
        .collect()
}

/// Identities of members a rolling update retired: named on a live replacement's Pod, their
/// own Pod no longer live (gone or going). They left on purpose, once their replacement was
/// in sync: forgotten at once, and no problem meanwhile.
pub fn retired_ids(obs: &Observed) -> Vec<NodeId> {
    obs.live()
        .filter_map(|m| {
            let pod = m.annotation(REPLACES_ANNOTATION)?;
            let id: NodeId = m.annotation(REPLACES_ID_ANNOTATION)?.parse().ok()?;
            (!obs.live().any(|o| o.name() == pod)).then_some(id)
        })
        .collect()
}

/// Whether `m` is one side of a surge pair.
pub fn paired(pairs: &[Surge<'_>], m: &Member) -> bool {
    pairs
        .iter()
        .any(|p| p.replacement.name() == m.name() || p.retiring.name() == m.name())
}

/// Where a replacement for `retiring` can run: a schedulable node with room for a member that
/// holds no member and no volume of this cluster (one member per node; a volume bound there
/// would be reused), in a zone no other member of the shard uses, the retiring member's zone
/// first (the shard ends where it was). `Err` says why there is no room.
pub fn seat(obs: &Observed, retiring: &Member) -> Result<(String, String), String> {
    let taken: BTreeSet<&str> = obs
        .members
        .iter()
        .filter(|m| !m.finished())
        .filter_map(Member::node)
        .chain(obs.claims.iter().filter_map(|c| c.node.as_deref()))
        .collect();
    let shard_zones: BTreeSet<&str> = obs
        .live()
        .filter(|m| m.shard == retiring.shard && m.name() != retiring.name())
        .filter_map(|m| Some(obs.zone_of(m.node()?)))
        .collect();
    let home = retiring.node().map(|n| obs.zone_of(n));
    let want = &obs.request.member_resources;
    let mut seats: Vec<(bool, &str, &str)> = obs
        .topology
        .nodes
        .iter()
        .filter(|n| n.status.is_schedulable() && !taken.contains(n.name.as_str()))
        .filter(|n| {
            n.capacity.pods >= 1
                && n.capacity.cpu_millis >= want.cpu_millis
                && n.capacity.memory_bytes >= want.memory_bytes
        })
        .filter_map(|n| {
            let zone = n.zone.as_deref()?;
            (!shard_zones.contains(zone)).then_some((Some(zone) != home, zone, n.name.as_str()))
        })
        .collect();
    seats.sort_unstable();
    seats
        .first()
        .map(|(_, zone, node)| (node.to_string(), zone.to_string()))
        .ok_or_else(|| {
            let used: Vec<&str> = shard_zones.into_iter().collect();
            format!(
                "no schedulable node with room for one more member outside zone(s) {} that holds no member or volume of this cluster",
                if used.is_empty() {
                    "-".to_string()
                } else {
                    used.join(", ")
                }
            )
        })
}
