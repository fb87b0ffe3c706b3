//! Failover steps: graceful, FORCE and TAKEOVER, with the proof built from the pass's
//! observation (`redis::ops` establishes it again on its own fresh one right before the
//! command), the per-shard FORCE rate limit (S20), and the stalled elections of several shards
//! side by side.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::join_all;
use kube::runtime::events::EventType;

use super::events::publish;
use super::executed::{Executed, Scope, failed};
use crate::controller::plan::{FailoverKind, Promotion};
use crate::redis::ids::NodeId;
use crate::redis::model::ClusterView;
use crate::redis::ops::failover::{AcceptedRisk, FailoverMode, LeaderGone, RiskKind};

/// How soon a FORCE failover of a shard may follow the previous one: masters that voted are
/// locked for 2 × cluster-node-timeout (reference S20).
const FORCE_RETRY: Duration = Duration::from_millis(2 * crate::controller::config::NODE_TIMEOUT_MS);

/// When each shard's last FORCE failover was sent, per cluster, in this operator process.
///
/// A second FORCE of the same shard within [`FORCE_RETRY`] — after one that failed, or after
/// the leader it promoted died at once (S20) — meets masters that still refuse to vote and only
/// locks their votes again. The plan is stateless and any Pod event wakes a reconcile at once
/// (a dying leader's Pod changes several times), so the requeue delay after a failed FORCE
/// does not hold the next one back: this does, right before a FORCE is sent. An operator
/// restarted within the window forgets it (the restart itself takes most of it).
#[derive(Debug, Default)]
pub struct ForceLimiter {
    last: BTreeMap<(String, String, usize), Instant>,
}

impl ForceLimiter {
    /// An empty record.
    pub const fn new() -> Self {
        Self {
            last: BTreeMap::new(),
        }
    }

    /// Whether a FORCE of `shard` of cluster `ns/name` may be sent at `now`: if so it is
    /// recorded; if not, how long until it may.
    ///
    /// # Errors
    /// The time left until [`FORCE_RETRY`] after the previous FORCE of the shard has passed.
    pub fn admit(
        &mut self,
        ns: &str,
        name: &str,
        shard: usize,
        now: Instant,
    ) -> Result<(), Duration> {
        let key = (ns.to_string(), name.to_string(), shard);
        if let Some(prev) = self.last.get(&key) {
            let since = now.saturating_duration_since(*prev);
            if since < FORCE_RETRY {
                return Err(FORCE_RETRY - since);
            }
        }
        self.last
            .retain(|_, t| now.saturating_duration_since(*t) < FORCE_RETRY);
        self.last.insert(key, now);
        Ok(())
    }
}

/// The process's record of FORCE failovers (every cluster this operator manages).
static FORCED: Mutex<ForceLimiter> = Mutex::new(ForceLimiter::new());

/// One failover; `view` is the pass's observation, which the plan was made from.
pub(super) async fn failover(
    scope: &Scope<'_>,
    view: &ClusterView,
    shard: usize,
    to: &NodeId,
    kind: FailoverKind,
    reason: &str,
) -> Executed {
    let (cluster, ctx) = (scope.cluster, scope.ctx);
    let mode = match mode(view, shard, to, kind, reason) {
        Ok(mode) => mode,
        Err(refused) => return refused,
    };
    if kind == FailoverKind::Force
        && let Some(deferred) = deferred(scope, shard, to)
    {
        return deferred;
    }
    let (label, severity) = match kind {
        FailoverKind::Graceful => ("graceful", EventType::Normal),
        FailoverKind::Force => ("FORCE", EventType::Warning),
        FailoverKind::Takeover => ("TAKEOVER", EventType::Warning),
        FailoverKind::StalledElection => ("TAKEOVER (stalled election)", EventType::Warning),
    };
    let note = format!(
        "shard {shard}: {label} failover to {}: {reason}",
        to.short()
    );
    publish(ctx, cluster, severity, "FailoverStarted", &note).await;
    match scope.admin.failover(to, mode).await {
        Ok(outcome) => {
            let note = format!(
                "shard {shard}: {} leads now ({label}, {} ms{})",
                to.short(),
                outcome.elapsed.as_millis(),
                if outcome.old_leader_demoted {
                    ", the old leader follows it"
                } else {
                    ""
                }
            );
            publish(ctx, cluster, EventType::Normal, "FailoverCompleted", &note).await;
            Executed::Applied(note)
        }
        Err(e) => {
            let note = format!(
                "shard {shard}: {label} failover to {} failed: {e}",
                to.short()
            );
            let mut executed = failed("FailoverFailed", note, e);
            // Any failover that did not complete may have started an election: the masters
            // that voted will not vote for this shard again within 2 × cluster-node-timeout,
            // and a retry sooner fails and renews their lock (a graceful failover retried every
            // 9 s never completed).
            if let Executed::Failed { retry_after, .. } = &mut executed {
                *retry_after = FORCE_RETRY;
            }
            executed
        }
    }
}

