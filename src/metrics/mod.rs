//! Prometheus metrics, served at `/metrics` by [`crate::http`] (OpenMetrics text, the official
//! `prometheus-client` crate). `docs/monitoring.md` lists every metric and the alert rules.
//!
//! Every value comes from what a reconcile pass already has: the facts (the observation,
//! including each member's `INFO`), the plan, the step it executed and the status it built.
//! The pure parts are in [`cluster`] and [`member`], [`pass`] reads a pass into them, and
//! [`registry`] holds the families and the label sets each cluster owns, so a deleted
//! cluster's series disappear. No network call of its own.
//!
//! Labels are bounded: namespace and cluster (one set per RedisCluster, removed when it goes),
//! zone (zones holding members), shard, member and pod (bounded by the cluster's size; a
//! replaced Pod's set is removed), condition type, problem reason and action kind (constants
//! in the code). No secret is ever a label or a value.

pub mod cluster;
mod families;
pub mod member;
pub mod pass;
pub mod registry;

pub use registry::{ClusterLabels, Metrics};

#[cfg(test)]
mod tests;
