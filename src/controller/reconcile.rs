//! One reconcile of one RedisCluster: observe → facts → plan → act → status. The only function
//! that strings the stages together; every decision is in [`super::plan`], every condition is
//! made in [`super::status::build`].

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::act::{self, Executed};
use super::context::Context;
use super::error::Error;
use super::observe;
use super::plan::facts::Facts;
use super::plan::{self, PlacementState, Plan};
use super::status;
use crate::crd::RedisCluster;

/// How soon to look again while work is in flight.
pub const REQUEUE_BUSY: Duration = Duration::from_secs(2);
/// How soon to look again while Redis itself is converging (gossip, sync): one pipelined round
/// trip per member, cheap enough to repeat twice a second.
pub const REQUEUE_REDIS: Duration = Duration::from_millis(500);
/// How soon to look again when waiting on something outside our control (nodes, user input).
pub const REQUEUE_WAIT: Duration = Duration::from_secs(30);
/// Periodic re-check of a healthy cluster: Redis-side changes (a failover Redis did by itself,
/// a leader spread to restore) wake no watch. One pipelined round trip per member.
pub const REQUEUE_IDLE: Duration = Duration::from_secs(10);

/// How soon to look again while something is wrong and nothing was done this pass (Redis's
/// own timers, a Pod starting): a failing member must not wait for the idle period.
const REQUEUE_DEGRADED: Duration = Duration::from_secs(1);

/// Reconciles one RedisCluster.
///
/// # Errors
/// Kubernetes API failures observing or writing status; the controller retries them.
pub async fn reconcile(cluster: Arc<RedisCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Leader election gate (crate::leader): a standby does nothing; it reconciles all on takeover.
    if !ctx.leadership.may_act() {
        return Ok(Action::await_change());
    }
    if !ctx.caches_synced() {
        tracing::debug!(cluster = %cluster.name_any(), "caches not synced yet: looking again shortly");
        return Ok(Action::requeue(REQUEUE_REDIS));
    }
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references garbage-collect everything; Retain PVCs are deliberately unowned.
        ctx.metrics.forget(&crate::metrics::pass::key_of(&cluster));
        let key = format!(
            "{}/{}",
            cluster.namespace().unwrap_or_default(),
            cluster.name_any()
        );
        ctx.connects.put(&key, Default::default());
        if let Some(uid) = cluster.metadata.uid.as_deref() {
            ctx.applied.forget_cluster(uid);
        }
        return Ok(Action::await_change());
    }
    let ns = cluster.namespace().ok_or(Error::MissingMetadata)?;
    let name = cluster.name_any();
    let started = std::time::Instant::now();
    let result = drive(&cluster, &ctx, &ns, &name).await;
    ctx.metrics
        .record_reconcile_result(started.elapsed(), &result);
    match result {
        Err(e) if e.is_namespace_terminating() => {
            tracing::debug!(cluster = %name, "namespace is being deleted; nothing to do");
            Ok(Action::await_change())
        }
        other => other,
    }
}

/// Error policy: log and retry with a delay; the next reconcile starts from fresh observations.
pub fn error_policy(cluster: Arc<RedisCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), error = %error, category = error.category(), "reconcile error");
    Action::requeue(Duration::from_secs(5))
}

/// The pipeline.
async fn drive(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Action, Error> {
    let observed = observe::observe(cluster, ctx, ns, name).await?;
    let facts = Facts::of(&observed);
    let plan = plan::decide(&facts);
    tracing::debug!(
        cluster = %name,
        concern = plan.concern.unwrap_or("-"),
        reason = plan.reason,
        message = %plan.message,
        action = ?plan.action,
        problems = ?plan.problems,
        "plan"
    );
    // Observing took time: a replica that lost its lease meanwhile (paused, cut off) must not
    // act on what it saw, nor write status after a step it may have overlapped with another.
    if !ctx.leadership.may_act() {
        return Ok(Action::await_change());
    }
    let executed = act::act(cluster, ctx, &observed, &plan).await?;
    let (status, conditions) = status::build(cluster, &facts, &plan, &executed);
    ctx.metrics
        .record_pass(cluster, &facts, &plan, &executed, &status, &conditions);
    if !ctx.leadership.may_act() {
        return Ok(Action::await_change());
    }
    status::patch::write(cluster, ctx, ns, name, status, &conditions).await?;
    Ok(requeue(&plan, &executed))
}

/// When to look again.
fn requeue(plan: &Plan, executed: &Executed) -> Action {
    let after = match executed {
        Executed::Failed {
            transient,
            retry_after,
            ..
        } => (*retry_after).max(if *transient {
            REQUEUE_BUSY
        } else {
            REQUEUE_WAIT
        }),
        // Redis-side effects (gossip, sync, a Pod starting) wake no watch: look again soon.
        // After a reshard batch too: the next batch starts from the status this pass wrote
        // (its totals), which the watch delivers within that time (and wakes it sooner).
        Executed::Applied(_) | Executed::Resharded { .. } => REQUEUE_REDIS,
        // A spec refused as invalid waits for the spec to change, or for its Secret to appear:
        // the operator does not watch Secrets (its RBAC reads only the Secrets it is named), so
        // it looks again on the wait period.
        Executed::Nothing if plan.refused => REQUEUE_WAIT,
        Executed::Nothing if matches!(plan.placement, PlacementState::Unsatisfiable(_)) => {
            REQUEUE_WAIT
        }
        Executed::Nothing if plan.ready => REQUEUE_IDLE,
        Executed::Nothing if !plan.problems.is_empty() => REQUEUE_DEGRADED,
        Executed::Nothing => REQUEUE_REDIS,
    };
    // A period the plan waits on (a scale-in grace period) ends before that: look again then.
    // `wake_in` counts from the observation, so this pass's own duration puts the next one
    // just past the end, never before it.
    Action::requeue(plan.wake_in.map_or(after, |w| after.min(w)))
}
