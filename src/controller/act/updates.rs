//! Steps that carry out spec changes: runtime config (`CONFIG SET`), TLS reloads after the
//! Secret was renewed (`CONFIG SET` of the TLS files), and reshard batches.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;

use super::events::publish;
use super::executed::{Executed, Scope, failed, kube_failed};
use crate::controller::build::tls;
use crate::controller::labels::{MANAGER, TLS_RELOADED_ANNOTATION};
use crate::controller::plan::certs::reloaded_annotation;

/// `CONFIG SET` on each member, then records what its process now runs on its Pod. A refused
/// value is the user's to fix: it is reported (Warning Event, condition) and not retried soon.
pub(super) async fn apply_config(
    scope: &Scope<'_>,
    members: &[(String, SocketAddr, i32)],
    config: &BTreeMap<String, String>,
) -> Executed {
    let api: Api<Pod> = Api::namespaced(scope.ctx.client.clone(), scope.ns);
    let runtime: BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| (k.clone(), crate::controller::config::runtime_value(v)))
        .collect();
    let mut done = Vec::new();
    for (pod, addr, restarts) in members {
        if let Err(e) = scope.admin.config_set(*addr, &runtime).await {
            // A refused value is the user's to fix (the Warning Event and the condition say
            // which); a member that did not answer is retried soon.
            return failed("ConfigRejected", format!("CONFIG SET on {pod}: {e}"), e);
        }
        let applied = crate::controller::observe::revision::LiveApplied {
            restarts: *restarts,
            config: config.clone(),
        };
        let patch = serde_json::json!({"metadata": {"annotations": {
            crate::controller::labels::LIVE_CONFIG_ANNOTATION: applied.to_annotation()
        }}});
        match super::objects::patch_pod(&api, pod, &patch).await {
            Ok(true) => done.push(pod.clone()),
            Ok(false) => {}
            Err(e) => {
                return kube_failed("PatchFailed", &format!("recording the config on {pod}"), e);
            }
        }
    }
    if done.is_empty() {
        return Executed::Nothing;
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
    Executed::Applied(note)
}

/// Turns the AOF back on (`CONFIG SET appendonly yes`) on each member that started from its
/// shutdown RDB (`scripts/resume-rdb.sh`), with one Event. Redis starts a rewrite of the
/// dataset at once (or as soon as a running child ends) and reports `aof_enabled:1` from then
/// on, so the next pass does not ask again; a refusal is reported and backed off.
pub(super) async fn resume_aof(scope: &Scope<'_>, members: &[(String, SocketAddr)]) -> Executed {
    let on = BTreeMap::from([("appendonly".to_string(), "yes".to_string())]);
    let mut done = Vec::new();
    for (pod, addr) in members {
        if let Err(e) = scope.admin.config_set(*addr, &on).await {
            let message =
                format!("turning the AOF back on (CONFIG SET appendonly yes) on {pod}: {e}");
            return failed("AofResumeFailed", message, e);
        }
        done.push(pod.as_str());
    }
    if done.is_empty() {
        return Executed::Nothing;
    }
    let note = format!(
        "turned the AOF back on (CONFIG SET appendonly yes, a rewrite of the dataset) on {}: started from the shutdown RDB for a partial resync, resync settled",
        done.join(", ")
    );
    publish(
        scope.ctx,
        scope.cluster,
        EventType::Normal,
        "AofResumed",
        &note,
    )
    .await;
    Executed::Applied(note)
}

/// Makes each member re-read its TLS files: `CONFIG SET` of the files it was started with
/// ([`tls::server_args`]; Redis marks them volatile, so setting the same paths reloads them),
/// then records the reload on its Pod, so a member whose mounted files are not updated yet is
/// not asked again at once (`plan::certs`). The next pass checks what each presents.
pub(super) async fn reload_tls(
    scope: &Scope<'_>,
    members: &[(String, SocketAddr)],
    fingerprint: &str,
) -> Executed {
    let api: Api<Pod> = Api::namespaced(scope.ctx.client.clone(), scope.ns);
    let files: BTreeMap<String, String> = [
        ("tls-cert-file", tls::CERT_KEY),
        ("tls-key-file", tls::KEY_KEY),
        ("tls-ca-cert-file", tls::CA_KEY),
    ]
    .into_iter()
    .map(|(k, file)| (k.to_string(), format!("{}/{file}", tls::TLS_DIR)))
    .collect();
    let annotation = reloaded_annotation(fingerprint, jiff::Timestamp::now());
    let mut done = Vec::new();
    let mut failure = None;
    for (pod, addr) in members {
        if let Err(e) = scope.admin.config_set(*addr, &files).await {
            let message = format!("reloading TLS files on {pod}: {e}");
            failure = Some(failed("TlsReloadFailed", message, e));
            break;
        }
        let patch = serde_json::json!({"metadata": {"annotations": {
            TLS_RELOADED_ANNOTATION: annotation
        }}});
        match api
            .patch(pod, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => done.push(pod.clone()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                let what = format!("recording the reload on {pod}");
                failure = Some(kube_failed("PatchFailed", &what, e));
                break;
            }
        }
    }
    // The members reloaded before a failure were reloaded: their Event is published too.
    let note = format!(
        "reloaded the TLS certificate {} (no restart) on {}",
        fingerprint.get(..16).unwrap_or(fingerprint),
        done.join(", ")
    );
    if !done.is_empty() {
        publish(
            scope.ctx,
            scope.cluster,
            EventType::Normal,
            "CertificatesReloaded",
            &note,
        )
        .await;
    }
    match failure {
        Some(failed) => failed,
        None if done.is_empty() => Executed::Nothing,
        None => Executed::Applied(note),
    }
}

/// Moves one batch of slots with the resumable reshard, with an Event per batch and one when
/// the last batch is done.
pub(super) async fn reshard(
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
        .is_some_and(|r| r.under_way_to(i32::try_from(to_leaders).unwrap_or(i32::MAX)));
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
        .reshard_while(
            moves,
            &crate::redis::ops::reshard::ReshardOptions {
                time_budget: Some(crate::controller::plan::scale::BATCH_TIME),
                ..Default::default()
            },
            None,
            &|| scope.ctx.leadership.may_act(),
        )
        .await
    {
        Ok(report) => {
            // The batch may end early (its time budget): what is left is what did not move.
            let done = report.slots_moved + report.slots_added + report.slots_already_done;
            let left = remaining.saturating_sub(done);
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
        Err(e) => failed(
            "ReshardFailed",
            format!("moving slots ({}): {e}", pairs.join("; ")),
            e,
        ),
    }
}
