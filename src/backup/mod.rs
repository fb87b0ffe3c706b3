//! Backups of a cluster's data to object storage (issue 22).
//!
//! * [`store`]: the object store backups are written to and restored from (S3 or a local
//!   directory), with bounded calls and errors sorted into kinds ([`error`]).

pub mod error;
pub mod store;
