//! Subcommands of the `redis-operator` binary.

pub mod plan;
pub mod run;
