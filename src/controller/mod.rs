//! The RedisCluster controller: observe → plan → one safe step → status.

pub mod build;
pub mod config;
pub mod labels;