/// The TAKEOVERs of several shards' stalled elections, side by side. Each is a whole
/// [`failover`]: its own proof, established again by `redis::ops` on its own fresh
/// observation. They promote followers of distinct shards, whose slots are disjoint, and need
/// no vote; two of them may pick the same config epoch, which Redis's collision handling
/// resolves without moving a slot (no slot is claimed twice).
pub(super) async fn stalled_elections(
    scope: &Scope<'_>,
    view: &ClusterView,
    promotions: &[Promotion],
) -> Executed {
    let each = promotions.iter().map(|p| {
        failover(
            scope,
            view,
            p.shard,
            &p.to,
            FailoverKind::StalledElection,
            &p.reason,
        )
    });
    combined(join_all(each).await)
}

/// One outcome for several failovers: applied when all were, else the first failure, whose
/// message also tells what the others did (a failure is never hidden behind a success).
fn combined(mut outcomes: Vec<Executed>) -> Executed {
    let note = |e: &Executed| match e {
        Executed::Applied(note) => Some(note.clone()),
        Executed::Failed { message, .. } => Some(message.clone()),
        _ => None,
    };
    let Some(first_failed) = outcomes
        .iter()
        .position(|e| matches!(e, Executed::Failed { .. }))
    else {
        let notes: Vec<String> = outcomes.iter().filter_map(note).collect();
        return Executed::Applied(notes.join("; "));
    };
    let mut failed = outcomes.remove(first_failed);
    let others: Vec<String> = outcomes.iter().filter_map(note).collect();
    if let Executed::Failed { message, .. } = &mut failed
        && !others.is_empty()
    {
        *message = format!("{message} (meanwhile: {})", others.join("; "));
    }
    failed
}

/// The failover mode, with its proof for FORCE and TAKEOVER built from the pass's observation
/// (`redis::ops` establishes it again on a fresh one); the refusal when the proof does not
/// hold.
fn mode(
    view: &ClusterView,
    shard: usize,
    to: &NodeId,
    kind: FailoverKind,
    reason: &str,
) -> Result<FailoverMode, Executed> {
    if kind == FailoverKind::Graceful {
        return Ok(FailoverMode::Graceful);
    }
    let Some(leader) = view.node(to).and_then(|n| n.myself.master_id.clone()) else {
        return Err(Executed::Failed {
            reason: "FailoverFailed",
            message: format!("{} no longer follows a leader", to.short()),
            transient: true,
            retry_after: Duration::ZERO,
            error: None,
        });
    };
    let proof = LeaderGone::establish(view, &leader).map_err(|e| {
        failed(
            "FailoverFailed",
            format!("shard {shard}: not promoting {}: {e}", to.short()),
            e,
        )
    })?;
    let reason = reason.to_string();
    let lose_unreplicated = AcceptedRisk {
        kind: RiskKind::LoseUnreplicatedWrites,
        reason,
    };
    Ok(match kind {
        FailoverKind::Graceful | FailoverKind::Force => FailoverMode::Force {
            proof,
            risk: lose_unreplicated,
        },
        FailoverKind::StalledElection => FailoverMode::ElectionStalled {
            proof,
            risk: lose_unreplicated,
        },
        FailoverKind::Takeover => FailoverMode::Takeover {
            proof,
            risk: AcceptedRisk {
                kind: RiskKind::SplitBrainAndEpochCollision,
                reason: lose_unreplicated.reason,
            },
        },
    })
}

