//! Bootstrap: the formation's next step (MEET → slots → followers) as the one step this
//! reconcile takes. What it waits for and whether the cluster is Ready are read from the same
//! formation by the health assessment ([`super::facts::health`]).

use super::facts::Facts;
use super::facts::formation::Formation;
use super::step::{Action, Step};

/// The bootstrap step, if the formation has one.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let step = match f.formation.as_ref()? {
        Formation::Meet(pairs) => Step::new(
            Action::Meet(pairs.clone()),
            "JoiningMembers",
            format!("introducing {} member pairs (CLUSTER MEET)", pairs.len()),
        ),
        // While gossip spreads, pairs that still do not know each other are introduced
        // directly: gossip alone takes seconds to complete the mesh.
        Formation::WaitGossip(m, pairs) => {
            Step::new(Action::Meet(pairs.clone()), "JoiningMembers", m.clone())
        }
        Formation::AddSlots(a) => Step::new(
            Action::AddSlots(a.clone()),
            "AssigningSlots",
            format!("assigning slots to {} shard leaders", a.len()),
        ),
        Formation::Replicate(r) => Step::new(
            Action::Replicate(r.clone()),
            "AttachingFollowers",
            format!("attaching {} followers", r.len()),
        ),
        Formation::Done
        | Formation::WaitMembers(_)
        | Formation::WaitSync(_)
        | Formation::WaitRoles(_)
        | Formation::Blocked(_) => return None,
    };
    Some(step)
}
