//! Which PVCs stand for a member: held (its Pod is gone but its volume will bring it back),
//! orphaned (no member will use it again), and whose recorded identity is stale.

use crate::controller::observe::{Claim, Observed};
use crate::crd::PvcRetentionPolicy;
use crate::redis::ids::NodeId;

/// PVCs that stand for a member whose Pod is gone (or still stopping): intact, bound to a
/// node, recording an identity the cluster still knows (or none yet), of an ordinal no live
/// member holds, in a shard that misses members. At most one per node and no more than the
/// shard misses.
pub fn held(obs: &Observed) -> Vec<&Claim> {
    let per_shard = 1 + obs.shape.followers;
    let known = obs.view.known_ids();
    let mut out: Vec<&Claim> = Vec::new();
    for c in &obs.claims {
        let Some(node) = c.node.as_deref() else {
            continue;
        };
        // A claim whose ordinal a live member of its shard already holds stands for no
        // member: reviving it would give the shard two members with one ordinal (seen in the
        // soak, seed 20261214 round 95: a new member took the ordinal while an older claim of
        // it sat on another node, its identity re-learned from a member restarted from its
        // volume). It is an orphan.
        if c.deleting
            || c.shard >= obs.shape.leaders
            || obs.live().any(|m| m.claim() == Some(c.name.as_str()))
            || obs
                .live()
                .any(|m| m.shard == c.shard && m.member == c.member)
        {
            continue;
        }
        if let Some(id) = &c.node_id
            && !obs.view.nodes.is_empty()
            && !known.contains(id)
        {
            // Its identity was forgotten: the member was re-placed elsewhere.
            continue;
        }
        let live_in_shard = obs.live().filter(|m| m.shard == c.shard).count();
        let held_in_shard = out.iter().filter(|h| h.shard == c.shard).count();
        let node_taken = obs
            .live()
            .any(|m| m.shard == c.shard && m.node() == Some(node))
            || out
                .iter()
                .any(|h| h.shard == c.shard && h.node.as_deref() == Some(node));
        if live_in_shard + held_in_shard < per_shard && !node_taken {
            out.push(c);
        }
    }
    out
}

/// PVCs of members that are gone and that no member will use again.
pub fn orphaned(obs: &Observed, held: &[&Claim]) -> Vec<String> {
    obs.claims
        .iter()
        .filter(|c| !c.deleting)
        .filter(|c| {
            !obs.members
                .iter()
                .any(|m| !m.finished() && m.claim() == Some(c.name.as_str()))
        })
        .filter(|c| !held.iter().any(|h| h.name == c.name))
        .map(|c| c.name.clone())
        .collect()
}

/// Orphans to delete under `pvcRetentionPolicy: Delete`.
pub fn deletable(obs: &Observed, orphans: &[String]) -> Vec<(String, String)> {
    if obs.shape.retention != PvcRetentionPolicy::Delete {
        return Vec::new();
    }
    orphans
        .iter()
        .map(|c| {
            (
                c.clone(),
                "its member was re-placed and the cluster is healthy again".to_string(),
            )
        })
        .collect()
}

/// Claims whose recorded identity differs from what their member answers as now.
pub fn unrecorded_identities(obs: &Observed) -> Vec<(String, NodeId)> {
    obs.live()
        .filter_map(|m| {
            let claim = m.claim()?;
            let id = obs.view_of(m)?.id();
            let recorded = obs.claims.iter().find(|c| c.name == claim)?;
            (recorded.node_id.as_ref() != Some(id)).then(|| (claim.to_string(), id.clone()))
        })
        .collect()
}
