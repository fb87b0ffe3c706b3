//! The RedisClusterBackupSchedule controller: makes the backup that is due, deletes the ones
//! retention no longer keeps, and sleeps until the next run.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::schedule_plan::{Existing, Keep, Schedule, backup_name, to_delete};
use super::status::{publish, set_condition};
use crate::controller::context::Context;
use crate::controller::observe::passwords::parse_go_duration;
use crate::crd::backup::{BackupPhase, RedisClusterBackup};
use crate::crd::schedule::{
    RedisClusterBackupSchedule, RedisClusterBackupScheduleStatus, SCHEDULE_LABEL,
};

const FIELD_MANAGER: &str = "redis-operator/schedule";
/// The condition: the schedule is valid and waiting for its next run.
const SCHEDULED: &str = "Scheduled";

/// Errors the controller retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kubernetes API failure.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the controller until SIGTERM.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let api: Api<RedisClusterBackupSchedule> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    if let Err(e) = api.list(&ListParams::default().limit(1)).await {
        tracing::warn!(error = %e, "RedisClusterBackupSchedule CRD not installed: schedules disabled");
        return;
    }
    let backups: Api<RedisClusterBackup> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    // A backup finishing wakes its schedule (retention, lastSuccessfulTime).
    Controller::new(api, watcher::Config::default().any_semantic())
        .watches(
            backups,
            watcher::Config::default().labels(SCHEDULE_LABEL),
            |b: RedisClusterBackup| {
                let name = b.labels().get(SCHEDULE_LABEL)?.clone();
                Some(kube::runtime::reflector::ObjectRef::new(&name).within(&b.namespace()?))
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "schedule reconcile failed");
            }
        })
        .await;
}

fn error_policy(s: Arc<RedisClusterBackupSchedule>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(schedule = %s.name_any(), error = %error, "schedule error");
    Action::requeue(Duration::from_secs(30))
}

async fn reconcile(
    schedule: Arc<RedisClusterBackupSchedule>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if !ctx.leadership.may_act() {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let ns = schedule.namespace().unwrap_or_default();
    let name = schedule.name_any();
    let mut status = schedule.status.clone().unwrap_or_default();
    let backups: Api<RedisClusterBackup> = Api::namespaced(ctx.client.clone(), &ns);
    let mine = backups
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={name}")))
        .await?
        .items;
    let existing: Vec<Existing> = mine.iter().filter_map(existing).collect();
    status.active = existing
        .iter()
        .filter(|b| !matches!(b.phase, Some(BackupPhase::Completed | BackupPhase::Failed)))
        .map(|b| b.name.clone())
        .collect();
    status.last_successful_time = existing
        .iter()
        .filter(|b| b.phase == Some(BackupPhase::Completed))
        .map(|b| b.created)
        .max()
        .map(|t| t.to_string())
        .or(status.last_successful_time);
    retain(&schedule, &ctx, &backups, &existing).await?;

    let parsed = match Schedule::parse(&schedule.spec.schedule) {
        Ok(s) => s,
        Err(why) => {
            set_condition(
                &mut status.conditions,
                SCHEDULED,
                false,
                "InvalidSchedule",
                &why,
                schedule.metadata.generation,
            );
            write(&ctx, &ns, &name, &schedule, &status).await?;
            return Ok(Action::await_change());
        }
    };
    let now = jiff::Timestamp::now();
    let since = status
        .last_schedule_time
        .as_deref()
        .and_then(|t| t.parse().ok())
        .or_else(|| schedule.creation_timestamp().map(|t| t.0))
        .unwrap_or(now);
    if let Some(at) = parsed.due(since, now).filter(|_| !schedule.spec.suspend) {
        if status.active.is_empty() {
            let backup = make_backup(&schedule, &name, at);
            match backups.create(&PostParams::default(), &backup).await {
                Ok(_) => {}
                // Made already, before a restart: the name comes from the scheduled time.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            let note = format!("made {} for the run at {at}", backup.name_any());
            publish(
                &ctx,
                schedule.as_ref(),
                EventType::Normal,
                "BackupScheduled",
                &note,
            )
            .await;
            status.active.push(backup.name_any());
        } else {
            let note = format!(
                "skipped the run at {at}: {} still running",
                status.active.join(", ")
            );
            publish(
                &ctx,
                schedule.as_ref(),
                EventType::Warning,
                "BackupSkipped",
                &note,
            )
            .await;
        }
        status.last_schedule_time = Some(at.to_string());
    }
    let next = parsed.next_after(now);
    status.next_schedule_time = next.map(|t| t.to_string());
    let message = match (schedule.spec.suspend, next) {
        (true, _) => "suspended".to_string(),
        (false, Some(t)) => format!("next run at {t}"),
        (false, None) => "the schedule has no future run".to_string(),
    };
    set_condition(
        &mut status.conditions,
        SCHEDULED,
        !schedule.spec.suspend,
        if schedule.spec.suspend {
            "Suspended"
        } else {
            "Scheduled"
        },
        &message,
        schedule.metadata.generation,
    );
    if Some(&status) != schedule.status.as_ref() {
        write(&ctx, &ns, &name, &schedule, &status).await?;
    }
    let wake = next.map_or(Duration::from_secs(3600), |t| {
        Duration::from_secs(u64::try_from(t.as_second() - now.as_second()).unwrap_or(0) + 1)
    });
    Ok(Action::requeue(wake.min(Duration::from_secs(3600))))
}

fn existing(b: &RedisClusterBackup) -> Option<Existing> {
    Some(Existing {
        name: b.name_any(),
        created: b.creation_timestamp()?.0,
        phase: b.status.as_ref().and_then(|s| s.phase),
    })
}

fn make_backup(
    schedule: &RedisClusterBackupSchedule,
    name: &str,
    at: jiff::Timestamp,
) -> RedisClusterBackup {
    let mut backup =
        RedisClusterBackup::new(&backup_name(name, at), schedule.spec.template.clone());
    backup.metadata.labels = Some([(SCHEDULE_LABEL.to_string(), name.to_string())].into());
    backup
}

/// Deletes the backups retention no longer keeps (their finalizer deletes the stored data).
async fn retain(
    schedule: &RedisClusterBackupSchedule,
    ctx: &Context,
    backups: &Api<RedisClusterBackup>,
    existing: &[Existing],
) -> Result<(), Error> {
    let keep = Keep {
        last: usize::try_from(schedule.spec.keep_last).unwrap_or(1),
        within: schedule
            .spec
            .keep_within
            .as_deref()
            .and_then(parse_go_duration),
        failed: usize::try_from(schedule.spec.keep_failed).unwrap_or(0),
    };
    for name in to_delete(existing, keep, jiff::Timestamp::now()) {
        match backups.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                let note = format!(
                    "deleted {name} (retention: keepLast {}, keepWithin {:?}, keepFailed {})",
                    keep.last, schedule.spec.keep_within, keep.failed
                );
                publish(ctx, schedule, EventType::Normal, "BackupExpired", &note).await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn write(
    ctx: &Context,
    ns: &str,
    name: &str,
    _schedule: &RedisClusterBackupSchedule,
    status: &RedisClusterBackupScheduleStatus,
) -> Result<(), Error> {
    if !ctx.leadership.may_act() {
        return Ok(());
    }
    let api: Api<RedisClusterBackupSchedule> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": RedisClusterBackupSchedule::api_version(&()),
        "kind": RedisClusterBackupSchedule::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
