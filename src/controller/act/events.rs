//! Events: the user-facing record of every action the operator takes on a cluster.

use kube::Resource;
use kube::runtime::events::{Event as KubeEvent, EventType};

use crate::controller::context::Context;
use crate::crd::RedisCluster;

pub async fn publish(
    ctx: &Context,
    cluster: &RedisCluster,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    // A replica that lost its lease publishes nothing (leader election, crate::leader).
    if !ctx.leadership.may_act() {
        return;
    }
    let event = KubeEvent {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}
/// Publishes a warning only when the condition it explains is not already False with the same
/// reason, so a waiting cluster does not emit an event every requeue.
pub async fn publish_once(
    ctx: &Context,
    cluster: &RedisCluster,
    type_: EventType,
    reason: &str,
    note: &str,
    condition: &str,
) {
    let already = cluster.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition && c.status == "False" && c.message == note)
    });
    if !already {
        publish(ctx, cluster, type_, reason, note).await;
    }
}

/// Publishes a warning for a problem the last written status does not show yet (the Degraded
/// condition's message lists every problem), so a standing problem is announced once.
pub async fn publish_new_problem(ctx: &Context, cluster: &RedisCluster, reason: &str, note: &str) {
    let shown = cluster.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.message.contains(note))
    });
    if !shown {
        publish(ctx, cluster, EventType::Warning, reason, note).await;
    }
}
