//! Repair: slots a crash left open (MIGRATING/IMPORTING). Any open slot is a leftover (an
//! operator or `redis-cli` killed mid-move, S16; a reshard batch resumes from a clean map) and
//! is closed with `redis-cli --cluster fix` semantics before anything else happens.

use super::facts::Facts;
use super::step::{Action, Step};

/// The repair step, if any slot is open and every master answers. While a master does not
/// (a leader deleted mid-reshard: found by the soak), the repair could not run (its keys may be
/// in the open slots) and asking it first blocked the recovery and members concerns that
/// bring that master back or forget it: the cluster stayed at RepairFailed for good. Open
/// slots stay reported (`OpenSlots`) meanwhile, and nothing that moves slots runs while they
/// are open (scaling and rollouts need a healthy cluster).
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let open = f.obs.view.open_slots();
    if !crate::redis::ops::repair::unreachable_masters(&f.obs.view).is_empty() {
        return None;
    }
    (!open.is_empty()).then(|| {
        Step::new(
            Action::FixOpenSlots,
            "RepairingSlots",
            format!(
                "closing {} open slot(s) left by an interrupted migration",
                open.len()
            ),
        )
    })
}
