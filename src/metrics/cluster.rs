//! Pure: the per-cluster metric values of one reconcile pass and the rules that need memory
//! across passes (leader changes, recovery times). Free of the controller's types, so the
//! registry that stores them can sit below the controller ([`super::pass`] fills them from a
//! pass). No I/O, no clock: the caller passes `now`.

use std::collections::BTreeMap;

use crate::crd::{ShardStatus, conditions};

/// The `kind` label values of the failover counter: the operator's four commands, and a
/// change of a shard's leader that no command of the operator made (Redis's own election, or
/// the member's preStop hook handing over before its Pod stops).
pub const FAILOVER_KINDS: [&str; 5] = [
    "graceful",
    "force",
    "takeover",
    "stalled_election",
    "automatic",
];

/// The condition types exported, in a fixed order.
pub const CONDITION_TYPES: [&str; 4] = [
    conditions::READY,
    conditions::PROGRESSING,
    conditions::DEGRADED,
    conditions::PLACEMENT_SATISFIED,
];

/// What one pass shows about one cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterSample {
    /// Members the spec asks for.
    pub members_desired: i64,
    /// Live members whose Pod is Ready.
    pub members_ready: i64,
    /// Live members built from the current revision (rolling update progress).
    pub members_updated: i64,
    /// Slots owned by a leader that answered this pass and claims them itself.
    pub slots_served: i64,
    /// Serving leaders per zone (zones with members, a zone without a leader at 0).
    pub leaders_per_zone: BTreeMap<String, i64>,
    /// `status.zoneLossSafe`, when known.
    pub zone_loss_safe: Option<bool>,
    /// The current or last reshard: slots to move, moved, keys moved.
    pub reshard: Option<(i64, i64, i64)>,
    /// Each condition type's status (True = 1), in [`CONDITION_TYPES`] order; absent ones left
    /// out.
    pub conditions: Vec<(&'static str, bool)>,
    /// Problems by reason (all of them, not only the most severe one `Degraded` names).
    pub problems: BTreeMap<&'static str, i64>,
    /// The serving leader of each wanted shard, by node id.
    pub leaders: BTreeMap<usize, String>,
    /// With `spec.tls`: when the Secret's certificate expires, Unix seconds.
    pub certificate_expiry: Option<i64>,
}

/// Leaders per zone from the status's shards: every zone holding a member appears, with 0
/// when it holds no leader (so a zone that lost its leaders shows 0, not nothing).
pub fn leaders_per_zone(shards: &[ShardStatus]) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for shard in shards {
        for f in &shard.followers {
            if !f.zone.is_empty() {
                out.entry(f.zone.clone()).or_default();
            }
        }
        if let Some(l) = shard.leader.as_ref().filter(|l| !l.zone.is_empty()) {
            *out.entry(l.zone.clone()).or_default() += 1;
        }
    }
    out
}

/// Leader changes no command of the operator explains: shards whose serving leader was
/// `before` and is another node `now`, unless that node is the one the operator promoted
/// (`commanded`: shard → promoted id, counted when it was commanded). A shard without a
/// leader in either pass is no change (yet): the change counts once the new leader serves.
pub fn automatic_changes(
    before: &BTreeMap<usize, String>,
    now: &BTreeMap<usize, String>,
    commanded: &BTreeMap<usize, String>,
) -> usize {
    now.iter()
        .filter(|(shard, id)| {
            before.get(shard).is_some_and(|b| b != *id)
                && commanded.get(shard).is_none_or(|c| c != *id)
        })
        .count()
}

/// When the cluster's last recovery started and ended (Unix seconds), as this process saw it:
/// a recovery is a stretch of passes with `Degraded=True`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recovery {
    /// Whether the last pass found the cluster degraded (`None` before the first pass).
    pub degraded: Option<bool>,
    /// When the last recovery started.
    pub started: Option<f64>,
    /// When the last recovery ended.
    pub ended: Option<f64>,
}