/// A FORCE of a shard forced less than [`FORCE_RETRY`] ago is deferred (S20).
fn deferred(scope: &Scope<'_>, shard: usize, to: &NodeId) -> Option<Executed> {
    let admitted = FORCED.lock().unwrap_or_else(PoisonError::into_inner).admit(
        scope.ns,
        scope.name,
        shard,
        Instant::now(),
    );
    let wait = admitted.err()?;
    Some(Executed::Failed {
        reason: "FailoverDeferred",
        message: format!(
            "shard {shard}: FORCE failover to {} deferred {:.1} s: this shard was forced less than 2 × node timeout ago, and masters that voted then do not vote for it again before",
            to.short(),
            wait.as_secs_f64()
        ),
        transient: true,
        retry_after: wait,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(message: &str) -> Executed {
        Executed::Failed {
            reason: "FailoverFailed",
            message: message.into(),
            transient: true,
            retry_after: FORCE_RETRY,
            error: None,
        }
    }

    #[test]
    fn side_by_side_failovers_fail_as_one_step_that_names_the_others() {
        let done = |n: &str| Executed::Applied(n.into());
        assert!(matches!(
            combined(vec![done("shard 0: d leads"), done("shard 3: 8 leads")]),
            Executed::Applied(n) if n == "shard 0: d leads; shard 3: 8 leads"
        ));
        // A failure is the step's outcome, and its message tells what the others did.
        match combined(vec![
            done("shard 0: d leads"),
            failure("shard 3: refused"),
            failure("shard 5: timed out"),
        ]) {
            Executed::Failed {
                reason,
                message,
                retry_after,
                ..
            } => {
                assert_eq!(reason, "FailoverFailed");
                assert_eq!(
                    message,
                    "shard 3: refused (meanwhile: shard 0: d leads; shard 5: timed out)"
                );
                assert_eq!(retry_after, FORCE_RETRY);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_shard_is_forced_again_no_sooner_than_the_vote_lock_allows() {
        let mut forced = ForceLimiter::new();
        let t0 = Instant::now();
        assert_eq!(forced.admit("ns", "c", 0, t0), Ok(()));
        // The promoted leader died at once (or the FORCE failed): every earlier retry is
        // deferred by exactly the rest of 2 × node timeout, however often it is asked.
        for after_ms in [0, 100, 1_000, 5_000, 9_999] {
            let now = t0 + Duration::from_millis(after_ms);
            assert_eq!(
                forced.admit("ns", "c", 0, now),
                Err(FORCE_RETRY - Duration::from_millis(after_ms)),
                "{after_ms} ms after the first FORCE"
            );
        }
        // Other shards, and the same shard of another cluster, are not held back.
        assert_eq!(
            forced.admit("ns", "c", 1, t0 + Duration::from_secs(1)),
            Ok(())
        );
        assert_eq!(forced.admit("ns", "other", 0, t0), Ok(()));
        assert_eq!(forced.admit("ns2", "c", 0, t0), Ok(()));
        // Once the lock has expired the shard may be forced again, and the window restarts.
        let t1 = t0 + FORCE_RETRY;
        assert_eq!(forced.admit("ns", "c", 0, t1), Ok(()));
        assert_eq!(
            forced.admit("ns", "c", 0, t1 + Duration::from_secs(1)),
            Err(FORCE_RETRY - Duration::from_secs(1))
        );
    }

    #[test]
    fn the_force_window_is_the_vote_lock_of_the_node_timeout_members_run_with() {
        // The window must match what members really run with: the rendered redis.conf's
        // cluster-node-timeout, doubled (a master that voted does not vote again for that
        // long, S20), not a constant compared with its own definition.
        let rendered = crate::controller::config::render(&Default::default());
        let node_timeout_ms: u64 = rendered
            .lines()
            .find_map(|l| l.strip_prefix("cluster-node-timeout "))
            .and_then(|v| v.trim().parse().ok())
            .expect("cluster-node-timeout in the rendered redis.conf");
        assert_eq!(FORCE_RETRY, Duration::from_millis(2 * node_timeout_ms));
    }
}
