//! The `RedisClusterBackupSchedule` custom resource: RedisClusterBackups on a cron schedule,
//! with retention, the way a CronJob makes Jobs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::backup::RedisClusterBackupSpec;

/// Makes a RedisClusterBackup on a cron schedule and deletes old ones (with their stored
/// data, under the template's `deletionPolicy: Delete`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "redis.redis-operator.dev",
    version = "v1alpha1",
    kind = "RedisClusterBackupSchedule",
    plural = "redisclusterbackupschedules",
    shortname = "rdcbs",
    category = "redis",
    namespaced,
    status = "RedisClusterBackupScheduleStatus",
    derive = "PartialEq",
    doc = "RedisClusterBackups on a cron schedule, with retention by count and age",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.template.cluster"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Last", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(name = "Last-Success", type_ = "date", json_path = ".status.lastSuccessfulTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 240").message("metadata.name must be at most 240 characters: its backups are named <schedule>-<yyyymmddhhmm>")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterBackupScheduleSpec {
    /// When, in cron syntax (`minute hour day-of-month month day-of-week`, UTC), e.g.
    /// `0 3 * * *`; `@hourly`, `@daily`, `@weekly` work too. A wrong expression is shown as
    /// the `Scheduled` condition, False.
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// Make no new backups while true (existing ones are kept; retention still applies).
    #[serde(default)]
    pub suspend: bool,
    /// The RedisClusterBackup to make each time.
    pub template: RedisClusterBackupSpec,
    /// Completed backups to keep, newest first (default 7). At least 1.
    #[serde(default = "default_keep_last")]
    #[x_kube(validation = Rule::new("self >= 1").message("keepLast must be at least 1"))]
    pub keep_last: i32,
    /// Also delete completed backups older than this (a Go duration such as `168h`), but
    /// never the newest completed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$')").message("keepWithin must be a duration such as 168h"))]
    pub keep_within: Option<String>,
    /// Failed backups to keep for inspection (default 1).
    #[serde(default = "default_keep_failed")]
    #[x_kube(validation = Rule::new("self >= 0").message("keepFailed must not be negative"))]
    pub keep_failed: i32,
}

fn default_keep_last() -> i32 {
    7
}

fn default_keep_failed() -> i32 {
    1
}

/// Observed state, written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterBackupScheduleStatus {
    /// `Scheduled`: True with the next run, or False with why (a wrong expression).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last time a backup was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// The last time a backup of this schedule completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<String>,
    /// The next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    /// The backups of this schedule not yet finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
}

/// The label naming the schedule a backup was made by.
pub const SCHEDULE_LABEL: &str = "redis.redis-operator.dev/schedule";