impl Recovery {
    /// After a pass at `now` that found the cluster `degraded`. `recorded` is the `Degraded`
    /// condition of the status the pass started from (its status, its lastTransitionTime):
    /// after an operator restart it tells when a recovery under way began.
    pub fn next(self, degraded: bool, recorded: Option<(bool, f64)>, now: f64) -> Self {
        let was = self.degraded.or(recorded.map(|r| r.0));
        let mut out = Self {
            degraded: Some(degraded),
            ..self
        };
        match (was, degraded) {
            (Some(true), true) => {
                out.started = self
                    .started
                    .or(recorded.filter(|r| r.0).map(|r| r.1))
                    .or(Some(now));
            }
            (_, true) => out.started = Some(now),
            (Some(true), false) => out.ended = Some(now),
            (_, false) => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MemberStatus;

    fn member(zone: &str) -> MemberStatus {
        MemberStatus {
            pod: "p".into(),
            zone: zone.into(),
            ..Default::default()
        }
    }

    #[test]
    fn leaders_per_zone_lists_zones_without_leaders_at_zero() {
        let shards = vec![
            ShardStatus {
                index: 0,
                leader: Some(member("a")),
                followers: vec![member("b")],
                ..Default::default()
            },
            ShardStatus {
                index: 1,
                leader: Some(member("a")),
                followers: vec![member("c")],
                ..Default::default()
            },
            ShardStatus {
                index: 2,
                leader: None,
                followers: vec![member("b")],
                ..Default::default()
            },
        ];
        let got = leaders_per_zone(&shards);
        assert_eq!(
            got,
            BTreeMap::from([("a".into(), 2), ("b".into(), 0), ("c".into(), 0)])
        );
    }

    #[test]
    fn automatic_changes_skip_commanded_and_leaderless_shards() {
        let m = |pairs: &[(usize, &str)]| -> BTreeMap<usize, String> {
            pairs.iter().map(|(s, i)| (*s, (*i).to_string())).collect()
        };
        let before = m(&[(0, "a"), (1, "b"), (2, "c")]);
        // Shard 0 changed by itself, shard 1 as commanded, shard 2 has no leader right now.
        let now = m(&[(0, "x"), (1, "y")]);
        assert_eq!(automatic_changes(&before, &now, &m(&[(1, "y")])), 1);
        assert_eq!(automatic_changes(&before, &now, &BTreeMap::new()), 2);
        // A first pass (nothing before) counts nothing; a new shard neither.
        assert_eq!(
            automatic_changes(&BTreeMap::new(), &now, &BTreeMap::new()),
            0
        );
        assert_eq!(automatic_changes(&before, &before, &BTreeMap::new()), 0);
    }

    #[test]
    fn recovery_start_and_end_follow_degraded() {
        let r = Recovery::default().next(false, Some((false, 10.0)), 100.0);
        assert_eq!((r.started, r.ended), (None, None));
        let r = r.next(true, Some((false, 10.0)), 110.0);
        assert_eq!((r.started, r.ended), (Some(110.0), None));
        let r = r.next(true, Some((true, 110.0)), 120.0);
        assert_eq!(
            r.started,
            Some(110.0),
            "a recovery under way keeps its start"
        );
        let r = r.next(false, Some((true, 110.0)), 130.0);
        assert_eq!((r.started, r.ended), (Some(110.0), Some(130.0)));
        let r = r.next(false, Some((false, 130.0)), 140.0);
        assert_eq!(r.ended, Some(130.0));
    }

    #[test]
    fn after_a_restart_a_recovery_under_way_keeps_its_recorded_start() {
        let r = Recovery::default().next(true, Some((true, 50.0)), 100.0);
        assert_eq!((r.started, r.ended), (Some(50.0), None));
        let r = Recovery::default().next(false, Some((true, 50.0)), 100.0);
        assert_eq!(r.ended, Some(100.0), "the recovery ended in this pass");
    }
}
