//! Conditions, Events and status writes of the backup and restore loops.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use crate::controller::context::Context;

/// Sets condition `type_` in `conditions`, keeping its transition time when its status did
/// not change (so a waiting backup does not rewrite its status on every pass).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if ok { "True" } else { "False" };
    let message: String = message.chars().take(1024).collect();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Time(jiff::Timestamp::now());
        }
        c.status = status.into();
        c.reason = reason.into();
        c.message = message;
        c.observed_generation = generation;
        return;
    }
    conditions.push(Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(jiff::Timestamp::now()),
    });
}

/// Publishes an Event about `obj` (nothing from a replica that lost its lease).
pub async fn publish<K>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: &str)
where
    K: Resource<DynamicType = ()>,
{
    if !ctx.leadership.may_act() {
        return;
    }
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

/// Now, RFC 3339 (seconds).
pub fn now_text() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

/// Seconds from `since` (RFC 3339) to now; 0 when unreadable.
pub fn seconds_since(since: Option<&str>) -> i64 {
    since
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| jiff::Timestamp::now().as_second() - t.as_second())
}
