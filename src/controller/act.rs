//! Act: carries out the one step a plan chose, through the Kubernetes API or [`ClusterAdmin`]
//! (which re-checks every precondition on a fresh observation right before it sends anything),
//! publishes an Event for every change, and returns what happened. Nothing here decides.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;

use super::events::publish;
use super::labels::{MANAGER, NODE_ID_ANNOTATION};
use super::objects::{MemberInputs, create_member};
use super::plan::{Action, FailoverKind};
use super::{Context, Error};
use crate::crd::RedisCluster;
use crate::redis::ids::{NodeId, SlotRange};
use crate::redis::ops::failover::{AcceptedRisk, FailoverMode, LeaderGone, RiskKind};
use crate::redis::ops::forget::ForgetPolicy;
use crate::redis::ops::repair::RepairOptions;
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};

/// What the step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// Nothing was sent.
    Nothing,
    /// Commands were sent and verified.
    Applied(String),
    /// A batch of slots moved (scaling).
    Resharded {
        /// What was done, for logs.
        message: String,
        /// Slots moved.
        slots: usize,
        /// Keys moved with them.
        keys: u64,
    },
    /// The step (or part of it) failed; `transient` when retrying soon is the right reaction.
    Failed {
        /// CamelCase reason for the condition.
        reason: &'static str,
        /// What failed, for humans.
        message: String,
        /// Retry soon (a member restarting, gossip not settled) or back off.
        transient: bool,
        /// At least how long to wait before the same step may be tried again.
        retry_after: Duration,
    },
}

/// How soon a FORCE failover of a shard may follow the previous one: masters that voted are
/// locked for 2 × cluster-node-timeout (reference S20).
const FORCE_RETRY: Duration = Duration::from_millis(2 * super::config::NODE_TIMEOUT_MS);

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

fn failed(reason: &'static str, message: String, e: &OpError) -> Executed {
    Executed::Failed {
        reason,
        message,
        transient: e.is_transient(),
        retry_after: Duration::ZERO,
    }
}

/// Everything a step may need besides the plan.
pub struct Scope<'a> {
    /// The cluster.
    pub cluster: &'a RedisCluster,
    /// Shared context.
    pub ctx: &'a Context,
    /// Namespace.
    pub ns: &'a str,
    /// Cluster name.
    pub name: &'a str,
    /// Admin over every member with an address.
    pub admin: &'a ClusterAdmin,
    /// Member build inputs.
    pub inputs: MemberInputs<'a>,
}

/// Executes `action`.
///
/// # Errors
/// Kubernetes API failures (the controller retries them with backoff).
pub async fn act(scope: &Scope<'_>, action: &Action) -> Result<Executed, Error> {
    let (cluster, ctx) = (scope.cluster, scope.ctx);
    let executed = match action {
        Action::Wait => Executed::Nothing,
        Action::CreateMembers(news) => {
            let formed = news.iter().any(|n| n.reuse_claim.is_some())
                || scope.admin.addrs().len() > news.len();
            let mut done = Vec::new();
            for new in news {
                let pod =
                    create_member(cluster, ctx, scope.ns, scope.name, new, &scope.inputs).await?;
                let note = format!(
                    "shard {} member {}: pod {pod} on node {} ({}): {}",
                    new.shard, new.member, new.node, new.zone, new.reason
                );
                let reason = if formed {
                    "MemberReplaced"
                } else {
                    "MemberCreated"
                };
                publish(ctx, cluster, EventType::Normal, reason, &note).await;
                done.push(pod);
            }
            Executed::Applied(format!("created pods {}", done.join(", ")))
        }
        Action::DeletePods(pods) => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), scope.ns);
            delete_all(scope, &api, pods, "MemberRemoved", "pod").await?
        }
        Action::Restart(pods) => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), scope.ns);
            delete_all(scope, &api, pods, "MemberRestarted", "pod").await?
        }
        Action::ApplyConfig { members, config } => apply_config(scope, members, config).await?,
        Action::DeleteClaims(claims) => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), scope.ns);
            delete_all(scope, &api, claims, "VolumeDeleted", "PVC").await?
        }
        Action::RecordIdentities(records) => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), scope.ns);
            for (claim, id) in records {
                let patch = serde_json::json!({"metadata": {"annotations": {NODE_ID_ANNOTATION: id.as_str()}}});
                match api
                    .patch(claim, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Executed::Nothing
        }
        Action::Failover {
            shard,
            to,
            kind,
            reason,
        } => failover(scope, *shard, to, *kind, reason).await,
        Action::Forget(ids) => forget(scope, ids, ForgetPolicy::NoSlots).await,
        Action::ReleaseSlots(ids) => {
            forget(scope, ids, ForgetPolicy::ReleaseSlotsOfFailedNode).await
        }
        Action::Meet => match scope.admin.meet().await {
            Ok(StepOutcome::Applied) => {
                Executed::Applied("introduced members to each other (CLUSTER MEET)".into())
            }
            Ok(StepOutcome::AlreadyDone) => Executed::Nothing,
            Err(e) => failed("MeetFailed", format!("CLUSTER MEET: {e}"), &e),
        },
        Action::AddSlots(assignments) => add_slots(scope, assignments).await,
        Action::Replicate(attach) => replicate(scope, attach).await,
        Action::Reshard {
            moves,
            remaining,
            to_leaders,
        } => reshard(scope, moves, *remaining, *to_leaders).await,
        Action::FixOpenSlots => match scope.admin.fix_open_slots(&RepairOptions::default()).await {
            Ok(done) if done.is_empty() => Executed::Nothing,
            Ok(done) => {
                let note = format!("{} repair step(s): {done:?}", done.len());
                publish(ctx, cluster, EventType::Normal, "SlotsRepaired", &note).await;
                Executed::Applied(note)
            }
            Err(e) => failed("RepairFailed", format!("closing open slots: {e}"), &e),
        },
    };
    match &executed {
        Executed::Applied(msg) | Executed::Resharded { message: msg, .. } => {
            tracing::info!(cluster = %scope.name, "{msg}");
        }
        Executed::Failed { message, .. } => {
            tracing::warn!(cluster = %scope.name, "step failed: {message}");
        }
        Executed::Nothing => {}
    }
    Ok(executed)
}

