//! The RedisClusterBackup controller: observe the cluster → [`plan::next`] → one step → status.
//!
//! A pass takes at most one shard's snapshot, then writes the status, so progress survives an
//! operator restart at any point: a shard is either recorded as stored (with its checksum) or
//! taken again. Its own field manager writes the status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::plan::{self, Step, human_bytes, human_duration};
use super::status::{now_text, publish, seconds_since, set_condition};
use super::store::{Store, backup_path};
use super::{access, destination, shards, take};
use crate::controller::context::Context;
use crate::crd::RedisCluster;
use crate::crd::backup::{
    BackupPhase, BackupShardStatus, DeletionPolicy, RedisClusterBackup, RedisClusterBackupStatus,
    conditions::COMPLETED,
};
use crate::redis::client::AdminOptions;

/// Deletes a backup's stored objects with it (`deletionPolicy: Delete`).
pub const FINALIZER: &str = "redis.redis-operator.dev/backup-data";
const FIELD_MANAGER: &str = "redis-operator/backup";
/// How soon a waiting backup looks again.
const WAIT: Duration = Duration::from_secs(5);

/// Errors the controller retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kubernetes API failure.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The stored objects could not be deleted (retried).
    #[error("{0}")]
    Cleanup(String),
}

/// Runs the controller until SIGTERM.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let api: Api<RedisClusterBackup> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    if let Err(e) = api.list(&kube::api::ListParams::default().limit(1)).await {
        tracing::warn!(error = %e, "RedisClusterBackup CRD not installed: backups disabled");
        return;
    }
    Controller::new(api, watcher::Config::default().any_semantic())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::warn!(error = %e, "backup reconcile failed");
            }
        })
        .await;
}

fn error_policy(backup: Arc<RedisClusterBackup>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(backup = %backup.name_any(), error = %error, "backup reconcile error");
    Action::requeue(Duration::from_secs(10))
}

