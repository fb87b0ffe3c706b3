//! Backups of a RedisCluster to object storage, and restores from them.
//!
//! Two loops beside the cluster reconcile, each with its own field manager: the
//! `RedisClusterBackup` controller takes one shard's snapshot per pass (see [`plan`]); the
//! restore loop fills a new cluster from `spec.restoreFrom`. Neither blocks the cluster's own
//! recovery: they read the cluster and write keys, nothing else. [`store`] is the object
//! store (S3 or a local directory) with bounded calls and errors sorted into kinds ([`error`]).

pub mod access;
pub mod controller;
pub mod destination;
pub mod error;
pub mod manifest;
pub mod plan;
pub mod restore;
pub mod schedule;
pub mod schedule_plan;
pub mod shards;
pub mod status;
pub mod store;
pub mod take;

#[cfg(test)]
mod fixture;