/// Deletes each named object (already gone is fine), with an Event per deletion.
async fn delete_all<K>(
    scope: &Scope<'_>,
    api: &Api<K>,
    objects: &[(String, String)],
    reason: &str,
    kind: &str,
) -> Result<Executed, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for (name, why) in objects {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
        let note = format!("{kind} {name}: {why}");
        publish(scope.ctx, scope.cluster, EventType::Normal, reason, &note).await;
    }
    Ok(Executed::Applied(format!(
        "deleted {} {kind}(s)",
        objects.len()
    )))
}

/// `CONFIG SET` on each member, then records what its process now runs on its Pod. A refused
/// value is the user's to fix: it is reported (Warning Event, condition) and not retried soon.
async fn apply_config(
    scope: &Scope<'_>,
    members: &[(String, std::net::SocketAddr, i32)],
    config: &std::collections::BTreeMap<String, String>,
) -> Result<Executed, Error> {
    let api: Api<Pod> = Api::namespaced(scope.ctx.client.clone(), scope.ns);
    let runtime: std::collections::BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| (k.clone(), super::config::runtime_value(v)))
        .collect();
    let mut done = Vec::new();
    for (pod, addr, restarts) in members {
        if let Err(e) = scope.admin.config_set(*addr, &runtime).await {
            let note = format!("CONFIG SET on {pod}: {e}");
            let executed = failed("ConfigRejected", note.clone(), &e);
            if !e.is_transient() {
                publish(
                    scope.ctx,
                    scope.cluster,
                    EventType::Warning,
                    "ConfigRejected",
                    &note,
                )
                .await;
            }
            return Ok(executed);
        }
        let applied = super::revision::LiveApplied {
            restarts: *restarts,
            config: config.clone(),
        };
        let patch = serde_json::json!({"metadata": {"annotations": {
            super::labels::LIVE_CONFIG_ANNOTATION: applied.to_annotation()
        }}});
        match api
            .patch(pod, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => done.push(pod.clone()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if done.is_empty() {
        return Ok(Executed::Nothing);
    }
    let keys: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let note = format!(
        "applied {} live (no restart) on {}",
        if keys.is_empty() {
            "the default config".to_string()
        } else {
            keys.join(" ")
        },
        done.join(", ")
    );
    publish(
        scope.ctx,
        scope.cluster,
        EventType::Normal,
        "ConfigApplied",
        &note,
    )
    .await;
    Ok(Executed::Applied(note))
}

/// Moves one batch of slots with the resumable reshard, with an Event per batch and one when
/// the last batch is done.
async fn reshard(
    scope: &Scope<'_>,
    moves: &[crate::redis::ops::distribution::SlotMove],
    remaining: usize,
    to_leaders: usize,
) -> Executed {
    // The first batch of a reshard (the last status shows none under way for this target).
    let under_way = scope
        .cluster
        .status
        .as_ref()
        .and_then(|s| s.reshard.as_ref())
        .is_some_and(|r| {
            usize::try_from(r.to_leaders).ok() == Some(to_leaders)
                && r.slots_moved < r.slots_to_move
        });
    if !under_way {
        publish(
            scope.ctx,
            scope.cluster,
            EventType::Normal,
            "ReshardStarted",
            &format!("{remaining} slot(s) to move to spread them evenly over {to_leaders} shards"),
        )
        .await;
    }
    let pairs: Vec<String> = crate::redis::ops::distribution::summarize(moves)
        .iter()
        .map(|(from, to, ranges)| {
            let list: Vec<String> = ranges.iter().map(ToString::to_string).collect();
            format!(
                "{} -> {}: {}",
                from.as_ref().map_or("unassigned", |f| f.short()),
                to.short(),
                list.join(",")
            )
        })
        .collect();
    match scope
        .admin
        .reshard(
            moves,
            &crate::redis::ops::reshard::ReshardOptions::default(),
            None,
        )
        .await
    {
        Ok(report) => {
            let left = remaining.saturating_sub(moves.len());
            let note = format!(
                "moved {} slot(s) and {} key(s) in {} ms ({}); {left} slot(s) left to move",
                report.slots_moved + report.slots_added,
                report.keys_moved,
                report.elapsed.as_millis(),
                pairs.join("; ")
            );
            publish(
                scope.ctx,
                scope.cluster,
                EventType::Normal,
                "SlotsMoved",
                &note,
            )
            .await;
            if left == 0 {
                publish(
                    scope.ctx,
                    scope.cluster,
                    EventType::Normal,
                    "ReshardCompleted",
                    &format!("each of the {to_leaders} shards owns an even share of the slots"),
                )
                .await;
            }
            Executed::Resharded {
                message: note,
                slots: report.slots_moved + report.slots_added + report.slots_already_done,
                keys: report.keys_moved,
            }
        }
        Err(e) => {
            let note = format!("moving slots ({}): {e}", pairs.join("; "));
            publish(
                scope.ctx,
                scope.cluster,
                EventType::Warning,
                "ReshardFailed",
                &note,
            )
            .await;
            failed("ReshardFailed", note, &e)
        }
    }
}

async fn failover(
    scope: &Scope<'_>,
    shard: usize,
    to: &NodeId,
    kind: FailoverKind,
    reason: &str,
) -> Executed {
    let (cluster, ctx) = (scope.cluster, scope.ctx);
    let mode = match kind {
        FailoverKind::Graceful => FailoverMode::Graceful,
        FailoverKind::Force | FailoverKind::Takeover => {
            // The proof is built from a fresh observation; `failover` checks it again.
            let view = scope.admin.observe().await;
            let Some(leader) = view.node(to).and_then(|n| n.myself.master_id.clone()) else {
                return Executed::Failed {
                    reason: "FailoverFailed",
                    message: format!("{} no longer follows a leader", to.short()),
                    transient: true,
                    retry_after: Duration::ZERO,
                };
            };
            match LeaderGone::establish(&view, &leader) {
                Ok(proof) if kind == FailoverKind::Force => FailoverMode::Force {
                    proof,
                    risk: AcceptedRisk {
                        kind: RiskKind::LoseUnreplicatedWrites,
                        reason: reason.to_string(),
                    },
                },
                Ok(proof) => FailoverMode::Takeover {
                    proof,
                    risk: AcceptedRisk {
                        kind: RiskKind::SplitBrainAndEpochCollision,
                        reason: reason.to_string(),
                    },
                },
                Err(e) => {
                    return failed(
                        "FailoverFailed",
                        format!("shard {shard}: not promoting {}: {e}", to.short()),
                        &e,
                    );
                }
            }
        }
    };
    if kind == FailoverKind::Force {
        let admitted = FORCED.lock().unwrap_or_else(PoisonError::into_inner).admit(
            scope.ns,
            scope.name,
            shard,
            Instant::now(),
        );
        if let Err(wait) = admitted {
            return Executed::Failed {
                reason: "FailoverDeferred",
                message: format!(
                    "shard {shard}: FORCE failover to {} deferred {:.1} s: this shard was forced less than 2 × node timeout ago, and masters that voted then do not vote for it again before",
                    to.short(),
                    wait.as_secs_f64()
                ),
                transient: true,
                retry_after: wait,
            };
        }
    }
    let (label, severity) = match kind {
        FailoverKind::Graceful => ("graceful", EventType::Normal),
        FailoverKind::Force => ("FORCE", EventType::Warning),
        FailoverKind::Takeover => ("TAKEOVER", EventType::Warning),
    };
    publish(
        ctx,
        cluster,
        severity,
        "FailoverStarted",
        &format!(
            "shard {shard}: {label} failover to {}: {reason}",
            to.short()
        ),
    )
    .await;
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
            publish(ctx, cluster, EventType::Warning, "FailoverFailed", &note).await;
            Executed::Failed {
                reason: "FailoverFailed",
                message: note,
                transient: e.is_transient(),
                retry_after: if kind != FailoverKind::Graceful {
                    FORCE_RETRY
                } else {
                    Duration::ZERO
                },
            }
        }
    }
}

