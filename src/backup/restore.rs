//! The restore loop: fills a new RedisCluster from `spec.restoreFrom`, once it serves every slot.
//!
//! Steps, each recorded in `status.restore` (its own field manager) so a restart resumes:
//! 1. the manifest is read and checked, and every object's size and SHA-256 is verified by
//!    streaming it, before anything is written (a corrupt or missing object fails the restore
//!    with nothing written);
//! 2. the cluster must hold no key (a restore never merges into data);
//! 3. one backup shard per pass: its keys go to whichever shard owns their slot here, whatever
//!    the number of shards. The shard is marked in progress first, so after a restart its keys
//!    already written are recognised (`RESTORE … REPLACE` for those) instead of refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use ring::digest;
use tokio::io::AsyncReadExt;

use super::error::StoreErrorKind;
use super::manifest::{MANIFEST, Manifest};
use super::status::{now_text, publish, seconds_since, set_condition};
use super::store::Store;
use super::{access, destination, plan};
use crate::controller::context::Context;
use crate::crd::backup::{BackupPhase, RestorePhase, RestoreStatus, conditions::RESTORED};
use crate::crd::{Phase, RedisCluster, RedisClusterBackup};
use crate::redis::ops::restore_stream::{
    RestoreError, RestoreMode, RestoreProgress, RestoreSummary, cluster_key_count, restore_rdb,
};

const FIELD_MANAGER: &str = "redis-operator/restore";
const WAIT: Duration = Duration::from_secs(5);
/// Attempts per backup shard before the restore fails.
const MAX_ATTEMPTS: i32 = 5;

/// Errors the loop retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kubernetes API failure.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the restore loop until SIGTERM.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let api: Api<RedisCluster> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(api, watcher::Config::default().any_semantic())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "restore reconcile failed");
            }
        })
        .await;
}

fn error_policy(cluster: Arc<RedisCluster>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), error = %error, "restore error");
    Action::requeue(Duration::from_secs(10))
}

/// The cluster a pass works on.
struct Target<'a> {
    cluster: &'a RedisCluster,
    ctx: &'a Context,
    ns: &'a str,
}

/// Why a restore waits or failed: the condition's reason and message.
#[derive(Debug)]
pub struct Outcome {
    /// The condition's reason.
    pub reason: &'static str,
    /// Its message.
    pub message: String,
}

fn outcome(reason: &'static str, message: impl Into<String>) -> Outcome {
    Outcome {
        reason,
        message: message.into(),
    }
}

async fn reconcile(cached: Arc<RedisCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cached.spec.restore_from.is_none() || cached.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !ctx.leadership.may_act() {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    if !ctx.caches_synced() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    // The status as written last, not the cache's: a pass right after the one that recorded
    // a shard as done must not see it still in progress (and write it again).
    let ns = cached.namespace().unwrap_or_default();
    let api: Api<RedisCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cluster) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let Some(from) = cluster.spec.restore_from.clone() else {
        return Ok(Action::await_change());
    };
    let status = cluster
        .status
        .as_ref()
        .and_then(|s| s.restore.clone())
        .unwrap_or_default();
    if matches!(
        status.phase,
        Some(RestorePhase::Completed | RestorePhase::Failed)
    ) {
        return Ok(Action::await_change());
    }
    let t = Target {
        cluster: &cluster,
        ctx: &ctx,
        ns: &ns,
    };
    let store = match source(&ctx, &ns, &from).await? {
        Ok(store) => store,
        Err(wait_for) => return wait(&t, status, wait_for).await,
    };
    let ready = cluster.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready);
    if !ready {
        let o = outcome("WaitingForCluster", "waiting for the cluster to be Ready");
        return wait(&t, status, o).await;
    }
    let manifest = match store.get(MANIFEST).await {
        Ok(bytes) => match Manifest::parse(&bytes) {
            Ok(m) => m,
            Err(why) => {
                return fail(&t, status, outcome("InvalidBackup", why)).await;
            }
        },
        Err(e) if e.kind == StoreErrorKind::NotFound => {
            let why = format!(
                "{} has no {MANIFEST}: not a complete backup (a failed or unfinished one has none)",
                store.describe()
            );
            return fail(&t, status, outcome("BackupNotFound", why)).await;
        }
        Err(e) => return store_error(&t, status, &e).await,
    };
    step(&t, status, &store, &manifest).await
}

