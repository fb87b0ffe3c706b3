//! Bookkeeping of volumes: each member's Redis identity recorded on its PVC (so a member that
//! comes back on it is known), and PVCs no member will use again deleted under
//! `pvcRetentionPolicy: Delete`. Both the lowest priority: only when nothing else is to do.

use super::facts::Facts;
use super::facts::claims::{deletable, unrecorded_identities};
use super::step::{Action, Step};

/// Record identities not yet on their claims.
pub fn record_identities(f: &Facts<'_>) -> Option<Step> {
    let unrecorded = unrecorded_identities(f.obs);
    (!unrecorded.is_empty()).then(|| {
        Step::new(
            Action::RecordIdentities(unrecorded),
            f.health.waiting,
            f.health.message.clone(),
        )
    })
}

/// Delete orphaned claims. Gate: the cluster is Ready (a zone may be down).
pub fn delete_orphans(f: &Facts<'_>) -> Option<Step> {
    let orphans = deletable(f.obs, &f.orphaned_claims);
    (!orphans.is_empty()).then(|| {
        Step::new(
            Action::DeleteClaims(orphans),
            "ReleasingVolumes",
            "deleting PVCs of members that were re-placed (pvcRetentionPolicy Delete)",
        )
    })
}
