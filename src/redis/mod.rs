//! Redis Cluster administration over RESP.
//!
//! * [`client`]: one authenticated RESP2 connection with timeouts on every step, over
//!   [`codec::GuardedResp2`] (the redis-protocol codec behind depth, length and reply-size
//!   checks, with a scanner that resumes where the last read stopped).
//! * [`tls`]: [`TlsOptions`] (rustls, verified against `ca.crt`, optional client
//!   certificate) for [`AdminOptions::tls`].
//! * [`parse`]: pure parsers for CLUSTER NODES / SHARDS / INFO and INFO replication.
//! * [`model`]: [`model::ClusterView`], the cluster as every reachable node reports it.
//! * [`ops`]: safe, idempotent, resumable cluster operations, each available as a single
//!   non-blocking step for a level-triggered reconcile loop and as a "do it and wait" helper.

pub mod client;
pub mod codec;
pub mod command;
pub mod error;
pub mod ids;
pub mod model;
pub mod ops;
pub mod parse;
pub mod rdb;
pub mod reply;
pub mod slot_owners;
pub mod sync;
pub mod tls;

pub use client::{AdminOptions, Auth, Client, Timeouts};
pub use error::RedisError;
pub use ids::{NodeId, SLOT_COUNT, SlotRange};
pub use model::{ClusterView, NodeObservation, fetch_shards, observe, observe_node};
pub use ops::ClusterAdmin;
pub use tls::{TlsError, TlsOptions};