async fn reconcile(backup: Arc<RedisClusterBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A standby looks again later: it has no acquisition stream here, and a takeover must
    // resume a running backup.
    if !ctx.leadership.may_act() {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    // Its source is chosen from the Pod cache (`access`): not before it is filled.
    if !ctx.caches_synced() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let ns = backup.namespace().unwrap_or_default();
    let api: Api<RedisClusterBackup> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, backup, |event| async {
        match event {
            Finalizer::Apply(b) => apply(&b, &ctx, &ns).await,
            Finalizer::Cleanup(b) => cleanup(&b, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// One step of a backup.
async fn apply(cached: &RedisClusterBackup, ctx: &Context, ns: &str) -> Result<Action, Error> {
    // The status as written last, not the cache's: a pass right after the one that stored a
    // shard must not take that shard again.
    let api: Api<RedisClusterBackup> = Api::namespaced(ctx.client.clone(), ns);
    let Some(fresh) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let backup = &fresh;
    let status = backup.status.clone().unwrap_or_default();
    if matches!(
        status.phase,
        Some(BackupPhase::Completed | BackupPhase::Failed)
    ) {
        return Ok(Action::await_change());
    }
    let clusters: Api<RedisCluster> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cluster) = clusters.get_opt(&backup.spec.cluster).await? else {
        let why = format!("RedisCluster {} not found in {ns}", backup.spec.cluster);
        return wait(backup, ctx, ns, status, "ClusterNotFound", &why).await;
    };
    let store = match destination::open(&ctx.client, ns, &backup.spec.destination.s3).await {
        Ok(s) => s.child(&path_of(backup)),
        Err(destination::DestinationError::Kube(e)) => return Err(e.into()),
        Err(destination::DestinationError::Credentials(why)) => {
            return wait(backup, ctx, ns, status, "CredentialsMissing", &why).await;
        }
        Err(e) => {
            let why = e.to_string();
            return fail(backup, ctx, ns, status, "InvalidDestination", &why).await;
        }
    };
    let seen = match access::observe(&cluster, ctx, ns).await {
        Ok(a) => a,
        Err(access::AccessError::Kube(e)) => {
            return wait(backup, ctx, ns, status, "ClusterUnreachable", &e).await;
        }
        Err(e) => {
            return wait(
                backup,
                ctx,
                ns,
                status,
                "ClusterUnreachable",
                &e.to_string(),
            )
            .await;
        }
    };
    let followers = usize::try_from(cluster.spec.followers_per_leader).unwrap_or(0);
    let pass = Pass { backup, ctx, ns };
    match plan::next(&status, &seen.view, followers) {
        Step::Finished => Ok(Action::await_change()),
        Step::Wait(reason, why) => wait(backup, ctx, ns, status, reason, &why).await,
        Step::Fail(reason, why) => fail(backup, ctx, ns, status, reason, &why).await,
        Step::Start(at_start) => pass.start(status, &store, &at_start).await,
        Step::Snapshot {
            index,
            source,
            role,
            at_least,
        } => {
            let from = (source, seen.pod_at(source), role);
            pass.snapshot(status, &store, &seen.options, index, from, at_least)
                .await
        }
        Step::WriteManifest => {
            let spec = serde_json::to_value(&cluster.spec).unwrap_or_default();
            pass.manifest(status, &store, spec).await
        }
    }
}

/// One pass's steps on one backup.
struct Pass<'a> {
    backup: &'a RedisClusterBackup,
    ctx: &'a Context,
    ns: &'a str,
}

impl Pass<'_> {
    /// Records the shards, their leaders and offsets: the consistency point.
    async fn start(
        &self,
        mut status: RedisClusterBackupStatus,
        store: &Store,
        at_start: &[shards::ShardAtStart],
    ) -> Result<Action, Error> {
        // The store checked before the consistency point, with one LIST of the backup's path:
        // credentials or a bucket it refuses fail the backup at once (`StorageRefused`), not
        // after a shard has streamed into an upload the store refuses (whose 403, under load,
        // can reach us as a connection cut mid-body: a retried `SnapshotFailed`).
        if let Err(e) = store.list().await {
            let why = format!("checking {}: {e}", store.describe());
            return if e.kind.refused() {
                fail(
                    self.backup,
                    self.ctx,
                    self.ns,
                    status,
                    "StorageRefused",
                    &why,
                )
                .await
            } else {
                wait(
                    self.backup,
                    self.ctx,
                    self.ns,
                    status,
                    "StorageUnavailable",
                    &why,
                )
                .await
            };
        }
        status.phase = Some(BackupPhase::Running);
        status.start_time = Some(now_text());
        status.path = Some(path_of(self.backup));
        status.location = Some(store.describe());
        status.shards = at_start
            .iter()
            .map(|s| BackupShardStatus {
                index: i32::try_from(s.index).unwrap_or(i32::MAX),
                slots: shards::slots_text(&s.slots),
                leader_id: s.leader.to_string(),
                leader_offset_at_start: i64::try_from(s.leader_offset).unwrap_or(i64::MAX),
                ..BackupShardStatus::default()
            })
            .collect();
        totals(&mut status);
        let note = format!(
            "backing up {} shards of {} to {}",
            at_start.len(),
            self.backup.spec.cluster,
            store.describe()
        );
        set_condition(
            &mut status.conditions,
            COMPLETED,
            false,
            "Running",
            &note,
            None,
        );
        write(self.ctx, self.ns, self.backup, &status).await?;
        publish(
            self.ctx,
            self.backup,
            EventType::Normal,
            "BackupStarted",
            &note,
        )
        .await;
        Ok(Action::requeue(Duration::from_millis(100)))
    }

    /// Takes shard `index`'s snapshot and records it, or the failed attempt.
    async fn snapshot(
        &self,
        mut status: RedisClusterBackupStatus,
        store: &Store,
        options: &AdminOptions,
        index: usize,
        from: (SocketAddr, String, &'static str),
        at_least: u64,
    ) -> Result<Action, Error> {
        let (backup, ctx, ns) = (self.backup, self.ctx, self.ns);
        let role = from.2;
        let recorded = status.shards[index].clone();
        match take::snapshot(store, options, &recorded, from, at_least).await {
            Ok(done) => {
                let note = format!(
                    "shard {index}: {} keys, {} from {} ({role})",
                    done.keys.unwrap_or(0),
                    human_bytes(done.bytes.unwrap_or(0)),
                    done.source.as_deref().unwrap_or("?")
                );
                status.shards[index] = done;
                totals(&mut status);
                set_condition(
                    &mut status.conditions,
                    COMPLETED,
                    false,
                    "Running",
                    &note,
                    None,
                );
                write(ctx, ns, backup, &status).await?;
                publish(ctx, backup, EventType::Normal, "ShardStored", &note).await;
                Ok(Action::requeue(Duration::from_millis(100)))
            }
            Err(e) => {
                status.shards[index].failed_attempts += 1;
                let attempts = status.shards[index].failed_attempts;
                publish(ctx, backup, EventType::Warning, e.reason, &e.message).await;
                if e.permanent {
                    return fail(backup, ctx, ns, status, e.reason, &e.message).await;
                }
                set_condition(
                    &mut status.conditions,
                    COMPLETED,
                    false,
                    e.reason,
                    &e.message,
                    None,
                );
                write(ctx, ns, backup, &status).await?;
                Ok(Action::requeue(WAIT * u32::try_from(attempts).unwrap_or(1)))
            }
        }
    }

    /// Every shard is stored: the manifest, and the backup is Completed.
    async fn manifest(
        &self,
        mut status: RedisClusterBackupStatus,
        store: &Store,
        spec: serde_json::Value,
    ) -> Result<Action, Error> {
        let (backup, ctx, ns) = (self.backup, self.ctx, self.ns);
        let completed_at = now_text();
        let manifest = match take::write_manifest(store, backup, spec, &completed_at).await {
            Ok(m) => m,
            Err(e) if e.permanent => {
                return fail(backup, ctx, ns, status, e.reason, &e.message).await;
            }
            Err(e) => return wait(backup, ctx, ns, status, e.reason, &e.message).await,
        };
        status.phase = Some(BackupPhase::Completed);
        status.completion_time = Some(completed_at);
        status.duration = Some(human_duration(seconds_since(status.start_time.as_deref())));
        let note = format!(
            "{} shards, {} keys, {} in {}",
            manifest.shards.len(),
            manifest.keys(),
            human_bytes(i64::try_from(manifest.bytes()).unwrap_or(i64::MAX)),
            status.duration.as_deref().unwrap_or("?")
        );
        set_condition(
            &mut status.conditions,
            COMPLETED,
            true,
            "Completed",
            &note,
            None,
        );
        write(ctx, ns, backup, &status).await?;
        publish(ctx, backup, EventType::Normal, "BackupCompleted", &note).await;
        Ok(Action::await_change())
    }
}

/// The backup's objects live under `<destination prefix><cluster>/<name>-<uid8>/`.
fn path_of(backup: &RedisClusterBackup) -> String {
    backup_path(
        &backup.spec.cluster,
        &backup.name_any(),
        backup.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// Progress, bytes and keys from the shards.
fn totals(status: &mut RedisClusterBackupStatus) {
    let done = status.shards.iter().filter(|s| s.done()).count();
    status.progress = Some(format!("{done}/{}", status.shards.len()));
    let bytes: i64 = status.shards.iter().filter_map(|s| s.bytes).sum();
    status.bytes = Some(bytes);
    status.size = Some(human_bytes(bytes));
    status.keys = Some(status.shards.iter().filter_map(|s| s.keys).sum());
}

async fn wait(
    backup: &RedisClusterBackup,
    ctx: &Context,
    ns: &str,
    mut status: RedisClusterBackupStatus,
    reason: &str,
    why: &str,
) -> Result<Action, Error> {
    if status.phase.is_none() {
        status.phase = Some(BackupPhase::Pending);
    }
    set_condition(&mut status.conditions, COMPLETED, false, reason, why, None);
    if Some(&status) != backup.status.as_ref() {
        write(ctx, ns, backup, &status).await?;
    }
    Ok(Action::requeue(WAIT))
}

async fn fail(
    backup: &RedisClusterBackup,
    ctx: &Context,
    ns: &str,
    mut status: RedisClusterBackupStatus,
    reason: &str,
    why: &str,
) -> Result<Action, Error> {
    status.phase = Some(BackupPhase::Failed);
    status.completion_time = Some(now_text());
    set_condition(&mut status.conditions, COMPLETED, false, reason, why, None);
    write(ctx, ns, backup, &status).await?;
    publish(ctx, backup, EventType::Warning, "BackupFailed", why).await;
    Ok(Action::await_change())
}

async fn write(
    ctx: &Context,
    ns: &str,
    backup: &RedisClusterBackup,
    status: &RedisClusterBackupStatus,
) -> Result<(), Error> {
    if !ctx.leadership.may_act() {
        return Ok(());
    }
    let api: Api<RedisClusterBackup> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": RedisClusterBackup::api_version(&()),
        "kind": RedisClusterBackup::kind(&()),
        "status": status,
    });
    api.patch_status(
        &backup.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Deleting a backup: its objects go with it under `deletionPolicy: Delete`. A destination
/// that refuses for good (credentials gone, bucket gone) does not hold the object hostage:
/// a Warning says what was left behind.
async fn cleanup(backup: &RedisClusterBackup, ctx: &Context, ns: &str) -> Result<Action, Error> {
    if backup.spec.deletion_policy == DeletionPolicy::Retain {
        return Ok(Action::await_change());
    }
    let store = match destination::open(&ctx.client, ns, &backup.spec.destination.s3).await {
        Ok(s) => s.child(&path_of(backup)),
        Err(destination::DestinationError::Kube(e)) => return Err(e.into()),
        Err(e) => {
            left_behind(backup, ctx, &e.to_string()).await;
            return Ok(Action::await_change());
        }
    };
    match store.delete_all().await {
        Ok(n) => {
            let note = format!("deleted {n} objects under {}", store.describe());
            publish(ctx, backup, EventType::Normal, "BackupDataDeleted", &note).await;
            Ok(Action::await_change())
        }
        Err(e) if e.kind.refused() => {
            left_behind(backup, ctx, &e.to_string()).await;
            Ok(Action::await_change())
        }
        Err(e) => Err(Error::Cleanup(format!(
            "deleting the objects under {}: {e}",
            store.describe()
        ))),
    }
}

async fn left_behind(backup: &RedisClusterBackup, ctx: &Context, why: &str) {
    let note = format!(
        "the stored objects were not deleted ({why}); delete {} by hand",
        backup
            .status
            .as_ref()
            .and_then(|s| s.location.as_deref())
            .unwrap_or("them")
    );
    publish(
        ctx,
        backup,
        EventType::Warning,
        "BackupDataLeftBehind",
        &note,
    )
    .await;
}
