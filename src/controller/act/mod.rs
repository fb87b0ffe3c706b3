//! Act: carries out the one step a plan chose, through the Kubernetes API or [`ClusterAdmin`]
//! (which re-checks every precondition on a fresh observation right before it sends anything),
//! publishes an Event for every change, and returns what happened. Nothing here decides.

pub mod auth;
pub mod events;
mod failover;
pub mod objects;
mod updates;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;

use crate::controller::labels::{MANAGER, NODE_ID_ANNOTATION};
use crate::controller::plan::Action;
use crate::controller::{Context, Error};
use crate::crd::RedisCluster;
use crate::redis::ids::{NodeId, SlotRange};
use crate::redis::ops::forget::ForgetPolicy;
use crate::redis::ops::repair::RepairOptions;
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};
use events::publish;
use objects::{MemberInputs, create_member};

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

pub(super) fn failed(reason: &'static str, message: String, e: &OpError) -> Executed {
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
        Action::ApplyConfig { members, config } => {
            updates::apply_config(scope, members, config).await?
        }
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
        } => failover::failover(scope, *shard, to, *kind, reason).await,
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
        } => updates::reshard(scope, moves, *remaining, *to_leaders).await,
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
pub(super) async fn delete_all<K>(
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
