//! Scale: moving slots so that exactly the wanted shards own them, evenly. Scale out: the
//! members concern places the new shards, they join and their followers sync (bootstrap), and
//! only then do slots move to them. Scale in: the highest-index shards are drained to the rest,
//! refused up front when the remaining leaders could not hold the data; once their masters hold
//! no slot and no key and their grace period is over (`drain`: clients get MOVED from them
//! meanwhile), the members concern removes them and recovery forgets them.
//!
//! Gate: a healthy cluster. Each step moves one bounded batch of slots with the resumable
//! reshard of `redis::ops` (a killed run is finished by the next one: open slots are closed by
//! the repair concern first), so progress shows in status between batches and recovery can
//! interrupt a long reshard.

use super::facts::Facts;
use super::step::{Action, Step};
use crate::controller::observe::redis::NodeView;
use crate::redis::ids::{NodeId, SLOT_COUNT};
use crate::redis::ops::distribution::{SlotMove, batch, plan_slot_distribution, summarize};

/// Slots moved by one step: large enough that per-step overhead (one observation, one plan)
/// is noise, small enough that status and recovery get a turn every few seconds.
pub const BATCH_SLOTS: usize = 1024;

/// The time one step moves slots for, whatever is left of its batch: on a loaded machine a
/// batch of [`BATCH_SLOTS`] can take minutes (each slot is several round trips to nodes that
/// wait for CPU), and status and recovery must still get their turn every few seconds. An
/// idle machine moves a whole batch well within it.
pub const BATCH_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a reshard stands, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshard {
    /// Shards the slots are spread over when done.
    pub to_leaders: usize,
    /// Slots still to move.
    pub remaining: usize,
    /// Why it does not move, when it does not.
    pub blocked: Option<String>,
}

/// The master of each wanted shard (in shard order), if every wanted shard has one: its
/// serving leader, else the empty master of a new shard.
fn shard_masters(f: &Facts<'_>) -> Option<Vec<NodeId>> {
    (0..f.obs.shape.leaders)
        .map(|s| {
            f.leader(s)
                .or_else(|| {
                    f.obs
                        .live()
                        .filter(|m| m.shard == s)
                        .filter_map(|m| f.obs.view_of(m))
                        .find(|v| v.myself.is_master())
                })
                .map(|v| v.id().clone())
        })
        .collect()
}

/// The moves still to make, with the wanted masters, once every slot is served (a cluster
/// still forming is the bootstrap's: it assigns the even ranges itself).
fn pending(f: &Facts<'_>) -> Option<(Vec<NodeId>, Vec<SlotMove>)> {
    if f.owners.iter().filter(|o| o.is_some()).count() < usize::from(SLOT_COUNT) {
        return None;
    }
    let masters = shard_masters(f)?;
    let all = plan_slot_distribution(&f.owners, &masters);
    (!all.is_empty()).then_some((masters, all))
}

/// Scale in is refused when the data on the shards to drain would not fit in what the
/// remaining leaders' `maxmemory` leaves free (only when every remaining leader has one).
fn capacity_problem(f: &Facts<'_>, masters: &[NodeId]) -> Option<String> {
    let view = &f.obs.view;
    let drained: Vec<&NodeView> = view
        .masters()
        .filter(|v| !masters.contains(v.id()) && v.myself.slot_count() > 0)
        .collect();
    if drained.is_empty() {
        return None;
    }
    let kept: Vec<_> = masters.iter().filter_map(|id| view.node(id)).collect();
    if kept.is_empty() || kept.iter().any(|v| v.memory.max == 0) {
        return None;
    }
    let need: u64 = drained.iter().map(|v| v.memory.used).sum();
    let free: u64 = kept
        .iter()
        .map(|v| v.memory.max.saturating_sub(v.memory.used))
        .sum();
    // Keep a tenth of the limit as headroom: eviction or OOM errors during the move would
    // lose writes or fail the migration.
    let headroom: u64 = kept.iter().map(|v| v.memory.max / 10).sum();
    (need + headroom > free).then(|| {
        format!(
            "the {} shard(s) to remove hold {} MiB; the {} remaining leaders have {} MiB free under maxmemory (keeping 10% headroom): raise maxmemory or keep spec.leaders at {}",
            drained.len(),
            need >> 20,
            kept.len(),
            free.saturating_sub(headroom) >> 20,
            kept.len() + drained.len()
        )
    })
}

/// Where the reshard stands (`None` when nothing is to move); `blocked` says why it may not
/// move now, if it may not.
pub fn state(f: &Facts<'_>, blocked: Option<&str>) -> Option<Reshard> {
    let (masters, all) = pending(f)?;
    let blocked = match blocked {
        Some(why) => Some(format!("waiting until the cluster is healthy: {why}")),
        None => capacity_problem(f, &masters),
    };
    Some(Reshard {
        to_leaders: masters.len(),
        remaining: all.len(),
        blocked,
    })
}

/// The next batch of slots to move, or the refusal of a scale-in that would not fit.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let (masters, all) = pending(f)?;
    if let Some(why) = capacity_problem(f, &masters) {
        return Some(Step::refuse("ScaleInRefused", why));
    }
    let remaining = all.len();
    let batch: Vec<SlotMove> = batch(all, BATCH_SLOTS);
    let shard_of = |id: &NodeId| {
        super::facts::shard_of(f.obs, id).map_or_else(|| id.short().to_string(), |s| s.to_string())
    };
    let mut pairs: Vec<String> = summarize(&batch)
        .iter()
        .map(|(from, to, ranges)| {
            let n: usize = ranges.iter().map(|r| r.len()).sum();
            format!(
                "{n} from shard {} to shard {}",
                from.as_ref().map_or_else(|| "-".to_string(), shard_of),
                shard_of(to)
            )
        })
        .collect();
    pairs.dedup();
    let message = format!(
        "moving {} of {remaining} remaining slot(s) to spread them over {} shards: {}",
        batch.len(),
        masters.len(),
        pairs.join(", ")
    );
    Some(Step::new(
        Action::Reshard {
            moves: batch,
            remaining,
            to_leaders: masters.len(),
        },
        "Resharding",
        message,
    ))
}
