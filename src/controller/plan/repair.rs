//! Repair: slots a crash left open (MIGRATING/IMPORTING). Any open slot is a leftover (an
//! operator or `redis-cli` killed mid-move, S16; a reshard batch resumes from a clean map) and
//! is closed with `redis-cli --cluster fix` semantics before anything else happens.

use super::facts::Facts;
use super::step::{Action, Step};

/// The repair step, if any slot is open.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let open = f.obs.view.open_slots();
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
