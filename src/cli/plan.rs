//! `redis-operator plan`: what-if placement for SREs.

use std::process::ExitCode;

/// Arguments of `redis-operator plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {}

/// Entry point of `redis-operator plan`.
pub fn main(_args: PlanArgs) -> ExitCode {
    eprintln!("plan is not implemented yet");
    ExitCode::FAILURE
}
