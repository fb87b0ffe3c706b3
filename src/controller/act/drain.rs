//! The scale-in grace period's record on the Pods (`plan::drain`): written once when a shard to
//! remove is first seen drained, cleared when it holds slots again. Each an Event.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::events::EventType;

use super::events::publish;
use super::executed::{Executed, Scope, kube_failed};
use super::objects::patch_pod;
use crate::controller::labels::DRAINED_AT_ANNOTATION;
use crate::controller::observe::Observed;

/// Writes `at` on each Pod, only over the version the plan saw (`resourceVersion`): a Pod the
/// cache showed without the record may have it already (the cache lags the previous pass's
/// own write), and writing again would restart the clock. A Pod that changed meanwhile is left
/// to the next pass, which sees it as it is.
pub(super) async fn mark(
    scope: &Scope<'_>,
    obs: &Observed,
    pods: &[(String, usize)],
    at: jiff::Timestamp,
    until: jiff::Timestamp,
) -> Executed {
    let api: Api<Pod> = Api::namespaced(scope.ctx.client.clone(), scope.ns);
    let mut done: Vec<String> = Vec::new();
    let mut shards: Vec<usize> = Vec::new();
    for (pod, shard) in pods {
        let version = obs
            .members
            .iter()
            .find(|m| m.name() == pod)
            .and_then(|m| m.pod.metadata.resource_version.clone());
        let Some(version) = version else {
            continue;
        };
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": version,
            "annotations": {DRAINED_AT_ANNOTATION: at.to_string()},
        }});
        match patch_pod(&api, pod, &patch).await {
            Ok(true) => {
                done.push(pod.clone());
                shards.push(*shard);
            }
            Ok(false) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                return kube_failed("PatchFailed", &format!("recording the drain on {pod}"), e);
            }
        }
    }
    if done.is_empty() {
        return Executed::Nothing;
    }
    shards.dedup();
    let note = format!(
        "shard(s) {} hold no slot and no key since {at}: their members ({}) stay cluster members, answering MOVED so that clients refresh their slot maps, and are removed at {until}",
        shards
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        done.join(", ")
    );
    publish(
        scope.ctx,
        scope.cluster,
        EventType::Normal,
        "ScaleInGraceStarted",
        &note,
    )
    .await;
    Executed::Applied(note)
}

/// Removes the record from each Pod (a Pod already gone is fine).
pub(super) async fn clear(scope: &Scope<'_>, pods: &[(String, usize)]) -> Executed {
    let api: Api<Pod> = Api::namespaced(scope.ctx.client.clone(), scope.ns);
    let patch = serde_json::json!({"metadata": {"annotations": {DRAINED_AT_ANNOTATION: null}}});
    let mut done: Vec<String> = Vec::new();
    for (pod, _) in pods {
        match patch_pod(&api, pod, &patch).await {
            Ok(true) => done.push(pod.clone()),
            Ok(false) => {}
            Err(e) => {
                return kube_failed("PatchFailed", &format!("clearing the drain on {pod}"), e);
            }
        }
    }
    if done.is_empty() {
        return Executed::Nothing;
    }
    let note = format!(
        "{}: their shard holds slots again (scaled back out); its scale-in grace period is cancelled",
        done.join(", ")
    );
    publish(
        scope.ctx,
        scope.cluster,
        EventType::Normal,
        "ScaleInGraceCancelled",
        &note,
    )
    .await;
    Executed::Applied(note)
}
