//! `redis-operator run`: the controller process.

use std::process::ExitCode;

/// Arguments of `redis-operator run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Entry point of `redis-operator run`.
pub fn main(_args: RunArgs) -> ExitCode {
    eprintln!("the controller is not implemented yet");
    ExitCode::FAILURE
}
