//! "Is this follower in sync with its leader": the one definition, used by the planner, the
//! operations and the benchmarks.
//!
//! Two bars, because two callers ask two different questions:
//! * [`SyncBar::Healthy`] — the planner asks whether a follower is a usable copy *now*: its
//!   link is up, no full sync is running, and it trails its leader by at most
//!   [`SYNC_LAG_BYTES`]. Under steady writes a follower is always a few bytes behind, so a
//!   zero-lag bar would never settle a healthy cluster.
//! * [`SyncBar::CaughtUp`] — an operation that must not lose a write (a graceful handover, a
//!   test waiting for replication) asks whether the follower had processed *everything* the
//!   leader had when the leader was read, on the same replication history.

use crate::redis::model::NodeObservation;

/// How far a follower's offset may trail its leader's and still count as healthy.
pub const SYNC_LAG_BYTES: u64 = 1024 * 1024;

/// Which question is asked (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncBar {
    /// A usable copy now: link up, not syncing, lag ≤ [`SYNC_LAG_BYTES`].
    Healthy,
    /// Everything the leader had when read, on the same history.
    CaughtUp,
}

/// A follower's replication as read from it and its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replication {
    /// `master_link_status:up` on the follower.
    pub link_up: bool,
    /// A full sync is still running.
    pub sync_in_progress: bool,
    /// Follower and leader hold the same replication history (same replid); `None` when not
    /// compared.
    pub same_history: Option<bool>,
    /// The leader's `master_repl_offset`.
    pub leader_offset: u64,
    /// The follower's processed offset (`slave_repl_offset`).
    pub follower_offset: u64,
}

/// Whether the follower meets `bar`.
pub fn in_sync(r: &Replication, bar: SyncBar) -> bool {
    let lag = r.leader_offset.saturating_sub(r.follower_offset);
    r.link_up
        && !r.sync_in_progress
        && match bar {
            SyncBar::Healthy => lag <= SYNC_LAG_BYTES,
            // A replica adopts its leader's replid only when a sync completes, so the same
            // history also rules out a follower that never synced.
            SyncBar::CaughtUp => r.same_history == Some(true) && lag == 0,
        }
}

/// Whether `follower` replicates `leader` and meets `bar`, from one observation of each.
pub fn follower_in_sync(
    follower: &NodeObservation,
    leader: &NodeObservation,
    bar: SyncBar,
) -> bool {
    follower.master_id() == Some(leader.id())
        && follower.replication.replica_link().is_some_and(|l| {
            in_sync(
                &Replication {
                    link_up: l.link_up,
                    sync_in_progress: l.sync_in_progress,
                    same_history: Some(
                        follower.replication.master_replid == leader.replication.master_replid,
                    ),
                    leader_offset: leader.replication.master_repl_offset,
                    follower_offset: l.repl_offset,
                },
                bar,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(link_up: bool, syncing: bool, same: bool, leader: u64, follower: u64) -> Replication {
        Replication {
            link_up,
            sync_in_progress: syncing,
            same_history: Some(same),
            leader_offset: leader,
            follower_offset: follower,
        }
    }

    #[test]
    fn the_two_bars() {
        // (replication, healthy, caught up)
        let cases = [
            (r(true, false, true, 100, 100), true, true),
            (r(true, false, true, 100, 200), true, true),
            (r(true, false, true, 100 + SYNC_LAG_BYTES, 100), true, false),
            (
                r(true, false, true, 101 + SYNC_LAG_BYTES, 100),
                false,
                false,
            ),
            (r(false, false, true, 100, 100), false, false),
            (r(true, true, true, 100, 100), false, false),
            // Healthy does not compare histories; caught up does.
            (r(true, false, false, 100, 100), true, false),
        ];
        for (rep, healthy, caught_up) in cases {
            assert_eq!(in_sync(&rep, SyncBar::Healthy), healthy, "{rep:?}");
            assert_eq!(in_sync(&rep, SyncBar::CaughtUp), caught_up, "{rep:?}");
        }
    }
}