/// The store holding the backup, or why not yet.
async fn source(
    ctx: &Context,
    ns: &str,
    from: &crate::crd::RestoreFrom,
) -> Result<Result<Store, Outcome>, Error> {
    let (dest, path) = if let Some(name) = &from.backup {
        let backups: Api<RedisClusterBackup> = Api::namespaced(ctx.client.clone(), ns);
        let Some(b) = backups.get_opt(name).await? else {
            return Ok(Err(outcome(
                "BackupNotFound",
                format!("RedisClusterBackup {name} not found in {ns}"),
            )));
        };
        let st = b.status.clone().unwrap_or_default();
        let (Some(BackupPhase::Completed), Some(path)) = (st.phase, st.path) else {
            return Ok(Err(outcome(
                "BackupNotCompleted",
                format!(
                    "RedisClusterBackup {name} is not Completed ({:?})",
                    st.phase
                ),
            )));
        };
        (b.spec.destination.s3.clone(), path)
    } else {
        match (&from.s3, &from.path) {
            (Some(s3), Some(path)) => (s3.clone(), path.clone()),
            _ => {
                return Ok(Err(outcome(
                    "InvalidSpec",
                    "restoreFrom needs backup, or s3 and path",
                )));
            }
        }
    };
    match destination::open(&ctx.client, ns, &dest).await {
        Ok(store) => Ok(Ok(store.child(&path))),
        Err(destination::DestinationError::Kube(e)) => Err(e.into()),
        Err(e) => Ok(Err(outcome("CredentialsMissing", e.to_string()))),
    }
}

/// Verify, refuse a non-empty cluster, or restore the next shard.
async fn step(
    t: &Target<'_>,
    mut status: RestoreStatus,
    store: &Store,
    manifest: &Manifest,
) -> Result<Action, Error> {
    let seen = match access::observe(t.cluster, t.ctx, t.ns).await {
        Ok(a) => a,
        Err(e) => {
            return wait(t, status, outcome("ClusterUnreachable", e.to_string())).await;
        }
    };
    status.source = Some(store.describe());
    if status.phase != Some(RestorePhase::Running) {
        return begin(t, status, store, manifest, &seen).await;
    }
    next_shard(t, status, store, manifest, &seen).await
}

