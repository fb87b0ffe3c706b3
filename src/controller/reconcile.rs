//! One reconcile of one RedisCluster: observe → plan → one step → status. The only function
//! that strings the I/O together; every decision is in [`crate::controller::plan`].

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::controller::act::auth::{ensure_auth_secret, read_password};
use crate::controller::act::events::{publish_new_problem, publish_once};
use crate::controller::act::objects::{MemberInputs, apply_support_objects};
use crate::controller::act::{self, Executed, Scope};
use crate::controller::config;
use crate::controller::observe::redis as redis_view;
use crate::controller::observe::{self, Observed};
use crate::controller::plan::{self, PlacementState, Plan};
use crate::controller::status::patch::{summary, write_status};
use crate::controller::status::{self, Desired, types};
use crate::controller::{Context, Error, REQUEUE_BUSY, REQUEUE_IDLE, REQUEUE_REDIS, REQUEUE_WAIT};
use crate::crd::RedisCluster;
use crate::redis::ops::ClusterAdmin;

/// How soon to look again while something is wrong and nothing was done this pass (Redis's
/// own timers, a Pod starting): a failing member must not wait for the idle period.
const REQUEUE_DEGRADED: Duration = Duration::from_secs(1);

/// Reconciles one RedisCluster.
///
/// # Errors
/// Kubernetes API failures; the controller retries them with backoff.
pub async fn reconcile(cluster: Arc<RedisCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Leader election gate (crate::leader): a standby does nothing; it reconciles all on takeover.
    if !ctx.leadership.may_act() {
        return Ok(Action::await_change());
    }
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references garbage-collect everything; Retain PVCs are deliberately unowned.
        return Ok(Action::await_change());
    }
    let ns = cluster.namespace().ok_or(Error::MissingMetadata)?;
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata)?;
    match drive(&cluster, &ctx, &ns, &name).await {
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

async fn drive(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Action, Error> {
    // Input the operator must refuse: nothing is created, changed or deleted.
    let secret = match config::validate_overrides(&cluster.spec.config) {
        Err(msg) => Err(msg),
        Ok(()) => ensure_auth_secret(cluster, ctx, ns).await?,
    };
    let password = match secret {
        Ok((secret_name, secret_key)) => read_password(ctx, ns, &secret_name, &secret_key)
            .await?
            .map(|p| (secret_name, secret_key, p)),
        Err(msg) => Err(msg),
    };
    let (secret_name, secret_key, password) = match password {
        Ok(found) => found,
        Err(msg) => return invalid_spec(cluster, ctx, ns, name, msg).await,
    };

    let options = redis_view::admin_options(&password);
    let obs = observe::observe(cluster, ctx, ns, name, Some(&options)).await;
    let plan = plan::plan(&obs);
    tracing::debug!(
        cluster = %name,
        reason = plan.reason,
        message = %plan.message,
        action = ?plan.action,
        problems = ?plan.problems,
        "plan"
    );
    let executed = if plan.refused {
        publish_once(
            ctx,
            cluster,
            EventType::Warning,
            plan.reason,
            &plan.message,
            types::PROGRESSING,
        )
        .await;
        Executed::Nothing
    } else if let PlacementState::Unsatisfiable(reason) = &plan.placement {
        publish_once(
            ctx,
            cluster,
            EventType::Warning,
            "PlacementUnsatisfiable",
            reason,
            types::PLACEMENT_SATISFIED,
        )
        .await;
        Executed::Nothing
    } else {
        let rendered = config::render(&cluster.spec.config);
        let live_config = crate::controller::observe::revision::LiveApplied {
            restarts: 0,
            config: obs.target.live.clone(),
        }
        .to_annotation();
        apply_support_objects(cluster, ctx, ns, &rendered).await?;
        let admin = ClusterAdmin::new(
            obs.members
                .iter()
                .filter(|m| !m.finished())
                .filter_map(redis_view::addr_of),
            options,
        );
        let scope = Scope {
            cluster,
            ctx,
            ns,
            name,
            admin: &admin,
            inputs: MemberInputs {
                secret_name: &secret_name,
                secret_key: &secret_key,
                revision: &obs.target.revision,
                live_config: &live_config,
            },
        };
        act::act(&scope, &plan.action).await?
    };
    // Losses only a human can accept are announced once, with what to do.
    for p in plan
        .problems
        .iter()
        .filter(|p| matches!(p.reason, "DataLoss" | "QuorumLost"))
    {
        publish_new_problem(ctx, cluster, p.reason, &p.message).await;
    }
    let mut conditions = status::conditions(&plan, &executed);
    let reshard = status::reshard_status(
        cluster.status.as_ref().and_then(|s| s.reshard.as_ref()),
        plan.reshard.as_ref(),
        &executed,
    );
    if let (Some(r), true) = (&reshard, plan.reshard.is_some()) {
        status::with_reshard_progress(&mut conditions, r);
    }
    let status = summary(
        cluster,
        &obs,
        &conditions,
        plan.orphaned_claims.clone(),
        reshard,
    );
    write_status(cluster, ctx, ns, name, status, &conditions).await?;
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
        Executed::Nothing if plan.refused => REQUEUE_WAIT,
        Executed::Nothing if matches!(plan.placement, PlacementState::Unsatisfiable(_)) => {
            REQUEUE_WAIT
        }
        Executed::Nothing if plan.ready => REQUEUE_IDLE,
        Executed::Nothing if !plan.problems.is_empty() => REQUEUE_DEGRADED,
        Executed::Nothing => REQUEUE_REDIS,
    };
    Action::requeue(after)
}

async fn invalid_spec(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    msg: String,
) -> Result<Action, Error> {
    publish_once(
        ctx,
        cluster,
        EventType::Warning,
        "InvalidSpec",
        &msg,
        types::READY,
    )
    .await;
    let conditions = vec![
        Desired::new(types::READY, false, "InvalidSpec", msg.clone()),
        Desired::new(
            types::PROGRESSING,
            false,
            "InvalidSpec",
            "fix the spec; nothing was changed",
        ),
    ];
    let obs: Observed = observe::observe(cluster, ctx, ns, name, None).await;
    let previous = cluster.status.as_ref().and_then(|s| s.reshard.clone());
    let status = summary(cluster, &obs, &conditions, Vec::new(), previous);
    write_status(cluster, ctx, ns, name, status, &conditions).await?;
    Ok(Action::await_change())
}
