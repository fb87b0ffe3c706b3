//! I/O: one shard's snapshot into the store, and the manifest.

use std::net::SocketAddr;
use std::time::Duration;

use super::manifest::{FORMAT_VERSION, MANIFEST, Manifest, ManifestShard, object_name};
use super::store::Store;
use crate::crd::backup::{BackupShardStatus, RedisClusterBackup};
use crate::redis::client::AdminOptions;
use crate::redis::ops::backup::{snapshot_shard, wait_replica_offset};
use crate::redis::ops::snapshot::SnapshotLimits;
use crate::redis::rdb::ReaderLimits;

/// How long a source may take to process what the leader had at the start. A follower in
/// sync trails by at most a megabyte: seconds at most; a minute means something is wrong.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Why a shard's snapshot failed.
#[derive(Debug)]
pub struct ShardError {
    /// Retrying cannot help (bad credentials, a missing bucket, an unreadable RDB).
    pub permanent: bool,
    /// The condition's reason.
    pub reason: &'static str,
    /// What happened, for the condition and the Event.
    pub message: String,
}

impl ShardError {
    fn store(e: &super::error::StoreError, what: &str) -> Self {
        let permanent = e.kind.refused();
        Self {
            permanent,
            reason: if permanent {
                "StorageRefused"
            } else {
                "StorageUnavailable"
            },
            message: format!("{what}: {e}"),
        }
    }
}

/// Takes shard `shard`'s snapshot from `source` into `store`, once the source has processed
/// `at_least`, and returns the shard's status with what was stored.
///
/// # Errors
/// The source, the RDB or the store failed; the upload is aborted (never completed) then.
pub async fn snapshot(
    store: &Store,
    options: &AdminOptions,
    shard: &BackupShardStatus,
    source: (SocketAddr, String, &'static str),
    at_least: u64,
) -> Result<BackupShardStatus, ShardError> {
    let (addr, pod, role) = source;
    let index = usize::try_from(shard.index).unwrap_or_default();
    if role == "follower" {
        wait_replica_offset(addr, options, at_least, CATCH_UP)
            .await
            .map_err(|e| ShardError {
                permanent: false,
                reason: "SourceBehind",
                message: format!(
                    "{pod} did not reach the leader's offset at the start ({at_least}): {e}"
                ),
            })?;
    }
    let object = object_name(index);
    let mut writer = store.writer(&object);
    let taken = snapshot_shard(
        addr,
        options,
        &mut writer,
        SnapshotLimits::default(),
        ReaderLimits::default(),
    )
    .await;
    let taken = match taken {
        Ok(t) => t,
        Err(e) => {
            // Never completed: an aborted multipart upload leaves no object to trust.
            if let Err(abort) = writer.abort().await {
                tracing::debug!(error = %abort, "aborting the upload");
            }
            return Err(ShardError {
                permanent: false,
                reason: "SnapshotFailed",
                message: format!("shard {index} from {pod}: {e}"),
            });
        }
    };
    writer
        .finish()
        .await
        .map_err(|e| ShardError::store(&e, &format!("shard {index}: storing {object}")))?;
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    Ok(BackupShardStatus {
        source: Some(pod),
        source_role: Some(role.into()),
        source_offset: Some(as_i64(taken.snapshot.repl_offset_before())),
        keys: Some(as_i64(taken.keys)),
        bytes: Some(as_i64(taken.snapshot.bytes)),
        sha256: Some(taken.snapshot.sha256_hex()),
        redis_version: taken.redis_version.clone(),
        object: Some(object),
        ..shard.clone()
    })
}

/// Writes the manifest of a backup whose shards are all stored: the last object, the one
/// that makes the backup trusted.
///
/// # Errors
/// A shard not stored, or the store failed.
pub async fn write_manifest(
    store: &Store,
    backup: &RedisClusterBackup,
    cluster_spec: serde_json::Value,
    completed_at: &str,
) -> Result<Manifest, ShardError> {
    let status = backup.status.clone().unwrap_or_default();
    let shards: Option<Vec<ManifestShard>> = status.shards.iter().map(ManifestShard::of).collect();
    let shards = shards.ok_or_else(|| ShardError {
        permanent: true,
        reason: "InvalidStatus",
        message: "a shard's record is incomplete; the manifest was not written".into(),
    })?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        namespace: backup.metadata.namespace.clone().unwrap_or_default(),
        cluster: backup.spec.cluster.clone(),
        backup: backup.metadata.name.clone().unwrap_or_default(),
        uid: backup.metadata.uid.clone().unwrap_or_default(),
        started_at: status.start_time.clone().unwrap_or_default(),
        completed_at: completed_at.into(),
        redis_version: status.shards.iter().find_map(|s| s.redis_version.clone()),
        spec: cluster_spec,
        shards,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| ShardError {
        permanent: true,
        reason: "InvalidStatus",
        message: format!("cannot serialize the manifest: {e}"),
    })?;
    store
        .put(MANIFEST, bytes.into())
        .await
        .map_err(|e| ShardError::store(&e, "storing the manifest"))?;
    Ok(manifest)
}