/// Before the first key: every object verified, the cluster empty; then Running.
async fn begin(
    t: &Target<'_>,
    mut status: RestoreStatus,
    store: &Store,
    manifest: &Manifest,
    seen: &access::Access,
) -> Result<Action, Error> {
    let total = manifest.shards.len();
    if let Err(o) = verify(store, manifest).await {
        return if o.reason == "StorageUnavailable" {
            wait(t, status, o).await
        } else {
            fail(t, status, o).await
        };
    }
    match cluster_key_count(&seen.addrs(), &seen.options).await {
        Ok(0) => {}
        Ok(n) => {
            let why = format!(
                "the cluster already holds {n} keys: a restore writes only into an empty cluster"
            );
            return fail(t, status, outcome("RestoreRefused", why)).await;
        }
        Err(e) => {
            return wait(t, status, outcome("ClusterUnreachable", e.to_string())).await;
        }
    }
    status.phase = Some(RestorePhase::Running);
    status.start_time = Some(now_text());
    status.progress = Some(format!("0/{total}"));
    let note = format!(
        "restoring {} keys ({} shards, {}) from {}",
        manifest.keys(),
        total,
        plan::human_bytes(i64::try_from(manifest.bytes()).unwrap_or(i64::MAX)),
        store.describe()
    );
    set_condition(
        &mut status.conditions,
        RESTORED,
        false,
        "Running",
        &note,
        None,
    );
    write(t, &status).await?;
    publish(t.ctx, t.cluster, EventType::Normal, "RestoreStarted", &note).await;
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// Writes the next backup shard not done (again, tolerating its keys, when it was in progress).
async fn next_shard(
    t: &Target<'_>,
    mut status: RestoreStatus,
    store: &Store,
    manifest: &Manifest,
    seen: &access::Access,
) -> Result<Action, Error> {
    let total = manifest.shards.len();
    let Some(shard) = manifest.shards.iter().find(|s| {
        !status
            .shards_done
            .contains(&i32::try_from(s.index).unwrap_or(-1))
    }) else {
        return complete(t, status, manifest).await;
    };
    let index = i32::try_from(shard.index).unwrap_or(i32::MAX);
    let resume = status.in_progress == Some(index);
    if !resume {
        status.in_progress = Some(index);
        status.failed_attempts = None;
        write(t, &status).await?;
    }
    let mode = if resume {
        RestoreMode::Resume
    } else {
        RestoreMode::Fresh
    };
    let result = match store.reader(&shard.object).await {
        Ok(reader) => restore_shard(t, &status, reader, seen, mode)
            .await
            .map_err(|e| (e.transient(), e.to_string())),
        Err(e) => Err((e.transient(), e.to_string())),
    };
    match result {
        Ok(summary) => {
            status.shards_done.push(index);
            status.in_progress = None;
            status.in_progress_keys = None;
            status.failed_attempts = None;
            let written = summary.restored + summary.replaced;
            status.keys =
                Some(status.keys.unwrap_or(0) + i64::try_from(written).unwrap_or(i64::MAX));
            status.progress = Some(format!("{}/{total}", status.shards_done.len()));
            write(t, &status).await?;
            Ok(Action::requeue(Duration::from_millis(100)))
        }
        Err((transient, why)) => {
            let attempts = status.failed_attempts.unwrap_or(0) + 1;
            status.failed_attempts = Some(attempts);
            let note = format!("backup shard {index}: {why}");
            publish(
                t.ctx,
                t.cluster,
                EventType::Warning,
                "RestoreShardFailed",
                &note,
            )
            .await;
            if !transient || attempts >= MAX_ATTEMPTS {
                return fail(t, status, outcome("RestoreFailed", note)).await;
            }
            set_condition(
                &mut status.conditions,
                RESTORED,
                false,
                "Retrying",
                &note,
                None,
            );
            write(t, &status).await?;
            Ok(Action::requeue(WAIT * u32::try_from(attempts).unwrap_or(1)))
        }
    }
}

/// How often `status.restore.keys` shows a shard's progress while it is written.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Restores one backup shard from `reader`, writing the keys written so far to
/// `status.restore.inProgressKeys` every [`PROGRESS_EVERY`]: a shard of gigabytes takes minutes, and the
/// status must show it moving.
#[allow(clippy::too_many_arguments)] // the pass's context, spelled out
async fn restore_shard<R: tokio::io::AsyncRead + Unpin + Send>(
    t: &Target<'_>,
    status: &RestoreStatus,
    reader: R,
    seen: &access::Access,
    mode: RestoreMode,
) -> Result<RestoreSummary, RestoreError> {
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let mut report = move |p: &RestoreProgress| {
        counter.store(p.restored + p.replaced, Ordering::Relaxed);
    };
    let seeds = seen.addrs();
    let run = restore_rdb(
        reader,
        &seeds,
        &seen.options,
        mode,
        Default::default(),
        &mut report,
    );
    tokio::pin!(run);
    let start = tokio::time::Instant::now() + PROGRESS_EVERY;
    let mut tick = tokio::time::interval_at(start, PROGRESS_EVERY);
    loop {
        tokio::select! {
            result = &mut run => return result,
            _ = tick.tick() => {
                let mut shown = status.clone();
                let now = i64::try_from(written.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
                shown.in_progress_keys = Some(now);
                if let Err(e) = write(t, &shown).await {
                    tracing::debug!(error = %e, "restore progress not written");
                }
            }
        }
    }
}

/// Streams every object once: its size and SHA-256 must be the manifest's.
///
/// # Errors
/// `ObjectMissing`, `ChecksumMismatch`, `StorageRefused`, `StorageUnavailable` (transient).
pub async fn verify(store: &Store, manifest: &Manifest) -> Result<(), Outcome> {
    for shard in &manifest.shards {
        let unavailable = |e: super::error::StoreError| match e.kind {
            StoreErrorKind::NotFound => outcome(
                "ObjectMissing",
                format!("{} is missing from {}", shard.object, store.describe()),
            ),
            kind if kind.refused() => outcome("StorageRefused", e.to_string()),
            _ => outcome("StorageUnavailable", e.to_string()),
        };
        let mut reader = store.reader(&shard.object).await.map_err(unavailable)?;
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        let mut bytes = 0u64;
        loop {
            let n = reader.read(&mut buf).await.map_err(|e| {
                outcome(
                    "StorageUnavailable",
                    format!("reading {}: {e}", shard.object),
                )
            })?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            ctx.update(&buf[..n]);
        }
        let sha: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if bytes != shard.bytes || sha != shard.sha256 {
            return Err(outcome(
                "ChecksumMismatch",
                format!(
                    "{} has {bytes} bytes with SHA-256 {sha}; the manifest says {} bytes with {}: the object is corrupt, nothing was written",
                    shard.object, shard.bytes, shard.sha256
                ),
            ));
        }
    }
    Ok(())
}

async fn complete(
    t: &Target<'_>,
    mut status: RestoreStatus,
    manifest: &Manifest,
) -> Result<Action, Error> {
    status.phase = Some(RestorePhase::Completed);
    status.completion_time = Some(now_text());
    let note = format!(
        "{} keys from {} backup shards in {}",
        status.keys.unwrap_or(0),
        manifest.shards.len(),
        plan::human_duration(seconds_since(status.start_time.as_deref()))
    );
    set_condition(
        &mut status.conditions,
        RESTORED,
        true,
        "Completed",
        &note,
        None,
    );
    write(t, &status).await?;
    publish(
        t.ctx,
        t.cluster,
        EventType::Normal,
        "RestoreCompleted",
        &note,
    )
    .await;
    Ok(Action::await_change())
}

async fn store_error(
    t: &Target<'_>,
    status: RestoreStatus,
    e: &super::error::StoreError,
) -> Result<Action, Error> {
    if e.kind.refused() {
        fail(t, status, outcome("StorageRefused", e.to_string())).await
    } else {
        wait(t, status, outcome("StorageUnavailable", e.to_string())).await
    }
}

async fn wait(t: &Target<'_>, mut status: RestoreStatus, o: Outcome) -> Result<Action, Error> {
    if status.phase.is_none() {
        status.phase = Some(RestorePhase::Pending);
    }
    set_condition(
        &mut status.conditions,
        RESTORED,
        false,
        o.reason,
        &o.message,
        None,
    );
    let old = t.cluster.status.as_ref().and_then(|s| s.restore.as_ref());
    if Some(&status) != old {
        write(t, &status).await?;
    }
    Ok(Action::requeue(WAIT))
}

async fn fail(t: &Target<'_>, mut status: RestoreStatus, o: Outcome) -> Result<Action, Error> {
    status.phase = Some(RestorePhase::Failed);
    set_condition(
        &mut status.conditions,
        RESTORED,
        false,
        o.reason,
        &o.message,
        None,
    );
    write(t, &status).await?;
    publish(
        t.ctx,
        t.cluster,
        EventType::Warning,
        "RestoreFailed",
        &o.message,
    )
    .await;
    Ok(Action::await_change())
}

async fn write(t: &Target<'_>, status: &RestoreStatus) -> Result<(), Error> {
    if !t.ctx.leadership.may_act() {
        return Ok(());
    }
    let api: Api<RedisCluster> = Api::namespaced(t.ctx.client.clone(), t.ns);
    let patch = serde_json::json!({
        "apiVersion": RedisCluster::api_version(&()),
        "kind": RedisCluster::kind(&()),
        "status": {"restore": status},
    });
    api.patch_status(
        &t.cluster.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
