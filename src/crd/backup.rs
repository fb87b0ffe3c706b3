//! The `RedisClusterBackup` custom resource, and what a RedisCluster restores from.
//!
//! A backup is its own object, not owned by its RedisCluster: deleting the cluster deletes
//! neither the backup objects nor the stored data (that is what a backup is for). Deleting a
//! `RedisClusterBackup` deletes its stored objects unless `deletionPolicy: Retain`, the way a
//! VolumeSnapshotContent's `deletionPolicy` works.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A one-off backup of a RedisCluster: one RDB snapshot per shard, taken from an in-sync
/// follower, and a manifest with the slot map, checksums and key counts, in object storage.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "redis.redis-operator.dev",
    version = "v1alpha1",
    kind = "RedisClusterBackup",
    plural = "redisclusterbackups",
    shortname = "rdcb",
    category = "redis",
    namespaced,
    status = "RedisClusterBackupStatus",
    derive = "PartialEq",
    doc = "A backup of a RedisCluster: per-shard RDB snapshots and a manifest in object storage",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Shards", type_ = "string", json_path = ".status.progress", description = "shards done / shards"),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.size"),
    printcolumn(name = "Keys", type_ = "integer", json_path = ".status.keys", priority = 1),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Location", type_ = "string", json_path = ".status.location", priority = 1),
    validation = Rule::new("!has(oldSelf.spec) || self.spec.cluster == oldSelf.spec.cluster && self.spec.destination == oldSelf.spec.destination").message("spec.cluster and spec.destination cannot change: make a new RedisClusterBackup")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterBackupSpec {
    /// The RedisCluster to back up, in this namespace.
    #[schemars(length(min = 1, max = 63))]
    pub cluster: String,
    /// Where the snapshots and the manifest go.
    pub destination: BackupDestination,
    /// What deleting this object does to the stored data: `Delete` (the default) removes the
    /// backup's objects; `Retain` keeps them (restore later with `restoreFrom.s3` and `path`).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Where backups are stored.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupDestination {
    /// An S3-compatible bucket.
    pub s3: S3Destination,
}

/// An S3-compatible bucket and a prefix in it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// The endpoint URL (`https://s3.eu-west-1.amazonaws.com`, `http://minio.storage:9000`).
    /// Unset: AWS S3 of `region`. Requests are path-style, so any S3-compatible server works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("destination.s3.endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    /// The bucket (it must exist).
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// A prefix for every object (`demo/`); backups go under `<prefix><cluster>/<backup>-<uid>/`.
    #[serde(default)]
    #[schemars(length(max = 512))]
    pub prefix: String,
    /// The region (default `us-east-1`; most S3-compatible servers ignore it).
    #[serde(default = "default_region")]
    #[schemars(length(max = 64))]
    pub region: String,
    /// A Secret in this namespace with the keys `accessKeyId` and `secretAccessKey`.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// A Secret in this namespace whose key `ca.crt` holds the PEM certificate(s) of a private
    /// CA that signed the endpoint's certificate, trusted beside the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_secret: Option<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// What deleting a RedisClusterBackup does to its stored objects.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum DeletionPolicy {
    /// Delete the stored objects with the RedisClusterBackup.
    #[default]
    Delete,
    /// Keep them.
    Retain,
}

/// Where a backup is in its life.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupPhase {
    /// Waiting for the cluster, the credentials or a healthy shard to start.
    Pending,
    /// Taking snapshots.
    Running,
    /// Every shard and the manifest are stored.
    Completed,
    /// Given up; the condition says why. Nothing of it is trusted by a restore (no manifest).
    Failed,
}

/// Observed state, written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterBackupStatus {
    /// Pending, Running, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Standard conditions: `Completed` (True once stored, False with the reason otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the backup started: every write acknowledged (WAIT ≥ 1) before it is in the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the manifest was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// From start to completion, e.g. `1m12s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Shards stored / shards, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Bytes stored so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// The same, readable (`12.5MiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Keys stored so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<i64>,
    /// Where the backup is, e.g. `s3://backups/demo/nightly-1-0a1b2c3d/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The backup's prefix inside the destination (`restoreFrom.path` for a restore elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Per shard, in slot order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<BackupShardStatus>,
}

/// One shard's snapshot.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupShardStatus {
    /// The shard's position in slot order.
    pub index: i32,
    /// Its slot ranges when the backup started, e.g. `0-5460`.
    pub slots: String,
    /// The shard's leader (Redis node id) when the backup started.
    pub leader_id: String,
    /// The leader's replication offset when the backup started; the snapshot was taken from a
    /// member that had processed at least this much.
    pub leader_offset_at_start: i64,
    /// The Pod the snapshot came from, once taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `follower`, or `leader` when the shard has no follower (no fork is avoided then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_role: Option<String>,
    /// The source's replication offset when it started the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_offset: Option<i64>,
    /// Keys in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<i64>,
    /// Bytes of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// SHA-256 of the stored object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The Redis version that wrote it (the RDB's `redis-ver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<String>,
    /// The object's name under the backup's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Attempts that failed (a failover or a lost connection restarts the shard).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_attempts: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl BackupShardStatus {
    /// Stored: the snapshot is complete and recorded.
    pub fn done(&self) -> bool {
        self.sha256.is_some()
    }
}

/// What a new RedisCluster is filled from: a RedisClusterBackup in its namespace, or a backup
/// stored elsewhere (`s3` and `path`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.backup) != (has(self.s3) && has(self.path))").message("restoreFrom takes either backup, or s3 and path"))]
#[x_kube(validation = Rule::new("has(self.s3) == has(self.path)").message("restoreFrom.s3 and restoreFrom.path go together"))]
pub struct RestoreFrom {
    /// A Completed RedisClusterBackup in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub backup: Option<String>,
    /// A bucket holding a backup made elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
    /// The backup's path under `s3.prefix` (a RedisClusterBackup's `status.path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path: Option<String>,
}

/// Where a restore is in its life.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestorePhase {
    /// Waiting for the cluster to be Ready and the backup to be readable.
    Pending,
    /// Checking every object's checksum, then writing keys.
    Running,
    /// Every key of the backup is in the cluster.
    Completed,
    /// Given up; the condition says why.
    Failed,
}

/// A restore's progress, written by the operator's restore loop (its own field manager).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// Pending, Running, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// `Restored` (True once complete, False with the reason otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The backup's location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Backup shards restored / backup shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Indexes of the backup's shards fully restored (a restart resumes after them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards_done: Vec<i32>,
    /// The backup shard being written (a restart resumes it, tolerating its keys written
    /// before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<i32>,
    /// Attempts at the shard in progress that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<i32>,
    /// Keys written from the backup shards done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<i64>,
    /// Keys written so far from the shard in progress (every few seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_keys: Option<i64>,
    /// When writing started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the last key was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
}

/// Condition types of backups and restores.
pub mod conditions {
    /// A backup: stored (True), or why not (False).
    pub const COMPLETED: &str = "Completed";
    /// A restore: every key written (True), or why not (False).
    pub const RESTORED: &str = "Restored";
}