async fn forget(scope: &Scope<'_>, ids: &[(NodeId, String)], policy: ForgetPolicy) -> Executed {
    let (reason, severity) = match policy {
        ForgetPolicy::NoSlots => ("NodeForgotten", EventType::Normal),
        ForgetPolicy::ReleaseSlotsOfFailedNode => ("SlotsReleased", EventType::Warning),
    };
    let mut done = Vec::new();
    for (id, why) in ids {
        match scope.admin.forget_everywhere(id, policy).await {
            Ok(StepOutcome::Applied) => {
                publish(
                    scope.ctx,
                    scope.cluster,
                    severity,
                    reason,
                    &format!("forgot {} on every member: {why}", id.short()),
                )
                .await;
                done.push(id.short().to_string());
            }
            Ok(StepOutcome::AlreadyDone) => {}
            Err(e) => {
                return failed(
                    "ForgetFailed",
                    format!("forgetting {}: {e}", id.short()),
                    &e,
                );
            }
        }
    }
    if done.is_empty() {
        Executed::Nothing
    } else {
        Executed::Applied(format!("forgot {}", done.join(", ")))
    }
}

async fn add_slots(
    scope: &Scope<'_>,
    assignments: &[(std::net::SocketAddr, usize, Vec<SlotRange>)],
) -> Executed {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let mut transient = true;
    for (addr, shard, ranges) in assignments {
        match scope.admin.add_slot_ranges(*addr, ranges).await {
            Ok(StepOutcome::Applied) => {
                let list: Vec<String> = ranges.iter().map(ToString::to_string).collect();
                done.push(format!("shard {shard} ({addr}): {}", list.join(",")));
            }
            Ok(StepOutcome::AlreadyDone) => {}
            Err(e) => {
                transient &= e.is_transient();
                errors.push(format!("shard {shard} slots on {addr}: {e}"));
            }
        }
    }
    if !done.is_empty() {
        publish(
            scope.ctx,
            scope.cluster,
            EventType::Normal,
            "SlotsAssigned",
            &done.join("; "),
        )
        .await;
    }
    summarize("AssignSlotsFailed", done, errors, transient)
}

