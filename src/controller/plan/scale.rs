//! Scale: moving slots so that exactly the wanted shards own them, evenly. Scale out: the
//! members planner places the new shards, they join and their followers sync (bootstrap), and
//! only then do slots move to them. Scale in: the highest-index shards are drained to the rest,
//! refused up front when the remaining leaders could not hold the data; once their masters hold
//! no slot and no key, the members planner removes them and recovery forgets them.
//!
//! Only asked for a step when the cluster is healthy. Each step moves one bounded batch of
//! slots with the resumable reshard of `redis::ops` (a killed run is finished by the next
//! one: open slots are closed by the repair concern first), so progress shows in status
//! between batches and recovery can interrupt a long reshard.

use super::{Action, Plan};
use crate::controller::observe::Observed;
use crate::redis::ids::{NodeId, SLOT_COUNT};
use crate::redis::ops::distribution::{SlotMove, plan_slot_distribution};

/// Slots moved by one step: large enough that per-step overhead (one observation, one plan)
/// is noise, small enough that status and recovery get a turn every few seconds.
pub const BATCH_SLOTS: usize = 1024;

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

/// The master of each wanted shard (in shard order), if every wanted shard has one: the
/// member of the shard that is a master (serving, or the empty master of a new shard).
fn shard_masters(obs: &Observed) -> Option<Vec<NodeId>> {
    (0..obs.shape.leaders)
        .map(|s| {
            obs.live()
                .filter(|m| m.shard == s)
                .filter_map(|m| obs.view_of(m))
                .filter(|v| v.myself.is_master())
                .max_by_key(|v| v.myself.slot_count())
                .map(|v| v.id().clone())
        })
        .collect()
}

/// The moves that make the wanted shards own every slot evenly (none when they already do).
pub fn moves(obs: &Observed) -> Option<Vec<SlotMove>> {
    let masters = shard_masters(obs)?;
    Some(plan_slot_distribution(&obs.view.slot_owners(), &masters))
}

/// Scale in is refused when the data on the shards to drain would not fit in what the
/// remaining leaders' `maxmemory` leaves free (only when every remaining leader has one).
fn capacity_problem(obs: &Observed, masters: &[NodeId]) -> Option<String> {
    let drained: Vec<&crate::controller::observe::redis::NodeView> = obs
        .view
        .masters()
        .filter(|v| !masters.contains(v.id()) && v.myself.slot_count() > 0)
        .collect();
    if drained.is_empty() {
        return None;
    }
    let kept: Vec<_> = masters.iter().filter_map(|id| obs.view.node(id)).collect();
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

/// The next reshard step when the cluster is healthy (`unhealthy` is `None`), and where the
/// reshard stands (`None` when nothing is to move).
pub fn plan(obs: &Observed, unhealthy: Option<&str>) -> (Option<Plan>, Option<Reshard>) {
    // A cluster still forming is bootstrap's business: it assigns the even ranges itself.
    let served = obs
        .view
        .slot_owners()
        .iter()
        .filter(|o| o.is_some())
        .count();
    if served < usize::from(SLOT_COUNT) {
        return (None, None);
    }
    let Some(masters) = shard_masters(obs) else {
        return (None, None);
    };
    let all = plan_slot_distribution(&obs.view.slot_owners(), &masters);
    if all.is_empty() {
        return (None, None);
    }
    let mut state = Reshard {
        to_leaders: masters.len(),
        remaining: all.len(),
        blocked: None,
    };
    if let Some(why) = unhealthy {
        state.blocked = Some(format!("waiting until the cluster is healthy: {why}"));
        return (None, Some(state));
    }
    if let Some(why) = capacity_problem(obs, &masters) {
        state.blocked = Some(why.clone());
        let mut plan = Plan::wait("ScaleInRefused", why.clone());
        plan.refused = true;
        plan.problems
            .push(super::Problem::new("ScaleInRefused", why));
        return (Some(plan), Some(state));
    }
    let batch: Vec<SlotMove> = all.into_iter().take(BATCH_SLOTS).collect();
    let shard_of = |id: &NodeId| {
        super::health::shard_of(obs, id).map_or_else(|| id.short().to_string(), |s| s.to_string())
    };
    let mut pairs: Vec<String> = crate::redis::ops::distribution::summarize(&batch)
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
        "moving {} of {} remaining slot(s) to spread them over {} shards: {}",
        batch.len(),
        state.remaining,
        masters.len(),
        pairs.join(", ")
    );
    (
        Some(Plan::step(
            Action::Reshard {
                moves: batch,
                remaining: state.remaining,
                to_leaders: state.to_leaders,
            },
            "Resharding",
            message,
        )),
        Some(state),
    )
}
