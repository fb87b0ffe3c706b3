//! Drain: the grace period of a scale-in. The scale concern drains a shard beyond
//! `spec.leaders` (its master ends up holding no slot and no key); its members then stay
//! cluster members for `spec.scaleInGracePeriod` before the members concern removes them. A
//! client that still routes a key to the drained master meanwhile gets `MOVED` and refreshes
//! its slot map while the node is still there. Without it, redis-py's RedisCluster stalled for
//! its socket timeout on the node removed under it (5 s in e2e_scale's redis-py test; issue
//! 23). The `AttributeError … redis_connection` of that issue is another matter: redis-py
//! follows an `ASK` to a node it has not discovered yet (a scale-out's new shard, absent from
//! `CLUSTER SLOTS` until it owns a slot) with no node at all (redis-py #2432); no wait here
//! helps with it.
//!
//! Level-triggered and crash-safe: the moment a shard is first seen drained is recorded once on
//! its members' Pods ([`DRAINED_AT_ANNOTATION`]), and the period runs from that record, so an
//! operator restarted mid-grace neither restarts nor skips it. A shard that holds slots again
//! (scaled back out) has its record cleared, so a later drain starts a period of its own.
//!
//! Two concerns: `drain` (before `members`) writes or clears the record; `scale-in-grace` (the
//! last) says what a Ready cluster waits for when no other concern has work, so the wait holds
//! nothing else back (a cluster not Ready says what it waits for instead: the removal runs at
//! the deadline either way).

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;

use super::facts::Facts;
use super::step::{Action, Step};
use crate::controller::labels::DRAINED_AT_ANNOTATION;
use crate::controller::observe::Observed;

/// The reason of the record's steps and of the wait.
pub const SCALE_IN_GRACE: &str = "ScaleInGrace";

pub use crate::controller::observe::scale_in::{DEFAULT_GRACE, MAX_GRACE, grace};

/// Where a shard a scale-in removes stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// Its master still holds slots or keys, or a member does not answer.
    Draining,
    /// Drained, and the moment is not recorded yet.
    Unrecorded,
    /// Drained since `since`; its members are removed at `until`.
    Waiting {
        /// When it was first seen drained (the record).
        since: Timestamp,
        /// When the grace period is over.
        until: Timestamp,
    },
    /// Drained and the grace period is over (or zero): its members may go.
    Over,
}

/// Whether no member of `shard` is a master holding slots or keys, every member answering:
/// the scale concern is done with it (the cluster's own view: each master's `myself` line).
pub fn drained(f: &Facts<'_>, shard: usize) -> bool {
    f.obs.live().filter(|m| m.shard == shard).all(|m| {
        f.obs.view_of(m).is_some_and(|v| {
            !v.myself.is_master() || (v.myself.slot_count() == 0 && v.keys == Some(0))
        })
    })
}

/// When `shard` was first seen drained, as recorded on its live members' Pods (the earliest
/// readable record: one written on a member that was replaced since is kept by the others).
pub fn recorded(obs: &Observed, shard: usize) -> Option<Timestamp> {
    obs.live()
        .filter(|m| m.shard == shard)
        .filter_map(|m| {
            m.annotation(DRAINED_AT_ANNOTATION)?
                .parse::<Timestamp>()
                .ok()
        })
        .min()
}

/// Where `shard` stands (meaningful for a shard beyond `spec.leaders`).
pub fn of(f: &Facts<'_>, shard: usize) -> Grace {
    if !drained(f, shard) {
        return Grace::Draining;
    }
    let grace = f.obs.shape.scale_in_grace;
    if grace.is_zero() {
        return Grace::Over;
    }
    let Some(since) = recorded(f.obs, shard) else {
        return Grace::Unrecorded;
    };
    let until = since.saturating_add(grace).unwrap_or(since);
    if f.obs.now >= until {
        Grace::Over
    } else {
        Grace::Waiting { since, until }
    }
}

/// Whether the members of `shard`, beyond `spec.leaders`, may be removed.
pub fn over(f: &Facts<'_>, shard: usize) -> bool {
    of(f, shard) == Grace::Over
}

/// Shards beyond `spec.leaders` that still have a live member.
fn leaving(obs: &Observed) -> BTreeSet<usize> {
    obs.live()
        .map(|m| m.shard)
        .filter(|s| *s >= obs.shape.leaders)
        .collect()
}

