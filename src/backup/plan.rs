//! Pure: a backup's next step, from its status and the cluster as Redis reports it now.
//!
//! One shard per pass, each anchored at the start (see [`super::shards`]); the manifest last.
//! Everything the loop needs to resume is in the status, so an operator restart resumes at the
//! first shard not stored (its half-sent upload is abandoned, never completed).

use super::shards::{self, ShardAtStart, Source};
use crate::crd::backup::{BackupPhase, RedisClusterBackupStatus};
use crate::redis::model::ClusterView;

/// Attempts per shard before the backup fails (a failover, a lost connection, the store
/// briefly unreachable each cost one).
pub const MAX_ATTEMPTS: i32 = 5;

/// What to do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: Completed or Failed.
    Finished,
    /// Record the shards, their leaders and offsets: the consistency point.
    Start(Vec<ShardAtStart>),
    /// Take shard `index`'s snapshot from `source`.
    Snapshot {
        /// The shard.
        index: usize,
        /// Its source now.
        source: std::net::SocketAddr,
        /// `follower` or `leader`.
        role: &'static str,
        /// What the source must have processed first.
        at_least: u64,
    },
    /// Every shard is stored: write the manifest.
    WriteManifest,
    /// Not now (reason, message); look again later.
    Wait(&'static str, String),
    /// Give up (reason, message).
    Fail(&'static str, String),
}

/// The next step of a backup with `status`, of a cluster wanting `followers` per leader, seen as
/// `view`.
pub fn next(status: &RedisClusterBackupStatus, view: &ClusterView, followers: usize) -> Step {
    if matches!(
        status.phase,
        Some(BackupPhase::Completed | BackupPhase::Failed)
    ) {
        return Step::Finished;
    }
    if status.shards.is_empty() {
        return match shards::not_startable(view) {
            Some(why) => Step::Wait("ClusterNotReady", why),
            None => {
                let at_start = shards::shards_at_start(view);
                if at_start.is_empty() {
                    Step::Wait("ClusterNotReady", "no member answers".into())
                } else {
                    Step::Start(at_start)
                }
            }
        };
    }
    let Some(shard) = status.shards.iter().find(|s| !s.done()) else {
        return Step::WriteManifest;
    };
    if shard.failed_attempts >= MAX_ATTEMPTS {
        return Step::Fail(
            "SnapshotFailed",
            format!(
                "shard {} failed {} times; see the Events for each attempt",
                shard.index, shard.failed_attempts
            ),
        );
    }
    let Some(at_start) = recorded(shard) else {
        return Step::Fail(
            "InvalidStatus",
            format!(
                "shard {}'s recorded slots or leader are unreadable",
                shard.index
            ),
        );
    };
    match shards::source_for(view, &at_start, followers) {
        Source::Follower(f) => Step::Snapshot {
            index: at_start.index,
            source: f.addr,
            role: "follower",
            at_least: at_start.leader_offset,
        },
        Source::Leader(l) => Step::Snapshot {
            index: at_start.index,
            source: l.addr,
            role: "leader",
            at_least: at_start.leader_offset,
        },
        Source::Wait(why) => Step::Wait("WaitingForSource", why),
        Source::SlotsMoved(why) => Step::Fail("SlotsMoved", why),
    }
}

/// A shard's status back as what was recorded at the start.
fn recorded(s: &crate::crd::backup::BackupShardStatus) -> Option<ShardAtStart> {
    Some(ShardAtStart {
        index: usize::try_from(s.index).ok()?,
        slots: shards::parse_slots(&s.slots)?,
        leader: s.leader_id.parse().ok()?,
        leader_offset: u64::try_from(s.leader_offset_at_start).ok()?,
    })
}

/// Bytes for people: `512B`, `12.5KiB`, `3.0GiB`.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    #[allow(clippy::cast_precision_loss)] // a readable size, not an exact one
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A duration for people, Go style: `45s`, `1m12s`, `2h3m`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    match (secs / 3600, (secs % 3600) / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
