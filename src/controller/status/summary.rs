//! Pure: what the status shows besides the conditions, from the facts.

use super::conditions::{Desired, phase};
use crate::controller::plan::facts::Facts;
use crate::crd::{RedisCluster, RedisClusterStatus, ReshardStatus};

/// What the status shows besides the conditions.
pub fn summary(
    cluster: &RedisCluster,
    facts: &Facts<'_>,
    conditions: &[Desired],
    orphaned_claims: Vec<String>,
    reshard: Option<ReshardStatus>,
) -> RedisClusterStatus {
    let obs = facts.obs;
    let zone_of = |node: &str| obs.zone_of(node).to_string();
    let live: Vec<_> = obs.live().collect();
    // A rolling update's replacement counts once its predecessor retired: until then the
    // pair holds one seat (and the predecessor is the one that counts, outdated).
    let joining: Vec<&str> = facts.surges.iter().map(|p| p.replacement.name()).collect();
    let ready = live
        .iter()
        .filter(|m| m.ready() && !joining.contains(&m.name()))
        .count();
    let mut zones: Vec<String> = live
        .iter()
        .filter_map(|m| m.node())
        .map(zone_of)
        .filter(|z| !z.is_empty())
        .collect();
    zones.sort();
    zones.dedup();
    let shards = super::shards::shards(obs, &live, &zone_of, cluster.spec.leaders);
    let placement = super::shards::compact_placement(&shards);
    RedisClusterStatus {
        observed_generation: cluster.metadata.generation,
        phase: Some(phase(conditions)),
        conditions: Vec::new(),
        ready_members: Some(format!("{ready}/{}", obs.shape.members())),
        updated_members: Some(format!("{}/{}", facts.updated(), obs.shape.members())),
        revision: Some(obs.target.revision.clone()),
        reshard,
        zones: i32::try_from(zones.len()).ok(),
        zone_loss_safe: (!shards.is_empty())
            .then(|| super::shards::zone_loss_safe(&shards, cluster.spec.leaders)),
        placement: (!placement.is_empty()).then_some(placement),
        shards,
        orphaned_claims,
        tls: tls(obs),
        auth: auth(obs),
        // Written by the restore loop under its own field manager, never here.
        restore: None,
    }
}

/// Where the password comes from, and the last rotation (pending members, grace period).
fn auth(obs: &crate::controller::observe::Observed) -> Option<crate::crd::AuthStatus> {
    let secret = obs.auth.secret()?;
    let state = obs.credentials.state.as_ref();
    let previous_until = state
        .and_then(|s| s.previous_until)
        .filter(|until| obs.now < *until);
    Some(crate::crd::AuthStatus {
        secret: format!("{}/{}", secret.name, secret.key),
        rotated_at: state.and_then(|s| s.rotated_at).map(|t| t.to_string()),
        previous_accepted_until: previous_until.map(|t| t.to_string()),
        pending: crate::controller::plan::passwords::pending(obs),
    })
}

/// The Secret's certificate and who serves it, with `spec.tls`.
fn tls(obs: &crate::controller::observe::Observed) -> Option<crate::crd::TlsStatus> {
    let secret = obs.certs.secret.as_ref()?;
    let outdated: Vec<String> = crate::controller::plan::certs::outdated(obs, secret)
        .map(|m| m.name().to_string())
        .collect();
    let reached = obs
        .live()
        .filter(|m| obs.certs.presented.contains_key(m.name()))
        .count();
    let serving = obs
        .live()
        .filter(|m| {
            obs.certs
                .presented
                .get(m.name())
                .is_some_and(|c| c.fingerprint == secret.fingerprint)
        })
        .count();
    Some(crate::crd::TlsStatus {
        fingerprint: secret.fingerprint.clone(),
        serial: secret.serial.clone(),
        not_after: secret.not_after.to_string(),
        expiring: crate::controller::plan::certs::expiring(obs).is_some(),
        serving: format!("{serving}/{reached}"),
        outdated,
    })
}