/// The live members of `shard` as (pod, shard).
fn pods_of(obs: &Observed, shard: usize) -> Vec<(String, usize)> {
    obs.live()
        .filter(|m| m.shard == shard)
        .map(|m| (m.name().to_string(), shard))
        .collect()
}

/// The record's step: cleared from Pods whose shard holds slots again (first: a stale record
/// would shorten the grace period of the next drain), else written on the members of the
/// drained shards that have none.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    clear(f).or_else(|| record(f))
}

/// Pods carrying a record while a master of their shard holds slots (the shard was scaled back
/// out, and the scale concern moved slots to it).
fn clear(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    let serving: BTreeSet<usize> = obs
        .live()
        .filter(|m| {
            obs.view_of(m)
                .is_some_and(|v| v.myself.is_master() && v.myself.slot_count() > 0)
        })
        .map(|m| m.shard)
        .collect();
    let stale: Vec<(String, usize)> = obs
        .live()
        .filter(|m| serving.contains(&m.shard) && m.annotation(DRAINED_AT_ANNOTATION).is_some())
        .map(|m| (m.name().to_string(), m.shard))
        .collect();
    let shards: BTreeSet<usize> = stale.iter().map(|(_, s)| *s).collect();
    (!stale.is_empty()).then(|| {
        Step::new(
            Action::ClearDrained(stale),
            SCALE_IN_GRACE,
            format!(
                "shard(s) {} hold slots again: clearing the record of their drain",
                list(&shards)
            ),
        )
    })
}

/// The drained shards to remove whose moment is not recorded yet: recorded now, on each of
/// their live members.
fn record(f: &Facts<'_>) -> Option<Step> {
    let shards: BTreeSet<usize> = leaving(f.obs)
        .into_iter()
        .filter(|s| of(f, *s) == Grace::Unrecorded)
        .collect();
    if shards.is_empty() {
        return None;
    }
    // Whole seconds, rounded up: a readable record that never shortens the period.
    let now = f.obs.now;
    let at = Timestamp::from_second(now.as_second() + i64::from(now.subsec_nanosecond() > 0))
        .unwrap_or(now);
    let until = at.saturating_add(f.obs.shape.scale_in_grace).unwrap_or(at);
    let pods = shards.iter().flat_map(|s| pods_of(f.obs, *s)).collect();
    Some(Step::new(
        Action::MarkDrained { pods, at, until },
        SCALE_IN_GRACE,
        format!(
            "shard(s) {} hold no slot and no key: recording it; their members stay, answering MOVED, until {until}",
            list(&shards)
        ),
    ))
}

/// The shards to remove that are in their grace period: (shard, since, until).
pub fn waiting(f: &Facts<'_>) -> Vec<(usize, Timestamp, Timestamp)> {
    leaving(f.obs)
        .into_iter()
        .filter_map(|s| match of(f, s) {
            Grace::Waiting { since, until } => Some((s, since, until)),
            _ => None,
        })
        .collect()
}

/// The last concern: while drained shards wait out their grace period and no other concern has
/// work, that is what the cluster waits for. The message names absolute times, never a
/// countdown: it stays the same every pass, so the status is not rewritten each time.
pub fn wait(f: &Facts<'_>) -> Option<Step> {
    let waiting = waiting(f);
    if waiting.is_empty() {
        return None;
    }
    let each: Vec<String> = waiting
        .iter()
        .map(|(s, since, until)| {
            format!("shard {s} holds no slot since {since}, removed at {until}")
        })
        .collect();
    Some(Step::new(
        Action::Wait,
        SCALE_IN_GRACE,
        format!(
            "scale-in grace period ({:#}): {}; meanwhile clients that still send to them get MOVED and refresh their slot maps",
            f.obs.shape.scale_in_grace,
            each.join("; ")
        ),
    ))
}

/// How long until the first grace period under way is over: the pass that removes the shard
/// must run then, not at the next periodic check.
pub fn next_deadline(f: &Facts<'_>) -> Option<Duration> {
    waiting(f)
        .iter()
        .map(|(_, _, until)| f.obs.now.duration_until(*until))
        .min()
        .map(|d| d.unsigned_abs())
}

/// `3, 4`.
fn list(shards: &BTreeSet<usize>) -> String {
    shards
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