async fn replicate(
    scope: &Scope<'_>,
    attach: &[(std::net::SocketAddr, usize, NodeId)],
) -> Executed {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let mut transient = true;
    for (addr, shard, leader) in attach {
        match scope.admin.replicate(*addr, leader).await {
            Ok(StepOutcome::Applied) => done.push(format!(
                "{addr} follows shard {shard} leader {}",
                leader.short()
            )),
            Ok(StepOutcome::AlreadyDone) => {}
            Err(e) => {
                transient &= e.is_transient();
                errors.push(format!("{addr} to follow {}: {e}", leader.short()));
            }
        }
    }
    if !done.is_empty() {
        publish(
            scope.ctx,
            scope.cluster,
            EventType::Normal,
            "FollowerAttached",
            &done.join("; "),
        )
        .await;
    }
    summarize("AttachFailed", done, errors, transient)
}

fn summarize(
    reason: &'static str,
    done: Vec<String>,
    errors: Vec<String>,
    transient: bool,
) -> Executed {
    if !errors.is_empty() {
        Executed::Failed {
            reason,
            message: errors.join("; "),
            transient,
            retry_after: Duration::ZERO,
        }
    } else if done.is_empty() {
        Executed::Nothing
    } else {
        Executed::Applied(done.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_force_window_is_two_node_timeouts() {
        assert_eq!(
            FORCE_RETRY,
            Duration::from_millis(2 * crate::controller::config::NODE_TIMEOUT_MS)
        );
        assert_eq!(FORCE_RETRY, Duration::from_secs(10));
    }
}
