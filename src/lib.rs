//! redis-operator: runs Redis Cluster across availability zones on Kubernetes.
//!
//! The crate is split into a pure core (placement via the `redis-scheduler` crate, Redis wire
//! parsing, object builders, planning) and thin I/O edges (the Kubernetes client and the RESP
//! admin client).

pub mod backup;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod redis;
pub mod topology;
