//! Repair: slots a crash left open (MIGRATING/IMPORTING). This version starts no migration of
//! its own, so any open slot is a leftover (an operator or `redis-cli` killed mid-move, S16)
//! and is closed with `redis-cli --cluster fix` semantics before anything else happens.

use super::{Action, Plan};
use crate::controller::observe::Observed;

/// The repair step, if any slot is open.
pub fn plan(obs: &Observed) -> Option<Plan> {
    let open = obs.view.open_slots();
    (!open.is_empty()).then(|| {
        Plan::step(
            Action::FixOpenSlots,
            "RepairingSlots",
            format!(
                "closing {} open slot(s) left by an interrupted migration",
                open.len()
            ),
        )
    })
}
